"""Training one fold end to end: AdamW, warm-up then linear / cosine decay, gradient accumulation and clipping,
autocast, DDP, selection on the dev set with patience, and checkpoints that make a resume exact.

An update takes ``accumulate`` micro-batches on each of ``world_size`` processes (:func:`.data.epoch_updates`); each
micro-batch's loss is its mean over utterances, divided by ``accumulate``; DDP averages the gradients over the
processes; then the trainable gradients are clipped to ``clip_norm`` (global L2 norm), AdamW steps and the schedule
advances. The learning rate rises linearly from 0 over the warm-up updates, then decays to 0 at the last update
(``linear``, ``cosine``) or stays (``constant``); every parameter group keeps its own peak (head lr, layer-wise
decay).

``checkpoint_last.pt`` is written at the end of every epoch (and every ``save_interval_updates`` updates) with the
model, the optimiser, the schedule, the gradient scaler, every process's torch RNG states, the data position (epoch
and update within it; the batches themselves are a function of (seed, epoch), :mod:`.data`), the selection state and
the history. A re-run after any kill restores it and continues with the next update: the update sequence, and hence
the final weights, equal those of an uninterrupted run (same device and thread count). ``checkpoint_best.pt`` holds
the weights of the epoch with the best dev score (the task's metric or the loss; ties keep the earlier epoch: the
probe's rule, :class:`~emotion2vec.downstream.runs.Selection`).

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

from ..downstream.metrics import METRIC_NAMES, PERCENT_METRICS, fast_scores
from ..downstream.targets import Targets
from ..downstream.runs import Selection
from ..downstream.training import standardization
from ..io.atomic import atomic_write
from ..io.audio import SAMPLE_RATE
from . import FinetuneError
from .config import FinetuneConfig
from .data import Collate, WaveformDataset, effective_length, epoch_batches, epoch_updates, eval_batches, make_loader
from .heads import upstream_frames
from .model import FinetuneModel, FreezePlan, param_groups

__all__ = ["CHECKPOINT_FORMAT", "Runtime", "FoldData", "TrainOutcome", "Collectives", "train_fold", "evaluate",
           "lr_factor", "autocast_dtype", "read_checkpoint", "load_model_state", "frame_statistics", "schedule"]

CHECKPOINT_FORMAT = "emotion2vec-finetune-checkpoint"
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


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of every group's peak lr before update ``step`` (0-based) of ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _targets_tensor(targets: Targets, device: torch.device) -> Tensor:
    dtype = torch.long if targets.task == "categorical" else torch.float32
    return torch.as_tensor(targets.y, dtype=dtype).to(device)


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


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.4f}"


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


def schedule(data: FoldData, config: FinetuneConfig, world_size: int
             ) -> tuple[Callable[[int], list[list[list[int]]]], int, int]:
    """(updates of an epoch, total updates, warm-up updates) of a fold; a warm-up as long as the run is refused."""
    budget = int(config.batch_seconds * SAMPLE_RATE)
    max_samples = int(config.max_seconds * SAMPLE_RATE) if config.max_seconds else None
    eff = [effective_length(n, max_samples, int(config.repeat_pad * SAMPLE_RATE)) for n in data.lengths]
    longest = max((eff[i] for i in data.train), default=0)
    if longest > budget:
        raise FinetuneError(f"--batch-seconds {config.batch_seconds:g} cannot hold the longest training input of "
                            f"{data.name} ({longest / SAMPLE_RATE:.2f} s after --max-seconds cropping): give at "
                            f"least {math.ceil(longest / SAMPLE_RATE * 100) / 100:g}")

    def updates_of(epoch: int) -> list[list[list[int]]]:
        return epoch_updates(epoch_batches(eff, data.train, budget, config.seed, epoch), world_size, config.accumulate)

    total = sum(len(updates_of(e)) for e in range(1, config.epochs + 1))
    warmup = int(round(config.warmup * total)) if config.warmup < 1 else int(config.warmup)
    if config.schedule != "constant" and warmup >= total:
        raise FinetuneError(f"--warmup {config.warmup:g} means {warmup} warm-up updates, not fewer than the "
                            f"{total} updates of the run ({config.epochs} epochs of {data.name}); lower it")
    return updates_of, total, warmup


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
        self.updates_of, self.total, self.warmup = schedule(data, config, self.world)
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
            self.optimizer, lambda step: lr_factor(step, self.total, self.warmup, config.schedule))
        self.dtype = autocast_dtype(config.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.y = _targets_tensor(self.data.targets, self.device)
        self.net: nn.Module = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None, find_unused_parameters=True)
        self.epoch, self.position, self.num_updates = 1, 0, 0
        self.selection = Selection(config.select_metric, config.patience)
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

    def end_epoch(self, epoch_start: float) -> None:
        """The dev score (first process), the selection (every process, from the broadcast scores), the best
        checkpoint, the log line; then ``checkpoint_last.pt`` at the start of the next epoch."""
        config, data, runtime = self.config, self.data, self.runtime
        train_loss = self.running[0] / max(self.running[1], 1)
        self.selection.train_epoch(train_loss)
        self.running = [0.0, 0]
        note, shown = "", ""
        decision = self._dev_scores() if runtime.main and data.valid else None
        decision = self.coll.broadcast(decision)
        if decision is not None:
            scores, metric = decision["scores"], config.select_metric
            if self.selection.valid_epoch(self.epoch, scores):
                if runtime.main:
                    _save(self.best_path, {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": self.epoch,
                                           "valid": scores, "model": _model_state(self.model)})
                note = " (best)"
            elif self.selection.stopped:
                note = f" (no improvement for {config.patience} epoch(s): stopping)"
            if self.writer is not None:
                for k, v in scores.items():
                    self.writer.add_scalar(f"valid/{k}", v, self.num_updates)
            shown = (f"; valid {METRIC_NAMES.get(metric, metric)} {_fmt(metric, scores[metric])}, loss "
                     f"{scores['loss']:.4f}")
        if runtime.main:
            runtime.log(f"finetune: {data.name}: epoch {self.epoch}/{config.epochs}, {self.num_updates}/{self.total} "
                        f"updates: train loss {train_loss:.4f}{shown}{note} ({time.perf_counter() - epoch_start:.1f}s)")
        self.epoch += 1
        self.position = 0
        self.save_last()

    def _dev_scores(self) -> dict[str, dict[str, float]]:
        data, device = self.data, self.device
        outputs = evaluate(self.model, data, data.valid, self.runtime, self.config.precision, self.budget)
        predictions = self.loss_fn.activate(outputs).numpy()
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
        return TrainOutcome(best_state, best_epoch, epochs_run, self.num_updates, dict(self.selection.valid),
                            self.warmup, self.total, self.selection.curves(), seconds)


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
