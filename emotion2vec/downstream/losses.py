"""Training losses of the downstream tasks: modules of (head outputs, targets) -> scalar, independent of how the
batches are made (the frozen-feature probe and end-to-end fine-tuning use the same ones).

Every loss also says how its head's raw outputs become predictions (:meth:`Loss.activate`): class probabilities
(softmax; sigmoid for ``bce``) or the regression values themselves.

``ce``       cross-entropy on class indices (B,), ``F.cross_entropy`` with optional label smoothing eps (the target
             becomes (1 - eps) one-hot + eps / C) and class weights.
``cb-ce``    ``ce`` with the class-balanced weights of Cui et al. (:func:`class_balanced_weights`).
``soft-ce``  cross-entropy against a distribution (B, C) (soft labels; for multi-label indicators they are first
             normalised to sum 1), same smoothing and weights.
``bce``      binary cross-entropy with one logit per class against 0/1 indicators (B, C).
``ccc``      1 - the mean over targets of Lin's CCC between predictions and targets over the batch (B, K)
             (:func:`emotion2vec.downstream.metrics.ccc`).
``mse``      mean squared error (B, K).
ArcFace      with the ``arcface`` head (outputs s cos(theta_j)), :class:`ArcFaceLoss` replaces the true class's logit
             by s cos(theta_y + m) (Deng et al.; past theta_y = pi - m, s (cos theta_y - m sin m) keeps it
             decreasing) and applies ``ce`` / ``cb-ce``; predictions are the softmax of the un-margined outputs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ProbeError
from .metrics import ccc

__all__ = ["Loss", "CrossEntropyLoss", "ArcFaceLoss", "BCELoss", "RegressionLoss", "CCCLoss", "MSELoss", "class_balanced_weights",
           "arcface_logits", "class_counts", "make_loss"]


class Loss(nn.Module):
    """``forward(outputs, targets)`` -> scalar; ``activate(outputs)`` -> predictions."""

    def activate(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(outputs.float(), dim=-1)


class CrossEntropyLoss(Loss):
    """Cross-entropy on class indices (B,) or distributions (B, C) (``normalize``: rows scaled to sum 1 first)."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0, normalize: bool = False):
        super().__init__()
        self.register_buffer("weight", weight if weight is None else weight.float())
        self.label_smoothing = float(label_smoothing)
        self.normalize = normalize

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            targets = targets / targets.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return F.cross_entropy(outputs, targets, weight=self.weight, label_smoothing=self.label_smoothing)


def arcface_logits(outputs: torch.Tensor, targets: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """``outputs`` (B, C) = s cos(theta_j) -> the same with the true class's entry s cos(theta_y + m)."""
    cos = (outputs / scale).clamp(-1.0, 1.0)
    cos_y = cos.gather(1, targets[:, None])
    sin_y = (1.0 - cos_y * cos_y).clamp(min=0.0).sqrt()
    shifted = cos_y * math.cos(margin) - sin_y * math.sin(margin)
    past = cos_y <= math.cos(math.pi - margin)  # theta_y + m would pass pi: keep the logit decreasing
    shifted = torch.where(past, cos_y - margin * math.sin(margin), shifted)
    return (cos.scatter(1, targets[:, None], shifted)) * scale


class ArcFaceLoss(Loss):
    """Additive angular margin on the true class, then cross-entropy (optionally class-balanced / smoothed)."""

    def __init__(self, scale: float = 30.0, margin: float = 0.3, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.scale, self.margin = float(scale), float(margin)
        self.ce = CrossEntropyLoss(weight, label_smoothing)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.ce(arcface_logits(outputs, targets, self.scale, self.margin), targets)


class BCELoss(Loss):
    """Binary cross-entropy, one logit per class, against 0/1 indicators (B, C); predictions are sigmoids."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype))

    def activate(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(outputs.float())


class RegressionLoss(Loss):
    """A loss on values (B, K); predictions are the outputs themselves."""

    def activate(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float()


class CCCLoss(RegressionLoss):
    """1 - mean over targets of CCC(predictions, targets) over the batch (B, K)."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 1.0 - ccc(outputs, targets.to(outputs.dtype)).mean()


class MSELoss(RegressionLoss):
    """Mean squared error (B, K)."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets.to(outputs.dtype))


def class_balanced_weights(counts: Sequence[float], beta: float) -> torch.Tensor:
    """Cui et al.'s class-balanced weights: (1 - beta) / (1 - beta^n_j) for the n_j > 0 training samples of class j,
    scaled so that they sum to the number of such classes (a class without training samples weighs 0)."""
    if not 0.0 <= beta < 1.0:
        raise ProbeError(f"--cb-beta must lie in [0, 1), got {beta}")
    n = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    seen = n > 0
    raw = torch.zeros_like(n)
    raw[seen] = (1.0 - beta) / (1.0 - torch.pow(torch.full_like(n[seen], beta), n[seen]))
    return (raw * (int(seen.sum()) / raw.sum())).float()


def class_counts(task: str, y: np.ndarray, num_classes: int) -> np.ndarray:
    """n_j of the class-balanced weights: utterances per class (categorical) or summed vote shares (soft)."""
    if task == "categorical":
        return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return np.asarray(y, dtype=np.float64).sum(axis=0)


def make_loss(task: str, loss: str, train_y: np.ndarray, num_outputs: int, head: str = "linear",
              label_smoothing: float = 0.0, cb_beta: float = 0.999, arcface_scale: float = 30.0,
              arcface_margin: float = 0.3) -> Loss:
    """The loss module of ``task`` / ``loss`` (checked by :func:`.tasks.check_combination`); ``train_y``: the
    training targets (class-balanced weights are computed from them)."""
    weight = class_balanced_weights(class_counts(task, train_y, num_outputs), cb_beta) if loss == "cb-ce" else None
    if head == "arcface":
        return ArcFaceLoss(arcface_scale, arcface_margin, weight, label_smoothing)
    if loss in ("ce", "cb-ce", "soft-ce"):
        return CrossEntropyLoss(weight, label_smoothing, normalize=task == "multilabel")
    if loss == "bce":
        return BCELoss()
    if loss == "ccc":
        return CCCLoss()
    if loss == "mse":
        return MSELoss()
    raise ProbeError(f"unknown loss {loss!r}")
