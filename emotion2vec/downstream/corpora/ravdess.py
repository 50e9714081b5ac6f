"""RAVDESS speech and song: the 7-field file names (modality, channel, emotion, ..., actor)."""

from __future__ import annotations

import re
from pathlib import Path

from .base import log, corpus_spec, _Misfit, _scan_named


_RAV_EMO = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
            "07": "disgust", "08": "surprise"}
_RAV_NAME = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")


def _ravdess(root, corpus: str, vocal: str) -> list[dict]:
    allowed = set(_RAV_EMO) if vocal == "01" else {"01", "02", "03", "04", "05", "06"}
    other = 0

    def parse(path: Path):
        nonlocal other
        m = _RAV_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not MM-VV-EE-II-SS-RR-AA (7 two-digit fields)")
        modality, channel, emo, intensity, statement, rep, actor = m.groups()
        if channel in ("01", "02") and channel != vocal:
            other += 1
            return None
        reasons = []
        if modality != "03":
            reasons.append(f"modality {modality} (03 = audio-only expected)")
        if channel not in ("01", "02"):
            reasons.append(f"vocal channel {channel} (01 speech / 02 song)")
        if emo not in allowed:
            reasons.append(f"emotion code {emo} (valid: {', '.join(sorted(allowed))})")
        if intensity not in ("01", "02") or statement not in ("01", "02") or rep not in ("01", "02"):
            reasons.append("intensity/statement/repetition must be 01 or 02")
        if not 1 <= int(actor) <= 24:
            reasons.append(f"actor {actor} (01-24)")
        pm = re.fullmatch(r"actor_(\d{2})", path.parent.name.lower())
        if pm and pm.group(1) != actor:
            reasons.append(f"actor {actor} inside folder {path.parent.name}")
        if reasons:
            raise _Misfit("; ".join(reasons))
        return _RAV_EMO[emo], f"Actor_{actor}", "M" if int(actor) % 2 else "F", path.stem

    rows = _scan_named(corpus, root, parse)
    if other:
        log.info("%s: ignored %d file(s) of the other vocal channel (%s)", corpus, other,
                 "song: use ravdess-song" if vocal == "01" else "speech: use ravdess")
    return rows


@corpus_spec('ravdess', "random-kfold", "RAVDESS speech, 8 classes, 24 actors",
             layout=('Audio_Speech_Actors_01-24/Actor_XX/03-01-EE-II-SS-RR-AA.wav '
                     '(modality-channel-emotion-intensity-statement-repetition-actor; odd actor = male)'))
def prepare_ravdess(root) -> list[dict]:
    """RAVDESS speech (03-01-*): 8 labels, speaker ``Actor_XX``, odd actor = M. Song files are ignored (noted)."""
    return _ravdess(root, "ravdess", "01")


@corpus_spec('ravdess-song', "random-kfold", "RAVDESS song, 6 classes, 23 actors",
             layout=('Audio_Song_Actors_01-24/Actor_XX/03-02-EE-II-SS-RR-AA.wav (emotions 01-06; no Actor_18)'),
             fold_options={"folds": 5})
def prepare_ravdess_song(root) -> list[dict]:
    """RAVDESS song (03-02-*): 6 labels (neutral, calm, happy, sad, angry, fear)."""
    return _ravdess(root, "ravdess-song", "02")
