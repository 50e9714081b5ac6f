"""The on-disk layout written by ``emotion2vec extract`` and a reader for it.

A feature directory holds
    features.json   {"format": "emotion2vec-features", "version": 2, "granularity": "frame"|"utterance"|"tokens",
                     "layers": [block indices], "dim": D, "frame_rate": 50.0, "packed": bool, "backend": ...,
                     "dtype": the compute dtype, "attention": "sdpa"|"eager", "chunk_seconds": ..., ...}
    index.tsv       header ``key path frames status output offset``; one row per input. ``status`` is ``ok`` or
                    ``error: <reason>``; ``output`` is the .npy (relative to the directory); ``offset`` is the
                    first row in the packed array (empty when not packed).
Per-file mode: ``<key>.npy`` mirrors the key (which mirrors the input's relative path), shaped (T, D) for frame
features, (D,) for utterance features or (E, D) for the E utterance tokens (``tokens``: index.tsv's ``frames`` holds
E); with several layers a leading layer axis: (L, T, D) / (L, D) / (L, E, D).
Packed mode (``--packed``, as the official downstream recipe expects): ``features.npy`` (sum T, D) or
(sum T, L, D), ``features.lengths`` (T per row of index.tsv with status ok, in order).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import Emotion2VecError
from . import SEQUENCE_GRANULARITIES

__all__ = ["FEATURES_FORMAT", "FEATURES_VERSION", "INDEX_COLUMNS", "FeatureStore", "FeatureStoreError", "read_index"]

FEATURES_FORMAT = "emotion2vec-features"
#: 2: features.json records backend, compute dtype, attention implementation and chunk length
FEATURES_VERSION = 2
INDEX_COLUMNS = ("key", "path", "frames", "status", "output", "offset")


class FeatureStoreError(Emotion2VecError, RuntimeError):
    """A feature folder that cannot be read; the message names the file."""


def read_index(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError:
        raise FeatureStoreError(f"{path}: no index.tsv (is this an `emotion2vec extract` output directory?)") from None
    if rows and not set(INDEX_COLUMNS[:4]) <= set(rows[0]):
        raise FeatureStoreError(f"{path}: header must contain {', '.join(INDEX_COLUMNS[:4])}")
    return rows


class FeatureStore:
    """Random access to extracted features by key.

    >>> store = FeatureStore("features/urdu")
    >>> x = store["Angry/SM1_F10_A010"]      # (T, D) frame features or (D,) utterance features
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        meta_path = self.directory / "features.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise FeatureStoreError(f"{meta_path}: missing (is this an `emotion2vec extract` output directory?)") from None
        except json.JSONDecodeError as e:
            raise FeatureStoreError(f"{meta_path}: invalid JSON: {e}") from None
        if self.meta.get("format") != FEATURES_FORMAT:
            raise FeatureStoreError(f"{meta_path}: format is {self.meta.get('format')!r}, not {FEATURES_FORMAT!r}")
        rows = read_index(self.directory / "index.tsv")
        self.errors = {r["key"]: r["status"] for r in rows if r["status"] != "ok"}
        self._rows = {r["key"]: r for r in rows if r["status"] == "ok"}
        self._packed: np.ndarray | None = None

    @property
    def granularity(self) -> str:
        return self.meta["granularity"]

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def keys(self) -> list[str]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.get(key)

    def frames(self, key: str) -> int:
        return int(self._rows[key]["frames"])

    def get(self, key: str, layer: int | None = None) -> np.ndarray:
        """Features of ``key``: (T, D) or (D,). With several stored layers, ``layer`` picks one by its block
        index as listed in ``features.json`` (None returns all, with a leading layer axis)."""
        try:
            row = self._rows[key]
        except KeyError:
            reason = self.errors.get(key)
            raise KeyError(f"{key!r}: {'extraction failed: ' + reason if reason else 'not in ' + str(self.directory)}") from None
        if self.meta.get("packed"):
            if self._packed is None:
                self._packed = np.load(self.directory / "features.npy", mmap_mode="r")
            start = int(row["offset"])
            x = np.asarray(self._packed[start:start + int(row["frames"])])
            if self.granularity == "utterance":
                x = x[0]
            if x.ndim == (3 if self.granularity in SEQUENCE_GRANULARITIES else 2):  # (T, L, D) -> (L, T, D)
                x = np.moveaxis(x, -2, 0)
        else:
            x = np.load(self.directory / row["output"], allow_pickle=False)
        stored = self.layers
        if len(stored) > 1:
            if layer is None:
                return x
            if layer not in stored:
                raise KeyError(f"layer {layer} not stored (stored: {stored})")
            return x[stored.index(layer)]
        if layer is not None and layer not in stored:
            raise KeyError(f"layer {layer} not stored (stored: {stored})")
        return x
