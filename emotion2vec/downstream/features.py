"""Frozen features for the downstream heads: one packed (frames, D) tensor for a whole corpus.

All features are loaded once; a batch gathers its frames and pools them with a segment sum (no padding), so
frame-level probes cost only their real frames. With ``layer="weighted"`` every stored layer is kept, (sum T, L, D),
for a head that learns its own mix of them. Utterance-token features (``extract --granularity tokens``) load as
one utterance vector each: the mean of the E token outputs.

Several feature sources of the same utterances are joined by concatenating their vectors (:func:`load_sources`,
:func:`concat_sources`; ``probe --concat-features``): utterance-level vectors side by side; with a frame-level
source, every utterance-level vector is repeated on each of that utterance's frames; frame-level sources must
have the same number of frames per utterance. Frame + utterance-token features of one model are the paper's
"Utt + Frm" input (Table 9); speech + text features the fusion of Table 6.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import ProbeError

__all__ = ["PackedFeatures", "parse_layer", "open_store", "check_outputs_inside", "read_features", "load_features",
           "append_utterances", "concat_sources", "load_sources"]


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


def open_store(directory: str | os.PathLike):
    """The :class:`~emotion2vec.extract.store.FeatureStore` of a feature folder; a path that is missing or a file is
    refused by name."""
    from ..extract.store import FeatureStore, FeatureStoreError

    p = Path(directory)
    if not p.is_dir():
        raise ProbeError(f"{p}: {'a file, not a folder' if p.exists() else 'no such folder'} (a feature folder "
                         f"written by `emotion2vec extract` is expected)")
    index = p / "index.tsv"
    try:
        if index.is_file() and b"\x00" in index.read_bytes():
            raise ProbeError(f"{index}: holds NUL bytes: a corrupt file (re-run `emotion2vec extract`)")
        return FeatureStore(p)
    except FeatureStoreError as e:
        raise ProbeError(str(e)) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ProbeError(f"{p}: cannot read the feature folder: {getattr(e, 'strerror', None) or e}") from None


def _feature_file(store, key: str) -> Path:
    """The file that holds ``key``'s features (for messages)."""
    from ..extract.store import read_index

    if store.meta.get("packed"):
        return store.directory / "features.npy"
    output = next((r.get("output") for r in read_index(store.directory / "index.tsv") if r["key"] == key), None)
    return store.directory / (output or f"{key}.npy")


def check_outputs_inside(store, keys: Sequence[str]) -> None:
    """index.tsv must name each of ``keys``' files inside the feature folder: ``../`` or an absolute path would
    read a file from elsewhere."""
    from ..extract.store import read_index

    if store.meta.get("packed"):
        return
    wanted = set(keys)
    root = store.directory.resolve()
    for row in read_index(store.directory / "index.tsv"):
        if row.get("key") in wanted and row.get("status") == "ok":
            output = str(row.get("output") or "")
            target = (store.directory / output).resolve()
            if not output or os.path.isabs(output) or not target.is_relative_to(root) or target == root:
                raise ProbeError(f"{store.directory / 'index.tsv'}: the features of {row['key']!r} are said to be in "
                                 f"{output!r}, which is not a file inside the feature folder")


def read_features(store, key: str) -> np.ndarray:
    """``key``'s stored array, every way it can be broken named with the key and the file: listed in index.tsv but
    missing, not a .npy file (a corrupt header, a truncated file), an object array, or numbers that are not floating
    point (features are float arrays: an integer array is a file from somewhere else). Call
    :func:`check_outputs_inside` first for the keys read."""
    try:
        x = store.get(key)
    except (OSError, ValueError, EOFError) as e:
        file = _feature_file(store, key)
        if isinstance(e, FileNotFoundError):
            why = "no such file, though index.tsv lists it (re-run `emotion2vec extract` to redo it)"
        elif isinstance(e, OSError):
            why = f"cannot read: {e.strerror or e}"
        elif "Object arrays" in str(e):
            why = "an array of Python objects, not numbers (refused: loading it could run code)"
        elif "pickle" in str(e):
            why = "not a .npy array file (a pickle, or a file of another kind; refused: loading it could run code)"
        else:
            why = f"not a .npy array file ({e})"
        raise ProbeError(f"features of {key!r}: {file}: {why}") from None
    if x.dtype.kind != "f":
        raise ProbeError(f"features of {key!r}: {_feature_file(store, key)}: a {x.dtype} array; features are "
                         f"floating point (float32 from `emotion2vec extract`)")
    return x


def _frames(store, key: str) -> int:
    try:
        n = store.frames(key)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise ProbeError(f"{store.directory / 'index.tsv'}: the frame count of {key!r} is not a whole number >= 0")
    return n


def load_features(directory: str | os.PathLike, keys: Sequence[str], layer=None) -> tuple[PackedFeatures, dict[str, Any]]:
    """Load the features of ``keys`` into one packed float32 tensor. Returns (features, info about the store)."""
    store = open_store(directory)
    missing = [k for k in keys if k not in store]
    if missing:
        raise _missing_error(missing, store, str(directory))
    check_outputs_inside(store, keys)
    stored = store.layers
    layer = _resolve_negative(parse_layer(layer), store.meta.get("num_layers"))
    frame = store.granularity == "frame"
    tokens = store.granularity == "tokens"
    if store.granularity not in ("frame", "utterance", "tokens"):
        raise ProbeError(f"{directory}: unknown granularity {store.granularity!r}")
    # one preallocated (sum T, D) array, sized from index.tsv's frame counts (no second copy of the corpus)
    lengths = np.asarray([_frames(store, k) if frame else 1 for k in keys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    layer_axis = (len(stored),) if layer == "weighted" else ()
    data = np.empty((int(lengths.sum()), *layer_axis, store.dim), dtype=np.float32)
    for key, start, n in zip(keys, offsets, lengths):
        x = read_features(store, key)
        if tokens:  # (L,) E, D -> the mean of the utterance tokens
            if x.shape[-2] == 0:
                raise ProbeError(f"{directory}: features of {key!r} hold no utterance tokens")
            x = x.mean(axis=-2)
        x = _select_layer(x, stored, layer, frame)
        want = (n, *layer_axis, store.dim) if frame else (*layer_axis, store.dim)
        if x.shape != want:
            raise ProbeError(f"{directory}: features of {key!r} have shape {x.shape}, expected {want} "
                             f"({store.granularity}-level, dim {store.dim} and {n} frames per features.json/index.tsv)")
        if not np.all(np.isfinite(x)):
            raise ProbeError(f"features of {key!r}: {_feature_file(store, key)}: NaN or inf values")
        data[start:start + n] = x
    x = torch.from_numpy(data)
    info = {"granularity": store.granularity, "dim": int(x.shape[-1]), "stored_layers": stored,
            "layer": layer, "frames": int(lengths.sum()), "empty": [k for k, n in zip(keys, lengths) if n == 0],
            "settings": dict(store.meta)}
    return PackedFeatures(list(keys), x, torch.from_numpy(offsets), torch.from_numpy(lengths), frame), info


def append_utterances(a: PackedFeatures, b: PackedFeatures) -> PackedFeatures:
    """The utterances of ``a`` then those of ``b`` (same granularity, layers and dimension; keys may repeat: the
    caller addresses utterances by position)."""
    if a.frame != b.frame or a.x.shape[1:] != b.x.shape[1:]:
        raise ProbeError(f"the test features do not match the training features: {'frame' if b.frame else 'utterance'}"
                         f"-level {tuple(b.x.shape[1:])} against {'frame' if a.frame else 'utterance'}-level "
                         f"{tuple(a.x.shape[1:])} per frame")
    return PackedFeatures(a.keys + b.keys, torch.cat([a.x, b.x]), torch.cat([a.offsets, b.offsets + len(a.x)]),
                          torch.cat([a.lengths, b.lengths]), a.frame)


def concat_sources(parts: Sequence[PackedFeatures], names: Sequence[str] = ()) -> PackedFeatures:
    """The features of the same utterances from several sources, concatenated along the feature axis in the
    given order: (N, D1 + D2 + ...) when every source is utterance-level; with frame-level sources, (sum T, ...) on
    their frames, each utterance-level vector repeated on every frame of its utterance. Frame-level sources must
    agree on every utterance's frame count (the mismatches are listed by key). ``names`` name the sources in
    errors."""
    names = list(names) or [f"source {i + 1}" for i in range(len(parts))]
    first = parts[0]
    for p, name in zip(parts[1:], names[1:]):
        if p.keys != first.keys:
            raise ProbeError(f"{name} holds other utterances than {names[0]} (the sources must be loaded for the "
                             f"same keys)")
    if any(p.x.dim() == 3 for p in parts):
        raise ProbeError("--layer weighted keeps every layer of one source: it does not go with concatenated "
                         "feature sources (pick a layer, or average with --layer mean)")
    frames = [(p, name) for p, name in zip(parts, names) if p.frame]
    if not frames:
        return PackedFeatures(first.keys, torch.cat([p.x for p in parts], dim=1), first.offsets, first.lengths, False)
    ref, ref_name = frames[0]
    for p, name in frames[1:]:
        bad = (p.lengths != ref.lengths).nonzero().flatten().tolist()
        if bad:
            listed = ", ".join(f"{ref.keys[i]!r} ({int(ref.lengths[i])} vs {int(p.lengths[i])})" for i in bad[:10])
            raise ProbeError(f"{len(bad)} utterance(s) have other frame counts in {name} than in {ref_name}, e.g. "
                             f"{listed}: frame-level sources must share the frame rate (extract both from models "
                             f"with the same frame rate, or concatenate an utterance-level source)")
    total = int(ref.lengths.sum())
    offsets = torch.cumsum(ref.lengths, 0) - ref.lengths  # of the joined rows
    segments = torch.repeat_interleave(torch.arange(len(ref.keys)), ref.lengths, output_size=total)
    within = torch.arange(total) - offsets[segments]  # frame index inside its utterance
    pieces = [p.x[p.offsets[segments] + within] if p.frame else p.x[segments] for p in parts]
    return PackedFeatures(first.keys, torch.cat(pieces, dim=1), offsets, ref.lengths.clone(), True)


def load_sources(directory: str | os.PathLike, keys: Sequence[str], layer=None,
                 concat: Sequence[str | os.PathLike] = (), concat_layer=None) -> tuple[PackedFeatures, dict[str, Any]]:
    """:func:`load_features` of ``directory``, joined with the features of every folder in ``concat``
    (:func:`concat_sources`; each loaded with ``concat_layer``, default ``layer``). ``info`` is the first source's,
    with the joined granularity, dimension and frame count, and ``concat``: per added source its folder,
    granularity, dimension, layer and settings."""
    given = [Path(directory).resolve(), *(Path(c).resolve() for c in concat)]
    twice = sorted({str(c) for c in concat if given.count(Path(c).resolve()) > 1})
    if twice:
        raise ProbeError(f"--concat-features {', '.join(twice)}: a feature folder given twice (with --features or "
                         f"another --concat-features) would join the same vectors twice")
    packed, info = load_features(directory, keys, layer)
    if not concat:
        return packed, info
    parts, names, added = [packed], [str(directory)], []
    for extra in concat:
        p, i = load_features(extra, keys, layer if concat_layer is None else concat_layer)
        parts.append(p)
        names.append(str(extra))
        added.append({"features": str(extra), "granularity": i["granularity"], "dim": i["dim"], "layer": i["layer"],
                      "stored_layers": i["stored_layers"], "settings": i["settings"]})
    joined = concat_sources(parts, names)
    info = {**info, "granularity": "frame" if joined.frame else info["granularity"], "dim": joined.dim,
            "frames": int(joined.lengths.sum()), "concat": added,
            "empty": [k for k, n in zip(keys, joined.lengths.tolist()) if n == 0]}
    return joined, info
