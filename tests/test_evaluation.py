"""Evaluation beyond one categorical probe: losses against hand computations, heads (layer mix, pooling, saving),
targets from data.tsv, every task end to end on synthetic features, regression on the demo synthesiser's audio,
cross-corpus testing, and the bad-input errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emotion2vec.cli import main as cli
from emotion2vec.downstream import ProbeError, report
from emotion2vec.downstream.heads import Head, HeadConfig, load_head, save_head
from emotion2vec.downstream.losses import (ArcFaceLoss, BCELoss, CCCLoss, CrossEntropyLoss, arcface_logits,
                                           class_balanced_weights, make_loss)
from emotion2vec.downstream.probe import run_probe
from emotion2vec.downstream.targets import build_targets
from emotion2vec.downstream.training import ProbeConfig
from emotion2vec.io.manifests import ManifestError, read_data_tsv

from test_probe import LABELS, synthetic_corpus, write_features

FAST = dict(epochs=25, batch_size=16, bootstrap=100)


# ------------------------------------------------------------------------------------------------ losses by hand
def test_class_balanced_weights_by_hand():
    w = class_balanced_weights([10, 2, 0], beta=0.9)
    raw = [0.1 / (1 - 0.9 ** 10), 0.1 / (1 - 0.9 ** 2)]  # 0.15354, 0.52632
    expected = [2 * raw[0] / sum(raw), 2 * raw[1] / sum(raw), 0.0]  # scaled to sum to the 2 seen classes
    torch.testing.assert_close(w, torch.tensor(expected), rtol=1e-6, atol=1e-7)
    # beta -> 0: every seen class weighs 1 (plain cross-entropy)
    torch.testing.assert_close(class_balanced_weights([5, 50, 500], 0.0), torch.ones(3))
    # cb-ce on three rows = the weighted mean of -log p, divided by the summed weights of the targets
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 3.0]])
    target = torch.tensor([0, 1, 1])
    loss = make_loss("categorical", "cb-ce", np.array([0] * 10 + [1] * 2), 3, cb_beta=0.9)(logits, target)
    logp = torch.log_softmax(logits, 1)
    wt = w[target]
    manual = -(wt * logp[torch.arange(3), target]).sum() / wt.sum()
    torch.testing.assert_close(loss, manual)
    with pytest.raises(ProbeError, match="--cb-beta must lie in"):
        class_balanced_weights([1, 2], 1.0)


def test_label_smoothing_and_soft_label_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    q = torch.softmax(logits, 1)[0]
    smoothed = CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([0]))
    target = torch.tensor([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    torch.testing.assert_close(smoothed, -(target * q.log()).sum())
    dist = torch.tensor([[0.5, 0.25, 0.25]])
    torch.testing.assert_close(CrossEntropyLoss()(logits, dist), -(dist[0] * q.log()).sum())
    # soft labels with smoothing 0.05 (EMO-SUPERB): the distribution is mixed with the uniform one
    mixed = 0.95 * dist[0] + 0.05 / 3
    torch.testing.assert_close(CrossEntropyLoss(label_smoothing=0.05)(logits, dist), -(mixed * q.log()).sum())
    # multi-label indicators with the soft-ce loss: normalised to a distribution first
    multi = make_loss("multilabel", "soft-ce", np.ones((2, 3)), 3)
    torch.testing.assert_close(multi(logits, torch.tensor([[1.0, 1.0, 0.0]])), -(q[:2].log().sum() / 2))


def test_bce_and_ccc_losses_by_hand():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(BCELoss()(logits, target), manual)
    torch.testing.assert_close(BCELoss().activate(logits), p)
    pred = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0]])
    true = torch.tensor([[2.0, 0.0], [2.0, 1.0], [3.0, 1.0], [5.0, 0.0]])
    # column 0: means 2.5 / 3, variances 1.25 / 1.5, covariance 1.25 -> CCC 2.5 / 3; column 1: x = [0,1,0,1],
    # y = [0,1,1,0]: covariance 0 -> CCC 0
    torch.testing.assert_close(CCCLoss()(pred, true), torch.tensor(1 - (2.5 / 3 + 0.0) / 2))
    torch.testing.assert_close(CCCLoss().activate(pred), pred)


def test_arcface_logits_by_hand():
    s, m = 30.0, 0.3
    cos = torch.tensor([[0.5, 0.2, -0.1], [0.9, 0.8, 0.1]])
    out = arcface_logits(s * cos, torch.tensor([0, 1]), s, m)
    # true class: s cos(acos(c) + m) = s (c cos m - sqrt(1 - c^2) sin m); 0.5 -> 0.2217387
    assert float(out[0, 0]) == pytest.approx(s * (0.5 * math.cos(m) - math.sqrt(0.75) * math.sin(m)), rel=1e-5)
    assert float(out[0, 0]) == pytest.approx(s * math.cos(math.acos(0.5) + m), rel=1e-5)
    assert float(out[1, 1]) == pytest.approx(s * math.cos(math.acos(0.8) + m), rel=1e-5)
    torch.testing.assert_close(out[0, 1:], s * cos[0, 1:])  # other classes keep s cos
    torch.testing.assert_close(out[1, [0, 2]], s * cos[1, [0, 2]])
    # past theta = pi - m the logit keeps falling linearly instead of turning back up
    far = arcface_logits(torch.tensor([[-0.99 * s, 0.0]]), torch.tensor([0]), s, m)
    assert float(far[0, 0]) == pytest.approx(s * (-0.99 - m * math.sin(m)), rel=1e-5)
    loss = ArcFaceLoss(s, m)(s * cos, torch.tensor([0, 1]))
    torch.testing.assert_close(loss, F.cross_entropy(out, torch.tensor([0, 1])))
    # predictions are the softmax of the outputs without the margin
    torch.testing.assert_close(ArcFaceLoss(s, m).activate(s * cos), torch.softmax(s * cos, 1))


# ------------------------------------------------------------------------------------------------ heads
def test_head_pooling_padded_equals_packed_and_ignores_padding():
    torch.manual_seed(0)
    lengths = torch.tensor([4, 1, 3])
    x = torch.randn(3, 4, 8)
    garbage = x.clone()
    garbage[1, 1:], garbage[2, 3:] = 1e3, -1e3
    frames = torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])
    segments = torch.repeat_interleave(torch.arange(3), lengths)
    for pooling in ("mean", "attention", "stats"):
        head = Head(HeadConfig(8, 3, hidden=5, pooling=pooling)).eval()
        padded = head(x, lengths)
        torch.testing.assert_close(head(garbage, lengths), padded)
        torch.testing.assert_close(head.forward_packed(frames, segments, lengths), padded)
    # stats pooling by hand: mean and (population) std of the ReLU'd projections
    head = Head(HeadConfig(8, 3, hidden=5, pooling="stats")).eval()
    h = torch.relu(head.proj(x[0]))
    torch.testing.assert_close(head(x[:1], lengths[:1]), head.output(torch.cat([h.mean(0), h.std(0, unbiased=False)])[None]))
    # attention pooling by hand
    head = Head(HeadConfig(8, 3, hidden=5, pooling="attention")).eval()
    h = torch.relu(head.proj(x[0]))
    w = torch.softmax(head.pooling.score(h).squeeze(1), 0)
    torch.testing.assert_close(head(x[:1], lengths[:1]), head.output((w[:, None] * h).sum(0, keepdim=True)))
    assert sum(p.numel() for p in Head(HeadConfig(768, 4, pooling="stats")).parameters()) == 768 * 256 + 256 + 512 * 4 + 4


def test_weighted_layer_sum_weights_sum_to_one_and_learn_the_informative_layer(tmp_path):
    head = Head(HeadConfig(6, 2, hidden=4, num_layers=3))
    torch.testing.assert_close(head.layer_weights(), torch.full((3,), 1 / 3))
    x = torch.randn(5, 3, 6)  # (B, L, D)
    expected = head.output(torch.relu(head.proj(x.mean(1))))  # equal weights = the plain mean of the layers
    torch.testing.assert_close(head(x), expected)
    # features whose middle layer carries the classes, the others pure noise: training moves weight onto it
    rng = np.random.default_rng(0)
    means = rng.standard_normal((4, 16)) * 2
    feats, labels_of = {}, {}
    for i in range(80):
        c = i % 4
        layers = rng.standard_normal((3, 16)).astype(np.float32) * 2
        layers[1] = means[c] + 0.5 * rng.standard_normal(16)
        key = f"{LABELS[c]}/u{i:03d}"
        feats[key], labels_of[key] = layers, LABELS[c]
    fdir = write_features(tmp_path / "feats", feats, "utterance", layers=(0, 1, 2))
    keys = list(feats)
    folds = [{"name": "fold1", "train": keys[:56], "valid": keys[56:68], "test": keys[68:]}]
    ddir = write_manifest(tmp_path / "data", {k: {"label": labels_of[k]} for k in keys}, folds)
    out = tmp_path / "out"
    result = run_probe(fdir, ddir, out, ProbeConfig(**{**FAST, "epochs": 30, "optimizer": "adam", "lr": 0.01,
                                                    "select_metric": "loss"}),
                       layer="weighted", verbose=False)
    weights = result["folds"][0]["layer_weights"]
    assert sum(weights) == pytest.approx(1.0, abs=1e-6) and weights[1] > 0.36 and weights[1] == max(weights)
    assert result["layer"] == "weighted" and result["head"]["layer_mix"] is True
    assert result["layer_weights"]["layers"] == [0, 1, 2] and result["layer_weights"]["mean"] == pytest.approx(weights)
    assert (out / "layer_weights.png").read_bytes()[:4] == b"\x89PNG"
    assert "Learned layer weights" in (out / "results.md").read_text()
    head, meta = load_head(out / "heads" / "fold1.pt")
    assert head.layer_weights().tolist() == pytest.approx(weights) and meta["stored_layers"] == [0, 1, 2]
    with pytest.raises(ProbeError, match="--layer weighted needs features of several layers"):
        run_probe(write_features(tmp_path / "one", {k: v[1] for k, v in feats.items()}, "utterance"), ddir, None,
                  ProbeConfig(epochs=1), layer="weighted", verbose=False)


def test_save_and_load_head_roundtrip(tmp_path):
    torch.manual_seed(0)
    head = Head(HeadConfig(8, 3, hidden=5, pooling="attention", output="arcface", dropout=0.3))
    head.set_input_norm(torch.randn(8), torch.rand(8) + 0.5)
    save_head(tmp_path / "h.pt", head, task="categorical", names=["a", "b", "c"], layer=None)
    loaded, meta = load_head(tmp_path / "h.pt")
    x, lengths = torch.randn(2, 5, 8), torch.tensor([5, 2])
    torch.testing.assert_close(loaded(x, lengths), head.eval()(x, lengths))
    assert meta == {"task": "categorical", "names": ["a", "b", "c"], "layer": None} and not loaded.training
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ProbeError, match="not a saved head"):
        load_head(tmp_path / "bad.pt")


# ------------------------------------------------------------------------------------------------ targets
def write_manifest(directory: Path, rows: dict[str, dict], folds: list[dict], corpus: str = "synth",
                   protocol: str = "default") -> Path:
    """data.tsv with the given extra columns per key (label, votes, arousal, ...) and folds.json."""
    directory.mkdir(parents=True, exist_ok=True)
    extra = [c for c in next(iter(rows.values())) if c != "label"]
    lines = ["\t".join(["key", "path", "label", "speaker", "gender", "duration", *extra])]
    for i, (key, r) in enumerate(rows.items()):
        lines.append("\t".join([key, f"/audio/{key}.wav", r["label"], f"spk{i % 5}", "MF"[i % 2], "1.0",
                                *(str(r[c]) for c in extra)]))
    (directory / "data.tsv").write_text("\n".join(lines) + "\n")
    labels = sorted({r["label"] for r in rows.values()})
    (directory / "folds.json").write_text(json.dumps({"corpus": corpus, "protocol": protocol, "seed": 0,
                                                      "speaker_independent": False, "labels": labels,
                                                      "folds": folds}))
    return directory


def test_votes_column_and_target_building(tmp_path):
    head = "key\tpath\tlabel\tspeaker\tgender\tduration\tvotes\n"
    p = tmp_path / "data.tsv"
    p.write_text(head + "a\t/a.wav\tangry\ts\tM\t1\tangry:2,neutral:1\nb\t/b.wav\tsad\ts\tM\t1\tsad:two\n")
    with pytest.raises(ManifestError, match=r"data.tsv:3: votes 'sad:two': 'sad:two' is not label:count"):
        read_data_tsv(p)
    p.write_text(head + "a\t/a.wav\tangry\ts\tM\t1\tangry:0\n")
    with pytest.raises(ManifestError, match=r"data.tsv:2: votes 'angry:0': no positive count"):
        read_data_tsv(p)
    rows = [{"key": "a", "label": "angry", "votes": "angry:2,neutral:1"},
            {"key": "b", "label": "neutral", "votes": "neutral:1,sad:1,angry:2"},
            {"key": "c", "label": "sad", "votes": ""}]
    names = ["angry", "neutral", "sad"]
    soft = build_targets("soft", rows, names)
    np.testing.assert_allclose(soft.y, [[2 / 3, 1 / 3, 0], [0.5, 0.25, 0.25], [0, 0, 1]])
    assert soft.hard.tolist() == [0, 1, 2] and "1 utterance(s) without votes" in soft.notes[0]
    multi = build_targets("multilabel", rows, names)  # a class is true above 1/3 of the votes
    np.testing.assert_array_equal(multi.y, [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ProbeError, match=r"key 'x': votes for fear, which are not among the classes"):
        build_targets("soft", [{"key": "x", "label": "angry", "votes": "fear:1"}], names)
    reg = build_targets("regression", [{"key": "a", "label": "x", "arousal": "0.5"}], ["arousal"])
    assert reg.y.tolist() == [[0.5]]
    bad = [{"key": "a", "label": "x", "arousal": "high"}, {"key": "b", "label": "x", "arousal": "nan"},
           {"key": "c", "label": "x", "arousal": "0.2"}]
    with pytest.raises(ProbeError, match=r"(?s)2 regression target value\(s\).*key 'a': arousal 'high'.*"
                                         r"key 'b': arousal 'nan'"):
        build_targets("regression", bad, ["arousal"])
    with pytest.raises(ProbeError, match=r"no column 'valence' for --targets \(numeric columns: none\)"):
        build_targets("regression", bad, ["valence"])


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs,message", [
    (dict(task="regression", head="arcface", targets=("arousal",)), "--head arcface applies to --task categorical"),
    (dict(loss="ccc"), "--loss ccc does not apply to --task categorical \\(it is a loss of --task regression\\)"),
    (dict(task="regression", loss="ce", targets=("a",)), "--loss ce does not apply to --task regression"),
    (dict(task="soft", head="arcface"), "--head arcface applies to --task categorical only, not soft"),
    (dict(task="emotion"), "unknown task 'emotion'"),
    (dict(loss="focal"), "--loss focal does not apply to --task categorical \\(losses: bce, cb-ce, ccc"),
    (dict(select_metric="ccc"), "--select-metric ccc does not apply to --task categorical"),
    (dict(task="regression", loss="mse", label_smoothing=0.1, targets=("a",)), "--label-smoothing applies to"),
    (dict(task="regression"), "--task regression needs --targets"),
    (dict(targets=("arousal",)), "--targets names regression columns"),
    (dict(cb_beta=1.0, loss="cb-ce"), "--cb-beta must lie in"),
])
def test_impossible_combinations_are_refused_by_name(kwargs, message):
    with pytest.raises(ProbeError, match=message):
        ProbeConfig(**kwargs)


def test_cli_refuses_bad_combinations_with_exit_2(tmp_path, capsys):
    fdir, ddir, *_ = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    base = ["probe", "--features", str(fdir), "--data", str(ddir), "--out", str(tmp_path / "o"), "--epochs", "1"]
    assert cli(base + ["--task", "regression", "--targets", "arousal", "--head", "arcface"]) == 2
    assert "--head arcface applies to --task categorical only, not regression" in capsys.readouterr().err
    assert cli(base + ["--loss", "ccc"]) == 2
    assert "--loss ccc does not apply to --task categorical" in capsys.readouterr().err
    assert cli(base + ["--pooling", "stats"]) == 2
    assert "--pooling stats needs frame-level features" in capsys.readouterr().err
    assert cli(base + ["--task", "soft"]) == 2
    assert "soft and multi-label targets need a 'votes' column" in capsys.readouterr().err
    assert cli(base + ["--label-map", "ang=hap"]) == 2
    assert "--label-map applies to cross-corpus runs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ every task
def _vote_corpus(tmp_path: Path, n: int = 96, dim: int = 12):
    """Separable classes whose raters mostly agree: 3 votes for the true class, sometimes 1 for a neighbour."""
    rng = np.random.default_rng(3)
    means = rng.standard_normal((4, dim)) * 2
    feats, rows = {}, {}
    for i in range(n):
        c = i % 4
        key = f"u{i:03d}"
        feats[key] = (means[c] + 0.5 * rng.standard_normal(dim)).astype(np.float32)
        votes = {LABELS[c]: 3}
        if i % 3 == 0:
            votes[LABELS[(c + 1) % 4]] = 1
        rows[key] = {"label": LABELS[c], "votes": ",".join(f"{k}:{v}" for k, v in sorted(votes.items()))}
    keys = list(feats)
    folds = [{"name": f"fold{f + 1}", "train": [k for j, k in enumerate(keys) if j % 3 != f and j % 3 != (f + 1) % 3],
              "valid": [k for j, k in enumerate(keys) if j % 3 == (f + 1) % 3],
              "test": [k for j, k in enumerate(keys) if j % 3 == f]} for f in range(3)]
    return write_features(tmp_path / "feats", feats, "utterance"), write_manifest(tmp_path / "data", rows, folds)


def _predictions(out: Path) -> list[dict]:
    with open(out / "predictions.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_soft_and_multilabel_tasks(tmp_path):
    fdir, ddir = _vote_corpus(tmp_path)
    out = tmp_path / "soft"
    r = run_probe(fdir, ddir, out, ProbeConfig(task="soft", label_smoothing=0.05, **FAST), verbose=False)
    assert (r["task"], r["loss"], r["headline"], r["config"]["select_metric"]) == ("soft", "soft-ce", "macro_f1", "loss")
    assert r["summary"]["macro_f1"]["mean"] > 0.9 and r["summary"]["ml_macro_f1"]["mean"] > 0.8
    assert r["folds"][0]["ci"]["metric"] == "macro_f1" and "valid_loss" in r["folds"][0]["history"]
    rows = _predictions(out)
    assert list(rows[0])[:4] == ["fold", "key", "label", "prediction"]
    assert [c for c in rows[0] if c.startswith("t_")] == [f"t_{x}" for x in LABELS]
    first = next(x for x in rows if x["key"] == "u000")
    assert float(first["t_ang"]) == pytest.approx(0.75) and float(first["t_hap"]) == pytest.approx(0.25)
    assert sum(float(first[f"p_{x}"]) for x in LABELS) == pytest.approx(1.0, abs=1e-5)
    assert (out / "confusion.png").exists() and "task: **soft**" in (out / "results.md").read_text()

    cb = run_probe(fdir, ddir, None, ProbeConfig(task="soft", loss="cb-ce", **FAST), verbose=False)
    assert cb["loss"] == "cb-ce" and cb["summary"]["macro_f1"]["mean"] > 0.9

    out = tmp_path / "multi"
    r = run_probe(fdir, ddir, out, ProbeConfig(task="multilabel", **FAST), verbose=False)
    assert (r["loss"], r["config"]["select_metric"]) == ("bce", "macro_f1")
    assert r["summary"]["macro_f1"]["mean"] > 0.8 and "micro_f1" in r["summary"] and "confusion" not in r
    rows = _predictions(out)
    assert all(set(x["prediction"].split("+")) <= set(LABELS) for x in rows if x["prediction"])
    assert {float(x["t_ang"]) for x in rows} <= {0.0, 1.0}
    assert not (out / "confusion.png").exists()


def _regression_corpus(tmp_path: Path, n: int = 120, dim: int = 10, shift: float = 0.0):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((dim, 2))
    feats, rows = {}, {}
    for i in range(n):
        x = rng.standard_normal(dim) + shift
        a, v = 1 / (1 + np.exp(-(x - shift) @ w / 2))
        key = f"clip{i:03d}"
        feats[key] = x.astype(np.float32)
        rows[key] = {"label": "pos" if v > 0.5 else "neg", "arousal": f"{a:.4f}", "valence": f"{v:.4f}"}
    keys = list(feats)
    folds = [{"name": "fold1", "train": keys[:80], "valid": keys[80:100], "test": keys[100:]},
             {"name": "fold2", "train": keys[40:], "valid": keys[20:40], "test": keys[:20]}]
    return feats, rows, folds


def test_regression_task_reaches_high_ccc_and_reports_ccc_columns(tmp_path):
    feats, rows, folds = _regression_corpus(tmp_path)
    fdir = write_features(tmp_path / "feats", feats, "utterance")
    ddir = write_manifest(tmp_path / "data", rows, folds)
    out = tmp_path / "reg"
    r = run_probe(fdir, ddir, out, ProbeConfig(task="regression", targets=("arousal", "valence"), epochs=60,
                                               batch_size=16, optimizer="adam", bootstrap=100), verbose=False)
    assert (r["task"], r["loss"], r["headline"], r["targets"], r["labels"]) == ("regression", "ccc", "ccc",
                                                                                ["arousal", "valence"], [])
    assert r["summary"]["ccc"]["mean"] > 0.8 and r["summary"]["ccc_arousal"]["mean"] > 0.7
    assert set(r["folds"][0]["test"]["per_target"]) == {"arousal", "valence"} and "pearson" in r["summary"]
    ci = r["folds"][0]["ci"]
    assert ci["metric"] == "ccc" and ci["low"] <= r["folds"][0]["test"]["ccc"] <= ci["high"]
    preds = _predictions(out)
    assert list(preds[0]) == ["fold", "key", "true_arousal", "true_valence", "pred_arousal", "pred_valence"]
    assert float(next(p for p in preds if p["key"] == "clip000")["true_arousal"]) == float(rows["clip000"]["arousal"])
    md = (out / "results.md").read_text()
    assert "| CCC | Pearson r | MAE | CCC arousal | CCC valence | CCC 95% CI |" in md.replace("Fold | Train | Valid | "
                                                                                              "Test | Best epoch | ", "")
    mse = run_probe(fdir, ddir, None, ProbeConfig(task="regression", loss="mse", targets=("arousal",), epochs=60,
                                                  batch_size=16, optimizer="adam", bootstrap=0), verbose=False)
    assert mse["loss"] == "mse" and mse["summary"]["ccc"]["mean"] > 0.6 and mse["folds"][0]["ci"] is None
    # the cross-corpus table gains CCC columns for regression runs, beside the WA/UA/WF1 of classification runs
    cat = run_probe(fdir, ddir, None, ProbeConfig(epochs=5, bootstrap=0), verbose=False)
    table = report.make_table([r, cat]).splitlines()
    assert table[0] == ("| Features | synth CCC | synth CCC arousal | synth CCC valence | synth WA | synth UA | "
                        "synth WF1 |")
    cell = f"{r['summary']['ccc']['mean']:.3f} ± {r['summary']['ccc']['std']:.3f}"
    assert table[2].startswith(f"| feats | {cell} |")
    assert "CCC as a coefficient" in table[-1]


def test_regression_on_the_synthesisers_arousal_and_valence(tmp_path):
    """Audio end to end: the demo synthesiser also writes the arousal / valence it synthesised; log-mel features of
    held-out speakers predict them far above chance (CCC 0)."""
    from emotion2vec.demo.synth import build_corpus
    from emotion2vec.downstream.folds import make_folds, save_folds
    from emotion2vec.io.manifests import write_data_tsv

    rows, _ = build_corpus(tmp_path / "corpus", seed=0, num_speakers=8, utterances_per_emotion=4,
                           emotions=("angry", "happy", "neutral", "sad"), dimensions=True)
    assert all(0 <= r["arousal"] <= 1 and 0 <= r["valence"] <= 1 for r in rows)
    assert np.mean([r["arousal"] for r in rows if r["label"] == "angry"]) > 0.6
    assert {r["arousal"] for r in rows if r["label"] == "neutral"} == {0.5}
    data = tmp_path / "manifests"
    write_data_tsv(data / "data.tsv", rows)
    save_folds(make_folds(read_data_tsv(data), "speaker-kfold", folds=4, corpus="synthetic"), data / "folds.json")
    feats = tmp_path / "fbank"
    assert cli(["extract", "--checkpoint", "fbank", "--input", str(data / "data.tsv"), "--out", str(feats),
                "--granularity", "utterance", "--device", "cpu"]) == 0
    r = run_probe(feats, data, tmp_path / "out", ProbeConfig(task="regression", targets=("arousal", "valence"),
                                                              epochs=40, batch_size=16, optimizer="adam",
                                                              standardize=True, bootstrap=0), verbose=False)
    assert r["speaker_independent"] is True and r["audit"]["kind"] == "promised"
    # measured: mean CCC 0.38 (arousal 0.50, valence 0.27) on 2 unseen speakers per fold
    assert r["summary"]["ccc"]["mean"] > 0.25 and r["summary"]["ccc_arousal"]["mean"] > 0.35


# ------------------------------------------------------------------------------------------------ cross-corpus
def test_cross_corpus_trains_on_the_folds_of_a_and_tests_on_all_of_b(tmp_path, capsys):
    fa, da, feats_a, labels_a, _ = synthetic_corpus(tmp_path / "a", "utterance", n=80, n_folds=2, seed=1)
    # corpus B: the same classes spelt differently, plus a class A does not know
    rng = np.random.default_rng(1)
    means = rng.standard_normal((4, 24)) * 2.0  # synthetic_corpus(seed=1)'s class means
    spelled = {"ang": "anger", "hap": "joy", "neu": "neutral", "sad": "sadness"}
    feats_b, rows_b = {}, {}
    for i in range(40):
        c = i % 4
        key = f"Angry/utt{i:03d}"  # keys may repeat A's keys: positions keep them apart
        feats_b[key] = (means[c] + 0.5 * rng.standard_normal(24)).astype(np.float32)
        rows_b[key] = {"label": spelled[LABELS[c]]}
    feats_b["Other/calm000"] = means[2].astype(np.float32)
    rows_b["Other/calm000"] = {"label": "calm"}
    fb = write_features(tmp_path / "b" / "feats", feats_b, "utterance")
    db = write_manifest(tmp_path / "b" / "data", rows_b, [{"name": "x", "train": list(rows_b)[:30], "valid": [],
                                                            "test": list(rows_b)[30:]}], corpus="other")
    cfg = ProbeConfig(**FAST)
    with pytest.raises(ProbeError, match=r"test label\(s\) not among the training classes \['ang', 'hap', 'neu', "
                                         r"'sad'\]: anger \(10 utterance\(s\)\), calm \(1 utterance\(s\)\), joy "
                                         r"\(10 utterance\(s\)\), neutral \(10 utterance\(s\)\), sadness"):
        run_probe(fa, da, None, cfg, test_features=fb, test_data=db, verbose=False)
    partial = "anger=ang,joy=hap,neutral=neu,sadness=sad"
    with pytest.raises(ProbeError, match=r"calm \(1 utterance\(s\)\); map them with --label-map"):
        run_probe(fa, da, None, cfg, test_features=fb, test_data=db, label_map=partial, verbose=False)
    out = tmp_path / "cross"
    r = run_probe(fa, da, out, cfg, test_features=fb, test_data=db, label_map=partial + ",calm=", verbose=False)
    # each of A's own folds trains and selects (its train / valid keys, A's test keys unused), B is every fold's test
    spec = json.loads((da / "folds.json").read_text())["folds"]
    assert [f["name"] for f in r["folds"]] == [f["name"] for f in spec] == ["fold1", "fold2"]
    for fold, own in zip(r["folds"], spec):
        assert fold["n_test"] == 40 and (fold["n_train"], fold["n_valid"]) == (len(own["train"]), len(own["valid"]))
    assert r["protocol"] == "cross-corpus" and r["corpus"] == "synth->data" and r["summary"]["ua"]["mean"] > 0.9
    assert r["cross_corpus"]["train_protocol"] == "default"
    assert r["cross_corpus"]["dropped"]["test"] == {"calm": 1} and r["audit"]["protocol"] == "cross-corpus"
    preds = _predictions(out)
    assert len(preds) == 80 and {p["label"] for p in preds} == set(LABELS)
    assert "cross-corpus: trained and selected on" in (out / "results.md").read_text()
    rc = cli(["probe", "--features", str(fa), "--data", str(da), "--test-features", str(fb), "--out",
              str(tmp_path / "o")])
    assert rc == 2 and "needs both --test-features and --test-data" in capsys.readouterr().err
