"""EMOVO (Italian): <emotion>-<speaker>-<sentence> file names in speaker folders."""

from __future__ import annotations

import re
from pathlib import Path

from .base import corpus_spec, _Misfit, _scan_named


_EMOVO_EMO = {"neu": "neutral", "dis": "disgust", "gio": "happy", "pau": "fear", "rab": "angry", "sor": "surprise",
              "tri": "sad"}
_EMOVO_NAME = re.compile(r"(neu|dis|gio|pau|rab|sor|tri)-([fm][1-3])-([a-z]\d)")


@corpus_spec('emovo', "random-kfold", "EMOVO (Italian), 7 classes, 6 speakers",
             layout=('{f1,f2,f3,m1,m2,m3}/<emo>-<speaker>-<sentence>.wav, emo in neu/dis/gio/pau/rab/sor/tri'))
def prepare_emovo(root) -> list[dict]:
    """EMOVO (Italian): <spk>/<emo>-<spk>-<sentence>.wav, 7 labels, speakers f1-f3/m1-m3."""
    def parse(path: Path):
        m = _EMOVO_NAME.fullmatch(path.stem.lower())
        if not m:
            raise _Misfit("name is not <emo>-<spk>-<sentence> (e.g. rab-f1-b1)")
        emo, spk, _sent = m.groups()
        parent = path.parent.name.lower()
        if re.fullmatch(r"[fm][1-3]", parent) and parent != spk:
            raise _Misfit(f"speaker {spk} inside folder {path.parent.name}")
        return _EMOVO_EMO[emo], spk, spk[0].upper(), path.stem.lower()

    return _scan_named("emovo", root, parse)
