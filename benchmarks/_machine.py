"""The machine's fp32 GEMM rate, printed by every benchmark so that figures from different CPUs can be compared.

The brief's anchors (FunASR extraction 0.164 s per audio second, fairseq's data2vec 2.0 training step 1.375 s per
audio second, base forward floor 0.076) were measured on a 2-core CPU doing 181 GFLOP/s; ``anchor_scale`` is the
factor that maps a figure measured here onto that machine, assuming compute-bound scaling (an approximation).
"""

from __future__ import annotations

import time

import torch

ANCHOR_GFLOPS = 181.0


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def machine_line() -> tuple[str, float]:
    """('# machine: ...' line, anchor_scale = this machine's GFLOP/s / the anchor machine's)."""
    g = gemm_gflops()
    return (f"# machine: {torch.get_num_threads()} threads, fp32 GEMM {g:.0f} GFLOP/s "
            f"(anchor machine {ANCHOR_GFLOPS:.0f}; figures x {g / ANCHOR_GFLOPS:.2f} = anchor-machine equivalent)",
            g / ANCHOR_GFLOPS)
