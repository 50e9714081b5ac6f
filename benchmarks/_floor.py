"""The arithmetic floor of a forward pass: the model's matrix-multiply FLOPs at the GEMM rate measured in the same
process, and how close a measured time comes to it.

``forward_flops(cfg, samples)`` counts the multiply-adds (x 2) of every matrix product and convolution of an
emotion2vec forward over one input of ``samples`` 16 kHz samples: the CNN, the feature projection, the positional
convolutions, the Transformer's linear layers and the attention products (Q K^T and P V over the E + T tokens).
Elementwise work (norms, GELU, softmax) is not counted: the floor is what the GEMM units alone would need.
``tests/test_benchmarks.py`` checks the count against torch's FLOP counter.

``gemm_rates()`` measures the fp32, bf16 and int8 (oneDNN u8 x s8, where available) rate of a 2048^3 product with
the process's threads; ``floor_seconds`` turns FLOPs into the seconds the GEMM units need; the floor fraction of a
run is floor seconds / measured seconds.
"""

from __future__ import annotations

import time

import torch


def forward_flops(cfg, samples: int) -> dict[str, float]:
    """FLOPs of one forward by part: cnn, cnn_fp32 (the first and last two CNN layers, which reduced precision
    keeps in fp32), projection, pos_conv, linears (qkv, output, FFN), attention (Q K^T, P V)."""
    out = dict.fromkeys(("cnn", "cnn_fp32", "projection", "pos_conv", "linears", "attention"), 0.0)
    n, c_in = samples, 1
    layers = cfg.conv_layers
    for i, (c, k, s) in enumerate(layers):
        n = (n - k) // s + 1
        if n <= 0:
            return out
        out["cnn_fp32" if i == 0 or i >= len(layers) - 2 else "cnn"] += 2.0 * n * c * c_in * k
        c_in = c
    T, D = n, cfg.embed_dim
    out["projection"] = 2.0 * T * c_in * D
    out["pos_conv"] = cfg.conv_pos_depth * 2.0 * T * D * (D // cfg.conv_pos_groups) * cfg.conv_pos_kernel
    S = T + cfg.num_extra_tokens
    blocks = cfg.prenet_depth + cfg.depth
    hidden = int(D * cfg.mlp_ratio)
    out["linears"] = blocks * 2.0 * S * (3 * D * D + D * D + 2 * D * hidden)
    out["attention"] = blocks * 4.0 * S * S * D
    return out


def total_flops(cfg, samples: int) -> float:
    return sum(forward_flops(cfg, samples).values())


def _time_rate(f, flops: float, seconds: float = 0.5) -> float:
    f()
    f()
    t, n = time.perf_counter(), 0
    while True:
        f()
        n += 1
        dt = time.perf_counter() - t
        if dt >= seconds and n >= 3:
            return flops * n / dt / 1e9


def gemm_rates(n: int = 2048) -> dict[str, float]:
    """GFLOP/s of an n^3 matrix product in fp32, bf16 and (where torch has oneDNN's int8 linear) int8."""
    flops = 2.0 * n ** 3
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {"fp32": _time_rate(lambda: a @ b, flops)}
    a16, b16 = a.bfloat16(), b.bfloat16()
    rates["bf16"] = _time_rate(lambda: a16 @ b16, flops)
    try:
        w = torch.ops.onednn.qlinear_prepack(torch.randint(-127, 127, (n, n), dtype=torch.int8), None)
        x = torch.randint(0, 255, (n, n), dtype=torch.uint8)
        scale, zero = torch.ones(n), torch.zeros(n, dtype=torch.long)
        rates["int8"] = _time_rate(lambda: torch.ops.onednn.qlinear_pointwise(
            x, 1.0, 128, w, scale, zero, None, 1.0, 0, torch.float32, "none", [], ""), flops)
    except (AttributeError, RuntimeError):
        pass
    return rates


def floor_seconds(parts: dict[str, float], dtype: str, rates: dict[str, float], bf16_units: bool = True) -> float:
    """Seconds the GEMM units need for a forward's FLOPs ``parts`` (:func:`forward_flops`, summed over inputs) in
    ``dtype``: float32 all at the fp32 rate; bfloat16 all at the bf16 rate (the machine's limit, although the
    inference keeps 4 % of the FLOPs in fp32 for accuracy); int8 the Transformer's linear layers at the int8 rate
    and the rest at the bf16 rate (fp32 without bf16 units), as ``--dtype int8`` computes them."""
    total = sum(parts.values())
    if dtype == "float32":
        return total / (rates["fp32"] * 1e9)
    if dtype == "bfloat16":
        return total / (rates["bf16"] * 1e9)
    rest = rates["bf16"] if bf16_units else rates["fp32"]
    return parts["linears"] / (rates["int8"] * 1e9) + (total - parts["linears"]) / (rest * 1e9)
