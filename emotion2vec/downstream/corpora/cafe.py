"""CaFE (Canadian French): emotion and intensity folders, accent-insensitive folder names."""

from __future__ import annotations

import re
from pathlib import Path

from ...io.audio import AUDIO_EXTENSIONS
from .base import _AIFF, corpus_spec, _fold_ascii, _Misfit, _scan_named


_CAFE_EMO = {"C": ("angry", "Colère"), "D": ("disgust", "Dégoût"), "J": ("happy", "Joie"),
             "N": ("neutral", "Neutre"), "P": ("fear", "Peur"), "S": ("surprise", "Surprise"),
             "T": ("sad", "Tristesse")}
_CAFE_NAME = re.compile(r"(\d{2})-([CDJNPST])-([12])-(\d)")
_CAFE_INTENSITY = {"1": "Faible", "2": "Fort"}


def _same_folder(actual: str, expected: str) -> bool:
    a, e = _fold_ascii(actual), _fold_ascii(expected)
    return a[0] == e[0] or a[1] == e[1]


@corpus_spec('cafe', "random-kfold", "CaFE (Canadian French), 7 classes, 12 actors",
             layout=('CaFE_48k/<Émotion>/{Faible,Fort}/AA-E-I-S.wav and CaFE_48k/Neutre/AA-N-1-S.wav (E in '
                     'C/D/J/N/P/S/T; folder accents may be decomposed or mangled; .aiff of the 192 kHz release '
                     'accepted)'))
def prepare_cafe(root) -> list[dict]:
    """CaFE (Canadian French): <Émotion>/<Faible|Fort>/AA-E-I-S.wav, Neutre/AA-N-1-S.wav; 7 labels, 12 actors
    (odd = M). Folder names are compared accent-insensitively (NFC/NFD and zip-mangled accents accepted) and must
    agree with the emotion and intensity in the file name."""
    def parse(path: Path):
        m = _CAFE_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not AA-E-I-S (e.g. 01-C-1-1)")
        actor, emo, intensity, _sent = m.groups()
        label, emo_folder = _CAFE_EMO[emo]
        parent, grand = path.parent.name, path.parent.parent.name
        if emo == "N":
            ok = _same_folder(parent, emo_folder) or (_same_folder(grand, emo_folder)
                                                      and _same_folder(parent, _CAFE_INTENSITY[intensity]))
            where = f"{emo_folder}/"
        else:
            ok = _same_folder(grand, emo_folder) and _same_folder(parent, _CAFE_INTENSITY[intensity])
            where = f"{emo_folder}/{_CAFE_INTENSITY[intensity]}/"
        if not ok:
            raise _Misfit(f"emotion {emo}, intensity {intensity} belongs in {where}")
        if not 1 <= int(actor) <= 12:
            raise _Misfit(f"actor {actor} (01-12)")
        return label, actor, "M" if int(actor) % 2 else "F", path.stem

    return _scan_named("cafe", root, parse, AUDIO_EXTENSIONS + _AIFF)
