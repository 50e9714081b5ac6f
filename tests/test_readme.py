"""The README's commands and Python snippets run as written (with the golden test checkpoints standing in for the
real models and URDU clips for the user's recordings)."""

from __future__ import annotations

import re
import shlex
import textwrap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _commands(block: str) -> list[str]:
    """emotion2vec command lines of a bash block, continuation lines joined, comments removed."""
    lines, current = [], ""
    for raw in block.splitlines():
        line = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if current:
            current += " " + line.strip()
        elif line.startswith("emotion2vec "):
            current = line
        if current and current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current:
            lines.append(current)
            current = ""
    return lines


@pytest.fixture
def workspace(tmp_path, fixtures_dir, urdu_dir):
    """A folder laid out as the README assumes: checkpoints/, my_wavs/, recordings/, speech.wav, talk.wav ..."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "emotion2vec_base.pt").symlink_to(fixtures_dir / "tiny_emotion2vec.pt")
    (tmp_path / "checkpoints" / "emotion2vec_plus_base").symlink_to(fixtures_dir / "funasr_emotion2vec_plus")
    clips = sorted(urdu_dir.rglob("*.wav"))[::50]
    for name in ("my_wavs", "recordings"):
        (tmp_path / name).mkdir()
        for c in clips[:3]:
            (tmp_path / name / c.name).symlink_to(c)
    (tmp_path / "speech.wav").symlink_to(clips[0])
    wav, sr = sf.read(clips[1], dtype="float32")
    sf.write(tmp_path / "other.flac", wav, sr)
    sf.write(tmp_path / "talk.wav", np.concatenate([sf.read(c, dtype="float32")[0] for c in clips[:4]]), 44100)
    return tmp_path


@pytest.mark.parametrize("title", ["Quick start", "Recognise emotions", "Feature extraction"])
def test_readme_commands_run_as_written(workspace, title, monkeypatch):
    monkeypatch.chdir(workspace)
    commands = [c for b in _blocks(_section(title), "bash") for c in _commands(b)]
    assert commands, title
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--device" in argv:  # the README's GPU example runs on the CPU here
            argv[argv.index("--device") + 1] = "cpu"
        if "--dtype" in argv:
            argv[argv.index("--dtype") + 1] = "float32"
        if "outputs/emotion2vec_base/checkpoint_last.pt" in argv:
            argv[argv.index("outputs/emotion2vec_base/checkpoint_last.pt")] = "checkpoints/emotion2vec_base.pt"
        assert cli(argv + (["--quiet"] if argv[0] in ("extract", "predict") else [])) == 0, command


@pytest.mark.parametrize("title", ["Recognise emotions", "Feature extraction"])
def test_readme_python_runs_as_written(workspace, title):
    for code in _blocks(_section(title), "python") or pytest.fail(f"no python block in {title}"):
        code = textwrap.dedent(code)  # a block inside a list item is indented
        res = subprocess.run([sys.executable, "-c", code], cwd=workspace, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
