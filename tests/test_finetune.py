"""`emotion2vec finetune` on URDU with the tiny golden checkpoint: loss, freezing, exact resume after kill -9, DDP
replicas, export -> extract / predict, speaker identification and speaker-aware fusion, kept emotion2vec+ heads,
regression, Hugging Face upstreams, and the bad inputs (each named, outputs untouched)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, URDU, require, urdu_subset
from emotion2vec import Emotion2Vec
from emotion2vec.cli import main as cli
from emotion2vec.finetune import FinetuneError
from emotion2vec.finetune.config import FinetuneConfig, parse_freeze
from emotion2vec.finetune.data import Collate, epoch_batches, epoch_updates
from emotion2vec.finetune.heads import fuse
from emotion2vec.finetune.model import kept_head, parameter_depths, plan_freeze
from emotion2vec.finetune.train import lr_factor
from emotion2vec.models.checkpoint import read_checkpoint
from emotion2vec.io.manifests import read_data_tsv
from emotion2vec.models.upstream import load_upstream

BIN = Path(sys.executable).parent
CLASSES = ["angry", "happy", "neutral", "sad"]
#: a short, deterministic run: 1 s crops, 4 s batches, one thread
FAST = ["--max-seconds", "1", "--batch-seconds", "4", "--num-workers", "0", "--lr", "1e-3", "--head-lr", "1e-2",
        "--bootstrap", "0", "--no-audio-audit", "--precision", "fp32"]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _finetune(*args: str, background: bool = False) -> subprocess.Popen | subprocess.CompletedProcess:
    """A run in its own process with one thread (runs whose weights are compared bitwise)."""
    cmd = [str(BIN / "emotion2vec"), "finetune", *args, "--threads", "1", "--quiet"]
    if background:
        return subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _finetune_here(*args: str) -> None:
    """A run in this process (no start-up cost)."""
    assert cli(["finetune", *args, "--quiet", "--no-tensorboard"]) == 0


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


# ------------------------------------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_thread")  # in-process runs on one thread, as the subprocesses


@pytest.fixture(scope="module")
def tiny() -> Path:
    return require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")


@pytest.fixture(scope="module")
def plus() -> Path:
    return require(FIXTURES / "funasr_emotion2vec_plus", "golden checkpoint fixtures")


@pytest.fixture(scope="module")
def urdu(tmp_path_factory) -> Path:
    root = require(URDU, "URDU corpus")
    out = tmp_path_factory.mktemp("urdu") / "manifest"
    assert cli(["prepare", "urdu", "--root", str(root), "--out", str(out), "--no-audio-audit", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    """8 clips per emotion (URDU layout, symlinked) prepared with one hold-out fold: 23 train, 3 valid, 6 test."""
    return urdu_subset(tmp_path_factory.mktemp("subset"))


@pytest.fixture(scope="module")
def base_run(tiny, subset, tmp_path_factory) -> tuple[Path, list[str]]:
    """The reference run: 3 epochs of 6 updates, the CNN frozen, checkpoint_last after every update."""
    out = tmp_path_factory.mktemp("base") / "run"
    args = ["--checkpoint", str(tiny), "--data", str(subset), "--epochs", "3", "--save-interval-updates", "1", *FAST]
    _finetune(*args, "--out", str(out))
    return out, args


@pytest.fixture(scope="module")
def speaker_run(tiny, urdu, tmp_path_factory) -> Path:
    """Speaker identification (ArcFace) on URDU's four speakers with at least 38 utterances: the CNN frozen, the head
    on the first block (whose frames keep more of the speaker than the last ones of this untrained network)."""
    out = tmp_path_factory.mktemp("speaker") / "run"
    _finetune_here("--checkpoint", str(tiny), "--data", str(urdu), "--out", str(out), "--task", "speaker",
                   "--min-speaker-utterances", "38", "--standardize", "--layer", "0", "--epochs", "4",
                   "--max-seconds", "1", "--batch-seconds", "16", "--num-workers", "0", "--lr", "1e-4", "--head-lr",
                   "1e-2", "--bootstrap", "0", "--no-audio-audit", "--precision", "fp32")
    return out


# ------------------------------------------------------------------------------------------------ units
def test_options_and_what_goes_together():
    assert parse_freeze(["all-but-top", "2"]) == ("all-but-top", 2) and parse_freeze("all-but-top:0")[1] == 0
    assert parse_freeze(["cnn"]) == ("cnn", None)
    with pytest.raises(FinetuneError, match="--freeze 'top 2'"):
        parse_freeze(["top", "2"])
    assert FinetuneConfig(task="speaker").head == "arcface" and FinetuneConfig().head == "linear"
    with pytest.raises(Exception, match="arcface applies to --task categorical only"):
        FinetuneConfig(task="regression", targets=("arousal",), head="arcface")
    with pytest.raises(FinetuneError, match="--layer-decay must lie in"):
        FinetuneConfig(layer_decay=1.5)
    with pytest.raises(FinetuneError, match="--repeat-pad 20.0 s exceeds --max-seconds 15.0"):
        FinetuneConfig(repeat_pad=20.0)


def test_layers_of_the_upstream_and_the_freeze_plans(tiny):
    upstream, _ = load_upstream(tiny)
    depths, blocks = parameter_depths(upstream)
    assert blocks == 3  # 1 prenet + 2 main blocks
    assert depths["feature_extractor.layers.0.conv.weight"] == 0 and depths["feature_projection.linear.weight"] == 1
    assert depths["encoder.prenet.0.attention.qkv.weight"] == 2 and depths["encoder.blocks.1.final_norm.bias"] == 4
    cnn = plan_freeze(upstream, "cnn", None, "tiny")
    assert set(cnn.frozen) == {n for n in depths if n.startswith("feature_extractor.")}
    top1 = plan_freeze(upstream, "all-but-top", 1, "tiny")
    assert set(top1.trainable) == {n for n in depths if n.startswith("encoder.blocks.1.")}
    assert plan_freeze(upstream, "all-but-top", 0, "tiny").trainable == []
    with pytest.raises(FinetuneError, match=r"all-but-top 4: tiny has 3 transformer block\(s\)"):
        plan_freeze(upstream, "all-but-top", 4, "tiny")


def test_layer_wise_learning_rates(tiny):
    from emotion2vec.finetune.heads import UtteranceHead
    from emotion2vec.finetune.model import FinetuneModel, head_config, param_groups

    upstream, _ = load_upstream(tiny)
    config = FinetuneConfig(freeze="none", lr=1e-3, head_lr=1e-2, layer_decay=0.5)
    model = FinetuneModel(upstream, UtteranceHead(head_config(config, 96, 4)), -1)
    plan = plan_freeze(upstream, "none", None, "tiny")
    lr = {id(p): g["lr"] for g in param_groups(model, plan, config) for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in param_groups(model, plan, config) for p in g["params"]}
    named = dict(upstream.named_parameters())
    assert lr[id(named["encoder.blocks.1.feed_forward.fc1.weight"])] == 1e-3  # the top block
    assert lr[id(named["encoder.blocks.0.feed_forward.fc1.weight"])] == 5e-4
    assert lr[id(named["encoder.prenet.0.feed_forward.fc1.weight"])] == 2.5e-4
    assert lr[id(named["feature_projection.linear.weight"])] == 1.25e-4
    assert lr[id(named["feature_extractor.layers.0.conv.weight"])] == 6.25e-5
    assert all(lr[id(p)] == 1e-2 for p in model.head.parameters())
    assert decay[id(named["encoder.blocks.1.feed_forward.fc1.bias"])] == 0.0 and \
        decay[id(named["encoder.blocks.1.feed_forward.fc1.weight"])] == 0.01


def test_schedule_batches_and_crops():
    assert lr_factor(0, 100, 10, "linear") == pytest.approx(1 / 11) and lr_factor(10, 100, 10, "linear") == 1.0
    assert lr_factor(99, 100, 10, "linear") == pytest.approx(1 / 90) and lr_factor(55, 100, 10, "cosine") == \
        pytest.approx(0.5)
    lengths = [16000 * (1 + i % 5) for i in range(40)]
    plan = epoch_batches(lengths, list(range(40)), 64000, seed=3, epoch=2)
    assert plan == epoch_batches(lengths, list(range(40)), 64000, seed=3, epoch=2)  # a function of (seed, epoch)
    assert plan != epoch_batches(lengths, list(range(40)), 64000, seed=3, epoch=3)
    assert sorted(i for b in plan for i in b) == list(range(40))
    assert all(len(b) * max(lengths[i] for i in b) <= 64000 or len(b) == 1 for b in plan)  # longer ones alone
    updates = epoch_updates(plan, world_size=2, accumulate=3)
    assert all(len(u) == 6 for u in updates) and updates[-1][-1] in plan
    wav = np.arange(5000, dtype=np.float32)
    crop = Collate(seed=1, epoch=4, max_samples=1000, pad_samples=0)([(7, wav)])
    again = Collate(seed=1, epoch=4, max_samples=1000, pad_samples=0)([(7, wav)])
    assert crop.waveform.shape == (1, 1000) and torch.equal(crop.waveform, again.waveform)
    start = int(crop.waveform[0, 0])
    assert torch.equal(crop.waveform[0], torch.arange(start, start + 1000, dtype=torch.float32))
    padded = Collate(seed=1, epoch=4, max_samples=None, pad_samples=1200)([(0, wav[:500])])
    assert torch.equal(padded.waveform[0], torch.from_numpy(np.tile(wav[:500], 3)[:1200]))
    evaluation = Collate(0, None, 1000, 1200)([(0, wav)])
    assert evaluation.waveform.shape == (1, 5000)  # evaluation sees whole inputs


def test_fusion_definitions():
    h, e = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0, 5.0]])
    assert fuse(h, e, "concat").tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0]]
    tensor = fuse(h, e, "tensor")
    assert tensor.shape == (1, 12)
    assert tensor.view(3, 4).tolist() == [[3.0, 4.0, 5.0, 1.0], [6.0, 8.0, 10.0, 2.0], [3.0, 4.0, 5.0, 1.0]]


def test_kept_emotion2vec_plus_head_carries_the_shared_classes_over(plus):
    _, info = load_upstream(plus)
    proj = info.classifier.state
    head, notes = kept_head(info.classifier, CLASSES, FinetuneConfig(init_head="keep"), 96, str(plus))
    rows = {"angry": 0, "happy": 3, "neutral": 4, "sad": 6}  # tokens.txt order of the emotion2vec+ labels
    for c, name in enumerate(CLASSES):
        assert torch.equal(head.linear.weight[c], proj["weight"][rows[name]])
        assert torch.equal(head.linear.bias[c], proj["bias"][rows[name]])
    assert "angry <- 生气/angry" in notes[0]
    mapped, notes = kept_head(info.classifier, ["calm", "angry"],
                              FinetuneConfig(init_head="keep", head_label_map="calm=中立/neutral"), 96, str(plus))
    assert torch.equal(mapped.linear.weight[0], proj["weight"][4])
    with pytest.raises(FinetuneError, match=r"names data label\(s\) calm, ps that the task does not have"):
        kept_head(info.classifier, CLASSES, FinetuneConfig(init_head="keep", head_label_map="calm=中立/neutral,"
                                                                                               "ps=happy"), 96, str(plus))
    with pytest.raises(FinetuneError, match="none of the classes .* matches a label of the head"):
        kept_head(info.classifier, ["bored"], FinetuneConfig(init_head="keep"), 96, str(plus))
    with pytest.raises(FinetuneError, match="--pooling attention do not apply"):
        kept_head(info.classifier, CLASSES, FinetuneConfig(init_head="keep", pooling="attention"), 96, str(plus))


# ------------------------------------------------------------------------------------------------ runs
def test_training_lowers_the_loss_and_writes_a_probe_like_run(base_run, capsys):
    out, _ = base_run
    result = json.loads((out / "results.json").read_text())
    fold = result["folds"][0]
    assert fold["num_updates"] == 18 and fold["epochs_run"] == 3
    losses = fold["history"]["train_loss"]
    assert losses[-1] < losses[0], losses
    assert result["task"] == "categorical" and result["labels"] == CLASSES and result["kind"] == "finetune"
    assert fold["model_dir"] == "models/holdout" and set(fold["test"]) >= {"wa", "ua", "wf1", "macro_f1"}
    for name in ("results.md", "predictions.tsv", "confusion.png", "finetune.json", "holdout/checkpoint_best.pt",
                 "holdout/result.json"):
        assert (out / name).exists(), name
    assert list((out / "holdout" / "tb").glob("events.out.tfevents.*"))
    assert (out / "results.md").read_text().startswith("# Fine-tuning: URDU")
    # a valid split without every training class is a warning at the top (the subset's dev set has 3 clips)
    labels = {r["key"]: r["label"] for r in read_data_tsv(Path(result["data"]) / "data.tsv")}
    missing = sorted(set(CLASSES) - {labels[k] for k in json.loads(
        (Path(result["data"]) / "folds.json").read_text())["folds"][0]["valid"]})
    assert missing and any(f"valid holds {4 - len(missing)} of the 4 training labels; none of {', '.join(missing)}"
                           in w for w in result["warnings"])
    assert "**WARNINGS:**" in (out / "results.md").read_text().split("| Fold |")[0]
    # `report` tabulates a fine-tuned run like a probe
    capsys.readouterr()
    assert cli(["report", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| Features | URDU WA | URDU UA | URDU WF1 |" and "URDU 1 (holdout)" in table[4]
    ua = result["summary"]["ua"]
    assert table[2] == (f"| {result['source']} | " + " | ".join(
        f"{100 * result['summary'][m]['mean']:.2f} ± {100 * result['summary'][m]['std']:.2f}" for m in ("wa", "ua", "wf1"))
        + " |") and ua["std"] == 0
    with open(out / "predictions.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == fold["n_test"] == 6 and list(rows[0])[:4] == ["fold", "key", "label", "prediction"]


def test_frozen_parameters_are_bitwise_unchanged_and_the_others_change(base_run, tiny):
    out, _ = base_run
    original = read_checkpoint(tiny).model
    tuned = load_file(out / "models" / "holdout" / "model.safetensors")
    assert set(tuned) == {k for k in original if not k.startswith("decoder.")}
    frozen = [k for k in tuned if k.startswith("feature_extractor.")]
    trained = [k for k in tuned if not k.startswith("feature_extractor.")]
    assert frozen and all(torch.equal(tuned[k], original[k]) for k in frozen)
    changed = [k for k in trained if not torch.equal(tuned[k], original[k])]
    assert len(changed) == len(trained), sorted(set(trained) - set(changed))


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(base_run, tmp_path):
    reference, args = base_run
    out = tmp_path / "run"
    proc = _finetune(*args, "--out", str(out), background=True)
    last = out / "holdout" / "checkpoint_last.pt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 1 and 0 < state["position"] < 6, (state["epoch"], state["position"])  # mid-epoch
    assert not (out / "results.json").exists()
    _finetune(*args, "--out", str(out))
    a = torch.load(reference / "holdout" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["num_updates"] == b["num_updates"] == 18
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"] == b["history"]
    for name in ("model.safetensors", "head.safetensors"):
        assert (out / "models/holdout" / name).read_bytes() == (reference / "models/holdout" / name).read_bytes()


def test_two_torchrun_processes_stay_identical_after_every_update(tiny, subset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "emotion2vec"), "finetune",
           "--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "2", "--freeze-updates",
           "1", "--accumulate", "2", "--checksum-dir", str(tmp_path / "sums"), "--threads", "1", "--quiet",
           "--no-tensorboard", *FAST]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ranks = [(tmp_path / "sums" / f"holdout.rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    result = json.loads((out / "results.json").read_text())
    # 6 batches of 23 utterances per epoch, 2 processes x 2 accumulated: 2 updates per epoch (the last one filled up)
    assert len(ranks[0]) == result["folds"][0]["num_updates"] == 4
    assert ranks[0] == ranks[1] and len({line.split()[1] for line in ranks[0]}) == 4
    assert result["finetune"]["world_size"] == 2


def test_the_exported_model_extracts_other_features_and_predicts(base_run, tiny, subset, tmp_path):
    out, _ = base_run
    model_dir = out / "models" / "holdout"
    result = json.loads((out / "holdout" / "result.json").read_text())
    rows = {r["key"]: r for r in csv.DictReader(open(subset / "data.tsv"), delimiter="\t")}
    files = [rows[k]["path"] for k in result["test_keys"]]
    original = Emotion2Vec.from_checkpoint(tiny).extract(files)
    model = Emotion2Vec.from_checkpoint(model_dir)
    tuned = model.extract(files)
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(original, tuned))
    assert model.labels == CLASSES
    assert cli(["extract", "--checkpoint", str(model_dir), "--input", *files, "--out", str(tmp_path / "f"),
                "--num-workers", "0", "--quiet"]) == 0
    table = tmp_path / "pred.tsv"
    assert cli(["predict", str(model_dir), *files, "--out", str(table), "--num-workers", "0", "--quiet"]) == 0
    with open(table, newline="") as f:
        predicted = list(csv.DictReader(f, delimiter="\t"))
    assert len(predicted) == len(files)
    for r, p in zip(predicted, result["predictions"]):
        probs = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        assert abs(probs.sum() - 1) < 1e-4 and r["label"] == CLASSES[int(probs.argmax())]
        assert np.abs(probs - np.array(p)).max() < 1e-4  # what the run scored on its test keys


def test_speaker_identification_beats_chance(speaker_run):
    result = json.loads((speaker_run / "results.json").read_text())
    assert result["finetune"]["task"] == "speaker" and result["head"]["type"] == "arcface"
    speakers = result["labels"]
    assert len(speakers) == 4 and result["folds"][0]["n_test"] == 42
    counts = np.bincount([speakers.index(r["label"]) for r in csv.DictReader(open(speaker_run / "predictions.tsv"),
                                                                              delimiter="\t")])
    test = result["folds"][0]["test"]
    print(f"speaker identification: UA {test['ua']:.3f}, WA {test['wa']:.3f}, majority share "
          f"{counts.max() / counts.sum():.3f}")
    assert test["ua"] > 0.35 and test["wa"] > counts.max() / counts.sum(), (test, counts)  # chance: 0.25, 0.38


def test_speaker_aware_emotion_model_fuses_the_speaker_embedding(speaker_run, tiny, subset, tmp_path):
    out = tmp_path / "fused"
    _finetune_here("--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "1",
                   "--speaker-model", str(speaker_run / "models" / "speaker"), "--fusion", "tensor", "--hidden", "32",
                   *FAST)
    meta = json.loads((out / "models" / "holdout" / "config.json").read_text())["classifier"]
    assert meta["config"]["fusion"] == "tensor" and meta["config"]["speaker_dim"] == 256
    head = load_file(out / "models" / "holdout" / "head.safetensors")
    assert head["head.output.weight"].shape == (4, 33 * 257)  # vec([h; 1] (x) [e; 1])
    speaker = load_file(speaker_run / "models" / "speaker" / "model.safetensors")
    assert all(torch.equal(head[f"speaker.upstream.{k}"], v) for k, v in speaker.items())  # frozen, carried along
    result = json.loads((out / "holdout" / "result.json").read_text())
    clip = next(csv.DictReader(open(subset / "data.tsv"), delimiter="\t"))
    table = tmp_path / "pred.jsonl"
    assert cli(["predict", str(out / "models" / "holdout"), clip["path"], "--out", str(table), "--num-workers", "0",
                "--quiet"]) == 0
    row = json.loads(table.read_text())
    assert abs(sum(row["scores"].values()) - 1) < 1e-5 and len(result["predictions"]) == 6


def test_emotion2vec_plus_start_keeps_its_head(plus, subset, tmp_path):
    out = tmp_path / "plus"
    _finetune_here("--checkpoint", str(plus), "--data", str(subset), "--out", str(out), "--init-head", "keep",
                   "--epochs", "1", *FAST)
    meta = json.loads((out / "models" / "holdout" / "config.json").read_text())["classifier"]
    assert meta["kind"] == "mean_linear" and meta["labels"] == CLASSES
    result = json.loads((out / "results.json").read_text())
    assert result["head"]["type"] == "kept mean_linear"
    assert "kept head rows: angry <- 生气/angry" in " ".join(result["notes"])


def test_a_probe_run_gives_the_start_heads(tiny, subset, tmp_path):
    from emotion2vec.downstream.heads import load_head

    assert cli(["extract", "--checkpoint", str(tiny), "--input", str(subset / "data.tsv"), "--out",
                str(tmp_path / "features"), "--num-workers", "0", "--quiet"]) == 0
    assert cli(["probe", "--features", str(tmp_path / "features"), "--data", str(subset), "--out",
                str(tmp_path / "probe"), "--epochs", "3", "--standardize", "--bootstrap", "0", "--no-audio-audit",
                "--quiet"]) == 0
    out = tmp_path / "lpft"
    _finetune_here("--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--head-from",
                   str(tmp_path / "probe"), "--epochs", "1", *FAST, "--lr", "1e-12", "--head-lr", "1e-12")
    result = json.loads((out / "results.json").read_text())
    assert result["finetune"]["start_head"] == "probe's linear head"
    # no warning about the start head (the subset's 3-clip dev set lacking a class is warned about on its own)
    assert [w for w in result["warnings"] if "training labels; none of" not in w] == []
    probe, _ = load_head(tmp_path / "probe" / "heads" / "holdout.pt")
    tuned = load_file(out / "models" / "holdout" / "head.safetensors")
    for k, v in probe.state_dict().items():  # standardisation included; lr 1e-12 leaves the weights where they were
        assert torch.allclose(tuned[f"head.{k}"], v, atol=1e-6), k
    assert cli(["finetune", "--checkpoint", str(tiny), "--data", str(subset), "--out", str(tmp_path / "bad"),
                "--head-from", str(tmp_path / "probe"), "--pooling", "attention", "--quiet"]) == 2
    assert not (tmp_path / "bad").exists()


def test_regression_with_the_encoder_frozen_for_the_whole_run_and_multilabel(tiny, subset, tmp_path):
    data = tmp_path / "manifest"
    data.mkdir()
    lines = (subset / "data.tsv").read_text().splitlines()
    arousal = {"angry": "0.9", "happy": "0.8", "neutral": "0.3", "sad": "0.1"}
    other = {"angry": "happy", "happy": "angry", "neutral": "sad", "sad": "neutral"}
    (data / "data.tsv").write_text("\n".join([lines[0] + "\tarousal\tvotes"] + [
        line + "\t" + arousal[line.split("\t")[2]] + f"\t{line.split(chr(9))[2]}:2,{other[line.split(chr(9))[2]]}:1"
        for line in lines[1:]]) + "\n")
    (data / "folds.json").write_text((subset / "folds.json").read_text())
    out = tmp_path / "reg"
    _finetune_here("--checkpoint", str(tiny), "--data", str(data), "--out", str(out), "--task", "regression",
                   "--targets", "arousal", "--epochs", "1", "--freeze-updates", "100", *FAST)
    result = json.loads((out / "results.json").read_text())
    assert result["task"] == "regression" and "ccc" in result["summary"]
    original = read_checkpoint(tiny).model
    tuned = load_file(out / "models" / "holdout" / "model.safetensors")
    assert all(torch.equal(v, original[k]) for k, v in tuned.items())  # the head alone trained
    clip = next(csv.DictReader(open(data / "data.tsv"), delimiter="\t"))["path"]
    values = Emotion2Vec.from_checkpoint(out / "models" / "holdout").predict(clip)
    assert set(values) == {"values"} and set(values["values"]) == {"arousal"}
    table = tmp_path / "pred.tsv"
    assert cli(["predict", str(out / "models" / "holdout"), clip, "--out", str(table), "--num-workers", "0",
                "--quiet"]) == 0
    header, row = table.read_text().splitlines()
    assert header.split("\t") == ["key", "arousal", "status", "path"]
    assert float(row.split("\t")[1]) == pytest.approx(values["values"]["arousal"], abs=1e-5)
    _finetune_here("--checkpoint", str(tiny), "--data", str(data), "--out", str(tmp_path / "ml"), "--task",
                   "multilabel", "--epochs", "1", *FAST)
    meta = json.loads((tmp_path / "ml" / "models" / "holdout" / "config.json").read_text())["classifier"]
    assert meta["config"]["activation"] == "sigmoid" and meta["config"]["loss"] == "bce"
    scores = Emotion2Vec.from_checkpoint(tmp_path / "ml" / "models" / "holdout").predict(clip)["scores"]
    assert set(scores) == set(CLASSES) and all(0 < v < 1 for v in scores.values())  # one sigmoid per class


def test_a_hugging_face_upstream_fine_tunes_and_exports(subset, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                                         do_stable_layer_norm=True)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    upstream, _ = load_upstream(f"hf:{tmp_path / 'w2v'}")
    top = plan_freeze(upstream, "all-but-top", 1, "w2v")
    assert set(top.trainable) == {n for n in top.depths if n.startswith("model.encoder.layers.1.")} | {
        "model.encoder.layer_norm.weight", "model.encoder.layer_norm.bias"}  # the final LayerNorm of a pre-LN model
    out = tmp_path / "run"
    _finetune_here("--checkpoint", f"hf:{tmp_path / 'w2v'}", "--data", str(subset), "--out", str(out), "--epochs",
                   "1", *FAST)
    result = json.loads((out / "holdout" / "result.json").read_text())
    model = Emotion2Vec.from_checkpoint(f"hf:{out / 'models' / 'holdout' / 'encoder'}")
    rows = {r["key"]: r for r in csv.DictReader(open(subset / "data.tsv"), delimiter="\t")}
    scores = model.predict(rows[result["test_keys"][0]]["path"])["scores"]
    assert np.abs(np.array([scores[c] for c in CLASSES]) - result["predictions"][0]).max() < 1e-4
    # the export folder itself is a model for `emotion2vec predict`, as an emotion2vec+ folder is
    from emotion2vec.cli import main as cli

    table = tmp_path / "pred.tsv"
    assert cli(["predict", str(out / "models" / "holdout"), rows[result["test_keys"][0]]["path"], "--out", str(table),
                "--quiet", "--num-workers", "0"]) == 0
    row = next(csv.DictReader(open(table), delimiter="\t"))
    assert np.abs(np.array([float(row[f"p_{c}"]) for c in CLASSES]) - result["predictions"][0]).max() < 1e-4


def test_bad_inputs_are_named_and_leave_the_outputs_untouched(base_run, speaker_run, tiny, plus, subset, capsys):
    out, args = base_run
    before = _snapshot(out)
    cases = [
        (["--freeze", "all-but-top", "5"], r"all-but-top 5: .* has 3 transformer block\(s\)"),
        (["--task", "regression", "--targets", "valence"], r"no column 'valence' for --targets"),
        (["--task", "soft"], r"need a 'votes' column"),
        (["--speaker-model", str(out / "models" / "holdout")], r"not a speaker model \(a categorical head\)"),
        (["--speaker-model", str(speaker_run / "models" / "speaker"), "--fusion", "tensor", "--hidden", "8192"],
         r"256-dim embedding and the 8192-dim emotion vector make 2,105,601 fused values"),
        (["--init-head", "keep"], r"has no classification head to keep"),
        (["--lr", "2e-3"], r"other settings: lr is 0.001 there, 0.002 now"),
        (["--warmup", "50"], r"--warmup 50 means 50 warm-up updates, not fewer than the 18 updates"),
        (["--precision", "fp16"], r"--precision fp16 needs a GPU"),
    ]
    for extra, message in cases:  # a repeated option overrides the run's own (argparse keeps the last)
        code = cli(["finetune", *args, *extra, "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and re.search(message, err), (extra, err)
        assert _snapshot(out) == before, extra
    code = cli(["finetune", "--checkpoint", str(plus), "--data", str(subset), "--out", str(out), "--init-head", "keep",
                "--head-label-map", "angry=furious", "--quiet", "--no-audio-audit"])
    assert code == 2 and "names head label(s) furious" in capsys.readouterr().err
    assert _snapshot(out) == before
    code = cli(["finetune", "--checkpoint", str(plus), "--data", str(subset), "--out", str(out), "--init-head", "keep",
                "--head-label-map", "calm=neutral,angry=angry", "--quiet", "--no-audio-audit"])
    err = capsys.readouterr().err
    assert code == 2 and ("--head-label-map names data label(s) calm that the task does not have (its classes: "
                          "angry, happy, neutral, sad)") in err, err
    assert _snapshot(out) == before
