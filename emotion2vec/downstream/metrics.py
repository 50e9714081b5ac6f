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

``summarize`` gives mean and standard deviation over folds; the std is the population std (``ddof=0``, numpy's
default, what SER papers usually report for k-fold results).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

__all__ = ["METRICS", "METRIC_NAMES", "compute_metrics", "metrics_from_confusion", "summarize"]

#: the scalar metrics, in report order
METRICS = ("wa", "ua", "wf1", "macro_f1")
METRIC_NAMES = {"wa": "WA", "ua": "UA", "wf1": "WF1", "macro_f1": "macro-F1", "loss": "loss"}


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
