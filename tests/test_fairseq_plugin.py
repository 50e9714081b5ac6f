"""Pretraining through `fairseq-hydra-train` and our plugin, on CPU: single process, kill -9 + resume, two
processes (torchrun + gloo), TensorBoard logs, the produced checkpoint in the foundation loader, configs."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import emotion2vec
from emotion2vec.models.checkpoint import load_model, read_checkpoint
from emotion2vec.models.config import preset
from emotion2vec.pretrain.manifest import build_manifest
from emotion2vec.io.manifests import read_pretrain_manifest as read_manifest

pytest.importorskip("fairseq", reason="the fairseq extra is not installed (pip install -e .[train])")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOG_KEYS = ["loss", "loss_frame", "loss_utt", "target_var", "pred_var", "ema_decay", "masked_pct"]


def _speechlike(rng, seconds, sr):
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
    x = np.sin(2 * np.pi * np.cumsum(f0) / sr) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    return (0.3 * x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """16 kHz mono files plus 22.05 kHz stereo ones that the manifest tool converts."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    (root / "a").mkdir()
    (root / "b").mkdir()
    for i in range(8):
        sf.write(root / "a" / f"{i}.wav", _speechlike(rng, rng.uniform(1.0, 3.0), 16000), 16000)
    for i in range(4):
        stereo = np.stack([_speechlike(rng, 2.0, 22050)] * 2, axis=1)
        sf.write(root / "b" / f"{i}.flac", stereo, 22050)
    man = root / "manifest"
    build_manifest([root / "a", root / "b"], man, resample_to=root / "16k", log=lambda m: None)
    return man


def test_manifest_converts_rejects_and_reports(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "in" / "x").mkdir(parents=True)
    sf.write(tmp_path / "in" / "ok.wav", _speechlike(rng, 1.0, 16000), 16000)
    sf.write(tmp_path / "in" / "x" / "hi.wav", _speechlike(rng, 1.0, 44100), 44100)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match=r"1 file\(s\) are not 16 kHz mono:\n  .*hi.wav \(44100 Hz, 1 ch\)"):
        build_manifest([tmp_path / "in"], tmp_path / "m")
    assert not (tmp_path / "m" / "train.tsv").exists()  # nothing half-written
    notes = []
    res = build_manifest([tmp_path / "in"], tmp_path / "m", resample_to=tmp_path / "conv", log=notes.append)
    assert res.converted == 1 and len(res.unreadable) == 1 and "broken.wav" in res.unreadable[0][0]
    assert any("broken.wav" in n for n in notes)
    root, entries = read_manifest(tmp_path / "m" / "train.tsv")
    assert len(entries) == 2
    converted = [root / p for p, _ in entries if p.endswith(".flac")][0]
    info = sf.info(str(converted))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert dict((p, n) for p, n in entries)[os.path.relpath(converted, root)] == info.frames


def _train(save_dir: Path, data: Path, *overrides: str, background: bool = False, launcher=()):
    cmd = [*launcher, str(BIN / "fairseq-hydra-train"), "--config-dir", str(REPO / "configs"), "--config-name",
           "emotion2vec_tiny_cpu", f"task.data={data}", f"common.user_dir={emotion2vec.fairseq_user_dir()}",
           f"checkpoint.save_dir={save_dir}", *overrides]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_single_process_run_logs_and_checkpoint(corpus, tmp_path):
    log = _train(tmp_path / "run", corpus, "optimization.max_update=6")
    assert "done training" in log
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert ckpt.source == "emotion2vec-fairseq" and ckpt.meta["num_updates"] == 6
    assert ckpt.config == preset("small", normalize=True) and ckpt.teacher is not None
    model, _ = load_model(tmp_path / "run" / "checkpoint_last.pt")
    feats = emotion2vec.Emotion2Vec(model).extract(np.zeros(16000, np.float32) + 0.1, sample_rate=16000,
                                                   granularity="frame")
    assert feats.shape == (49, 128) and np.isfinite(feats).all()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb" / "train_inner")).Reload()
    tags = events.Tags()["scalars"]
    for key in LOG_KEYS:
        assert key in tags, (key, tags)
    assert len(events.Scalars("loss")) == 6


def test_emotion2vec_pretrain_reads_relative_paths_from_the_callers_directory(corpus, tmp_path):
    """`emotion2vec pretrain` run outside the repository with relative task.data and save_dir: the run, its
    checkpoint and Hydra's log land there, nothing in the repository."""
    import shutil

    shutil.copytree(corpus, tmp_path / "man")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    res = subprocess.run([str(BIN / "emotion2vec"), "pretrain", "emotion2vec_tiny_cpu", "task.data=man",
                          "checkpoint.save_dir=run", "optimization.max_update=2", "lr_scheduler.warmup_updates=1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert read_checkpoint(tmp_path / "run" / "checkpoint_last.pt").meta["num_updates"] == 2
    assert (tmp_path / "run" / "hydra" / "hydra_train.log").is_file()
    assert not (REPO / "run").exists() and not (REPO / "hydra_train.log").exists()


def test_kill_minus_9_then_resume_continues_the_update_count(corpus, tmp_path):
    args = ("optimization.max_update=40", "checkpoint.save_interval_updates=4")
    proc = _train(tmp_path / "run", corpus, *args, background=True)
    saved = None
    deadline = time.time() + 300
    for line in proc.stdout:
        m = re.search(r"Saved checkpoint .*checkpoint_last\.pt \(epoch \d+ @ (\d+) updates", line) or \
            re.search(r"Saved checkpoint .*checkpoint_\d+_(\d+)\.pt", line)
        if m and int(m[1]) >= 8:
            saved = int(m[1])
            os.killpg(proc.pid, signal.SIGKILL)
            break
        assert time.time() < deadline
    proc.wait()
    assert saved is not None and proc.returncode == -signal.SIGKILL
    log = _train(tmp_path / "run", corpus, *args)
    m = re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", log)
    assert m and int(m[1]) >= 8, log[-2000:]
    first_logged = int(re.search(r"num_updates=(\d+)", log)[1])
    assert first_logged == int(m[1]) + 1  # continues, does not restart at 1
    assert read_checkpoint(tmp_path / "run" / "checkpoint_last.pt").meta["num_updates"] == 40


def test_two_processes_torchrun_gloo_keep_identical_parameters(corpus, tmp_path):
    checks = tmp_path / "checksums"
    _train(tmp_path / "run", corpus, "optimization.max_update=4", "distributed_training.distributed_world_size=2",
           "distributed_training.distributed_backend=gloo", "distributed_training.distributed_init_method=env://",
           "distributed_training.distributed_no_spawn=true", "distributed_training.distributed_rank=${oc.env:RANK}",
           f"+task.param_checksum_dir={checks}",
           launcher=(str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 400)))
    rank0 = (checks / "param_checksums.rank0.tsv").read_text().splitlines()
    rank1 = (checks / "param_checksums.rank1.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in rank0] == ["1", "2", "3", "4"]
    assert rank0 == rank1
    assert len(set(line.split("\t")[1] for line in rank0)) == 4  # the weights do change every update


def test_init_from_data2vec_checkpoint_via_config(corpus, tmp_path, fixtures_dir):
    geometry = ("model.feature_encoder_spec='[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32,2,2)] + [(32,2,2)]'",
                "model.embed_dim=64",
                "model.num_heads=4", "model.prenet_depth=1", "model.depth=2", "model.num_extra_tokens=2",
                "model.decoder_dim=32", "model.decoder_layers=1", "model.average_top_k_layers=2")
    log = _train(tmp_path / "run", corpus, "optimization.max_update=3", *geometry,
                 f"model.init_from={fixtures_dir / 'legacy_data2vec2.pt'}", "model.init_layout=remap")
    assert "layout policy 'remap'" in log and "teacher: loaded 49 tensors" in log
    assert "left 1 at random init (encoder.extra_tokens)" in log


def _compose(name: str):
    """The config fairseq-hydra-train would see for ``--config-name name`` (before command-line overrides)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose(config_name=name)


def test_configs_hold_the_official_values():
    from fairseq import utils
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from omegaconf import OmegaConf
    import argparse

    utils.import_user_module(argparse.Namespace(user_dir=emotion2vec.fairseq_user_dir()))
    split_config = sys.modules["emotion2vec_fairseq.model"].split_config
    cfg = _compose("emotion2vec_base")
    assert cfg.optimization.lr == [7.5e-5] and cfg.optimization.max_update == 100000
    assert cfg.optimization.update_freq == [6] and cfg.dataset.max_tokens == 600000
    assert cfg.distributed_training.distributed_world_size == 4 and cfg.lr_scheduler.warmup_updates == 5000
    assert cfg.optimizer.adam_betas == [0.9, 0.98] and cfg.optimizer.weight_decay == 0.01 and cfg.common.fp16
    assert OmegaConf.is_missing(cfg.model, "init_from")  # the official run needs base_libri.pt
    dataclass = MODEL_DATACLASS_REGISTRY["emotion2vec"]
    common = OmegaConf.load(REPO / "configs" / "emotion2vec_common.yaml")
    # every model field is listed once, in the shared file, so a plain `model.<field>=...` override works
    assert set(common.model) == {f.name for f in dataclasses.fields(dataclass)}
    for name in ("emotion2vec_base", "emotion2vec_cold_start", "emotion2vec_tiny_cpu"):
        assert set(_compose(name).model) == set(common.model), name
    model_cfg = OmegaConf.merge(OmegaConf.structured(dataclass),
                                {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "init_from"})
    arch, distill = split_config(model_cfg, normalize=cfg.task.normalize)
    assert arch == preset("emotion2vec_base")
    assert (distill.ema_decay, distill.ema_end_decay, distill.ema_anneal_end_step) == (0.999, 0.99999, 20000)
    assert (distill.utterance_loss, distill.utterance_loss_weight, distill.average_top_k_layers) == ("chunk", 1.0, 8)
    assert distill.clone_batch == 8
    cold = _compose("emotion2vec_cold_start")
    assert cold.model.init_from is None and cold.optimization.lr == [7.5e-4]
    assert cold.model.ema_anneal_end_step == 75000 and cold.dataset.max_tokens == 600000  # shared value kept
    tiny = _compose("emotion2vec_tiny_cpu")
    assert tiny.model.embed_dim == 128 and tiny.common.cpu and not tiny.common.fp16 and tiny.model.init_from is None
    assert tiny.criterion._name == "model" and tiny.optimizer.adam_betas == [0.9, 0.98]  # from the shared file
