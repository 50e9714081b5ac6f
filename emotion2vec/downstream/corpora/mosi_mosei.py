"""CMU-MOSI and CMU-MOSEI in the MMSA layout: binary sentiment, the score as a regression target."""

from __future__ import annotations

import math

from .base import (log, CorpusError, _layout, corpus_spec, _Problems, _check_root, _find, _entry, _finish, _one_line,
                   _shq, _read_csv, _scaled)


def _mmsa(root, corpus: str, audio_dir=None) -> list[dict]:
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    labels = _find(root, ["label.csv"], want_dir=False, depth=2)
    if not labels:
        raise CorpusError(f"{corpus}: label.csv not found under {root}. Expected layout: {_layout(corpus)}")
    base = labels[0].parent
    wav_dir = _check_root(corpus, audio_dir) if audio_dir else base / "wav"
    raw_dir = base / "Raw"
    entries, mp4_only, neutral = [], [], 0
    modes = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
    for i, row in enumerate(_read_csv(labels[0], ("video_id", "clip_id", "label", "mode"), corpus), start=2):
        vid, clip = row["video_id"], row["clip_id"]
        try:
            score = float(row["label"])
        except ValueError:
            problems.add(f"{labels[0]}:{i}", f"label {row['label']!r} is not a number")
            continue
        mode = modes.get(row["mode"].strip().lower())
        if mode is None or not vid or not clip or not math.isfinite(score):
            problems.add(f"{labels[0]}:{i}", f"bad row (video_id {vid!r}, clip_id {clip!r}, mode {row['mode']!r})")
            continue
        if score == 0:
            neutral += 1
            continue
        audio = next((wav_dir / vid / f"{clip}{e}" for e in (".wav", ".flac")
                      if (wav_dir / vid / f"{clip}{e}").is_file()), None)
        if audio is None:
            mp4 = raw_dir / vid / f"{clip}.mp4"
            if mp4.is_file():
                mp4_only.append(mp4)
            else:
                problems.add(wav_dir / vid / f"{clip}.wav", f"audio missing for row {i}")
            continue
        entries.append(_entry(audio, f"{vid}/{clip}", "positive" if score > 0 else "negative", vid, "", split=mode,
                              sentiment=_scaled(score, -3, 3), text=_one_line(row.get("text", ""))))
    if mp4_only and not entries:
        wav = base / "wav"
        raise CorpusError(
            f"{corpus}: no wav/<video_id>/<clip_id>.wav, only {len(mp4_only)} Raw/*.mp4 clip(s), which soundfile "
            f"cannot read (e.g. {mp4_only[0]}). Extract them once with ffmpeg:\n  cd {_shq(raw_dir)} && find . "
            f"-name '*.mp4' -print0 | while IFS= read -r -d '' f; do mkdir -p {_shq(wav)}/\"$(dirname \"$f\")\" && "
            f"ffmpeg -nostdin -loglevel error -y -i \"$f\" -vn -ac 1 -ar 16000 -c:a pcm_s16le "
            f"{_shq(wav)}/\"${{f%.mp4}}.wav\"; done")
    for mp4 in mp4_only:
        problems.add(mp4, "only the .mp4 exists (extract it to wav/ with ffmpeg)")
    if neutral:
        log.info("%s: binary sentiment: left out %d neutral segment(s) (label 0)", corpus, neutral)
    return _finish(corpus, root, entries, problems)


@corpus_spec('mosi', "original", "CMU-MOSI, binary sentiment (neutral left out)",
             layout=('MMSA layout: label.csv (video_id, clip_id, text, label, ..., mode in train/valid/test) and '
                     'wav/<video_id>/<clip_id>.wav (or --audio-dir DIR holding <video_id>/<clip_id>.wav)'),
             options=("audio_dir",))
def prepare_mosi(root, audio_dir=None) -> list[dict]:
    """CMU-MOSI, MMSA layout: binary sentiment (label > 0 positive, < 0 negative, 0 left out), speaker = video_id,
    split from ``mode``; the continuous score (-3..3) is kept as ``sentiment`` scaled to [0, 1] by (x + 3) / 6 (a
    regression target), the transcript as ``text``."""
    return _mmsa(root, "mosi", audio_dir)


@corpus_spec('mosei', "original", "CMU-MOSEI, binary sentiment (neutral left out)",
             layout=('MMSA layout: label.csv (video_id, clip_id, text, label, ..., mode in train/valid/test) and '
                     'wav/<video_id>/<clip_id>.wav (or --audio-dir DIR holding <video_id>/<clip_id>.wav)'),
             options=("audio_dir",))
def prepare_mosei(root, audio_dir=None) -> list[dict]:
    """CMU-MOSEI, MMSA layout: as :func:`prepare_mosi`."""
    return _mmsa(root, "mosei", audio_dir)
