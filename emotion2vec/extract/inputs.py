"""What to extract: files, folders and lists (any format of :mod:`emotion2vec.io.manifests`) -> :class:`Item`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..io.audio import (AUDIO_EXTENSIONS, MIN_SAMPLES, SAMPLE_RATE, AudioError, audio_info, load_audio,
                        normalize_waveform, resampled_length)
from ..io.manifests import ManifestError, key_from_path, read_audio_list
from . import ExtractionError

__all__ = ["Item", "discover_inputs", "probe_lengths", "decoded_batches"]

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

    A path that does not exist is an :class:`ExtractionError` (nothing starts); a file named inside a list that
    cannot be read fails alone later. Keys: from the list; for a directory the path relative to it without
    extension; for loose files the path relative to their common folder. Duplicate keys are an error naming both
    files.
    """
    items: list[Item] = []
    loose: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():  # a path on the command line: bad usage (a file listed in a manifest fails alone)
            raise ExtractionError(f"{p}: no such file or directory")
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


class _AudioDataset(torch.utils.data.Dataset):
    """Decodes, resamples and normalises in DataLoader workers; errors come back as values, not exceptions."""

    def __init__(self, items: list[Item], normalize: bool):
        self.items, self.normalize = items, normalize

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        try:
            wav = load_audio(it.path, SAMPLE_RATE, channel=it.channel, min_samples=MIN_SAMPLES)
        except AudioError as e:
            return i, None, e.reason
        x = torch.from_numpy(wav)
        return i, (normalize_waveform(x) if self.normalize else x), None


def _as_list(samples):
    return samples


def decoded_batches(items: list[Item], batches: list[list[int]], normalize: bool,
                    num_workers: int = 0) -> Iterable[list[tuple[int, torch.Tensor | None, str | None]]]:
    """Decode ``items`` batch by batch (index lists into ``items``), in ``num_workers`` processes overlapping the
    caller's work: yields [(index, 16 kHz mono waveform (N,) or None, error reason or None), ...] per batch."""
    return torch.utils.data.DataLoader(_AudioDataset(items, normalize), batch_sampler=batches,
                                       num_workers=num_workers, collate_fn=_as_list,
                                       prefetch_factor=4 if num_workers else None, persistent_workers=False)
