"""Emotion recognition with emotion2vec+ classifiers: FunASR parity, labels, conversion, `emotion2vec predict`."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion2vec import Emotion2Vec
from emotion2vec.cli import main as cli
from emotion2vec.models.checkpoint import CheckpointError, read_checkpoint
from emotion2vec.recognize import RecognitionError
from emotion2vec.recognize.recognizer import display_label
from emotion2vec.recognize.run import window_bounds

TOL = 1e-5
ENGLISH = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"]


@pytest.fixture
def plus(fixtures_dir):
    return fixtures_dir / "funasr_emotion2vec_plus"


@pytest.fixture
def ref(fixtures_dir):
    return np.load(fixtures_dir / "plus_reference.npz")


def _copy(plus, tmp_path):
    out = tmp_path / "plus"
    shutil.copytree(plus, out)
    for f in out.iterdir():
        f.chmod(0o644)
    return out


def test_scores_and_features_match_funasr_one_by_one_and_batched(plus, ref):
    model = Emotion2Vec.from_checkpoint(plus, max_tokens=10 ** 7)  # one padded batch for the list below
    assert model.labels == ENGLISH
    wavs = [ref[f"wav{k}"] for k in range(4)]
    assert len({len(w) for w in wavs}) > 1  # different lengths: the batch is padded
    batched = model.predict(wavs, sample_rate=16000)
    for k in range(4):
        one = model.predict(wavs[k], sample_rate=16000)
        for result in (one, batched[k]):
            scores = np.array([result["scores"][name] for name in ENGLISH])
            assert np.abs(scores - ref[f"scores{k}"]).max() < TOL
            assert result["label"] == ENGLISH[int(ref[f"scores{k}"].argmax())]
            assert result["label_raw"] in ("生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral",
                                           "其他/other", "难过/sad", "吃惊/surprised", "<unk>")
        frames = model.extract(wavs[k], sample_rate=16000, granularity="frame")
        assert np.abs(frames - ref[f"x{k}"]).max() < TOL


def test_display_labels():
    assert display_label("生气/angry") == "angry" and display_label("<unk>") == "unknown"
    assert display_label("neutral") == "neutral"


def test_an_unuse_label_gets_probability_zero_and_never_wins(plus, ref, tmp_path):
    folder = _copy(plus, tmp_path)
    labels = (folder / "tokens.txt").read_text(encoding="utf-8").splitlines()
    labels[2] = "unuse_2"
    (folder / "tokens.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    obj = torch.load(folder / "model.pt", weights_only=True)
    obj["state_dict"]["proj.bias"][2] += 100.0  # it would win every time if it were scored
    torch.save(obj, folder / "model.pt")
    model = Emotion2Vec.from_checkpoint(folder)
    assert "unuse_2" not in model.labels and len(model.labels) == 8
    result = model.predict(ref["wav0"], sample_rate=16000)
    assert result["label_raw"] != "unuse_2" and "unuse_2" not in result["scores_raw"]
    assert abs(sum(result["scores"].values()) - 1.0) < 1e-6
    assert model.recognizer.probabilities([torch.randn(20, 96)])[0][2] == 0.0


def test_tokens_missing_or_miscounted(plus, ref, tmp_path, caplog):
    folder = _copy(plus, tmp_path)
    (folder / "tokens.txt").unlink()
    with caplog.at_level("WARNING"):
        ckpt = read_checkpoint(folder)
    assert ckpt.classifier.labels == [f"class_{i}" for i in range(9)] and "no tokens.txt" in caplog.text
    (folder / "tokens.txt").write_text("angry\nsad\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"tokens.txt: 2 label\(s\), but the head .* has 9 output\(s\)"):
        read_checkpoint(folder)


def test_a_config_that_does_not_match_the_tensors_is_named(plus, tmp_path):
    folder = _copy(plus, tmp_path)
    text = (folder / "config.yaml").read_text().replace("  depth: 2\n", "  depth: 3\n", 1)
    (folder / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=r"missing tensor encoder\.blocks\.2\..* \(96"):
        Emotion2Vec.from_checkpoint(folder)


def test_converted_folder_keeps_the_head_and_predicts_the_same(plus, ref, tmp_path):
    assert cli(["convert", str(plus), str(tmp_path / "conv")]) == 0
    meta = json.loads((tmp_path / "conv" / "config.json").read_text())
    assert meta["classifier"]["kind"] == "mean_linear" and meta["classifier"]["labels"][0] == "生气/angry"
    a = Emotion2Vec.from_checkpoint(plus).predict(ref["wav1"], sample_rate=16000)
    b = Emotion2Vec.from_checkpoint(tmp_path / "conv").predict(ref["wav1"], sample_rate=16000)
    assert a["label"] == b["label"] and all(abs(a["scores"][k] - b["scores"][k]) < 1e-7 for k in a["scores"])


def test_predict_on_the_urdu_corpus_writes_one_row_per_file(plus, urdu_dir, tmp_path):
    out = tmp_path / "pred.tsv"
    assert cli(["predict", str(plus), str(urdu_dir), "--out", str(out), "--quiet", "--num-workers", "0"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 400 and len({r["key"] for r in rows}) == 400
    assert list(rows[0])[:2] == ["key", "label"] and [c for c in rows[0] if c.startswith("p_")] == \
        [f"p_{n}" for n in ENGLISH]
    for r in rows:
        probs = [float(r[f"p_{n}"]) for n in ENGLISH]
        assert abs(sum(probs) - 1.0) < 1e-4 and r["label"] == ENGLISH[int(np.argmax(probs))] and r["status"] == "ok"


def test_windows_give_a_timeline_with_timestamps_and_a_plot(plus, urdu_dir, tmp_path):
    clips = sorted(urdu_dir.rglob("*.wav"))[:6]
    wav = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
    sf.write(tmp_path / "talk.wav", wav, 44100)
    duration = len(wav) / 44100
    out = tmp_path / "talk.jsonl"
    assert cli(["predict", str(plus), str(tmp_path / "talk.wav"), "--window", "3", "--hop", "1.5", "--out", str(out),
                "--plot", str(tmp_path / "plots"), "--quiet", "--num-workers", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    starts = [r["start"] for r in rows]
    assert starts[0] == 0.0 and starts == sorted(starts) and all(r["end"] - r["start"] == pytest.approx(3.0)
                                                                  for r in rows)
    assert rows[-1]["end"] == pytest.approx(duration, abs=1e-3)
    assert all(set(r["scores"]) == set(ENGLISH) and r["label_raw"] for r in rows)
    assert (tmp_path / "plots" / "talk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    api = Emotion2Vec.from_checkpoint(plus).predict(str(tmp_path / "talk.wav"), window=3, hop=1.5)
    assert [round(r["start"], 3) for r in api] == starts
    assert window_bounds(16000 * 10, 3.0, 1.5)[-1] == (16000 * 7, 16000 * 10)
    assert window_bounds(16000, 3.0) == [(0, 16000)]


def test_bad_requests(plus, fixtures_dir, urdu_dir, tmp_path, capsys):
    clip = str(next(urdu_dir.rglob("*.wav")))
    assert cli(["predict", str(fixtures_dir / "tiny_emotion2vec.pt"), clip]) == 2
    assert "no classification head" in capsys.readouterr().err
    assert cli(["predict", str(plus), clip, "--hop", "1"]) == 2
    assert "--hop needs --window" in capsys.readouterr().err
    assert cli(["predict", str(plus), clip, "--window", "2", "--hop", "3"]) == 2
    assert cli(["predict", str(plus), clip, "--plot", str(tmp_path)]) == 2
    assert cli(["predict", str(plus), clip, "--out", str(tmp_path / "x.csv")]) == 2
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    assert cli(["predict", str(plus), clip, str(tmp_path / "bad.wav"), "--quiet", "--num-workers", "0"]) == 1
    captured = capsys.readouterr()
    assert "bad.wav" in captured.err and "error: unreadable audio" in captured.out
    with pytest.raises(RecognitionError, match="no classification head"):
        Emotion2Vec.from_checkpoint(fixtures_dir / "tiny_emotion2vec.pt").predict(clip)


def test_extract_writes_the_scores_beside_the_features_and_resumes_them(plus, ref, tmp_path):
    d = tmp_path / "wavs"
    d.mkdir()
    for k in range(4):
        sf.write(d / f"utt{k}.wav", ref[f"wav{k}"], 16000, subtype="FLOAT")
    out = tmp_path / "f"
    args = ["extract", "--checkpoint", str(plus), "--input", str(d), "--out", str(out), "--scores", "--layers", "0",
            "--num-workers", "0", "--quiet"]
    assert cli(args) == 0

    def scores():
        with open(out / "index.tsv", newline="", encoding="utf-8") as f:
            return {r["key"]: np.array([float(r[f"p_{n}"]) for n in ENGLISH]) for r in csv.DictReader(f, delimiter="\t")}

    first = scores()
    for k in range(4):
        assert np.abs(first[f"utt{k}"] - ref[f"scores{k}"]).max() < TOL
        assert np.load(out / f"utt{k}.npy").shape == ref[f"hidden{k}_0"].shape  # layer 0 stored, scores of the last
    (out / "utt2.npy").unlink()
    assert cli(args) == 0
    again = scores()
    assert all(np.abs(again[k] - first[k]).max() < TOL for k in first)
    assert cli([a for a in args if a != "--scores"]) == 2  # without --scores is another setting: refused
