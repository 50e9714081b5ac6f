"""RESD (Russian): the official train.csv / test.csv."""

from __future__ import annotations

import re

from .base import corpus_spec, _Problems, _check_root, _rel_key, _find, _entry, _finish, _read_csv


_RESD_LABELS = {"anger": "angry", "disgust": "disgust", "enthusiasm": "enthusiasm", "fear": "fear",
                "happiness": "happy", "neutral": "neutral", "sadness": "sad"}
_RESD_NAME = re.compile(r"(\d+)_([a-z]+)_([a-z]+)[ _]([a-z])_(\d+)")


@corpus_spec('resd', "original", "RESD (Russian), 7 classes, official train/test",
             layout=('train.csv and test.csv (columns path, emotion; path relative to train/ or test/) and '
                     '{train,test}/<e1>_<e2>_<id>/<id>_<e1>_<e2>_<letter>_<n>.wav'))
def prepare_resd(root) -> list[dict]:
    """RESD (Russian): train.csv/test.csv (path, emotion) + train/, test/ folders; split train/test (no official
    valid: the ``original`` protocol takes 10% of train). The corpus has no speaker ids: speaker = the scripted
    dialogue number + the role's emotion letter from the file name (``32_h``), a stand-in, not an identity."""
    corpus = "resd"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    entries = []
    for split in ("train", "test"):
        found = _find(root, [f"{split}.csv"], want_dir=False, depth=2)
        if not found:
            problems.add(root / f"{split}.csv", "label file not found")
            continue
        table = found[0]
        base = table.parent
        for i, row in enumerate(_read_csv(table, ("path", "emotion"), corpus), start=2):
            rel = row["path"].replace("\\", "/")
            audio = next((c for c in (base / split / rel, base / rel) if c.is_file()), None)
            if audio is None:
                problems.add(f"{table}:{i}", f"audio {rel!r} not found under {base / split} or {base}")
                continue
            emo = row["emotion"].strip().lower()
            if emo not in _RESD_LABELS:
                problems.add(f"{table}:{i}", f"unknown emotion {row['emotion']!r}")
                continue
            m = _RESD_NAME.fullmatch(audio.stem.lower())
            if not m:
                problems.add(f"{table}:{i}", f"file name {audio.name!r} is not <id>_<e1>_<e2>_<letter>_<n>")
                continue
            entries.append(_entry(audio, _rel_key(audio, root) if audio.is_relative_to(root) else
                                  f"{split}/{audio.stem}", _RESD_LABELS[emo], f"{int(m.group(1)):02d}_{m.group(4)}",
                                  "", split=split))
    return _finish(corpus, root, entries, problems)
