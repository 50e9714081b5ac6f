"""SAVEE: the original AudioData/<speaker>/ layout or Kaggle's flat file names."""

from __future__ import annotations

import re
from pathlib import Path

from .base import corpus_spec, _Misfit, _scan_named


_SAVEE_EMO = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
              "su": "surprise"}
_SAVEE_SPK = ("DC", "JE", "JK", "KL")
_SAVEE_FLAT = re.compile(r"(DC|JE|JK|KL)_(a|d|f|h|n|sa|su)(\d{2})")
_SAVEE_ORIG = re.compile(r"(a|d|f|h|n|sa|su)(\d{2})")


@corpus_spec('savee', "random-kfold", "SAVEE, 7 classes, 4 male speakers",
             layout=('AudioData/{DC,JE,JK,KL}/{a,d,f,h,n,sa,su}NN.wav (original) or flat DC_a01.wav (Kaggle)'))
def prepare_savee(root) -> list[dict]:
    """SAVEE: original AudioData/<SPK>/<e>NN.wav or Kaggle's flat <SPK>_<e>NN.wav; 7 labels, 4 male speakers."""
    def parse(path: Path):
        m = _SAVEE_FLAT.fullmatch(path.stem)
        if m:
            spk, emo, num = m.groups()
        else:
            m = _SAVEE_ORIG.fullmatch(path.stem)
            if not m or path.parent.name not in _SAVEE_SPK:
                raise _Misfit("expected <SPK>/<e>NN.wav or <SPK>_<e>NN.wav with SPK in DC/JE/JK/KL and e in "
                              "a/d/f/h/n/sa/su")
            spk, (emo, num) = path.parent.name, m.groups()
        return _SAVEE_EMO[emo], spk, "M", f"{spk}_{emo}{num}"

    return _scan_named("savee", root, parse)
