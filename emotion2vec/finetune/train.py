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
the weights of the epoch with the best dev score (the task's metric or the loss; ties keep the earlier epoch).
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
from ..downstream.tasks import is_better
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

    def updates_of(epoch: int) -> list[list[list[int]]]:
        return epoch_updates(epoch_batches(eff, data.train, budget, config.seed, epoch), world_size, config.accumulate)

    total = sum(len(updates_of(e)) for e in range(1, config.epochs + 1))
    warmup = int(round(config.warmup * total)) if config.warmup < 1 else int(config.warmup)
    if config.schedule != "constant" and warmup >= total:
        raise FinetuneError(f"--warmup {config.warmup:g} means {warmup} warm-up updates, not fewer than the "
                            f"{total} updates of the run ({config.epochs} epochs of {data.name}); lower it")
    return updates_of, total, warmup


def train_fold(model: FinetuneModel, loss_fn: nn.Module, data: FoldData, config: FinetuneConfig, plan: FreezePlan,
               out_dir: Path, runtime: Runtime, settings: dict[str, Any]) -> TrainOutcome:
    """Train ``model`` on ``data.train``, select on ``data.valid``; resume from ``out_dir/checkpoint_last.pt``.
    -> the selected weights (on every process; only the first process's are scored and exported)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    device, W, rank, A = runtime.device, runtime.world_size, runtime.rank, config.accumulate
    coll = Collectives(runtime)
    budget = int(config.batch_seconds * SAMPLE_RATE)
    max_samples = int(config.max_seconds * SAMPLE_RATE) if config.max_seconds else None
    pad_samples = int(config.repeat_pad * SAMPLE_RATE)
    updates_of, total, warmup = schedule(data, config, W)

    # what trains: upstream tensors of the freeze plan (their gradients are off for the first freeze_updates
    # updates) and the head; the frozen ones and the speaker encoder never get a gradient
    upstream_params = dict(model.upstream.named_parameters())
    for name, p in upstream_params.items():
        p.requires_grad_(False)
    encoder = [upstream_params[n] for n in plan.trainable]
    for p in encoder:
        p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, plan, config), betas=config.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, config.schedule))
    dtype = autocast_dtype(config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    y = _targets_tensor(data.targets, device)
    net: nn.Module = model
    if W > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)

    # state: fresh, or restored from checkpoint_last
    last_path, best_path = out_dir / "checkpoint_last.pt", out_dir / "checkpoint_best.pt"
    epoch, position, num_updates = 1, 0, 0
    selection: dict[str, Any] = {"best": None, "best_epoch": 0, "bad": 0, "valid": {}, "stopped": False}
    history: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
    if config.select_metric != "loss":
        history[f"valid_{config.select_metric}"] = []
    running = [0.0, 0]  # summed loss x utterances, utterances of the current epoch
    torch.manual_seed(config.seed * 1000 + rank)
    blob = read_checkpoint(last_path)
    if blob is not None:
        if blob.get("settings") != settings:
            raise FinetuneError(f"{last_path}: written with other settings; re-run with the options of that run or "
                                f"another --out")
        load_model_state(model, blob["model"], last_path)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        scaler.load_state_dict(blob["scaler"])
        epoch, position, num_updates = blob["epoch"], blob["position"], blob["num_updates"]
        selection, history, running = blob["selection"], blob["history"], blob["running"]
        rng = blob["rng"][rank]
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
        if runtime.main:
            runtime.log(f"finetune: {data.name}: resuming at update {num_updates} (epoch {epoch}, update "
                        f"{position} of it) from {last_path}")

    def save_last() -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        states = coll.gather(rng)
        if runtime.main:
            _save(last_path, {"format": CHECKPOINT_FORMAT, "version": 1, "settings": settings, "epoch": epoch,
                              "position": position, "num_updates": num_updates, "model": _model_state(model),
                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict(), "rng": states, "selection": selection,
                              "history": history, "running": running})

    writer = _tensorboard(out_dir / "tb", num_updates, runtime.tensorboard and runtime.main, runtime.log)
    bar = tqdm(total=total, initial=num_updates, unit="update", desc=data.name, dynamic_ncols=True,
               disable=not (runtime.progress and runtime.main), leave=False)
    checksums = None
    if runtime.checksum_dir is not None:
        runtime.checksum_dir.mkdir(parents=True, exist_ok=True)
        checksums = open(runtime.checksum_dir / f"{data.name}.rank{rank}.txt", "a")
    model.train()
    try:
        while epoch <= config.epochs and not selection["stopped"]:
            updates = updates_of(epoch)
            mine = [b for u in updates[position:] for b in (u[a * W + rank] for a in range(A))]
            batches = iter(make_loader(data.dataset, mine, Collate(config.seed, epoch, max_samples, pad_samples),
                                       runtime.num_workers))
            epoch_start = time.perf_counter()
            while position < len(updates):
                encoder_on = num_updates >= config.freeze_updates
                for p in encoder:
                    p.requires_grad_(encoder_on)
                for a in range(A):
                    batch = next(batches)
                    sync = contextlib.nullcontext() if W == 1 or a == A - 1 else net.no_sync()
                    with sync:
                        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                            outputs = net(batch.waveform.to(device), batch.lengths.to(device),
                                          data.text_of(batch.index, device))
                        loss = loss_fn(outputs.float(), y[batch.index.to(device)])
                        scaler.scale(loss / A).backward()
                    running[0] += float(loss.detach()) * len(batch.index)
                    running[1] += len(batch.index)
                scaler.unscale_(optimizer)
                live = [p for p in trainable if p.grad is not None]
                gnorm = (float(torch.nn.utils.clip_grad_norm_(live, config.clip_norm)) if config.clip_norm > 0
                         else float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in live]))))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                num_updates += 1
                position += 1
                if checksums is not None:
                    checksums.write(f"{num_updates} {_checksum(model)}\n")
                    checksums.flush()
                if writer is not None:
                    writer.add_scalar("train/loss", float(loss.detach()), num_updates)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], num_updates)
                    writer.add_scalar("train/gnorm", gnorm, num_updates)
                bar.set_postfix(epoch=epoch, loss=f"{running[0] / max(running[1], 1):.4f}", refresh=False)
                bar.update(1)
                if (config.save_interval_updates and num_updates % config.save_interval_updates == 0
                        and position < len(updates)):
                    save_last()

            # end of epoch: dev score, selection, patience
            train_loss = running[0] / max(running[1], 1)
            history["train_loss"].append(round(train_loss, 6))
            running = [0.0, 0]
            note = ""
            decision = None
            if runtime.main and data.valid:
                outputs = evaluate(model, data, data.valid, runtime, config.precision, budget)
                predictions = loss_fn.activate(outputs).numpy()
                idx = np.asarray(data.valid)
                hard = None if data.targets.hard is None else data.targets.hard[idx]
                scores = fast_scores(data.targets.task, predictions, data.targets.y[idx], hard)
                scores["loss"] = float(loss_fn(outputs.to(device), y[torch.as_tensor(idx, device=device)]))
                decision = {"scores": {k: float(v) for k, v in scores.items()}}
            decision = coll.broadcast(decision)
            if decision is not None:
                scores, metric = decision["scores"], config.select_metric
                score = scores[metric]
                history["valid_loss"].append(round(scores["loss"], 6))
                if metric != "loss":
                    history[f"valid_{metric}"].append(round(score, 6))
                if is_better(score, selection["best"], metric):
                    selection.update(best=score, best_epoch=epoch, bad=0, valid=scores)
                    if runtime.main:
                        _save(best_path, {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": epoch,
                                          "valid": scores, "model": _model_state(model)})
                    note = " (best)"
                else:
                    selection["bad"] += 1
                    if config.patience is not None and selection["bad"] >= config.patience:
                        selection["stopped"] = True
                        note = f" (no improvement for {config.patience} epoch(s): stopping)"
                if writer is not None:
                    for k, v in scores.items():
                        writer.add_scalar(f"valid/{k}", v, num_updates)
                shown = f"; valid {METRIC_NAMES.get(metric, metric)} {_fmt(metric, score)}, loss {scores['loss']:.4f}"
            else:
                shown = ""
            if runtime.main:
                runtime.log(f"finetune: {data.name}: epoch {epoch}/{config.epochs}, {num_updates}/{total} updates: "
                            f"train loss {train_loss:.4f}{shown}{note} ({time.perf_counter() - epoch_start:.1f}s)")
            epoch += 1
            position = 0
            save_last()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if checksums is not None:
            checksums.close()

    best_epoch = selection["best_epoch"]
    best_state = _model_state(model)
    if data.valid and runtime.main:
        best = read_checkpoint(best_path)
        if best is None:
            raise FinetuneError(f"{best_path}: missing; delete {last_path} to retrain this fold")
        best_state = best["model"]
    elif not data.valid:
        best_epoch = epoch - 1
    return TrainOutcome(best_state, best_epoch, epoch - 1, num_updates, dict(selection["valid"]), warmup, total,
                        {k: v for k, v in history.items() if v}, time.perf_counter() - t0)
