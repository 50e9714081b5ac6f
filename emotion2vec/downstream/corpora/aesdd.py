"""AESDD (Greek): one folder per emotion, the actor in parentheses in the file name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import canonical_label, corpus_spec, _Misfit, _scan_named


_AESDD_FOLDERS = {"anger": "a", "disgust": "d", "fear": "f", "happiness": "h", "sadness": "s"}
_AESDD_NAME = re.compile(r"([adfhs])(\d{2})\s*\((\d+)\)\s*([a-z]?)")


@corpus_spec('aesdd', "random-kfold", "AESDD (Greek), 5 classes",
             layout=('{anger,disgust,fear,happiness,sadness}/a03 (3).wav (emotion letter, utterance, (actor))'))
def prepare_aesdd(root) -> list[dict]:
    """AESDD (Greek): {anger,...}/a03 (3).wav; label = folder (must agree with the first letter), speaker =
    the actor number in parentheses, gender unknown."""
    def parse(path: Path):
        folder = path.parent.name.lower()
        if folder not in _AESDD_FOLDERS:
            raise _Misfit(f"folder {path.parent.name!r} is not one of {', '.join(_AESDD_FOLDERS)}")
        m = _AESDD_NAME.fullmatch(path.stem.strip())
        if not m:
            raise _Misfit("name is not <e><nn> (<actor>) (e.g. 'a03 (3)')")
        letter, _utt, actor, _suffix = m.groups()
        if letter != _AESDD_FOLDERS[folder]:
            raise _Misfit(f"emotion letter {letter} inside folder {path.parent.name}")
        return canonical_label(folder), str(int(actor)), "", None

    return _scan_named("aesdd", root, parse)
