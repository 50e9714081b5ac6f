"""Training one downstream head per fold on frozen features, with the epoch chosen on the fold's valid keys.

Defaults are the official recipe: cross-entropy, batch 128, 100 epochs, RMSprop (lr 5e-4, momentum 0.9) with a
triangular CyclicLR between lr and 2 lr (10 epochs up, 10 down, stepped per epoch; torch's defaults, which also
cycle the momentum 0.9 -> 0.8), seed 42. After every epoch the model is scored on ``valid``; the epoch with the best
``select_metric`` (valid WA by default, as the official recipe; the first epoch wins ties) is restored and scored on
``test``. The same seed gives identical results on the same device and thread count (CUDA's ``index_add_`` may
differ in the last bits).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import DEFAULT_LR, SELECT_METRICS, ProbeError
from .features import PackedFeatures
from .heads import ProbeModel
from .metrics import METRICS, compute_metrics, metrics_from_confusion

__all__ = ["DEFAULT_LR", "SELECT_METRICS", "ProbeConfig", "FoldResult", "train_fold"]


@dataclass
class ProbeConfig:
    hidden: int = 256
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "rmsprop"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cyclic"
    select_metric: str = "wa"
    patience: int | None = None
    seed: int = 42
    standardize: bool = False
    valid_fraction: float = 0.2
    valid_is_test: bool = False
    eval_frames: int = 1 << 16  # frames per forward pass when scoring

    def __post_init__(self):
        if self.optimizer not in DEFAULT_LR:
            raise ProbeError(f"optimizer must be one of {sorted(DEFAULT_LR)}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.scheduler not in ("cyclic", "none"):
            raise ProbeError(f"scheduler must be 'cyclic' or 'none', got {self.scheduler!r}")
        if self.select_metric not in SELECT_METRICS:
            raise ProbeError(f"select metric must be one of {SELECT_METRICS}, got {self.select_metric!r}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be positive, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ProbeError(f"patience must be positive, got {self.patience}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ProbeError(f"valid fraction must lie in [0, 1), got {self.valid_fraction}")


@dataclass
class FoldResult:
    name: str
    n_train: int
    n_valid: int
    n_test: int
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, Any]
    probabilities: np.ndarray  # (n_test, C)
    test_keys: list[str]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def _chunks(feats: PackedFeatures, idx: torch.Tensor, max_frames: int) -> list[torch.Tensor]:
    if not feats.frame:
        return list(idx.split(max(1, max_frames // 64)))
    lengths = feats.lengths[idx].cpu().numpy()
    out, start, acc = [], 0, 0
    for i, n in enumerate(lengths):
        if acc and acc + n > max_frames:
            out.append(idx[start:i])
            start, acc = i, 0
        acc += int(n)
    out.append(idx[start:])
    return [c for c in out if len(c)]


def _forward(model: ProbeModel, feats: PackedFeatures, idx: torch.Tensor) -> torch.Tensor:
    if not feats.frame:
        return model(feats.x[idx])
    rows, segments, lengths = feats.frame_index(idx)
    return model.forward_packed(feats.x[rows], segments, lengths)


@torch.no_grad()
def _logits(model: ProbeModel, feats: PackedFeatures, idx: torch.Tensor, max_frames: int) -> torch.Tensor:
    model.eval()
    return torch.cat([_forward(model, feats, c) for c in _chunks(feats, idx, max_frames)])


def _train_stats(feats: PackedFeatures, idx: torch.Tensor, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and 1/std over the training frames (for --standardize)."""
    total = torch.zeros(feats.dim, dtype=torch.float64, device=feats.x.device)
    square = torch.zeros_like(total)
    count = 0
    for c in _chunks(feats, idx, max_frames):
        x = feats.x[feats.frame_index(c)[0]] if feats.frame else feats.x[c]
        x = x.double()
        total += x.sum(0)
        square += (x * x).sum(0)
        count += x.shape[0]
    mean = total / max(count, 1)
    std = (square / max(count, 1) - mean * mean).clamp(min=0).sqrt()
    return mean.float(), (1.0 / std.clamp(min=1e-5)).float()


def _better(score: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return score < best if metric == "loss" else score > best


def train_fold(feats: PackedFeatures, y: torch.Tensor, num_classes: int, train: Sequence[int], valid: Sequence[int],
               test: Sequence[int], config: ProbeConfig, name: str = "fold") -> FoldResult:
    """Train one probe on ``train`` (indices into ``feats``/``y``), select its epoch on ``valid`` (empty: the
    last epoch), score it on ``test``."""
    start_time = time.perf_counter()
    device = feats.x.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_idx = torch.as_tensor(list(train), dtype=torch.long)
    valid_idx = torch.as_tensor(list(valid), dtype=torch.long, device=device)
    test_idx = torch.as_tensor(list(test), dtype=torch.long, device=device)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ProbeError(f"{name}: empty train ({len(train_idx)}) or test ({len(test_idx)}) set")
    model = ProbeModel(feats.dim, num_classes, config.hidden).to(device)
    if config.standardize:
        model.set_input_norm(*_train_stats(feats, train_idx.to(device), config.eval_frames))
    if config.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "cyclic":
        scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=config.lr, max_lr=2 * config.lr,
                                                      step_size_up=10)

    y = y.to(device)
    history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
    if config.select_metric != "loss":
        history[f"valid_{config.select_metric}"] = []
    best_score, best_epoch, best_state, best_valid, bad = None, 0, None, {}, 0
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)].to(device)
        loss_sum = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            loss = F.cross_entropy(_forward(model, feats, batch), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
        if scheduler is not None:
            scheduler.step()
        history["train_loss"].append(float(loss_sum) / len(train_idx))
        if len(valid_idx) == 0:
            continue
        logits = _logits(model, feats, valid_idx, config.eval_frames)
        target = y[valid_idx]
        valid_loss = float(F.cross_entropy(logits, target))
        cm = torch.bincount(target * num_classes + logits.argmax(1), minlength=num_classes ** 2)
        scores = metrics_from_confusion(cm.view(num_classes, num_classes).cpu().numpy())
        scores["loss"] = valid_loss
        score = scores[config.select_metric]
        history["valid_loss"].append(valid_loss)
        if config.select_metric != "loss":
            history[f"valid_{config.select_metric}"].append(score)
        if _better(score, best_score, config.select_metric):
            best_score, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_valid = {m: float(scores[m]) for m in (*METRICS, "loss")}
        else:
            bad += 1
            if config.patience is not None and bad >= config.patience:
                break
    if best_state is None:  # no validation: keep the last epoch
        best_epoch = epoch
    else:
        model.load_state_dict(best_state)

    logits = _logits(model, feats, test_idx, config.eval_frames)
    probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
    y_test = y[test_idx].cpu().numpy()
    pred = probs.argmax(1)
    test_metrics = compute_metrics(y_test.tolist(), pred.tolist(), list(range(num_classes)))
    return FoldResult(name=name, n_train=len(train_idx), n_valid=len(valid_idx), n_test=len(test_idx),
                      best_epoch=best_epoch, epochs_run=epoch, valid=best_valid, test=test_metrics,
                      probabilities=probs, test_keys=[feats.keys[i] for i in test_idx.tolist()],
                      history={k: [round(v, 6) for v in vals] for k, vals in history.items() if vals},
                      seconds=time.perf_counter() - start_time)
