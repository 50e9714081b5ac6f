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
           "bf16_acceleration_from_flags", "float32_modules",
           "reduced_precision_inference"]

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



class _Float32Forward:
    """A module's forward with autocast off and floating-point tensor arguments in fp32."""

    def __init__(self, forward):
        self.forward = forward

    def __call__(self, *args, **kwargs):
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        with torch.autocast(x.device.type if x is not None else "cpu", enabled=False):
            args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            return self.forward(*args, **kwargs)


def float32_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The parts of an emotion2vec model that stay fp32 under reduced-precision inference: the first and the last
    two layers of the waveform CNN, the feature projection and the positional convolutions. Their matrix multiplies
    are small (about 4 % of the FLOPs) but in bf16 they add as much error as all the rest: on the base model with
    random weights they take the frame-level error from 1.6 % to 0.9 % relative L2."""
    layers = model.feature_extractor.layers
    return [layers[0], *layers[-2:], model.feature_projection, model.encoder.pos_conv]


class _PackedLinearForward:
    """A bf16 ``nn.Linear`` forward on a CPU with its weight reordered once into oneDNN's blocked layout: the same
    kernel and the same results (bit-identical) without the reorder oneDNN otherwise does on every call (~1.45x on
    the Transformer's matrix multiplies of one utterance). The input is cast to bf16 as autocast would."""

    def __init__(self, linear: torch.nn.Linear):
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.weight, self.bias, "none", [], "")


class _PackedConvForward(_PackedLinearForward):
    """The same for a CNN layer (:class:`~emotion2vec.models.components.ChannelsLastConv1d`), whose input is cast
    to bf16 before its windows are copied out (half the bytes; the cast commutes with the copy)."""

    def __init__(self, conv):
        self.weight = torch.ops.mkldnn._reorder_linear_weight(conv.weight.detach().flatten(1), None)
        self.bias, self.columns = None, conv.columns

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(self.columns(x.to(torch.bfloat16)))


def _packing_works() -> bool:
    """Whether this torch build has oneDNN's prepacked bf16 linear (an internal op of torch's CPU compiler path)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2, dtype=torch.bfloat16), None)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2, dtype=torch.bfloat16), w, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return float(y.float().sum()) == 4.0


def reduced_precision_inference(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Prepare an emotion2vec model for inference under autocast to ``dtype`` (bfloat16 / float16), in place.

    * The matrix multiplies of the Transformer blocks and of the large CNN layers run in ``dtype`` with their
      weights stored in it once (plain autocast would cast every weight on every call: the same arithmetic, slower);
      on a CPU in bf16 they also keep their weights in oneDNN's blocked layout (:class:`_PackedLinearForward`). The model is then for inference only: retraining or reloading its weights
      needs a fresh copy.
    * :func:`float32_modules` run in fp32 with autocast off.
    * Norms, softmax and the ALiBi bias stay fp32 as under autocast.

    On the base model with random weights this keeps frame-level features within 1 % relative L2 of fp32 where plain
    autocast gives 1.6 %, and runs faster than plain autocast (benchmarks/extract.py). Returns ``model``.
    """
    from .models.components import ChannelsLastConv1d

    fp32 = float32_modules(model)
    kept = {id(m) for f in fp32 for m in f.modules()}
    for f in fp32:
        if not isinstance(f.forward, _Float32Forward):
            f.forward = _Float32Forward(f.forward)
    for m in model.modules():
        if id(m) not in kept and isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, ChannelsLastConv1d)):
            m.to(dtype)
    if dtype == torch.bfloat16 and next(model.parameters()).device.type == "cpu" and _packing_works():
        for m in model.modules():
            if id(m) in kept or isinstance(m.forward, _PackedLinearForward):
                continue
            if isinstance(m, ChannelsLastConv1d):
                m.forward = _PackedConvForward(m)
            elif isinstance(m, torch.nn.Linear):
                m.forward = _PackedLinearForward(m)
    return model
