"""Feature backends: what turns a padded batch of waveforms into per-layer features.

A backend knows its geometry (layers, width, frame rate), whether waveforms are normalised, and the settings that
make two feature folders comparable (:meth:`Backend.settings`, recorded in ``features.json``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..io.audio import SAMPLE_RATE
from . import DTYPE_NAMES, ExtractionError

__all__ = ["DTYPES", "Backend", "ModelBackend", "UtteranceTokenBackend", "FbankBackend", "load_backend",
           "resolve_dtype", "token_backend"]

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu",
                  width: int | None = None) -> torch.dtype:
    """A dtype name, a torch dtype, or ``"auto"``: the fastest measured for ``device`` and a model ``width`` wide
    (:func:`emotion2vec.device.auto_dtype`: bfloat16 on GPUs with bf16, on CPUs with AMX, and on CPUs with
    AVX512-BF16 alone for models 768 wide and up; float32 elsewhere), with a bad name reported as an :class:`ExtractionError`. ``int8``
    (torch.int8) only on a CPU."""
    from ..device import resolve_compute_dtype
    from ..models.config import ConfigError

    if dtype in ("int8", torch.int8):
        if torch.device(device).type != "cpu":
            raise ExtractionError("--dtype int8 runs on a CPU (oneDNN's VNNI / AMX-INT8 kernels); on a GPU use "
                                  "bfloat16 or auto")
        return torch.int8
    try:
        return resolve_compute_dtype(dtype, device, width)
    except ConfigError as e:
        raise ExtractionError(str(e)) from None


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


class Backend:
    """What the engine needs from a feature model."""

    name: str  # "emotion2vec", "fbank", ...
    device: torch.device = torch.device("cpu")
    num_layers: int
    dim: int
    frame_rate: float
    normalize: bool
    description: str
    windowed: bool = True  # inputs over --chunk-seconds run in windows; False: always whole (openSMILE functionals)

    def num_frames(self, num_samples: int) -> int:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """(B, N) padded waveforms, (B,) valid samples -> (L, B, T, D) float32 features of the requested layers."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The computation settings that change features (a resume must not mix outputs of different ones)."""
        return {"backend": self.name}


class ModelBackend(Backend):
    """Any upstream (:mod:`emotion2vec.models.upstream`: emotion2vec / data2vec 2.0, data2vec (v1), ``hf:``) in eval
    mode; ``dtype`` other than float32 runs under autocast. ``name`` is the upstream's kind.

    An emotion2vec model on a CPU runs its CNN per input, in time tiles, and its Transformer on the padded batch
    (:meth:`~emotion2vec.models.encoder.Emotion2VecModel.local_features_per_input`: the same valid frames, faster).
    With a reduced ``dtype`` it is rewritten by :func:`emotion2vec.models.inference.prepare_inference`: the large
    matrix multiplies in ``dtype`` with their weights stored once, the small layers where bf16 costs accuracy for
    no speed in fp32, oneDNN's fused kernels on a CPU; ``int8`` (CPU only) quantises the Transformer's linear
    layers and runs the rest in bf16 where the CPU has bf16 units, else fp32.
    """

    name = "emotion2vec"

    def __init__(self, model, device: torch.device, dtype: torch.dtype = torch.float32, description: str = "",
                 classifier=None):
        from ..device import bf16_accelerated
        from ..models.upstream import upstream_kind

        self.model = model.eval().to(device)
        self.name = upstream_kind(model)
        self.autocast: torch.dtype | None = None if dtype == torch.float32 else dtype
        if dtype == torch.int8:
            if self.name != "emotion2vec" or device.type != "cpu":
                raise ExtractionError(f"--dtype int8: runs emotion2vec / data2vec 2.0 models on a CPU, not "
                                      f"{self.name} models on {device.type}")
            self.autocast = torch.bfloat16 if bf16_accelerated(device) else None
        if dtype != torch.float32 and self.name == "emotion2vec":
            from ..models.inference import prepare_inference

            try:
                prepare_inference(self.model, dtype, bf16_units=self.autocast is not None)
            except ValueError as e:
                raise ExtractionError(f"--dtype {_dtype_name(dtype)}: {e}") from None
        # the CNN per input: 1.09x in fp32 (benchmarks/levers.py); in bf16 faster on the whole corpus end to end
        # (benchmarks/extract.py), although a 40-file A/B favours the padded batch (docs: performance, Levers)
        self.per_input = self.name == "emotion2vec" and device.type == "cpu"
        self.classifier = classifier  # the checkpoint's ClassifierSpec (emotion2vec+), or None
        self.cfg = model.cfg
        self.device, self.dtype = device, dtype
        self.num_layers, self.dim = self.cfg.num_layers, self.cfg.embed_dim
        self.frame_rate = SAMPLE_RATE / self.cfg.frame_stride
        self.normalize = self.cfg.normalize
        self.description = description

    def num_frames(self, num_samples: int) -> int:
        return self.cfg.num_frames(num_samples)

    def features(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]):
        """The upstream's :class:`~emotion2vec.models.encoder.FeatureOutput` for (B, N) padded waveforms with (B,)
        valid samples, computed on the device in the compute dtype."""
        batch = batch.to(self.device, non_blocking=True)
        lengths = lengths.to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16,
                                                    enabled=self.autocast is not None):
            if self.per_input:
                return self.model.extract_features(batch, layers=layers, ffn=(), lengths=lengths)
            pad = None
            if bool((lengths < batch.shape[1]).any()):
                pad = torch.arange(batch.shape[1], device=self.device)[None, :] >= lengths[:, None]
            return self.model.extract_features(batch, pad, layers=layers, ffn=())

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        out = self.features(batch, lengths, layers)
        return torch.stack([out.layer_outputs[i] for i in layers]).float()

    def settings(self) -> dict[str, Any]:
        from ..models.upstream import upstream_settings

        return {"backend": self.name, "dtype": _dtype_name(self.dtype),
                "attention": self.model.attention_implementation, **upstream_settings(self.model)}


class UtteranceTokenBackend(Backend):
    """The outputs at the utterance-token positions of an emotion2vec model: per input (L, E, D) for its E extra
    ("chunk") tokens instead of (L, T, D) frames. The mean over E of the last block's tokens is the vector the
    utterance loss trains. Inputs always run whole (``windowed`` False): the tokens attend over the whole input."""

    windowed = False

    def __init__(self, inner: ModelBackend):
        self.inner = inner
        self.num_tokens = int(getattr(inner.cfg, "num_extra_tokens", 0) or 0)
        self.name, self.device, self.num_layers, self.dim = inner.name, inner.device, inner.num_layers, inner.dim
        self.frame_rate, self.normalize, self.description = inner.frame_rate, inner.normalize, inner.description

    def num_frames(self, num_samples: int) -> int:
        return self.num_tokens

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        out = self.inner.features(batch, lengths, layers)
        return torch.stack([out.token_outputs[i] for i in layers]).float()

    def settings(self) -> dict[str, Any]:
        return {**self.inner.settings(), "tokens": self.num_tokens}


def token_backend(backend: Backend, checkpoint: str = "") -> UtteranceTokenBackend:
    """``backend``'s utterance tokens (``--granularity tokens``); refused by name for a backend or upstream without
    them (fbank, openSMILE, ONNX graphs, data2vec (v1), Hugging Face models, data2vec 2.0 checkpoints with
    ``num_extra_tokens`` 0)."""
    what = checkpoint or backend.description or backend.name
    if not isinstance(backend, ModelBackend):
        raise ExtractionError(f"--granularity tokens: {what} ({backend.name}) has no utterance tokens; they exist "
                              f"in emotion2vec checkpoints (run with the torch backend)")
    tokens = UtteranceTokenBackend(backend)
    if tokens.num_tokens == 0:
        raise ExtractionError(f"--granularity tokens: {what} ({backend.name}) has no utterance tokens "
                              f"(num_extra_tokens 0); they exist in emotion2vec checkpoints (10 in "
                              f"emotion2vec_base)")
    return tokens


class FbankBackend(Backend):
    """80-dim log-mel filterbank baseline (100 frames/s), through the same pipeline."""

    name = "fbank"

    def __init__(self, device: torch.device):
        from ..models.fbank import LogMelFbank

        self.fbank = LogMelFbank().to(device)
        self.device = device
        self.num_layers, self.dim, self.frame_rate = 1, self.fbank.dim, float(self.fbank.frame_rate)
        self.normalize = False
        self.description = "fbank"

    def num_frames(self, num_samples: int) -> int:
        return self.fbank.num_frames(num_samples)

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            feats, _ = self.fbank(batch.to(self.device), lengths.to(self.device))
        return feats.float()[None]

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "dtype": "float32"}


def load_backend(checkpoint: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 trust: bool = False, preset_name: str | None = None, attention: str = "sdpa",
                 backend: str | None = None) -> Backend:
    """``checkpoint``: any upstream :func:`~emotion2vec.models.upstream.load_upstream` loads (our / official
    checkpoints, data2vec (v1), ``hf:PATH``), ``fbank``, ``opensmile:SET[:LEVEL]`` (:mod:`.opensmile`), or a graph
    of ``emotion2vec export`` (``.onnx``). ``backend``: ``torch``, or ``onnxruntime`` (:mod:`.onnx`; the default
    for a ``.onnx`` file). ``dtype``: a name or ``auto`` (:func:`resolve_dtype`)."""
    if backend == "onnxruntime" or (backend is None and str(checkpoint).endswith(".onnx")):
        from .onnx import load_onnx_backend

        return load_onnx_backend(checkpoint, device, dtype)
    if backend not in (None, "torch"):
        raise ExtractionError(f"--backend {backend!r}: choose torch or onnxruntime")
    if str(checkpoint).endswith(".onnx"):
        raise ExtractionError(f"{checkpoint} is an ONNX graph: run it with --backend onnxruntime")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError("--device cuda requested but CUDA is not available")
    if checkpoint == "fbank":
        return FbankBackend(device)
    if checkpoint.startswith("opensmile:"):
        from .opensmile import OpenSmileBackend

        return OpenSmileBackend.from_spec(checkpoint)
    resolve_dtype(dtype, device)  # a bad name is refused before the checkpoint is read
    from ..models.upstream import load_upstream

    model, ckpt = load_upstream(checkpoint, trust=trust, preset_name=preset_name)
    dtype = resolve_dtype(dtype, device, model.cfg.embed_dim)
    model.set_attention_implementation(attention)
    return ModelBackend(model, device, dtype, description=f"{checkpoint} ({ckpt.source})", classifier=ckpt.classifier)
