"""Where the benchmarks find the shared material: ``$E2V_SHARED`` (as the tests), else ``shared`` beside the
repository. ``peers/`` holds the peer scripts, ``data/urdu`` the default corpus, ``fixtures/`` the golden files."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2V_SHARED") or REPO.parent / "shared")
PEERS = SHARED / "peers"
