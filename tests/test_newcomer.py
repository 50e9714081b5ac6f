"""What a new user hits first: file permissions, one-class corpora, pretraining configuration mistakes, signed
layer lists, manifest notes, corpus-name case."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.cli import main as cli
from emotion2vec.io.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == expected


def test_cli_outputs_are_readable_by_others_under_umask_022(urdu_dir, fixtures_dir, tmp_path):
    code = ("import os, sys\nos.umask(0o022)\nfrom emotion2vec.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    for args in (["prepare", "urdu", "--root", str(urdu_dir), "--out", str(tmp_path / "m"), "--quiet"],
                 ["extract", "--checkpoint", str(fixtures_dir / "tiny_emotion2vec.pt"), "--input",
                  str(urdu_dir / "Sad"), "--out", str(tmp_path / "f"), "--quiet", "--num-workers", "0"]):
        subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 100 and {_mode(p) for p in written} == {0o644}


def test_a_one_class_corpus_is_refused_by_prepare(urdu_dir, tmp_path, capsys):
    assert cli(["prepare", "urdu", "--root", str(urdu_dir / "Angry"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "100 utterance(s) under" in err and str(urdu_dir / "Angry") in err and "angry (100)" in err
    assert "one folder too deep" in err and not (tmp_path / "m").exists()


def test_corpus_names_are_case_insensitive(urdu_dir, tmp_path):
    assert cli(["prepare", "URDU", "--root", str(urdu_dir), "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert (tmp_path / "m" / "data.tsv").exists()


def test_signed_layer_lists(fixtures_dir, urdu_dir, tmp_path):
    out = tmp_path / "f"
    assert cli(["extract", "--checkpoint", str(fixtures_dir / "tiny_emotion2vec.pt"), "--input",
                str(next(urdu_dir.rglob("*.wav"))), "--out", str(out), "--layers", "-2,-1", "--quiet",
                "--num-workers", "0"]) == 0
    npy = next(out.glob("*.npy"))
    assert np.load(npy).shape[0] == 2


def test_manifest_says_when_no_valid_set_is_written_and_counts_conversions_honestly(tmp_path, capsys):
    src = tmp_path / "audio"
    src.mkdir()
    for i in range(16):
        sf.write(src / f"a{i}.wav", np.random.default_rng(i).standard_normal(22050).astype(np.float32) * 0.1, 22050)
    args = ["manifest", str(src), "--out", str(tmp_path / "m"), "--resample-to", str(tmp_path / "16k"),
            "--valid-fraction", "0.01"]
    assert cli(args) == 0
    captured = capsys.readouterr()
    assert "rounds to 0: no valid.tsv written" in captured.err and "converted 16" in captured.out
    assert not (tmp_path / "m" / "valid.tsv").exists()
    assert cli(args) == 0
    assert "converted 0 (reused 16 converted earlier)" in capsys.readouterr().out


def _manifest(tmp_path) -> Path:
    d = tmp_path / "audio"
    d.mkdir()
    for i in range(3):
        sf.write(d / f"a{i}.wav", np.random.default_rng(i).standard_normal(24000).astype(np.float32) * 0.1, 16000)
    assert cli(["manifest", str(d), "--out", str(tmp_path / "man")]) == 0
    return tmp_path / "man"


def test_pretrain_names_configuration_mistakes_in_one_line_each(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # a CPU machine, wherever the test runs
    man = _manifest(tmp_path)
    capsys.readouterr()
    cases = [
        ([], "task.data is not set"),
        ([f"task.data={man}", "optimization.max_update=2", "lr_scheduler.warmup_updates=2"],
         "lr_scheduler.warmup_updates=2 must be below optimization.max_update=2"),
    ]
    for overrides, message in cases:  # --print: nothing would start even if a check were missed
        assert cli(["pretrain", "emotion2vec_tiny_cpu", *overrides, "--print"]) == 2, overrides
        assert message in capsys.readouterr().err
    machine = [  # what depends on this machine: refused before starting, but --print prints the line
        ([f"task.data={tmp_path}"], "no train.tsv there"),
        ([f"task.data={man}", "common.fp16=true"], "common.fp16=true needs a CUDA GPU"),
        ([f"task.data={man}", "distributed_training.distributed_world_size=4"], "distributed_world_size=4 but"),
    ]
    for overrides, message in machine:
        assert cli(["pretrain", "emotion2vec_tiny_cpu", *overrides]) == 2, overrides
        assert message in capsys.readouterr().err
        assert cli(["pretrain", "emotion2vec_tiny_cpu", *overrides, "--print"]) == 0, overrides
        captured = capsys.readouterr()
        assert "--config-name emotion2vec_tiny_cpu" in captured.out and overrides[-1] in captured.out
        assert "note: on this machine: " in captured.err and message in captured.err
    assert cli(["pretrain", "emotion2vec_base", f"task.data={man}", "common.fp16=false",
                "distributed_training.distributed_world_size=1", "--print"]) == 2
    assert "model.init_from is not set" in capsys.readouterr().err
    assert cli(["pretrain", "no_such_config", "--print"]) == 2
    assert "no config 'no_such_config'" in capsys.readouterr().err
    assert cli(["pretrain", "emotion2vec_tiny_cpu", f"task.data={man}", "--print"]) == 0
    assert "common.user_dir=" in capsys.readouterr().out  # the plugin is always found


def test_the_cpu_advice_for_the_official_config_composes_and_passes(tmp_path, monkeypatch):
    """The overrides the GPU checks advise, applied as given, compose (common.cpu too: it used to be refused with
    "Could not override 'common.cpu'") and leave nothing to complain about on a CPU machine."""
    import re

    from emotion2vec.pretrain.launch import compose, config_problems

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    man = _manifest(tmp_path)
    base = [f"task.data={man}", "model.init_from=null"]
    problems = config_problems(compose("emotion2vec_base", base))
    assert len(problems) == 2 and "common.fp16=true needs a CUDA GPU" in problems[0]
    advice = [o for p in problems for o in re.search(r": set ((?:[\w.]+=\S+ ?)+)", p).group(1).split()]
    assert advice == ["common.fp16=false", "common.cpu=true", "distributed_training.distributed_world_size=1"]
    cfg = compose("emotion2vec_base", base + advice)
    assert cfg.common.cpu is True and cfg.common.fp16 is False and config_problems(cfg) == []
    # any field of fairseq's schema composes as it does under fairseq-hydra-train, not only those the YAML lists
    assert compose("emotion2vec_base", base + ["common.bf16=false", "checkpoint.keep_last_epochs=2"]) \
        .checkpoint.keep_last_epochs == 2


@pytest.mark.skipif(not (Path(sys.executable).parent / "fairseq-hydra-train").exists(), reason="fairseq not installed")
def test_fairseq_hydra_train_on_a_cpu_names_the_missing_gpus_in_one_line(tmp_path):
    """fairseq checks the GPU count before it loads the plugin (AssertionError: world size is 4 but have 0 available
    devices); the configs' Hydra callback names it first, one line per problem, and nothing starts."""
    import emotion2vec

    man = _manifest(tmp_path)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no GPU visible, whatever the machine has
    res = subprocess.run([str(Path(sys.executable).parent / "fairseq-hydra-train"), "--config-dir",
                          str(REPO / "configs"), "--config-name", "emotion2vec_base", f"task.data={man}",
                          "model.init_from=null", f"common.user_dir={emotion2vec.fairseq_user_dir()}",
                          f"checkpoint.save_dir={tmp_path / 'r'}"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("emotion2vec: the configuration cannot run")]
    assert len(lines) == 2 and "common.fp16=true needs a CUDA GPU" in lines[0]
    assert "distributed_training.distributed_world_size=4 but this machine has 0 GPU(s)" in lines[1]
    assert "AssertionError" not in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r" / "checkpoint_last.pt").exists()


@pytest.mark.skipif(not (Path(sys.executable).parent / "fairseq-hydra-train").exists(), reason="fairseq not installed")
def test_fairseq_hydra_train_itself_names_a_warmup_longer_than_the_run(tmp_path):
    """The same check inside the plugin, for users who call fairseq-hydra-train directly (it used to crash with a
    ZeroDivisionError in the cosine schedule)."""
    import emotion2vec

    man = _manifest(tmp_path)
    res = subprocess.run([str(Path(sys.executable).parent / "fairseq-hydra-train"), "--config-dir",
                          str(REPO / "configs"), "--config-name", "emotion2vec_tiny_cpu", f"task.data={man}",
                          f"common.user_dir={emotion2vec.fairseq_user_dir()}", f"checkpoint.save_dir={tmp_path / 'r'}",
                          "optimization.max_update=2"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "lr_scheduler.warmup_updates=2 must be below optimization.max_update=2" in res.stdout + res.stderr
    assert "ZeroDivisionError" not in res.stdout + res.stderr
