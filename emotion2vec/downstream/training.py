"""Training one downstream head per fold on frozen features, with the epoch chosen on the fold's valid keys.

Defaults of the class tasks are the official recipe: categorical cross-entropy, batch 128, 100 epochs, RMSprop (lr
5e-4, momentum 0.9) with a triangular CyclicLR between lr and 2 lr (10 epochs up, 10 down, stepped per epoch; torch's
defaults, which also cycle the momentum 0.9 -> 0.8), seed 42. Regression, where that recipe diverges, standardises
the features and the targets and uses AdamW at a constant learning rate (:data:`.tasks.TRAINING_DEFAULTS`; an option
given explicitly always wins). Options: AdamW, the per-epoch exponential decay and the under-sampled epochs of Park
et al. (:mod:`.epochs`). The task, loss, head and pooling are chosen in :class:`ProbeConfig`
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
from .heads import Head, HeadConfig, fold_target_scaling
from .losses import Loss, make_loss
from .metrics import fast_scores
from .runs import FoldOutcome, FoldSplit, Selection
from .targets import Targets
from .epochs import DEFAULT_LR_DECAY, check_lr_decay, lr_decay_factor, undersample
from .tasks import OPTIMIZERS, SCHEDULERS, TRAINING_DEFAULTS, check_combination

__all__ = ["DEFAULT_LR", "SELECT_METRICS", "ProbeConfig", "train_fold", "head_config", "standardization",
           "target_scaling", "PROBE_HINT"]

#: what a probe run whose training diverges can change (:class:`~.runs.Selection` names it)
PROBE_HINT = "lower --lr, or try --optimizer adamw, --scheduler none, --standardize"


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
    optimizer: str | None = None  # None: the task's default (tasks.TRAINING_DEFAULTS)
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 0, or 0.01 for AdamW (torch's default)
    scheduler: str | None = None  # None: the task's default
    lr_decay: float = DEFAULT_LR_DECAY  # the factor of --scheduler exponential, after every epoch
    undersample: bool = False  # every epoch a fresh class-balanced subset of train (categorical, soft)
    select_metric: str | None = None  # None: the task's default (tasks.DEFAULT_SELECT)
    patience: int | None = None
    seed: int = 42
    standardize: bool | None = None  # None: the task's default
    standardize_targets: bool | None = None  # regression: learn (y - mean) / std of the training targets
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
        defaults = TRAINING_DEFAULTS[self.task]
        for name in ("optimizer", "scheduler", "standardize", "standardize_targets"):
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])
        if self.optimizer not in OPTIMIZERS:
            raise ProbeError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.weight_decay is None:
            self.weight_decay = 0.01 if self.optimizer == "adamw" else 0.0
        if self.scheduler not in SCHEDULERS:
            raise ProbeError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        check_lr_decay(self.lr_decay)
        if not self.lr > 0 or self.weight_decay < 0:
            raise ProbeError(f"--lr must be positive and --weight-decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.standardize_targets and self.task != "regression":
            raise ProbeError(f"--standardize-targets applies to --task regression, not {self.task}")
        if self.standardize_targets and self.head == "arcface":
            raise ProbeError("--standardize-targets needs a linear output layer")
        if self.undersample and self.task not in ("categorical", "soft"):
            raise ProbeError(f"--undersample balances the classes of each epoch: it applies to --task categorical or "
                             f"soft, not {self.task}")
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
                      config.arcface_scale, "pooled" if config.head == "wagner" else "frame")


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


def _valid_scores(loss_fn: Loss, outputs: torch.Tensor, y: torch.Tensor, targets: Targets, idx: np.ndarray,
                  scaling: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Valid scores of ``outputs``: the task's metrics and the loss (``scaling``: the (mean, std) of standardised
    regression targets, undone before scoring)."""
    predictions = loss_fn.activate(outputs).cpu().numpy()
    if scaling is not None:
        predictions = predictions * scaling[1] + scaling[0]
    scores = fast_scores(targets.task, predictions, targets.y[idx], None if targets.hard is None else targets.hard[idx])
    scores["loss"] = float(loss_fn(outputs, y))
    return scores


def _optimizer(head: Head, config: ProbeConfig):
    """The optimiser and its learning-rate schedule, stepped once per epoch (None: constant)."""
    if config.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(head.parameters(), lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
    elif config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "cyclic":
        scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=config.lr, max_lr=2 * config.lr,
                                                      step_size_up=10)
    elif config.scheduler == "exponential":  # LambdaLR counts epochs from 0; lr_decay_factor from 1
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: lr_decay_factor(e + 1, config.lr_decay))
    return optimizer, scheduler


def target_scaling(targets: Targets, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the training targets of a regression task (std >= 1e-6: a constant target keeps its scale)."""
    y = np.asarray(targets.y[train], dtype=np.float64)
    return y.mean(0), np.maximum(y.std(0), 1e-6)


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

    scaling = target_scaling(targets, train_np) if config.standardize_targets else None
    y_np = targets.y if scaling is None else (targets.y - scaling[0]) / scaling[1]
    y = torch.as_tensor(y_np, dtype=torch.long if config.task == "categorical" else torch.float32).to(device)
    hard = None if not config.undersample else (targets.y if config.task == "categorical" else targets.hard)[train_np]
    selection = Selection(config.select_metric, config.patience, hint=PROBE_HINT)
    best_state = None
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        head.train()
        epoch_idx = train_idx if hard is None else train_idx[torch.from_numpy(undersample(hard, config.seed, epoch))]
        order = epoch_idx[torch.randperm(len(epoch_idx), generator=generator)].to(device)
        loss_sum = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            loss = loss_fn(_forward(head, feats, batch), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
        if scheduler is not None:
            scheduler.step()
        selection.train_epoch(float(loss_sum) / len(order), epoch)
        if len(valid_idx) == 0:
            continue
        outputs = _outputs(head, feats, valid_idx, config.eval_frames)
        selection.check_outputs(outputs.cpu().numpy(), epoch)
        scores = _valid_scores(loss_fn, outputs, y[valid_idx], targets, valid_np, scaling)
        if selection.valid_epoch(epoch, scores):
            best_state = copy.deepcopy(head.state_dict())
        elif selection.stopped:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    if scaling is not None:
        fold_target_scaling(head, *scaling)

    predictions = loss_fn.activate(_outputs(head, feats, test_idx, config.eval_frames)).cpu().numpy()
    selection.check_outputs(predictions, selection.kept_epoch(epoch), "test")
    valid_predictions = (loss_fn.activate(_outputs(head, feats, valid_idx, config.eval_frames)).cpu().numpy()
                         if len(valid_np) else None)
    return FoldOutcome(name=split.name, n_train=len(train_np), n_valid=len(valid_np), n_test=len(test_np),
                       best_epoch=selection.kept_epoch(epoch), epochs_run=epoch, valid=selection.valid,
                       history=selection.curves(), seconds=time.perf_counter() - start_time,
                       test_keys=[feats.keys[i] for i in test_np.tolist()], predictions=predictions,
                       model=head.cpu().eval(), valid_keys=[feats.keys[i] for i in valid_np.tolist()],
                       valid_predictions=valid_predictions, warnings=list(selection.warnings))
