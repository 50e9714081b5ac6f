"""Trained models run on audio or features held in memory: the one place ``evaluate``, ``robustness`` and
``finetune --test-data`` turn waveforms into predictions.

:func:`pack` lays out pooled extractor outputs exactly as :func:`emotion2vec.downstream.features.load_features`
lays out a feature folder (the same layer choice), so a head sees what it saw in training; :func:`predict` gives
the task's predictions (the training loss's activation: softmax, sigmoid for binary cross-entropy, the values for
regression) and :func:`hidden` the pooled hidden vector the head's output layer reads.

:class:`FeatureExtractor` recomputes a probe head's features from waveforms with the settings its feature folder
recorded (``features.json``: checkpoint, layers, granularity, dtype, attention, chunk length), through the batched
extraction engine. :class:`ModelPredictor` runs a model that carries its own head -- an export of ``emotion2vec
finetune``, an emotion2vec+ folder, a Hugging Face model with an emotion head (``hf:PATH``, e.g. audeering's
dimensional model) -- on waveforms. :func:`decoded_chunks` decodes data.tsv rows chunk by chunk (16 kHz, not
normalised: each model normalises as it expects).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..downstream.features import PackedFeatures, _select_layer
from ..downstream.heads import Head

__all__ = ["pack", "activation", "predict", "hidden", "feature_source", "FeatureExtractor", "ModelPredictor",
           "decoded_chunks", "CHUNK_UTTERANCES"]

#: utterances decoded together (their versions share the engine's batches)
CHUNK_UTTERANCES = 32

#: frames per forward pass of a head
EVAL_FRAMES = 1 << 16


def pack(keys: Sequence[str], arrays: Sequence[np.ndarray], stored_layers: list[int], layer: Any,
         granularity: str) -> PackedFeatures:
    """Per-utterance arrays as a feature folder stores them ((T, D) / (D,), with a leading layer axis when several
    layers are stored) -> the packed features of ``layer`` (as the head's meta records it)."""
    frame = granularity == "frame"
    selected = [np.asarray(_select_layer(a, stored_layers, layer, frame), dtype=np.float32) for a in arrays]
    lengths = np.asarray([len(x) if frame else 1 for x in selected], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    x = np.concatenate(selected) if frame else np.stack(selected)
    return PackedFeatures(list(keys), torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(offsets),
                          torch.from_numpy(lengths), frame)


def activation(meta: Mapping[str, Any]):
    """The loss module whose ``activate`` turns the head's outputs into predictions, from a saved head's meta."""
    from ..downstream.losses import make_loss

    task, names = meta["task"], list(meta["names"])
    config = meta.get("config", {})
    c = len(names)
    # class-balanced weights need training counts; any positive counts give the same activation
    dummy = {"categorical": np.arange(c), "regression": np.zeros((1, c))}.get(task, np.eye(c))
    return make_loss(task, meta["loss"], dummy, c, config.get("head", "linear"),
                     arcface_scale=config.get("arcface_scale", 30.0),
                     arcface_margin=config.get("arcface_margin", 0.3))


def _outputs(head: Head, feats: PackedFeatures, idx: Sequence[int] | None, max_frames: int) -> torch.Tensor:
    """The head's outputs on utterances ``idx`` of ``feats`` (None: all), computed on the features' device."""
    from ..downstream.training import _outputs as head_outputs

    device = feats.x.device
    positions = torch.arange(len(feats.keys)) if idx is None else torch.as_tensor(np.asarray(idx, dtype=np.int64))
    head.to(device)
    try:
        return head_outputs(head, feats, positions.to(device), max_frames)
    finally:
        head.cpu()


def predict(head: Head, meta: Mapping[str, Any], feats: PackedFeatures, idx: Sequence[int] | None = None,
            max_frames: int = EVAL_FRAMES) -> np.ndarray:
    """(n, C) class probabilities or (n, K) values of ``head`` on utterances ``idx`` of ``feats`` (None: all)."""
    return activation(meta).activate(_outputs(head, feats, idx, max_frames)).cpu().numpy()


def hidden(head: Head, feats: PackedFeatures, idx: Sequence[int] | None = None,
           max_frames: int = EVAL_FRAMES) -> np.ndarray:
    """(n, H) the pooled hidden vectors (the input of the head's output layer) of utterances ``idx`` (None: all)."""
    captured: list[torch.Tensor] = []
    handle = head.output.register_forward_hook(lambda module, args, out: captured.append(args[0].detach()))
    try:
        _outputs(head, feats, idx, max_frames)
    finally:
        handle.remove()
    return torch.cat(captured).float().cpu().numpy()


def feature_source(meta: Mapping[str, Any], run_dir, checkpoint: str | None = None
                   ) -> tuple[str, dict[str, Any], list[str]]:
    """(checkpoint to load, the feature settings, warnings) of a saved head's features (``meta``: the head's), to
    recompute them from waveforms; ``checkpoint`` replaces the recorded one (a moved file)."""
    from pathlib import Path

    from . import AnalysisError
    from ..extract.run import checkpoint_stamp

    settings = meta.get("feature_settings") or {}
    if meta.get("concat"):
        raise AnalysisError(f"{run_dir}: the heads read several feature sources joined (--concat-features); "
                            f"recomputing them from audio needs one feature source (use a probe of one feature "
                            f"source)")
    if not settings.get("checkpoint"):
        raise AnalysisError(f"{run_dir}: the saved heads do not record the feature settings (features.json); re-run "
                            f"the probe with this version, then this command")
    if settings.get("granularity") not in ("frame", "utterance"):
        raise AnalysisError(f"{run_dir}: features of granularity {settings.get('granularity')!r}: only frame or "
                            f"utterance features are recomputed from audio")
    recorded = str(settings["checkpoint"])
    source = checkpoint or recorded
    warnings = []
    named = source in _NAMED_SOURCES or source.startswith(("opensmile:", "hf:"))
    if not named:
        if not Path(source).exists():
            raise AnalysisError(f"the feature source {source} recorded in the features.json of the probe's features "
                                f"({meta.get('source')}) is missing"
                                + (" (--checkpoint)" if checkpoint else "")
                                + ": pass --checkpoint PATH to the same weights, or re-extract the features with an "
                                  "available checkpoint and re-run the probe, then this command")
        stamp = settings.get("checkpoint_stamp")
        if stamp and checkpoint_stamp(source) != stamp:
            warnings.append(f"{source} differs in size or modification time from the checkpoint the features were "
                            f"extracted with ({recorded}): the predictions use the file given now, and may differ "
                            f"from the probe's")
    return source, settings, warnings


_NAMED_SOURCES = ("fbank",)


class FeatureExtractor:
    """Waveforms -> packed features laid out as a probe head's training features (``meta``: the saved head's; the
    feature ``settings`` its feature folder recorded; ``source``: the checkpoint to load)."""

    def __init__(self, source: str, settings: Mapping[str, Any], meta: Mapping[str, Any], device: str = "cpu",
                 trust: bool = False, max_tokens: int | None = None):
        from ..extract.backends import load_backend
        from ..extract.engine import BatchedForward

        onnx = settings.get("backend") == "onnxruntime"
        self.backend = load_backend(source, device, "float32" if onnx else settings.get("dtype", "float32"), trust,
                                    attention=settings.get("attention") or "sdpa",
                                    backend="onnxruntime" if onnx else None)
        self.layers = list(settings.get("layers") or [self.backend.num_layers - 1])
        self.engine = BatchedForward(self.backend, self.layers, max_tokens, float(settings.get("chunk_seconds", 30.0)))
        self.granularity = settings["granularity"]
        self.stored, self.layer = list(meta["stored_layers"]), meta["layer"]

    def __call__(self, keys: list[str], wavs: list[np.ndarray]) -> PackedFeatures:
        from ..extract.engine import pool

        feats = self.engine([self.engine.prepare(w) for w in wavs])
        arrays = [pool(f, self.granularity, len(self.layers) == 1) for f in feats]
        return pack(keys, arrays, self.stored, self.layer, self.granularity)


class ModelPredictor:
    """A model with its own head (see the module docstring) on raw 16 kHz waveforms: ``__call__(wavs)`` -> (N, C)
    class probabilities or (N, K) values, in the order of ``names`` (the head's English labels or targets; labels a
    head never predicts, emotion2vec+'s ``unuse*``, left out). ``task``: categorical, multilabel or regression (the
    head's activation)."""

    def __init__(self, spec: str, device: str = "cpu", trust: bool = False, max_tokens: int | None = None,
                 chunk_seconds: float = 30.0):
        import os

        from ..extract.backends import ModelBackend
        from ..extract.engine import BatchedForward
        from ..models.upstream import load_upstream
        from ..recognize.recognizer import Recognizer
        from . import AnalysisError

        model, info = load_upstream(os.fspath(spec), trust=trust)
        if info.classifier is None:
            raise AnalysisError(f"{spec}: no classification or regression head in this model (it gives features: "
                                f"probe them, or give a probe run, a fine-tuned model, an emotion2vec+ folder or a "
                                f"Hugging Face model with an emotion head)")
        self.recognizer = Recognizer.from_spec(info.classifier, model.cfg.num_layers, model.cfg.embed_dim, str(spec))
        self.info = info
        dev = torch.device(device)
        self.engine = BatchedForward(ModelBackend(model, dev, torch.float32, description=str(spec)),
                                     [self.recognizer.layer], max_tokens, chunk_seconds)
        self.recognizer.to(dev)
        r = self.recognizer
        self.task = {"identity": "regression", "sigmoid": "multilabel"}.get(r.activation, "categorical")
        self.columns = list(range(len(r.labels))) if r.regression else r.shown
        self.names = list(r.labels) if r.regression else r.display_labels
        self.config = dict(info.classifier.config)

    def vectors(self, wavs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(the mean over frames of the layer the head reads (n, D), the vector its output layer reads (n, H))."""
        feats = self.engine([self.engine.prepare(np.asarray(w, dtype=np.float32)) for w in wavs])
        head = self.recognizer.head
        output = getattr(getattr(head, "head", None), "output", None) or getattr(head, "linear")
        captured: list[torch.Tensor] = []
        handle = output.register_forward_hook(lambda module, args, out: captured.append(args[0].detach()))
        raw = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in wavs] if self.recognizer.needs_waveforms \
            else None
        try:
            self.recognizer.probabilities([f[0] for f in feats], raw)
        finally:
            handle.remove()
        inputs = np.stack([f[0].float().mean(0).numpy() for f in feats])
        return inputs, torch.cat(captured).float().cpu().numpy()

    def __call__(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        feats = self.engine([self.engine.prepare(np.asarray(w, dtype=np.float32)) for w in wavs])
        raw = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in wavs] if self.recognizer.needs_waveforms \
            else None
        out = self.recognizer.probabilities([f[0] for f in feats], raw)
        return np.asarray(out, dtype=np.float64)[:, self.columns]


def decoded_chunks(keys: Sequence[str], rows: Mapping[str, Mapping[str, Any]], num_workers: int = 0,
                   chunk: int = CHUNK_UTTERANCES):
    """Yield (positions into ``keys``, their 16 kHz waveforms as float32 numpy) chunk by chunk; an unreadable file is
    an :class:`~emotion2vec.analysis.AnalysisError` naming it."""
    from ..extract.inputs import Item, decoded_batches
    from . import AnalysisError

    items = [Item(k, rows[k]["path"], int(rows[k]["channel"]) if str(rows[k].get("channel") or "").strip() else None)
             for k in keys]
    chunks = [list(range(i, min(i + chunk, len(items)))) for i in range(0, len(items), chunk)]
    for positions, decoded in zip(chunks, decoded_batches(items, chunks, normalize=False, num_workers=num_workers)):
        errors = [f"{items[i].path}: {err}" for i, _, err in decoded if err is not None]
        if errors:
            raise AnalysisError(f"{len(errors)} file(s) cannot be read: " + "; ".join(errors[:5]))
        by_index = {i: wav.numpy() for i, wav, _ in decoded}
        yield positions, [by_index[i] for i in positions]
