"""Shared fixtures. Tests that need ../shared (golden checkpoints, URDU corpus) skip with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2V_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "checkpoints"
URDU = SHARED / "data" / "urdu"


def require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set E2V_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's in-process runs, as its subprocesses run (modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fixtures_dir() -> Path:
    return require(FIXTURES, "golden checkpoint fixtures")


@pytest.fixture
def urdu_dir() -> Path:
    return require(URDU, "URDU corpus")


def urdu_subset(base: Path, per_emotion: int = 8) -> Path:
    """``per_emotion`` URDU clips per emotion symlinked under ``base/audio`` in the corpus's layout, prepared with one
    hold-out fold (8 per emotion: 23 train, 3 valid, 6 test) into ``base/manifest``; returns the manifest folder."""
    from emotion2vec.cli import main as cli

    root = require(URDU, "URDU corpus")
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (base / "audio" / label).mkdir(parents=True)
        for f in sorted((root / label).glob("*.wav"))[:per_emotion]:
            (base / "audio" / label / f.name).symlink_to(f)
    out = base / "manifest"
    assert cli(["prepare", "urdu", "--root", str(base / "audio"), "--out", str(out), "--protocol", "holdout",
                "--no-audio-audit", "--quiet"]) == 0
    return out
