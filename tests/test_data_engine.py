"""The data engine (`emotion2vec pseudo-label`, `recipes/data_engine.sh`): combining, filtering and the corpus by hand
computation, then a CPU-sized engine on the synthetic corpus: labels hidden except for a seed set, the tiny golden
checkpoint fine-tuned on it labels the rest, the kept labels are more often right than all of them, one more round
runs end to end, and the labelling is sharded under torchrun and resumable."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, URDU, require
from docs_blocks import blocks, check_flags, env, needs_cluster, run_bash, run_python, workspace
from emotion2vec.cli import main as cli
from emotion2vec.downstream.targets import build_targets, vote_classes
from emotion2vec.extract.inputs import Item
from emotion2vec.io.manifests import parse_votes, read_data_tsv
from emotion2vec.pseudolabel import PseudoLabelError
from emotion2vec.pseudolabel.combine import combine
from emotion2vec.pseudolabel.corpus import check_disjoint, corpus_rows, votes
from emotion2vec.pseudolabel.filter import FilterConfig, select
from emotion2vec.pseudolabel.predictions import ModelPredictions, model_names, read_table
from emotion2vec.pseudolabel.report import rounds_markdown

BIN = Path(sys.executable).parent
LABELS = ["angry", "happy", "sad"]


# ------------------------------------------------------------------------------------------------ by hand
def _tables() -> list[ModelPredictions]:
    a = ModelPredictions("1-a", LABELS, {
        "long": [(0.0, 10.0, np.array([0.7, 0.2, 0.1])), (5.0, 15.0, np.array([0.3, 0.6, 0.1])),
                 (10.0, 20.0, np.array([0.8, 0.1, 0.1]))],
        "short": [(0.0, 2.0, np.array([0.1, 0.1, 0.8]))]}, {"bad": "unreadable audio (x)"})
    b = ModelPredictions("2-b", ["sad", "angry", "happy"], {  # another label order: aligned by name
        "long": [(0.0, 10.0, np.array([0.1, 0.5, 0.4])), (5.0, 15.0, np.array([0.1, 0.2, 0.7])),
                 (10.0, 20.0, np.array([0.3, 0.6, 0.1]))],
        "short": [(0.0, 2.0, np.array([0.5, 0.2, 0.3]))]})
    return [a, b]


def test_combine_averages_windows_then_models_and_counts_agreement():
    items = [Item("long", "/a/long.wav"), Item("short", "/a/short.wav"), Item("bad", "/a/bad.wav")]
    long_, short, bad = combine(items, _tables(), LABELS)
    # model a: mean of its windows (0.6, 0.3, 0.1); model b: (angry 1.3 / 3, happy 1.2 / 3, sad 0.5 / 3)
    np.testing.assert_allclose(long_.probabilities, [(0.6 + 1.3 / 3) / 2, (0.3 + 1.2 / 3) / 2, (0.1 + 0.5 / 3) / 2])
    assert long_.label == "angry" and long_.duration == 20.0 and long_.windows == 3
    assert long_.confidence == pytest.approx(0.51667, abs=1e-5) and long_.margin == pytest.approx(1 / 6)
    # 6 window predictions: a says angry, happy, angry; b says angry, happy, angry -> 4 of 6 agree with angry
    assert long_.agreement == pytest.approx(4 / 6)
    assert long_.model_labels == ["angry", "angry"]
    np.testing.assert_allclose(short.probabilities, [0.15, 0.2, 0.65])
    assert (short.label, short.agreement, short.model_labels) == ("sad", 1.0, ["sad", "sad"])
    assert bad.error == "unreadable audio (x)" and bad.probabilities is None


def test_the_filter_names_every_reason_and_applies_the_quota_to_the_most_confident():
    items = [Item("long", "/a/long.wav"), Item("short", "/a/short.wav"), Item("bad", "/a/bad.wav")]
    utts = combine(items, _tables(), LABELS)
    kept, rejected = select(utts, FilterConfig(min_confidence=0.6, min_margin=0.2, min_agreement=0.75,
                                               max_duration=15.0), LABELS)
    assert [u.key for u in kept] == ["short"]
    why = dict((u.key, r) for u, r in rejected)
    assert why["long"] == ("duration 20.00 s > 15 s; confidence 0.517 < 0.6; margin 0.167 < 0.2; "
                           "agreement 0.667 < 0.75")
    assert why["bad"] == "error: unreadable audio (x)"
    # classes: sad left out -> the short file is rejected for its label
    kept, rejected = select(utts, FilterConfig(min_confidence=0, min_margin=0, min_agreement=0), ["angry", "happy"])
    assert [u.key for u in kept] == ["long"] and "label sad not among the classes" in dict(
        (u.key, r) for u, r in rejected)["short"]
    # quota: 3 angry files, 2 kept, the most confident first
    many = []
    for key, conf in (("x", 0.7), ("y", 0.9), ("z", 0.8)):
        u = combine([Item("short", "/p")], _tables(), LABELS)[0]
        u.key, u.label, u.confidence = key, "angry", conf
        many.append(u)
    kept, rejected = select(many, FilterConfig(min_confidence=0, min_margin=0, min_agreement=0,
                                               max_files_per_class=2), LABELS)
    assert [u.key for u in kept] == ["y", "z"] and rejected[0][1] == "over the quota of angry (2 files)"
    kept, _ = select(many, FilterConfig(min_confidence=0, min_margin=0, min_agreement=0,
                                        max_hours_per_class=4.5 / 3600), LABELS)  # 2 s each: two fit in 4.5 s
    assert [u.key for u in kept] == ["y", "z"]
    default = FilterConfig().classes(["angry", "other", "sad", "unknown"])
    assert default == ["angry", "sad"]
    with pytest.raises(PseudoLabelError, match="fear not among the models' labels"):
        FilterConfig(labels=("angry", "fear")).classes(LABELS)
    with pytest.raises(PseudoLabelError, match="--min-margin 1.5"):
        FilterConfig(min_margin=1.5).check()


def test_votes_are_the_class_shares_and_the_corpus_gets_one_fold():
    u = combine([Item("short", "/a/short.wav")], _tables(), LABELS)[0]
    assert votes(u, LABELS, LABELS) == "angry:0.15,happy:0.2,sad:0.65"
    assert parse_votes(votes(u, LABELS, ["angry", "sad"])) == {"angry": 0.1875, "sad": 0.8125}
    pseudo = [{"key": f"p{i}", "path": f"/p/{i}.wav", "label": "sad", "speaker": "", "gender": "", "duration": 2.0,
               "votes": "sad:0.9,angry:0.1", "source": "pseudo"} for i in range(3)]
    seed = [{"key": f"s{i}", "path": f"/s/{i}.wav", "label": lab, "speaker": "A", "gender": "", "duration": 2.0,
             "split": "test"} for i, lab in enumerate(["angry"] * 5 + ["sad"] * 5)]
    dev = [{"key": f"d{i}", "path": f"/d/{i}.wav", "label": "sad", "speaker": "B", "gender": "", "duration": 2.0}
           for i in range(2)]
    rows = corpus_rows(pseudo, seed, dev, valid_fraction=0.2)
    split = {r["key"]: r["split"] for r in rows}
    assert [split[f"p{i}"] for i in range(3)] == ["train"] * 3 and [split["d0"], split["d1"]] == ["test", "test"]
    valid = sorted(k for k, s in split.items() if s == "valid")
    assert len(valid) == 2 and {k for k in valid} <= {f"s{i}" for i in range(10)}  # one per label
    assert {r["label"] for r in rows if r["key"] in valid} == {"angry", "sad"}
    assert {r["source"] for r in rows} == {"pseudo", "labelled", "dev"}
    assert corpus_rows(pseudo, None, None) == pseudo
    with pytest.raises(PseudoLabelError, match="the dev set is never pseudo-labelled"):
        check_disjoint([("x", "/d/1.wav")], None, dev)
    with pytest.raises(PseudoLabelError, match="key 's1' names a file of --input and another of --train-with"):
        check_disjoint([("s1", "/other.wav")], seed, dev)
    assert model_names(["runs/a/models/fold1", "checkpoints/emotion2vec_plus_base/", "x/model.pt"]) == [
        "1-fold1", "2-emotion2vec_plus_base", "3-model"]


# ------------------------------------------------------------------------------------------------ the engine on CPU
FILTERS = "--min-confidence 0.75 --min-margin 0 --min-agreement 1 --num-workers 0 --quiet"


@pytest.fixture(scope="module")
def docs_workspace(tmp_path_factory) -> Path:
    """The workspace docs/data-engine.md assumes, with the synthetic corpus its first Python block writes: angry and
    sad utterances of 10 synthetic speakers, the seed set (3 speakers, labelled), the pool (5 speakers, labels hidden:
    only engine/truth knows them) and the dev set (2 speakers)."""
    ws = workspace(tmp_path_factory.mktemp("docs"), require(FIXTURES, "golden checkpoint fixtures"),
                   require(URDU, "URDU corpus"))
    python = blocks("data-engine.md", "python")
    assert len(python) == 1
    run_python(python[0], ws)
    return ws


@pytest.fixture(scope="module")
def synthetic(docs_workspace) -> Path:
    return docs_workspace / "engine"


@pytest.fixture(scope="module")
def engine_run(docs_workspace) -> tuple[Path, subprocess.CompletedProcess]:
    """The page's recipes/data_engine.sh block, one round: the seed model labels, a model fine-tuned on seed + kept
    labels re-labels."""
    recipe = [b for b in blocks("data-engine.md", "bash") if "recipes/data_engine.sh" in b and not needs_cluster(b)]
    assert len(recipe) == 1
    return docs_workspace / "engine" / "work", run_bash(recipe[0], docs_workspace, timeout=900)


def test_kept_pseudo_labels_are_right_more_often_than_all_of_them(engine_run, synthetic):
    work, _ = engine_run
    labels = work / "round1" / "labels"
    report = json.loads((labels / "report.json").read_text())
    ref = report["reference"]
    assert ref["files"] == 50 and 0 < ref["kept"] < 50
    assert ref["accuracy_kept"] > ref["accuracy_all"] >= 0.5, ref  # the filter buys precision
    # the accuracies, recomputed from data.tsv / rejected.tsv against the hidden truth
    truth = {r["path"]: r["label"] for r in read_data_tsv(synthetic / "truth")}
    rows = read_data_tsv(labels)
    pseudo = [r for r in rows if r["source"] == "pseudo"]
    assert len(pseudo) == report["kept"] == ref["kept"]
    assert np.mean([truth[r["path"]] == r["label"] for r in pseudo]) == pytest.approx(ref["accuracy_kept"], abs=1e-4)
    with open(labels / "rejected.tsv", newline="") as f:
        rejected = list(csv.DictReader(f, delimiter="\t"))
    assert len(rejected) == 50 - len(pseudo) and all(r["reason"].startswith("confidence ") for r in rejected)
    everything = pseudo + rejected
    assert np.mean([truth[r["path"]] == r["label"] for r in everything]) == pytest.approx(ref["accuracy_all"])
    assert "## Against reference labels" in (labels / "report.md").read_text()


def test_the_labels_form_a_corpus_that_finetune_and_soft_targets_read(engine_run, synthetic):
    work, _ = engine_run
    labels = work / "round1" / "labels"
    rows = read_data_tsv(labels)
    by_source = {s: [r for r in rows if r["source"] == s] for s in ("pseudo", "labelled", "dev")}
    assert len(by_source["labelled"]) == 30 and len(by_source["dev"]) == 20
    for r in by_source["pseudo"]:
        shares = parse_votes(r["votes"])
        assert max(shares, key=shares.get) == r["label"] and float(r["confidence"]) >= 0.75
        assert r["split"] == "train" and r["speaker"] == ""
    assert {r["split"] for r in by_source["dev"]} == {"test"}
    assert {r["split"] for r in by_source["labelled"]} == {"train", "valid"}
    folds = json.loads((labels / "folds.json").read_text())
    assert folds["protocol"] == "original" and len(folds["folds"]) == 1
    assert sorted(folds["folds"][0]["test"]) == sorted(r["key"] for r in by_source["dev"])
    soft = build_targets("soft", rows, vote_classes(rows))
    assert soft.names == ["angry", "sad"] and np.allclose(soft.y.sum(axis=1), 1.0)
    fold = json.loads((work / "round1" / "model" / "fold1" / "result.json").read_text())
    assert sorted(fold["test_keys"]) == sorted(r["key"] for r in by_source["dev"])  # scored on the dev set
    report = json.loads((labels / "report.json").read_text())
    assert sum(v["files"] for v in report["per_class"].values()) == report["kept"]
    assert sum(report["confidence_histogram"]["kept"]) + sum(report["confidence_histogram"]["rejected"]) == 50
    assert report["agreement"]["share"] == [[1.0]] and report["dev"]["1-holdout"]["files"] == 20
    for png in ("confidence.png", "agreement.png"):
        assert (labels / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_more_round_runs_end_to_end_and_the_rounds_are_tabulated(engine_run):
    work, proc = engine_run
    final = json.loads((work / "final" / "labels" / "report.json").read_text())
    assert final["models"][0]["model"].endswith("round1/model/models/fold1")
    assert final["dev"]["1-fold1"]["files"] == 20 and 0 <= final["dev"]["1-fold1"]["ua"] <= 1
    table = (work / "rounds.md").read_text().splitlines()
    assert table[0].startswith("| round | labelled by | dev UA | dev macro-F1 | kept files | kept hours |")
    assert len(table) == 4 and table[2].startswith("| 0 | `") and table[3].startswith("| 1 | `")
    first = json.loads((work / "round1" / "labels" / "report.json").read_text())
    assert f"| {first['kept']} | {first['hours']['kept']:.3f} |" in table[2]
    assert (work / "rounds.md").read_text() == rounds_markdown([work / "round1" / "labels" / "report.json",
                                                                work / "final" / "labels" / "report.json"])
    assert table[2] in proc.stdout  # the page cats rounds.md
    assert "the pseudo-labels are right for" in proc.stdout  # and the end of round 1's report


def test_other_filters_reuse_the_predictions_and_other_models_are_refused(engine_run, synthetic, tmp_path, capsys):
    work, _ = engine_run
    labels = tmp_path / "labels"
    shutil.copytree(work / "round1" / "labels", labels)
    model = str(synthetic.parent / json.loads((labels / "report.json").read_text())["models"][0]["model"])
    stamps = {p.name: p.stat().st_mtime_ns for p in (labels / "predictions").iterdir()}
    args = ["pseudo-label", model, "--input", str(synthetic / "unlabelled.scp"), "--out", str(labels),
            "--train-with", str(synthetic / "seed"), "--score-on", str(synthetic / "dev"), "--quiet"]
    assert cli([*args, "--min-confidence", "0.5", "--min-margin", "0", "--min-agreement", "0",
                "--max-files-per-class", "3"]) == 0
    err = capsys.readouterr().err
    assert "predicting" not in err and "kept 6 of 50" in err
    assert {p.name: p.stat().st_mtime_ns for p in (labels / "predictions").iterdir()} == stamps
    other = work / "final" / "labels" / "report.json"
    other_model = str(synthetic.parent / json.loads(other.read_text())["models"][0]["model"])
    assert cli(["pseudo-label", other_model, *args[2:]]) == 2
    assert "holds predictions made with other settings: models is" in capsys.readouterr().err
    assert cli([*args, "--min-confidence", "1.0", "--min-margin", "1.0"]) == 2
    assert "no file passed the filters (50 rejected" in capsys.readouterr().err
    assert not (labels / "data.tsv").exists() and (labels / "rejected.tsv").exists()


def test_sharded_labelling_equals_one_process_and_resumes_by_chunk(engine_run, synthetic, tmp_path, monkeypatch):
    work, _ = engine_run
    labels = work / "round1" / "labels"
    model = json.loads((labels / "report.json").read_text())["models"][0]["model"]  # relative to the workspace
    out = tmp_path / "sharded"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "emotion2vec", "pseudo-label", model,
           "--input", "engine/unlabelled.scp", "--out", str(out), "--train-with", "engine/seed", "--score-on",
           "engine/dev", "--reference", "engine/truth/data.tsv", *FILTERS.split()]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300, cwd=synthetic.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("predictions/1-holdout.tsv", "predictions/1-holdout.dev.tsv", "data.tsv", "folds.json",
                 "rejected.tsv", "report.md"):
        assert (out / name).read_bytes() == (labels / name).read_bytes(), name
    # a stop after the first of three chunks: the re-run predicts the two others only
    import emotion2vec.pseudolabel.predictions as predictions
    import emotion2vec.recognize.run as recognize

    monkeypatch.setattr(predictions, "CHUNK_FILES", 20)
    calls, stop = [], [True]
    real = recognize.predict

    def stopping(engine, recognizer, items, *a, **k):
        calls.append([it.key for it in items])
        if len(calls) == 2 and stop:
            stop.pop()
            raise KeyboardInterrupt
        return real(engine, recognizer, items, *a, **k)

    monkeypatch.setattr(recognize, "predict", stopping)
    resumed = tmp_path / "resumed"
    args = ["pseudo-label", str(synthetic.parent / model), "--input", str(synthetic / "unlabelled.scp"), "--out", str(resumed),
            *FILTERS.split()]
    assert cli(args) == 130
    assert [p.name for p in (resumed / "predictions" / "1-holdout.parts").iterdir()] == ["00000.tsv"]
    calls.clear()
    assert cli(args) == 0
    assert [c[0] for c in calls] == ["u020", "u040"] and not (resumed / "predictions" / "1-holdout.parts").exists()
    whole = read_table(labels / "predictions" / "1-holdout.tsv", "whole")
    chunked = read_table(resumed / "predictions" / "1-holdout.tsv", "chunked")
    assert list(chunked.windows) == list(whole.windows) and len(whole.windows) == 50
    for key, windows in whole.windows.items():  # other batches: equal up to rounding
        np.testing.assert_allclose(chunked.windows[key][0][2], windows[0][2], atol=2e-6)


def test_the_rest_of_the_page_runs_as_written(docs_workspace):
    """Labelling a corpus with a quota, re-filtering from the stored predictions; the GPU examples' flags."""
    ws = docs_workspace
    ran = checked = 0
    for block in blocks("data-engine.md", "bash"):
        if "recipes/data_engine.sh" in block and not needs_cluster(block):
            continue  # the engine_run fixture's block
        if needs_cluster(block):
            checked += check_flags(block)
            continue
        proc = run_bash(block, ws)
        ran += 1
        if ran == 1:
            assert "predicting 40 file(s)" in proc.stderr
            report = json.loads((ws / "pseudo" / "urdu" / "report.json").read_text())
            assert report["reference"]["files"] == 40 and report["kept"] == sum(
                min(40, v["files"]) for v in report["per_class"].values())
        else:
            assert "predicting" not in proc.stderr  # the stored predictions
    assert ran == 2 and checked == 3
