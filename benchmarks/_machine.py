"""The machine line every benchmark prints: CPU model, the instruction sets that decide bf16 speed, threads, and the
measured fp32 and bf16 GEMM rates, so that a table from one machine is never mistaken for another's."""

from __future__ import annotations

import platform
import time

import torch


def gemm_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def cpu_flags() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def machine_line() -> str:
    """'# machine: ...' with the CPU, its AMX / AVX512-BF16 support and the measured GEMM rates."""
    model, flags = cpu_flags()
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "no AVX-512/AMX"
    fp32, bf16 = gemm_gflops(torch.float32), gemm_gflops(torch.bfloat16)
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"# machine: {model} ({isa}), {torch.get_num_threads()} threads, torch {torch.__version__}; GEMM fp32 "
            f"{fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s ({bf16 / fp32:.1f}x){gpu}")
