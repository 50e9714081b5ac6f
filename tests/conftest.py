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


@pytest.fixture
def fixtures_dir() -> Path:
    return require(FIXTURES, "golden checkpoint fixtures")


@pytest.fixture
def urdu_dir() -> Path:
    return require(URDU, "URDU corpus")
