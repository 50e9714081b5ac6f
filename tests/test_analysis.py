"""emotion2vec.analysis: perturbations against independent numpy measurements, voting and fairness against hand
computations, and the URDU corpus end to end (fbank features: prepare, extract, probe with fairness, robustness,
ensemble, sweep, report)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion2vec.analysis import AnalysisError
from emotion2vec.analysis.ensemble import check_compatible, combine, run_ensemble
from emotion2vec.analysis.fairness import difference_ci, group_analysis
from emotion2vec.analysis.perturbations import (PERTURBATIONS, Perturbation, clip, crop_beginning, parse_overrides,
                                                select_perturbations, utterance_rng)
from emotion2vec.analysis.robustness import changed, run_robustness
from emotion2vec.analysis.runs import Predictions, load_run
from emotion2vec.cli import main as cli
from emotion2vec.downstream.report import predictions_tsv

FS = 16000


def speech_like(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A voiced-looking test signal: harmonics with a slow envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def db(ratio: float) -> float:
    return 20 * math.log10(ratio)


# ----------------------------------------------------------------------------------------------- perturbations
def test_white_noise_and_tone_reach_the_drawn_snr():
    x = speech_like()
    for key in ("a", "b", "c", "d"):
        y, value = PERTURBATIONS["white-noise"](x, utterance_rng(0, "white-noise", key))
        noise = y.astype(np.float64) - x
        assert value in (35.0, 40.0, 45.0)
        assert abs(db(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / np.sqrt(np.mean(noise ** 2))) - value) < 0.1
        assert abs(np.mean(noise)) < 0.1 * np.std(noise)  # white: no offset

        y, value = PERTURBATIONS["tone"](x, utterance_rng(0, "tone", key))
        tone = y.astype(np.float64) - x
        assert value in (40.0, 45.0, 50.0)
        assert abs(db(np.abs(x).max() / np.abs(tone).max()) - value) < 0.1
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
        peak = np.fft.rfftfreq(len(tone), 1 / FS)[spectrum.argmax()]
        assert 5000 - 2 <= peak <= 7000 + 2
    silence = np.zeros(800, np.float32)
    assert np.array_equal(PERTURBATIONS["tone"](silence, utterance_rng(0, "tone", "s"))[0], silence)


def test_gain_is_exact_and_lengths_after_append_and_crop():
    x = speech_like()
    for g in (-2.0, -1.0, 1.0, 2.0):
        y = PERTURBATIONS["gain"].apply(x, g, None)
        np.testing.assert_allclose(y, x.astype(np.float64) * 10 ** (g / 20), rtol=1e-6)
        assert abs(db(np.sqrt(np.mean(y.astype(np.float64) ** 2)) / np.sqrt(np.mean(x.astype(np.float64) ** 2)))
                   - g) < 1e-4
    for n in (100, 500, 1000):
        y = PERTURBATIONS["append-zeros"].apply(x, n, None)
        assert len(y) == len(x) + n and np.array_equal(y[:len(x)], x) and not y[len(x):].any()
        y = PERTURBATIONS["crop"].apply(x, n, None)
        assert len(y) == len(x) - n and np.array_equal(y, x[n:])
    assert len(crop_beginning(x[:600], 500)) == 400  # one 25 ms frame always stays


def test_clipping_clips_exactly_the_largest_share():
    x = speech_like()
    for percent in (1.0, 0.2, 0.3, 0.1):
        y = clip(x, percent)
        k = round(percent / 100 * len(x))
        threshold = np.sort(np.abs(x))[len(x) - k - 1]
        assert int((y != x).sum()) == k
        assert np.abs(y).max() == threshold and np.all(np.abs(y[y != x]) == threshold)


@pytest.mark.parametrize("kind,cutoff", [("highpass", 50.0), ("highpass", 150.0), ("lowpass", 7000.0),
                                         ("lowpass", 6500.0)])
def test_first_order_filters_are_3db_down_at_the_cutoff(kind, cutoff):
    t = np.arange(4 * FS) / FS

    def gain_at(f: float) -> float:
        x = np.sin(2 * np.pi * f * t).astype(np.float32)
        y = PERTURBATIONS[kind].apply(x, cutoff, None).astype(np.float64)[FS:]  # past the transient
        return db(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(x.astype(np.float64)[FS:] ** 2)))

    assert abs(gain_at(cutoff) + 3.0103) < 0.1
    passband = cutoff * 10 if kind == "highpass" else cutoff / 10
    assert abs(gain_at(passband)) < 0.3  # first order: about -0.04 dB a decade into the passband
    stopband = cutoff / 10 if kind == "highpass" else None
    if stopband:
        assert abs(gain_at(stopband) + 20.0) < 0.5  # -20 dB a decade


def test_draws_are_seeded_per_key_and_perturbation():
    x = speech_like(0.5)
    p = PERTURBATIONS["gain"]
    assert p(x, utterance_rng(3, "gain", "k1"))[1] == p(x, utterance_rng(3, "gain", "k1"))[1]
    values = {p(x, utterance_rng(3, "gain", f"k{i}"))[1] for i in range(40)}
    assert values == {-2.0, -1.0, 1.0, 2.0}
    before = x.copy()
    for q in PERTURBATIONS.values():
        q(x, utterance_rng(0, q.name, "k"))
    assert np.array_equal(x, before)  # inputs are never changed


def test_parameters_out_of_range_and_unknown_names_are_refused():
    with pytest.raises(AnalysisError, match=r"gain: value 30 dB is outside the sane range -20\.\.20"):
        select_perturbations(overrides={"gain": [1.0, 30.0]})
    with pytest.raises(AnalysisError, match="lowpass: value 9000 Hz"):
        select_perturbations(["lowpass"], {"lowpass": [9000]})
    with pytest.raises(AnalysisError, match="append-zeros: value 10.5 samples.*whole samples"):
        select_perturbations(overrides=parse_overrides(["append-zeros=10.5"]))
    with pytest.raises(AnalysisError, match="unknown perturbation"):
        select_perturbations(["reverb"])
    with pytest.raises(AnalysisError, match="NAME=V"):
        parse_overrides(["bogus=1"])
    with pytest.raises(AnalysisError, match="must be numbers"):
        parse_overrides(["clip=a,b"])
    with pytest.raises(AnalysisError, match="not among the selected"):
        select_perturbations(["gain"], {"clip": [0.1]})
    custom = select_perturbations(["clip", "gain"], parse_overrides(["clip=0.1,0.2,0.3"]))
    assert [p.name for p in custom] == ["clip", "gain"] and custom[0].values == (0.1, 0.2, 0.3)


def test_changed_per_task():
    clean = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    moved = np.array([[0.4, 0.5, 0.1], [0.1, 0.6, 0.3]])
    assert changed("categorical", clean, moved).tolist() == [True, False]
    assert changed("multilabel", clean, np.array([[0.6, 0.34, 0.1], [0.2, 0.5, 0.3]])).tolist() == [True, False]
    r = changed("regression", np.array([[0.5, 0.5]]), np.array([[0.54, 0.56]]))
    assert r.tolist() == [[False, True]]


# ----------------------------------------------------------------------------------------------- ensembles
def test_soft_and_hard_votes_against_hand_computed_votes():
    # 3 members, 3 utterances, 3 classes
    a = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.2, 0.7]])
    b = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    c = np.array([[0.6, 0.3, 0.1], [0.3, 0.1, 0.6], [0.2, 0.7, 0.1]])
    soft = combine("categorical", [a, b, c], np.ones(3), "soft")
    np.testing.assert_allclose(soft, (a + b + c) / 3)
    hard = combine("categorical", [a, b, c], np.ones(3), "hard")
    # utterance 0: votes 0, 1, 0 -> class 0 (2 of 3); utterance 1: votes 1, 0, 2 -> a three-way tie, broken by the
    # summed probability (1.3, 0.9, 0.8) -> class 0; utterance 2: votes 2, 0, 1 -> tie, sums (0.8, 1.3, 0.9) -> 1
    assert hard.argmax(1).tolist() == [0, 0, 1]
    np.testing.assert_allclose(hard[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(hard[1], [1 / 3] * 3, atol=1e-12)
    # weights 1, 3, 1: utterance 0 -> class 1 has weight 3 against 2
    weighted = combine("categorical", [a, b, c], np.array([1.0, 3.0, 1.0]), "hard")
    assert weighted.argmax(1).tolist() == [1, 0, 0]
    np.testing.assert_allclose(weighted[0], [0.4, 0.6, 0.0])
    np.testing.assert_allclose(combine("regression", [np.ones((2, 1)), 3 * np.ones((2, 1))], np.array([1.0, 3.0])),
                               2.5 * np.ones((2, 1)))
    with pytest.raises(AnalysisError, match="--vote hard needs one class per utterance"):
        combine("regression", [np.ones((2, 1))], np.ones(1), "hard")


def _write_run(directory: Path, task: str, names, preds: Predictions, valid: Predictions | None = None,
               source: str | None = None, corpus: str = "toy", data: str = "", dev=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    metrics = ("ua",) if task != "regression" else ("ccc",)
    folds = []
    for f in preds.fold_names():
        sub = preds.select(preds.in_fold(f))
        folds.append({"name": f, "n_train": 10, "valid": {metrics[0]: dev if dev is not None else 0.5},
                      "test": {m: float(sub.metrics()[m]) for m in metrics}})
    result = {"format": "emotion2vec-probe-results", "corpus": corpus, "source": source or directory.name,
              "task": task, "targets": list(names), "labels": list(names) if task != "regression" else [],
              "folds": folds, "data": data,
              "summary": {m: {"mean": float(np.mean([f["test"][m] for f in folds])), "std": 0.0} for m in metrics}}
    (directory / "results.json").write_text(json.dumps(result))
    (directory / "predictions.tsv").write_text(predictions_tsv(preds.records(), names, task))
    if valid is not None:
        (directory / "valid_predictions.tsv").write_text(predictions_tsv(valid.records(), names, task))
    return directory


def _toy(probabilities, labels, folds=None, keys=None) -> Predictions:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    folds = folds or ["fold1"] * len(y)
    keys = keys or [f"u{i}" for i in range(len(y))]
    return Predictions("categorical", ["a", "b"], folds, keys, p, y, y)


def test_ensemble_search_chooses_on_dev_and_refuses_mismatches(tmp_path):
    y = [0, 0, 1, 1]
    right, wrong = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]], [[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.8, 0.2]]
    half = [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.8, 0.2]]
    # run A: perfect on dev, wrong on test; run B: wrong on dev, perfect on test -> dev picks A
    a = _write_run(tmp_path / "A", "categorical", ["a", "b"], _toy(wrong, y), _toy(right, y), dev=1.0)
    b = _write_run(tmp_path / "B", "categorical", ["a", "b"], _toy(right, y), _toy(wrong, y), dev=0.0)
    c = _write_run(tmp_path / "C", "categorical", ["a", "b"], _toy(half, y), _toy(half, y), dev=0.5)
    result = run_ensemble([a, b, c], tmp_path / "E", search="all", resamples=50, verbose=False)
    ranking = result["ensemble"]["search"]
    assert len(ranking) == 7 and ranking[0]["members"] == ["A"] and ranking[0]["dev"] == 1.0
    assert ranking[0]["test"] == 0.0 and max(r["test"] for r in ranking) == 1.0  # the test score never chooses
    assert result["summary"]["ua"]["mean"] == 0.0 and result["source"] == "ensemble(A)"
    for name in ("results.json", "results.md", "predictions.tsv", "valid_predictions.tsv", "confusion.png"):
        assert (tmp_path / "E" / name).exists(), name
    assert load_run(tmp_path / "E").test.predicted.shape == (4, 2)  # an ensemble reads back like any run

    # dev weights: A weighs 1, B 0, C 0.5
    weighted = run_ensemble([a, b, c], tmp_path / "W", weights="dev", resamples=0, verbose=False)
    expected = (1.0 * np.asarray(wrong) + 0.5 * np.asarray(half)) / 1.5
    np.testing.assert_allclose(load_run(tmp_path / "W").test.predicted, expected, atol=1e-6)
    assert weighted["ensemble"]["members"][1]["weights"] == [0.0]

    reg = Predictions("regression", ["a", "b"], ["fold1"] * 4, [f"u{i}" for i in range(4)], np.ones((4, 2)),
                      np.ones((4, 2)))
    r = _write_run(tmp_path / "R", "regression", ["a", "b"], reg)
    with pytest.raises(AnalysisError, match=r"R is a regression run and .*A a categorical run"):
        check_compatible([load_run(a), load_run(r)])
    other_fold = _write_run(tmp_path / "F", "categorical", ["a", "b"], _toy(right, y, folds=["fold2"] * 4))
    with pytest.raises(AnalysisError, match=r"different folds.*first difference at position 1: 'fold1'.*'fold2'"):
        check_compatible([load_run(a), load_run(other_fold)])
    other_keys = _write_run(tmp_path / "K", "categorical", ["a", "b"], _toy(right, y, keys=["u0", "u1", "u2", "x"]))
    with pytest.raises(AnalysisError, match="fold1: test key 'u3' of .*A is not among the test keys of .*K"):
        check_compatible([load_run(a), load_run(other_keys)])
    assert cli(["ensemble", str(a), str(r), "--out", str(tmp_path / "bad")]) == 2
    assert cli(["ensemble", str(a), str(b), "--vote", "hard", "--out", str(tmp_path / "H"), "--quiet"]) == 0
    no_dev = _write_run(tmp_path / "N", "categorical", ["a", "b"], _toy(right, y))
    with pytest.raises(AnalysisError, match="--search ranks combinations on dev predictions: no valid_predictions"):
        run_ensemble([a, no_dev], tmp_path / "X", search="2", verbose=False)


# ----------------------------------------------------------------------------------------------- label efficiency
def test_training_subsets_are_stratified_seeded_and_nested():
    from emotion2vec.analysis.efficiency import parse_fractions, subsample_train

    label_of = {f"k{i}": ("a" if i < 60 else "b") for i in range(100)}
    folds = [{"name": "fold1", "train": list(label_of), "valid": ["v"], "test": ["t"]}]
    small, large = (subsample_train(folds, label_of, f, seed=3)[0]["train"] for f in (0.1, 0.5))
    assert [label_of[k] for k in small].count("a") == 6 and [label_of[k] for k in small].count("b") == 4
    assert len(large) == 50 and set(small) <= set(large)
    assert subsample_train(folds, label_of, 0.1, seed=3)[0]["train"] == small
    assert subsample_train(folds, label_of, 0.1, seed=4)[0]["train"] != small
    assert subsample_train(folds, label_of, 0.1, seed=3)[0]["valid"] == ["v"]
    assert parse_fractions("1,0.25,0.25") == [0.25, 1.0]
    with pytest.raises(AnalysisError, match="must lie in \\(0, 1\\], not 1.5"):
        parse_fractions("0.5,1.5")


# ----------------------------------------------------------------------------------------------- fairness
def test_fairness_differences_and_intervals_on_known_groups():
    # women: 8 utterances all right (UA 1); men: 12 utterances, class a all right, class b all wrong (UA 0.5)
    truth = [0, 1] * 4 + [0] * 6 + [1] * 6
    probs = [[0.9, 0.1] if t == 0 else [0.1, 0.9] for t in truth[:8]] + [[0.8, 0.2]] * 12
    keys = [f"k{i}" for i in range(20)]
    folds = ["fold1", "fold2"] * 10
    preds = Predictions("categorical", ["a", "b"], folds, keys, np.asarray(probs), np.asarray(truth),
                        np.asarray(truth))
    rows = {k: {"key": k, "gender": "F" if i < 8 else "M", "speaker": "SF1" if i < 8 else ("SM1" if i < 14 else "SM2")}
            for i, k in enumerate(keys)}
    out = group_analysis(preds, rows, min_utterances=6, resamples=200, seed=1)
    g = out["groups"]["gender"]
    assert g["values"]["F"]["metric"] == 1.0 and g["values"]["M"]["metric"] == 0.5
    assert g["values"]["F"]["n"] == 8 and g["values"]["M"]["per_class_recall"] == {"a": 1.0, "b": 0.0}
    assert g["values"]["F"]["ci"]["low"] == 1.0 and g["values"]["F"]["ci"]["high"] == 1.0
    d = g["difference"]
    assert d["of"] == "F - M" and d["value"] == 0.5 and d["low"] <= 0.5 <= d["high"] and d["high"] <= 0.5 + 1e-12
    assert set(g["values"]["M"]["per_fold"]) == {"fold1", "fold2"}
    sp = out["speakers"]
    assert [s["speaker"] for s in sp["speakers"]] == ["SF1", "SM1", "SM2"]  # sorted, best first
    # SM1 holds 6 class-a utterances (UA 1), SM2 6 class-b utterances all wrong (UA 0)
    assert [s["metric"] for s in sp["speakers"]] == [1.0, 1.0, 0.0]
    assert sp["spread"]["range"] == 1.0 and sp["spread"]["lowest"] == "SM2"
    assert group_analysis(preds, rows, min_utterances=7, resamples=0)["speakers"]["left_out"] == 2
    with pytest.raises(AnalysisError, match="--group-by age: no test utterance has a value"):
        group_analysis(preds, rows, ["age"])

    # regression: CCC per group against the formula, the bias, and an interval around a known difference
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, (40, 1))
    pred = np.where(np.arange(40)[:, None] < 20, y, 0.5 * y + 0.3)
    reg = Predictions("regression", ["arousal"], ["fold1"] * 40, [f"r{i}" for i in range(40)], pred, y)
    rows = {f"r{i}": {"gender": "F" if i < 20 else "M"} for i in range(40)}
    g = group_analysis(reg, rows, resamples=100)["groups"]["gender"]

    def ccc(a, b):
        return 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)

    m_ccc = ccc(y[20:, 0], pred[20:, 0])
    assert g["values"]["F"]["metric"] == pytest.approx(1.0) and g["values"]["M"]["metric"] == pytest.approx(m_ccc)
    assert g["difference"]["value"] == pytest.approx(1.0 - m_ccc)
    bias = (pred[:20].mean() - pred[20:].mean()) - (y[:20].mean() - y[20:].mean())
    assert g["difference"]["bias"]["arousal"] == pytest.approx(bias)
    ci = difference_ci(reg, np.arange(20), np.arange(20, 40), "ccc", resamples=300, seed=0)
    assert ci["low"] < 1.0 - m_ccc < ci["high"]


# ----------------------------------------------------------------------------------------------- URDU end to end
@pytest.fixture(scope="module")
def urdu_runs(tmp_path_factory):
    """URDU prepared and extracted with fbank (utterance level), probed on two folds with three seeds."""
    from conftest import URDU, require

    urdu = require(URDU, "URDU corpus")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: threads only add synchronisation on a busy machine
    root = tmp_path_factory.mktemp("urdu")
    try:
        assert cli(["prepare", "urdu", "--root", str(urdu), "--out", str(root / "m"), "--quiet"]) == 0
        assert cli(["extract", "--checkpoint", "fbank", "--input", str(root / "m" / "data.tsv"), "--out",
                    str(root / "fbank"), "--granularity", "utterance", "--quiet", "--num-workers", "0"]) == 0
        for seed in (42, 1, 2):
            assert cli(["probe", "--features", str(root / "fbank"), "--data", str(root / "m"), "--out",
                        str(root / f"p{seed}"), "--folds", "1,2", "--epochs", "15", "--bootstrap", "100",
                        "--seed", str(seed), "--quiet", "--no-audio-audit", "--speaker-min-utterances", "5",
                        *(["--embedding", "2"] if seed == 42 else [])]) == 0
        yield root
    finally:
        torch.set_num_threads(threads)


def test_urdu_probe_reports_gender_groups_and_speakers(urdu_runs):
    run = urdu_runs / "p42"
    result = json.loads((run / "results.json").read_text())
    g = result["groups"]["gender"]
    assert set(g["values"]) == {"F", "M"} and g["metric"] == "ua"
    assert sum(e["n"] for e in g["values"].values()) == sum(f["n_test"] for f in result["folds"]) == 80
    assert g["difference"]["value"] == pytest.approx(g["values"]["F"]["metric"] - g["values"]["M"]["metric"])
    sp = result["speakers"]
    assert sp["speakers"] and all(s["n"] >= 5 for s in sp["speakers"]) and sp["min_utterances"] == 5
    assert all(s["speaker"][1] == s["gender"] for s in sp["speakers"])  # URDU names carry SF / SM
    md = (run / "results.md").read_text()
    assert "## Fairness: groups and speakers" in md and "| F |" in md and "Difference F - M" in md
    for name in ("speakers.png", "embedding.png", "valid_predictions.tsv", "heads/fold1.pt", "heads/fold2.pt"):
        assert (run / name).exists(), name
    assert result["embedding"]["fold"] == "fold2" and result["embedding"]["utterances"] == 40
    assert len(load_run(run).valid) == 80  # 40 valid utterances per fold


def test_urdu_robustness_of_eight_perturbations_and_of_the_identity(urdu_runs, capsys):
    run, out = urdu_runs / "p42", urdu_runs / "robust"
    assert cli(["robustness", str(run), "--data", str(urdu_runs / "m"), "--out", str(out), "--quiet",
                "--save-audio", "1", "--values", "clip=0.1,0.2,0.3"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [e["name"] for e in result["perturbations"]] == list(PERTURBATIONS)
    assert result["clean_agreement"] == 1.0 and result["utterances"] == 80
    assert result["perturbations"][2]["values"] == [0.1, 0.2, 0.3]
    # every score recomputed by hand from the per-utterance table: robustness = share of unchanged predictions
    lines = (out / "changes.tsv").read_text().splitlines()
    assert len(lines) == 1 + 8 * 80
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    for e in result["perturbations"]:
        mine = [r for r in rows if r["perturbation"] == e["name"]]
        assert len(mine) == e["n"] == 80
        assert all(r["changed"] == ("1" if r["clean"] != r["perturbed"] else "0") for r in mine)
        flips = sum(r["changed"] == "1" for r in mine)
        assert e["changed"] == flips and e["robustness"] == pytest.approx(1 - flips / 80)
        assert sum(r["n"] for r in e["per_value"].values()) == 80
        for value, r in e["per_value"].items():
            drawn = [m for m in mine if float(m["value"]) == pytest.approx(float(value))]
            assert len(drawn) == r["n"] and r["robustness"] == pytest.approx(
                1 - sum(m["changed"] == "1" for m in drawn) / len(drawn))
    assert result["overall"]["robustness"] == pytest.approx(np.mean([e["robustness"] for e in result["perturbations"]]))
    assert result["perturbations"][0]["robustness"] < 1.0 or result["perturbations"][-1]["robustness"] < 1.0
    assert (out / "robustness.png").exists() and "| white-noise |" in (out / "results.md").read_text()
    assert len(list((out / "audio").rglob("*.wav"))) == 9
    captured = capsys.readouterr().out
    assert "Robustness (%)" in captured

    identity = Perturbation("identity", (0.0,), "", -1.0, 1.0, lambda x, v, rng: x.copy())
    same = run_robustness(run, urdu_runs / "m", urdu_runs / "identity", [identity], verbose=False)
    e = same["perturbations"][0]
    assert e["robustness"] == 1.0 and e["changed"] == 0
    assert e["summary"]["ua"] == same["clean"]["summary"]["ua"]


def test_urdu_robustness_bad_inputs(urdu_runs, tmp_path, capsys):
    from emotion2vec.downstream.heads import load_head, save_head

    data = str(urdu_runs / "m")
    no_heads = tmp_path / "no_heads"
    shutil.copytree(urdu_runs / "p42", no_heads)
    shutil.rmtree(no_heads / "heads")
    assert cli(["robustness", str(no_heads), "--data", data, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has no saved head for fold(s) fold1, fold2 (heads/fold1.pt)" in err and "re-run `emotion2vec probe" in err

    moved = tmp_path / "moved"
    shutil.copytree(urdu_runs / "p42", moved)
    for f in ("fold1", "fold2"):
        head, meta = load_head(moved / "heads" / f"{f}.pt")
        meta["feature_settings"] = {**meta["feature_settings"], "checkpoint": str(tmp_path / "gone.pt")}
        save_head(moved / "heads" / f"{f}.pt", head, **meta)
    assert cli(["robustness", str(moved), "--data", data, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"the feature source {tmp_path / 'gone.pt'}" in err and "is missing" in err and "--checkpoint" in err

    assert cli(["robustness", str(urdu_runs / "p42"), "--data", data, "--out", str(tmp_path / "o"),
                "--values", "white-noise=-5"]) == 2
    assert "white-noise: value -5 dB RMS-SNR is outside the sane range 0..100" in capsys.readouterr().err
    assert cli(["robustness", str(urdu_runs / "p42"), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "data.tsv: not found" in capsys.readouterr().err


def test_urdu_ensembles_of_two_and_three_runs_and_the_report(urdu_runs):
    runs = [str(urdu_runs / f"p{s}") for s in (42, 1, 2)]
    assert cli(["ensemble", *runs[:2], "--out", str(urdu_runs / "e2"), "--quiet", "--bootstrap", "100"]) == 0
    assert cli(["ensemble", *runs, "--vote", "hard", "--weights", "dev", "--out", str(urdu_runs / "e3"),
                "--quiet", "--bootstrap", "100", "--name", "hard3"]) == 0
    e2 = json.loads((urdu_runs / "e2" / "results.json").read_text())
    members = [load_run(r).test for r in runs[:2]]
    expected = (members[0].predicted + members[1].predicted) / 2
    np.testing.assert_allclose(load_run(urdu_runs / "e2").test.predicted, expected, atol=2e-6)
    assert e2["kind"] == "ensemble" and "gender" in e2["groups"] and len(e2["ensemble"]["members"]) == 2
    e3 = json.loads((urdu_runs / "e3" / "results.json").read_text())
    assert e3["source"] == "hard3" and all(m["chosen"] for m in e3["ensemble"]["members"])
    assert "## Ensemble against its members" in (urdu_runs / "e3" / "results.md").read_text()
    table = urdu_runs / "table.md"
    assert cli(["report", *runs[:1], str(urdu_runs / "e2"), str(urdu_runs / "e3"), "--out", str(table)]) == 0
    text = table.read_text()
    assert "| hard3 |" in text and "Fairness" in text and "F - M" in text


def test_globs_of_a_results_folder_report_and_ensemble_what_is_there(urdu_runs, tmp_path, capsys):
    """`report results/urdu/*` and `ensemble results/urdu/*` over what the docs put in such a folder: probe runs,
    a robustness run, a report's table.md, an earlier ensemble, a run under another protocol (report only)."""
    results = tmp_path / "results"
    for name in ("p1", "p42"):
        shutil.copytree(urdu_runs / name, results / name)
    data = str(urdu_runs / "m")
    assert cli(["robustness", str(results / "p42"), "--data", data, "--out", str(results / "p42_robustness"),
                "--perturbations", "gain,white-noise", "--folds", "1", "--quiet"]) == 0
    (results / "table.md").write_text("| an earlier report |\n")
    capsys.readouterr()
    assert cli(["ensemble", *map(str, sorted(results.glob("*"))), "--out", str(results / "ens"), "--quiet",
                "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert f"ensemble: note: skipping {results / 'table.md'} (a file, not a run folder)" in err
    assert f"ensemble: note: skipping {results / 'p42_robustness'} (a robustness run)" in err
    members = json.loads((results / "ens" / "results.json").read_text())["ensemble"]["members"]
    assert [Path(m["path"]).name for m in members] == ["p1", "p42"]
    # a second ensemble over the same glob: the first one (its members are given) and the --out folder are skipped
    (results / "ens_hard").mkdir()
    shutil.copy(results / "ens" / "results.json", results / "ens_hard" / "results.json")  # as if from before
    assert cli(["ensemble", *map(str, sorted(results.glob("*"))), "--vote", "hard", "--out",
                str(results / "ens_hard"), "--quiet", "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {results / 'ens'} (an ensemble of runs given too)" in err
    assert f"skipping {results / 'ens_hard'} (the output folder)" in err
    hard = json.loads((results / "ens_hard" / "results.json").read_text())
    assert [Path(m["path"]).name for m in hard["ensemble"]["members"]] == ["p1", "p42"] and hard["config"]["vote"] == "hard"

    # the same feature source under another protocol: another column group, never a refusal
    assert cli(["probe", "--features", str(urdu_runs / "fbank"), "--data", data, "--out", str(results / "spk"),
                "--protocol", "speaker-kfold", "--folds", "1", "--epochs", "2", "--bootstrap", "0", "--quiet",
                "--no-audio-audit"]) == 0
    capsys.readouterr()
    assert cli(["report", *map(str, sorted(results.glob("*"))), "--out", str(tmp_path / "table.md")]) == 0
    captured = capsys.readouterr()
    assert f"report: note: skipping {results / 'table.md'} (a file, not a run folder)" in captured.err
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0] == ("| Features | URDU (random-kfold) WA | URDU (random-kfold) UA | URDU (random-kfold) WF1 | "
                        "URDU (speaker-kfold) WA | URDU (speaker-kfold) UA | URDU (speaker-kfold) WF1 |")
    rows = {line.split(" | ")[0][2:]: line for line in lines[2:lines.index("")]}
    source = json.loads((results / "p1" / "results.json").read_text())["source"]
    ensemble_source = json.loads((results / "ens" / "results.json").read_text())["source"]
    assert set(rows) == {ensemble_source, f"{ensemble_source} (ens_hard)", source, f"{source} (p42)"}
    p42 = json.loads((results / "p42" / "results.json").read_text())["summary"]["ua"]
    spk = json.loads((results / "spk" / "results.json").read_text())["summary"]["ua"]
    assert rows[f"{source} (p42)"].split(" | ")[2].strip("*") == f"{100 * p42['mean']:.2f} ± {100 * p42['std']:.2f}"
    assert rows[source].split(" | ")[5] == f"{100 * spk['mean']:.2f} ± {100 * spk['std']:.2f}"  # p1's row: spk
    assert "URDU (random-kfold) 2, URDU (speaker-kfold) 1" in "\n".join(lines)
    robust = json.loads((results / "p42_robustness" / "results.json").read_text())
    gain, noise = (f"{100 * e['robustness']:.2f}" for e in robust["perturbations"])
    assert (f"| URDU | {source} | p42 | 40 | {gain} | {noise} | {100 * robust['overall']['robustness']:.2f} | UA "
            in captured.out)


def test_urdu_label_efficiency_sweep_and_curve(urdu_runs):
    out = urdu_runs / "sweep"
    assert cli(["probe", "--features", str(urdu_runs / "fbank"), "--data", str(urdu_runs / "m"), "--out", str(out),
                "--folds", "1", "--epochs", "5", "--bootstrap", "0", "--quiet", "--no-audio-audit",
                "--train-fraction", "0.25,1", "--seeds", "0,1"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [b["fraction"] for b in sweep["by_fraction"]] == [0.25, 1.0]
    assert [b["n_train_mean"] for b in sweep["by_fraction"]] == [80, 320]
    small = load_run(out / "fraction_0.25_seed_0")
    assert json.loads((out / "fraction_0.25_seed_0" / "results.json").read_text())["train_fraction"] == 0.25
    assert len(small.test) == 40 and (out / "efficiency.png").exists()
    assert "seeds x folds" in (out / "results.md").read_text()
    assert cli(["report", str(out), "--curve", str(urdu_runs / "curve.png")]) == 0
    assert (urdu_runs / "curve.png").exists()
