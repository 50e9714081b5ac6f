"""`emotion2vec prepare`: every corpus preparer on a synthetic tree that mimics the real naming (plus the real URDU
corpus), the data.tsv schema, the error listings and the CLI outputs."""

from __future__ import annotations

import argparse
import io
import json
import logging
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.downstream import corpora as C
from emotion2vec.downstream.corpora import CORPORA, CorpusError, prepare_corpus
from emotion2vec.downstream.folds import check_folds, load_folds, make_folds
from emotion2vec.io.manifests import ManifestError, read_data_tsv, write_data_tsv
from emotion2vec.cli import main as cli

from conftest import SHARED, require


def main(argv):
    return cli(["prepare", *argv])

def wav(path: Path, sr: int = 16000, channels: int = 1, seconds: float = 0.1) -> Path:
    """A tiny valid PCM-16 wav (noise seeded by the file name: distinct files hold distinct audio) at ``sr`` with
    ``channels`` channels."""
    seed = zlib.crc32(path.name.encode("utf-8"))
    noise = np.random.default_rng(seed).uniform(-0.1, 0.1, (int(sr * seconds), channels)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, noise, sr, format="WAV", subtype="PCM_16")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def by_key(rows):
    return {r["key"]: r for r in rows}


def labels_of(rows):
    return Counter(r["label"] for r in rows)


def roundtrip(rows, tmp_path):
    """Rows survive data.tsv writing and reading (the schema validates them)."""
    write_data_tsv(tmp_path / "rt" / "data.tsv", rows)
    back = read_data_tsv(tmp_path / "rt" / "data.tsv")
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    return back


# ------------------------------------------------------------------------------------------------ real URDU
def test_urdu_real_corpus(urdu_dir, tmp_path):
    rows = C.prepare_urdu(urdu_dir)
    assert len(rows) == 400
    assert labels_of(rows) == {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}
    speakers = {r["speaker"] for r in rows}
    assert len(speakers) >= 29 and all(s[:2] in ("SM", "SF") for s in speakers)
    assert all(r["gender"] == r["speaker"][1] for r in rows)
    assert all(r["duration"] > 0 for r in rows)
    r = by_key(rows)["Angry/SM1_F10_A010"]
    assert r["label"] == "angry" and r["speaker"] == "SM1" and r["gender"] == "M"
    assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()

    out = tmp_path / "urdu"
    assert main(["urdu", "--root", str(urdu_dir), "--out", str(out), "--quiet"]) == 0
    back = read_data_tsv(out / "data.tsv")
    assert [x["key"] for x in back] == [x["key"] for x in rows]
    folds = json.loads((out / "folds.json").read_text())
    assert folds == json.loads((out / "folds_random-kfold.json").read_text())
    assert folds["corpus"] == "urdu" and folds["protocol"] == "random-kfold" and len(folds["folds"]) == 10
    check_folds(folds, back)
    label = {x["key"]: x["label"] for x in back}
    for f in folds["folds"]:
        assert (len(f["train"]), len(f["valid"]), len(f["test"])) == (320, 40, 40)
        assert set(Counter(label[k] for k in f["test"]).values()) == {10}
    assert load_folds(out) == folds


# ------------------------------------------------------------------------------------------------ IEMOCAP
_IEMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def make_iemocap(root: Path, sessions=(1, 2, 3)) -> Path:
    base = root / "IEMOCAP_full_release"
    for n in sessions:
        s = f"Ses0{n}"
        dialogs = {
            f"{s}F_impro01": [("F000", "neu"), ("M000", "ang"), ("F001", "exc"), ("M001", "fru"), ("F002", "xxx")],
            f"{s}M_script01_1": [("F000", "hap"), ("M000", "sad"), ("M001", "neu")],
        }
        for dialog, utts in dialogs.items():
            lines = [_IEMO_HEADER]
            for i, (u, emo) in enumerate(utts):
                utt = f"{dialog}_{u}"
                lines.append(f"[{i * 3}.1000 - {i * 3 + 2}.2000]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.5000]\n"
                             f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n")
                wav(base / f"Session{n}" / "sentences" / "wav" / dialog / f"{utt}.wav")
            emo_dir = base / f"Session{n}" / "dialog" / "EmoEvaluation"
            emo_dir.mkdir(parents=True, exist_ok=True)
            (emo_dir / f"{dialog}.txt").write_text("".join(lines))
            (emo_dir / "Categorical").mkdir(exist_ok=True)
            (emo_dir / "Categorical" / f"{dialog}_e1_cat.txt").write_text(f"{dialog}_F000 :Neutral state; ()\n")
        wav(base / f"Session{n}" / "sentences" / "wav" / f"{s}F_impro01" / "._junk.wav")  # macOS residue
    return root


def test_iemocap(tmp_path):
    root = make_iemocap(tmp_path / "iemocap")
    rows = C.prepare_iemocap(root)
    assert len(rows) == 18  # 6 kept of 8 per session (fru, xxx left out)
    assert labels_of(rows) == {"neutral": 6, "angry": 3, "happy": 6, "sad": 3}
    rows_k = by_key(rows)
    r = rows_k["Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000"]
    # the utterance's own speaker (M), not the dialog's (F)
    assert (r["speaker"], r["gender"], r["session"], r["label"]) == ("Ses01M", "M", "Ses01", "angry")
    r = rows_k["Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000"]
    assert (r["speaker"], r["gender"], r["session"], r["label"]) == ("Ses02F", "F", "Ses02", "happy")
    assert rows_k["Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_F001"]["label"] == "happy"  # exc merged
    assert {r["speaker"] for r in rows} == {f"Ses0{n}{g}" for n in (1, 2, 3) for g in "FM"}
    back = roundtrip(rows, tmp_path)
    folds = make_folds(back, "loso-session", corpus="iemocap")
    assert len(folds["folds"]) == 3
    for i, f in enumerate(folds["folds"]):
        assert {rows_k[k]["session"] for k in f["test"]} == {f"Ses0{i + 1}"} and len(f["test"]) == 6
    assert make_folds(back, "loso-speaker")["speaker_independent"] is True

    rows = C.prepare_iemocap(root / "IEMOCAP_full_release", all_labels=True)
    assert len(rows) == 24
    assert labels_of(rows)["excited"] == 3 and labels_of(rows)["frustrated"] == 3
    assert labels_of(rows)["unknown"] == 3 and labels_of(rows)["happy"] == 3


def test_iemocap_errors(tmp_path):
    root = make_iemocap(tmp_path / "iemocap", sessions=(1,))
    base = root / "IEMOCAP_full_release" / "Session1"
    (base / "sentences/wav/Ses01F_impro01/Ses01F_impro01_M000.wav").unlink()
    lf = base / "dialog/EmoEvaluation/Ses01M_script01_1.txt"
    lf.write_text(lf.read_text().replace("\thap\t", "\thappyish\t"))
    with pytest.raises(CorpusError) as e:
        C.prepare_iemocap(root)
    msg = str(e.value)
    assert "2 item(s)" in msg and "audio missing for labelled utterance Ses01F_impro01_M000" in msg
    assert "unknown label 'happyish' for Ses01M_script01_1_F000" in msg and "Expected layout" in msg
    (tmp_path / "other").mkdir()
    with pytest.raises(CorpusError, match="no Session1..Session5 folder"):
        C.prepare_iemocap(tmp_path / "other")
    with pytest.raises(CorpusError, match="2 item"):  # found two levels down, same errors
        C.prepare_iemocap(tmp_path)


# ------------------------------------------------------------------------------------------------ MELD
_MELD_HEAD = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
_MELD_ROWS = {
    "train": [(0, 0, "Ross", "joy"), (0, 1, "Rachel", "neutral"), (125, 3, "Monica", "anger"),
              (1, 0, "Joey", "surprise")],
    "dev": [(0, 0, "Phoebe", "sadness"), (110, 7, "Chandler", "fear"), (1, 0, "Ross", "disgust")],
    "test": [(0, 0, "Rachel", "fear"), (0, 1, "Joey", "neutral"), (2, 0, "Monica", "anger")],
}
_MELD_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def make_meld(root: Path, audio_root: Path | None = None, ext: str = ".wav") -> Path:
    base = root / "MELD.Raw"
    for split, rows in _MELD_ROWS.items():
        text = _MELD_HEAD + "".join(
            f'{i + 1},"Oh, you \u2019re ""kidding""",{spk},{emo},neutral,{d},{u},1,1,"00:00:01,000","00:00:02,000"\n'
            for i, (d, u, spk, emo) in enumerate(rows))
        base.mkdir(parents=True, exist_ok=True)
        (base / f"{split}_sent_emo.csv").write_bytes(text.encode("cp1252"))
        for d, u, _spk, _emo in rows:
            if (split, d, u) in (("train", 125, 3), ("dev", 110, 7)):
                continue  # the broken clips
            name = f"dia{d}_utt{u}"
            channels = 6 if (split, d) == ("train", 1) else 2
            (base / _MELD_DIRS[split]).mkdir(parents=True, exist_ok=True)
            (base / _MELD_DIRS[split] / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
            if ext:
                target = (audio_root / "MELD.Raw" if audio_root else base) / _MELD_DIRS[split] / f"{name}{ext}"
                wav(target, sr=48000, channels=channels)
    return base


def test_meld(tmp_path, caplog):
    base = make_meld(tmp_path / "meld")
    with caplog.at_level(logging.INFO, logger="emotion2vec.downstream"):
        rows = C.prepare_meld(base)
    assert "dia125_utt3" in caplog.text and "dia110_utt7" in caplog.text
    assert len(rows) == 8
    rk = by_key(rows)
    assert set(rk) == {"train/dia0_utt0", "train/dia0_utt1", "train/dia1_utt0", "dev/dia0_utt0", "dev/dia1_utt0",
                       "test/dia0_utt0", "test/dia0_utt1", "test/dia2_utt0"}
    assert rk["train/dia0_utt0"]["label"] == "happy" and rk["train/dia0_utt0"]["speaker"] == "Ross"
    assert rk["test/dia2_utt0"]["label"] == "angry" and rk["dev/dia0_utt0"]["label"] == "sad"
    assert rk["train/dia1_utt0"]["channel"] == "2"  # 6-channel clip
    assert rk["test/dia2_utt0"]["channel"] == ""    # stereo: no channel selection
    assert Counter(r["split"] for r in rows) == {"train": 3, "valid": 2, "test": 3}
    assert {r["gender"] for r in rows} == {""}
    back = roundtrip(rows, tmp_path)
    assert back[0].keys() >= {"channel", "split"}
    folds = make_folds(back, "original", corpus="meld")
    f = folds["folds"][0]
    assert (len(f["train"]), len(f["valid"]), len(f["test"])) == (3, 2, 3) and folds["speaker_independent"] is False


def test_meld_mp4_only_explains_ffmpeg_and_audio_dir_works(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "_pyav_available", lambda: False)  # without PyAV the .mp4 clips must be converted first
    base = make_meld(tmp_path / "meld", ext="")
    with pytest.raises(CorpusError) as e:
        C.prepare_meld(base)
    msg = str(e.value)
    assert "8 clip(s) exist only as .mp4" in msg and "ffmpeg" in msg and "--audio-dir" in msg
    assert "pcm_s16le" in msg
    # the converted mirror tree
    make_meld(tmp_path / "meld2", audio_root=tmp_path / "meld2_wav")
    rows = C.prepare_meld(tmp_path / "meld2", audio_dir=tmp_path / "meld2_wav")
    assert len(rows) == 8 and all("meld2_wav" in r["path"] for r in rows)
    # one clip missing from the mirror: pointed at the mp4 again
    (tmp_path / "meld2_wav/MELD.Raw/dev_splits_complete/dia0_utt0.wav").unlink()
    with pytest.raises(CorpusError, match="1 clip\\(s\\) exist only as .mp4"):
        C.prepare_meld(tmp_path / "meld2", audio_dir=tmp_path / "meld2_wav")


# ------------------------------------------------------------------------------------------------ RAVDESS
def make_ravdess(root: Path, vocal="01", actors=(1, 2, 3, 4), emotions=range(1, 9)) -> Path:
    top = "Audio_Speech_Actors_01-24" if vocal == "01" else "Audio_Song_Actors_01-24"
    for a in actors:
        for e in emotions:
            for intensity in ((1,) if e == 1 else (1, 2)):
                for st in (1, 2):
                    wav(root / top / f"Actor_{a:02d}" / f"03-{vocal}-{e:02d}-{intensity:02d}-{st:02d}-01-{a:02d}.wav",
                        sr=48000)
    return root


def test_ravdess_speech(tmp_path):
    root = make_ravdess(tmp_path / "ravdess")
    wav(root / "Audio_Speech_Actors_01-24/Actor_01/03-02-01-01-01-01-01.wav")  # a song file: ignored
    rows = C.prepare_ravdess(root)
    assert len(rows) == 4 * (2 + 7 * 4)
    assert set(labels_of(rows)) == {"neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"}
    r = by_key(rows)["Audio_Speech_Actors_01-24/Actor_02/03-01-05-02-01-01-02"]
    assert (r["label"], r["speaker"], r["gender"]) == ("angry", "Actor_02", "F")
    assert {r["gender"] for r in rows if r["speaker"] == "Actor_03"} == {"M"}
    folds = make_folds(roundtrip(rows, tmp_path), "random-kfold")
    assert len(folds["folds"]) == 10


def test_ravdess_song_and_unknown_names(tmp_path):
    root = make_ravdess(tmp_path / "song", vocal="02", actors=(1, 2, 17, 19), emotions=range(1, 7))
    rows = C.prepare_ravdess_song(root)
    assert len(rows) == 4 * (2 + 5 * 4) and set(labels_of(rows)) == {"neutral", "calm", "happy", "sad", "angry",
                                                                      "fear"}
    assert "Actor_18" not in {r["speaker"] for r in rows}
    wav(root / "Audio_Song_Actors_01-24/Actor_01/03-02-07-01-01-01-01.wav")  # disgust does not exist in song
    wav(root / "Audio_Song_Actors_01-24/Actor_01/03-02-01-01-01-01-02.wav")  # actor 02 inside Actor_01
    wav(root / "Audio_Song_Actors_01-24/Actor_01/song_take2.wav")
    with pytest.raises(CorpusError) as e:
        C.prepare_ravdess_song(root)
    msg = str(e.value)
    assert "3 item(s)" in msg and "emotion code 07" in msg and "actor 02 inside folder Actor_01" in msg
    assert "song_take2.wav: name is not MM-VV-EE-II-SS-RR-AA" in msg


# ------------------------------------------------------------------------------------------------ SAVEE
_SAVEE_CODES = ["a", "d", "f", "h", "n", "sa", "su"]


def test_savee_original_and_kaggle_layouts(tmp_path):
    orig = tmp_path / "savee"
    for spk in ("DC", "JE"):
        for e in _SAVEE_CODES:
            for i in (1, 2):
                wav(orig / "AudioData" / spk / f"{e}{i:02d}.wav", sr=44100)
    (orig / "AudioData" / "DC" / "Info.txt").write_text("not audio")
    rows = C.prepare_savee(orig)
    assert len(rows) == 28 and labels_of(rows) == {x: 4 for x in
                                                   ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")}
    r = by_key(rows)["AudioData/JE/su02"]
    assert (r["label"], r["speaker"], r["gender"]) == ("surprise", "JE", "M")

    flat = tmp_path / "kaggle"
    for spk in ("JK", "KL"):
        for e in _SAVEE_CODES:
            wav(flat / "ALL" / f"{spk}_{e}01.wav", sr=44100)
    rows = C.prepare_savee(flat)
    assert len(rows) == 14 and by_key(rows)["ALL/KL_sa01"]["label"] == "sad"
    assert {r["speaker"] for r in rows} == {"JK", "KL"}

    wav(orig / "ALL" / "DC_a01.wav")  # the same utterance in both layouts
    with pytest.raises(CorpusError, match="(?s)1 utterance\\(s\\) occur more than once.*"
                                          "utterance DC_a01: .*ALL/DC_a01.wav, .*AudioData/DC/a01.wav"):
        C.prepare_savee(orig)


# ------------------------------------------------------------------------------------------------ EmoDB, EMOVO
def test_emodb(tmp_path):
    root = tmp_path / "emodb"
    for name in ["03a01Wa", "08a02Fc", "09b03Nb", "10a04Lb", "11b01Ea", "13a05Ab", "16b10Td"]:
        wav(root / "wav" / f"{name}.wav")
    (root / "silb").mkdir()
    (root / "silb" / "03a01Wa.silb").write_text("x")
    rows = C.prepare_emodb(root)
    rk = by_key(rows)
    assert len(rows) == 7 and set(labels_of(rows)) == {"angry", "happy", "neutral", "boredom", "disgust", "fear",
                                                        "sad"}
    assert (rk["wav/03a01Wa"]["speaker"], rk["wav/03a01Wa"]["gender"], rk["wav/03a01Wa"]["label"]) == ("03", "M",
                                                                                                       "angry")
    assert rk["wav/08a02Fc"]["gender"] == "F" and rk["wav/10a04Lb"]["label"] == "boredom"
    wav(root / "wav" / "04a01Wa.wav")  # no speaker 04 in EmoDB
    wav(root / "wav" / "03a01Xa.wav")
    with pytest.raises(CorpusError,
                       match="(?s)2 item.*03a01Xa.wav: unknown emotion letter X.*04a01Wa.wav: unknown speaker 04"):
        C.prepare_emodb(root)


def test_emovo(tmp_path):
    root = tmp_path / "EMOVO"
    for spk in ("f1", "m2"):
        for emo in ("neu", "dis", "gio", "pau", "rab", "sor", "tri"):
            wav(root / spk / f"{emo}-{spk}-b1.wav", sr=48000)
    rows = C.prepare_emovo(root)
    assert len(rows) == 14
    r = by_key(rows)["m2/gio-m2-b1"]
    assert (r["label"], r["speaker"], r["gender"]) == ("happy", "m2", "M")
    assert by_key(rows)["f1/pau-f1-b1"]["label"] == "fear" and by_key(rows)["f1/rab-f1-b1"]["label"] == "angry"
    wav(root / "f1" / "rab-m1-b1.wav")
    with pytest.raises(CorpusError, match="speaker m1 inside folder f1"):
        C.prepare_emovo(root)


# ------------------------------------------------------------------------------------------------ CaFE
def test_cafe_accents_and_neutre(tmp_path):
    root = tmp_path / "cafe"
    base = root / "CaFE_48k"
    nfd = unicodedata.normalize("NFD", "Colère")
    files = [
        (f"{nfd}/Faible/01-C-1-1.wav", "angry", "M"),
        ("D\u201ago\u2013t/Fort/02-D-2-3.wav", "disgust", "F"),   # accents mangled by a zip tool
        ("Neutre/03-N-1-1.wav", "neutral", "M"),
        ("Joie/Fort/04-J-2-6.wav", "happy", "F"),
        ("Peur/Faible/05-P-1-2.wav", "fear", "M"),
        ("Surprise/Fort/06-S-2-2.wav", "surprise", "F"),
        ("Tristesse/Faible/12-T-1-1.wav", "sad", "F"),
    ]
    for rel, _lab, _g in files:
        wav(base / rel, sr=48000)
    rows = C.prepare_cafe(root)
    assert len(rows) == 7
    rk = {r["key"].split("/")[-1]: r for r in rows}
    for rel, lab, g in files:
        r = rk[Path(rel).stem]
        assert (r["label"], r["gender"], r["speaker"]) == (lab, g, Path(rel).stem[:2])
    # keys are NFC whatever the file system stored
    assert "CaFE_48k/Colère/Faible/01-C-1-1" in by_key(rows)
    wav(base / "Joie/Faible/07-J-2-1.wav")  # intensity 2 in the Faible folder
    wav(base / "Joie/Fort/08-T-2-1.wav")    # sadness in the Joie folder
    with pytest.raises(CorpusError) as e:
        C.prepare_cafe(root)
    assert "2 item(s)" in str(e.value) and "belongs in Joie/Fort/" in str(e.value)
    assert "belongs in Tristesse/Fort/" in str(e.value)


# ------------------------------------------------------------------------------------------------ SUBESCO, ShEMO
def test_subesco(tmp_path):
    root = tmp_path / "SUBESCO"
    names = ["F_01_OISHI_S_1_ANGRY_1", "F_10_FAHMEE_S_6_FEAR_5", "M_03_RAHIM_S_10_SURPRISE_2",
             "M_03_RAHIM_S_2_NEUTRAL_1", "F_02_MITU_S_4_DISGUST_3", "M_07_KAMAL_S_5_HAPPY_4", "F_01_OISHI_S_3_SAD_1"]
    for n in names:
        wav(root / f"{n}.wav", sr=44100)
    rows = C.prepare_subesco(root)
    assert len(rows) == 7 and set(labels_of(rows)) == {"angry", "fear", "surprise", "neutral", "disgust", "happy",
                                                        "sad"}
    r = by_key(rows)["F_10_FAHMEE_S_6_FEAR_5"]
    assert (r["speaker"], r["gender"], r["label"]) == ("F_10", "F", "fear")
    assert {r["speaker"] for r in rows} == {"F_01", "F_10", "M_03", "F_02", "M_07"}
    wav(root / "F_01_OISHI_S_1_CONTEMPT_1.wav")
    with pytest.raises(CorpusError, match="F_01_OISHI_S_1_CONTEMPT_1.wav: name is not"):
        C.prepare_subesco(root)


def test_shemo(tmp_path):
    root = tmp_path / "shemo"
    for rel in ["male/M36S02.wav", "male/M01A01.wav", "female/F01H03.wav", "female/F02W03.wav",
                "female/F05N10.wav", "male/M10F01.wav"]:
        wav(root / rel, sr=44100)
    rows = C.prepare_shemo(root)
    rk = by_key(rows)
    assert len(rows) == 6 and labels_of(rows) == {x: 1 for x in ("sad", "angry", "happy", "surprise", "neutral",
                                                                 "fear")}
    assert (rk["male/M36S02"]["speaker"], rk["male/M36S02"]["gender"]) == ("M36", "M")
    assert (rk["female/F02W03"]["speaker"], rk["female/F02W03"]["label"]) == ("F02", "surprise")
    wav(root / "female" / "M03A01.wav")
    wav(root / "male" / "M03X01.wav")
    with pytest.raises(CorpusError, match="(?s)gender M inside folder female.*M03X01.wav: name is not"):
        C.prepare_shemo(root)


# ------------------------------------------------------------------------------------------------ URDU (synthetic)
def make_urdu(root: Path, n_per=6) -> Path:
    for folder, letter in (("Angry", "A"), ("Happy", "H"), ("Neutral", "N"), ("Sad", "S")):
        for i in range(n_per):
            spk = f"S{'MF'[i % 2]}{i % 5 + 1}"
            wav(root / folder / f"{spk}_F{i}_{letter}{i:03d}.wav", sr=44100)
    return root


def test_urdu_synthetic_and_error_listing(tmp_path):
    root = make_urdu(tmp_path / "urdu")
    rows = C.prepare_urdu(root)
    assert len(rows) == 24 and set(labels_of(rows).values()) == {6}
    r = by_key(rows)["Happy/SF2_F1_H001"]
    assert (r["speaker"], r["gender"], r["label"]) == ("SF2", "F", "happy")
    # 25 bad names: one error, 20 listed and a count
    for i in range(24):
        wav(root / "Sad" / f"recording_{i:02d}.wav")
    wav(root / "Sad" / "SM1_F1_A001.wav")  # angry letter in the Sad folder
    with pytest.raises(CorpusError) as e:
        C.prepare_urdu(root)
    msg = str(e.value)
    assert msg.startswith(f"urdu: 25 item(s) under {root} do not fit")
    assert "... and 5 more" in msg and msg.count("recording_") == 19 and "emotion letter A inside folder Sad" in msg
    assert "Expected layout: {Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav" in msg


def test_missing_empty_and_unreadable(tmp_path):
    with pytest.raises(CorpusError, match=f"urdu: root {tmp_path / 'nope'} does not exist. Expected layout: "):
        C.prepare_urdu(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("hi")
    with pytest.raises(CorpusError, match=f"ravdess: no usable audio found under {tmp_path / 'empty'}. Expected"):
        C.prepare_ravdess(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CorpusError, match="is not a directory"):
        C.prepare_savee(tmp_path / "file")
    root = make_urdu(tmp_path / "urdu", n_per=2)
    bad = root / "Angry" / "SM9_F1_A001.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    with pytest.raises(CorpusError, match=f"(?s)urdu: 1 audio file\\(s\\) cannot be read:.*{bad}"):
        C.prepare_urdu(root)


# ------------------------------------------------------------------------------------------------ AESDD
def test_aesdd(tmp_path):
    root = tmp_path / "aesdd"
    for rel in ["anger/a03 (3).wav", "disgust/d02 (2).wav", "fear/f01 (5).wav", "happiness/h11 (1).wav",
                "sadness/s05 (3).wav", "sadness/s06 (3)b.wav"]:
        wav(root / "Acted Emotional Speech Dynamic Database" / rel, sr=44100)
    rows = C.prepare_aesdd(root)
    assert len(rows) == 6 and set(labels_of(rows)) == {"angry", "disgust", "fear", "happy", "sad"}
    r = by_key(rows)["Acted Emotional Speech Dynamic Database/anger/a03 (3)"]
    assert (r["label"], r["speaker"], r["gender"]) == ("angry", "3", "")
    roundtrip(rows, tmp_path)
    wav(root / "Acted Emotional Speech Dynamic Database/sadness/a01 (1).wav")
    with pytest.raises(CorpusError, match="emotion letter a inside folder sadness"):
        C.prepare_aesdd(root)


# ------------------------------------------------------------------------------------------------ RESD
def test_resd(tmp_path):
    root = tmp_path / "resd"
    train = ["happiness_enthusiasm_32/32_happiness_enthusiasm_h_120.wav",
             "happiness_enthusiasm_32/32_happiness_enthusiasm_e_060.wav",
             "03_disgust_neutral/03_disgust_neutral n_050.wav",
             "03_disgust_neutral/03_disgust_neutral d_052.wav",
             "anger_fear_34/34_anger_fear_a_060.wav", "anger_fear_34/34_anger_fear_f_110.wav",
             "sadness_anger_39/39_sadness_anger_s_040.wav", "sadness_anger_39/39_sadness_anger_a_050.wav"]
    emo = {"h": "happiness", "e": "enthusiasm", "n": "neutral", "d": "disgust", "a": "anger", "f": "fear",
           "s": "sadness"}
    test = ["neutral_fear_27/27_neutral_fear_n_030.wav", "neutral_fear_27/27_neutral_fear_f_020.wav"]
    for split, files in (("train", train), ("test", test)):
        lines = ["name,path,emotion,speech"]
        for rel in files:
            wav(root / split / rel)
            letter = Path(rel).stem.replace(" ", "_").split("_")[-2]
            lines.append(f"{Path(rel).stem},{rel},{emo[letter]},<audio>")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    rows = C.prepare_resd(root)
    assert len(rows) == 10 and Counter(r["split"] for r in rows) == {"train": 8, "test": 2}
    r = by_key(rows)["train/03_disgust_neutral/03_disgust_neutral n_050"]
    assert (r["label"], r["speaker"]) == ("neutral", "03_n")
    assert by_key(rows)["train/happiness_enthusiasm_32/32_happiness_enthusiasm_h_120"]["label"] == "happy"
    assert "enthusiasm" in labels_of(rows)
    folds = make_folds(roundtrip(rows, tmp_path), "original", corpus="resd")
    f = folds["folds"][0]
    assert len(f["test"]) == 2 and len(f["valid"]) >= 1 and len(f["train"]) + len(f["valid"]) == 8
    (root / "test.csv").write_text("name,path,emotion\nx,neutral_fear_27/missing.wav,neutral\n"
                                   "y,neutral_fear_27/27_neutral_fear_n_030.wav,boredom\n")
    with pytest.raises(CorpusError, match="(?s)missing.wav.*not found.*unknown emotion 'boredom'"):
        C.prepare_resd(root)


# ------------------------------------------------------------------------------------------------ M3ED
def test_m3ed(tmp_path):
    root = tmp_path / "m3ed"
    movies = {"shaonianpai": "train", "anjia": "val", "doulou": "test"}
    ann = {}
    for movie in movies:
        ann[movie] = {}
        for clip in (1, 2):
            cid = f"{movie}_{clip}"
            dialog = {}
            for u, (spk, emo) in enumerate([("A", "Happy"), ("B", "Anger"), ("A", "Neutral")], start=1):
                uid = f"{cid}_{u}"
                dialog[uid] = {"StartTime": "0", "EndTime": "1", "Text": "你好", "Speaker": spk,
                               "EmoAnnotation": {"EmoAnnotator1": emo, "final_mul_emo": emo, "final_main_emo": emo}}
                wav(root / "modality_speech" / f"{spk}_{uid}.wav")
            ann[movie][cid] = {"Dialog": dialog,
                               "SpeakerInfo": {"A": {"Name": "王胜男", "Gender": "female"}, "B": {"Name": "林大为"}}}
    (root / "annotation.json").write_text(json.dumps(ann, ensure_ascii=False), encoding="utf-8")
    (root / "splitInfo").mkdir()
    for name, split in (("train", "train"), ("val", "val"), ("test", "test")):
        (root / "splitInfo" / f"movie_list_{name}.txt").write_text(
            "\n".join(m for m, s in movies.items() if s == split) + "\n")
    rows = C.prepare_m3ed(root)
    assert len(rows) == 18 and Counter(r["split"] for r in rows) == {"train": 6, "valid": 6, "test": 6}
    r = by_key(rows)["modality_speech/A_anjia_2_1"]
    assert (r["label"], r["speaker"], r["gender"], r["split"]) == ("happy", "anjia_王胜男", "F", "valid")
    assert by_key(rows)["modality_speech/B_doulou_1_2"]["label"] == "angry"
    folds = make_folds(roundtrip(rows, tmp_path), "original", corpus="m3ed")
    assert folds["speaker_independent"] is True  # movie-level split
    ann["shaonianpai"]["shaonianpai_1"]["Dialog"]["shaonianpai_1_1"]["EmoAnnotation"]["final_main_emo"] = "Bored"
    ann["extra_movie"] = {}
    (root / "annotation.json").write_text(json.dumps(ann, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CorpusError, match="(?s)extra_movie.*no splitInfo.*unknown final_main_emo 'bored'"):
        C.prepare_m3ed(root)


# ------------------------------------------------------------------------------------------------ MOSI / MOSEI
def make_mmsa(root: Path, rows, with_wav=True) -> Path:
    lines = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
    for vid, clip, label, mode in rows:
        lines.append(f'{vid},{clip},"some, text",{label},{label},{label},{label},x,{mode}')
        if with_wav:
            wav(root / "wav" / vid / f"{clip}.wav")
        else:
            (root / "Raw" / vid).mkdir(parents=True, exist_ok=True)
            (root / "Raw" / vid / f"{clip}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    return root


_MOSI_ROWS = [("03bSnISJMiM", 1, 2.4, "train"), ("03bSnISJMiM", 2, -1.2, "train"), ("03bSnISJMiM", 3, 0.0, "train"),
              ("0h-zjBukYpk", 1, -0.6, "valid"), ("0h-zjBukYpk", 2, 0.8, "valid"),
              ("1DmNV9C1hbY", 1, 3.0, "test"), ("1DmNV9C1hbY", 2, -3.0, "test"), ("1DmNV9C1hbY", 3, 0.0, "test")]


def test_mosi_mosei(tmp_path, caplog):
    root = make_mmsa(tmp_path / "MOSI", _MOSI_ROWS)
    with caplog.at_level(logging.INFO, logger="emotion2vec.downstream"):
        rows = C.prepare_mosi(root)
    assert "left out 2 neutral" in caplog.text
    assert len(rows) == 6 and labels_of(rows) == {"positive": 3, "negative": 3}
    r = by_key(rows)["03bSnISJMiM/2"]
    assert (r["label"], r["speaker"], r["split"]) == ("negative", "03bSnISJMiM", "train")
    folds = make_folds(roundtrip(rows, tmp_path), "original", corpus="mosi")
    assert [len(folds["folds"][0][p]) for p in ("train", "valid", "test")] == [2, 2, 2]
    assert folds["speaker_independent"] is True
    rows = C.prepare_mosei(make_mmsa(tmp_path / "MOSEI", _MOSI_ROWS[:6]))
    assert len(rows) == 5
    with pytest.raises(CorpusError, match="(?s)only 6 Raw/\\*.mp4.*ffmpeg"):
        C.prepare_mosi(make_mmsa(tmp_path / "MOSI_raw", _MOSI_ROWS, with_wav=False))


# ------------------------------------------------------------------------------------------------ folder
def test_folder(tmp_path):
    root = tmp_path / "mine"
    for folder, spk in (("Wut", "spk1"), ("Freude", "spk2"), ("neutral", "spk3"), ("anger", "spk4")):
        for i in range(3):
            wav(root / folder / "sub" / f"{spk}_{i:03d}_{'mf'[i % 2]}.flac" if i == 0 else
                root / folder / f"{spk}_{i:03d}_{'mf'[i % 2]}.wav")
    rows = prepare_corpus("folder", root, label_map="wut=angry,freude=happy",
                          speaker_regex=r"^(?P<speaker>spk\d+)_\d+_(?P<gender>[mf])")
    assert len(rows) == 12 and labels_of(rows) == {"angry": 6, "happy": 3, "neutral": 3}
    r = by_key(rows)["Wut/spk1_001_f"]
    assert (r["label"], r["speaker"], r["gender"]) == ("angry", "spk1", "F")
    assert "Wut/sub/spk1_000_m" in by_key(rows)
    assert C.default_protocol("folder", rows) == "speaker-kfold"
    plain = prepare_corpus("folder", root)
    assert {r["speaker"] for r in plain} == {""} and C.default_protocol("folder", plain) == "random-kfold"
    assert set(labels_of(plain)) == {"wut", "freude", "neutral", "angry"}
    dropped = prepare_corpus("folder", root, label_map="wut=")
    assert "wut" not in labels_of(dropped) and len(dropped) == 9
    with pytest.raises(CorpusError, match="does not match 'spk1_000_m'"):
        prepare_corpus("folder", root, speaker_regex=r"^speaker(\d+)")
    wav(root / "stray.wav")
    with pytest.raises(CorpusError, match="stray.wav: file directly under the root"):
        prepare_corpus("folder", root)


# ------------------------------------------------------------------------------------------------ EmoBox import
def test_emobox_import(tmp_path):
    corpora_root = tmp_path / "corpora"
    data = tmp_path / "EmoBox" / "data" / "ravdess"
    (data / "fold_1").mkdir(parents=True)
    (data / "fold_2").mkdir(parents=True)
    entries, stm = [], []
    for a in (1, 2, 3, 4):
        for e, emo in (("01", "neutral"), ("05", "angry")):
            rel = f"ravdess/Actor_{a:02d}/03-01-{e}-01-01-01-{a:02d}.wav"
            wav(corpora_root / rel)
            key = f"ravdess-Actor_{a:02d}-03-01-{e}-01-01-01-{a:02d}"
            entries.append({"key": key, "dataset": "ravdess", "wav": f"downloads/{rel}", "type": "raw",
                            "sample_rate": 16000, "num_frame": 1600, "task": "category", "length": 0.1,
                            "emo": emo, "channel": 1})
            stm.append(f"{key} 1 Actor_{a:02d} 0 0.1 <id={key},lang=en,spk=Actor_{a:02d},emotion={emo}> {emo}")
    (data / "ravdess.jsonl").write_text("\n".join(json.dumps(x) for x in entries) + "\n")
    (data / "data.seg.wrd.stm").write_text("\n".join(stm) + "\n")
    (data / "label_map.json").write_text(json.dumps({"neutral": "Neutral", "angry": "Anger"}))
    for n, test_actors in ((1, (1, 2)), (2, (3, 4))):
        for split, actors in (("train", {1, 2, 3, 4} - set(test_actors)), ("test", set(test_actors))):
            lines = [json.dumps({"key": x["key"]}) for x in entries if int(x["key"][14:16]) in actors]
            (data / f"fold_{n}" / f"ravdess_{split}_fold_{n}.jsonl").write_text("\n".join(lines) + "\n")
    rows = prepare_corpus("emobox", corpora_root, emobox_data=str(data))
    assert len(rows) == 8 and labels_of(rows) == {"neutral": 4, "angry": 4}
    r = by_key(rows)["ravdess-Actor_03-03-01-05-01-01-01-03"]
    assert (r["speaker"], r["fold1"], r["fold2"]) == ("Actor_03", "train", "test")
    folds = make_folds(roundtrip(rows, tmp_path), "emobox", corpus="ravdess")
    assert [f["name"] for f in folds["folds"]] == ["fold1", "fold2"]
    assert all(len(f["test"]) == 4 and len(f["valid"]) >= 1 for f in folds["folds"])
    (data / "fold_2" / "ravdess_test_fold_2.jsonl").write_text(json.dumps({"key": "ravdess-ghost"}) + "\n")
    with pytest.raises(CorpusError, match="key 'ravdess-ghost' is not in ravdess.jsonl"):
        prepare_corpus("emobox", corpora_root, emobox_data=str(data))
    with pytest.raises(CorpusError, match="--emobox-data DIR is required"):
        prepare_corpus("emobox", corpora_root)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_covers_every_corpus():
    expected = {"iemocap", "meld", "ravdess", "ravdess-song", "savee", "emodb", "emovo", "cafe", "subesco", "shemo",
                "urdu", "aesdd", "resd", "m3ed", "mosi", "mosei", "msp-podcast", "crema-d", "folder", "emobox"}
    assert set(CORPORA) == expected and all(callable(s.prepare) for s in CORPORA.values())
    assert C.default_protocol("iemocap") == "loso-session"
    assert {C.default_protocol(c) for c in ("meld", "resd", "m3ed", "mosi", "mosei", "msp-podcast")} == {"original"}
    assert C.default_protocol("crema-d") == "speaker-kfold"
    assert {C.default_protocol(c) for c in ("ravdess", "ravdess-song", "savee", "urdu", "emodb", "cafe")} == {
        "random-kfold"}
    assert C.CORPORA["ravdess-song"].fold_options == {"folds": 5}
    with pytest.raises(CorpusError, match="do not apply to this corpus"):
        prepare_corpus("urdu", "/nowhere", all_labels=True)
    with pytest.raises(CorpusError, match="unknown corpus"):
        prepare_corpus("nonesuch", "/nowhere")


# ------------------------------------------------------------------------------------------------ data.tsv schema
def test_data_tsv_roundtrip_and_validation(tmp_path):
    rows = [{"key": "a/x", "path": "/abs/x.wav", "label": "happy", "speaker": "s1", "gender": "F", "duration": 1.23456,
             "split": "train", "session": "Ses01"},
            {"key": "a/y", "path": "rel/y.wav", "label": "sad", "speaker": "", "gender": "", "duration": 2,
             "channel": "2", "split": "test", "session": "Ses02"}]
    path = tmp_path / "m" / "data.tsv"
    write_data_tsv(path, rows)
    lines = path.read_text().splitlines()
    assert lines[0] == "key\tpath\tlabel\tspeaker\tgender\tduration\tchannel\tsplit\tsession"
    assert lines[1] == "a/x\t/abs/x.wav\thappy\ts1\tF\t1.235\t\ttrain\tSes01"
    back = read_data_tsv(path.parent)
    assert back[0]["duration"] == 1.235 and isinstance(back[1]["channel"], str) and back[1]["channel"] == "2"
    assert back[1]["path"] == str(tmp_path / "m" / "rel" / "y.wav")

    def bad(text, message):
        p = tmp_path / "bad.tsv"
        p.write_text(text)
        with pytest.raises(ManifestError, match=message):
            read_data_tsv(p)

    head = "key\tpath\tlabel\tspeaker\tgender\tduration\n"
    bad("key\tpath\tlabel\n", "bad.tsv:1: header must start with key<TAB>path")
    bad(head + "a\t/p\thappy\ts\tM\t1.0\n" + "b\t/p\thappy\ts\tM\n", "bad.tsv:3: expected 6 tab-separated columns")
    bad(head + "a\t/p\thappy\ts\tX\t1.0\n", "bad.tsv:2: gender 'X' must be M, F or empty")
    bad(head + "a\t/p\thappy\ts\tM\tlong\n", "bad.tsv:2: duration 'long' is not a number")
    bad(head + "a\t/p\thappy\ts\tM\t1\n" + "a\t/q\tsad\ts\tM\t1\n", "bad.tsv:3: duplicate key 'a' \\(first on line 2")
    bad(head + "../a\t/p\thappy\ts\tM\t1\n", "bad.tsv:2: key '../a' contains an empty or '..'")
    bad(head.rstrip("\n") + "\tsplit\n" + "a\t/p\thappy\ts\tM\t1\tdev\n", "bad.tsv:2: split 'dev' must be one of")
    bad(head + "a\t/p\t\ts\tM\t1\n", "bad.tsv:2: empty label")
    with pytest.raises(ManifestError, match="not found"):
        read_data_tsv(tmp_path / "none.tsv")
    with pytest.raises(ManifestError, match="duplicate key"):
        write_data_tsv(tmp_path / "d.tsv", rows + rows[:1])
    with pytest.raises(ManifestError, match="contains a tab"):
        write_data_tsv(tmp_path / "d.tsv", [{**rows[0], "speaker": "a\tb"}])
    assert not (tmp_path / "d.tsv").exists()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_outputs_rerun_and_protocols(tmp_path, capsys):
    root = make_ravdess(tmp_path / "song", vocal="02", actors=(1, 2, 3, 5, 6), emotions=range(1, 7))
    out = tmp_path / "out"
    assert main(["ravdess-song", "--root", str(root), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "ravdess-song: 110 utterances" in summary and "random-kfold, 5 fold(s)" in summary
    folds = json.loads((out / "folds.json").read_text())
    assert folds["protocol"] == "random-kfold" and len(folds["folds"]) == 5 and folds["seed"] == 0
    assert sorted(p.name for p in out.iterdir()) == ["audio_hashes.tsv", "data.tsv", "folds.json",
                                                     "folds_random-kfold.json"]
    # the leakage audit is printed and stored with the folds
    assert "leakage audit (random-kfold, speaker-dependent; audio compared" in summary
    assert folds["audit"]["audio_compared"] and len(folds["audit"]["folds"]) == 5
    assert folds["audit"]["folds"][0]["pairs"]["train-test"]["identical_audio"]["utterances"] == 0

    # several protocols: each is folds_<p>.json; folds.json keeps the earlier random-kfold folds, unless
    # --overwrite-folds, then it is the first protocol's; seed recorded
    before = (out / "folds.json").read_bytes()
    assert main(["ravdess-song", "--root", str(root), "--out", str(out), "--protocol", "loso-speaker",
                 "--quiet"]) == 0
    assert (out / "folds.json").read_bytes() == before and (out / "folds_loso-speaker.json").is_file()
    assert main(["ravdess-song", "--root", str(root), "--out", str(out), "--protocol", "loso-speaker,speaker-kfold",
                 "--protocol", "random-kfold", "--seed", "3", "--quiet", "--overwrite-folds"]) == 0
    assert capsys.readouterr().out == ""
    main_folds = json.loads((out / "folds.json").read_text())
    assert main_folds["protocol"] == "loso-speaker" and main_folds["seed"] == 3
    assert main_folds == json.loads((out / "folds_loso-speaker.json").read_text())
    assert len(json.loads((out / "folds_random-kfold.json").read_text())["folds"]) == 5
    assert load_folds(out, "speaker-kfold") == json.loads((out / "folds_speaker-kfold.json").read_text())

    # re-run on fewer files: data.tsv rewritten, folds files that no longer match are removed
    excluded = [r["key"] for r in read_data_tsv(out / "data.tsv")][:4]
    assert main(["ravdess-song", "--root", str(root), "--out", str(out), "--exclude", ",".join(excluded),
                 "--folds", "3", "--quiet"]) == 0
    assert len(read_data_tsv(out / "data.tsv")) == 106
    assert sorted(p.name for p in out.iterdir()) == ["audio_hashes.tsv", "data.tsv", "folds.json",
                                                     "folds_random-kfold.json"]
    assert len(json.loads((out / "folds.json").read_text())["folds"]) == 3
    assert not list(out.glob(".*.tmp"))


def test_another_protocol_keeps_the_default_folds_and_missing_classes_are_a_warning(urdu_dir, tmp_path, caplog,
                                                                                     capsys):
    """`prepare urdu --protocol speaker-holdout` into a prepared folder: folds.json keeps the default folds (a note
    says where the new ones are); URDU's speaker-holdout dev set holds one class, a WARNING in prepare's output and
    in the folds' audit."""
    import logging

    out = tmp_path / "urdu"
    assert main(["urdu", "--root", str(urdu_dir), "--out", str(out), "--no-audio-audit", "--quiet"]) == 0
    default = (out / "folds.json").read_bytes()
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="emotion2vec.downstream"):
        assert main(["urdu", "--root", str(urdu_dir), "--out", str(out), "--protocol", "speaker-holdout",
                     "--no-audio-audit"]) == 0
    assert (out / "folds.json").read_bytes() == default
    assert json.loads(default)["protocol"] == "random-kfold"
    assert (f"{out / 'folds.json'} keeps its random-kfold folds; the speaker-holdout folds are in "
            f"folds_speaker-holdout.json (give --protocol speaker-holdout to probe" in caplog.text)
    warning = ("holdout: valid holds 1 of the 4 training labels; none of happy, neutral, sad: the epoch and the head "
               "are chosen on the classes it has")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warning in warned[0].getMessage()
    assert f"WARNING: {warning}" in capsys.readouterr().out  # in the printed audit too
    held = json.loads((out / "folds_speaker-holdout.json").read_text())
    assert held["audit"]["warnings"] == [warning]
    valid_labels = {r["key"]: r["label"] for r in read_data_tsv(out / "data.tsv")}
    assert {valid_labels[k] for k in held["folds"][0]["valid"]} == {"angry"}
    # --overwrite-folds makes the new protocol folds.json
    assert main(["urdu", "--root", str(urdu_dir), "--out", str(out), "--protocol", "speaker-holdout",
                 "--no-audio-audit", "--quiet", "--overwrite-folds"]) == 0
    assert json.loads((out / "folds.json").read_text())["protocol"] == "speaker-holdout"


def test_cli_errors_and_help(tmp_path, capsys):
    assert main(["urdu", "--root", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "emotion2vec prepare: error: urdu: root" in err and "does not exist" in err
    assert not (tmp_path / "o").exists()
    root = make_urdu(tmp_path / "urdu")
    assert main(["urdu", "--root", str(root), "--all-labels"]) == 2
    assert "--all-labels do not apply" in capsys.readouterr().err
    assert main(["urdu", "--root", str(root), "--protocol", "loso-session", "--out", str(tmp_path / "o")]) == 2
    assert "needs a 'session' column" in capsys.readouterr().err
    assert main(["urdu", "--root", str(root), "--protocol", "original", "--folds", "4"]) == 2
    assert "--folds does not apply" in capsys.readouterr().err

    from emotion2vec.cli import build_parser

    parser = build_parser("prepare")
    text = parser._subparsers._group_actions[0].choices["prepare"].format_help()
    for name in list(CORPORA) + ["loso-session", "loso-speaker", "random-kfold", "speaker-kfold", "original",
                                   "Actor_XX/03-01-EE-II-SS-RR-AA.wav", "--audio-dir", "--speaker-regex"]:
        assert name in text
    args = parser.parse_args(["prepare", "iemocap", "--root", "/x", "--all-labels", "--protocol", "loso-speaker"])
    assert args.corpus == "iemocap" and args.all_labels and args.protocol == ["loso-speaker"]


# ------------------------------------------------------------------------------------------------ targets beyond one label
def test_iemocap_votes_and_dimensions(tmp_path):
    root = make_iemocap(tmp_path / "iemocap", sessions=(1,))
    lf = root / "IEMOCAP_full_release/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    text = lf.read_text()
    # the angry utterance: three annotators and the actor, one of them naming two categories
    old = "Ses01F_impro01_M000\tang\t[2.5000, 3.0000, 2.5000]\nC-E1:\tNeutral;\t()\n"
    assert old in text
    text = text.replace(old, "Ses01F_impro01_M000\tang\t[1.5000, 4.5000, 5.0000]\nC-E1:\tAnger;\t()\n"
                             "C-E2:\tAnger; Frustration;\t()\nC-E4:\tExcited;\t()\nC-M1:\tOther:annoyed;\t(note)\n")
    lf.write_text(text)
    rows = by_key(C.prepare_iemocap(root))
    r = rows["Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000"]
    assert r["votes"] == "angry:2,frustrated:1,happy:1,other:1"  # excited counts as happy in the 4-class set
    assert (r["valence"], r["arousal"], r["dominance"]) == ("0.1250", "0.8750", "1.0000")  # (x - 1) / 4
    assert rows["Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000"]["votes"] == "neutral:1"
    back = by_key(roundtrip(list(rows.values()), tmp_path))
    assert back["Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000"]["arousal"] == "0.8750"
    full = by_key(C.prepare_iemocap(root, all_labels=True))
    assert full["Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000"]["votes"] == \
        "angry:2,excited:1,frustrated:1,other:1"
    lf.write_text(text.replace("C-E4:\tExcited;", "C-E4:\tBoredom;"))
    with pytest.raises(CorpusError, match="unknown category 'boredom'"):
        C.prepare_iemocap(root)


def make_msp(root: Path, detailed: str | None = "major") -> Path:
    rows = [("MSP-PODCAST_0001_0001.wav", "A", "6.0", "2.0", "5.5", "12", "Male", "Train"),
            ("MSP-PODCAST_0001_0002.wav", "N", "4.0", "4.0", "4.0", "12", "Male", "Train"),
            ("MSP-PODCAST_0002_0001.wav", "H", "5.0", "6.5", "4.0", "Unknown", "Unknown", "Development"),
            ("MSP-PODCAST_0003_0001.wav", "S", "2.0", "2.0", "3.0", "31", "Female", "Test1"),
            ("MSP-PODCAST_0004_0001.wav", "C", "4.5", "3.0", "5.0", "40", "Female", "Test2"),
            ("MSP-PODCAST_0005_0001.wav", "X", "4.0", "4.0", "4.0", "41", "Male", "Train"),
            ("MSP-PODCAST_0006_0001.wav", "O", "4.0", "4.0", "4.0", "42", "Female", "Test1")]
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"] + [",".join(r) for r in rows]
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n")
    for r in rows:
        wav(root / "Audios" / r[0])
    if detailed == "major":
        votes = [("MSP-PODCAST_0001_0001.wav", "WORKER01", "Angry"), ("MSP-PODCAST_0001_0001.wav", "WORKER02", "A"),
                 ("MSP-PODCAST_0001_0001.wav", "WORKER03", "Disgust"),
                 ("MSP-PODCAST_0003_0001.wav", "WORKER01", "Sad"),
                 ("MSP-PODCAST_0003_0001.wav", "WORKER04", "Other-Tired")]
        text = "FileName,WorkerID,EmoClass_Major,EmoAct,EmoVal,EmoDom\n" + "".join(
            f"{f},{w},{e},4,4,4\n" for f, w, e in votes)
        (root / "Labels" / "labels_detailed.csv").write_text(text)
    elif detailed == "detail":
        text = ("FileName,EmoDetail\nMSP-PODCAST_0001_0001.wav,\"WORKER01; Angry; Frustrated,Annoyed; A:6.0; "
                "V:2.0; D:5.0;\"\nMSP-PODCAST_0001_0001.wav,\"WORKER02; Neutral; ; A:4.0; V:4.0; D:4.0;\"\n")
        (root / "Labels" / "labels_detailed.csv").write_text(text)
    return root


def test_msp_podcast(tmp_path, caplog):
    root = make_msp(tmp_path / "MSP")
    with caplog.at_level(logging.INFO, logger="emotion2vec.downstream"):
        rows = by_key(C.prepare_msp_podcast(tmp_path))  # found one level down
    assert "Test2 (1)" in caplog.text and "other (1), unknown (1)" in caplog.text
    assert sorted(rows) == ["MSP-PODCAST_0001_0001", "MSP-PODCAST_0001_0002", "MSP-PODCAST_0002_0001",
                            "MSP-PODCAST_0003_0001"]
    r = rows["MSP-PODCAST_0001_0001"]
    assert (r["label"], r["speaker"], r["gender"], r["split"]) == ("angry", "12", "M", "train")
    assert (r["arousal"], r["valence"], r["dominance"]) == ("0.8333", "0.1667", "0.7500")  # (x - 1) / 6
    assert r["votes"] == "angry:2,disgust:1"
    assert rows["MSP-PODCAST_0003_0001"]["votes"] == "other:1,sad:1"
    assert rows["MSP-PODCAST_0001_0002"]["votes"] == ""
    h = rows["MSP-PODCAST_0002_0001"]
    assert (h["speaker"], h["gender"], h["split"], h["label"]) == ("", "", "valid", "happy")
    folds = make_folds(roundtrip(list(rows.values()), tmp_path), "original", corpus="msp-podcast")
    assert [len(folds["folds"][0][s]) for s in ("train", "valid", "test")] == [2, 1, 1]

    rows = by_key(C.prepare_msp_podcast(root, all_labels=True, test_set="Test2"))
    assert rows["MSP-PODCAST_0004_0001"]["split"] == "test" and rows["MSP-PODCAST_0004_0001"]["label"] == "contempt"
    assert rows["MSP-PODCAST_0005_0001"]["label"] == "unknown" and "MSP-PODCAST_0006_0001" not in rows
    with pytest.raises(CorpusError, match="--test-set Test9 is not a Split_Set"):
        C.prepare_msp_podcast(root, test_set="Test9")

    other = make_msp(tmp_path / "MSP2", detailed="detail")
    assert by_key(C.prepare_msp_podcast(other))["MSP-PODCAST_0001_0001"]["votes"] == "angry:1,neutral:1"
    (other / "Audios" / "MSP-PODCAST_0003_0001.wav").unlink()
    with pytest.raises(CorpusError, match="audio missing for row 5"):
        C.prepare_msp_podcast(other)


def make_crema(root: Path, votes: str | None = "tabulated") -> Path:
    clips = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_DFA_NEU_XX", "1002_TIE_SAD_LO", "1003_IWW_FEA_MD",
             "1003_DFA_DIS_XX"]
    for c in clips:
        wav(root / "AudioWAV" / f"{c}.wav")
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                                                "1002,21,Female,Caucasian,Not Hispanic\n")
    (root / "processedResults").mkdir()
    if votes == "tabulated":
        lines = [",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote"]
        for i, c in enumerate(clips, start=1):
            lines.append(f"{100000 + i},{'6' if 'ANG' in c else '0'},0,1,{'3' if 'HAP' in c else '0'},2,0,{c},9,0.6,A")
            lines.append(f"{200000 + i},0,0,0,0,9,0,{c},9,1.0,N")  # face-only ratings: not the audio's
        (root / "processedResults" / "tabulatedVotes.csv").write_text("\n".join(lines) + "\n")
    elif votes == "summary":
        lines = [",FileName,VoiceVote,VoiceLevel,FaceVote,FaceLevel,MultiModalVote,MultiModalLevel"]
        lines += [f"{i},{c},{'A:N' if 'ANG' in c else 'N'},50,N,50,N,50" for i, c in enumerate(clips)]
        (root / "processedResults" / "summaryTable.csv").write_text("\n".join(lines) + "\n")
    return root


def test_crema_d(tmp_path):
    rows = by_key(C.prepare_crema_d(make_crema(tmp_path / "crema")))
    assert len(rows) == 6 and labels_of(rows.values()) == {x: 1 for x in ("angry", "happy", "neutral", "sad", "fear",
                                                                           "disgust")}
    r = rows["AudioWAV/1001_DFA_ANG_XX"]
    assert (r["speaker"], r["gender"], r["text"]) == ("1001", "M", "Don't forget a jacket")
    assert r["votes"] == "angry:6,fear:1,neutral:2"  # the audio-only row, not the face-only one
    assert rows["AudioWAV/1003_IWW_FEA_MD"]["gender"] == "" and rows["AudioWAV/1002_TIE_SAD_LO"]["gender"] == "F"
    back = roundtrip(list(rows.values()), tmp_path)
    assert back[0]["text"] == "Don't forget a jacket"
    summary = by_key(C.prepare_crema_d(make_crema(tmp_path / "crema2", votes="summary")))
    assert summary["AudioWAV/1001_DFA_ANG_XX"]["votes"] == "angry:1,neutral:1"
    assert by_key(C.prepare_crema_d(make_crema(tmp_path / "crema3", votes=None)))["AudioWAV/1001_DFA_ANG_XX"]["votes"] == ""
    wav(tmp_path / "crema3" / "AudioWAV" / "1004_XYZ_ANG_XX.wav")
    with pytest.raises(CorpusError, match="unknown sentence code XYZ"):
        C.prepare_crema_d(tmp_path / "crema3")


def test_mosi_keeps_the_sentiment_score_and_text(tmp_path):
    rows = by_key(C.prepare_mosi(make_mmsa(tmp_path / "MOSI", _MOSI_ROWS)))
    assert rows["03bSnISJMiM/1"]["sentiment"] == "0.9000" and rows["1DmNV9C1hbY/2"]["sentiment"] == "0.0000"
    assert rows["03bSnISJMiM/1"]["text"] == "some, text"
    assert roundtrip(list(rows.values()), tmp_path)[0]["sentiment"] == "0.9000"


def test_emobox_urdu_fold_audit(urdu_dir, tmp_path, capsys):
    """EmoBox's published URDU fold, imported: its test speakers also speak in its training data, which the audit
    reports loudly (and stores in folds.json)."""
    emobox = require(SHARED / "data" / "emobox" / "urdu", "EmoBox URDU folds")
    out = tmp_path / "urdu-emobox"
    assert main(["emobox", "--root", str(urdu_dir), "--emobox-data", str(emobox), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: fold1: 18 of the 19 test speakers also speak in train+valid (98 of 100 test utterances, " \
           "98.00 %" in printed and "NOT speaker-independent" in printed
    audit = json.loads((out / "folds.json").read_text())["audit"]
    assert audit["kind"] == "imported" and audit["audio_duplicate_groups"] == 0 and not audit["errors"]
    fold = audit["folds"][0]
    assert fold["sizes"] == {"train": 240, "valid": 60, "test": 100}
    assert fold["labels"]["test"] == {"angry": 25, "happy": 25, "neutral": 25, "sad": 25}
    assert fold["pairs"]["train+valid-test"]["speakers"]["shared"] == 18
