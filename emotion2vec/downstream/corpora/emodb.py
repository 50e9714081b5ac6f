"""EmoDB (Berlin, German): speaker, text, emotion letter and version in the file name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import corpus_spec, _Misfit, _scan_named


_EMODB_EMO = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_EMODB_SPK = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M",
              "16": "F"}
_EMODB_NAME = re.compile(r"(\d{2})([ab]\d{2})([A-Z])([a-z])")


@corpus_spec('emodb', "random-kfold", "EmoDB (German), 7 classes, 10 speakers",
             layout=('wav/03a01Wa.wav (speaker 2 digits, text a01..b10, emotion W/L/E/A/F/T/N, version letter)'))
def prepare_emodb(root) -> list[dict]:
    """EmoDB (Berlin): wav/SSTTTEV.wav, 7 labels, 10 speakers with known genders."""
    def parse(path: Path):
        m = _EMODB_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not SSTTTEV (e.g. 03a01Wa)")
        spk, _text, emo, _ver = m.groups()
        if spk not in _EMODB_SPK:
            raise _Misfit(f"unknown speaker {spk}")
        if emo not in _EMODB_EMO:
            raise _Misfit(f"unknown emotion letter {emo} (W/L/E/A/F/T/N)")
        return _EMODB_EMO[emo], spk, _EMODB_SPK[spk], path.stem

    return _scan_named("emodb", root, parse)
