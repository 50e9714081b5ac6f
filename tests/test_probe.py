"""emotion2vec probe: the head, training on synthetic features, the output files and the cross-corpus table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion2vec.downstream import report
from emotion2vec.cli import main as cli
from emotion2vec.downstream import ProbeError
from emotion2vec.downstream.features import load_features
from emotion2vec.downstream.heads import Head, HeadConfig, load_head
from emotion2vec.downstream.probe import run_probe
from emotion2vec.downstream.training import ProbeConfig


def main(argv):
    return cli(["probe", *argv])

LABELS = ["ang", "hap", "neu", "sad"]


# ----------------------------------------------------------------------------------------------- fixtures
def write_features(directory: Path, features: dict[str, np.ndarray], granularity: str, layers=(-1,),
                   errors: dict[str, str] | None = None) -> Path:
    """A per-file feature directory exactly as documented in emotion2vec/features.py."""
    directory.mkdir(parents=True, exist_ok=True)
    dim = next(iter(features.values())).shape[-1]
    meta = {"format": "emotion2vec-features", "version": 1, "granularity": granularity, "layers": list(layers),
            "dim": dim, "frame_rate": 50.0, "packed": False}
    (directory / "features.json").write_text(json.dumps(meta))
    rows = ["key\tpath\tframes\tstatus\toutput\toffset"]
    for key, x in features.items():
        out = directory / f"{key}.npy"
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, x)
        frames = x.shape[-2] if granularity == "frame" else 1
        rows.append(f"{key}\t/audio/{key}.wav\t{frames}\tok\t{key}.npy\t")
    for key, reason in (errors or {}).items():
        rows.append(f"{key}\t/audio/{key}.wav\t0\terror: {reason}\t\t")
    (directory / "index.tsv").write_text("\n".join(rows) + "\n")
    return directory


def write_manifest(directory: Path, labels_of: dict[str, str], folds: list[dict], labels=LABELS,
                   corpus: str = "synth") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["key\tpath\tlabel\tspeaker\tgender\tduration"]
    for i, (key, label) in enumerate(labels_of.items()):
        lines.append(f"{key}\t/audio/{key}.wav\t{label}\tspk{i % 5}\t{'MF'[i % 2]}\t1.0")
    (directory / "data.tsv").write_text("\n".join(lines) + "\n")
    spec = {"corpus": corpus, "protocol": "default", "seed": 0, "speaker_independent": False,
            "labels": list(labels), "folds": folds}
    (directory / "folds.json").write_text(json.dumps(spec))
    return directory


def synthetic_corpus(tmp_path: Path, granularity: str, n: int = 80, dim: int = 24, n_folds: int = 3, seed: int = 0,
                     layers=(-1,), with_valid: bool = True):
    """Separable classes: features = class mean + small noise. Keys include a sub-folder, like real corpora."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((len(LABELS), dim)) * 2.0
    feats, labels_of = {}, {}
    for i in range(n):
        c = i % len(LABELS)
        key = f"{LABELS[c].capitalize()}/utt{i:03d}"
        labels_of[key] = LABELS[c]
        shape = (int(rng.integers(3, 40)), dim) if granularity == "frame" else (dim,)
        x = means[c] + 0.5 * rng.standard_normal(shape)
        if len(layers) > 1:
            x = np.stack([x + 10.0 * l for l in range(len(layers))])  # layers differ by an offset
        feats[key] = x.astype(np.float32)
    keys = list(feats)
    folds = []
    for f in range(n_folds):
        test = [k for i, k in enumerate(keys) if (i // len(LABELS)) % n_folds == f]  # every class in every fold
        rest = [k for k in keys if k not in test]
        valid = rest[: len(rest) // 8] if with_valid else []
        folds.append({"name": f"fold{f + 1}", "train": [k for k in rest if k not in valid], "valid": valid, "test": test})
    fdir = write_features(tmp_path / "features" / "synth" / "src", feats, granularity, layers)
    ddir = write_manifest(tmp_path / "manifests" / "synth", labels_of, folds)
    return fdir, ddir, feats, labels_of, folds


FAST = dict(epochs=25, batch_size=16)


# -------------------------------------------------------------------------------------------------- model
def ProbeModel(dim, classes, hidden=256):
    return Head(HeadConfig(dim, classes, hidden))


def test_parameter_count_matches_paper():
    model = ProbeModel(768, 4)
    assert sum(p.numel() for p in model.parameters()) == 197_892
    assert sum(p.numel() for p in ProbeModel(768, 4, hidden=128).parameters()) == 768 * 128 + 128 + 128 * 4 + 4


def test_input_norm_is_folded_into_the_first_layer():
    torch.manual_seed(0)
    model = ProbeModel(8, 3, hidden=5)
    x, lengths = torch.randn(3, 4, 8) * 7 + 3, torch.tensor([4, 2, 3])
    mean, inv_std = torch.randn(8), torch.rand(8) + 0.1
    plain = model(((x - mean) * inv_std), lengths)
    model.set_input_norm(mean, inv_std)
    torch.testing.assert_close(model(x, lengths), plain, rtol=1e-5, atol=1e-5)
    assert "input_mean" in model.state_dict() and not any(p is model.input_mean for p in model.parameters())


def test_padded_masked_mean_equals_packed_and_ignores_padding():
    torch.manual_seed(0)
    model = ProbeModel(8, 3, hidden=5)
    lengths = torch.tensor([4, 1, 3])
    x = torch.randn(3, 4, 8)
    padded = model(x, lengths)
    x_garbage = x.clone()
    x_garbage[1, 1:] = 1e3
    x_garbage[2, 3:] = -1e3
    torch.testing.assert_close(model(x_garbage, lengths), padded)
    frames = torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])
    segments = torch.repeat_interleave(torch.arange(3), lengths)
    torch.testing.assert_close(model.forward_packed(frames, segments, lengths), padded)
    # by hand for the first utterance
    h = torch.relu(model.proj(x[0])).mean(0)
    torch.testing.assert_close(padded[0], model.output(h))
    # utterance-level input (B, D) = one frame each
    torch.testing.assert_close(model(x[:, 0]), model(x[:, :1], torch.ones(3, dtype=torch.long)))


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_separable_features_reach_near_perfect_and_write_outputs(tmp_path, granularity):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, granularity)
    out = tmp_path / "results" / "synth" / "src"
    result = run_probe(fdir, ddir, out, ProbeConfig(**FAST), device="cpu", verbose=False)
    assert result["summary"]["wa"]["mean"] >= 0.97
    assert result["summary"]["ua"]["mean"] >= 0.97
    assert result["granularity"] == granularity and result["dim"] == 24
    assert result["parameters"] == 24 * 256 + 256 + 256 * 4 + 4

    for name in report.OUTPUT_FILES:
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["corpus"] == "synth" and saved["source"] == "src" and saved["labels"] == LABELS
    assert [f["name"] for f in saved["folds"]] == ["fold1", "fold2", "fold3"]
    for f, spec in zip(saved["folds"], folds):
        assert (f["n_train"], f["n_valid"], f["n_test"]) == (len(spec["train"]), len(spec["valid"]), len(spec["test"]))
        assert 1 <= f["best_epoch"] <= f["epochs_run"] == 25
        # categorical runs select on valid UA by default
        assert len(f["history"]["train_loss"]) == 25 and len(f["history"]["valid_ua"]) == 25
        assert f["valid"]["ua"] == pytest.approx(max(f["history"]["valid_ua"]))
        assert f["history"]["valid_ua"].index(max(f["history"]["valid_ua"])) + 1 == f["best_epoch"]
        assert set(f["test"]["per_class"]) == set(LABELS)
        assert f["ci"]["metric"] == "ua" and f["ci"]["low"] <= f["test"]["ua"] <= f["ci"]["high"]
        assert f["ci"]["resamples"] == 1000 and f["head_file"] == f"heads/{f['name']}.pt"
    assert (saved["task"], saved["loss"], saved["headline"], saved["targets"]) == ("categorical", "ce", "ua", LABELS)
    assert saved["head"]["type"] == "linear" and saved["head"]["pooling"] == "mean"
    assert saved["feature_settings"]["granularity"] == granularity and saved["audit"]["protocol"] == "default"
    assert saved["config"]["select_metric"] == "ua"
    waves = [f["test"]["wa"] for f in saved["folds"]]
    assert saved["summary"]["wa"]["mean"] == pytest.approx(np.mean(waves))
    assert saved["summary"]["wa"]["std"] == pytest.approx(np.std(waves))
    assert np.sum(saved["confusion"]) == len(feats) and len(saved["confusion"]) == 4
    assert saved["config"]["optimizer"] == "rmsprop" and saved["config"]["lr"] == 5e-4
    # each fold's head is saved with what it needs to be used again, and reproduces the fold's test predictions
    head, meta = load_head(out / "heads" / "fold2.pt")
    assert (meta["task"], meta["names"], meta["fold"], meta["granularity"]) == ("categorical", LABELS, "fold2",
                                                                                granularity)
    assert meta["feature_settings"]["format"] == "emotion2vec-features" and meta["layer"] is None
    keys = folds[1]["test"]
    x = [torch.from_numpy(feats[k]) for k in keys]
    with torch.no_grad():
        if granularity == "frame":
            lengths = torch.tensor([len(v) for v in x])
            head_probs = torch.softmax(head(torch.nn.utils.rnn.pad_sequence(x, batch_first=True), lengths), 1)
        else:
            head_probs = torch.softmax(head(torch.stack(x)), 1)

    with open(out / "predictions.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert list(rows[0]) == ["fold", "key", "label", "prediction", "p_ang", "p_hap", "p_neu", "p_sad"]
    assert len(rows) == sum(len(f["test"]) for f in folds)
    assert {(r["fold"], r["key"]) for r in rows} == {(f["name"], k) for f in folds for k in f["test"]}
    for r in rows:
        probs = np.array([float(r[f"p_{label}"]) for label in LABELS])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert r["prediction"] == LABELS[int(probs.argmax())] and r["label"] == labels_of[r["key"]]
    correct = sum(r["label"] == r["prediction"] for r in rows)
    assert correct / len(rows) == pytest.approx(np.mean(waves), abs=0.02)
    saved_probs = {r["key"]: [float(r[f"p_{label}"]) for label in LABELS] for r in rows if r["fold"] == "fold2"}
    np.testing.assert_allclose(head_probs.numpy(), [saved_probs[k] for k in keys], atol=1e-5)

    md = (out / "results.md").read_text()
    assert "| Fold | Train | Valid | Test | Best epoch | WA | UA | WF1 | macro-F1 |" in md
    for f in saved["folds"]:
        assert f"| {f['name']} | {f['n_train']} | {f['n_valid']} | {f['n_test']} | {f['best_epoch']} | " \
               f"{100 * f['test']['wa']:.2f} |" in md
    s = saved["summary"]
    assert f"| **mean ± std** | | | | | {100 * s['wa']['mean']:.2f} ± {100 * s['wa']['std']:.2f} |" in md
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))


def test_same_seed_same_results_other_seed_differs(tmp_path):
    fdir, ddir, *_ = synthetic_corpus(tmp_path, "frame", n=40, n_folds=2)
    cfg = dict(epochs=5, batch_size=8)
    a = run_probe(fdir, ddir, tmp_path / "a", ProbeConfig(**cfg), device="cpu", verbose=False)
    b = run_probe(fdir, ddir, tmp_path / "b", ProbeConfig(**cfg), device="cpu", verbose=False)
    c = run_probe(fdir, ddir, tmp_path / "c", ProbeConfig(seed=7, **cfg), device="cpu", verbose=False)
    assert [f["history"] for f in a["folds"]] == [f["history"] for f in b["folds"]]
    pa, pb, pc = ((tmp_path / d / "predictions.tsv").read_text() for d in "abc")
    assert pa == pb
    assert pa != pc


def test_folds_without_valid_use_a_fraction_of_train_and_patience_stops(tmp_path):
    fdir, ddir, _, _, folds = synthetic_corpus(tmp_path, "utterance", n=60, n_folds=2, with_valid=False)
    r = run_probe(fdir, ddir, None, ProbeConfig(epochs=200, batch_size=16, patience=3, select_metric="loss"),
                  device="cpu", verbose=False)
    for f, spec in zip(r["folds"], folds):
        n = len(spec["train"])
        assert f["n_valid"] == round(0.2 * n) and f["n_train"] == n - round(0.2 * n)
        assert f["epochs_run"] < 200 and f["epochs_run"] == f["best_epoch"] + 3
        assert "valid_loss" in f["history"] and "valid_loss_loss" not in f["history"]
    r = run_probe(fdir, ddir, None, ProbeConfig(epochs=4, valid_fraction=0.0), device="cpu", verbose=False)
    assert all(f["n_valid"] == 0 and f["best_epoch"] == 4 for f in r["folds"])
    r = run_probe(fdir, ddir, None, ProbeConfig(epochs=3, valid_is_test=True, optimizer="adam"), folds="2",
                  device="cpu", verbose=False)
    assert [f["name"] for f in r["folds"]] == ["fold2"] and r["config"]["lr"] == 1e-3
    assert r["folds"][0]["n_valid"] == r["folds"][0]["n_test"] == len(folds[1]["test"])


def test_several_layers_need_a_choice(tmp_path):
    fdir, ddir, feats, *_ = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2, layers=(6, 7))
    keys = list(feats)[:5]
    stacked = np.stack([feats[k] for k in keys])  # (N, L, D)
    np.testing.assert_array_equal(load_features(fdir, keys, "7")[0].x.numpy(), stacked[:, 1])
    np.testing.assert_allclose(load_features(fdir, keys, "mean")[0].x.numpy(), stacked.mean(1), rtol=1e-6)
    cfg = ProbeConfig(epochs=2)
    with pytest.raises(ProbeError, match=r"hold layers \[6, 7\]"):
        run_probe(fdir, ddir, None, cfg, device="cpu", verbose=False)
    with pytest.raises(ProbeError, match=r"layer\(s\) \[5\] not stored"):
        run_probe(fdir, ddir, None, cfg, layer="5", device="cpu", verbose=False)
    for layer in ("7", "mean", "6,7"):
        assert run_probe(fdir, ddir, None, cfg, layer=layer, device="cpu", verbose=False)["dim"] == 24
    # negative indices count from the model's last block when features.json records num_layers
    meta = json.loads((fdir / "features.json").read_text())
    (fdir / "features.json").write_text(json.dumps({**meta, "num_layers": 8}))
    r = run_probe(fdir, ddir, None, cfg, layer="-1", device="cpu", verbose=False)
    assert r["layer"] == 7 and r["stored_layers"] == [6, 7]
    assert run_probe(fdir, ddir, None, cfg, layer="-2,-1", device="cpu", verbose=False)["layer"] == [6, 7]


def test_packed_feature_store_loads_like_per_file(tmp_path):
    fdir, ddir, feats, *_ = synthetic_corpus(tmp_path, "frame", n=12, n_folds=3)
    packed_dir = tmp_path / "packed"
    packed_dir.mkdir()
    meta = json.loads((fdir / "features.json").read_text())
    (packed_dir / "features.json").write_text(json.dumps({**meta, "packed": True}))
    rows, offset = ["key\tpath\tframes\tstatus\toutput\toffset"], 0
    for key, x in feats.items():
        rows.append(f"{key}\t/a.wav\t{len(x)}\tok\tfeatures.npy\t{offset}")
        offset += len(x)
    (packed_dir / "index.tsv").write_text("\n".join(rows) + "\n")
    np.save(packed_dir / "features.npy", np.concatenate(list(feats.values())))
    keys = list(feats)[::-1]
    a, info = load_features(fdir, keys)
    b, _ = load_features(packed_dir, keys)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert a.lengths.tolist() == b.lengths.tolist() == [len(feats[k]) for k in keys]
    assert info["frames"] == sum(len(x) for x in feats.values())
    rows_of_third, segments, _ = a.frame_index(torch.tensor([2]))
    torch.testing.assert_close(a.x[rows_of_third], torch.from_numpy(feats[keys[2]]))


def test_missing_features_are_listed_with_extraction_errors(tmp_path, capsys):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    broken = dict(feats)
    gone = [folds[0]["test"][0], folds[1]["train"][3]]
    for key in gone:
        del broken[key]
    bad_dir = write_features(tmp_path / "broken", broken, "utterance", errors={gone[0]: "audio too short"})
    with pytest.raises(ProbeError) as e:
        run_probe(bad_dir, ddir, tmp_path / "out", ProbeConfig(epochs=1), device="cpu", verbose=False)
    msg = str(e.value)
    assert "2 key(s)" in msg and gone[0] in msg and gone[1] in msg
    assert "error: audio too short" in msg and "not in index.tsv" in msg
    assert not (tmp_path / "out").exists()
    # the CLI prints the same error and returns 2 (bad input)
    rc = main(["--features", str(bad_dir), "--data", str(ddir), "--out", str(tmp_path / "out"), "--epochs", "1"])
    assert rc == 2 and "audio too short" in capsys.readouterr().err


def test_label_outside_the_folds_labels_is_an_error(tmp_path):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    write_manifest(ddir, labels_of, folds, labels=["ang", "hap", "neu"])
    with pytest.raises(ProbeError, match=r"labels \['sad'\] occur in data.tsv but not in the folds' label list"):
        run_probe(fdir, ddir, None, ProbeConfig(epochs=1), device="cpu", verbose=False)


def test_a_fold_whose_test_labels_never_occur_in_training_is_refused(tmp_path):
    """A split where each 'speaker' holds one emotion puts the test emotion out of the training set: the probe used
    to train, predict and report 0.00 everywhere without a word."""
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    keys = list(labels_of)
    sad = [k for k in keys if labels_of[k] == "sad"]
    rest = [k for k in keys if labels_of[k] != "sad"]
    bad = [{"name": "fold1", "train": rest[4:], "valid": rest[:4], "test": sad}]
    write_manifest(ddir, labels_of, bad)
    with pytest.raises(ProbeError, match=r"fold1: 10 test utterance\(s\) carry label\(s\) sad that never occur"):
        run_probe(fdir, ddir, tmp_path / "out", ProbeConfig(epochs=1), device="cpu", verbose=False)
    assert not (tmp_path / "out").exists()
    assert main(["--features", str(fdir), "--data", str(ddir), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    # cross-corpus work may allow it explicitly; results.md then says so
    result = run_probe(fdir, ddir, tmp_path / "out", ProbeConfig(epochs=1), device="cpu", verbose=False,
                       allow_unseen_test_labels=True)
    assert result["warnings"] and "never occur" in result["warnings"][0]
    assert "**WARNINGS:**" in (tmp_path / "out" / "results.md").read_text()


def test_a_fold_with_one_training_label_is_refused(tmp_path):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    angry = [k for k in labels_of if labels_of[k] == "ang"]
    write_manifest(ddir, labels_of, [{"name": "fold1", "train": angry[2:], "valid": angry[:2],
                                      "test": [k for k in labels_of if k not in angry]}])
    with pytest.raises(ProbeError, match=r"fold1: the training set holds 1 label\(s\) \(ang\)"):
        run_probe(fdir, ddir, None, ProbeConfig(epochs=1), device="cpu", verbose=False)


def test_cli_frame_level_run(tmp_path, capsys):
    fdir, ddir, *_ = synthetic_corpus(tmp_path, "frame", n=40, n_folds=2)
    out = tmp_path / "res"
    rc = main(["--features", str(fdir), "--data", str(ddir), "--out", str(out), "--epochs", "20", "--batch-size", "8",
               "--device", "cpu", "--threads", "1", "--standardize", "--name", "mysrc", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Corpus | Features | Folds | WA | UA | WF1 | macro-F1 |" in printed and "| synth | mysrc | 2 |" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["source"] == "mysrc" and saved["config"]["standardize"] is True
    assert saved["summary"]["wa"]["mean"] >= 0.95


# ------------------------------------------------------------------------------------------------ table
def fake_result(corpus, source, was, uas=None, wf1s=None):
    def s(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    uas, wf1s = uas or was, wf1s or was
    return {"corpus": corpus, "source": source, "folds": [{} for _ in was],
            "summary": {"wa": s(was), "ua": s(uas), "wf1": s(wf1s), "macro_f1": s(was)}}


def test_make_table_layout(tmp_path):
    results = [fake_result("iemocap", "fbank", [0.5, 0.6]), fake_result("iemocap", "e2v", [0.7, 0.7], [0.8, 0.6]),
               fake_result("urdu", "e2v", [0.9])]
    table = report.make_table(results)
    lines = table.splitlines()
    assert lines[0] == "| Features | IEMOCAP WA | IEMOCAP UA | IEMOCAP WF1 | URDU WA | URDU UA | URDU WF1 |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| fbank | 55.00 ± 5.00 | 55.00 ± 5.00 | 55.00 ± 5.00 | – | – | – |"
    assert lines[3] == ("| e2v | **70.00 ± 0.00** | **70.00 ± 10.00** | **70.00 ± 0.00** | 90.00 ± 0.00 | "
                        "90.00 ± 0.00 | 90.00 ± 0.00 |")
    assert lines[5].startswith("Mean ± std over folds, in percent (folds: IEMOCAP 2, URDU 1)")

    # from files on disk, with an explicit order and metric choice, via the CLI
    for r in results:
        d = tmp_path / r["corpus"] / r["source"]
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))
    out = tmp_path / "table.md"
    rc = cli(["report", *(str(p) for p in sorted(tmp_path.glob("*/*"))), str(tmp_path / "nothing"),
                      "--skip-missing", "--metrics", "wa,macro_f1", "--corpora", "urdu,iemocap",
                      "--sources", "e2v,fbank", "--no-bold", "--out", str(out)])
    assert rc == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "| Features | URDU WA | URDU macro-F1 | IEMOCAP WA | IEMOCAP macro-F1 |"
    assert lines[2] == "| e2v | 90.00 ± 0.00 | 90.00 ± 0.00 | 70.00 ± 0.00 | 70.00 ± 0.00 |"
    assert lines[3] == "| fbank | – | – | 55.00 ± 5.00 | 55.00 ± 5.00 |"
    # never refused: the same source on the same corpus under another protocol is another column group, and
    # under the same protocol another row
    loso = dict(fake_result("urdu", "e2v", [0.1]), protocol="loso-speaker")
    lines = report.make_table([dict(r, protocol="random-kfold") for r in results] + [loso]).splitlines()
    assert lines[0] == ("| Features | IEMOCAP WA | IEMOCAP UA | IEMOCAP WF1 | URDU (random-kfold) WA | URDU "
                        "(random-kfold) UA | URDU (random-kfold) WF1 | URDU (loso-speaker) WA | URDU (loso-speaker) UA "
                        "| URDU (loso-speaker) WF1 |")
    assert lines[3] == ("| e2v | **70.00 ± 0.00** | **70.00 ± 10.00** | **70.00 ± 0.00** | 90.00 ± 0.00 | 90.00 ± 0.00 "
                        "| 90.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 |")
    assert "(folds: IEMOCAP 2 (random-kfold), URDU (random-kfold) 1, URDU (loso-speaker) 1)" in lines[5]
    lines = report.make_table(results + [fake_result("urdu", "e2v", [0.1])]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:5]] == ["| fbank", "| e2v", "| e2v (#2)"]
    assert lines[3].endswith("| **90.00 ± 0.00** | **90.00 ± 0.00** | **90.00 ± 0.00** |")  # two now compete
    assert lines[4] == "| e2v (#2) | – | – | – | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 |"
    again = tmp_path / "again" / "e2v_20_epochs"  # read from run folders: the further one named by its folder
    again.mkdir(parents=True)
    (again / "results.json").write_text(json.dumps(fake_result("urdu", "e2v", [0.1])))
    lines = report.make_table([tmp_path / "urdu" / "e2v", tmp_path / "iemocap" / "e2v", again],
                              bold_best=False).splitlines()
    assert lines[2] == "| e2v | 90.00 ± 0.00 | 90.00 ± 0.00 | 90.00 ± 0.00 | 70.00 ± 0.00 | 70.00 ± 10.00 | 70.00 ± 0.00 |"
    assert lines[3] == "| e2v (e2v_20_epochs) | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 | – | – | – |"
    with pytest.raises(report.ReportError, match="results.json: not found"):
        report.make_table([tmp_path / "nothing"])
