"""URDU: one folder per emotion, the speaker in the file name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import corpus_spec, _Misfit, _scan_named


_URDU_FOLDERS = {"angry": "A", "happy": "H", "neutral": "N", "sad": "S"}
_URDU_NAME = re.compile(r"(S([MF])\d+)_[^_]+_([AHNS])\d+")


@corpus_spec('urdu', "random-kfold", "URDU, 4 classes, 29 speakers",
             layout=("{Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav (speaker S<M|F><n> before the first '_', emotion "
                     'letter starts the last token)'))
def prepare_urdu(root) -> list[dict]:
    """URDU: {Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav; label = folder (its letter must start the last token),
    speaker = token before the first '_', gender = its second letter."""
    def parse(path: Path):
        folder = path.parent.name.lower()
        if folder not in _URDU_FOLDERS:
            raise _Misfit(f"folder {path.parent.name!r} is not Angry/Happy/Neutral/Sad")
        m = _URDU_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not S<M|F><n>_<...>_<E><nnn>")
        spk, g, letter = m.groups()
        if letter != _URDU_FOLDERS[folder]:
            raise _Misfit(f"emotion letter {letter} inside folder {path.parent.name}")
        return folder, spk, g, None

    return _scan_named("urdu", root, parse)
