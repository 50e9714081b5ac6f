"""The corpora of EMO-SUPERB that only its benchmark's label files describe here: MSP-IMPROV, BIIC-NNIME and
BIIC-Podcast, in the benchmark's layout (the releases' own layouts could not be confirmed; their label files are
what EMO-SUPERB distributes for them)."""

from __future__ import annotations

import os
from pathlib import Path

from ...io.manifests import format_votes
from ..emo_superb import CONDITION_FOLDERS, EmoSuperbError, read_condition
from .base import CorpusError, _layout, corpus_spec, _Problems, _check_root, _entry, _finish

_LAYOUT = ("EMO-SUPERB's layout: {name}/Audios/<FileName> (or --audio-dir DIR holding the release's audio files, "
           "found by file name) and {name}/{{Primary,Secondary}}/config.json + labels_consensus_<N>.csv (FileName, "
           "one share per class, EmoAct, EmoVal, EmoDom, [SpkrID, Gender,] Split_Set); --root = {name} or its parent")


def _condition_folder(corpus: str, root: Path, folder_name: str, condition: str, conditions: str) -> Path:
    if condition not in conditions:
        raise CorpusError(f"{corpus}: --condition {condition}: EMO-SUPERB scores it under "
                          f"{' and '.join(conditions)} ({', '.join(CONDITION_FOLDERS[c] for c in conditions)})")
    for base in (root, root / folder_name):
        if (base / CONDITION_FOLDERS[condition]).is_dir():
            return base
    raise CorpusError(f"{corpus}: no {CONDITION_FOLDERS[condition]}/ folder under {root} or {root / folder_name}. "
                      f"Expected layout: {_layout(corpus)}")


def _audio_index(audio_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, _dirs, files in os.walk(audio_dir):
        for f in files:
            out.setdefault(f, Path(dirpath) / f)
    return out


def _prepare(corpus: str, folder_name: str, root, condition: str | None, audio_dir, conditions: str) -> list[dict]:
    """Rows of one condition: label = the class with the largest share (the first in config order on a tie),
    ``votes`` = the shares, ratings scaled to [0, 1] by the config's scale, ``foldN`` = the set of each partition."""
    root = _check_root(corpus, root)
    condition = (condition or conditions[0]).upper()[:1]
    base = _condition_folder(corpus, root, folder_name, condition, conditions)
    try:
        cond = read_condition(base / CONDITION_FOLDERS[condition])
    except EmoSuperbError as e:
        raise CorpusError(f"{corpus}: {e}") from None
    audios = Path(audio_dir) if audio_dir else base / "Audios"
    if not audios.is_dir():
        raise CorpusError(f"{corpus}: no audio folder {audios} (EMO-SUPERB's Audios/, or give --audio-dir)")
    index = _audio_index(audios)
    problems = _Problems(corpus, root)
    entries = []
    for name, row in sorted(cond.rows.items()):
        path = index.get(name)
        if path is None:
            problems.add(audios / name, "audio missing (listed in the label files)")
            continue
        label = max(cond.classes, key=lambda c: (row.shares[c], -cond.classes.index(c)))
        extra = {fold: row.folds.get(fold, "") for fold in cond.folds}
        extra.update({k: f"{v:.4f}" for k, v in row.dimensions.items()})
        entries.append(_entry(path, Path(name).stem, label, row.speaker, row.gender,
                              votes=format_votes(row.shares), **extra))
    return _finish(corpus, root, entries, problems)


@corpus_spec('msp-improv', "emo-superb", "MSP-IMPROV (EMO-SUPERB), 4 (P) or 10 (S) classes as shares, 12 actors",
             layout=_LAYOUT.format(name="IMPROV"), options=("condition", "audio_dir"))
def prepare_msp_improv(root, condition: str | None = None, audio_dir=None) -> list[dict]:
    """MSP-IMPROV as EMO-SUPERB distributes its labels: ``condition`` P (primary emotions, default) or S
    (secondary); speaker = gender + SpkrID (``F02``)."""
    return _prepare("msp-improv", "IMPROV", root, condition, audio_dir, "PS")


@corpus_spec('biic-nnime', "emo-superb", "BIIC-NNIME (EMO-SUPERB), 11 classes as shares, Mandarin",
             layout=_LAYOUT.format(name="NNIME").replace("{Primary,Secondary}", "Secondary"), options=("audio_dir",))
def prepare_biic_nnime(root, audio_dir=None) -> list[dict]:
    """BIIC-NNIME as EMO-SUPERB distributes its labels (one label set, the raters' choices among 11 classes)."""
    return _prepare("biic-nnime", "NNIME", root, "S", audio_dir, "S")


@corpus_spec('biic-podcast', "emo-superb", "BIIC-Podcast (EMO-SUPERB), primary (P) or secondary (S) shares, Mandarin",
             layout=_LAYOUT.format(name="BIIC_PODCAST"), options=("condition", "audio_dir"))
def prepare_biic_podcast(root, condition: str | None = None, audio_dir=None) -> list[dict]:
    """BIIC-Podcast as EMO-SUPERB distributes its labels: ``condition`` P (default) or S; its label files have no
    speaker column (speaker left empty)."""
    return _prepare("biic-podcast", "BIIC_PODCAST", root, condition, audio_dir, "PS")
