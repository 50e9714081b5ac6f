"""VoxCeleb1 (Nagrani et al.): 1,251 speakers of interview clips and the identification split, on which Park et al.
train their speaker-identification network."""

from __future__ import annotations

import csv
from pathlib import Path

from .base import CorpusError, _layout, corpus_spec, _Problems, _check_root, _find, _entry, _finish

_SETS = {"1": "train", "2": "valid", "3": "test"}


def _genders(meta: Path, corpus: str) -> dict[str, str]:
    """vox1_meta.csv (tab-separated: VoxCeleb1 ID, VGGFace1 ID, Gender m/f, Nationality, Set) -> {speaker: M/F}."""
    out = {}
    with meta.open(encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or i == 1 and not row[0].strip().startswith("id"):
                continue  # the header
            if len(row) < 3 or row[2].strip().lower() not in ("m", "f"):
                raise CorpusError(f"{corpus}: {meta}:{i}: expected 'VoxCeleb1 ID<TAB>VGGFace1 ID<TAB>m|f<TAB>...', "
                                  f"got {row!r}")
            out[row[0].strip()] = row[2].strip().upper()
    return out


@corpus_spec('voxceleb1', "original", "VoxCeleb1, 1,251 speakers, the identification split (speaker task)",
             layout=("iden_split.txt (lines '<set> <speaker>/<video>/<n>.wav', set 1 = train, 2 = validation, 3 = "
                     "test) and the audio as wav/<speaker>/<video>/<n>.wav; optional vox1_meta.csv (tab-separated: "
                     "VoxCeleb1 ID, VGGFace1 ID, Gender m/f, Nationality, Set) for the speakers' gender"))
def prepare_voxceleb1(root) -> list[dict]:
    """VoxCeleb1 for speaker identification: one row per clip of iden_split.txt, label = speaker = the VoxCeleb1 ID
    (``id10001``), split from the file's set (train / valid / test: every speaker in all three), gender from
    vox1_meta.csv when present. Train a speaker network on it with ``finetune --task speaker --speaker-split
    official``."""
    corpus = "voxceleb1"
    root = _check_root(corpus, root)
    found = _find(root, ["iden_split.txt"], want_dir=False, depth=2)
    if not found:
        raise CorpusError(f"{corpus}: iden_split.txt not found under {root}. Expected layout: {_layout(corpus)}")
    split_file = found[0]
    base = split_file.parent
    wav_dirs = _find(base, ["wav"], want_dir=True, depth=2)
    wav_dir = wav_dirs[0] if wav_dirs else base / "wav"
    meta = _find(base, ["vox1_meta.csv"], want_dir=False, depth=1)
    genders = _genders(meta[0], corpus) if meta else {}
    problems = _Problems(corpus, root)
    entries = []
    for i, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        rel = parts[1] if len(parts) == 2 else ""
        pieces = rel.split("/")
        if len(parts) != 2 or parts[0] not in _SETS or len(pieces) != 3 or not rel.endswith(".wav"):
            problems.add(f"{split_file}:{i}", f"expected '<1|2|3> <speaker>/<video>/<n>.wav', got {line.strip()!r}")
            continue
        path = wav_dir / rel
        if not path.is_file():
            problems.add(path, f"audio missing (line {i} of iden_split.txt)")
            continue
        speaker = pieces[0]
        entries.append(_entry(path, rel[:-len(".wav")], speaker, speaker, genders.get(speaker, ""),
                              split=_SETS[parts[0]]))
    return _finish(corpus, root, entries, problems)
