"""Per file, the models' window predictions combined into one pseudo-label.

For a file with windows w = 1..W (one for an utterance no longer than the window) and models m = 1..M, all over the
same C labels:

    p_m        = mean over w of p_{m,w}                 each model's prediction for the file
    p          = mean over m of p_m                     the combined distribution (the soft label)
    label      = argmax p;  confidence = p[label];  margin = p[label] - the second largest p
    agreement  = share of the M x W predictions p_{m,w} whose own argmax is ``label``

With one model and short files the agreement is 1; with several models it is the share that agree with the mean;
over the windows of a long recording it says how stable the emotion is. A file that a model could not read is an
error for the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..extract.inputs import Item
from . import PseudoLabelError
from .predictions import ModelPredictions

__all__ = ["Utterance", "common_labels", "combine"]


@dataclass
class Utterance:
    """One input file and its combined prediction (``probabilities`` over the run's labels; None with ``error``)."""

    key: str
    path: str
    duration: float = 0.0
    probabilities: np.ndarray | None = None
    label: str = ""
    confidence: float = 0.0
    margin: float = 0.0
    agreement: float = 0.0
    windows: int = 0
    model_labels: list[str] = field(default_factory=list)
    error: str | None = None


def common_labels(tables: Sequence[ModelPredictions], models: Sequence[str]) -> list[str]:
    """The labels every model predicts (in the first model's order); models with other label sets are refused."""
    first = tables[0].labels
    for table, model in zip(tables[1:], models[1:]):
        if sorted(table.labels) != sorted(first):
            raise PseudoLabelError(f"{model} predicts {', '.join(table.labels)} but {models[0]} predicts "
                                   f"{', '.join(first)}: the models of one run must share their labels")
    return list(first)


def combine(items: Sequence[Item], tables: Sequence[ModelPredictions], labels: Sequence[str]) -> list[Utterance]:
    """One :class:`Utterance` per item, in order (see the module docstring)."""
    columns = [[t.labels.index(name) for name in labels] for t in tables]
    out: list[Utterance] = []
    for it in items:
        u = Utterance(it.key, it.path)
        error = next((t.errors[it.key] for t in tables if it.key in t.errors), None)
        missing = next((t.name for t in tables if it.key not in t.windows), None)
        if error is not None or missing is not None:
            u.error = error or f"no prediction from model {missing}"
            out.append(u)
            continue
        per_window = [np.stack([p[cols] for _, _, p in t.windows[it.key]]) for t, cols in zip(tables, columns)]
        per_model = np.stack([w.mean(axis=0) for w in per_window])  # (M, C)
        p = per_model.mean(axis=0)
        order = np.argsort(-p, kind="stable")
        best = int(order[0])
        u.probabilities = p
        u.label = labels[best]
        u.confidence = float(p[best])
        u.margin = float(p[best] - p[order[1]]) if len(p) > 1 else float(p[best])
        votes = np.concatenate([w.argmax(axis=1) for w in per_window])
        u.agreement = float(np.mean(votes == best))
        u.windows = len(per_window[0])
        u.model_labels = [labels[int(m.argmax())] for m in per_model]
        u.duration = max(end for _, end, _ in tables[0].windows[it.key])
        out.append(u)
    return out
