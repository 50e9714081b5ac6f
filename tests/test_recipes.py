"""The downstream recipes end to end on the real URDU corpus: prepare -> extract -> probe for the log-mel fbank
baseline and the tiny golden checkpoint through `recipes/run_all.sh`, then the cross-corpus table.

Shortened probe (a few epochs, every fold) so that it runs in about a minute on 2 CPU cores; the URDU table of
docs/evaluation.md comes from the same command with the default 100 epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, URDU, require

REPO = Path(__file__).resolve().parents[1]


def _run_all(urdu_dir: Path, tiny: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), CORPORA="urdu", ROOT_URDU=str(urdu_dir), CHECKPOINTS=str(tiny),
               DEVICE="cpu", PYTHON=sys.executable, PROBE_ARGS="--epochs 8 --quiet")
    return subprocess.run(["bash", str(REPO / "recipes" / "run_all.sh")], env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def urdu_run(tmp_path_factory):
    urdu_dir, tiny = require(URDU, "URDU corpus"), require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint")
    out = tmp_path_factory.mktemp("recipes")
    proc = _run_all(urdu_dir, tiny, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_urdu_prepare_extract_probe_for_fbank_and_the_tiny_checkpoint(urdu_run):
    out, _ = urdu_run
    data = (out / "manifests" / "urdu" / "data.tsv").read_text().splitlines()
    assert len(data) == 401  # header + 400 clips
    folds = json.loads((out / "manifests" / "urdu" / "folds.json").read_text())
    assert folds["protocol"] == "random-kfold" and len(folds["folds"]) == 10
    for name in ("fbank", "tiny_emotion2vec"):
        index = (out / "features" / "urdu" / name / "index.tsv").read_text().splitlines()
        assert len(index) == 401 and all(line.split("\t")[3] == "ok" for line in index[1:])
        res_dir = out / "results" / "urdu" / name
        for f in ("results.json", "results.md", "predictions.tsv", "confusion.png"):
            assert (res_dir / f).stat().st_size > 0, f"{name}: {f} missing"
        results = json.loads((res_dir / "results.json").read_text())
        assert len(results["folds"]) == 10
        for metric in ("wa", "ua", "wf1", "macro_f1"):  # the summary is the mean of the folds' test scores
            folds_mean = sum(f["test"][metric] for f in results["folds"]) / 10
            assert abs(results["summary"][metric]["mean"] - folds_mean) < 1e-9
        # every utterance is predicted exactly once (each is in one test fold)
        preds = (res_dir / "predictions.tsv").read_text().splitlines()[1:]
        assert len(preds) == 400 and len({p.split("\t")[1] for p in preds}) == 400
    # fbank on 4 balanced classes is far above chance even after a few epochs
    fbank = json.loads((out / "results" / "urdu" / "fbank" / "results.json").read_text())
    assert fbank["summary"]["ua"]["mean"] > 0.4


def test_the_table_has_one_row_per_source_and_a_rerun_skips_every_step(urdu_run, urdu_dir, fixtures_dir):
    out, _ = urdu_run
    table = (out / "results" / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| fbank") or line.startswith("| tiny_emotion2vec")]
    assert len(rows) == 2 and "URDU" in table.upper()
    before = {p: p.stat().st_mtime_ns for p in (out / "results" / "urdu").rglob("results.json")}
    again = _run_all(urdu_dir, fixtures_dir / "tiny_emotion2vec.pt", out)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("exists, skipping") >= 4 and "is complete, skipping" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before
