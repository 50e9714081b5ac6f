"""``emotion2vec export``: a checkpoint as an ONNX graph for ONNX Runtime (:mod:`.onnx` runs it).

The graph takes padded waveforms and their lengths and returns the chosen blocks' outputs with each row's frame
count (layout and metadata: :mod:`.onnx`). The padding is handled inside the graph as in torch: the frame mask
follows from the lengths, padded frames are zeroed before every positional convolution and padded keys get -inf in
the attention, so a batch gives the features of each input alone (to float rounding). Attention is the explicit
fp32-softmax form.

``quantize="int8"`` applies ONNX Runtime's dynamic quantisation to the matrix multiplies that hold weights (the
linear layers of the projection and of every block): int8 weights per output channel, activations quantised per
call. The convolutions (waveform CNN, positional encoder) stay fp32.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..io.audio import SAMPLE_RATE
from ..io.atomic import writing
from . import ExtractionError
from .engine import parse_layers
from .onnx import require

__all__ = ["export_onnx", "QUANTIZE_CHOICES", "OPSET"]

QUANTIZE_CHOICES = ("none", "int8")
OPSET = 17


class _FeatureGraph(nn.Module):
    """(waveform (B, N), lengths (B,)) -> (features (L, B, T, D), frames (B,)): what the ONNX graph computes."""

    def __init__(self, model, layers: list[int]):
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        feats = m.feature_projection(m.feature_extractor(waveform))  # (B, T, D)
        frames = m.feature_extractor.output_lengths(lengths)
        padding = torch.arange(feats.shape[1], device=feats.device)[None, :] >= frames[:, None]  # always masked
        out = m.encoder(feats, padding, collect_layers=self.layers, collect_ffn=())
        E = m.encoder.num_extra_tokens
        return torch.stack([out.layer_outputs[i][:, E:] for i in self.layers]), frames


def _quantizable_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight (an initializer): the linear layers."""
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    onnx = require("onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    with open(path, "wb") as f:  # a temporary file, moved into place by the caller once it is on disk
        f.write(model.SerializeToString())
        f.flush()
        os.fsync(f.fileno())


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, layers: str | int | Sequence[int] = -1,
                quantize: str = "none", trust: bool = False, preset_name: str | None = None,
                check_seconds: float = 2.0) -> dict[str, Any]:
    """Export ``checkpoint`` (anything :func:`~emotion2vec.models.checkpoint.load_model` reads) to ``out``.

    ``layers``: blocks whose outputs the graph returns (``-1``, ``"all"``, ``"i,j"``, as ``extract --layers``).
    ``quantize``: ``"none"`` or ``"int8"``. The written graph is checked against torch on a padded batch of two
    ``check_seconds`` waveforms. Returns {"path", "layers", "quantize", "bytes", "max_abs_error", "matmuls_int8"}.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ExtractionError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    require("onnx")
    ort = require("onnxruntime")
    from ..models.checkpoint import load_model
    from ..models.encoder import Emotion2VecModel

    model, ckpt = load_model(checkpoint, trust=trust, preset_name=preset_name, with_decoder=False)
    if not isinstance(model, Emotion2VecModel):
        raise ExtractionError(f"{checkpoint}: ONNX export supports emotion2vec / data2vec 2.0 models, not "
                              f"{type(model).__name__}")
    model = model.float().eval().set_attention_implementation("eager")
    layer_ids = parse_layers(layers, model.cfg.num_layers)
    graph = _FeatureGraph(model, layer_ids).eval()

    n = max(int(check_seconds * SAMPLE_RATE), model.cfg.receptive_field * 4)
    gen = torch.Generator().manual_seed(0)
    example = (torch.randn(2, n, generator=gen), torch.tensor([n, (3 * n) // 4]))
    out = Path(out)
    meta = {"emotion2vec.config": json.dumps(model.cfg.to_dict()), "emotion2vec.layers": json.dumps(layer_ids),
            "emotion2vec.quantize": quantize, "emotion2vec.source": f"{checkpoint} ({ckpt.source})"}
    with writing(out):  # a full disk or a read-only folder: "cannot write OUT: reason"
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp = os.path.abspath(tmp)  # the quantiser runs with the working directory changed (below)
            fp32 = Path(tmp) / "fp32.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                # the tracer warns about parameter shapes and python constants (static by construction) and about the
                # TorchScript exporter being legacy (the dynamo exporter needs onnxscript; this one needs nothing more)
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, example, str(fp32), dynamo=False, opset_version=OPSET,
                                  input_names=["waveform", "lengths"], output_names=["features", "frames"],
                                  dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                                "features": {1: "batch", 2: "time"}, "frames": {0: "batch"}})
            int8: list[str] = []
            if quantize == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                int8 = _quantizable_matmuls(fp32)
                final = Path(tmp) / "int8.onnx"
                root = logging.getLogger()
                root.addFilter(_no_preprocessing_advice)  # its shape pre-pass fails on dynamic lengths; not needed
                # ONNX Runtime's shape inference saves a debug copy of the graph into the working directory when it
                # fails (it does on dynamic lengths): run it inside the temporary folder so that nothing is left behind
                cwd = os.getcwd()
                os.chdir(tmp)
                try:
                    quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8, per_channel=True,
                                     op_types_to_quantize=["MatMul"], nodes_to_quantize=int8)
                finally:
                    os.chdir(cwd)
                    root.removeFilter(_no_preprocessing_advice)
            else:
                final = fp32
            _set_metadata(final, meta)
            os.replace(final, out)

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got, _ = session.run(None, {"waveform": example[0].numpy(), "lengths": example[1].numpy()})
    with torch.no_grad():
        ref, frames = graph(*example)
    error = max(float(np.abs(got[:, b, :f] - ref[:, b, :f].numpy()).max()) for b, f in enumerate(frames.tolist()))
    return {"path": str(out), "layers": layer_ids, "quantize": quantize, "bytes": out.stat().st_size,
            "max_abs_error": error, "matmuls_int8": len(int8)}
