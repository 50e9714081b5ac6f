"""The ONNX Runtime backend: a graph written by ``emotion2vec export`` (:mod:`.export`) run on the CPU execution
provider (``emotion2vec extract --backend onnxruntime``, the default for a ``.onnx`` checkpoint).

The graph (opset 17, dynamic batch and length)::

    inputs   waveform (B, N) float32   right-padded rows, each already normalised when the model expects it
                                       (the backend does it, as for torch)
             lengths  (B,)   int64     valid samples per row
    outputs  features (L, B, T, D) float32   the exported blocks' outputs (rows beyond a row's frames are padding)
             frames   (B,)   int64     valid frames per row

Metadata (``metadata_props``): ``emotion2vec.config`` (the model config as JSON), ``emotion2vec.layers`` (exported
block indices), ``emotion2vec.quantize`` (``none`` | ``int8``), ``emotion2vec.source``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io.audio import SAMPLE_RATE
from . import ExtractionError

__all__ = ["OnnxBackend", "load_onnx_backend", "require"]

INSTALL = "pip install 'emotion2vec[onnx]'"


def require(module: str):
    """Import ``onnx`` / ``onnxruntime`` (optional dependencies), or say how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExtractionError(f"the ONNX path needs {module.split('.')[0]}: {INSTALL}") from None


class OnnxBackend:
    """An exported graph on ONNX Runtime's CPU execution provider (the interface of
    :class:`~emotion2vec.extract.backends.Backend`)."""

    name = "onnxruntime"
    device = torch.device("cpu")
    windowed = True

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ..models.config import Emotion2VecConfig

        onnx = require("onnx")
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise ExtractionError(f"{path}: no such ONNX file")
        try:
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            self.cfg = Emotion2VecConfig.from_dict(json.loads(meta["emotion2vec.config"]))
            self.layers = [int(i) for i in json.loads(meta["emotion2vec.layers"])]
        except Exception as e:  # noqa: BLE001 - a foreign or damaged file
            raise ExtractionError(f"{path}: not an ONNX graph written by `emotion2vec export` ({e})") from None
        self.quantize = meta.get("emotion2vec.quantize", "none")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.num_layers, self.dim = self.cfg.num_layers, self.cfg.embed_dim
        self.frame_rate = SAMPLE_RATE / self.cfg.frame_stride
        self.normalize = self.cfg.normalize
        self.description = f"{path} (ONNX Runtime, {self.quantize}; from {meta.get('emotion2vec.source', '?')})"

    def num_frames(self, num_samples: int) -> int:
        return self.cfg.num_frames(num_samples)

    def forward(self, batch: Tensor, lengths: Tensor, layers: list[int]) -> Tensor:
        missing = [i for i in layers if i not in self.layers]
        if missing:
            raise ExtractionError(f"layer(s) {missing} were not exported to this ONNX graph (it has "
                                  f"{self.layers}); export again with --layers")
        feats, _ = self.session.run(None, {"waveform": np.ascontiguousarray(batch.numpy(), dtype=np.float32),
                                           "lengths": lengths.numpy().astype(np.int64)})
        return torch.from_numpy(feats[[self.layers.index(i) for i in layers]])

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "dtype": "int8" if self.quantize == "int8" else "float32", "attention": None}


def load_onnx_backend(path: str | os.PathLike, device: str | torch.device = "cpu",
                      dtype: str | torch.dtype = "float32") -> OnnxBackend:
    """:class:`OnnxBackend` after checking the options that do not apply to it."""
    if torch.device(device).type != "cpu":
        raise ExtractionError(f"--backend onnxruntime runs on the CPU execution provider; --device {device} is "
                              f"for the torch backend")
    if dtype not in ("float32", "auto", torch.float32):
        raise ExtractionError(f"--dtype {dtype}: an ONNX graph's precision is fixed when it is exported "
                              f"(emotion2vec export --quantize int8); use --dtype float32")
    return OnnxBackend(path)
