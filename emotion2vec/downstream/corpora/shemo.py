"""ShEMO (Persian): gender, speaker number and emotion letter in the file name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import corpus_spec, _Misfit, _scan_named


_SHEMO_EMO = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad", "W": "surprise", "F": "fear"}
_SHEMO_NAME = re.compile(r"([FM])(\d{2})([AHNSWF])(\d{2})")


@corpus_spec('shemo', "random-kfold", "ShEMO (Persian), 6 classes",
             layout=('{male,female}/M36S02.wav (gender+speaker number, emotion A/H/N/S/W/F, utterance number)'))
def prepare_shemo(root) -> list[dict]:
    """ShEMO (Persian): {male,female}/M36S02.wav; 6 labels; speaker = first 3 characters (``M36``)."""
    def parse(path: Path):
        m = _SHEMO_NAME.fullmatch(path.stem.upper())
        if not m:
            raise _Misfit("name is not GNNENN (e.g. M36S02; emotion A/H/N/S/W/F)")
        g, num, emo, _n = m.groups()
        parent = path.parent.name.lower()
        if parent in ("male", "female") and parent[0] != g.lower():
            raise _Misfit(f"gender {g} inside folder {path.parent.name}")
        return _SHEMO_EMO[emo], f"{g}{num}", g, path.stem.upper()

    return _scan_named("shemo", root, parse)
