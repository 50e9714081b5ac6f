"""Where the benchmarks find the shared material: ``$E2V_SHARED`` (as the tests), else ``shared`` beside the
repository. ``peers/`` holds the peer scripts, ``data/urdu`` the default corpus, ``fixtures/`` the golden files."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2V_SHARED") or REPO.parent / "shared")
PEERS = SHARED / "peers"


_CACHE_NAMES = {"funasr_emotion2vec.sh": "peer_funasr", "fairseq_data2vec.sh": "peer_fairseq_data2vec"}


def peer_env(script: str, extra: dict | None = None) -> dict:
    """The environment that makes a peer importable: the peer script ``script`` (under :data:`PEERS`) prepares it
    and prints a PYTHONPATH, put before the caller's. ``$E2V_PEER_CACHE``: where the prepared peers live (a
    bundle for a machine without network carries FunASR's there); default the script's own (under $TMPDIR)."""
    import subprocess
    import sys

    cmd = ["bash", str(PEERS / script)]
    if os.environ.get("E2V_PEER_CACHE"):  # the scripts' own folder names
        cmd.append(str(Path(os.environ["E2V_PEER_CACHE"]) / _CACHE_NAMES[script]))
    path = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env=dict(os.environ, PY=sys.executable)).stdout.strip().splitlines()[-1]
    inherited = os.environ.get("PYTHONPATH")
    return dict(os.environ, **(extra or {}), PYTHONPATH=path + (os.pathsep + inherited if inherited else ""))
