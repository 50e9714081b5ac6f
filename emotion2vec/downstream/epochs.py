"""Per-epoch training recipes shared by the probe (:mod:`.training`) and fine-tuning (:mod:`emotion2vec.finetune`):
plain functions, so any training loop can use them.

``lr_decay_factor(epoch, gamma)``  the exponential learning-rate decay of Park et al.: the learning rate is multiplied
                                   by ``gamma`` (0.98) after every epoch, so epoch e (1-based) trains at
                                   ``lr * gamma ** (e - 1)``.
``undersample(labels, seed, epoch)``  Park et al.'s balanced epochs: every epoch draws a fresh random subset of the
                                   training utterances in which each class keeps as many utterances as the smallest
                                   class has (the larger classes are under-sampled, the smallest is kept whole), so
                                   each epoch sees the classes evenly and, over the epochs, most of the data.

Both are deterministic functions of their arguments (the draw of an epoch depends on (seed, epoch) only), which keeps a
resumed fine-tuning run identical to an uninterrupted one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import ProbeError

__all__ = ["DEFAULT_LR_DECAY", "lr_decay_factor", "check_lr_decay", "undersample", "undersample_counts"]

#: Park et al.: "multiplying [the learning rate] by 0.98 after every epoch"
DEFAULT_LR_DECAY = 0.98


def check_lr_decay(gamma: float) -> float:
    """``gamma`` when it lies in (0, 1]; else an error naming it."""
    if not 0.0 < float(gamma) <= 1.0:
        raise ProbeError(f"--lr-decay must lie in (0, 1] (the factor applied after every epoch), got {gamma}")
    return float(gamma)


def lr_decay_factor(epoch: int, gamma: float = DEFAULT_LR_DECAY) -> float:
    """The multiplier of the learning rate during ``epoch`` (1-based): ``gamma ** (epoch - 1)``."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    return float(gamma) ** (epoch - 1)


def undersample_counts(labels: Sequence[int]) -> dict[int, int]:
    """Utterances per class kept in every under-sampled epoch: the smallest class's count, for every class present."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    if len(values) == 0:
        return {}
    return {int(v): int(counts.min()) for v in values}


def undersample(labels: Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """Positions (into ``labels``, sorted) of epoch ``epoch``'s balanced subset: for every class present, a random
    draw (without replacement, seeded by ``(seed, epoch)``) of as many of its utterances as the smallest class has.

    ``labels``: the class index of each training utterance, (N,). -> (n_classes x smallest count,) int64.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"under-sampling needs one class per utterance, got labels of shape {labels.shape}")
    keep = undersample_counts(labels)
    rng = np.random.default_rng([int(seed), int(epoch), 0x5A17])
    chosen = []
    for cls, n in keep.items():
        members = np.flatnonzero(labels == cls)
        chosen.append(members if len(members) == n else rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
