"""`make demo` shortened (DEMO_FAST=1) end to end: corpus, prepare, manifest, fairseq-hydra-train through the plugin,
extract, probe, table and plots; then a re-run that reuses every output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fairseq", reason="the fairseq extra is not installed (pip install -e .[train])")

BIN = Path(sys.executable).parent
SOURCES = ("pretrained", "before_pretraining", "fbank", "egemaps", "fine-tuned")


REPO = Path(__file__).resolve().parents[1]


def _demo(out: Path) -> subprocess.CompletedProcess:
    """The demo run as a user runs it: a relative --out, from a directory outside the repository."""
    env = dict(os.environ, DEMO_FAST="1", OMP_NUM_THREADS="2")
    return subprocess.run([str(BIN / "emotion2vec"), "demo", "--out", out.name], env=env, capture_output=True,
                          text=True, timeout=900, cwd=out.parent)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_fast"
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_demo_relative_out_means_the_callers_directory(demo_run):
    """fairseq-hydra-train is given absolute paths and Hydra's log goes into the output folder, not the
    repository (a relative --out used to be resolved from the repository root and pretraining failed)."""
    out, proc = demo_run
    assert (out / "pretrain" / "checkpoint_last.pt").is_file()
    assert (out / "pretrain" / "hydra" / "hydra_train.log").is_file()
    assert not (REPO / "demo_fast").exists() and not (REPO / "hydra_train.log").exists()
    assert "demo_fast/results/table.md" in proc.stdout  # printed as given


def test_demo_prints_table_and_plots(demo_run):
    out, proc = demo_run
    table = (out / "results" / "table.md").read_text()
    assert table.strip() in proc.stdout
    for name in SOURCES:
        row = [line for line in table.splitlines() if f"| {name} " in line]
        assert len(row) == 1, table
        result = json.loads((out / "results" / name / "results.json").read_text())
        assert len(result["folds"]) == 4 and result["speaker_independent"] is True
    for plot in ("plots/training_curves.png", "plots/tsne.png", *(f"results/{n}/confusion.png" for n in SOURCES)):
        path = out / plot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
        assert str(path.relative_to(out.parent)) in proc.stdout


def test_demo_prints_only_its_own_lines(demo_run):
    _, proc = demo_run
    assert "No path found" not in proc.stdout + proc.stderr  # tensorboard's INFO noise
    assert "INFO" not in proc.stdout + proc.stderr


def test_demo_pretrained_with_fairseq_through_the_plugin(demo_run):
    from emotion2vec.models.checkpoint import read_checkpoint

    out, _ = demo_run
    ckpt = read_checkpoint(out / "pretrain" / "checkpoint_last.pt")
    assert ckpt.meta["num_updates"] == 8
    assert ckpt.teacher is not None
    log = (out / "pretrain" / "train.log").read_text()
    assert "loss_utt" in log and "target_var" in log
    assert list((out / "pretrain" / "tb" / "train_inner").glob("events.out.tfevents.*"))
    # speaker-independent folds: no speaker in both train and test
    folds = json.loads((out / "manifests" / "demo" / "folds.json").read_text())
    rows = [line.split("\t") for line in (out / "manifests" / "demo" / "data.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    speaker = {r[header.index("key")]: r[header.index("speaker")] for r in rows}
    for fold in folds["folds"]:
        train = {speaker[k] for k in fold["train"]}
        assert not train & {speaker[k] for k in fold["test"]}


def test_demo_rerun_reuses_outputs(demo_run):
    out, _ = demo_run
    watched = [out / "pretrain" / "checkpoint_last.pt", out / "models" / "init" / "model.safetensors",
               out / "features" / "pretrained" / "index.tsv", out / "results" / "fbank" / "results.json",
               next((out / "corpus").rglob("*.wav"))]
    before = {p: p.stat().st_mtime_ns for p in watched}
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reusing" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_demo_clean_start_after_demo_clean(tmp_path):
    """`make demo-clean` removes exactly the demo output folder."""
    out = tmp_path / "demo_out"
    (out / "corpus").mkdir(parents=True)
    proc = subprocess.run(["make", "-C", str(REPO), "demo-clean", f"DEMO_OUT={out}"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert not out.exists() and tmp_path.exists()
