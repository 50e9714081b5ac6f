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
       score (:class:`Selection`: ties keep the earlier epoch, patience stops; a non-finite training loss stops the
       run with :class:`DivergenceError`, a loss that grows far above its start is a warning); the loop scores the
       kept epoch's test predictions with a bootstrap interval (:func:`score_test`), checks them for collapse
       (:func:`collapse_warnings`: constant or far-off regression outputs, one class for every utterance) and logs
       one line per fold
    5. results.json (:func:`results_dict`, one :meth:`FoldOutcome.entry` per fold), the test predictions
       (:func:`prediction_records`), the fairness and per-speaker analysis (:func:`add_groups`), and the files
       (:func:`~.report.write_outputs`)
"""

from __future__ import annotations

import datetime
import math
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
           "DivergenceError", "DIVERGENCE_FACTOR", "FoldOutcome", "score_test", "collapse_warnings", "run_folds",
           "head_entry", "results_dict", "prediction_records", "valid_records", "write_valid_predictions",
           "add_groups"]

#: a training loss this many times its first epoch's value is reported as diverging
DIVERGENCE_FACTOR = 10.0
#: regression outputs whose standard deviation is below this share of the targets' are (nearly) constant
CONSTANT_SHARE = 1e-3
#: regression outputs whose mean lies this many target standard deviations from the targets' mean are far off
OFFSET_STDS = 10.0


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
class DivergenceError(ProbeError):
    """Training stopped: the training loss became infinite or NaN; the message names the epoch and what to change."""


class Selection:
    """The epoch a fold keeps: the best valid score of ``metric`` (lower is better for losses and errors; ties and
    NaN keep the earlier epoch), stopping after ``patience`` epochs without improvement; and the fold's training
    curves (rounded to 6 decimals as results.json stores them).

    Divergence: a non-finite training loss raises :class:`DivergenceError`; a training loss above
    :data:`DIVERGENCE_FACTOR` times the first epoch's is recorded once in ``warnings``. Both name ``hint``: the
    options of the run that change it."""

    def __init__(self, metric: str, patience: int | None = None, hint: str = ""):
        self.metric, self.patience, self.hint = metric, patience, hint
        self.best: float | None = None
        self.best_epoch = 0
        self.best_step: int | None = None  # the update of the kept weights (runs that score the dev set per update)
        self.bad = 0
        self.valid: dict[str, float] = {}
        self.stopped = False
        self.warnings: list[str] = []
        self.history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
        if metric != "loss":
            self.history[f"valid_{metric}"] = []

    def train_epoch(self, loss: float, epoch: int | None = None) -> None:
        """Record the mean training loss of epoch ``epoch`` (default: the next one)."""
        epoch = epoch or len(self.history["train_loss"]) + 1
        losses = self.history["train_loss"]
        hint = f"; {self.hint}" if self.hint else ""
        if not math.isfinite(loss):
            start = f" (epoch 1: {losses[0]:.4g})" if losses else ""
            raise DivergenceError(f"training diverged: the training loss of epoch {epoch} is {loss}{start}{hint}")
        if losses and not self.warnings and abs(losses[0]) > 0 and loss > DIVERGENCE_FACTOR * abs(losses[0]):
            self.warnings.append(f"training diverged: the training loss rose from {losses[0]:.4g} (epoch 1) to "
                                 f"{loss:.4g} (epoch {epoch}), more than {DIVERGENCE_FACTOR:g} times its start{hint}")
        losses.append(round(loss, 6))

    def check_outputs(self, outputs, epoch: int, what: str = "valid") -> None:
        """Raise :class:`DivergenceError` when the model's ``what`` outputs of epoch ``epoch`` are not all finite."""
        values = np.asarray(outputs, dtype=np.float64)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=tuple(range(1, values.ndim))).sum()) if values.ndim else 1
            raise DivergenceError(f"training diverged: after epoch {epoch} the model's {what} outputs are not finite "
                                  f"for {bad} of {len(values) if values.ndim else 1} utterance(s)"
                                  + (f"; {self.hint}" if self.hint else ""))

    def valid_epoch(self, epoch: int, scores: Mapping[str, float], step: int | None = None) -> bool:
        """Record the valid ``scores`` of epoch ``epoch`` (at update ``step`` of a run that scores the dev set every
        N updates); -> whether they are the best so far (then keep the weights). Patience counts these scorings."""
        score = scores[self.metric]
        if "loss" in scores:
            self.history["valid_loss"].append(round(scores["loss"], 6))
        if self.metric != "loss":
            self.history[f"valid_{self.metric}"].append(round(score, 6))
        if is_better(score, self.best, self.metric):
            self.best, self.best_epoch, self.best_step, self.bad = score, epoch, step, 0
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
        return {"best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step, "bad": self.bad,
                "valid": self.valid, "stopped": self.stopped, "warnings": list(self.warnings)}

    def restore(self, state: Mapping[str, Any], history: Mapping[str, list[float]]) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        self.best_step = state.get("best_step")
        self.valid, self.stopped = dict(state["valid"]), state["stopped"]
        self.warnings = list(state.get("warnings", []))
        self.history = {k: list(v) for k, v in history.items()}


@dataclass
class FoldOutcome:
    """A finished fold: :meth:`entry` is its results.json entry, ``test_keys`` / ``predictions`` its test outputs.

    ``updates`` (optimiser updates of a fine-tuning run) follow ``epochs_run`` in the entry, ``extra`` (the saved head
    or exported model, learned layer weights) follows ``history``; ``model`` is the kept model where the run holds it
    in memory (a probe's head), ``stats`` what the run needs besides the entry (parameter counts). ``valid_keys`` /
    ``valid_predictions``: the kept model's predictions of the fold's valid utterances (valid_predictions.tsv);
    ``warnings``: what the fold's training and its test predictions gave cause to warn about (in the entry and
    results.json's ``warnings``)."""

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
    valid_keys: list[str] = field(default_factory=list)
    valid_predictions: Any = None
    warnings: list[str] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "n_train": self.n_train, "n_valid": self.n_valid, "n_test": self.n_test,
                "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, **self.updates, "valid": self.valid,
                "test": self.test, "ci": self.ci, "seconds": round(self.seconds, 3), "history": self.history,
                **self.extra, **({"warnings": list(self.warnings)} if self.warnings else {})}


def score_test(task: str, predictions: np.ndarray, y: np.ndarray, names: Sequence[str], hard: np.ndarray | None,
               bootstrap: int, seed: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The task's test metrics of ``predictions`` and the headline metric's 95 % bootstrap interval (``bootstrap``
    resamples; 0: none)."""
    metrics = task_metrics(task, predictions, y, list(names), hard)
    ci = bootstrap_ci(task, predictions, y, hard, resamples=bootstrap, seed=seed) if bootstrap else None
    return metrics, ci


def collapse_warnings(task: str, predictions: np.ndarray, y: np.ndarray, names: Sequence[str],
                      hard: np.ndarray | None, hint: str = "") -> list[str]:
    """What is wrong with a set of test predictions that a metric alone hides, each naming ``hint`` (the options to
    change): regression outputs (per target) that are (nearly) constant -- standard deviation below
    :data:`CONSTANT_SHARE` of the targets' -- or whose mean lies more than :data:`OFFSET_STDS` target standard
    deviations from the targets' mean; a classifier that predicts one class for every utterance while the utterances
    carry several labels (one set of classes, for multi-label)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    hint = f"; {hint}" if hint else ""
    out = []
    if len(predictions) < 2:
        return out
    if task == "regression":
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        p = predictions.reshape(len(predictions), -1)
        for k, name in enumerate(names):
            sd_y, sd_p = float(y[:, k].std()), float(p[:, k].std())
            if sd_y == 0:
                continue
            if sd_p < CONSTANT_SHARE * sd_y:
                out.append(f"collapsed predictions: {name} is (nearly) constant over the {len(p)} test utterances "
                           f"(std {sd_p:.3g} against the targets' {sd_y:.3g}){hint}")
            elif abs(p[:, k].mean() - y[:, k].mean()) > OFFSET_STDS * sd_y:
                out.append(f"far-off predictions: {name} averages {p[:, k].mean():.4g} where the targets average "
                           f"{y[:, k].mean():.4g} (std {sd_y:.3g}){hint}")
        return out
    if task == "multilabel":
        chosen = predictions > 1.0 / predictions.shape[1]
        truth = np.asarray(y) > 0.5
        if len({tuple(r) for r in chosen}) == 1 and len({tuple(r) for r in truth}) > 1:
            shown = "+".join(n for n, c in zip(names, chosen[0]) if c) or "no class"
            out.append(f"collapsed predictions: {shown} for every one of the {len(chosen)} test utterances, whose "
                       f"true class sets differ{hint}")
        return out
    truth = np.asarray(y if task == "categorical" else hard)
    winners = predictions.argmax(1)
    if truth.ndim == 1 and len(np.unique(winners)) == 1 and len(np.unique(truth)) > 1:
        out.append(f"collapsed predictions: {names[int(winners[0])]} for every one of the {len(winners)} test "
                   f"utterances, which carry {len(np.unique(truth))} labels{hint}")
    return out


def _fold_line(tag: str, split: FoldSplit, o: FoldOutcome, task: str) -> str:
    shown = " ".join(f"{METRIC_NAMES[m]} {format_metric(m, o.test.get(m))}" for m in summary_metrics(task)[:4])
    ci = (f"; {METRIC_NAMES[o.ci['metric']]} 95% CI [{format_metric(o.ci['metric'], o.ci['low'])}, "
          f"{format_metric(o.ci['metric'], o.ci['high'])}]" if o.ci else "")
    updates = f", {o.updates['num_updates']} updates" if "num_updates" in o.updates else ""
    trained = f"; best epoch {o.best_epoch}/{o.epochs_run}{updates}" if o.epochs_run else ""
    return (f"{tag}: {o.name}: train {o.n_train} valid {o.n_valid} test {o.n_test}{split.note}{trained}; test "
            f"{shown}{ci}" + (f" ({o.seconds:.1f}s)" if o.epochs_run else ""))


def run_folds(splits: Sequence[FoldSplit], fit: Callable[[int, FoldSplit], FoldOutcome | None], targets: Targets,
              bootstrap: int, seed: int, log: Log, tag: str,
              earlier: Mapping[str, FoldOutcome | None] | None = None,
              keep: Callable[[FoldOutcome], None] | None = None, hint: str = "") -> list[FoldOutcome | None]:
    """The fold loop of a run. Per fold: the outcome an earlier run saved (``earlier``, by fold name), else
    ``fit(index, split)`` -- the run's training of the fold, returning the kept epoch's test predictions, or None in
    the processes of a distributed run that do not score -- then its test metrics and interval (:func:`score_test`
    on ``targets``), the collapse check (:func:`collapse_warnings`, naming ``hint``) added to the fold's warnings,
    one log line (and one per warning), and ``keep`` (saving, exporting)."""
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
            outcome.warnings = list(dict.fromkeys(outcome.warnings + collapse_warnings(
                targets.task, np.asarray(outcome.predictions), targets.y[idx], targets.names, hard, hint)))
            log(_fold_line(tag, split, outcome, targets.task))
            for w in outcome.warnings:
                log(f"{tag}: WARNING: {split.name}: {w}")
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
                              "warnings": list(warnings) + [f"{f.name}: {w}" for f in folds for w in f.warnings],
                              "notes": list(notes), "audit": audit,
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


def valid_records(folds: Sequence[FoldOutcome], targets: Targets, index: Callable[[str], int]
                  ) -> list[dict[str, Any]]:
    """:func:`prediction_records` of the kept models' valid predictions (``valid_keys`` / ``valid_predictions``;
    folds without them are left out): the rows of valid_predictions.tsv."""
    shifted = [FoldOutcome(f.name, 0, 0, 0, 0, 0, {}, {}, 0.0, list(f.valid_keys),
                           np.asarray(f.valid_predictions, dtype=np.float64).reshape(len(f.valid_keys), -1))
               for f in folds if f.valid_keys and f.valid_predictions is not None]
    return prediction_records(shifted, targets, index)


def write_valid_predictions(out: Path, folds: Sequence[FoldOutcome], targets: Targets,
                            index: Callable[[str], int]) -> bool:
    """``out``/valid_predictions.tsv (:func:`valid_records`, as predictions.tsv) when any fold has valid predictions;
    -> whether it was written (ensembles read it: ``--search`` and dev scores)."""
    from ..analysis.runs import VALID_PREDICTIONS
    from ..io.atomic import atomic_write_text
    from .report import predictions_tsv

    records = valid_records(folds, targets, index)
    if not records:
        return False
    atomic_write_text(Path(out) / VALID_PREDICTIONS, predictions_tsv(records, targets.names, targets.task))
    return True


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
