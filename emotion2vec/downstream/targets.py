"""Training targets of each task, read from ``data.tsv`` rows (numpy only; the training loop makes tensors).

``categorical``  ``label`` -> class index (N,).
``soft``         ``votes`` (``angry:2,neutral:1``) -> the vote distribution over the classes (N, C), rows summing to 1.
                 The classes are every label that received a vote anywhere in the corpus (sorted). A row without
                 votes gets its ``label`` as a one-hot distribution (counted in the notes). The categorical
                 metrics of a soft run are scored against ``label`` where it is one of the classes, else against
                 the distribution's largest share.
``multilabel``   the same distribution -> 0/1 indicators (N, C): a class is true when it holds more than 1/C of
                 the row's votes (EMO-SUPERB's rule).
``regression``   the named float columns (``--targets arousal,valence``) -> (N, K); every value must be a finite
                 number (the error names the key, column and value).

:func:`apply_label_map` renames labels (and vote labels) for cross-corpus work; a label mapped to the empty string
drops its rows (and its votes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..io.manifests import format_votes, parse_votes
from . import ProbeError

__all__ = ["Targets", "vote_classes", "build_targets", "apply_label_map", "regression_columns"]

MAX_LISTED = 20


@dataclass
class Targets:
    """What a head learns for ``keys``: ``y`` as the loss consumes it, ``hard`` the class index of the categorical
    metrics (categorical and soft runs), ``names`` the classes or regression targets."""

    task: str
    names: list[str]
    keys: list[str]
    y: np.ndarray      # categorical (N,) int64; soft (N, C) shares; multilabel (N, C) 0/1; regression (N, K)
    hard: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def select(self, idx: Sequence[int]) -> "Targets":
        idx = np.asarray(idx, dtype=np.int64)
        return Targets(self.task, self.names, [self.keys[i] for i in idx], self.y[idx],
                       None if self.hard is None else self.hard[idx], list(self.notes))


def _listing(head: str, lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return head + "\n  " + "\n  ".join(lines[:MAX_LISTED]) + more


def _votes(row: Mapping) -> dict[str, float]:
    try:
        return parse_votes(str(row.get("votes", "") or ""))
    except ValueError as e:  # read_data_tsv checks the column; rows built in memory may still be wrong
        raise ProbeError(f"key {row['key']!r}: {e}") from None


def vote_classes(rows: Sequence[Mapping]) -> list[str]:
    """Every label that received a vote in ``rows``, sorted; refused when no row has votes."""
    classes = sorted({label for r in rows for label, count in _votes(r).items() if count > 0})
    if not classes:
        raise ProbeError("soft and multi-label targets need a 'votes' column with raters' votes in data.tsv "
                         "(e.g. 'angry:2,neutral:1'; `emotion2vec prepare` writes it for IEMOCAP, MSP-Podcast and "
                         "CREMA-D); this corpus has none")
    return classes


def regression_columns(rows: Sequence[Mapping]) -> list[str]:
    """Columns of ``rows`` whose every value is a number: the candidates for ``--targets``."""
    skip = {"key", "path", "label", "speaker", "gender", "duration", "channel", "split", "votes", "text"}
    out = []
    for col in (rows[0] if rows else {}):
        if col in skip:
            continue
        try:
            if all(math.isfinite(float(r.get(col, ""))) for r in rows):
                out.append(col)
        except (TypeError, ValueError):
            continue
    return out


def apply_label_map(rows: Sequence[Mapping], mapping: Mapping[str, str]) -> tuple[list[dict], dict[str, int]]:
    """Rename ``label`` and vote labels by ``mapping``; rows whose label maps to '' are dropped. -> (rows, number
    of dropped rows per original label)."""
    if not mapping:
        return [dict(r) for r in rows], {}
    out, dropped = [], {}
    for r in rows:
        label = mapping.get(str(r["label"]).lower(), r["label"])
        if label == "":
            dropped[r["label"]] = dropped.get(r["label"], 0) + 1
            continue
        row = {**r, "label": label}
        if str(r.get("votes", "")).strip():
            votes: dict[str, float] = {}
            for name, count in _votes(r).items():
                new = mapping.get(name.lower(), name)
                if new:
                    votes[new] = votes.get(new, 0.0) + count
            row["votes"] = format_votes(votes)
        out.append(row)
    return out, dropped


def _distribution(row: Mapping, classes: list[str], index: dict[str, int]) -> tuple[np.ndarray, bool]:
    """(C,) vote shares of ``row``; (one-hot of the label, True) when it has no votes."""
    dist = np.zeros(len(classes))
    votes = _votes(row)
    outside = sorted(label for label, c in votes.items() if c > 0 and label not in index)
    if outside:
        raise ProbeError(f"key {row['key']!r}: votes for {', '.join(outside)}, which are not among the classes "
                         f"{classes} (map them with --label-map)")
    for label, count in votes.items():
        dist[index[label]] += count
    if dist.sum() > 0:
        return dist / dist.sum(), False
    if row["label"] not in index:
        raise ProbeError(f"key {row['key']!r} has no votes and its label {row['label']!r} is not among the classes "
                         f"{classes}")
    dist[index[row["label"]]] = 1.0
    return dist, True


def build_targets(task: str, rows: Sequence[Mapping], names: Sequence[str], where: str = "data.tsv") -> Targets:
    """Targets of ``rows`` (in order) for ``task`` over ``names`` (classes, or the regression columns)."""
    names = list(names)
    keys = [str(r["key"]) for r in rows]
    notes: list[str] = []
    if task == "regression":
        missing = [c for c in names if rows and c not in rows[0]]
        if missing:
            available = regression_columns(rows)
            raise ProbeError(f"{where}: no column {', '.join(repr(c) for c in missing)} for --targets (numeric "
                             f"columns: {', '.join(available) or 'none'})")
        y = np.empty((len(rows), len(names)))
        bad = []
        for i, r in enumerate(rows):
            for k, col in enumerate(names):
                raw = r.get(col, "")
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    value = math.nan
                if not math.isfinite(value):
                    bad.append(f"key {r['key']!r}: {col} {raw!r}")
                y[i, k] = value
        if bad:
            raise ProbeError(_listing(f"{where}: {len(bad)} regression target value(s) are not finite numbers:", bad))
        return Targets(task, names, keys, y, None, notes)
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({str(r["label"]) for r in rows} - set(index)) if task == "categorical" else []
    if unknown:
        raise ProbeError(f"{where}: label(s) {', '.join(unknown)} are not among the classes {names}")
    if task == "categorical":
        y = np.asarray([index[r["label"]] for r in rows], dtype=np.int64)
        return Targets(task, names, keys, y, None, notes)
    if task not in ("soft", "multilabel"):
        raise ProbeError(f"unknown task {task!r}")
    dists, fallback = [], 0
    for r in rows:
        d, used_label = _distribution(r, names, index)
        dists.append(d)
        fallback += used_label
    dist = np.stack(dists) if dists else np.zeros((0, len(names)))
    if fallback:
        notes.append(f"{fallback} utterance(s) without votes: their label is their one-hot distribution")
    hard = np.asarray([index[r["label"]] if r["label"] in index else int(d.argmax()) for r, d in zip(rows, dist)],
                      dtype=np.int64)
    if task == "soft":
        return Targets(task, names, keys, dist, hard, notes)
    return Targets(task, names, keys, (dist > 1.0 / len(names)).astype(np.float64), hard, notes)
