"""MELD (Friends): the official train/dev/test CSVs, the clips as .mp4 (PyAV) or converted audio."""

from __future__ import annotations

import sys

from .base import (log, CorpusError, _layout, corpus_spec, _Problems, _check_root, _find, _entry, _finish,
                   _mp4_error, _one_line, _read_csv)


_MELD_LABELS = {"neutral": "neutral", "joy": "happy", "surprise": "surprise", "anger": "angry", "sadness": "sad",
                "disgust": "disgust", "fear": "fear"}
# (csv prefix, split column value, clip folder names in order of preference)
_MELD_SPLITS = (("train", "train", ("train_splits", "train")),
                ("dev", "valid", ("dev_splits_complete", "dev_splits", "dev")),
                ("test", "test", ("output_repeated_splits_test", "test_splits", "test")))
_MELD_BROKEN = {("train", "dia125_utt3"), ("dev", "dia110_utt7")}


def _media_readable() -> bool:
    """Whether the release's .mp4 clips can be read as they are: the package's ``_pyav_available``, looked up when
    called, so that replacing it there (``emotion2vec.downstream.corpora._pyav_available``, e.g. to act out a
    machine without PyAV) reaches this preparer."""
    return sys.modules[__package__]._pyav_available()


@corpus_spec('meld', "original", "MELD (Friends), 7 classes, official train/dev/test",
             layout=('MELD.Raw/{train,dev,test}_sent_emo.csv (Dialogue_ID, Utterance_ID, Speaker, Emotion) and the '
                     'clips train_splits/, dev_splits_complete/, output_repeated_splits_test/ as diaX_uttY.mp4 as '
                     'distributed (read with PyAV: pip install emotion2vec[media]) or .wav/.flac (anywhere up to 3 '
                     'levels below --root, or below --audio-dir for a converted mirror tree)'),
             options=("audio_dir",))
def prepare_meld(root, audio_dir=None) -> list[dict]:
    """MELD: rows from {train,dev,test}_sent_emo.csv, 7 labels (joy -> happy, anger -> angry, sadness -> sad),
    speaker = the CSV's Speaker, split train/valid/test, key ``<train|dev|test>/diaX_uttY``. The two known broken
    clips (train dia125_utt3, dev dia110_utt7) are skipped with a note. Audio: .wav/.flac next to the release's
    .mp4 or in a mirror tree given as ``audio_dir``, else the release's .mp4 itself when PyAV is installed (the
    ``media`` extra; extraction then decodes it directly); clips with more than 2 channels get ``channel=2``."""
    corpus = "meld"
    root = _check_root(corpus, root)
    audio_base = _check_root(corpus, audio_dir) if audio_dir else root
    problems = _Problems(corpus, root)
    entries, mp4_only, notes = [], [], []
    csv_found = False
    for prefix, split, folder_names in _MELD_SPLITS:
        csvs = _find(root, [f"{prefix}_sent_emo.csv"], want_dir=False, depth=3)
        if not csvs:
            problems.add(root / f"{prefix}_sent_emo.csv", "label file not found (searched 3 levels deep)")
            continue
        csv_found = True
        rows = _read_csv(csvs[0], ("Dialogue_ID", "Utterance_ID", "Speaker", "Emotion"), corpus)
        folders = []
        for name in folder_names:
            folders = _find(audio_base, [name], want_dir=True, depth=3)
            if folders:
                break
        mp4_folders = folders if audio_base == root else []
        if audio_base != root:
            for name in folder_names:
                mp4_folders = _find(root, [name], want_dir=True, depth=3)
                if mp4_folders:
                    break
        if not folders:
            problems.add(audio_base / folder_names[0], f"clip folder for the {prefix} split not found "
                                                       f"(looked for {', '.join(folder_names)})")
            continue
        folder = folders[0]
        for i, row in enumerate(rows, start=2):
            d, u = row["Dialogue_ID"], row["Utterance_ID"]
            if not (d.isdigit() and u.isdigit()):
                problems.add(f"{csvs[0]}:{i}", f"Dialogue_ID/Utterance_ID {d!r}/{u!r} are not integers")
                continue
            name = f"dia{int(d)}_utt{int(u)}"
            if (prefix, name) in _MELD_BROKEN:
                notes.append(f"{prefix}/{name}")
                continue
            emo = row["Emotion"].strip().lower()
            if emo not in _MELD_LABELS:
                problems.add(f"{csvs[0]}:{i}", f"unknown emotion {row['Emotion']!r}")
                continue
            speaker = row["Speaker"].strip()
            if not speaker:
                problems.add(f"{csvs[0]}:{i}", "empty Speaker")
                continue
            audio = next((folder / f"{name}{ext}" for ext in (".wav", ".flac", ".WAV", ".FLAC")
                          if (folder / f"{name}{ext}").is_file()), None)
            if audio is None:
                mp4 = next((f / f"{name}.mp4" for f in mp4_folders if (f / f"{name}.mp4").is_file()), None)
                if mp4 is None:
                    problems.add(folder / f"{name}.wav", f"audio missing for {prefix} row {i} of {csvs[0].name}")
                    continue
                if not _media_readable():
                    mp4_only.append(mp4)
                    continue
                audio = mp4
            entries.append(_entry(audio, f"{prefix}/{name}", _MELD_LABELS[emo], speaker.replace("\t", " "), "",
                                  channel="", split=split, text=_one_line(row.get("Utterance", ""))))
    if not csv_found:
        raise CorpusError(f"{corpus}: no *_sent_emo.csv under {root}. Expected layout: {_layout(corpus)}")
    if mp4_only:
        raise _mp4_error(corpus, root, mp4_only, "--out manifests/meld")
    if notes:
        log.info("meld: skipped the known broken clip(s) %s", ", ".join(notes))
    return _finish(corpus, root, entries, problems, multichannel_channel=2)
