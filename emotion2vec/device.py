"""Compute dtype per device: bfloat16 only where the hardware runs it faster, float32 everywhere else.

``dtype="auto"`` (extraction, pretraining, the demo) resolves here:

* a CPU with AMX (Sapphire Rapids and later Xeons) or AVX512-BF16 (Cooper Lake, Zen 4 and later) -> bfloat16:
  oneDNN runs bf16 matrix multiplies there several times faster than fp32 (AMX: ~6.5x the fp32 GEMM rate);
* any other CPU -> float32: bf16 would be *emulated*, slower than fp32 and less accurate;
* a CUDA GPU that supports bf16 (Ampere and later) -> bfloat16, else float32.

Explicit names (``float32``, ``bfloat16``, ``float16``) are taken as given.
"""

from __future__ import annotations

import functools
from typing import Iterable

import torch

from .models.config import ConfigError

__all__ = ["AUTO", "cpu_bf16_acceleration", "bf16_accelerated", "auto_dtype", "resolve_compute_dtype",
           "bf16_acceleration_from_flags"]

AUTO = "auto"
_NAMED = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bf16_acceleration_from_flags(flags: Iterable[str]) -> str | None:
    """The bf16 matrix unit named by a set of /proc/cpuinfo flags: ``"AMX"``, ``"AVX512-BF16"`` or None."""
    flags = set(flags)
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_acceleration() -> str | None:
    """``"AMX"``, ``"AVX512-BF16"`` or None for this process's CPU.

    Asks torch first (it also checks that the OS lets the process use the AMX tiles), else /proc/cpuinfo.
    """
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if amx is None or avx is None:
        return bf16_acceleration_from_flags(_cpuinfo_flags())
    return "AMX" if amx() else "AVX512-BF16" if avx() else None


def bf16_accelerated(device: str | torch.device) -> bool:
    """Whether bf16 matrix multiplies run faster than fp32 on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_bf16_acceleration() is not None
    return False


def auto_dtype(device: str | torch.device) -> torch.dtype:
    """bfloat16 where :func:`bf16_accelerated`, else float32."""
    return torch.bfloat16 if bf16_accelerated(device) else torch.float32


def resolve_compute_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"`` | ``"float32"`` | ``"bfloat16"`` | ``"float16"`` | a torch dtype -> the torch dtype for ``device``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAMED.values():
            raise ConfigError(f"unsupported compute dtype {dtype}; choose one of {', '.join(_NAMED)} or auto")
        return dtype
    if dtype == AUTO:
        return auto_dtype(device)
    if dtype not in _NAMED:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(_NAMED)} or {AUTO}")
    return _NAMED[dtype]
