"""SUBESCO (Bangla): flat gender_speaker_NAME_S_sentence_EMOTION_take file names."""

from __future__ import annotations

import re
from pathlib import Path

from .base import canonical_label, corpus_spec, _Misfit, _scan_named


_SUBESCO_NAME = re.compile(r"([FM])_(\d{2})_([A-Za-z]+)_S_(\d{1,2})_(ANGRY|DISGUST|FEAR|HAPPY|NEUTRAL|SAD|SURPRISE)"
                           r"_(\d{1,2})", re.IGNORECASE)


@corpus_spec('subesco', "random-kfold", "SUBESCO (Bangla), 7 classes, 20 speakers",
             layout=('flat F_01_OISHI_S_1_ANGRY_1.wav (gender_speaker_NAME_S_sentence_EMOTION_take)'))
def prepare_subesco(root) -> list[dict]:
    """SUBESCO (Bangla): F_01_OISHI_S_1_ANGRY_1.wav, 7 labels, speaker ``F_01`` (gender + number)."""
    def parse(path: Path):
        m = _SUBESCO_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not G_NN_NAME_S_n_EMOTION_t")
        g, num, _name, _sent, emo, _take = m.groups()
        return canonical_label(emo), f"{g.upper()}_{num}", g.upper(), path.stem.upper()

    return _scan_named("subesco", root, parse)
