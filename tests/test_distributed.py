"""Sharded extraction and recognition under torchrun (2 CPU processes, gloo) on 12 URDU clips with the tiny golden
checkpoint: the outputs equal a single process's bitwise, a failure on one process is merged, packed output, a
killed process is named and the re-run finishes only what is missing; plus the index and --out keeping rules of
plain runs (index.tsv lists every output of the folder; a table of failures never replaces a good one)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import FIXTURES, URDU, require
from docs_blocks import blocks, check_flags, needs_cluster, run_bash, workspace
from emotion2vec.cli import main as cli
from emotion2vec.distributed import Processes, balanced_shards
from emotion2vec.extract.engine import plan_batches
from emotion2vec.extract.inputs import discover_inputs, probe_lengths
from emotion2vec.extract.store import FeatureStore

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------------ helpers
def _torchrun(*args: str, background: bool = False):
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "emotion2vec", *args, "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _single(*args: str) -> int:
    """The same command in this process with one thread (as each torchrun process has)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli([*args, "--quiet"])
    finally:
        torch.set_num_threads(previous)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stamps(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.npy")}


def _corrupt_flac(path: Path) -> None:
    """A FLAC whose header reads (2.5 s) but whose frames do not decode: it fails in the process that takes it."""
    x = np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1
    sf.write(path, x, 16000)
    b = bytearray(path.read_bytes())
    for i in range(len(b) // 3, len(b)):
        b[i] = (b[i] * 7 + 13) % 256
    path.write_bytes(bytes(b))


@pytest.fixture(scope="module")
def tiny() -> Path:
    return require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """wav.scp of 12 URDU clips (2-3 s at 44.1 kHz, all four emotions) and one corrupt FLAC."""
    root = require(URDU, "URDU corpus")
    base = tmp_path_factory.mktemp("clips")
    files = sorted(root.rglob("*.wav"))[::33][:12]
    _corrupt_flac(base / "broken.flac")
    scp = base / "wav.scp"
    scp.write_text("".join(f"{f.parent.name}/{f.stem} {f}\n" for f in files) + f"broken {base / 'broken.flac'}\n")
    return scp


@pytest.fixture(scope="module")
def single(tiny, clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "f"
    assert _single("extract", "--checkpoint", str(tiny), "--input", str(clips), "--out", str(out)) == 1
    return out


# ------------------------------------------------------------------------------------------------ units
def test_balanced_shards_deal_largest_first_to_the_least_loaded():
    assert balanced_shards([5, 1, 4, 2, 3], 2) == [[0, 1, 3], [2, 4]]  # 5+2+1 = 8, 4+3 = 7
    assert balanced_shards([1.0] * 5, 3) == [[0, 3], [1, 4], [2]]
    assert balanced_shards([], 2) == [[], []]
    costs = list(np.random.default_rng(1).uniform(1, 30, 200))
    totals = [sum(costs[i] for i in s) for s in balanced_shards(costs, 4)]
    assert max(totals) - sum(costs) / 4 <= max(costs)
    shards = balanced_shards(costs, 4)
    assert sorted(i for s in shards for i in s) == list(range(200))


def test_a_job_of_one_passes_objects_through():
    p = Processes()
    assert not p.sharded and p.main and p.all_gather(3) == [3] and p.broadcast("x") == "x"
    assert p.on_main(lambda: 7) == 7


# ------------------------------------------------------------------------------------------------ extract
def test_two_processes_write_what_one_process_writes_bitwise(tiny, clips, single, tmp_path, capsys):
    # the corrupt file is computed by process 1: its failure reaches the merged index
    items = discover_inputs([str(clips)])
    probe_lengths(items)
    work = [it for it in items if it.error is None]
    batches = plan_batches([it.num_samples for it in work], 160_000, 30 * 16000)
    shards = balanced_shards([sum(work[i].num_samples for i in b) for b in batches], 2)
    owner = next(r for r, s in enumerate(shards) for b in s if any(work[i].key == "broken" for i in batches[b]))
    assert owner == 1
    out = tmp_path / "f"
    proc = _torchrun("extract", "--checkpoint", str(tiny), "--input", str(clips), "--out", str(out))
    assert proc.returncode == 1, proc.stderr[-3000:]  # some inputs failed: torchrun passes the status on
    assert "error: " in proc.stderr and "broken.flac: unreadable audio" in proc.stderr
    assert _files(out) == _files(single)  # index.tsv, features.json and every .npy, byte for byte
    index = (out / "index.tsv").read_text().splitlines()
    assert len(index) == 14 and index[-1].split("\t")[3].startswith("error: unreadable audio")
    assert not (out / ".shards.json").exists()
    for rank in (0, 1):
        assert f"process {rank} of 2 (local rank {rank} on {socket.gethostname()})" in proc.stderr
    assert len(FeatureStore(out)) == 12


def test_packed_output_sharded_equals_one_process(tiny, clips, tmp_path):
    args = ["extract", "--checkpoint", str(tiny), "--input", str(clips), "--packed", "--granularity", "utterance",
            "--layers", "all"]
    assert _single(*args, "--out", str(tmp_path / "one")) == 1
    proc = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    store = FeatureStore(tmp_path / "two")
    assert store.get("Angry/SM1_F10_A010").shape == (3, 96) and not (tmp_path / "two" / ".parts").exists()


def test_a_killed_process_is_named_and_the_rerun_finishes_only_the_missing_files(tiny, clips, single, tmp_path):
    out = tmp_path / "f"
    args = ["extract", "--checkpoint", str(tiny), "--input", str(clips), "--out", str(out), "--num-workers", "1"]
    job = _torchrun(*args, background=True)
    lines, killed = [], None
    for line in job.stderr:
        lines.append(line)
        if killed is None and line.startswith("process 1 of 2"):
            # process 1 halts as it starts its shard; once process 0 has written all of its own, SIGKILL it
            killed = _child_with_rank(job.pid, 1)
            os.kill(killed, signal.SIGSTOP)
            record = json.loads(_wait_for(out / ".shards.json").read_text())
            for key in record["processes"][0]["keys"]:
                _wait_for(out / f"{key}.npy")
            os.kill(killed, signal.SIGKILL)
    job.wait(timeout=120)
    log = "".join(lines)
    assert killed and job.returncode != 0, log[-3000:]
    assert "exitcode  : -9" in log and "rank      : 1 (local_rank: 1)" in log  # torchrun's report names it
    assert "process 0 of 2" in log and "The outputs written so far are kept" in log  # process 0 says what it kept
    p1 = record["processes"][1]
    assert p1["pid"] == killed and p1["rank"] == 1
    before = _stamps(out)
    assert len(before) == len(record["processes"][0]["keys"]) and not any(
        (out / f"{key}.npy").exists() for key in p1["keys"])
    proc = _torchrun(*args)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (f"process 1 (local rank 1 on {p1['host']}, pid {killed}) left {len(p1['keys'])} of its "
            f"{len(p1['keys'])} file(s)") in proc.stderr
    assert f"extracted {12 - len(before)} file(s)" in proc.stderr
    after = _stamps(out)
    assert {k: after[k] for k in before} == before  # nothing written twice
    assert (out / "index.tsv").read_bytes() == (single / "index.tsv").read_bytes()
    assert not (out / ".shards.json").exists()
    ref = FeatureStore(single)
    store = FeatureStore(out)
    for key in ref.keys():
        assert np.abs(store[key] - ref[key]).max() < 1e-5
    # a re-run with other settings is refused, once, by process 0
    proc = _torchrun(*args, "--granularity", "utterance")
    assert proc.returncode != 0 and proc.stderr.count("holds features made with other settings") == 1
    assert "granularity is 'frame' there, 'utterance' now" in proc.stderr


def _wait_for(path: Path, seconds: float = 60) -> Path:
    end = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.01)
    return path


def _child_with_rank(parent: int, rank: int) -> int:
    """The pid of the torchrun worker of ``rank`` (from /proc: its parent and its RANK variable)."""
    for _ in range(100):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat[1]) == parent and f"RANK={rank}".encode() in env:
                return int(entry)
        time.sleep(0.01)
    raise AssertionError(f"no worker with RANK={rank} under {parent}")


# ------------------------------------------------------------------------------------------------ predict
def test_sharded_predictions_equal_one_process(clips, tmp_path, fixtures_dir):
    plus = fixtures_dir / "funasr_emotion2vec_plus"
    args = ["predict", str(plus), str(clips), "--window", "1", "--hop", "0.5"]
    assert _single(*args, "--out", str(tmp_path / "one.tsv")) == 1
    proc = _torchrun(*args, "--out", str(tmp_path / "two.tsv"))
    assert proc.returncode == 1 and "broken.flac: unreadable audio" in proc.stderr, proc.stderr[-3000:]
    one = (tmp_path / "one.tsv").read_text()
    assert (tmp_path / "two.tsv").read_text() == one
    assert len(one.splitlines()) > 14 and "\tbroken\t" not in one and "error: unreadable audio" in one


# ------------------------------------------------------------------------------------------------ outputs kept
@pytest.fixture
def wavs(fixtures_dir, tmp_path) -> Path:
    ref = np.load(fixtures_dir / "tiny_reference.npz")
    d = tmp_path / "wavs"
    d.mkdir()
    for i in range(4):
        sf.write(d / f"utt{i}.wav", ref[f"wav{i}"], 16000, subtype="FLOAT")
    return d


def _index(out: Path) -> list[list[str]]:
    return [line.split("\t") for line in (out / "index.tsv").read_text().splitlines()[1:]]


def test_a_smaller_input_list_keeps_every_earlier_output_listed(tiny, wavs, tmp_path):
    out = tmp_path / "f"
    base = ["extract", "--checkpoint", str(tiny), "--out", str(out), "--num-workers", "0", "--quiet"]
    assert cli([*base, "--input", str(wavs)]) == 0
    first = _index(out)
    assert [r[0] for r in first] == ["utt0", "utt1", "utt2", "utt3"]
    # another, smaller list into the same folder: the earlier outputs stay listed, in their place
    assert cli([*base, "--input", str(wavs / "utt2.wav")]) == 0
    assert _index(out) == first and len(FeatureStore(out)) == 4
    # so with --overwrite and the same settings: utt1 is redone, the three others stay
    assert cli([*base, "--input", str(wavs / "utt1.wav"), "--overwrite"]) == 0
    assert _index(out) == first
    # a new key is added after them
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.wav").symlink_to(wavs / "utt0.wav")
    assert cli([*base, "--input", str(extra)]) == 0
    assert [r[0] for r in _index(out)] == ["utt0", "utt1", "utt2", "utt3", "new"]
    # --overwrite with other settings: the earlier outputs of other keys were made with the old ones: removed
    assert cli([*base, "--input", str(wavs / "utt3.wav"), "--overwrite", "--granularity", "utterance"]) == 0
    assert [r[0] for r in _index(out)] == ["utt3"]
    assert sorted(p.name for p in out.rglob("*.npy")) == ["utt3.npy"]
    assert FeatureStore(out)["utt3"].shape == (96,)


def test_an_input_that_fails_keeps_no_earlier_output(tiny, wavs, tmp_path):
    out = tmp_path / "f"
    base = ["extract", "--checkpoint", str(tiny), "--out", str(out), "--num-workers", "0", "--quiet",
            "--input", str(wavs)]
    assert cli(base) == 0
    (wavs / "utt1.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    assert cli([*base, "--overwrite"]) == 1
    rows = {r[0]: r for r in _index(out)}
    assert rows["utt1"][3].startswith("error: unreadable audio") and not (out / "utt1.npy").exists()
    store = FeatureStore(out)
    assert "utt1" not in store and len(store) == 3


def test_predict_keeps_an_earlier_table_when_every_input_fails(wavs, tmp_path, fixtures_dir, capsys):
    plus = fixtures_dir / "funasr_emotion2vec_plus"
    keep = tmp_path / "keep.tsv"
    assert cli(["predict", str(plus), str(wavs), "--out", str(keep), "--num-workers", "0", "--quiet"]) == 0
    good = keep.read_bytes()
    assert len(good.decode().splitlines()) == 5
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    capsys.readouterr()
    assert cli(["predict", str(plus), str(bad), "--out", str(keep), "--num-workers", "0", "--quiet"]) == 1
    assert keep.read_bytes() == good
    err = capsys.readouterr().err
    assert "bad.wav: unreadable audio" in err and f"every input failed: {keep} is left as it was" in err
    # a new file is written even so: it records the failures
    fresh = tmp_path / "fresh.tsv"
    assert cli(["predict", str(plus), str(bad), "--out", str(fresh), "--num-workers", "0", "--quiet"]) == 1
    assert "error: unreadable audio" in fresh.read_text()


# ------------------------------------------------------------------------------------------------ docs
def test_the_distributed_page_runs_as_written(tmp_path, fixtures_dir, urdu_dir):
    """docs/distributed.md: the one-node blocks run on CPU processes in a workspace as the page assumes; the GPU,
    multi-node and SLURM blocks have every torchrun and emotion2vec option checked; the benchmark command exists."""
    ws = workspace(tmp_path / "ws", fixtures_dir, urdu_dir)
    ran = checked = 0
    for block in blocks("distributed.md", "bash"):
        if block.startswith("python benchmarks/"):
            script, *options = block.split()[1:]
            usage = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / script), "--help"],
                                   capture_output=True, text=True, timeout=60).stdout
            assert all(o in usage for o in options if o.startswith("--")), usage
        elif needs_cluster(block):
            checked += check_flags(block)
        else:
            proc = run_bash(block, ws)
            ran += 1
            if ran == 3:  # the same command again: nothing left
                assert "resuming: 40 of 40 outputs already exist" in proc.stderr
    assert ran == 3 and checked == 3
    store = FeatureStore(ws / "features" / "urdu" / "emotion2vec_base")
    assert len(store) == 40 and not store.errors
    assert len((ws / "predictions.tsv").read_text().splitlines()) == 41
    packed = FeatureStore(ws / "features" / "urdu" / "emotion2vec_base_packed")
    assert packed.meta["packed"] and packed[store.keys()[0]].shape == (96,)
