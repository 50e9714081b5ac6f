"""``emotion2vec probe``: the downstream classifier of the emotion2vec paper, trained per fold on frozen features.

Model (paper section 4.2 and the official ``iemocap_downstream`` recipe): Linear(D -> 256) -> ReLU applied to
every frame -> mean over the valid frames -> Linear(256 -> C); 197,892 parameters at D = 768, C = 4 (the
"0.20M" of the paper). Utterance-level features (D,) are one frame.

Training, per fold of ``folds.json`` (defaults = the official recipe): cross-entropy, batch 128, 100 epochs,
RMSprop (lr 5e-4, momentum 0.9) with a triangular CyclicLR between lr and 2 lr (10 epochs up, 10 down,
stepped per epoch; torch's defaults, which also cycle the momentum 0.9 -> 0.8), seed 42. After every epoch the
model is scored on the fold's ``valid`` keys; the epoch with the best ``--select-metric`` (val WA by default,
as the official recipe; the first epoch wins ties) is restored and scored on ``test``. A fold without valid
keys gets a seeded random ``--valid-fraction`` (0.2) of its train keys as valid, as the official recipe's 80/20
split; ``--valid-fraction 0`` then keeps the last epoch. ``--valid-is-test`` selects on the test keys and trains
on train + valid (the optimistic "*" rows of the paper; the official ``eval_is_test``).

Speed: all features of the corpus are loaded once into one packed (frames, D) tensor; a batch gathers its
frames and pools them with a segment sum (no padding), so frame-level probes cost only their real frames.
The same seed gives identical results on the same device and thread count (CUDA's ``index_add_`` may differ in
the last bits).

Outputs in ``--out`` (all written atomically): ``results.json``, ``results.md``, ``predictions.tsv``,
``confusion.png`` -- see :mod:`emotion2vec.downstream.report`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import METRICS, compute_metrics, metrics_from_confusion, summarize

__all__ = [
    "ProbeConfig",
    "ProbeError",
    "ProbeModel",
    "PackedFeatures",
    "load_features",
    "train_fold",
    "run_probe",
    "add_arguments",
    "run",
    "main",
]

RESULTS_FORMAT = "emotion2vec-probe-results"
DEFAULT_LR = {"rmsprop": 5e-4, "adam": 1e-3}
SELECT_METRICS = ("wa", "ua", "wf1", "macro_f1", "loss")
#: first-layer multiply-adds of an average batch below which training runs on one CPU thread
SMALL_BATCH_WORK = 1 << 28


class ProbeError(RuntimeError):
    """A user-facing error (bad inputs); the CLI prints it without a traceback."""


# ----------------------------------------------------------------------------------------------------- model
class ProbeModel(nn.Module):
    """Linear(D -> hidden) -> ReLU per frame -> masked mean over time -> Linear(hidden -> C).

    With :meth:`set_input_norm` the inputs are standardised, ``(x - mean) * inv_std``, folded into the first layer
    (``W diag(inv_std)`` and ``b - W diag(inv_std) mean``) so that no normalised copy of the frames is ever made.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 256):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_inv_std", torch.ones(input_dim))

    def set_input_norm(self, mean: torch.Tensor, inv_std: torch.Tensor) -> None:
        """``mean``, ``inv_std`` (D,): the per-dimension statistics of the training frames."""
        self.input_mean.copy_(mean)
        self.input_inv_std.copy_(inv_std)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., hidden) = proj((x - mean) * inv_std)."""
        weight = self.proj.weight * self.input_inv_std
        return F.linear(x, weight, self.proj.bias - weight @ self.input_mean)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, D) padded frames with ``lengths`` (B,) valid frames (None: all valid), or (B, D)."""
        h = F.relu(self._project(x))
        if x.dim() == 2:
            return self.head(h)
        if lengths is None:
            return self.head(h.mean(dim=1))
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        pooled = (h * mask[..., None]).sum(dim=1) / lengths.clamp(min=1)[:, None].to(h.dtype)
        return self.head(pooled)

    def forward_packed(self, frames: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``frames`` (F, D) of len(lengths) utterances back to back; ``segments`` (F,) the utterance of each frame."""
        h = F.relu(self._project(frames))
        pooled = h.new_zeros(len(lengths), h.shape[1]).index_add_(0, segments, h)
        return self.head(pooled / lengths.clamp(min=1)[:, None].to(h.dtype))


# ----------------------------------------------------------------------------------------------------- data
@dataclass
class PackedFeatures:
    """Features of N utterances: ``x`` (sum T, D) with ``offsets``/``lengths`` (N,), or (N, D) when not ``frame``."""

    keys: list[str]
    x: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    frame: bool

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def to(self, device: torch.device | str) -> "PackedFeatures":
        return PackedFeatures(self.keys, self.x.to(device), self.offsets.to(device), self.lengths.to(device), self.frame)

    def frame_index(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows of ``x`` of utterances ``idx``, the position in ``idx`` of each row, and their lengths."""
        lengths = self.lengths[idx]
        total = int(lengths.sum())
        segments = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), lengths, output_size=total)
        starts = self.offsets[idx] - (torch.cumsum(lengths, 0) - lengths)
        rows = starts[segments] + torch.arange(total, device=idx.device)
        return rows, segments, lengths


def parse_layer(spec: str | int | None) -> int | list[int] | str | None:
    """``None`` | int | ``"mean"`` (average of all stored layers) | ``"a,b,c"`` (average of those layers)."""
    if spec is None or isinstance(spec, int):
        return spec
    spec = str(spec).strip()
    if spec.lower() in ("mean", "all"):
        return "mean"
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ProbeError(f"--layer {spec!r}: expected an integer, a comma-separated list of integers, or 'mean'") from None
    if not values:
        raise ProbeError(f"--layer {spec!r}: empty")
    return values[0] if len(values) == 1 else values


def _resolve_negative(layer, num_layers: int | None):
    """-1 = the model's last block etc., when features.json records the model's ``num_layers``."""
    if not num_layers or layer is None or layer == "mean":
        return layer
    if isinstance(layer, list):
        return [v + num_layers if v < 0 else v for v in layer]
    return layer + num_layers if layer < 0 else layer


def _select_layer(x: np.ndarray, stored: list[int], layer, key: str) -> np.ndarray:
    if len(stored) <= 1:
        if layer not in (None, "mean") and (layer if isinstance(layer, list) else [layer]) != stored:
            raise ProbeError(f"--layer {layer}: these features hold only layer {stored}")
        return x
    if layer is None:
        raise ProbeError(f"the features hold layers {stored}: pick one with --layer N, or average with --layer mean / --layer a,b")
    if layer == "mean":
        return x.mean(axis=0)
    wanted = layer if isinstance(layer, list) else [layer]
    missing = [w for w in wanted if w not in stored]
    if missing:
        raise ProbeError(f"--layer: layer(s) {missing} not stored (stored: {stored})")
    if len(wanted) == 1:
        return x[stored.index(wanted[0])]
    return x[[stored.index(w) for w in wanted]].mean(axis=0)


def _missing_error(missing: Sequence[str], store, what: str) -> ProbeError:
    lines = []
    for key in list(missing)[:20]:
        reason = store.errors.get(key) if hasattr(store, "errors") else None
        lines.append(f"  {key}" + (f"  ({reason})" if reason else "  (not in index.tsv)"))
    more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
    return ProbeError(f"{len(missing)} key(s) of the folds have no features in {what}:\n" + "\n".join(lines) + more)


def load_features(directory: str | os.PathLike, keys: Sequence[str], layer=None) -> tuple[PackedFeatures, dict[str, Any]]:
    """Load the features of ``keys`` into one packed float32 tensor. Returns (features, info about the store)."""
    from ..features import FeatureStore, FeatureStoreError

    try:
        store = FeatureStore(directory)
    except FeatureStoreError as e:
        raise ProbeError(str(e)) from None
    missing = [k for k in keys if k not in store]
    if missing:
        raise _missing_error(missing, store, str(directory))
    stored = store.layers
    layer = _resolve_negative(parse_layer(layer), store.meta.get("num_layers"))
    frame = store.granularity == "frame"
    if store.granularity not in ("frame", "utterance"):
        raise ProbeError(f"{directory}: unknown granularity {store.granularity!r}")
    # one preallocated (sum T, D) array, sized from index.tsv's frame counts (no second copy of the corpus)
    lengths = np.asarray([store.frames(k) if frame else 1 for k in keys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    data = np.empty((int(lengths.sum()), store.dim), dtype=np.float32)
    for key, start, n in zip(keys, offsets, lengths):
        x = _select_layer(store.get(key), stored, layer, key)
        want = (n, store.dim) if frame else (store.dim,)
        if x.shape != want:
            raise ProbeError(f"{directory}: features of {key!r} have shape {x.shape}, expected {want} "
                             f"({store.granularity}-level, dim {store.dim} and {n} frames per features.json/index.tsv)")
        if not np.all(np.isfinite(x)):
            raise ProbeError(f"{directory}: features of {key!r} contain NaN or inf")
        data[start:start + n] = x
    x = torch.from_numpy(data)
    info = {"granularity": store.granularity, "dim": int(x.shape[1]), "stored_layers": stored,
            "layer": layer, "frames": int(lengths.sum()), "empty": [k for k, n in zip(keys, lengths) if n == 0]}
    return PackedFeatures(list(keys), x, torch.from_numpy(offsets), torch.from_numpy(lengths), frame), info


# -------------------------------------------------------------------------------------------------- training
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


# ------------------------------------------------------------------------------------------- inputs & CLI
def _read_inputs(data_dir: Path, protocol: str | None, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """data.tsv rows and the checked folds (the manifest and folds modules own the formats and their checks)."""
    from .folds import load_folds
    from .manifest import read_data_tsv

    try:
        return read_data_tsv(data_dir / "data.tsv"), load_folds(data_dir, protocol=protocol, seed=seed)
    except ValueError as e:  # ManifestError, FoldsError
        raise ProbeError(str(e)) from None


def _pick_folds(folds: list[dict], spec: str | None) -> list[dict]:
    if not spec:
        return folds
    by_name = {f["name"]: f for f in folds}
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in by_name:
            out.append(by_name[item])
        elif item.isdigit() and 1 <= int(item) <= len(folds):
            out.append(folds[int(item) - 1])
        else:
            raise ProbeError(f"--folds: no fold {item!r} (folds: {', '.join(by_name)})")
    return out


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ProbeError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeError(f"--device {name}: CUDA is not available")
    return device


@contextlib.contextmanager
def _cpu_settings(threads: int | None):
    """Torch CPU threads for the duration of training, and denormals flushed to zero: near-converged probes
    push RMSprop's running averages into the denormal range, where CPU float math is several times slower."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


def _run_fold(packed: PackedFeatures, y: torch.Tensor, labels: list[str], position: dict[str, int], f: dict,
              i: int, config: ProbeConfig, log) -> FoldResult:
    train, valid, test = list(f["train"]), list(f["valid"]), list(f["test"])
    note = ""
    if config.valid_is_test:
        train, valid, note = train + valid, test, " (selecting on test)"
    elif not valid and config.valid_fraction > 0:
        rng = np.random.default_rng([config.seed, i])
        order = rng.permutation(len(train))
        n_valid = max(1, int(round(config.valid_fraction * len(train))))
        valid = [train[j] for j in sorted(order[:n_valid])]
        train = [train[j] for j in sorted(order[n_valid:])]
        note = f" (valid = random {config.valid_fraction:.0%} of train)"
    elif not valid:
        note = " (no valid: last epoch)"
    result = train_fold(packed, y, len(labels), [position[k] for k in train], [position[k] for k in valid],
                        [position[k] for k in test], config, name=f["name"])
    t = result.test
    log(f"probe: {result.name}: train {result.n_train} valid {result.n_valid} test {result.n_test}{note}; "
        f"best epoch {result.best_epoch}/{result.epochs_run}; test WA {100 * t['wa']:.2f} UA {100 * t['ua']:.2f} "
        f"WF1 {100 * t['wf1']:.2f} ({result.seconds:.1f}s)")
    return result


def run_probe(features: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None,
              config: ProbeConfig | None = None, protocol: str | None = None, layer=None, device: str = "cpu",
              folds: str | None = None, name: str | None = None, fold_seed: int = 0, verbose: bool = True,
              threads: int | None = None) -> dict[str, Any]:
    """Train and score the probe on every fold; write the outputs to ``out`` (when given); return results.json's dict.

    ``threads``: torch CPU threads while training; None = 1 when a batch is small (< SMALL_BATCH_WORK
    multiply-adds in the first layer, e.g. any utterance-level features: the matmuls only lose to thread
    synchronisation, badly so on a busy machine), else torch's default.
    """
    from . import report

    config = config or ProbeConfig()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir = Path(data)
    if data_dir.is_file():
        data_dir = data_dir.parent
    features = Path(features)
    rows, fold_spec = _read_inputs(data_dir, protocol, fold_seed)
    label_of = {r["key"]: r["label"] for r in rows}
    labels = [str(label) for label in fold_spec.get("labels") or sorted({r["label"] for r in rows})]
    selected = _pick_folds(list(fold_spec["folds"]), folds)
    keys = list(dict.fromkeys(k for f in selected for split in ("train", "valid", "test") for k in f[split]))
    label_index = {label: i for i, label in enumerate(labels)}

    log(f"probe: loading {len(keys)} feature files from {features}")
    packed, info = load_features(features, keys, layer)
    if info["empty"]:
        log(f"probe: warning: {len(info['empty'])} utterance(s) have 0 frames (their pooled vector is 0), "
            f"e.g. {info['empty'][:3]}")
    dev = _resolve_device(device)
    packed = packed.to(dev)
    y = torch.as_tensor([label_index[label_of[k]] for k in keys], dtype=torch.long)
    position = {k: i for i, k in enumerate(keys)}
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in ProbeModel(packed.dim, len(labels), config.hidden).parameters())
    log(f"probe: {info['granularity']}-level features, dim {packed.dim}, {info['frames']} frames, "
        f"{len(labels)} classes {labels}, {n_params:,} parameters, device {dev} (loaded in {load_s:.1f}s)")

    batch_work = config.batch_size * info["frames"] / max(len(keys), 1) * packed.dim * config.hidden
    if threads is None and batch_work < SMALL_BATCH_WORK:
        threads = 1
    with _cpu_settings(threads):
        fold_results = [_run_fold(packed, y, labels, position, f, i, config, log) for i, f in enumerate(selected)]
    train_s = time.perf_counter() - t0 - load_s

    result = _results_dict(fold_results, labels, fold_spec, info, config, packed, features, data_dir, protocol,
                           dev, n_params, name, load_s, train_s, time.perf_counter() - t0)
    predictions = []
    for fr in fold_results:
        for key, p in zip(fr.test_keys, fr.probabilities):
            predictions.append({"fold": fr.name, "key": key, "label": label_of[key],
                                "prediction": labels[int(p.argmax())], "probabilities": p})
    if out is not None:
        report.write_outputs(out, result, predictions)
        log(f"probe: wrote {', '.join(report.OUTPUT_FILES)} to {out}")
    log(report.summary_markdown(result))
    return result


def _results_dict(fold_results, labels, fold_spec, info, config, packed, features, data_dir, protocol, device,
                  n_params, name, load_s, train_s, total_s) -> dict[str, Any]:
    import datetime

    from .. import __version__

    def relabel(metrics: dict) -> dict:
        metrics = dict(metrics)
        metrics["per_class"] = {labels[int(k)]: v for k, v in metrics["per_class"].items()}
        return metrics

    folds_out = []
    for fr in fold_results:
        folds_out.append({"name": fr.name, "n_train": fr.n_train, "n_valid": fr.n_valid, "n_test": fr.n_test,
                          "best_epoch": fr.best_epoch, "epochs_run": fr.epochs_run, "valid": fr.valid,
                          "test": relabel(fr.test), "seconds": round(fr.seconds, 3), "history": fr.history})
    confusion = np.sum([fr.test["confusion"] for fr in fold_results], axis=0).tolist()
    return {
        "format": RESULTS_FORMAT,
        "version": 1,
        "corpus": fold_spec.get("corpus") or data_dir.name,
        "protocol": fold_spec.get("protocol", protocol),
        "speaker_independent": fold_spec.get("speaker_independent"),
        "source": name or features.name,
        "features": str(features),
        "data": str(data_dir),
        "granularity": info["granularity"],
        "dim": packed.dim,
        "stored_layers": info["stored_layers"],
        "layer": info["layer"],
        "labels": labels,
        "parameters": n_params,
        "config": asdict(config),
        "device": str(device),
        "folds": folds_out,
        "summary": summarize([fr.test for fr in fold_results]),
        "confusion": confusion,
        "timing": {"load_s": round(load_s, 3), "train_s": round(train_s, 3), "total_s": round(total_s, 3)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "emotion2vec_version": __version__,
        "torch_version": torch.__version__,
    }


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = textwrap.fill(
        "Train the emotion2vec downstream probe -- Linear(D->256), ReLU, mean over frames, Linear(256->C) -- on "
        "extracted features, one model per fold of folds.json; pick each fold's epoch on its valid keys and "
        "report test WA / UA / WF1 / macro-F1 as mean +- std over folds. Defaults follow the official recipe "
        "(RMSprop 5e-4, momentum 0.9, CyclicLR 5e-4..1e-3, batch 128, 100 epochs, best valid WA, seed 42).", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: results.json (config, per-fold metrics, best epochs, curves, mean/std), results.md "
        "(per-fold table), predictions.tsv (fold, key, label, prediction, p_<label>), confusion.png (summed "
        "over folds, row-normalised).", 100) + ("\n\nexample:\n  emotion2vec probe --features features/urdu/emotion2vec_base "
        "--data manifests/urdu --out results/urdu/emotion2vec_base")
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--features", required=True, metavar="DIR",
                    help="feature directory written by `emotion2vec extract` (features.json, index.tsv, .npy)")
    io.add_argument("--data", required=True, metavar="DIR",
                    help="corpus directory written by `emotion2vec prepare` (data.tsv, folds.json)")
    io.add_argument("--out", required=True, metavar="DIR",
                    help="output directory (created; existing outputs are replaced)")
    io.add_argument("--protocol", default=None, metavar="P",
                    help="use folds_<P>.json (computed from data.tsv when missing) instead of folds.json")
    io.add_argument("--fold-seed", type=int, default=0, help="seed of folds computed on the fly (default 0)")
    io.add_argument("--folds", default=None, metavar="LIST",
                    help="only these folds: comma-separated names or 1-based numbers (default: all)")
    io.add_argument("--layer", default=None, metavar="L",
                    help="with features of several layers: a block index (-1 = last), 'a,b,c' to average those "
                         "layers, or 'mean' to average all stored layers (default: the only stored layer)")
    io.add_argument("--name", default=None,
                    help="feature-source name in reports and tables (default: the --features folder name)")
    train = parser.add_argument_group("model and training")
    train.add_argument("--hidden", type=int, default=256, help="hidden size (default 256)")
    train.add_argument("--epochs", type=int, default=100, help="training epochs per fold (default 100)")
    train.add_argument("--batch-size", type=int, default=128, help="utterances per batch (default 128)")
    train.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="rmsprop",
                       help="rmsprop (default, as the official recipe) or adam")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 5e-4 for rmsprop, 1e-3 for adam)")
    train.add_argument("--momentum", type=float, default=0.9, help="RMSprop momentum (default 0.9)")
    train.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    train.add_argument("--scheduler", choices=("cyclic", "none"), default="cyclic",
                       help="cyclic (default): triangular CyclicLR between lr and 2*lr, 10 epochs up and 10 down, "
                            "as the official recipe; none: constant lr")
    train.add_argument("--select-metric", choices=SELECT_METRICS, default="wa",
                       help="validation metric that picks each fold's best epoch (default wa, as the official "
                            "recipe; ties keep the earlier epoch)")
    train.add_argument("--patience", type=int, default=None,
                       help="stop a fold after this many epochs without validation improvement "
                            "(default: train all epochs, keep the best)")
    train.add_argument("--valid-fraction", type=float, default=0.2,
                       help="folds without valid keys use this seeded random fraction of train as valid "
                            "(default 0.2; 0 = no validation, keep the last epoch)")
    train.add_argument("--valid-is-test", action="store_true",
                       help="select epochs on the test keys and train on train+valid (optimistic, the paper's "
                            "'*' rows)")
    train.add_argument("--standardize", action="store_true",
                       help="standardise every feature dimension with the fold's training mean/std")
    train.add_argument("--seed", type=int, default=42, help="seed of init, shuffling, valid split (default 42)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", default="auto",
                           help="auto (default: cuda when available), cpu, cuda, cuda:N")
    execution.add_argument("--threads", type=int, default=None,
                           help="CPU threads while training (default: 1 when batches are small, e.g. "
                                "utterance-level features, where threads only add synchronisation; else torch's)")
    execution.add_argument("--quiet", action="store_true", help="print only the final mean +- std table")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..features import FeatureStoreError

    try:
        if args.threads is not None and args.threads < 1:
            raise ProbeError(f"--threads must be positive, got {args.threads}")
        config = ProbeConfig(hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                             optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                             weight_decay=args.weight_decay, scheduler=args.scheduler,
                             select_metric=args.select_metric, patience=args.patience, seed=args.seed,
                             standardize=args.standardize, valid_fraction=args.valid_fraction,
                             valid_is_test=args.valid_is_test)
        result = run_probe(args.features, args.data, args.out, config, protocol=args.protocol, layer=args.layer,
                           device=args.device, folds=args.folds, name=args.name, fold_seed=args.fold_seed,
                           verbose=not args.quiet, threads=args.threads)
    except (ProbeError, FeatureStoreError) as e:
        print(f"emotion2vec probe: error: {e}", file=sys.stderr)
        return 1
    if args.quiet:
        from .report import summary_markdown

        print(summary_markdown(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotion2vec probe")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
