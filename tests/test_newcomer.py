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


def test_pretrain_names_configuration_mistakes_in_one_line_each(tmp_path, capsys):
    man = _manifest(tmp_path)
    capsys.readouterr()
    cases = [
        ([], "task.data is not set"),
        ([f"task.data={tmp_path}"], "no train.tsv there"),
        ([f"task.data={man}", "optimization.max_update=2", "lr_scheduler.warmup_updates=2"],
         "lr_scheduler.warmup_updates=2 must be below optimization.max_update=2"),
        ([f"task.data={man}", "common.fp16=true"], "common.fp16=true needs a CUDA GPU"),
        ([f"task.data={man}", "distributed_training.distributed_world_size=4"], "distributed_world_size=4 but"),
    ]
    for overrides, message in cases:  # --print: nothing would start even if a check were missed
        assert cli(["pretrain", "emotion2vec_tiny_cpu", *overrides, "--print"]) == 2, overrides
        assert message in capsys.readouterr().err
    assert cli(["pretrain", "emotion2vec_base", f"task.data={man}", "common.fp16=false",
                "distributed_training.distributed_world_size=1", "--print"]) == 2
    assert "model.init_from is not set" in capsys.readouterr().err
    assert cli(["pretrain", "no_such_config", "--print"]) == 2
    assert "no config 'no_such_config'" in capsys.readouterr().err
    assert cli(["pretrain", "emotion2vec_tiny_cpu", f"task.data={man}", "--print"]) == 0
    assert "common.user_dir=" in capsys.readouterr().out  # the plugin is always found


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
