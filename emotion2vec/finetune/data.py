"""Waveform batches for fine-tuning: dynamic batches by total seconds, random crops, repeat-padding, and a plan that
is a pure function of (seed, epoch), so that a resumed run replays exactly the batches an uninterrupted run sees.

Per epoch (:func:`epoch_batches`): the utterances are shuffled with ``numpy.random.default_rng([seed, epoch])``, cut
into chunks of :data:`CHUNK` utterances, each chunk is sorted by length and cut greedily into batches whose padded
size (batch size x longest input, after cropping) stays within the budget (:func:`emotion2vec.extract.engine.
plan_batches`; an input over the budget is a batch of its own), and the batches are shuffled. Updates then take
``world_size x accumulate`` consecutive batches (:func:`epoch_updates`); the last update of an epoch is filled up with
the epoch's first batches, so every process makes the same number of forward passes.

Training inputs longer than ``max_seconds`` are cropped at a random position drawn from ``(seed, epoch, index)``
(Park et al. crop at 15 s); inputs shorter than ``repeat_pad`` seconds are tiled up to it (the waveform repeated, not
zeros), so short utterances do not make a batch mostly padding. Evaluation batches use whole inputs, sorted by
length. Waveforms are decoded (any format and rate, resampled to 16 kHz mono) in DataLoader workers; the model
normalises them (:func:`.heads.upstream_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..extract.engine import plan_batches
from ..extract.inputs import Item, probe_lengths
from ..io.audio import MIN_SAMPLES, SAMPLE_RATE, AudioError, load_audio
from . import FinetuneError

__all__ = ["CHUNK", "Batch", "check_audio", "effective_length", "epoch_batches", "epoch_updates", "eval_batches",
           "WaveformDataset", "Collate", "make_loader"]

#: utterances sorted together when planning an epoch's batches
CHUNK = 512


@dataclass
class Batch:
    """``waveform`` (B, N) raw 16 kHz samples, zero after each row's ``lengths`` (B,); ``index`` (B,) the
    utterances' positions in the dataset."""

    waveform: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE


def check_audio(keys: Sequence[str], paths: Sequence[str], channels: Sequence[int | None]) -> list[int]:
    """Lengths at 16 kHz from the file headers; unreadable or too short files are refused, all listed."""
    items = [Item(k, p, c) for k, p, c in zip(keys, paths, channels)]
    probe_lengths(items)
    bad = [f"{it.key} ({it.path}): {it.error}" for it in items if it.error]
    if bad:
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise FinetuneError(f"{len(bad)} training/evaluation file(s) cannot be used:\n  " + "\n  ".join(bad[:20])
                            + more)
    return [int(it.num_samples) for it in items]


def effective_length(n: int, max_samples: int | None, pad_samples: int) -> int:
    """The length of a training input after cropping and repeat-padding."""
    if max_samples is not None:
        n = min(n, max_samples)
    return max(n, pad_samples)


def epoch_batches(lengths: Sequence[int], indices: Sequence[int], budget: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one training epoch: lists of dataset positions (from ``indices``) whose padded size, given
    ``lengths`` (effective, indexed by position), stays within ``budget`` samples. Deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = [indices[i] for i in rng.permutation(len(indices))]
    batches: list[list[int]] = []
    for start in range(0, len(order), CHUNK):
        chunk = order[start:start + CHUNK]
        batches += [[chunk[j] for j in b] for b in plan_batches([lengths[i] for i in chunk], budget, budget)]
    return [batches[i] for i in rng.permutation(len(batches))]


def epoch_updates(batches: list[list[int]], world_size: int, accumulate: int) -> list[list[list[int]]]:
    """Updates of an epoch: each a list of ``world_size x accumulate`` batches (micro-batch a of rank r at
    ``a * world_size + r``); the last update is completed with the epoch's first batches."""
    per = world_size * accumulate
    n = max(1, -(-len(batches) // per))
    flat = [batches[i % len(batches)] for i in range(n * per)]
    return [flat[u * per:(u + 1) * per] for u in range(n)]


def eval_batches(lengths: Sequence[int], indices: Sequence[int], budget: int) -> list[list[int]]:
    """Whole inputs, longest first, within ``budget`` padded samples (an input over it alone)."""
    order = list(indices)
    return [[order[j] for j in b] for b in plan_batches([lengths[i] for i in order], budget, budget)]


class WaveformDataset(torch.utils.data.Dataset):
    """Position -> (position, 16 kHz mono float32 waveform (N,)) decoded from ``paths``."""

    def __init__(self, paths: Sequence[str], channels: Sequence[int | None]):
        self.paths, self.channels = list(paths), list(channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        try:
            return i, load_audio(self.paths[i], SAMPLE_RATE, channel=self.channels[i], min_samples=MIN_SAMPLES)
        except AudioError as e:
            raise FinetuneError(str(e)) from None


class Collate:
    """Items -> :class:`Batch`. Training (``epoch`` given): crop to ``max_samples`` at a position drawn from
    ``(seed, epoch, position)``, then tile inputs shorter than ``pad_samples``. Evaluation: whole inputs."""

    def __init__(self, seed: int, epoch: int | None, max_samples: int | None, pad_samples: int):
        self.seed, self.epoch, self.max_samples, self.pad_samples = seed, epoch, max_samples, pad_samples

    def _train_view(self, i: int, wav: np.ndarray) -> np.ndarray:
        if self.max_samples is not None and len(wav) > self.max_samples:
            start = int(np.random.default_rng([self.seed, self.epoch, i]).integers(0, len(wav) - self.max_samples + 1))
            wav = wav[start:start + self.max_samples]
        if len(wav) < self.pad_samples:
            wav = np.tile(wav, -(-self.pad_samples // len(wav)))[:self.pad_samples]
        return wav

    def __call__(self, items: list[tuple[int, np.ndarray]]) -> Batch:
        wavs = [(i, self._train_view(i, w) if self.epoch is not None else w) for i, w in items]
        lengths = torch.tensor([len(w) for _, w in wavs])
        batch = torch.zeros(len(wavs), int(lengths.max()))
        for b, (_, w) in enumerate(wavs):
            batch[b, :len(w)] = torch.from_numpy(w)
        return Batch(batch, lengths, torch.tensor([i for i, _ in wavs]))


def make_loader(dataset: WaveformDataset, batches: list[list[int]], collate: Collate, num_workers: int):
    """A DataLoader over fixed batches; its own generator keeps the global RNG (dropout) untouched, so a resumed
    run draws the same random numbers as an uninterrupted one."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                                       generator=torch.Generator(), prefetch_factor=4 if num_workers else None)
