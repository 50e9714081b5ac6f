"""Training one downstream head per fold on frozen features, with the epoch chosen on the fold's valid keys.

Defaults are the official recipe: categorical cross-entropy, batch 128, 100 epochs, RMSprop (lr 5e-4, momentum 0.9)
with a triangular CyclicLR between lr and 2 lr (10 epochs up, 10 down, stepped per epoch; torch's defaults, which
also cycle the momentum 0.9 -> 0.8), seed 42. The task, loss, head and pooling are chosen in :class:`ProbeConfig`
(:mod:`.tasks` says what goes together). After every epoch the head is scored on ``valid``; the epoch with the best
``select_metric`` (the task's default: valid UA for categorical, the valid loss for soft labels, macro-F1 for
multi-label, mean CCC for regression; the first epoch wins ties: :class:`~.runs.Selection`, as fine-tuning keeps its
epoch) is restored and predicts ``test``, which the fold loop (:func:`~.runs.run_folds`) scores, with a bootstrap
interval of the task's headline metric. The same seed gives identical results on the same device and thread count
(CUDA's ``index_add_`` may differ in the last bits).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import DEFAULT_LR, SELECT_METRICS, ProbeError
from .features import PackedFeatures
from .heads import Head, HeadConfig
from .losses import Loss, make_loss
from .metrics import fast_scores
from .runs import FoldOutcome, FoldSplit, Selection
from .targets import Targets
from .tasks import check_combination

__all__ = ["DEFAULT_LR", "SELECT_METRICS", "ProbeConfig", "train_fold", "head_config", "standardization"]


@dataclass
class ProbeConfig:
    task: str = "categorical"
    loss: str | None = None  # None: the task's default (tasks.DEFAULT_LOSS)
    targets: tuple[str, ...] = ()  # regression: the data.tsv columns to predict
    head: str = "linear"
    pooling: str = "mean"
    dropout: float = 0.0
    hidden: int = 256
    label_smoothing: float = 0.0
    cb_beta: float = 0.999
    arcface_scale: float = 30.0
    arcface_margin: float = 0.3
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "rmsprop"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cyclic"
    select_metric: str | None = None  # None: the task's default (tasks.DEFAULT_SELECT)
    patience: int | None = None
    seed: int = 42
    standardize: bool = False
    valid_fraction: float = 0.2
    valid_is_test: bool = False
    bootstrap: int = 1000  # resamples of the test set for the headline metric's 95 % interval (0: none)
    eval_frames: int = 1 << 16  # frames per forward pass when scoring

    def __post_init__(self):
        self.targets = tuple(self.targets)
        self.loss, self.select_metric = check_combination(self.task, self.loss, self.head, self.pooling,
                                                          self.select_metric, self.label_smoothing)
        if self.task == "regression" and not self.targets:
            raise ProbeError("--task regression needs --targets (data.tsv columns, e.g. arousal,valence,dominance)")
        if self.task != "regression" and self.targets:
            raise ProbeError(f"--targets names regression columns; --task {self.task} learns the "
                             f"{'label' if self.task == 'categorical' else 'votes'} column")
        if self.optimizer not in DEFAULT_LR:
            raise ProbeError(f"optimizer must be one of {sorted(DEFAULT_LR)}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.scheduler not in ("cyclic", "none"):
            raise ProbeError(f"scheduler must be 'cyclic' or 'none', got {self.scheduler!r}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be positive, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ProbeError(f"patience must be positive, got {self.patience}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ProbeError(f"valid fraction must lie in [0, 1), got {self.valid_fraction}")
        if not 0.0 <= self.cb_beta < 1.0:
            raise ProbeError(f"--cb-beta must lie in [0, 1), got {self.cb_beta}")
        if not 0.0 <= self.dropout < 1.0:
            raise ProbeError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if self.arcface_scale <= 0 or not 0.0 <= self.arcface_margin < 1.5:
            raise ProbeError(f"--arcface-scale must be positive and --arcface-margin in [0, 1.5) radians, got "
                             f"{self.arcface_scale} and {self.arcface_margin}")
        if self.bootstrap < 0:
            raise ProbeError(f"--bootstrap must be >= 0, got {self.bootstrap}")


def head_config(config: ProbeConfig, feats: PackedFeatures, num_outputs: int) -> HeadConfig:
    """The head a probe run builds for these features."""
    if config.pooling != "mean" and not feats.frame:
        raise ProbeError(f"--pooling {config.pooling} needs frame-level features (these are utterance-level: one "
                         f"vector per utterance, nothing to pool); extract with --granularity frame")
    return HeadConfig(feats.dim, num_outputs, config.hidden, config.pooling,
                      "arcface" if config.head == "arcface" else "linear", config.dropout, feats.num_layers,
                      config.arcface_scale)


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


def _forward(head: Head, feats: PackedFeatures, idx: torch.Tensor) -> torch.Tensor:
    if not feats.frame:
        return head(feats.x[idx])
    rows, segments, lengths = feats.frame_index(idx)
    return head.forward_packed(feats.x[rows], segments, lengths)


@torch.no_grad()
def _outputs(head: Head, feats: PackedFeatures, idx: torch.Tensor, max_frames: int) -> torch.Tensor:
    head.eval()
    return torch.cat([_forward(head, feats, c) for c in _chunks(feats, idx, max_frames)])


def _train_stats(feats: PackedFeatures, idx: torch.Tensor, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer, per-dimension mean and 1/std over the training frames (for --standardize)."""
    total = torch.zeros(feats.x.shape[1:], dtype=torch.float64, device=feats.x.device)
    square = torch.zeros_like(total)
    count = 0
    for c in _chunks(feats, idx, max_frames):
        x = feats.x[feats.frame_index(c)[0]] if feats.frame else feats.x[c]
        x = x.double()
        total += x.sum(0)
        square += (x * x).sum(0)
        count += x.shape[0]
    return standardization(total, square, count)


def standardization(total: torch.Tensor, square: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) in float32 from the sum and the sum of squares (float64) of ``count`` vectors; std >= 1e-5."""
    mean = total / max(count, 1)
    std = (square / max(count, 1) - mean * mean).clamp(min=0).sqrt()
    return mean.float(), (1.0 / std.clamp(min=1e-5)).float()


def _valid_scores(loss_fn: Loss, outputs: torch.Tensor, y: torch.Tensor, targets: Targets, idx: np.ndarray
                  ) -> dict[str, float]:
    """Valid scores of ``outputs``: the task's metrics and the loss."""
    predictions = loss_fn.activate(outputs).cpu().numpy()
    scores = fast_scores(targets.task, predictions, targets.y[idx], None if targets.hard is None else targets.hard[idx])
    scores["loss"] = float(loss_fn(outputs, y))
    return scores


def _optimizer(head: Head, config: ProbeConfig):
    """The optimiser and its learning-rate schedule (None: constant) of the official recipe or ``config``'s."""
    if config.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(head.parameters(), lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "cyclic":
        scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=config.lr, max_lr=2 * config.lr,
                                                      step_size_up=10)
    return optimizer, scheduler


def train_fold(feats: PackedFeatures, targets: Targets, split: FoldSplit, config: ProbeConfig) -> FoldOutcome:
    """Train one head on ``split.train`` (positions in ``feats`` and ``targets``), keep the epoch that scores best on
    ``split.valid`` (:class:`~.runs.Selection`; no valid: the last epoch). -> the kept head (``model``, on the CPU, in
    eval mode) and its ``split.test`` predictions (class probabilities or regression values), which
    :func:`~.runs.run_folds` scores."""
    start_time = time.perf_counter()
    device = feats.x.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_np, valid_np, test_np = (np.asarray(list(s), dtype=np.int64) for s in (split.train, split.valid, split.test))
    if len(train_np) == 0 or len(test_np) == 0:
        raise ProbeError(f"{split.name}: empty train ({len(train_np)}) or test ({len(test_np)}) set")
    train_idx = torch.from_numpy(train_np)
    valid_idx, test_idx = torch.from_numpy(valid_np).to(device), torch.from_numpy(test_np).to(device)
    head = Head(head_config(config, feats, len(targets.names))).to(device)
    if config.standardize:
        head.set_input_norm(*_train_stats(feats, train_idx.to(device), config.eval_frames))
    loss_fn = make_loss(config.task, config.loss, targets.y[train_np], len(targets.names), config.head,
                        config.label_smoothing, config.cb_beta, config.arcface_scale, config.arcface_margin).to(device)
    optimizer, scheduler = _optimizer(head, config)

    y = torch.as_tensor(targets.y, dtype=torch.long if config.task == "categorical" else torch.float32).to(device)
    selection = Selection(config.select_metric, config.patience)
    best_state = None
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        head.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)].to(device)
        loss_sum = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            loss = loss_fn(_forward(head, feats, batch), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
        if scheduler is not None:
            scheduler.step()
        selection.train_epoch(float(loss_sum) / len(train_idx))
        if len(valid_idx) == 0:
            continue
        scores = _valid_scores(loss_fn, _outputs(head, feats, valid_idx, config.eval_frames), y[valid_idx], targets,
                               valid_np)
        if selection.valid_epoch(epoch, scores):
            best_state = copy.deepcopy(head.state_dict())
        elif selection.stopped:
            break
    if best_state is not None:
        head.load_state_dict(best_state)

    predictions = loss_fn.activate(_outputs(head, feats, test_idx, config.eval_frames)).cpu().numpy()
    return FoldOutcome(name=split.name, n_train=len(train_np), n_valid=len(valid_np), n_test=len(test_np),
                       best_epoch=selection.kept_epoch(epoch), epochs_run=epoch, valid=selection.valid,
                       history=selection.curves(), seconds=time.perf_counter() - start_time,
                       test_keys=[feats.keys[i] for i in test_np.tolist()], predictions=predictions,
                       model=head.cpu().eval())
