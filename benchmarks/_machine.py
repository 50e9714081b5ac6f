"""The machine line every benchmark prints: CPU model, the instruction sets that decide bf16 speed, threads, and the
measured fp32 and bf16 GEMM rates, so that a table from one machine is never mistaken for another's."""

from __future__ import annotations

import platform
import time

import torch



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


def machine_line(rates: dict[str, float] | None = None) -> str:
    """'# machine: ...' with the CPU, its bf16 / int8 matrix units (AVX512-BF16, AMX, AVX512-VNNI, AMX-INT8) and the
    measured GEMM rates (``rates`` from :func:`_floor.gemm_rates`, measured here when not given)."""
    from _floor import gemm_rates

    model, flags = cpu_flags()
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "amx_int8")
                    if f in flags) or "no AVX-512/AMX"
    rates = rates or gemm_rates()
    int8 = f", int8 {rates['int8']:.0f}" if "int8" in rates else ""
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"# machine: {model} ({isa}), {torch.get_num_threads()} threads, torch {torch.__version__}; GEMM 2048^3 "
            f"fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f}{int8} ({rates['bf16'] / rates['fp32']:.1f}x "
            f"fp32){gpu}")
