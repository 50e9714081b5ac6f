"""The command line's shared behaviour: -v anywhere on the line, and the exit-code policy with a real command per
code (0 ok, 1 some inputs failed, 2 bad usage or input, 3 internal error, 130 interrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.cli import (COMMANDS, EXIT_BAD_INPUT, EXIT_FAILED_INPUTS, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK,
                             build_parser, main)
from emotion2vec.extract.store import FeatureStore

BIN = Path(sys.executable).parent


@pytest.fixture
def tiny(fixtures_dir):
    return fixtures_dir / "tiny_emotion2vec.pt"


def _wavs(folder: Path, n: int, seconds: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(folder / f"utt{i:03d}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype("float32"),
                 16000)
    return folder


# ------------------------------------------------------------------------------------------------ -v anywhere
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_verbose_is_accepted_after_every_command(command):
    parser = build_parser(command)
    sub = parser._subparsers._group_actions[0].choices[command]
    assert "-v" in sub._option_string_actions and "--verbose" in sub._option_string_actions


def test_verbose_before_after_or_absent(tiny, tmp_path):
    line = ["extract", "--checkpoint", str(tiny), "--input", "x.wav", "--out", str(tmp_path)]
    parser = build_parser("extract")
    assert parser.parse_args(line).verbose is False
    assert parser.parse_args(["-v", *line]).verbose is True
    assert parser.parse_args([*line, "-v"]).verbose is True
    assert parser.parse_args([line[0], "--verbose", *line[1:]]).verbose is True


def test_verbose_after_the_command_prints_the_traceback(tiny, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("deliberate failure inside extraction")

    monkeypatch.setattr("emotion2vec.extract.run.run_extraction", broken)
    wavs = _wavs(tmp_path / "w", 1)
    assert main(["extract", "--checkpoint", str(tiny), "--input", str(wavs), "--out", str(tmp_path / "f"),
                 "--quiet", "-v"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert "emotion2vec extract: internal error: RuntimeError: deliberate failure inside extraction" in err


# ------------------------------------------------------------------------------------------------ exit codes
def test_exit_0_when_every_input_is_extracted(tiny, tmp_path, capsys):
    wavs = _wavs(tmp_path / "w", 2)
    assert main(["extract", "--checkpoint", str(tiny), "--input", str(wavs), "--out", str(tmp_path / "f"),
                 "--quiet", "--num-workers", "0"]) == EXIT_OK == 0
    assert len(FeatureStore(tmp_path / "f")) == 2
    assert "0 failed" in capsys.readouterr().err


def test_exit_1_when_one_input_is_unreadable(tiny, tmp_path, capsys):
    wavs = _wavs(tmp_path / "w", 2)
    (wavs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    argv = ["extract", "--checkpoint", str(tiny), "--input", str(wavs), "--out", str(tmp_path / "f"), "--quiet",
            "--num-workers", "0"]
    assert main(argv) == EXIT_FAILED_INPUTS == 1
    err = capsys.readouterr().err
    assert "broken.wav: unreadable audio" in err and "1 failed" in err
    assert sorted(p.name for p in (tmp_path / "f").glob("*.npy")) == ["utt000.npy", "utt001.npy"]  # the rest is kept
    assert main([*argv, "--skip-errors"]) == EXIT_OK  # the failure is listed, not fatal


def test_exit_2_for_a_missing_input_named_before_any_work(tiny, tmp_path, capsys):
    wavs = _wavs(tmp_path / "w", 1)
    missing = tmp_path / "w" / "no_such_file.wav"
    assert main(["extract", "--checkpoint", str(tiny), "--input", str(wavs / "utt000.wav"), str(missing),
                 "--out", str(tmp_path / "f")]) == EXIT_BAD_INPUT == 2
    err = capsys.readouterr().err
    assert f"emotion2vec extract: error: {missing}: no such file or directory" in err
    assert not (tmp_path / "f").exists()


def test_exit_2_for_an_unknown_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["extract", "--checkpoint", "fbank", "--input", "x.wav", "--out", str(tmp_path), "--no-such-option"])
    assert e.value.code == EXIT_BAD_INPUT
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_exit_3_for_an_internal_error_with_a_hint(tiny, tmp_path, monkeypatch, capsys):
    """A bug deep in a command (here the engine's forward pass) is exit 3, named, with the -v hint."""
    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("deliberate bug in the forward pass")

    monkeypatch.setattr("emotion2vec.extract.engine.BatchedForward.__call__", broken)
    wavs = _wavs(tmp_path / "w", 1)
    assert main(["extract", "--checkpoint", str(tiny), "--input", str(wavs), "--out", str(tmp_path / "f"),
                 "--quiet", "--num-workers", "0"]) == EXIT_INTERNAL == 3
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: deliberate bug in the forward pass" in err
    assert "re-run with -v for the traceback" in err and "Traceback" not in err


def test_exit_130_on_interrupt_keeps_finished_outputs(tiny, tmp_path):
    """SIGINT to a running extraction: exit 130, the files finished before it are complete, and a re-run
    resumes from them."""
    wavs = _wavs(tmp_path / "w", 150)
    out = tmp_path / "f"
    argv = [str(BIN / "emotion2vec"), "extract", "--checkpoint", str(tiny), "--input", str(wavs), "--out", str(out),
            "--quiet", "--num-workers", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list(out.glob("*.npy")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED == 130, err[-2000:]
    assert "emotion2vec extract: interrupted; finished outputs are kept, re-run to resume" in err
    done = sorted(out.glob("*.npy"))
    assert 0 < len(done) < 150 and not list(out.glob(".*.tmp"))
    for path in done:
        assert np.load(path).shape[1] > 0  # complete files, not partial writes
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(done)} already done" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps and len(FeatureStore(out)) == 150


def test_demo_without_its_config_exits_2_naming_the_file(tmp_path, monkeypatch, capsys):
    """Installed without the repository's configs/: the file is named, before any step runs."""
    monkeypatch.setattr("emotion2vec.pretrain.launch.REPO_CONFIGS", tmp_path / "configs")
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"emotion2vec demo: error: {tmp_path / 'configs' / 'emotion2vec_tiny_cpu.yaml'} not found" in err
    assert "make demo" in err and not (out / "corpus").exists()


def test_demo_into_a_file_exits_2_naming_it(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["demo", "--fast", "--out", str(tmp_path / "taken")]) == EXIT_BAD_INPUT
    assert f"--out {tmp_path / 'taken'}: a file, not a folder" in capsys.readouterr().err


def test_demo_without_fairseq_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("emotion2vec.pretrain.launch.trainer_executable", lambda: None)
    assert main(["demo", "--fast", "--out", str(tmp_path / "demo")]) == EXIT_BAD_INPUT
    assert "fairseq-hydra-train not found" in capsys.readouterr().err and not (tmp_path / "demo").exists()
