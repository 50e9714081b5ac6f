"""A finished run read back: results.json, the per-utterance predictions and the saved heads.

A probe (``emotion2vec probe``), fine-tuning (``emotion2vec finetune``) or ensemble (``emotion2vec ensemble``) run
directory holds ``results.json`` and ``predictions.tsv`` (one line per test utterance of every fold, the format of
:func:`emotion2vec.downstream.report.predictions_tsv`); a probe also ``valid_predictions.tsv`` (the same for each
fold's valid utterances, scored by the selected epoch's head) and ``heads/<fold>.pt``. :class:`Predictions` holds
one such file as arrays, in the layout the metrics take (:func:`emotion2vec.downstream.metrics.task_metrics`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import AnalysisError

__all__ = ["Predictions", "Run", "load_run", "read_predictions", "with_groups", "VALID_PREDICTIONS"]

#: the valid-set predictions a probe writes beside predictions.tsv
VALID_PREDICTIONS = "valid_predictions.tsv"


@dataclass
class Predictions:
    """Per-utterance outputs of a run: row i is utterance ``keys[i]`` of fold ``folds[i]``.

    ``predicted`` (N, C) class probabilities or (N, K) values; ``target`` as the task's metrics take it
    (categorical (N,) class indices, soft (N, C) vote shares, multilabel (N, C) 0/1, regression (N, K));
    ``hard`` (N,) class index of the ``label`` column (None for regression, or where it is not a class)."""

    task: str
    names: list[str]
    folds: list[str]
    keys: list[str]
    predicted: np.ndarray
    target: np.ndarray
    hard: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, idx: Sequence[int] | np.ndarray) -> "Predictions":
        idx = np.asarray(idx, dtype=np.int64)
        return Predictions(self.task, list(self.names), [self.folds[i] for i in idx], [self.keys[i] for i in idx],
                           self.predicted[idx], self.target[idx], None if self.hard is None else self.hard[idx])

    def fold_names(self) -> list[str]:
        return list(dict.fromkeys(self.folds))

    def in_fold(self, fold: str) -> np.ndarray:
        """Row positions of ``fold``."""
        return np.flatnonzero(np.asarray(self.folds) == fold)

    def labels(self) -> list[str | None]:
        """The class name of each row's ``label`` column (None for regression)."""
        if self.hard is None:
            return [None] * len(self)
        return [self.names[int(i)] for i in self.hard]

    def metrics(self) -> dict[str, Any]:
        """The task's test metrics of these rows (:func:`~emotion2vec.downstream.metrics.task_metrics`)."""
        from ..downstream.metrics import task_metrics

        return task_metrics(self.task, self.predicted, self.target, self.names, self.hard)

    def records(self) -> list[dict[str, Any]]:
        """One dict per row, as :func:`emotion2vec.downstream.report.predictions_tsv` writes them."""
        return [{"fold": f, "key": k, "target": t, "label": label, "predicted": p}
                for f, k, t, label, p in zip(self.folds, self.keys, self.target, self.labels(), self.predicted)]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], task: str, names: Sequence[str]) -> "Predictions":
        """From the records a probe builds (:meth:`emotion2vec.downstream.probe.ProbeResult.predictions`)."""
        records = list(records)
        names = list(names)
        predicted = np.asarray([np.asarray(r["predicted"], dtype=np.float64) for r in records])
        if task == "categorical":
            target = np.asarray([int(r["target"]) for r in records], dtype=np.int64)
        else:
            target = np.asarray([np.asarray(r["target"], dtype=np.float64) for r in records])
        hard = None
        if task == "categorical":
            hard = target
        elif task != "regression" and all(r.get("label") in names for r in records):
            hard = np.asarray([names.index(r["label"]) for r in records], dtype=np.int64)
        return cls(task, names, [str(r["fold"]) for r in records], [str(r["key"]) for r in records],
                   predicted.reshape(len(records), -1), target, hard)


def _columns(task: str, names: Sequence[str]) -> list[str]:
    if task == "regression":
        return ["fold", "key", *(f"true_{n}" for n in names), *(f"pred_{n}" for n in names)]
    cols = ["fold", "key", "label", "prediction", *(f"p_{n}" for n in names)]
    return cols + ([f"t_{n}" for n in names] if task != "categorical" else [])


def read_predictions(path: str | os.PathLike, task: str, names: Sequence[str]) -> Predictions:
    """Read a predictions.tsv of a ``task`` run over ``names`` (classes or regression targets)."""
    path = Path(path)
    names = list(names)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AnalysisError(f"{path}: not found") from None
    want = _columns(task, names)
    if not lines or lines[0].split("\t") != want:
        raise AnalysisError(f"{path}:1: expected the {task} header {' '.join(want)}, got "
                            f"{' '.join(lines[0].split(chr(9))) if lines else 'an empty file'}")
    folds, keys, predicted, target, hard = [], [], [], [], []
    k = len(names)
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(want):
            raise AnalysisError(f"{path}:{lineno}: expected {len(want)} columns, got {len(cells)}")
        folds.append(cells[0])
        keys.append(cells[1])
        numeric = cells[2:] if task == "regression" else cells[4:]
        try:
            values = [float(v) for v in numeric]
        except ValueError:
            raise AnalysisError(f"{path}:{lineno}: a probability or value is not a number") from None
        if not all(math.isfinite(v) for v in values):
            raise AnalysisError(f"{path}:{lineno}: a probability or value is nan or infinite (the run that wrote "
                                f"it diverged, or the file was edited)")
        if task == "regression":
            target.append(values[:k])
            predicted.append(values[k:])
            continue
        predicted.append(values[:k])
        if task != "categorical":
            target.append(values[k:])
        if cells[2] in names:
            hard.append(names.index(cells[2]))
        elif task in ("categorical", "soft"):
            raise AnalysisError(f"{path}:{lineno}: label {cells[2]!r} is not one of the run's classes {names}")
    if not keys:
        raise AnalysisError(f"{path}: no predictions after the header")
    hard_arr = np.asarray(hard, dtype=np.int64) if task != "regression" and len(hard) == len(keys) else None
    target_arr = hard_arr if task == "categorical" else np.asarray(target, dtype=np.float64)
    return Predictions(task, names, folds, keys, np.asarray(predicted, dtype=np.float64), target_arr, hard_arr)


@dataclass
class Run:
    """A finished run directory: ``result`` (results.json), ``test`` (predictions.tsv), ``valid``
    (valid_predictions.tsv, or None when the run has none)."""

    path: Path
    result: dict[str, Any]
    test: Predictions
    valid: Predictions | None

    @property
    def task(self) -> str:
        return self.result.get("task", "categorical")

    @property
    def names(self) -> list[str]:
        return list(self.result.get("targets") or self.result.get("labels") or [])

    @property
    def source(self) -> str:
        return str(self.result.get("source", self.path.name))

    def head_file(self, fold: str) -> Path:
        return self.path / "heads" / f"{fold}.pt"


def load_run(path: str | os.PathLike) -> Run:
    """Read a finished run (its directory or its results.json)."""
    from ..downstream.report import load_result

    path = Path(path)
    if path.suffix == ".json":
        path = path.parent
    result = load_result(path)
    task = result.get("task", "categorical")
    names = list(result.get("targets") or result.get("labels") or [])
    if not names:
        raise AnalysisError(f"{path / 'results.json'}: no classes or targets recorded")
    test = read_predictions(path / "predictions.tsv", task, names)
    valid_path = path / VALID_PREDICTIONS
    valid = read_predictions(valid_path, task, names) if valid_path.exists() else None
    return Run(path, result, test, valid)


def with_groups(path: str | os.PathLike, result: dict[str, Any], resamples: int = 1000) -> dict[str, Any]:
    """``result`` with its fairness and per-speaker entries (:func:`~.fairness.group_analysis`), computed from the
    run's predictions.tsv and its corpus's data.tsv when results.json has none (fine-tuning runs, older probes);
    unchanged when it has them or when those files cannot be read."""
    from ..errors import Emotion2VecError
    from ..io.manifests import read_data_tsv
    from .fairness import group_analysis

    cross = result.get("cross_corpus")
    data = cross["test_data"] if cross else result.get("data")
    if "groups" in result or not data:
        return result
    try:
        run = load_run(path)
        rows = {r["key"]: r for r in read_data_tsv(data)}
        return {**result, **group_analysis(run.test, rows, resamples=resamples)}
    except (Emotion2VecError, OSError):
        return result
