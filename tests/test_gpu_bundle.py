"""The GPU bundle (benchmarks/gpu_prepare.sh) and its install step (benchmarks/gpu_install.sh, run by
benchmarks/gpu_check.sh on a bare GPU machine), everything but CUDA.

The bundle for the GPU machine's CPython 3.12 is built from PyPI and checked (size, contents); pip then checks, in a
dry run, that every wheel installs on CPython 3.12 / manylinux x86_64. The install itself runs for real on this
interpreter (3.11 here) with the same script: the bundle's pure-Python wheels plus this Python's builds of the three
compiled ones (bitarray, cffi, soxr) go into a temporary folder with ``pip --target``, and every package they hold
must import from there. fairseq-fixed 0.12.3.1 is published as a cp312 wheel only, so it is covered by the dry run.
Needs PyPI (skipped with the reason when it is unreachable) and the shared folder."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import SHARED, require

REPO = Path(__file__).resolve().parents[1]
COMPILED = ("bitarray", "cffi", "soxr")


def _pip_download(dest: Path, *specs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                           str(dest), *specs], capture_output=True, text=True, timeout=300)


def test_bundle_builds_under_64_mib_and_installs_with_pip_target(tmp_path):
    require(SHARED / "peers" / "funasr_emotion2vec.sh", "the peer scripts")
    require(SHARED / "data" / "urdu", "URDU corpus")
    if _pip_download(tmp_path / "probe", "pycparser").returncode != 0:
        pytest.skip("PyPI is not reachable: the bundle is made of downloaded wheels")
    bundle = tmp_path / "bundle"
    env = dict(os.environ, PY=sys.executable, E2V_SHARED=str(SHARED))
    made = subprocess.run(["bash", "benchmarks/gpu_prepare.sh", "--urdu-files", "3", str(bundle)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    assert sorted(p.name.split("-")[0].lower() for p in wheels) == [
        "antlr4_python3_runtime", "bitarray", "cffi", "emotion2vec", "fairseq_fixed", "hydra_core", "omegaconf",
        "pycparser", "soundfile", "soxr"]
    assert all("cp312" in p.name for p in wheels if p.name.split("-")[0].lower() in (*COMPILED, "fairseq_fixed"))
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    reported = int(made.stdout.rsplit("(", 1)[1].split(" bytes)")[0])  # du's, folders included
    assert size <= reported < 64 * 2 ** 20
    clips = sorted((bundle / "shared" / "data" / "urdu").rglob("*.flac"))
    assert len(clips) == 3 and all(sf.info(c).samplerate == 16000 for c in clips)
    assert (bundle / "shared" / "peer_cache" / "peer_funasr" / ".ready").exists()
    assert (bundle / "shared" / "peers" / "funasr_extract.py").exists()
    assert (bundle / "shared" / "fixtures" / "checkpoints" / "tiny_reference.npz").exists()
    assert not (REPO / "build").exists()  # the wheel build leaves nothing in the checkout

    dry = subprocess.run(["bash", "benchmarks/gpu_install.sh", str(bundle), str(tmp_path / "site312"),
                          sys.executable, "--dry-run", "3.12"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Would install" in dry.stdout and "fairseq-fixed-0.12.3.1" in dry.stdout
    assert not (tmp_path / "site312").exists()

    here = tmp_path / "here"
    (here / "wheels").mkdir(parents=True)
    for p in wheels:
        if p.name.split("-")[0].lower() not in (*COMPILED, "fairseq_fixed"):
            shutil.copy(p, here / "wheels")
    fetched = _pip_download(here / "wheels", *(f"{n}=={importlib.metadata.version(n)}" for n in COMPILED))
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    target = tmp_path / "site"
    installed = subprocess.run(["bash", "benchmarks/gpu_install.sh", str(here), str(target), sys.executable],
                               cwd=REPO, env=dict(os.environ, PYTHONPATH=""), capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    for name in ("antlr4", "bitarray", "cffi", "emotion2vec", "hydra", "omegaconf", "soundfile", "soxr"):
        assert name in installed.stdout.split(": ", 1)[1].split(" import from there")[0].split(", ")


def test_gpu_check_uses_a_bundle_when_there_is_one():
    """gpu_check.sh installs the bundle with gpu_install.sh and points the benchmarks at the bundle's shared folder
    and peer cache; fairseq-hydra-train runs as a module (pip --target puts no script on the PATH)."""
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    assert 'bash benchmarks/gpu_install.sh "$BUNDLE" "$TARGET" "$PY"' in script
    assert 'E2V_PEER_CACHE="$PWD/$BUNDLE/shared/peer_cache"' in script
    assert '"$PY" -m fairseq_cli.hydra_train' in script
    assert subprocess.run(["bash", "-n", "benchmarks/gpu_check.sh"], cwd=REPO).returncode == 0
