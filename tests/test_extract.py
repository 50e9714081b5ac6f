"""Feature extraction: golden features through the CLI, URDU at 44.1 kHz, inputs, errors, resume, chunking, API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion2vec import Emotion2Vec
from emotion2vec.io.audio import resampled_length
from emotion2vec.cli import main as cli
from emotion2vec.extract.engine import BatchedForward, plan_batches
from emotion2vec.extract.inputs import discover_inputs
from emotion2vec.extract.store import FeatureStore

TOL = 1e-5


@pytest.fixture
def tiny(fixtures_dir):
    return fixtures_dir / "tiny_emotion2vec.pt"


@pytest.fixture
def golden_wavs(fixtures_dir, tmp_path):
    ref = np.load(fixtures_dir / "tiny_reference.npz")
    d = tmp_path / "golden"
    d.mkdir()
    for i in range(4):  # float WAV keeps the reference samples exactly
        sf.write(d / f"utt{i}.wav", ref[f"wav{i}"], 16000, subtype="FLOAT")
    return d, ref


def run(*args) -> int:
    return cli([str(a) for a in args])


def test_cli_features_equal_the_golden_reference(tiny, golden_wavs, tmp_path):
    d, ref = golden_wavs
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "f", "--num-workers", "0") == 0
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "u", "--granularity",
               "utterance", "--num-workers", "0") == 0
    frames, utts = FeatureStore(tmp_path / "f"), FeatureStore(tmp_path / "u")
    for i in range(4):
        assert frames[f"utt{i}"].shape == ref[f"x{i}"].shape
        assert np.abs(frames[f"utt{i}"] - ref[f"x{i}"]).max() < TOL
        assert np.abs(utts[f"utt{i}"] - ref[f"utt{i}"]).max() < TOL
    # every block: layers "all" puts the main blocks after the prenet block
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "a", "--layers", "all",
               "--num-workers", "0") == 0
    all_layers = FeatureStore(tmp_path / "a")
    assert all_layers.layers == [0, 1, 2]
    for i in range(4):
        x = all_layers[f"utt{i}"]
        assert x.shape == (3,) + ref[f"x{i}"].shape
        assert np.abs(x[1] - ref[f"hidden{i}_0"]).max() < TOL and np.abs(x[2] - ref[f"x{i}"]).max() < TOL
        assert np.abs(all_layers.get(f"utt{i}", layer=1) - ref[f"hidden{i}_0"]).max() < TOL


def test_urdu_corpus_at_44k_resampled_frame_counts(tiny, urdu_dir, tmp_path):
    out = tmp_path / "urdu"
    assert run("extract", "--checkpoint", tiny, "--input", urdu_dir, "--out", out, "--num-workers", "1",
               "--quiet") == 0
    store = FeatureStore(out)
    assert len(store) == 400 and not store.errors
    cfg = Emotion2Vec.from_checkpoint(tiny).config
    for key in store.keys():
        info = sf.info(str(urdu_dir / f"{key}.wav"))
        assert info.samplerate == 44100
        expected = cfg.num_frames(resampled_length(info.frames, 44100))
        x = store[key]
        assert x.shape == (expected, 96) and store.frames(key) == expected
        assert (out / f"{key}.npy").exists()


def test_bad_files_are_reported_and_the_rest_completes(tiny, golden_wavs, tmp_path, capsys):
    d, _ = golden_wavs
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "short.wav", np.zeros(100, dtype=np.float32), 16000)
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--num-workers", "0") == 1
    err = capsys.readouterr().err
    for name in ("corrupt.wav", "empty.wav", "short.wav"):
        assert name in err
    rows = {r.split("\t")[0]: r.split("\t") for r in (out / "index.tsv").read_text().splitlines()[1:]}
    assert rows["short"][3].startswith("error: too short")
    assert rows["corrupt"][3].startswith("error: unreadable audio")
    assert all(rows[f"utt{i}"][3] == "ok" for i in range(4))
    assert sorted(p.name for p in out.glob("*.npy")) == [f"utt{i}.npy" for i in range(4)]
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--skip-errors") == 0


def test_resume_writes_nothing_twice(tiny, golden_wavs, tmp_path, capsys):
    d, _ = golden_wavs
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--num-workers", "0") == 0
    (out / "utt2.npy").unlink()  # as if the first run had been killed before this file
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--num-workers", "0") == 0
    assert "3 of 4 outputs already exist" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy") if p.name != "utt2.npy"} == stamps
    assert (out / "utt2.npy").exists() and len(FeatureStore(out)) == 4
    assert not list(out.glob(".*.tmp"))
    # other settings in the same folder are refused instead of mixing features
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--granularity", "utterance") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "granularity is 'frame' there, 'utterance' now" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    copy = tmp_path / "model.pt"  # so is a checkpoint that changed at the same path (e.g. training went on)
    copy.write_bytes(tiny.read_bytes())
    assert run("extract", "--checkpoint", copy, "--input", d, "--out", tmp_path / "g") == 0
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    assert run("extract", "--checkpoint", copy, "--input", d, "--out", tmp_path / "g") == 2
    assert "other settings" in capsys.readouterr().err


def test_resume_refuses_other_compute_settings_naming_both_values(tiny, golden_wavs, tmp_path, capsys):
    d, _ = golden_wavs
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--dtype", "bfloat16",
               "--num-workers", "0") == 0
    meta = json.loads((out / "features.json").read_text())
    assert (meta["dtype"], meta["attention"], meta["backend"], meta["chunk_seconds"]) == ("bfloat16", "sdpa",
                                                                                           "emotion2vec", 30.0)
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    for option, value, there, now in (("--dtype", "float32", "'bfloat16'", "'float32'"),
                                      ("--attention", "eager", "'sdpa'", "'eager'"),
                                      ("--chunk-seconds", "20", "30.0", "20.0")):
        capsys.readouterr()
        assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--dtype", "bfloat16", option,
                   value) == 2
        err = capsys.readouterr().err
        setting = option.lstrip("-").replace("-", "_")
        assert f"{setting} is {there} there, {now} now" in err, err  # both values, in this order
        assert "--overwrite" in err
        assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == files  # nothing touched
    # --overwrite redoes the folder with the new settings
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--overwrite", "--num-workers", "0") == 0
    assert json.loads((out / "features.json").read_text())["dtype"] == "float32"


def test_a_folder_from_before_settings_were_recorded_is_refused(tiny, golden_wavs, tmp_path, capsys):
    d, _ = golden_wavs
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out, "--num-workers", "0") == 0
    meta = json.loads((out / "features.json").read_text())
    meta["version"] = 1
    for k in ("backend", "attention", "chunk_seconds"):
        del meta[k]
    (out / "features.json").write_text(json.dumps(meta))
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", out) == 2
    assert "older emotion2vec" in capsys.readouterr().err


def test_packed_output_matches_per_file(tiny, golden_wavs, tmp_path):
    d, ref = golden_wavs
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "p", "--packed") == 0
    store = FeatureStore(tmp_path / "p")
    lengths = [int(v) for v in (tmp_path / "p" / "features.lengths").read_text().split()]
    packed = np.load(tmp_path / "p" / "features.npy")
    assert packed.shape == (sum(lengths), 96) and lengths == [ref[f"x{i}"].shape[0] for i in range(4)]
    for i in range(4):
        assert np.abs(store[f"utt{i}"] - ref[f"x{i}"]).max() < TOL
    assert not (tmp_path / "p" / ".parts").exists()
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "p", "--packed") == 0  # no-op


def test_input_formats(tmp_path):
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.flac"):
        sf.write(audio / name, np.zeros(800, dtype=np.float32), 16000)
    (tmp_path / "wav.scp").write_text(f"k1 {audio / 'a.wav'}\nk2 {audio / 'sub/b.flac'}\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"key": "j1", "source": str(audio / "a.wav")}) + "\n")
    (tmp_path / "train.tsv").write_text(f"{audio}\na.wav\t800\nsub/b.flac\t800\n")
    (tmp_path / "data.tsv").write_text("key\tpath\tlabel\tspeaker\tgender\tduration\tchannel\n"
                                       f"x/y\t{audio / 'a.wav'}\thappy\ts1\tF\t0.05\t0\n")
    assert [i.key for i in discover_inputs([audio])] == ["a", "sub/b"]
    assert [(i.key, i.path) for i in discover_inputs([tmp_path / "wav.scp"])][1] == ("k2", str(audio / "sub/b.flac"))
    assert discover_inputs([tmp_path / "list.jsonl"])[0].key == "j1"
    assert [i.key for i in discover_inputs([tmp_path / "train.tsv"])] == ["a", "sub/b"]
    item = discover_inputs([tmp_path / "data.tsv"])[0]
    assert (item.key, item.channel) == ("x/y", 0)
    assert [i.key for i in discover_inputs([audio / "a.wav", audio / "sub" / "b.flac"])] == ["a", "sub/b"]
    from emotion2vec.extract import ExtractionError

    with pytest.raises(ExtractionError, match="duplicate key"):
        discover_inputs([audio, audio])
    (tmp_path / "bad.scp").write_text("k1 sox in.wav -t wav - |\n")
    with pytest.raises(ExtractionError, match="piped"):
        discover_inputs([tmp_path / "bad.scp"])
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ExtractionError, match="empty"):
        discover_inputs([tmp_path / "empty.tsv"])


def test_bad_options_name_the_value(tiny, golden_wavs, tmp_path, capsys):
    d, _ = golden_wavs
    assert run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "x", "--layers", "7") == 2
    assert "layer 7 out of range" in capsys.readouterr().err
    assert run("extract", "--checkpoint", tmp_path / "missing.pt", "--input", d, "--out", tmp_path / "x") == 2
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "x", "--dtype", "int4")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run("extract", "--checkpoint", tiny, "--input", d, "--out", tmp_path / "x", "--max-tokens", "0")
    assert e.value.code == 2 and "argument --max-tokens: must be >= 16000, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x" / "index.tsv").exists()


def test_multichannel_audio_is_averaged_or_selected(tiny, tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((16000, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    model = Emotion2Vec.from_checkpoint(tiny)
    mean = model.extract(stereo.mean(1), sample_rate=16000)
    left = model.extract(stereo[:, 0], sample_rate=16000)
    assert np.abs(model.extract(tmp_path / "s.wav") - mean).max() < TOL
    (tmp_path / "d.tsv").write_text(f"key\tpath\tlabel\tspeaker\tgender\tduration\tchannel\ns\t{tmp_path / 's.wav'}"
                                    f"\tx\ty\t\t1.0\t0\n")
    assert run("extract", "--checkpoint", tiny, "--input", tmp_path / "d.tsv", "--out", tmp_path / "o",
               "--granularity", "utterance") == 0
    assert np.abs(FeatureStore(tmp_path / "o")["s"] - left).max() < TOL


def test_api_resamples_and_batches(tiny, urdu_dir):
    model = Emotion2Vec.from_checkpoint(tiny)
    files = sorted((urdu_dir / "Sad").glob("*.wav"))[:5]
    from_files = model.extract(files, granularity="frame")
    for path, feats in zip(files, from_files):
        wav, sr = sf.read(path, dtype="float32")
        single = model.extract(wav, sample_rate=sr, granularity="frame")
        assert single.shape == feats.shape and np.abs(single - feats).max() < TOL
    with pytest.raises(ValueError, match="sample_rate"):
        model.extract(np.zeros(16000, dtype=np.float32))
    with pytest.raises(ValueError, match="too short"):
        model.extract(np.zeros(100, dtype=np.float32), sample_rate=16000)


def test_chunked_long_input_matches_the_unchunked_grid(tiny):
    """Stated tolerance: with 10 s windows (1/6 context each side) every frame is within 2 % relative L2 of the
    unchunked features (attention is global, so far context cannot be exact), and the frame grid is identical."""
    model = Emotion2Vec.from_checkpoint(tiny)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 50) / 16000
    wav = (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(np.pi * t)) * t) * (0.5 + 0.5 * np.sin(6 * np.pi * t))
           + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    full = BatchedForward(model.backend, [-1 % model.num_layers], max_tokens=10 ** 8, chunk_seconds=120)
    chunked = BatchedForward(model.backend, [-1 % model.num_layers], max_tokens=10 ** 8, chunk_seconds=10)
    x = full.prepare(wav)
    a, b = full([x])[0][0], chunked([x])[0][0]
    assert a.shape == b.shape == (model.config.num_frames(len(wav)), 96)
    rel = (a - b).norm(dim=-1) / a.norm(dim=-1)
    assert rel.max() < 0.02 and rel.mean() < 0.01
    plan = chunked.windows(len(x))
    assert len(plan) > 3 and plan[0][2] == 0 and plan[-1][3] == a.shape[0]
    assert all(p[3] == q[2] for p, q in zip(plan, plan[1:]))  # kept regions tile the grid


def test_batch_plan_bounds_padded_tokens():
    lengths = [16000, 48000, 8000, 32000, 400000, 12000]
    batches = plan_batches(lengths, max_tokens=64000, long_samples=320000)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [4] in batches  # longer than a chunk: alone
    for b in batches:
        if b != [4]:
            assert len(b) * max(lengths[i] for i in b) <= 64000
    # a budget below an input's length: every input still runs, alone
    assert sorted(plan_batches(lengths, max_tokens=10000, long_samples=320000)) == [[i] for i in range(6)]


def test_small_batches_give_the_same_features(tiny, golden_wavs):
    from emotion2vec import Emotion2Vec
    from emotion2vec.extract.engine import default_max_tokens

    assert default_max_tokens("cpu") == 160_000 and default_max_tokens("cuda") == 1_000_000
    d, _ = golden_wavs
    files = sorted(d.glob("*.wav"))
    one = Emotion2Vec.from_checkpoint(tiny, max_tokens=1).extract(files, granularity="frame")
    big = Emotion2Vec.from_checkpoint(tiny, max_tokens=10 ** 7).extract(files, granularity="frame")
    assert len(one) == len(files) >= 2
    for a, b in zip(one, big):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5
