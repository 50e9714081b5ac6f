"""Pretraining data (torch-only): fairseq-style ``.tsv`` manifests, per-item block masks, cropping collation.

Manifest ``{split}.tsv`` (read by :func:`emotion2vec.io.manifests.read_pretrain_manifest`): first line the root
directory; each further line ``relative/path<TAB>num_samples``.
Audio must be 16 kHz (``emotion2vec manifest --resample-to DIR`` converts); multi-channel is averaged.

Randomness is a pure function of (seed, epoch, item ids), so a resumed run sees the same masks and crops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..io.audio import SAMPLE_RATE, AudioError, normalize_waveform, read_audio
from ..io.manifests import ManifestError, read_pretrain_manifest
from .masking import block_mask, crop_mask

__all__ = ["MaskSettings", "PretrainingDataset"]


@dataclass(frozen=True)
class MaskSettings:
    clone_batch: int = 8
    mask_prob: float = 0.5
    mask_prob_adjust: float = 0.05
    mask_length: int = 5


class PretrainingDataset(torch.utils.data.Dataset):
    """Items: {"id", "source" (N,) float32 normalised waveform, "mask" (C, T_full) bool}.

    ``collater`` crops every item of a batch to the shortest one (capped at ``max_sample_size``) at a random
    offset, crops each item's masks at an independent random offset, and stacks them:
    {"id": (B,), "net_input": {"source": (B, n), "mask": (B*C, T)}}.
    """

    def __init__(self, manifest: str | os.PathLike, num_frames: Callable[[int], int], min_sample_size: int = 8000,
                 max_sample_size: int = 320000, normalize: bool = True, masks: MaskSettings | None = None,
                 precompute_mask: bool = True, seed: int = 1):
        self.manifest = Path(manifest)
        root, entries = read_pretrain_manifest(self.manifest)
        self.root = root
        kept = [(p, n) for p, n in entries if n >= min_sample_size]
        if not kept:
            raise ManifestError(f"{self.manifest}: all {len(entries)} files are shorter than min_sample_size="
                                f"{min_sample_size} samples")
        self.skipped = len(entries) - len(kept)
        self.paths = [p for p, _ in kept]
        self.sizes = np.array([n for _, n in kept], dtype=np.int64)
        self.num_frames = num_frames
        self.min_sample_size, self.max_sample_size = min_sample_size, max_sample_size
        self.normalize, self.masks, self.precompute_mask = normalize, masks, precompute_mask
        self.seed, self.epoch = seed, 1

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, *ids: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *ids])

    def path(self, index: int) -> Path:
        p = Path(self.paths[index])
        return p if p.is_absolute() else self.root / p

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.path(index)
        wav, sr = read_audio(path)
        if sr != SAMPLE_RATE:
            raise AudioError(path, f"sample rate {sr} Hz; pretraining reads {SAMPLE_RATE} Hz audio (convert the "
                                   f"corpus with `emotion2vec manifest ... --resample-to DIR`)")
        source = torch.from_numpy(wav)
        if self.normalize:
            source = normalize_waveform(source)  # over the whole utterance, before cropping
        item: dict[str, Any] = {"id": index, "source": source}
        if self.precompute_mask:
            if self.masks is None:
                raise RuntimeError("mask settings not configured (the task sets them when the model is built)")
            m = self.masks
            item["mask"] = block_mask(m.clone_batch, self.num_frames(len(wav)), m.mask_prob, m.mask_length,
                                      m.mask_prob_adjust, rng=self._rng(0, index))
        return item

    def num_tokens(self, index: int) -> int:
        return int(min(self.sizes[index], self.max_sample_size))

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return np.minimum(self.sizes[indices], self.max_sample_size)

    def size(self, index: int) -> int:
        return self.num_tokens(index)

    def ordered_indices(self) -> np.ndarray:
        """Random permutation, then a stable sort by length, longest first (seeded by seed and epoch)."""
        order = self._rng(1).permutation(len(self))
        return order[np.argsort(-self.num_tokens_vec(order), kind="stable")]

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        samples = [s for s in samples if s["source"] is not None]
        if not samples:
            return {}
        ids = [int(s["id"]) for s in samples]
        rng = self._rng(2, *ids)
        target = min(min(len(s["source"]) for s in samples), self.max_sample_size)
        sources = []
        for s in samples:
            start = int(rng.integers(0, len(s["source"]) - target + 1))
            sources.append(s["source"][start:start + target])
        batch: dict[str, Any] = {"id": torch.tensor(ids), "net_input": {"source": torch.stack(sources)}}
        if self.precompute_mask:
            frames = self.num_frames(target)
            masks = [crop_mask(s["mask"], frames, rng) for s in samples]
            batch["net_input"]["mask"] = torch.from_numpy(np.concatenate(masks, axis=0))
        return batch
