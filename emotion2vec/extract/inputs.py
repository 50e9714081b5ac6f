"""What to extract: files, folders and lists (any format of :mod:`emotion2vec.io.manifests`) -> :class:`Item`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..io.audio import AUDIO_EXTENSIONS, MIN_SAMPLES, AudioError, audio_info, resampled_length
from ..io.manifests import ManifestError, key_from_path, read_audio_list
from . import ExtractionError

__all__ = ["Item", "discover_inputs", "probe_lengths"]

LIST_SUFFIXES = (".tsv", ".scp", ".jsonl")


@dataclass
class Item:
    key: str
    path: str
    channel: int | None = None
    num_samples: int | None = None  # at 16 kHz, from the header
    error: str | None = None


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> list[Item]:
    """Lists (data.tsv or fairseq .tsv, Kaldi wav.scp / .scp, .jsonl), directories (recursive) or audio files.

    Keys: from the list; for a directory the path relative to it without extension; for loose files the path
    relative to their common folder. Duplicate keys are an error naming both files.
    """
    items: list[Item] = []
    loose: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not files:
                raise ExtractionError(f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
            items += [Item(key_from_path(f.relative_to(p)), str(f)) for f in files]
        elif p.suffix in LIST_SUFFIXES or p.name == "wav.scp":
            try:
                items += [Item(e.key, e.path, e.channel) for e in read_audio_list(p)]
            except ManifestError as e:
                raise ExtractionError(str(e)) from None
        elif p.suffix.lower() in AUDIO_EXTENSIONS:
            loose.append(p)
        elif not p.exists():
            raise ExtractionError(f"{p}: no such file or directory")
        else:
            raise ExtractionError(f"{p}: unsupported input (expected audio {', '.join(AUDIO_EXTENSIONS)}, a directory, "
                                  f".tsv, wav.scp/.scp or .jsonl)")
    if loose:
        base = Path(os.path.commonpath([str(f.resolve().parent) for f in loose]))
        items += [Item(key_from_path(f.resolve().relative_to(base)), str(f)) for f in loose]
    if not items:
        raise ExtractionError("no inputs: the manifest or list is empty")
    seen: dict[str, str] = {}
    for it in items:
        if it.key in seen:
            raise ExtractionError(f"duplicate key {it.key!r} for {seen[it.key]} and {it.path}")
        seen[it.key] = it.path
    return items


def probe_lengths(items: list[Item]) -> None:
    """Fill ``num_samples`` (at 16 kHz) from file headers; unreadable files get ``error``."""
    for it in items:
        try:
            info = audio_info(it.path)
        except AudioError as e:
            it.error = e.reason
            continue
        if it.channel is not None and it.channel >= info.channels:
            it.error = f"channel {it.channel} requested but the file has {info.channels} channel(s)"
        elif info.frames == 0:
            it.error = "empty audio (0 samples)"
        else:
            it.num_samples = resampled_length(info.frames, info.sample_rate)
            if it.num_samples < MIN_SAMPLES:
                it.error = f"too short: {it.num_samples} samples at 16 kHz (< {MIN_SAMPLES}, 25 ms)"
