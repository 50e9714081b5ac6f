"""Saved heads (:func:`emotion2vec.downstream.heads.load_head`) run on features computed in memory.

:func:`pack` lays out pooled extractor outputs exactly as :func:`emotion2vec.downstream.features.load_features`
lays out a feature folder (the same layer choice), so a head sees what it saw in training; :func:`predict` gives
the task's predictions (the training loss's activation: softmax, sigmoid for binary cross-entropy, the values for
regression) and :func:`hidden` the pooled hidden vector the head's output layer reads.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..downstream.features import PackedFeatures, _select_layer
from ..downstream.heads import Head

__all__ = ["pack", "activation", "predict", "hidden"]

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


def fold_predictions(feats: PackedFeatures, targets,
                     folds: Sequence[tuple[str, Head, Mapping[str, Any], Sequence[int]]]):
    """:class:`~.runs.Predictions` of each fold's head on its own positions of ``feats`` / ``targets``
    (:class:`~emotion2vec.downstream.targets.Targets`); ``folds``: (fold name, head, its meta, positions)."""
    from .runs import Predictions

    names, fold_of, idx, predicted = list(targets.names), [], [], []
    for name, head, meta, positions in folds:
        if len(positions):
            predicted.append(predict(head, meta, feats, positions))
            idx += list(positions)
            fold_of += [name] * len(positions)
    idx_arr = np.asarray(idx, dtype=np.int64)
    hard = targets.hard[idx_arr] if targets.hard is not None else (
        targets.y[idx_arr] if targets.task == "categorical" else None)
    width = len(names)
    return Predictions(targets.task, names, fold_of, [feats.keys[i] for i in idx],
                       np.concatenate(predicted) if predicted else np.zeros((0, width)), targets.y[idx_arr], hard)
