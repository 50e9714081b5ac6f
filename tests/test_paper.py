"""The paper's own experiments: utterance-token features and their concatenation with frames (Table 9), emotion
prediction in conversation (Table 6), text features and speech + text fusion, the arousal-coloured embedding
(Figure 3), and MELD read straight from its .mp4 clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion2vec.cli import main as cli
from emotion2vec.downstream import ProbeError
from emotion2vec.downstream import corpora as C
from emotion2vec.downstream.conversation import ConversationConfig, build_turns, make_samples, run_conversation
from emotion2vec.downstream.features import PackedFeatures, concat_sources, load_features, load_sources
from emotion2vec.downstream.probe import run_probe
from emotion2vec.downstream.training import ProbeConfig
from emotion2vec.extract.store import FeatureStore
from emotion2vec.models.checkpoint import save_checkpoint_dir
from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel

LABELS = ["angry", "happy", "neutral", "sad"]


# ------------------------------------------------------------------------------------------------ fixtures
def write_features(directory: Path, feats: dict[str, np.ndarray], granularity: str, layers=(11,)) -> Path:
    """A feature folder in the format `emotion2vec extract` writes (per-file .npy, index.tsv, features.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    dim = next(iter(feats.values())).shape[-1]
    (directory / "features.json").write_text(json.dumps({
        "format": "emotion2vec-features", "version": 2, "granularity": granularity, "layers": list(layers),
        "dim": dim, "frame_rate": 50.0, "packed": False, "num_layers": 12}))
    lines = ["key\tpath\tframes\tstatus\toutput\toffset"]
    for key, x in feats.items():
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        np.save(directory / f"{key}.npy", x.astype(np.float32))
        lines.append(f"{key}\t/audio/{key}.wav\t{x.shape[-2] if granularity != 'utterance' else 1}\tok\t{key}.npy\t")
    (directory / "index.tsv").write_text("\n".join(lines) + "\n")
    return directory


def write_data(directory: Path, rows: list[dict], folds: list[dict] | None = None, corpus: str = "synth") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    (directory / "data.tsv").write_text("\t".join(cols) + "\n"
                                        + "".join("\t".join(str(r[c]) for c in cols) + "\n" for r in rows))
    if folds is not None:
        (directory / "folds.json").write_text(json.dumps({
            "corpus": corpus, "protocol": "default", "seed": 0, "speaker_independent": False,
            "labels": sorted({r["label"] for r in rows}), "folds": folds}))
    return directory


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A random emotion2vec model of the `small` preset (4 utterance tokens) in our checkpoint format."""
    torch.manual_seed(0)
    cfg = preset("small")
    model = Emotion2VecModel(cfg, with_decoder=False)
    out = tmp_path_factory.mktemp("small_model")
    save_checkpoint_dir(out, cfg, model.state_dict())
    return out


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    for i, n in enumerate([16000, 12000, 20000, 8000]):
        sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    return root


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-block BERT and its word-piece tokenizer, saved with save_pretrained (nothing downloaded)."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "so", "happy", "sad", "angry", "calm", "today",
             "you", "what", "no", "yes", "."]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizer(str(out / "vocab.txt")).save_pretrained(str(out))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=12)
    transformers.BertModel(config).save_pretrained(str(out))
    return out


# ------------------------------------------------------------------------------------------------ Table 9
def test_token_outputs_are_the_extra_token_positions_and_batch_like_one_by_one():
    torch.manual_seed(0)
    model = Emotion2VecModel(preset("small"), with_decoder=False).eval()
    E = model.cfg.num_extra_tokens
    wav = torch.randn(2, 12000)
    pad = torch.zeros(2, 12000, dtype=torch.bool)
    pad[1, 8000:] = True
    with torch.no_grad():
        out = model.extract_features(wav, pad, layers=None)
        raw = model.encoder(*model.local_features(wav, pad))
        alone = model.extract_features(wav[1:, :8000], layers=None)
    assert len(out.token_outputs) == model.cfg.num_layers
    for i in range(model.cfg.num_layers):
        assert out.token_outputs[i].shape == (2, E, model.cfg.embed_dim)
        assert torch.equal(out.token_outputs[i], raw.layer_outputs[i][:, :E])
        assert torch.equal(out.layer_outputs[i], raw.layer_outputs[i][:, E:])  # frames unchanged
        assert (out.token_outputs[i][1] - alone.token_outputs[i][0]).abs().max() < 1e-5  # padding never reaches them


def test_extract_tokens_resume_guard_and_refusals(tmp_path, small_model, wavs, capsys):
    out = tmp_path / "tokens"
    base = ["extract", "--checkpoint", str(small_model), "--input", str(wavs), "--quiet", "--num-workers", "0"]
    assert cli([*base, "--out", str(out), "--granularity", "tokens", "--layers", "all"]) == 0
    store = FeatureStore(out)
    assert store.granularity == "tokens" and store.meta["tokens"] == 4
    x = store["u0"]
    assert x.shape == (4, 4, 128)  # (layers, tokens, dim)
    assert store.frames("u0") == 4
    # the same numbers as the model on that file alone
    from emotion2vec.io.audio import load_audio, normalize_waveform
    from emotion2vec.models.upstream import load_upstream

    model, _ = load_upstream(str(small_model))
    w = torch.from_numpy(load_audio(wavs / "u2.wav"))
    w = normalize_waveform(w) if model.cfg.normalize else w
    with torch.no_grad():
        ref = torch.stack([t[0] for t in model.extract_features(w[None], layers=None).token_outputs]).numpy()
    assert np.abs(store["u2"] - ref).max() < 1e-5
    # the mean over tokens is what a probe reads
    packed, info = load_features(out, ["u0", "u1"], layer=-1)
    assert not packed.frame and info["granularity"] == "tokens"
    assert np.allclose(packed.x[0].numpy(), x[-1].mean(axis=0), atol=1e-6)
    # a resume into the folder with frame settings is refused, naming the setting
    assert cli([*base, "--out", str(out), "--layers", "all"]) == 2
    assert "granularity is 'tokens' there, 'frame' now" in capsys.readouterr().err
    # packed output of tokens reads back the same
    assert cli([*base, "--out", str(tmp_path / "packed"), "--granularity", "tokens", "--packed"]) == 0
    assert np.array_equal(FeatureStore(tmp_path / "packed")["u2"], store["u2"][-1])
    # upstreams without utterance tokens are refused by name
    assert cli(["extract", "--checkpoint", "fbank", "--input", str(wavs), "--out", str(tmp_path / "f"),
                "--granularity", "tokens"]) == 2
    assert "fbank" in capsys.readouterr().err
    no_tokens = tmp_path / "d2v2"
    cfg = preset("small", num_extra_tokens=0)
    save_checkpoint_dir(no_tokens, cfg, Emotion2VecModel(cfg, with_decoder=False).state_dict())
    assert cli(["extract", "--checkpoint", str(no_tokens), "--input", str(wavs), "--out", str(tmp_path / "g"),
                "--granularity", "tokens"]) == 2
    assert "no utterance tokens (num_extra_tokens 0)" in capsys.readouterr().err


def _packed(keys, rows, lengths, frame):
    lengths = torch.tensor(lengths)
    return PackedFeatures(keys, torch.tensor(rows, dtype=torch.float32), torch.cumsum(lengths, 0) - lengths,
                          lengths, frame)


def test_concat_sources_broadcasts_utterance_vectors_over_frames():
    frames = _packed(["a", "b"], [[1.0], [2.0], [3.0]], [2, 1], True)
    other = _packed(["a", "b"], [[10.0], [20.0], [30.0]], [2, 1], True)
    utt = _packed(["a", "b"], [[7.0, 8.0], [9.0, 6.0]], [1, 1], False)
    joined = concat_sources([frames, utt, other])
    assert joined.frame and joined.lengths.tolist() == [2, 1]
    assert joined.x.tolist() == [[1, 7, 8, 10], [2, 7, 8, 20], [3, 9, 6, 30]]
    assert concat_sources([utt, utt]).x.tolist() == [[7, 8, 7, 8], [9, 6, 9, 6]]
    # utterance-level first: the frame source still gives the frames, columns keep the given order
    assert concat_sources([utt, frames]).x.tolist() == [[7, 8, 1], [7, 8, 2], [9, 6, 3]]
    with pytest.raises(ProbeError, match=r"2 utterance\(s\) have other frame counts in B than in A, e.g. 'a' \(2 vs 1\)"):
        concat_sources([frames, _packed(["a", "b"], [[1.0], [2.0], [3.0]], [1, 2], True)], ["A", "B"])


def _probe_corpus(tmp_path: Path, n: int = 48):
    """Frame features that carry half of the class information, utterance vectors that carry the other half."""
    rng = np.random.default_rng(1)
    frames, utts, rows = {}, {}, []
    for i in range(n):
        c = i % 4
        key = f"s{i % 6}/u{i:03d}"
        frames[key] = (np.array([c // 2, 0.0]) * 3 + 0.3 * rng.standard_normal((int(rng.integers(3, 9)), 2)))
        utts[key] = (np.array([c % 2, 0.0, 0.0]) * 3 + 0.3 * rng.standard_normal(3))
        rows.append({"key": key, "path": f"/audio/{key}.wav", "label": LABELS[c], "speaker": f"s{i % 6}",
                     "gender": "", "duration": "1.0"})
    keys = [r["key"] for r in rows]
    folds = [{"name": f"fold{f + 1}", "train": [k for j, k in enumerate(keys) if j % 3 != f],
              "valid": [], "test": [k for j, k in enumerate(keys) if j % 3 == f]} for f in range(2)]
    data = write_data(tmp_path / "data", rows, folds)
    return (write_features(tmp_path / "frm", frames, "frame"),
            write_features(tmp_path / "utt", {k: v[None].repeat(4, 0) for k, v in utts.items()}, "tokens"), data)


def test_table9_rows_utt_frm_and_their_concatenation(tmp_path, capsys):
    frm, utt, data = _probe_corpus(tmp_path)
    config = ProbeConfig(epochs=40, hidden=32, batch_size=16, bootstrap=0, lr=5e-3)
    scores = {}
    for name, features, concat in (("Frm", frm, []), ("Utt", utt, []), ("Utt + Frm", frm, [utt])):
        r = run_probe(features, data, tmp_path / name, config, concat_features=concat, verbose=False,
                      audit_audio=False)
        scores[name] = r["summary"]["ua"]["mean"]
    # each source alone separates two pairs of classes; together they separate all four
    assert scores["Utt + Frm"] > 0.8 and max(scores["Frm"], scores["Utt"]) < 0.65, scores
    result = json.loads((tmp_path / "Utt + Frm" / "results.json").read_text())
    assert result["dim"] == 5 and result["granularity"] == "frame"
    assert result["concat"][0]["granularity"] == "tokens" and result["concat"][0]["dim"] == 3
    assert "concatenated with" in (tmp_path / "Utt + Frm" / "results.md").read_text()
    # the CLI spelling
    assert cli(["probe", "--features", str(frm), "--concat-features", str(utt), "--data", str(data), "--out",
                str(tmp_path / "cli"), "--epochs", "2", "--quiet", "--no-audio-audit", "--bootstrap", "0"]) == 0
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["concat"][0]["features"] == str(utt)


# ------------------------------------------------------------------------------------------------ IEMOCAP
def _iemocap_tree(root: Path) -> Path:
    base = root / "IEMOCAP_full_release" / "Session1"
    dialog = "Ses01F_impro01"
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
    words = []
    for i, (u, emo) in enumerate([("F000", "neu"), ("M000", "ang"), ("F001", "sad")]):
        utt = f"{dialog}_{u}"
        lines.append(f"[{i * 3 + 0.5:.4f} - {i * 3 + 2.25:.4f}]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.5000]\n\n")
        p = base / "sentences" / "wav" / dialog / f"{utt}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, np.zeros(8000, dtype=np.float32), 16000)
        if u != "F001":  # one utterance the transcripts lack
            words.append(f"{utt} [{i * 3:06.4f}-{i * 3 + 2:06.4f}]: Hello\tthere, number {i}.\n")
    words.append("M: [BREATHING]\n")
    (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(lines))
    (base / "dialog" / "transcriptions").mkdir(parents=True)
    (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("".join(words))
    return root


def test_iemocap_keeps_dialogue_time_and_transcripts(tmp_path):
    rows = {r["key"].rsplit("/", 1)[1]: r for r in C.prepare_iemocap(_iemocap_tree(tmp_path))}
    r = rows["Ses01F_impro01_M000"]
    assert (r["dialog"], r["start"], r["end"], r["speaker"]) == ("Ses01F_impro01", "3.5000", "5.2500", "Ses01M")
    assert r["text"] == "Hello there, number 1."
    assert rows["Ses01F_impro01_F001"]["text"] == ""  # missing from the transcripts: empty, reported at extraction


def test_msp_podcast_transcripts(tmp_path):
    root = tmp_path / "MSP"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0001.wav,A,5,2,4,12,Male,Train\nMSP-PODCAST_0001_0002.wav,N,4,4,4,12,Male,Test1\n")
    for name in ("MSP-PODCAST_0001_0001", "MSP-PODCAST_0001_0002"):
        (root / "Audios").mkdir(exist_ok=True)
        sf.write(root / "Audios" / f"{name}.wav", np.zeros(8000, dtype=np.float32), 16000)
    (root / "Transcripts").mkdir()
    (root / "Transcripts" / "MSP-PODCAST_0001_0001.txt").write_text("well I\nnever\n")
    rows = {r["key"]: r for r in C.prepare_msp_podcast(root)}
    assert rows["MSP-PODCAST_0001_0001"]["text"] == "well I never"
    assert rows["MSP-PODCAST_0001_0002"]["text"] == ""


# ------------------------------------------------------------------------------------------------ Table 6
def synthetic_dialogues(tmp_path: Path, n_dialogs: int = 40, dim: int = 6, seed: int = 0):
    """IEMOCAP-like dyads (5 sessions x 2 speakers): each speaker keeps a mood that changes now and then; turns hold
    one or two utterances whose features show the mood. The next turn's emotion is its speaker's current mood,
    which the previous turns reveal. Dialogue 0 has 3 turns only."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((4, dim)) * 2.0
    rows, feats = [], {}
    for d in range(n_dialogs):
        s = d % 5 + 1
        dialog = f"Ses0{s}F_impro{d:02d}"
        mood = [int(rng.integers(4)), int(rng.integers(4))]
        t = 0.0
        for turn in range(3 if d == 0 else int(rng.integers(10, 16))):
            who = turn % 2
            if rng.random() < 0.1:
                mood[who] = int(rng.integers(4))
            for u in range(int(rng.integers(1, 3))):
                key = f"{dialog}/{dialog}_{'FM'[who]}{turn:02d}{u}"
                rows.append({"key": key, "path": f"/audio/{key}.wav", "label": LABELS[mood[who]],
                             "speaker": f"Ses0{s}{'FM'[who]}", "gender": "FM"[who], "duration": "1.0",
                             "session": f"Ses0{s}", "dialog": dialog, "start": f"{t:.4f}", "end": f"{t + 1:.4f}"})
                feats[key] = means[mood[who]] + 0.6 * rng.standard_normal(dim)
                t += 1.5
    return write_features(tmp_path / "feats", feats, "utterance"), write_data(tmp_path / "data", rows), rows


def test_turns_and_samples():
    rows = [{"key": k, "label": lab, "speaker": spk, "dialog": "d1", "start": start}
            for k, lab, spk, start in [("c", "sad", "A", "2.0"), ("a", "happy", "A", "0.0"), ("b", "other", "A", "1.0"),
                                       ("d", "angry", "B", "3.0"), ("e", "xxx", "B", "4.0"), ("f", "sad", "A", "5.0")]]
    rows.append({"key": "g", "label": "sad", "speaker": "A", "dialog": "d2", "start": "0"})
    turns = build_turns(rows, ["angry", "happy", "sad"])
    assert [t.keys for t in turns["d1"]] == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert [t.label for t in turns["d1"]] == ["happy", "angry", "sad"]  # tie happy/sad: the earliest
    mapped = build_turns(rows, ["angry", "happy", "sad"], {"happy": ""})
    assert mapped["d1"][0].label == "sad"  # happy mapped to '': context only
    samples, short = make_samples(turns, history=2)
    assert [(s.key, s.label, [t.keys[0] for t in s.context]) for s in samples] == [("f", "sad", ["a", "d"])]
    assert short == ["d2 (1 turn(s))"]
    bad = rows + [{"key": "h", "label": "sad", "speaker": "A", "dialog": "d3", "start": "soon"}]
    with pytest.raises(ProbeError, match="key 'h': dialog 'd3', start 'soon'"):
        build_turns(bad, ["sad"])
    with pytest.raises(ProbeError, match="no dialog, start column"):
        build_turns([{"key": "x", "label": "sad", "speaker": "A"}], ["sad"])


def test_conversation_task_learns_from_the_dialogue(tmp_path, capsys):
    feats, data, _ = synthetic_dialogues(tmp_path)
    out = tmp_path / "out"
    assert cli(["conversation", "--features", str(feats), "--data", str(data), "--protocol", "loso-speaker",
                "--out", str(out), "--folds", "1,2", "--epochs", "20", "--lr", "0.003", "--hidden", "32", "--bootstrap", "50",
                "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| UA |" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["task"] == "categorical" and result["protocol"] == "loso-speaker" and len(result["folds"]) == 2
    assert result["conversation"]["history"] == 6
    assert result["conversation"]["short_dialogs"] == ["Ses01F_impro00 (3 turn(s))"]
    assert "Ses01F_impro00 (3 turn(s))" in result["warnings"][0]
    assert result["summary"]["ua"]["mean"] > 0.5 and result["summary"]["macro_f1"]["mean"] > 0.45  # chance: 0.25
    # samples of a fold are the target turns of its test speaker
    test_speakers = {key.split("/")[1][:5] + key.split("/")[1][-4] for key in
                     [line.split("\t")[1] for line in (out / "predictions.tsv").read_text().splitlines()[1:]
                      if line.startswith("fold1")]}
    assert len(test_speakers) == 1
    for name in ("results.md", "predictions.tsv", "confusion.png"):
        assert (out / name).exists()
    from emotion2vec.downstream.report import make_table

    assert "macro-F1" in make_table([out], metrics=("ua", "macro_f1"))


def test_conversation_with_text_features_and_bad_inputs(tmp_path):
    feats, data, rows = synthetic_dialogues(tmp_path, n_dialogs=12)
    text = write_features(tmp_path / "text", {r["key"]: np.ones(3) * (r["label"] == "sad") for r in rows},
                          "utterance", layers=(2,))
    config = ConversationConfig(epochs=2, hidden=16, bootstrap=0, history=2)
    r = run_conversation(feats, data, None, config, protocol="loso-speaker", folds="1",
                         concat_features=[text], verbose=False)
    assert r["dim"] == 9 and r["concat"][0]["dim"] == 3 and r["conversation"]["short_dialogs"] == []
    with pytest.raises(ProbeError, match="no sample"):
        run_conversation(feats, data, None, ConversationConfig(history=50), protocol="loso-speaker", verbose=False)
    with pytest.raises(ProbeError, match="--classes joy"):
        run_conversation(feats, data, None, config, protocol="loso-speaker", classes=["joy", "sad"], verbose=False)
    # a missing transcript (text feature) is named by key
    (text / "index.tsv").write_text((text / "index.tsv").read_text().replace(
        f"{rows[5]['key']}\t/audio/{rows[5]['key']}.wav\t1\tok", f"{rows[5]['key']}\t/audio/x.wav\t0\terror: no transcript"))
    with pytest.raises(ProbeError, match=f"{rows[5]['key']}.*no transcript"):
        run_conversation(feats, data, None, config, protocol="loso-speaker", concat_features=[text], verbose=False)


# ------------------------------------------------------------------------------------------------ text
def test_text_features_equal_the_model_and_report_missing_transcripts(tmp_path, tiny_bert, capsys):
    transformers = pytest.importorskip("transformers")
    texts = {"a/u1": "i am so angry today", "a/u2": "", "b/u3": "what ? no . " * 8, "b/u4": "yes you"}
    rows = [{"key": k, "path": f"/audio/{k}.wav", "label": "sad", "speaker": "s", "gender": "", "duration": "1.0",
             "text": t} for k, t in texts.items()]
    data = write_data(tmp_path / "data", rows)
    out = tmp_path / "bert"
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(data / "data.tsv"), "--out",
                str(out), "--layers", "all"]) == 1  # one utterance without a transcript
    err = capsys.readouterr().err
    assert "a/u2: no transcript" in err and "cut to it" in err  # b/u3 is longer than the 12-position window
    store = FeatureStore(out)
    assert store.errors["a/u2"].startswith("error: no transcript") and store.granularity == "utterance"
    assert store["a/u1"].shape == (3, 16) and store.meta["text_pooling"] == "mean"
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_bert))
    model = transformers.AutoModel.from_pretrained(str(tiny_bert)).eval()
    with torch.no_grad():
        enc = tok([texts["a/u1"]], return_tensors="pt")
        hidden = model(**enc, output_hidden_states=True).hidden_states
    for layer in range(3):
        assert np.abs(store["a/u1"][layer] - hidden[layer][0].mean(0).numpy()).max() < 1e-5
    # CLS pooling into another folder; a resume with other pooling is refused
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(data / "data.tsv"), "--out",
                str(out), "--text-pooling", "cls"]) == 2
    assert "text_pooling is 'mean' there, 'cls' now" in capsys.readouterr().err
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(data / "data.tsv"), "--out",
                str(tmp_path / "cls"), "--text-pooling", "cls", "--skip-errors"]) == 0
    assert np.abs(FeatureStore(tmp_path / "cls")["a/u1"] - hidden[-1][0, 0].numpy()).max() < 1e-5
    # text features are utterance vectors
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(data / "data.tsv"), "--out",
                str(tmp_path / "x"), "--granularity", "frame"]) == 2
    no_text = write_data(tmp_path / "plain", [{k: v for k, v in r.items() if k != "text"} for r in rows])
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(no_text / "data.tsv"), "--out",
                str(tmp_path / "y")]) == 2
    assert "no text column" in capsys.readouterr().err


def test_text_extraction_checks_its_input_before_loading_a_model(tmp_path, monkeypatch, capsys):
    """A data.tsv without a text column is named before the model is looked for (a hub name would reach the
    network first): the encoder is never loaded."""
    def no_loading(*args, **kwargs):
        raise AssertionError("the text encoder was loaded before the input was checked")

    monkeypatch.setattr("emotion2vec.extract.text.load_text_encoder", no_loading)
    rows = [{"key": "a/u1", "path": "/audio/a/u1.wav", "label": "sad", "speaker": "s", "gender": "",
             "duration": "1.0"}]
    data = write_data(tmp_path / "plain", rows)
    assert cli(["extract", "--checkpoint", "text:bert-base-uncased", "--input", str(data / "data.tsv"), "--out",
                str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'data.tsv'}: no text column" in err and not (tmp_path / "y").exists()
    assert cli(["extract", "--checkpoint", "text:bert-base-uncased", "--input", str(tmp_path / "nowhere"), "--out",
                str(tmp_path / "y")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_speech_and_text_fusion_in_the_probe(tmp_path, tiny_bert):
    pytest.importorskip("transformers")
    words = {"angry": "angry angry today", "happy": "happy yes happy", "neutral": "what you calm", "sad": "sad no sad"}
    rng = np.random.default_rng(0)
    rows, speech = [], {}
    for i in range(24):
        label = LABELS[i % 4]
        key = f"s{i % 3}/u{i:02d}"
        rows.append({"key": key, "path": f"/audio/{key}.wav", "label": label, "speaker": f"s{i % 3}", "gender": "",
                     "duration": "1.0", "text": words[label]})
        speech[key] = rng.standard_normal((5, 4))
    keys = [r["key"] for r in rows]
    data = write_data(tmp_path / "data", rows, [{"name": "fold1", "train": keys[:16], "valid": [], "test": keys[16:]}])
    assert cli(["extract", "--checkpoint", f"text:{tiny_bert}", "--input", str(data / "data.tsv"), "--out",
                str(tmp_path / "text")]) == 0
    speech_dir = write_features(tmp_path / "speech", speech, "frame")
    config = ProbeConfig(epochs=30, hidden=16, bootstrap=0, lr=5e-3, standardize=True, valid_fraction=0.0)
    result = run_probe(speech_dir, data, tmp_path / "fused", config, concat_features=[tmp_path / "text"],
                       verbose=False, audit_audio=False)
    assert result["dim"] == 4 + 16 and result["concat"][0]["settings"]["backend"] == "text"
    assert result["summary"]["ua"]["mean"] > 0.8  # the words decide the label; the speech features are noise
    packed, info = load_sources(speech_dir, keys, concat=[tmp_path / "text"])
    assert packed.frame and info["frames"] == 24 * 5


# ------------------------------------------------------------------------------------------------ Figure 3
def test_embedding_coloured_by_arousal_group(tmp_path):
    from threadpoolctl import threadpool_limits

    frm, _, data = _probe_corpus(tmp_path, n=60)
    with threadpool_limits(1):  # t-SNE's OpenMP threads only contend with torch's on a busy machine
        result = run_probe(frm, data, tmp_path / "run", ProbeConfig(epochs=2, hidden=8, bootstrap=0), verbose=False,
                           audit_audio=False, embedding="1", embedding_colour="arousal")
    assert result["embedding"]["coloured_by"] == "arousal group"
    try:
        import umap  # noqa: F401
        method = "UMAP"
    except ImportError:
        method = "t-SNE"
    assert result["embedding"]["method"] == method
    assert (tmp_path / "run" / "embedding.png").stat().st_size > 1000


def test_arousal_groups_and_the_umap_path():
    from emotion2vec.analysis.embedding import AROUSAL_GROUPS, reduce_2d

    assert {k for k, v in AROUSAL_GROUPS.items() if v == "low arousal"} == {"sad", "neutral"}
    assert {"angry", "happy"} <= {k for k, v in AROUSAL_GROUPS.items() if v == "high arousal"}
    pytest.importorskip("umap", reason="umap-learn is an optional extra (pip install 'emotion2vec[umap]')")
    emb, method = reduce_2d(np.random.default_rng(0).standard_normal((30, 5)))
    assert method == "UMAP" and emb.shape == (30, 2)


# ------------------------------------------------------------------------------------------------ MELD .mp4
def _meld_mp4_tree(root: Path) -> Path:
    av = pytest.importorskip("av")
    base = root / "MELD.Raw"
    head = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    folders = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
    for split, emos in (("train", ["joy", "anger"]), ("dev", ["sadness"]), ("test", ["neutral", "anger"])):
        base.mkdir(parents=True, exist_ok=True)
        (base / f"{split}_sent_emo.csv").write_text(head + "".join(
            f'{u + 1},"Line {u}",Ross,{emo},neutral,0,{u},1,1,"00:00:01,000","00:00:02,000"\n'
            for u, emo in enumerate(emos)))
        for u in range(len(emos)):
            path = base / folders[split] / f"dia0_utt{u}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            rate, t = 48000, np.arange(48000) / 48000
            tone = (0.3 * np.sin(2 * np.pi * (200 + 50 * u) * t)).astype(np.float32)
            container = av.open(str(path), mode="w", format="mp4")
            stream = container.add_stream("aac", rate=rate)
            stream.layout = "stereo"
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
            container.close()
    return base


def test_meld_straight_from_mp4(tmp_path, monkeypatch, small_model):
    base = _meld_mp4_tree(tmp_path)
    rows = C.prepare_meld(base)
    assert len(rows) == 5 and all(r["path"].endswith(".mp4") for r in rows)
    assert {r["key"] for r in rows} >= {"train/dia0_utt0", "test/dia0_utt1"}
    assert all(0.9 < float(r["duration"]) < 1.2 for r in rows) and {r["channel"] for r in rows} == {""}
    assert cli(["prepare", "meld", "--root", str(base), "--out", str(tmp_path / "manifests")]) == 0
    assert cli(["extract", "--checkpoint", str(small_model), "--input", str(tmp_path / "manifests" / "data.tsv"),
                "--out", str(tmp_path / "feats"), "--granularity", "utterance", "--quiet", "--num-workers", "0"]) == 0
    assert len(FeatureStore(tmp_path / "feats")) == 5
    # a clip PyAV cannot decode is named
    (base / "dev_splits_complete" / "dia0_utt0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(C.CorpusError, match="dia0_utt0.mp4: unreadable media"):
        C.prepare_meld(base)
    # without PyAV the message says how to get it (or how to convert)
    monkeypatch.setattr(C, "_pyav_available", lambda: False)
    with pytest.raises(C.CorpusError, match=r"(?s)5 clip\(s\) exist only as \.mp4.*pip install 'emotion2vec\[media\]'"):
        C.prepare_meld(base)


# ------------------------------------------------------------------------------------------------ fine-tuning
def test_finetuning_head_fuses_text_features(tmp_path, small_model):
    from emotion2vec.finetune import FinetuneError
    from emotion2vec.finetune.config import FinetuneConfig
    from emotion2vec.finetune.heads import UtteranceHead
    from emotion2vec.downstream.heads import HeadConfig

    head = UtteranceHead(HeadConfig(8, 4, hidden=6), text_dim=3)
    assert head.head.output.in_features == 6 + 3
    z = head(torch.randn(2, 5, 8), torch.tensor([5, 3]), text=torch.zeros(2, 3))
    assert z.shape == (2, 4)
    with pytest.raises(FinetuneError, match="text vector"):
        head(torch.randn(2, 5, 8), torch.tensor([5, 3]))
    with pytest.raises(FinetuneError, match="does not go with --init-head keep"):
        FinetuneConfig(text_features="x", init_head="keep")

    rng = np.random.default_rng(0)
    rows, text = [], {}
    for i in range(16):
        label = LABELS[i % 4]
        key = f"{label}/u{i:02d}"
        path = tmp_path / "audio" / f"{key}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        rows.append({"key": key, "path": str(path), "label": label, "speaker": f"s{i % 2}", "gender": "",
                     "duration": "0.5"})
        text[key] = np.eye(4)[i % 4] * 3
    keys = [r["key"] for r in rows]
    data = write_data(tmp_path / "data", rows, [{"name": "fold1", "train": keys[:12], "valid": [], "test": keys[12:]}])
    text_dir = write_features(tmp_path / "text", text, "utterance")
    out = tmp_path / "run"
    assert cli(["finetune", "--checkpoint", str(small_model), "--data", str(data), "--out", str(out),
                "--text-features", str(text_dir), "--epochs", "4", "--freeze", "all-but-top", "0", "--batch-seconds", "4",
                "--num-workers", "0", "--head-lr", "5e-2", "--valid-fraction", "0", "--bootstrap", "0",
                "--no-audio-audit", "--no-tensorboard", "--quiet"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["folds"][0]["model_dir"] is None and not (out / "models").exists()
    assert result["summary"]["ua"]["mean"] == 1.0  # the text vectors name the class; the audio is noise
    assert "not exported" in (out / "results.md").read_text()
    # a key without text features is named
    (text_dir / "index.tsv").write_text((text_dir / "index.tsv").read_text().replace(
        f"{keys[3]}\t/audio/{keys[3]}.wav\t1\tok", f"{keys[3]}\t/audio/x.wav\t0\terror: no transcript"))
    assert cli(["finetune", "--checkpoint", str(small_model), "--data", str(data), "--out", str(tmp_path / "run2"),
                "--text-features", str(text_dir), "--epochs", "1", "--num-workers", "0", "--quiet",
                "--no-audio-audit"]) == 2
