"""What every per-fold run on a prepared corpus shares -- a probe on stored features (:mod:`.probe`), a fine-tuning
run (:mod:`emotion2vec.finetune.run`) and the conversation task (:mod:`.conversation`) -- from the folds to the files.

The steps of such a run and the piece of this module each one uses:
    1. the corpus and its folds (:func:`read_inputs`, :func:`pick_folds`), the class names (:func:`class_names`),
       folds a classifier cannot learn refused (:func:`check_fold_labels`)
    2. the leakage audit (:func:`audit_run`): a broken speaker-independence promise raises before any training
    3. each fold's train / valid / test under the dev rules (:func:`split_folds`): the fold's own valid set, else a
       seeded share of train (:func:`carve_valid`: every kind of run carves the same utterances), else the last
       epoch; or the test set selects (``valid_is_test``)
    4. the fold loop (:func:`run_folds`): the run trains a fold its own way and keeps the epoch with the best valid
       score (:class:`Selection`: ties keep the earlier epoch, patience stops); the loop scores the kept epoch's
       test predictions with a bootstrap interval (:func:`score_test`) and logs one line per fold
    5. results.json (:func:`results_dict`, one :meth:`FoldOutcome.entry` per fold), the test predictions
       (:func:`prediction_records`), the fairness and per-speaker analysis (:func:`add_groups`), and the files
       (:func:`~.report.write_outputs`)
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import ProbeError
from .metrics import (HEADLINE, METRIC_NAMES, bootstrap_ci, format_metric, summarize, summary_metrics,
                      task_metrics)
from .report import RESULTS_FORMAT, RESULTS_VERSION  # results.json's format, read back by report.check_result
from .targets import Targets, vote_classes
from .tasks import is_better

__all__ = ["RESULTS_FORMAT", "RESULTS_VERSION", "read_inputs", "read_rows", "pick_folds", "class_names",
           "check_fold_labels", "audit_run", "carve_valid", "fold_splits", "FoldSplit", "split_folds", "Selection",
           "FoldOutcome", "score_test", "run_folds", "head_entry", "results_dict", "prediction_records", "add_groups"]


Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ 1. corpus, folds
def read_inputs(data_dir: Path, protocol: str | None, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """data.tsv rows and the checked folds (the manifest and folds modules own the formats and their checks)."""
    from ..io.manifests import read_data_tsv
    from .folds import load_folds

    try:
        return read_data_tsv(data_dir / "data.tsv"), load_folds(data_dir, protocol=protocol, seed=seed)
    except ValueError as e:  # ManifestError, FoldsError
        raise ProbeError(str(e)) from None


def read_rows(data_dir: Path) -> list[dict]:
    """data.tsv rows alone (a cross-corpus run's two corpora)."""
    from ..io.manifests import read_data_tsv

    try:
        return read_data_tsv(data_dir / "data.tsv")
    except ValueError as e:
        raise ProbeError(str(e)) from None


def pick_folds(folds: list[dict], spec: str | None, where: str = "") -> list[dict]:
    """The folds named (or numbered from 1) in ``spec`` ("1,3" or "fold1,fold3"); all when empty. A fold named twice
    (``1,fold1``) would be trained and counted twice: refused. ``where`` names the folds' file or run in errors."""
    if not spec:
        return folds
    by_name = {f["name"]: f for f in folds}
    out: list[dict] = []
    given: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in by_name:
            fold = by_name[item]
        elif item.isdigit() and 1 <= int(item) <= len(folds):
            fold = folds[int(item) - 1]
        else:
            raise ProbeError(f"--folds: no fold {item!r}{' in ' + where if where else ''} (folds: {', '.join(by_name)})")
        if fold["name"] in given:
            raise ProbeError(f"--folds {spec}: {given[fold['name']]!r} and {item!r} name fold {fold['name']} twice")
        given[fold["name"]] = item
        out.append(fold)
    return out


def class_names(task: str, fold_spec: Mapping, rows: Sequence[Mapping], targets: Sequence[str] = ()) -> list[str]:
    """What a head predicts: the regression ``targets``, the corpus's labels (categorical: folds.json's, else those
    of data.tsv), or the classes of the votes (soft, multi-label)."""
    if task == "regression":
        return list(targets)
    if task == "categorical":
        return [str(label) for label in fold_spec.get("labels") or sorted({r["label"] for r in rows})]
    return vote_classes(rows)


def check_fold_labels(folds: Sequence[dict], label_of: dict[str, str], allow_unseen: bool = False) -> list[str]:
    """Refuse folds a classifier cannot learn: fewer than two labels in train, or test labels absent from train.

    With ``allow_unseen`` (cross-corpus work) the second case is returned as warnings instead.
    """
    warnings: list[str] = []
    for f in folds:
        train_labels = sorted({label_of[k] for k in f["train"]})
        if len(train_labels) < 2:
            raise ProbeError(f"{f['name']}: the training set holds {len(train_labels)} label(s) "
                             f"({', '.join(train_labels) or 'none'}); a classifier needs at least two")
        unseen = sorted({label_of[k] for k in f["test"]} - set(train_labels))
        if unseen:
            n = sum(label_of[k] in unseen for k in f["test"])
            msg = (f"{f['name']}: {n} test utterance(s) carry label(s) {', '.join(unseen)} that never occur in its "
                   f"training set ({', '.join(train_labels)})")
            if not allow_unseen:
                raise ProbeError(msg + "; the fold cannot score them (check the split, e.g. a speaker regex that "
                                       "captures the emotion), or pass --allow-unseen-test-labels to score anyway")
            warnings.append(msg + " -- scored anyway (--allow-unseen-test-labels)")
    return warnings


# ------------------------------------------------------------------------------------------------ 2. audit
def audit_run(rows: Sequence[Mapping], fold_spec: Mapping, folds: Sequence[Mapping], data_dir: Path,
              audit_audio: bool, log: Log, out: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The leakage audit of the selected ``folds`` (:mod:`.audit`; decoded audio compared across splits when
    ``audit_audio``, hashes cached next to data.tsv), logged as its summary line (the per-fold table goes into
    ``out``/results.md). -> (the audit, its warnings for results.json)."""
    from .audit import HASH_CACHE, audio_hashes, audit_folds

    hashes, unreadable = audio_hashes(rows, data_dir / HASH_CACHE, log) if audit_audio else (None, [])
    audit = audit_folds(rows, {**fold_spec, "folds": list(folds)}, hashes, unreadable)
    log_audit(audit, log, out)
    return audit, [f"leakage audit: {w}" for w in audit["warnings"]]


def log_audit(audit: Mapping[str, Any], log: Log, out: Path | None) -> None:
    """A run prints the audit's summary line and warnings; the per-fold table stays in results.md."""
    from .audit import audit_summary

    log(audit_summary(audit) + (f"\n  (per-fold table: {Path(out) / 'results.md'})" if out is not None else ""))


# ------------------------------------------------------------------------------------------------ 3. splits
def carve_valid(train: Sequence, fraction: float, seed: int, index: int) -> tuple[list, list]:
    """A seeded random ``fraction`` of ``train`` (at least one) as valid. -> (train, valid), each in ``train``'s order.
    Probe, fine-tuning and conversation runs carve the same utterances for the same (seed, fold index)."""
    order = np.random.default_rng([seed, index]).permutation(len(train))
    n_valid = max(1, int(round(fraction * len(train))))
    return [train[j] for j in sorted(order[n_valid:])], [train[j] for j in sorted(order[:n_valid])]


def fold_splits(f: Mapping, index: int, seed: int, valid_fraction: float, valid_is_test: bool
                ) -> tuple[list, list, list, str]:
    """train, valid, test of fold ``f`` (the ``index``-th selected) with the dev rules: the fold's own valid set;
    else a seeded ``valid_fraction`` of train (:func:`carve_valid`); 0 = none (the last epoch is kept); with
    ``valid_is_test`` train + valid train and the test set selects. -> (train, valid, test, a note for the log)."""
    train, valid, test = list(f["train"]), list(f["valid"]), list(f["test"])
    if valid_is_test:
        return train + valid, test, test, " (selecting on test)"
    if not valid and valid_fraction > 0:
        train, valid = carve_valid(train, valid_fraction, seed, index)
        return train, valid, test, f" (valid = random {valid_fraction:.0%} of train)"
    return train, valid, test, "" if valid else " (no valid: last epoch)"


@dataclass
class FoldSplit:
    """One fold after the dev rules: positions of its utterances (or samples) in the run's arrays."""

    name: str
    train: list[int]
    valid: list[int]
    test: list[int]
    note: str = ""  # how the valid set was chosen, for the log


def split_folds(folds: Sequence[Mapping], seed: int, valid_fraction: float, valid_is_test: bool,
                position: Callable[[str, str], int]) -> list[FoldSplit]:
    """Every selected fold's :func:`fold_splits`, on positions: ``position(split, key)`` is the position of a key of
    the fold's ``split`` (a cross-corpus run's test keys are those of the other corpus)."""
    out = []
    for i, f in enumerate(folds):
        positioned = {s: [position(s, k) for k in f[s]] for s in ("train", "valid", "test")}
        train, valid, test, note = fold_splits(positioned, i, seed, valid_fraction, valid_is_test)
        out.append(FoldSplit(f["name"], train, valid, test, note))
    return out


# ------------------------------------------------------------------------------------------------ 4. the fold loop
class Selection:
    """The epoch a fold keeps: the best valid score of ``metric`` (lower is better for losses and errors; ties and
    NaN keep the earlier epoch), stopping after ``patience`` epochs without improvement; and the fold's training
    curves (rounded to 6 decimals as results.json stores them)."""

    def __init__(self, metric: str, patience: int | None = None):
        self.metric, self.patience = metric, patience
        self.best: float | None = None
        self.best_epoch = 0
        self.bad = 0
        self.valid: dict[str, float] = {}
        self.stopped = False
        self.history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
        if metric != "loss":
            self.history[f"valid_{metric}"] = []

    def train_epoch(self, loss: float) -> None:
        self.history["train_loss"].append(round(loss, 6))

    def valid_epoch(self, epoch: int, scores: Mapping[str, float]) -> bool:
        """Record epoch ``epoch``'s valid ``scores``; -> whether it is the best so far (then keep its weights)."""
        score = scores[self.metric]
        if "loss" in scores:
            self.history["valid_loss"].append(round(scores["loss"], 6))
        if self.metric != "loss":
            self.history[f"valid_{self.metric}"].append(round(score, 6))
        if is_better(score, self.best, self.metric):
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.valid = {k: float(v) for k, v in scores.items()}
            return True
        self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            self.stopped = True
        return False

    def kept_epoch(self, epochs_run: int) -> int:
        """The epoch whose weights the fold keeps: the best one, or the last one when no epoch was scored."""
        return self.best_epoch or epochs_run

    def curves(self) -> dict[str, list[float]]:
        return {k: v for k, v in self.history.items() if v}

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores to resume the selection (the curves are stored beside it)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "valid": self.valid,
                "stopped": self.stopped}

    def restore(self, state: Mapping[str, Any], history: Mapping[str, list[float]]) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        self.valid, self.stopped = dict(state["valid"]), state["stopped"]
        self.history = {k: list(v) for k, v in history.items()}


@dataclass
class FoldOutcome:
    """A finished fold: :meth:`entry` is its results.json entry, ``test_keys`` / ``predictions`` its test outputs.

    ``updates`` (optimiser updates of a fine-tuning run) follow ``epochs_run`` in the entry, ``extra`` (the saved head
    or exported model, learned layer weights) follows ``history``; ``model`` is the kept model where the run holds it
    in memory (a probe's head), ``stats`` what the run needs besides the entry (parameter counts)."""

    name: str
    n_train: int
    n_valid: int
    n_test: int
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    history: dict[str, list[float]]
    seconds: float
    test_keys: list[str]
    predictions: Any  # (n_test, C) class probabilities / activations, or (n_test, K) regression values
    test: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, Any] | None = None
    model: Any = None
    updates: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "n_train": self.n_train, "n_valid": self.n_valid, "n_test": self.n_test,
                "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, **self.updates, "valid": self.valid,
                "test": self.test, "ci": self.ci, "seconds": round(self.seconds, 3), "history": self.history,
                **self.extra}


def score_test(task: str, predictions: np.ndarray, y: np.ndarray, names: Sequence[str], hard: np.ndarray | None,
               bootstrap: int, seed: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The task's test metrics of ``predictions`` and the headline metric's 95 % bootstrap interval (``bootstrap``
    resamples; 0: none)."""
    metrics = task_metrics(task, predictions, y, list(names), hard)
    ci = bootstrap_ci(task, predictions, y, hard, resamples=bootstrap, seed=seed) if bootstrap else None
    return metrics, ci


def _fold_line(tag: str, split: FoldSplit, o: FoldOutcome, task: str) -> str:
    shown = " ".join(f"{METRIC_NAMES[m]} {format_metric(m, o.test.get(m))}" for m in summary_metrics(task)[:4])
    ci = (f"; {METRIC_NAMES[o.ci['metric']]} 95% CI [{format_metric(o.ci['metric'], o.ci['low'])}, "
          f"{format_metric(o.ci['metric'], o.ci['high'])}]" if o.ci else "")
    updates = f", {o.updates['num_updates']} updates" if "num_updates" in o.updates else ""
    return (f"{tag}: {o.name}: train {o.n_train} valid {o.n_valid} test {o.n_test}{split.note}; best epoch "
            f"{o.best_epoch}/{o.epochs_run}{updates}; test {shown}{ci} ({o.seconds:.1f}s)")


def run_folds(splits: Sequence[FoldSplit], fit: Callable[[int, FoldSplit], FoldOutcome | None], targets: Targets,
              bootstrap: int, seed: int, log: Log, tag: str,
              earlier: Mapping[str, FoldOutcome | None] | None = None,
              keep: Callable[[FoldOutcome], None] | None = None) -> list[FoldOutcome | None]:
    """The fold loop of a run. Per fold: the outcome an earlier run saved (``earlier``, by fold name), else
    ``fit(index, split)`` -- the run's training of the fold, returning the kept epoch's test predictions, or None in
    the processes of a distributed run that do not score -- then its test metrics and interval (:func:`score_test`
    on ``targets``), one log line, and ``keep`` (saving, exporting)."""
    earlier = earlier or {}
    outcomes: list[FoldOutcome | None] = []
    for i, split in enumerate(splits):
        if split.name in earlier:
            log(f"{tag}: {split.name}: finished by an earlier run")
            outcomes.append(earlier[split.name])
            continue
        outcome = fit(i, split)
        if outcome is not None:
            idx = np.asarray(split.test, dtype=np.int64)
            hard = None if targets.hard is None else targets.hard[idx]
            outcome.test, outcome.ci = score_test(targets.task, np.asarray(outcome.predictions), targets.y[idx],
                                                  targets.names, hard, bootstrap, seed)
            log(_fold_line(tag, split, outcome, targets.task))
            if keep is not None:
                keep(outcome)
        outcomes.append(outcome)
    return outcomes


# ------------------------------------------------------------------------------------------------ 5. results
def head_entry(kind: str, config: Any, layer_mix: bool = False) -> dict[str, Any]:
    """results.json's ``head``: its kind, pooling, hidden size, dropout, layer mix (and ArcFace's scale and
    margin); ``config`` is the run's (probe or fine-tuning) configuration."""
    return {"type": kind, "pooling": config.pooling, "hidden": config.hidden, "dropout": config.dropout,
            "layer_mix": layer_mix,
            **({"arcface_scale": config.arcface_scale, "arcface_margin": config.arcface_margin}
               if config.head == "arcface" else {})}


def results_dict(*, corpus: str, protocol: str | None, speaker_independent: bool | None, task: str, loss: str,
                 head: dict[str, Any], names: Sequence[str], source: str, features: str, data: str,
                 granularity: str, dim: int, stored_layers: list[int], layer: Any, feature_settings: dict[str, Any],
                 parameters: int, config: dict[str, Any], device: str, folds: Sequence[FoldOutcome],
                 warnings: list[str], notes: list[str], audit: dict[str, Any] | None, timing: dict[str, float],
                 kind: str | None = None, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """results.json of a per-fold run: the run (``kind`` when it is not a probe, its ``details`` before the folds),
    the fold entries, the mean and std over folds, the summed confusion matrix of class tasks, warnings, notes,
    the leakage audit, timing and versions (see :mod:`.report`)."""
    import torch

    from .. import __version__

    result: dict[str, Any] = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, **({"kind": kind} if kind else {}),
                              "corpus": corpus, "protocol": protocol, "speaker_independent": speaker_independent,
                              "task": task, "loss": loss, "head": head, "targets": list(names),
                              "headline": HEADLINE[task], "source": source, "features": features, "data": data,
                              "granularity": granularity, "dim": dim, "stored_layers": stored_layers, "layer": layer,
                              "feature_settings": feature_settings,
                              "labels": list(names) if task != "regression" else [], "parameters": parameters,
                              "config": config, "device": device, **(details or {}),
                              "folds": [f.entry() for f in folds],
                              "summary": summarize([f.test for f in folds], summary_metrics(task, names)),
                              "warnings": list(warnings), "notes": list(notes), "audit": audit,
                              "timing": {k: round(v, 3) for k, v in timing.items()},
                              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "emotion2vec_version": __version__, "torch_version": torch.__version__}
    if folds and all("confusion" in f.test for f in folds):
        result["confusion"] = np.sum([f.test["confusion"] for f in folds], axis=0).tolist()
    return result


def prediction_records(folds: Sequence[FoldOutcome], targets: Targets, index: Callable[[str], int]
                       ) -> list[dict[str, Any]]:
    """One record per test utterance of every fold (:func:`~.report.predictions_tsv`): fold, key, true targets,
    true label (None for regression), prediction; ``index(key)`` is the utterance's position in ``targets``."""
    hard = targets.y if targets.task == "categorical" else targets.hard  # None for regression
    out = []
    for f in folds:
        for key, p in zip(f.test_keys, f.predictions):
            i = index(key)
            out.append({"fold": f.name, "key": key, "target": targets.y[i],
                        "label": None if hard is None else targets.names[int(hard[i])], "predicted": p})
    return out


def add_groups(result: dict[str, Any], records: Sequence[Mapping[str, Any]], rows_by_key: Mapping[str, Mapping],
               group_by: Sequence[str] | None, speaker_min: int, bootstrap: int, seed: int, log: Log, tag: str):
    """Fairness and per-speaker analysis of the test predictions (:func:`emotion2vec.analysis.fairness.
    group_analysis`) added to ``result`` and logged. -> the test predictions as
    :class:`~emotion2vec.analysis.runs.Predictions`."""
    from ..analysis.fairness import group_analysis, group_summary
    from ..analysis.runs import Predictions

    preds = Predictions.from_records(records, result["task"], result.get("targets") or result["labels"])
    result.update(group_analysis(preds, rows_by_key, group_by, speaker_min, bootstrap, seed))
    for line in group_summary(result):
        log(f"{tag}: {line}")
    return preds
