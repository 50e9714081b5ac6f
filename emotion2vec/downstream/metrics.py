"""Classification metrics of the speech-emotion literature, computed with scikit-learn.

``compute_metrics`` returns **fractions** (0-1); reports (``results.md``, the cross-corpus table, the console)
print them in **percent** with 2 decimals. Definitions (see the downstream spec, section 5):

- ``wa``  weighted accuracy = overall accuracy = correct / N (``accuracy_score``).
- ``ua``  unweighted accuracy = mean per-class recall over the classes **present in y_true**
  (``balanced_accuracy_score``). A class of ``labels`` that has no test sample in a fold (possible with
  small speaker folds) is left out instead of dividing by zero, as the official recipe's hand-rolled UA did.
- ``wf1`` support-weighted F1 (``f1_score(average="weighted")``), the "F1" of emotion2vec; classes absent from
  y_true have weight 0.
- ``macro_f1`` unweighted mean F1 (EMO-SUPERB / EmoBox headline) over the classes present in y_true **or**
  y_pred, ``zero_division=0``: a class never seen and never predicted has no defined F1 and is left out; a class
  predicted but absent from y_true scores F1 = 0 (it only produced false positives), so spurious predictions
  are penalised; a class present but never predicted scores 0 as well.
- ``confusion`` counts over the full ``labels`` list (rows = true, columns = predicted), so matrices of
  different folds have the same shape and can be summed.

Calibration (categorical and soft): ``ece``, the expected calibration error of the predicted class's probability
(:func:`expected_calibration_error`: 15 equal-width confidence bins, the gap between accuracy and mean confidence in
each bin weighted by its share of utterances; lower is better; reported in percent like the accuracies).

Multi-label (EMO-SUPERB): a class counts as **predicted** when its probability exceeds 1/C (C = number of classes),
and as **true** when it holds more than 1/C of the raters' votes (:func:`multilabel_metrics`): ``macro_f1`` (mean F1
over the classes true or predicted somewhere, as above), ``micro_f1``, per-class precision / recall / F1.

Dimensional (Wagner et al.), per target and averaged over the targets: ``ccc`` (Lin's concordance correlation
coefficient, :func:`ccc`, the one implementation, also behind the CCC loss), ``pearson``, ``mae``.

:func:`task_metrics` scores the test outputs of any task (full, with scikit-learn), :func:`fast_scores` the same
numbers for model selection without scikit-learn's per-call overhead, :func:`bootstrap_ci` a 95 % percentile
interval of a task's headline metric over resampled test utterances.

``summarize`` gives mean and standard deviation over folds; the std is the population std (``ddof=0``, numpy's
default, what SER papers usually report for k-fold results).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

__all__ = ["METRICS", "METRIC_NAMES", "TASK_METRICS", "HEADLINE", "PERCENT_METRICS", "compute_metrics",
           "metrics_from_confusion", "ccc", "regression_metrics", "multilabel_metrics", "multilabel_from_counts",
           "task_metrics", "fast_scores", "bootstrap_ci", "summarize", "summary_metrics", "format_metric",
           "expected_calibration_error", "ECE_BINS"]

#: the scalar metrics of a categorical run, in report order
METRICS = ("wa", "ua", "wf1", "macro_f1")
#: per task: the scalar metrics of the test set, in report order (regression adds ``ccc_<target>`` per target)
TASK_METRICS = {
    "categorical": METRICS + ("ece",),
    "soft": METRICS + ("ml_macro_f1", "ece"),
    "multilabel": ("macro_f1", "micro_f1"),
    "regression": ("ccc", "pearson", "mae"),
}
#: the headline metric of each task (bootstrap intervals, console summary)
HEADLINE = {"categorical": "ua", "soft": "macro_f1", "multilabel": "macro_f1", "regression": "ccc"}
METRIC_NAMES = {"wa": "WA", "ua": "UA", "wf1": "WF1", "macro_f1": "macro-F1", "micro_f1": "micro-F1",
                "ml_macro_f1": "multi-label macro-F1", "ccc": "CCC", "pearson": "Pearson r", "mae": "MAE",
                "loss": "loss", "ece": "ECE"}
#: metrics reported in percent; the others (CCC, Pearson, MAE, loss) as plain numbers with 3 decimals
PERCENT_METRICS = ("wa", "ua", "wf1", "macro_f1", "micro_f1", "ml_macro_f1", "ece")
#: confidence bins of the expected calibration error
ECE_BINS = 15


def format_metric(metric: str, value: float | None) -> str:
    """A metric as logs and tables show it: percent with two decimals, or a plain number (CCC, MAE, loss); – when
    missing or NaN."""
    if value is None or value != value:
        return "–"
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def _indices(values: Iterable[Hashable], labels: Sequence[Hashable], what: str) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        try:
            out.append(index[v])
        except (KeyError, TypeError):
            raise ValueError(f"{what} contains {v!r}, which is not one of the labels {list(labels)}") from None
    return np.asarray(out, dtype=np.int64)


def compute_metrics(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]) -> dict[str, Any]:
    """WA, UA, WF1, macro-F1 (fractions), the confusion matrix over ``labels`` and per-class scores.

    ``y_true`` / ``y_pred`` hold elements of ``labels`` (strings or ints); anything else is a ``ValueError``.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels contain duplicates: {labels}")
    t = _indices(y_true, labels, "y_true")
    p = _indices(y_pred, labels, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} items but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("no samples to score")
    present = np.unique(np.concatenate([t, p]))
    with warnings.catch_warnings():
        # balanced_accuracy_score warns (and drops the class) when y_pred holds a class absent from y_true
        warnings.simplefilter("ignore", UserWarning)
        ua = balanced_accuracy_score(t, p)
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=list(range(len(labels))), average=None, zero_division=0
    )
    in_true = set(np.unique(t).tolist())
    in_pred = set(np.unique(p).tolist())
    per_class = {}
    for i, label in enumerate(labels):
        per_class[str(label)] = {
            "support": int(support[i]),
            "predicted": int((p == i).sum()),
            # recall undefined without true samples, precision undefined without predictions: None, not 0
            "recall": float(rec[i]) if i in in_true else None,
            "precision": float(prec[i]) if i in in_pred else None,
            "f1": float(f1[i]) if (i in in_true or i in in_pred) else None,
        }
    return {
        "wa": float(accuracy_score(t, p)),
        "ua": float(ua),
        "wf1": float(f1_score(t, p, labels=present, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "n": int(len(t)),
        "confusion": confusion_matrix(t, p, labels=list(range(len(labels)))).tolist(),
        "per_class": per_class,
    }


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """WA, UA, WF1 and macro-F1 from a confusion matrix (rows = true), with the same definitions as
    :func:`compute_metrics` but without scikit-learn's per-call overhead (the probe scores every epoch)."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        raise ValueError("no samples to score")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    in_true = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=in_true)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = in_true | (predicted > 0)
    return {
        "wa": float(tp.sum() / n),
        "ua": float(recall[in_true].mean()),
        "wf1": float((f1 * support).sum() / n),
        "macro_f1": float(f1[present].mean()),
    }


def expected_calibration_error(probabilities, truth, bins: int = ECE_BINS) -> float:
    """ECE of class probabilities (N, C) against true class indices (N,): the utterances are binned by the
    probability of their predicted class (``bins`` equal-width bins over [0, 1], a confidence of exactly 1 in the
    last); ECE = sum over bins of (bin size / N) x |accuracy in the bin - mean confidence in the bin|."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(truth, dtype=np.int64)
    if len(p) == 0:
        raise ValueError("no samples to score")
    confidence = p.max(1)
    correct = (p.argmax(1) == t).astype(np.float64)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    gap = np.abs(np.bincount(which, correct, minlength=bins) - np.bincount(which, confidence, minlength=bins))
    return float(gap.sum() / len(p))


# ------------------------------------------------------------------------------------------------- regression
def ccc(x, y, eps: float = 1e-12):
    """Lin's concordance correlation coefficient per column: 2 cov(x, y) / (var x + var y + (mean x - mean y)^2),
    population moments over axis 0. ``x``, ``y``: numpy arrays or torch tensors of the same shape, (N,) or (N, K);
    returns a scalar or (K,) of the same library (differentiable for tensors: the CCC loss is ``1 - ccc``).
    ``eps`` keeps two equal constants at 0 instead of 0/0."""
    mx, my = x.mean(0), y.mean(0)
    dx, dy = x - mx, y - my
    cov = (dx * dy).mean(0)
    return 2 * cov / ((dx * dx).mean(0) + (dy * dy).mean(0) + (mx - my) ** 2 + eps)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (scipy); NaN when either side is constant (r is undefined)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    from scipy.stats import pearsonr

    return float(pearsonr(x, y)[0])


def regression_metrics(y_true, y_pred, names: Sequence[str]) -> dict[str, Any]:
    """CCC, Pearson r and MAE (scikit-learn) per target and their means. ``y_true``, ``y_pred``: (N, K)."""
    from sklearn.metrics import mean_absolute_error

    t = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    if t.shape != p.shape or t.shape[1] != len(names):
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must both be (N, {len(names)})")
    if len(t) < 2:
        raise ValueError("CCC needs at least two samples")
    per = {}
    for k, name in enumerate(names):
        per[str(name)] = {"ccc": float(ccc(t[:, k], p[:, k])), "pearson": _pearson(t[:, k], p[:, k]),
                          "mae": float(mean_absolute_error(t[:, k], p[:, k]))}
    out: dict[str, Any] = {m: float(np.mean([v[m] for v in per.values()])) for m in ("ccc", "pearson", "mae")}
    out.update({f"ccc_{name}": v["ccc"] for name, v in per.items()})
    out["n"] = int(len(t))
    out["per_target"] = per
    return out


# ------------------------------------------------------------------------------------------------ multi-label
def _threshold(num_classes: int) -> float:
    return 1.0 / num_classes


def multilabel_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, float]:
    """Macro- and micro-F1 from per-class true-positive, false-positive and false-negative counts; macro over the
    classes true or predicted at least once (as :func:`compute_metrics`)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return {"macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "micro_f1": float(2 * tp.sum() / total) if total > 0 else 0.0}


def multilabel_metrics(y_true, probabilities, labels: Sequence[str]) -> dict[str, Any]:
    """EMO-SUPERB's multi-label scores. ``y_true``: (N, C) vote shares or 0/1 indicators (a class is true when its
    share exceeds 1/C); ``probabilities``: (N, C) (a class is predicted when its probability exceeds 1/C)."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    t, p = _binarize(y_true, len(labels)), _binarize(probabilities, len(labels))
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and probabilities {p.shape} differ in shape")
    present = [i for i in range(len(labels)) if t[:, i].any() or p[:, i].any()]
    prec, rec, f1, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    per_class = {}
    for i, label in enumerate(labels):
        per_class[str(label)] = {
            "support": int(support[i]), "predicted": int(p[:, i].sum()),
            "recall": float(rec[i]) if t[:, i].any() else None,
            "precision": float(prec[i]) if p[:, i].any() else None,
            "f1": float(f1[i]) if i in present else None,
        }
    return {"macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)) if present else 0.0,
            "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
            "n": int(len(t)), "per_class": per_class}


def _binarize(values, num_classes: int) -> np.ndarray:
    """(N, C) shares or probabilities -> 0/1 ints by the 1/C rule (0/1 indicators stay as they are for C >= 2)."""
    return (np.asarray(values, dtype=np.float64) > _threshold(num_classes)).astype(np.int64)


# ------------------------------------------------------------------------------------------------ per task
def task_metrics(task: str, predicted, target, names: Sequence[str], hard=None) -> dict[str, Any]:
    """The test metrics of a ``task`` run (fractions; see :data:`TASK_METRICS`).

    ``predicted``: (N, C) class probabilities, or (N, K) values for regression. ``target``: (N,) class indices
    (categorical), (N, C) vote shares (soft), 0/1 indicators (multilabel), (N, K) values (regression). ``hard``:
    (N,) class indices of the ``label`` column (soft: the categorical metrics are scored against it)."""
    predicted = np.asarray(predicted)
    if task == "regression":
        return regression_metrics(target, predicted, names)
    if task == "multilabel":
        return multilabel_metrics(target, predicted, names)
    classes = list(range(len(names)))
    truth = np.asarray(target if task == "categorical" else hard)
    out = compute_metrics(truth.tolist(), predicted.argmax(1).tolist(), classes)
    out["per_class"] = {names[int(k)]: v for k, v in out["per_class"].items()}
    out["ece"] = expected_calibration_error(predicted, truth)
    if task == "soft":
        multi = multilabel_metrics(target, predicted, names)
        out["ml_macro_f1"] = multi["macro_f1"]
        out["ml_micro_f1"] = multi["micro_f1"]
    return out


def fast_scores(task: str, predicted: np.ndarray, target: np.ndarray, hard: np.ndarray | None = None
                ) -> dict[str, float]:
    """The scalar metrics of :func:`task_metrics` (``TASK_METRICS[task]``, regression without the per-target
    entries), computed with numpy alone: for model selection every epoch and for bootstrap resamples."""
    if task == "regression":
        c = np.atleast_1d(ccc(target.astype(np.float64), predicted.astype(np.float64)))
        return {"ccc": float(c.mean()), "mae": float(np.abs(target - predicted).mean())}
    num_classes = predicted.shape[1]
    out: dict[str, float] = {}
    if task in ("soft", "multilabel"):
        t, p = _binarize(target, num_classes), _binarize(predicted, num_classes)
        ml = multilabel_from_counts((t & p).sum(0), ((1 - t) & p).sum(0), (t & (1 - p)).sum(0))
        if task == "multilabel":
            return ml
        out["ml_macro_f1"] = ml["macro_f1"]
    truth = target if task == "categorical" else hard
    cm = np.bincount(truth * num_classes + predicted.argmax(1), minlength=num_classes ** 2)
    out.update(metrics_from_confusion(cm.reshape(num_classes, num_classes)))
    out["ece"] = expected_calibration_error(predicted, truth)
    return out


def bootstrap_ci(task: str, predicted, target, hard=None, metric: str | None = None, resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap interval of ``metric`` (default the task's headline) over the test utterances:
    ``resamples`` draws of N utterances with replacement (seeded). -> ``{metric, low, high, resamples, level}``."""
    metric = metric or HEADLINE[task]
    predicted, target = np.asarray(predicted), np.asarray(target)
    hard = None if hard is None else np.asarray(hard)
    rng = np.random.default_rng(seed)
    n = len(predicted)
    values = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        values[r] = fast_scores(task, predicted[idx], target[idx], None if hard is None else hard[idx])[metric]
    alpha = (1.0 - level) / 2
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha]) if resamples else (math.nan, math.nan)
    return {"metric": metric, "low": float(low), "high": float(high), "resamples": int(resamples),
            "level": float(level)}


def summary_metrics(task: str, names: Sequence[str] = ()) -> tuple[str, ...]:
    """The metrics :func:`summarize` averages over folds for ``task`` (regression: also ``ccc_<target>``)."""
    extra = tuple(f"ccc_{n}" for n in names) if task == "regression" and len(names) > 1 else ()
    return TASK_METRICS[task] + extra


def summarize(fold_metrics: Sequence[dict[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """``{metric: {"mean": m, "std": s}}`` over folds (population std; 0 for a single fold; NaN when empty)."""
    out = {}
    for m in metrics:
        values = np.asarray([float(f[m]) for f in fold_metrics], dtype=np.float64)
        if values.size == 0:
            out[m] = {"mean": math.nan, "std": math.nan}
        else:
            out[m] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
