"""Time masks for the student.

* :func:`block_mask` — the dataset-level masks both official runs used: centres drawn with replacement, blocks of
  ``mask_length`` frames around them, then every row forced to exactly ``int(T * mask_prob)`` masked frames.
* :func:`span_mask` — the model-level fallback (fairseq ``compute_mask_indices``-style spans, ~39 % masked).
* :func:`mask_info` — turn a (B, T) mask into the kept/restore index tensors the encoder and decoder use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..models.encoder import MaskInfo

__all__ = ["block_mask", "span_mask", "mask_info", "crop_mask"]


def block_mask(num_rows: int, num_frames: int, mask_prob: float = 0.5, mask_length: int = 5,
               mask_prob_adjust: float = 0.05, rng: np.random.Generator | None = None) -> np.ndarray:
    """Block masks with exactly ``int(num_frames * mask_prob)`` masked frames per row. -> (rows, T) bool."""
    rng = rng if rng is not None else np.random.default_rng()
    T = num_frames
    target = int(T * mask_prob)
    mask = np.zeros((num_rows, T), dtype=bool)
    if T == 0 or target == 0:
        return mask
    num_centres = int(T * (mask_prob + mask_prob_adjust) / mask_length)
    if num_centres > 0:
        centres = rng.integers(0, T, size=(num_rows, num_centres))
        offsets = np.arange(mask_length) - mask_length // 2
        pos = np.clip(centres[:, :, None] + offsets[None, None, :], 0, T - 1).reshape(num_rows, -1)
        np.put_along_axis(mask, pos, True, axis=1)
    for row in mask:  # force the exact count: drop extras / add missing uniformly at random
        n = int(row.sum())
        if n > target:
            row[rng.choice(np.flatnonzero(row), n - target, replace=False)] = False
        elif n < target:
            row[rng.choice(np.flatnonzero(~row), target - n, replace=False)] = True
    return mask


def span_mask(num_rows: int, num_frames: int, mask_prob: float = 0.5, mask_length: int = 5, min_masks: int = 1,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Spans of ``mask_length`` from distinct random starts, every row cut to the smallest row's count.

    This is what the paper's "p = 0.5, l = 5" wording describes (~39 % masked after overlaps). -> (rows, T) bool
    """
    rng = rng if rng is not None else np.random.default_rng()
    T = num_frames
    mask = np.zeros((num_rows, T), dtype=bool)
    for row in mask:
        num_spans = max(min_masks, int(mask_prob * T / mask_length + rng.random()))
        starts_available = max(T - mask_length, 1)
        num_spans = min(num_spans, starts_available)
        starts = rng.choice(starts_available, num_spans, replace=False)
        pos = (starts[:, None] + np.arange(mask_length)[None]).ravel()
        row[pos[pos < T]] = True
    smallest = int(mask.sum(1).min()) if num_rows else 0
    for row in mask:
        extra = int(row.sum()) - smallest
        if extra > 0:
            row[rng.choice(np.flatnonzero(row), extra, replace=False)] = False
    return mask


def crop_mask(mask: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Crop (C, T_full) masks to ``length`` frames at a random offset (independent of the audio crop)."""
    extra = mask.shape[-1] - length
    if extra <= 0:
        return mask
    start = int(rng.integers(0, extra + 1))
    return mask[..., start:start + length]


def mask_info(mask: Tensor) -> MaskInfo:
    """(B, T) bool mask -> :class:`MaskInfo`. Every row keeps as many frames as row 0 leaves unmasked.

    Rows with more masked frames than row 0 feed a few masked frames to the encoder (still scored); rows with fewer
    drop a few unmasked ones (replaced by noise tokens, not scored) — the official behaviour after mask cropping.
    """
    mask = mask.bool()
    T = mask.shape[1]
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # unmasked first, in time order
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    len_keep = T - int(mask[0].sum())
    return MaskInfo(mask=mask, ids_keep=ids_shuffle[:, :len_keep], ids_restore=ids_restore)
