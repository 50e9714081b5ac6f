"""Frozen features for the downstream heads: one packed (frames, D) tensor for a whole corpus.

All features are loaded once; a batch gathers its frames and pools them with a segment sum (no padding), so
frame-level probes cost only their real frames. With ``layer="weighted"`` every stored layer is kept, (sum T, L, D),
for a head that learns its own mix of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from . import ProbeError

__all__ = ["PackedFeatures", "parse_layer", "load_features", "concat_features"]


@dataclass
class PackedFeatures:
    """Features of N utterances: ``x`` (sum T, D) with ``offsets``/``lengths`` (N,), or (N, D) when not ``frame``;
    with every layer kept, (sum T, L, D) / (N, L, D)."""

    keys: list[str]
    x: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    frame: bool

    @property
    def dim(self) -> int:
        return int(self.x.shape[-1])

    @property
    def num_layers(self) -> int:
        return int(self.x.shape[1]) if self.x.dim() == 3 else 1

    def to(self, device: torch.device | str) -> "PackedFeatures":
        return PackedFeatures(self.keys, self.x.to(device), self.offsets.to(device), self.lengths.to(device), self.frame)

    def frame_index(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows of ``x`` of utterances ``idx``, the position in ``idx`` of each row, and their lengths."""
        lengths = self.lengths[idx]
        total = int(lengths.sum())
        segments = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), lengths, output_size=total)
        starts = self.offsets[idx] - (torch.cumsum(lengths, 0) - lengths)
        rows = starts[segments] + torch.arange(total, device=idx.device)
        return rows, segments, lengths


def parse_layer(spec: str | int | None) -> int | list[int] | str | None:
    """``None`` | int | ``"mean"`` (average of all stored layers) | ``"a,b,c"`` (average of those layers) |
    ``"weighted"`` (every stored layer, mixed by learned weights)."""
    if spec is None or isinstance(spec, int):
        return spec
    spec = str(spec).strip()
    if spec.lower() in ("mean", "all"):
        return "mean"
    if spec.lower() == "weighted":
        return "weighted"
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ProbeError(f"--layer {spec!r}: expected an integer, a comma-separated list of integers, 'mean' or "
                         f"'weighted'") from None
    if not values:
        raise ProbeError(f"--layer {spec!r}: empty")
    return values[0] if len(values) == 1 else values


def _resolve_negative(layer, num_layers: int | None):
    """-1 = the model's last block etc., when features.json records the model's ``num_layers``."""
    if not num_layers or layer is None or layer in ("mean", "weighted"):
        return layer
    if isinstance(layer, list):
        return [v + num_layers if v < 0 else v for v in layer]
    return layer + num_layers if layer < 0 else layer


def _select_layer(x: np.ndarray, stored: list[int], layer, frame: bool) -> np.ndarray:
    if layer == "weighted":
        if len(stored) <= 1:
            raise ProbeError(f"--layer weighted needs features of several layers (extract with --layers all); "
                             f"these hold only layer {stored}")
        return np.moveaxis(x, 0, 1) if frame else x  # (L, T, D) -> (T, L, D)
    if len(stored) <= 1:
        if layer not in (None, "mean") and (layer if isinstance(layer, list) else [layer]) != stored:
            raise ProbeError(f"--layer {layer}: these features hold only layer {stored}")
        return x
    if layer is None:
        raise ProbeError(f"the features hold layers {stored}: pick one with --layer N, or average with --layer mean / --layer a,b")
    if layer == "mean":
        return x.mean(axis=0)
    wanted = layer if isinstance(layer, list) else [layer]
    missing = [w for w in wanted if w not in stored]
    if missing:
        raise ProbeError(f"--layer: layer(s) {missing} not stored (stored: {stored})")
    if len(wanted) == 1:
        return x[stored.index(wanted[0])]
    return x[[stored.index(w) for w in wanted]].mean(axis=0)


def _missing_error(missing: Sequence[str], store, what: str) -> ProbeError:
    lines = []
    for key in list(missing)[:20]:
        reason = store.errors.get(key) if hasattr(store, "errors") else None
        lines.append(f"  {key}" + (f"  ({reason})" if reason else "  (not in index.tsv)"))
    more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
    return ProbeError(f"{len(missing)} key(s) of the folds have no features in {what}:\n" + "\n".join(lines) + more)


def load_features(directory: str | os.PathLike, keys: Sequence[str], layer=None) -> tuple[PackedFeatures, dict[str, Any]]:
    """Load the features of ``keys`` into one packed float32 tensor. Returns (features, info about the store)."""
    from ..extract.store import FeatureStore, FeatureStoreError

    try:
        store = FeatureStore(directory)
    except FeatureStoreError as e:
        raise ProbeError(str(e)) from None
    missing = [k for k in keys if k not in store]
    if missing:
        raise _missing_error(missing, store, str(directory))
    stored = store.layers
    layer = _resolve_negative(parse_layer(layer), store.meta.get("num_layers"))
    frame = store.granularity == "frame"
    if store.granularity not in ("frame", "utterance"):
        raise ProbeError(f"{directory}: unknown granularity {store.granularity!r}")
    # one preallocated (sum T, D) array, sized from index.tsv's frame counts (no second copy of the corpus)
    lengths = np.asarray([store.frames(k) if frame else 1 for k in keys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    layer_axis = (len(stored),) if layer == "weighted" else ()
    data = np.empty((int(lengths.sum()), *layer_axis, store.dim), dtype=np.float32)
    for key, start, n in zip(keys, offsets, lengths):
        x = _select_layer(store.get(key), stored, layer, frame)
        want = (n, *layer_axis, store.dim) if frame else (*layer_axis, store.dim)
        if x.shape != want:
            raise ProbeError(f"{directory}: features of {key!r} have shape {x.shape}, expected {want} "
                             f"({store.granularity}-level, dim {store.dim} and {n} frames per features.json/index.tsv)")
        if not np.all(np.isfinite(x)):
            raise ProbeError(f"{directory}: features of {key!r} contain NaN or inf")
        data[start:start + n] = x
    x = torch.from_numpy(data)
    info = {"granularity": store.granularity, "dim": int(x.shape[-1]), "stored_layers": stored,
            "layer": layer, "frames": int(lengths.sum()), "empty": [k for k, n in zip(keys, lengths) if n == 0],
            "settings": dict(store.meta)}
    return PackedFeatures(list(keys), x, torch.from_numpy(offsets), torch.from_numpy(lengths), frame), info


def concat_features(a: PackedFeatures, b: PackedFeatures) -> PackedFeatures:
    """The utterances of ``a`` then those of ``b`` (same granularity, layers and dimension; keys may repeat: the
    caller addresses utterances by position)."""
    if a.frame != b.frame or a.x.shape[1:] != b.x.shape[1:]:
        raise ProbeError(f"the test features do not match the training features: {'frame' if b.frame else 'utterance'}"
                         f"-level {tuple(b.x.shape[1:])} against {'frame' if a.frame else 'utterance'}-level "
                         f"{tuple(a.x.shape[1:])} per frame")
    return PackedFeatures(a.keys + b.keys, torch.cat([a.x, b.x]), torch.cat([a.offsets, b.offsets + len(a.x)]),
                          torch.cat([a.lengths, b.lengths]), a.frame)
