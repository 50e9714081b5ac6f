"""Training one fold end to end: AdamW, warm-up then linear / cosine decay, gradient accumulation and clipping,
autocast, DDP, selection on the dev set with patience, and checkpoints that make a resume exact.

An update takes ``accumulate`` micro-batches on each of ``world_size`` processes (:func:`.data.epoch_updates`); each
micro-batch's loss is its mean over utterances, divided by ``accumulate``; DDP averages the gradients over the
processes; then the trainable gradients are clipped to ``clip_norm`` (global L2 norm), AdamW steps and the schedule
advances. The learning rate rises linearly from 0 over the warm-up updates, then decays to 0 at the last update
(``linear``, ``cosine``), stays (``constant``) or is multiplied by ``lr_decay`` after every epoch (``exponential``,
Park et al.: :func:`emotion2vec.downstream.epochs.lr_decay_factor`); every parameter group keeps its own peak (head
lr, layer-wise decay). With ``undersample`` every epoch trains on a fresh class-balanced subset of the fold's training
utterances (:func:`emotion2vec.downstream.epochs.undersample`), a function of (seed, epoch) like the batches.
Regression targets are learnt standardised with the training mean and std (``standardize_targets``); the kept head's
output layer takes the scaling back (:func:`emotion2vec.downstream.heads.fold_target_scaling`) before it predicts
and is exported.

``checkpoint_last.pt`` is written at the end of every epoch (and every ``save_interval_updates`` updates) with the
model, the optimiser, the schedule, the gradient scaler, every process's torch RNG states, the data position (epoch
and update within it; the batches themselves are a function of (seed, epoch), :mod:`.data`), the selection state and
the history. A re-run after any kill restores it and continues with the next update: the update sequence, and hence
the final weights, equal those of an uninterrupted run (same device and thread count). ``checkpoint_best.pt`` holds
the weights of the epoch with the best dev score (the task's metric or the loss; ties keep the earlier epoch: the
probe's rule, :class:`~emotion2vec.downstream.runs.Selection`); with ``eval_interval_updates`` N the dev set is also
scored every N updates within an epoch and the best step is kept (Wagner et al. and Gavali & Verma select on steps),
patience then counting scorings. A non-finite training loss or dev output stops the fold with
:class:`~emotion2vec.downstream.runs.DivergenceError`, naming what to change.

:func:`train_fold`, step by step (:class:`_Fold`): set up what trains, the optimiser and schedule; restore
``checkpoint_last.pt``; per epoch, the updates (:meth:`_Fold.train_epoch`) then the dev score, the selection and the
checkpoints (:meth:`_Fold.end_epoch`); the kept weights (:meth:`_Fold.outcome`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..downstream.metrics import METRIC_NAMES, fast_scores, format_metric
from ..downstream.targets import Targets
from ..downstream.epochs import lr_decay_factor, undersample
from ..downstream.runs import DivergenceError, Selection
from ..downstream.training import standardization
from ..io.atomic import atomic_write
from ..io.audio import SAMPLE_RATE
from . import FinetuneError
from .config import FinetuneConfig
from .data import Collate, WaveformDataset, effective_length, epoch_batches, epoch_updates, eval_batches, make_loader
from .heads import upstream_frames
from .model import FinetuneModel, FreezePlan, param_groups

__all__ = ["CHECKPOINT_FORMAT", "FINETUNE_HINT", "Runtime", "FoldData", "TrainOutcome", "Collectives", "train_fold",
           "evaluate", "lr_factor", "autocast_dtype", "read_checkpoint", "load_model_state", "frame_statistics",
           "schedule", "Schedule"]

CHECKPOINT_FORMAT = "emotion2vec-finetune-checkpoint"
#: what a fine-tuning run whose training diverges can change
FINETUNE_HINT = "lower --lr and --head-lr, lengthen --warmup, or keep --clip-norm on"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype:
    return _DTYPES[precision]


@dataclass
class Runtime:
    """How the run executes (not part of its settings): device, processes, logging."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True
    checksum_dir: Path | None = None  # per-update SHA-256 of the parameters, one file per process
    log: Callable[[str], None] = print

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class FoldData:
    """A fold's utterances: positions into ``dataset`` / ``lengths`` (16 kHz samples) / ``targets``."""

    name: str
    dataset: WaveformDataset
    lengths: list[int]
    targets: Targets
    train: list[int]
    valid: list[int]
    test: list[int]
    text: Tensor | None = None  # (N, T) text vectors fused into the head (finetune --text-features), by position
    scaling: tuple[np.ndarray, np.ndarray] | None = None  # regression: (mean, std) of the standardised targets

    def y_learnt(self) -> np.ndarray:
        """The targets as the loss sees them (standardised with ``scaling`` for regression)."""
        y = self.targets.y
        return y if self.scaling is None else (y - self.scaling[0]) / self.scaling[1]

    def text_of(self, index: Tensor, device: torch.device) -> Tensor | None:
        return None if self.text is None else self.text[index].to(device)


@dataclass
class TrainOutcome:
    best_state: dict[str, Tensor]
    best_epoch: int
    epochs_run: int
    num_updates: int
    valid: dict[str, float]
    warmup_updates: int
    total_updates: int
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    best_update: int | None = None
    warnings: list[str] = field(default_factory=list)


def lr_factor(step: int, total: int, warmup: int, schedule: str, epoch: int = 1, gamma: float = 1.0) -> float:
    """Multiplier of every group's peak lr before update ``step`` (0-based) of ``total``; ``epoch`` (1-based) is the
    update's epoch, ``gamma`` the per-epoch factor of the ``exponential`` schedule."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "exponential":
        return lr_decay_factor(epoch, gamma)
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _targets_tensor(data: FoldData, device: torch.device) -> Tensor:
    dtype = torch.long if data.targets.task == "categorical" else torch.float32
    return torch.as_tensor(data.y_learnt(), dtype=dtype).to(device)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file is reported, never silently restarted
        raise FinetuneError(f"{path}: cannot read ({type(e).__name__}: {e}); delete it to restart this fold") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise FinetuneError(f"{path}: not a fine-tuning checkpoint")
    return blob


def _save(path: Path, blob: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(blob, f))


def _model_state(model: FinetuneModel) -> dict[str, Tensor]:
    """Everything but the frozen speaker encoder (it is rebuilt from --speaker-model)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith("head.speaker.")}


def load_model_state(model: FinetuneModel, state: dict[str, Tensor], where: Path) -> None:
    """Load a state saved by :func:`_model_state` (everything but the speaker encoder), strictly otherwise."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.speaker.")]
    if unexpected or missing:
        raise FinetuneError(f"{where}: does not match the model (unexpected {unexpected[:3]}, missing {missing[:3]}); "
                            f"delete it to retrain this fold")


@torch.no_grad()
def evaluate(model: FinetuneModel, data: FoldData, indices: list[int], runtime: Runtime, precision: str,
             budget: int) -> Tensor:
    """Head outputs (len(indices), C) on whole inputs, float32 on the CPU, in the order of ``indices``."""
    if not indices:
        return torch.zeros(0)
    was_training = model.training
    model.eval()
    batches = eval_batches(data.lengths, indices, budget)
    loader = make_loader(data.dataset, batches, Collate(0, None, None, 0), runtime.num_workers)
    dtype = autocast_dtype(precision)
    out: dict[int, Tensor] = {}
    for batch in loader:
        with torch.autocast(runtime.device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = model(batch.waveform.to(runtime.device), batch.lengths.to(runtime.device),
                      data.text_of(batch.index, runtime.device))
        for i, row in zip(batch.index.tolist(), y.float().cpu()):
            out[i] = row
    model.train(was_training)
    return torch.stack([out[i] for i in indices])


@torch.no_grad()
def frame_statistics(model: FinetuneModel, data: FoldData, indices: list[int], runtime: Runtime, precision: str,
                     budget: int) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and 1/std of the head's input frames over ``indices`` (whole inputs, the model as it
    is now, in eval mode), as the probe's ``--standardize`` computes them over stored features."""
    model.eval()
    loader = make_loader(data.dataset, eval_batches(data.lengths, indices, budget), Collate(0, None, None, 0),
                         runtime.num_workers)
    dtype = autocast_dtype(precision)
    total = square = None
    count = 0
    for batch in loader:
        with torch.autocast(runtime.device.type, dtype=dtype, enabled=dtype != torch.float32):
            frames, valid = upstream_frames(model.upstream, batch.waveform.to(runtime.device),
                                            batch.lengths.to(runtime.device), model.layer)
        mask = torch.arange(frames.shape[1], device=frames.device)[None, :] < valid[:, None]
        x = frames[mask].double()
        total = x.sum(0) if total is None else total + x.sum(0)
        square = (x * x).sum(0) if square is None else square + (x * x).sum(0)
        count += x.shape[0]
    model.train()
    return standardization(total, square, count)


class Collectives:
    """The few collectives the loop needs; all no-ops in one process."""

    def __init__(self, runtime: Runtime):
        self.world = runtime.world_size

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tensorboard(path: Path, purge_step: int, enabled: bool, log):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("finetune: note: TensorBoard logs need the tensorboard package (pip install tensorboard); not written")
        return None
    return SummaryWriter(str(path), purge_step=purge_step)


@dataclass
class Schedule:
    """A fold's plan: ``updates_of(epoch)`` (each update a list of batches of dataset positions), the total and
    warm-up updates, and the first update of every epoch (``starts[e - 1]``)."""

    updates_of: Callable[[int], list[list[list[int]]]]
    total: int
    warmup: int
    starts: list[int]

    def epoch_of(self, step: int) -> int:
        """The epoch (1-based) of update ``step`` (0-based)."""
        import bisect

        return max(1, bisect.bisect_right(self.starts, step))


def schedule(data: FoldData, config: FinetuneConfig, world_size: int) -> Schedule:
    """The updates of a fold (:class:`Schedule`); a warm-up as long as the run is refused."""
    budget = int(config.batch_seconds * SAMPLE_RATE)
    max_samples = int(config.max_seconds * SAMPLE_RATE) if config.max_seconds else None
    eff = [effective_length(n, max_samples, int(config.repeat_pad * SAMPLE_RATE)) for n in data.lengths]
    longest = max((eff[i] for i in data.train), default=0)
    if longest > budget:
        raise FinetuneError(f"--batch-seconds {config.batch_seconds:g} cannot hold the longest training input of "
                            f"{data.name} ({longest / SAMPLE_RATE:.2f} s after --max-seconds cropping): give at "
                            f"least {math.ceil(longest / SAMPLE_RATE * 100) / 100:g}")
    labels = None
    if config.undersample:
        classes = data.targets.y if data.targets.task == "categorical" else data.targets.hard
        labels = np.asarray(classes)[np.asarray(data.train, dtype=np.int64)]

    def train_of(epoch: int) -> list[int]:
        if labels is None:
            return data.train
        return [data.train[i] for i in undersample(labels, config.seed, epoch)]

    def updates_of(epoch: int) -> list[list[list[int]]]:
        return epoch_updates(epoch_batches(eff, train_of(epoch), budget, config.seed, epoch), world_size,
                             config.accumulate)

    counts = [len(updates_of(e)) for e in range(1, config.epochs + 1)]
    total = sum(counts)
    starts = [int(v) for v in np.concatenate([[0], np.cumsum(counts)[:-1]])]
    warmup = int(round(config.warmup * total)) if config.warmup < 1 else int(config.warmup)
    if config.schedule not in ("constant", "exponential") and warmup >= total:
        raise FinetuneError(f"--warmup {config.warmup:g} means {warmup} warm-up updates, not fewer than the "
                            f"{total} updates of the run ({config.epochs} epochs of {data.name}); lower it")
    return Schedule(updates_of, total, warmup, starts)


class _Fold:
    """One fold's training: its state (what ``checkpoint_last.pt`` holds) and the steps :func:`train_fold` takes."""

    def __init__(self, model: FinetuneModel, loss_fn: nn.Module, data: FoldData, config: FinetuneConfig,
                 plan: FreezePlan, out_dir: Path, runtime: Runtime, settings: dict[str, Any]):
        self.model, self.loss_fn, self.data, self.config, self.plan = model, loss_fn, data, config, plan
        self.runtime, self.settings = runtime, settings
        self.device, self.world, self.rank = runtime.device, runtime.world_size, runtime.rank
        self.coll = Collectives(runtime)
        self.budget = int(config.batch_seconds * SAMPLE_RATE)
        self.max_samples = int(config.max_seconds * SAMPLE_RATE) if config.max_seconds else None
        self.pad_samples = int(config.repeat_pad * SAMPLE_RATE)
        self.plan_of = schedule(data, config, self.world)
        self.updates_of, self.total, self.warmup = self.plan_of.updates_of, self.plan_of.total, self.plan_of.warmup
        self.last_path, self.best_path = out_dir / "checkpoint_last.pt", out_dir / "checkpoint_best.pt"
        self.tb_dir = out_dir / "tb"

    # -------------------------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        """What trains (the freeze plan's upstream tensors, gradients off for the first ``freeze_updates`` updates,
        and the head; the frozen ones and the speaker encoder never get a gradient), the optimiser, schedule,
        gradient scaler and DDP wrapper; a fresh state."""
        model, config = self.model, self.config
        upstream_params = dict(model.upstream.named_parameters())
        for p in upstream_params.values():
            p.requires_grad_(False)
        self.encoder = [upstream_params[n] for n in self.plan.trainable]
        for p in self.encoder:
            p.requires_grad_(True)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(param_groups(model, self.plan, config), betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, self.total, self.warmup, config.schedule,
                                                   self.plan_of.epoch_of(step), config.lr_decay))
        self.dtype = autocast_dtype(config.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.y = _targets_tensor(self.data, self.device)
        speakers = getattr(self.loss_fn, "speaker_index", None)  # Eq. (6): each position's training-speaker index
        if speakers is not None:
            self.y = torch.stack([self.y, speakers.to(self.device)], dim=1)
        self.net: nn.Module = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None, find_unused_parameters=True)
        self.epoch, self.position, self.num_updates = 1, 0, 0
        self.selection = Selection(config.select_metric, config.patience, hint=FINETUNE_HINT)
        self.running = [0.0, 0]  # summed loss x utterances, utterances of the current epoch
        torch.manual_seed(config.seed * 1000 + self.rank)

    def restore(self) -> None:
        """Continue from ``checkpoint_last.pt`` when there is one (written with the same settings)."""
        blob = read_checkpoint(self.last_path)
        if blob is None:
            return
        if blob.get("settings") != self.settings:
            raise FinetuneError(f"{self.last_path}: written with other settings; re-run with the options of that run "
                                f"or another --out")
        load_model_state(self.model, blob["model"], self.last_path)
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.scaler.load_state_dict(blob["scaler"])
        self.epoch, self.position, self.num_updates = blob["epoch"], blob["position"], blob["num_updates"]
        self.selection.restore(blob["selection"], blob["history"])
        self.running = blob["running"]
        rng = blob["rng"][self.rank]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.runtime.main:
            self.runtime.log(f"finetune: {self.data.name}: resuming at update {self.num_updates} (epoch {self.epoch}, "
                             f"update {self.position} of it) from {self.last_path}")

    def save_last(self) -> None:
        device = self.device
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        states = self.coll.gather(rng)
        if self.runtime.main:
            _save(self.last_path, {"format": CHECKPOINT_FORMAT, "version": 1, "settings": self.settings,
                                   "epoch": self.epoch, "position": self.position, "num_updates": self.num_updates,
                                   "model": _model_state(self.model), "optimizer": self.optimizer.state_dict(),
                                   "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                                   "rng": states, "selection": self.selection.state(),
                                   "history": self.selection.history, "running": self.running})

    @contextlib.contextmanager
    def monitors(self):
        """TensorBoard writer, progress bar and per-update checksums (as enabled), closed whatever happens."""
        from tqdm import tqdm

        runtime = self.runtime
        self.writer = _tensorboard(self.tb_dir, self.num_updates, runtime.tensorboard and runtime.main, runtime.log)
        self.bar = tqdm(total=self.total, initial=self.num_updates, unit="update", desc=self.data.name,
                        dynamic_ncols=True, disable=not (runtime.progress and runtime.main), leave=False)
        self.checksums = None
        if runtime.checksum_dir is not None:
            runtime.checksum_dir.mkdir(parents=True, exist_ok=True)
            self.checksums = open(runtime.checksum_dir / f"{self.data.name}.rank{self.rank}.txt", "a")
        try:
            yield
        finally:
            self.bar.close()
            if self.writer is not None:
                self.writer.close()
            if self.checksums is not None:
                self.checksums.close()

    # -------------------------------------------------------------------------------------------- an epoch
    def train_epoch(self) -> None:
        """The remaining updates of the current epoch (a resumed epoch starts at its saved update)."""
        config, data, W, A, device = self.config, self.data, self.world, self.config.accumulate, self.device
        updates = self.updates_of(self.epoch)
        mine = [b for u in updates[self.position:] for b in (u[a * W + self.rank] for a in range(A))]
        batches = iter(make_loader(data.dataset, mine, Collate(config.seed, self.epoch, self.max_samples,
                                                               self.pad_samples), self.runtime.num_workers))
        while self.position < len(updates):
            encoder_on = self.num_updates >= config.freeze_updates
            for p in self.encoder:
                p.requires_grad_(encoder_on)
            for a in range(A):
                batch = next(batches)
                sync = contextlib.nullcontext() if W == 1 or a == A - 1 else self.net.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                        outputs = self.net(batch.waveform.to(device), batch.lengths.to(device),
                                           data.text_of(batch.index, device))
                    loss = self.loss_fn(outputs.float(), self.y[batch.index.to(device)])
                    self.scaler.scale(loss / A).backward()
                self.running[0] += float(loss.detach()) * len(batch.index)
                self.running[1] += len(batch.index)
            gnorm = self._step()
            self.num_updates += 1
            self.position += 1
            self._monitor(loss, gnorm)
            if (config.eval_interval_updates and self.num_updates % config.eval_interval_updates == 0
                    and self.position < len(updates) and data.valid):
                shown = self._select()
                if self.runtime.main:
                    self.runtime.log(f"finetune: {data.name}: update {self.num_updates}/{self.total} (epoch "
                                     f"{self.epoch}){shown}")
            if (config.save_interval_updates and self.num_updates % config.save_interval_updates == 0
                    and self.position < len(updates)):
                self.save_last()

    def _step(self) -> float:
        """Unscale, clip, step the optimiser, the scaler and the schedule. -> the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        live = [p for p in self.trainable if p.grad is not None]
        gnorm = (float(torch.nn.utils.clip_grad_norm_(live, self.config.clip_norm)) if self.config.clip_norm > 0
                 else float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in live]))))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return gnorm

    def _monitor(self, loss: Tensor, gnorm: float) -> None:
        n = self.num_updates
        if self.checksums is not None:
            self.checksums.write(f"{n} {_checksum(self.model)}\n")
            self.checksums.flush()
        if self.writer is not None:
            self.writer.add_scalar("train/loss", float(loss.detach()), n)
            self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], n)
            self.writer.add_scalar("train/gnorm", gnorm, n)
        self.bar.set_postfix(epoch=self.epoch, loss=f"{self.running[0] / max(self.running[1], 1):.4f}", refresh=False)
        self.bar.update(1)

    def _select(self) -> str:
        """The dev score (first process), the selection (every process, from the broadcast scores), the best
        checkpoint. -> what the log line shows ("" without a dev set)."""
        config, data, runtime = self.config, self.data, self.runtime
        decision = self._dev_scores() if runtime.main and data.valid else None
        decision = self.coll.broadcast(decision)
        if decision is None:
            return ""
        if "error" in decision:
            raise DivergenceError(decision["error"])
        scores, metric, note = decision["scores"], config.select_metric, ""
        if self.selection.valid_epoch(self.epoch, scores, self.num_updates):
            if runtime.main:
                _save(self.best_path, {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": self.epoch,
                                       "update": self.num_updates, "valid": scores, "model": _model_state(self.model)})
            note = " (best)"
        elif self.selection.stopped:
            note = f" (no improvement for {config.patience} scoring(s): stopping at the end of the epoch)"
        if self.writer is not None:
            for k, v in scores.items():
                self.writer.add_scalar(f"valid/{k}", v, self.num_updates)
        return (f"; valid {METRIC_NAMES.get(metric, metric)} {format_metric(metric, scores[metric])}, loss "
                f"{scores['loss']:.4f}{note}")

    def end_epoch(self, epoch_start: float) -> None:
        """The training loss (a non-finite one stops the fold), the dev score and selection (:meth:`_select`), the
        log line; then ``checkpoint_last.pt`` at the start of the next epoch."""
        config, data, runtime = self.config, self.data, self.runtime
        train_loss = self.running[0] / max(self.running[1], 1)
        self.selection.train_epoch(train_loss, self.epoch)
        self.running = [0.0, 0]
        shown = self._select()
        if runtime.main:
            runtime.log(f"finetune: {data.name}: epoch {self.epoch}/{config.epochs}, {self.num_updates}/{self.total} "
                        f"updates: train loss {train_loss:.4f}{shown} ({time.perf_counter() - epoch_start:.1f}s)")
        self.epoch += 1
        self.position = 0
        self.save_last()

    def _dev_scores(self) -> dict[str, Any]:
        data, device = self.data, self.device
        outputs = evaluate(self.model, data, data.valid, self.runtime, self.config.precision, self.budget)
        try:
            self.selection.check_outputs(outputs.numpy(), self.epoch)
        except DivergenceError as e:  # every process raises it after the broadcast
            return {"error": str(e)}
        predictions = self.loss_fn.activate(outputs).numpy()
        if data.scaling is not None:
            predictions = predictions * data.scaling[1] + data.scaling[0]
        idx = np.asarray(data.valid)
        hard = None if data.targets.hard is None else data.targets.hard[idx]
        scores = fast_scores(data.targets.task, predictions, data.targets.y[idx], hard)
        scores["loss"] = float(self.loss_fn(outputs.to(device), self.y[torch.as_tensor(idx, device=device)]))
        return {"scores": {k: float(v) for k, v in scores.items()}}

    # -------------------------------------------------------------------------------------------- the outcome
    def outcome(self, seconds: float) -> TrainOutcome:
        """The kept weights (the best dev epoch's, read back on the first process; the last epoch's without dev)."""
        best_state = _model_state(self.model)
        epochs_run = self.epoch - 1
        if self.data.valid and self.runtime.main:
            best = read_checkpoint(self.best_path)
            if best is None:
                raise FinetuneError(f"{self.best_path}: missing; delete {self.last_path} to retrain this fold")
            best_state = best["model"]
        best_epoch = self.selection.best_epoch if self.data.valid else epochs_run
        best_update = self.selection.best_step if self.data.valid else self.num_updates
        return TrainOutcome(best_state, best_epoch, epochs_run, self.num_updates, dict(self.selection.valid),
                            self.warmup, self.total, self.selection.curves(), seconds, best_update,
                            list(self.selection.warnings))


def train_fold(model: FinetuneModel, loss_fn: nn.Module, data: FoldData, config: FinetuneConfig, plan: FreezePlan,
               out_dir: Path, runtime: Runtime, settings: dict[str, Any]) -> TrainOutcome:
    """Train ``model`` on ``data.train``, select on ``data.valid``; resume from ``out_dir/checkpoint_last.pt``.
    -> the selected weights (on every process; only the first process's are scored and exported)."""
    t0 = time.perf_counter()
    fold = _Fold(model, loss_fn, data, config, plan, out_dir, runtime, settings)
    fold.setup()
    fold.restore()
    with fold.monitors():
        model.train()
        while fold.epoch <= config.epochs and not fold.selection.stopped:
            epoch_start = time.perf_counter()
            fold.train_epoch()
            fold.end_epoch(epoch_start)
    return fold.outcome(time.perf_counter() - t0)
