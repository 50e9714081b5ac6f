"""Speed defaults per device, each the fastest that the benchmarks measured for its situation.

``dtype="auto"`` of extraction, recognition and the API (:func:`auto_dtype`):

* a CPU with AMX (Sapphire Rapids and later Xeons) -> bfloat16 at every width (the base geometry:
  ``benchmarks/extract.py``; the 128-wide ``small`` preset: ``benchmarks/forward.py --preset small``);
* a CPU with AVX512-BF16 but no AMX (Cooper Lake, Zen 4 and later) -> bfloat16 for models at least
  :data:`BF16_MIN_WIDTH` wide, the only width measured on such a CPU; float32 for narrower ones;
* any other CPU -> float32: bf16 would be *emulated*, slower than fp32 and less accurate;
* a CUDA GPU that supports bf16 (Ampere and later) -> bfloat16, else float32.

``finetune --precision auto`` (:func:`auto_training_precision`): the same rule for bf16 on a CPU
(``benchmarks/finetune_step.py`` with AMX: base about 1.5x faster in bf16, ``small`` 1.07-1.15x), bf16 on a GPU
that has it, else fp16 there.

Pretraining's ``model.attention_implementation=auto`` (:func:`auto_attention`): SDPA, except bf16 autocast on a
CPU with AMX, where the explicit-softmax attention is faster (``benchmarks/pretrain_step.py``).

Explicit names (``float32``, ``bfloat16``, ``float16``) are taken as given.
"""

from __future__ import annotations

import functools
import os
from typing import Iterable

import torch

from .errors import Emotion2VecError
from .models.config import ConfigError

__all__ = ["AUTO", "BF16_MIN_WIDTH", "cpu_bf16_acceleration", "bf16_accelerated", "auto_dtype",
           "auto_training_precision", "auto_attention", "resolve_compute_dtype", "bf16_acceleration_from_flags",
           "resolve_device"]

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


#: Model width (embed_dim) from which bf16 is used on a CPU whose only bf16 unit is AVX512-BF16: measured faster there
#: at 768 (the base geometry); narrower models were not measured on such a CPU and stay fp32. With AMX bf16 is faster
#: at every width measured (128, the ``small`` preset, and 768: benchmarks/forward.py, benchmarks/finetune_step.py).
BF16_MIN_WIDTH = 768


def _bf16_pays(device: torch.device, width: int | None) -> bool:
    if not bf16_accelerated(device):
        return False
    if device.type != "cpu" or cpu_bf16_acceleration() == "AMX":
        return True
    return width is None or width >= BF16_MIN_WIDTH


def auto_dtype(device: str | torch.device, width: int | None = None) -> torch.dtype:
    """bfloat16 where :func:`bf16_accelerated` (on a CPU with AVX512-BF16 but no AMX: for models at least
    :data:`BF16_MIN_WIDTH` wide; ``width`` None: not known, taken as wide enough); float32 elsewhere."""
    return torch.bfloat16 if _bf16_pays(torch.device(device), width) else torch.float32


def auto_training_precision(device: str | torch.device, width: int | None = None) -> str:
    """``finetune --precision auto``: ``"bf16"`` where :func:`auto_dtype` picks bfloat16, else ``"fp16"`` on a GPU
    and ``"fp32"`` on a CPU."""
    device = torch.device(device)
    if _bf16_pays(device, width):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def auto_attention(device: str | torch.device, autocast_dtype: torch.dtype | None) -> str:
    """Pretraining's attention for ``auto``: ``"eager"`` (explicit fp32 softmax) for bf16 autocast on a CPU with
    AMX, where it is measured faster than SDPA with an additive ALiBi mask; ``"sdpa"`` everywhere else (fp32 on a
    CPU, CPUs with AVX512-BF16 alone, GPUs)."""
    device = torch.device(device)
    if device.type == "cpu" and autocast_dtype == torch.bfloat16 and cpu_bf16_acceleration() == "AMX":
        return "eager"
    return "sdpa"


def resolve_compute_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu",
                          width: int | None = None) -> torch.dtype:
    """``"auto"`` | ``"float32"`` | ``"bfloat16"`` | ``"float16"`` | a torch dtype -> the torch dtype for ``device``
    (``width``: the model's embed_dim, for ``auto``)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAMED.values():
            raise ConfigError(f"unsupported compute dtype {dtype}; choose one of {', '.join(_NAMED)} or auto")
        return dtype
    if dtype == AUTO:
        return auto_dtype(device, width)
    if dtype not in _NAMED:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(_NAMED)} or {AUTO}")
    return _NAMED[dtype]


def resolve_device(name: str | torch.device, local_rank: int | None = None,
                   error: type[Exception] = Emotion2VecError) -> torch.device:
    """A ``--device`` value -> this process's torch device: ``auto`` = ``cuda`` where CUDA is available, else ``cpu``;
    ``cuda`` without an index = ``cuda:LOCAL_RANK`` (one GPU per process under torchrun, ``cuda:0`` otherwise;
    ``local_rank`` overrides the environment), checked against the GPUs the node has. A value that is not a device,
    CUDA that is not there or a GPU the node lacks is ``error`` naming the value."""
    local = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else local_rank
    given = name
    if name == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise error(f"--device {given!r}: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"--device {given}: CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local)
        if device.index >= torch.cuda.device_count():
            raise error(f"--device {given}: this process (local rank {local}) needs cuda:{device.index} but the "
                        f"node has {torch.cuda.device_count()} GPU(s); start at most that many processes per node "
                        f"(--nproc_per_node)")
    return device
