"""emotion2vec.downstream.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from emotion2vec.downstream.metrics import (HEADLINE, METRICS, TASK_METRICS, bootstrap_ci, ccc, compute_metrics,
                                            fast_scores, metrics_from_confusion, multilabel_metrics,
                                            regression_metrics, summarize, task_metrics)

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


# ------------------------------------------------------------------------------------------------ beyond categorical
def test_ccc_against_a_hand_computation():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 2.0, 3.0, 5.0])
    # means 2.5, 3.0; population variances 1.25, 1.5; covariance (1.5*1 + .5*1 + .5*0 + 1.5*2) / 4 = 1.25
    assert ccc(x, y) == pytest.approx(2 * 1.25 / (1.25 + 1.5 + 0.25), rel=1e-7)
    assert ccc(x, x) == pytest.approx(1.0) and ccc(x, 5 - x) == pytest.approx(-1.0)
    assert ccc(x, x + 10) < 0.05  # perfectly correlated but shifted: CCC, unlike Pearson, punishes it
    assert ccc(x, np.full(4, 2.5)) == 0.0
    cols = ccc(np.stack([x, x], 1), np.stack([y, x], 1))
    np.testing.assert_allclose(cols, [2 * 1.25 / 3.0, 1.0], rtol=1e-7)
    import torch  # the same function on tensors (the CCC loss)

    assert float(ccc(torch.tensor(x), torch.tensor(y))) == pytest.approx(2 * 1.25 / 3.0, rel=1e-7)


def test_regression_metrics_per_target_and_mean():
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error

    rng = np.random.default_rng(0)
    t = rng.random((30, 2))
    p = t + 0.1 * rng.standard_normal((30, 2))
    m = regression_metrics(t, p, ["arousal", "valence"])
    for k, name in enumerate(["arousal", "valence"]):
        assert m["per_target"][name]["pearson"] == pytest.approx(pearsonr(t[:, k], p[:, k])[0])
        assert m["per_target"][name]["mae"] == pytest.approx(mean_absolute_error(t[:, k], p[:, k]))
        assert m[f"ccc_{name}"] == m["per_target"][name]["ccc"] == pytest.approx(float(ccc(t[:, k], p[:, k])))
    assert m["ccc"] == pytest.approx((m["ccc_arousal"] + m["ccc_valence"]) / 2) and m["n"] == 30
    assert np.isnan(regression_metrics(t[:, :1], np.zeros((30, 1)), ["a"])["pearson"])  # constant: r undefined
    with pytest.raises(ValueError, match="must both be"):
        regression_metrics(t, p[:, :1], ["arousal", "valence"])


def test_multilabel_one_over_c_rule_against_sklearn():
    from sklearn.metrics import f1_score

    labels = ["ang", "hap", "neu", "sad"]
    shares = np.array([[0.5, 0.5, 0, 0], [0, 0, 1, 0], [0.2, 0.2, 0.6, 0], [0, 0.25, 0, 0.75]])
    probs = np.array([[0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.3, 0.26, 0.3, 0.14], [0.1, 0.2, 0.1, 0.6]])
    m = multilabel_metrics(shares, probs, labels)
    # 1/C = 0.25: true {ang,hap}, {neu}, {neu}, {sad} (0.25 is not above 1/C); predicted {ang}, {neu}, {ang,hap,neu}, {sad}
    t = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    p = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]])
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    assert m["micro_f1"] == pytest.approx(f1_score(t, p, average="micro"))
    # by hand: ang P 1/2 R 1 -> 2/3; hap P 0 R 0 -> 0; neu 1; sad 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)
    assert m["per_class"]["hap"] == {"support": 1, "predicted": 1, "recall": 0.0, "precision": 0.0, "f1": 0.0}
    fast = fast_scores("multilabel", probs, shares)
    assert fast["macro_f1"] == pytest.approx(m["macro_f1"]) and fast["micro_f1"] == pytest.approx(m["micro_f1"])


@pytest.mark.parametrize("seed", range(5))
def test_fast_scores_agree_with_task_metrics(seed):
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"]
    probs = rng.dirichlet(np.ones(3), size=40)
    shares = rng.dirichlet(np.full(3, 0.3), size=40)
    hard = shares.argmax(1)
    for task, target in (("categorical", hard), ("soft", shares), ("multilabel", (shares > 1 / 3).astype(float))):
        full = task_metrics(task, probs, target, names, hard if task == "soft" else None)
        fast = fast_scores(task, probs, target, hard if task == "soft" else None)
        for name in TASK_METRICS[task]:
            assert fast[name] == pytest.approx(full[name], abs=1e-12), (task, name)
    values, truth = rng.random((40, 2)), rng.random((40, 2))
    full = task_metrics("regression", values, truth, ["x", "y"])
    fast = fast_scores("regression", values, truth)
    assert fast["ccc"] == pytest.approx(full["ccc"]) and fast["mae"] == pytest.approx(full["mae"])


def test_bootstrap_interval_of_the_headline_metric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    probs = np.eye(4)[np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))] * 0.9 + 0.025
    point = task_metrics("categorical", probs, y, list("abcd"))["ua"]
    ci = bootstrap_ci("categorical", probs, y, resamples=500, seed=3)
    assert ci["metric"] == "ua" and ci["resamples"] == 500 and ci["level"] == 0.95
    assert ci["low"] < point < ci["high"] and 0.05 < ci["high"] - ci["low"] < 0.25
    assert bootstrap_ci("categorical", probs, y, resamples=500, seed=3) == ci  # seeded
    small = bootstrap_ci("categorical", probs[:40], y[:40], resamples=500, seed=3)
    assert small["high"] - small["low"] > ci["high"] - ci["low"]  # fewer utterances, wider interval
    reg = bootstrap_ci("regression", y[:, None] + rng.random((200, 1)), y[:, None].astype(float), resamples=200)
    assert reg["metric"] == "ccc" and 0 < reg["low"] < reg["high"] <= 1
    assert HEADLINE == {"categorical": "ua", "soft": "macro_f1", "multilabel": "macro_f1", "regression": "ccc"}
