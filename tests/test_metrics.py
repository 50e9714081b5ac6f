"""emotion2vec.downstream.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from emotion2vec.downstream.metrics import METRICS, compute_metrics, metrics_from_confusion, summarize

LABELS = ["ang", "hap", "neu", "sad"]


def test_hand_computed_small_case():
    y_true = ["ang", "ang", "ang", "hap", "hap", "neu"]
    y_pred = ["ang", "ang", "hap", "hap", "neu", "neu"]
    m = compute_metrics(y_true, y_pred, ["ang", "hap", "neu"])
    assert m["wa"] == pytest.approx(4 / 6)
    # recalls: ang 2/3, hap 1/2, neu 1/1
    assert m["ua"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1: ang P=1 R=2/3 -> 0.8; hap P=1/2 R=1/2 -> 0.5; neu P=1/2 R=1 -> 2/3
    assert m["wf1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["n"] == 6
    assert m["per_class"]["ang"] == {"support": 3, "predicted": 2, "recall": pytest.approx(2 / 3),
                                     "precision": pytest.approx(1.0), "f1": pytest.approx(0.8)}


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(LABELS, size=50).tolist()
    y_pred = [t if rng.random() < 0.6 else rng.choice(LABELS) for t in y_true]
    m = compute_metrics(y_true, y_pred, LABELS)
    assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["wf1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=LABELS).tolist()


def test_class_absent_from_y_true_but_predicted():
    # "sad" has no test sample in this fold but is predicted once; "neu" is absent from both
    y_true = ["ang", "ang", "hap", "hap"]
    y_pred = ["ang", "sad", "hap", "hap"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero or sklearn warnings leak out
        m = compute_metrics(y_true, y_pred, LABELS)
    assert m["wa"] == pytest.approx(3 / 4)
    assert m["ua"] == pytest.approx((1 / 2 + 1) / 2)  # mean recall over ang, hap only
    # macro-F1 over {ang, hap, sad}: ang P=1 R=1/2 -> 2/3, hap 1, sad 0 (false positive only); neu left out
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=["ang", "hap", "sad"], average="macro", zero_division=0))
    assert m["wf1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted", zero_division=0))
    assert len(m["confusion"]) == 4 and all(len(r) == 4 for r in m["confusion"])
    assert m["confusion"][LABELS.index("ang")][LABELS.index("sad")] == 1
    assert m["per_class"]["neu"] == {"support": 0, "predicted": 0, "recall": None, "precision": None, "f1": None}
    assert m["per_class"]["sad"]["recall"] is None and m["per_class"]["sad"]["f1"] == 0.0


def test_class_never_predicted():
    y_true = ["ang", "neu", "neu", "sad", "sad", "sad"]
    y_pred = ["neu", "neu", "neu", "sad", "sad", "sad"]  # ang never predicted
    m = compute_metrics(y_true, y_pred, LABELS)
    assert m["ua"] == pytest.approx((0 + 1 + 1) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["macro_f1"] == pytest.approx((0 + 0.8 + 1) / 3)
    assert m["per_class"]["ang"]["precision"] is None and m["per_class"]["ang"]["recall"] == 0.0


def test_integer_labels_and_errors():
    m = compute_metrics([0, 1, 2, 2], np.array([0, 1, 1, 2]), [0, 1, 2])
    assert m["wa"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="'xyz'"):
        compute_metrics(["ang", "xyz"], ["ang", "ang"], LABELS)
    with pytest.raises(ValueError, match="3 items but y_pred has 2"):
        compute_metrics(["ang"] * 3, ["ang"] * 2, LABELS)
    with pytest.raises(ValueError, match="no samples"):
        compute_metrics([], [], LABELS)


@pytest.mark.parametrize("seed", range(20))
def test_metrics_from_confusion_agrees_with_sklearn_path(seed):
    rng = np.random.default_rng(100 + seed)
    n_classes = int(rng.integers(2, 7))
    labels = list(range(n_classes))
    # skewed draws so that some classes are absent from y_true or never predicted
    y_true = rng.choice(n_classes, size=int(rng.integers(3, 40)), p=rng.dirichlet(np.full(n_classes, 0.5)))
    y_pred = np.where(rng.random(len(y_true)) < 0.5, y_true, rng.choice(n_classes, size=len(y_true)))
    full = compute_metrics(y_true.tolist(), y_pred.tolist(), labels)
    fast = metrics_from_confusion(np.asarray(full["confusion"]))
    for name in METRICS:
        assert fast[name] == pytest.approx(full[name], abs=1e-12), name


def test_summarize_mean_and_population_std():
    folds = [{"wa": 0.5, "ua": 0.4, "wf1": 0.3, "macro_f1": 0.2}, {"wa": 0.7, "ua": 0.6, "wf1": 0.5, "macro_f1": 0.4}]
    s = summarize(folds)
    assert s["wa"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1)}
    assert s["macro_f1"]["mean"] == pytest.approx(0.3)
    assert summarize(folds[:1])["ua"] == {"mean": 0.4, "std": 0.0}
