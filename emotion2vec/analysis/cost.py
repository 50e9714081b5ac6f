"""What a model costs: parameters, weight size, FLOPs per second of audio and measured times, all from one run.

The tables this reproduces: Gavali & Verma's runtimes (their Table 5: time to fine-tune each SSL model) and model
sizes on disk (Table 6), and Park et al.'s computation time per input length (their Table 7). Run it through
``benchmarks/cost.py MODEL...``, which measures every model given in the same process and prints the machine line,
so that the figures of one table are comparable with each other and never with another machine's.

Per model (any spec :func:`~emotion2vec.models.upstream.load_upstream` takes: a checkpoint, ``hf:NAME``, ``cnn14``,
a fine-tuned export, whose classification head is then part of the forward):

``parameters``            every parameter of the upstream (and of the head of an export)
``weight_mb``             the float32 state dict (parameters and buffers), 10^6 bytes
``disk_mb``               the weight files of a local model as they lie on disk (None for a hub name)
``gflops_per_audio_s``    forward FLOPs (matrix products and convolutions, 2 per multiply-add, as
                          ``torch.utils.flop_counter`` counts them) of one clip, divided by its seconds; attention makes
                          this grow with the clip's length, so it is given per length
``forward_ms``            the measured forward time of one clip (batch 1, inference mode; the minimum of ``repeats``)
``train_step_s``          one fine-tuning update measured: forward, backward and an Adam step of the upstream (its
                          convolutional front end frozen where it has one, layerdrop off) and a mean-pooled linear
                          head over ``classes`` classes, on ``batch`` clips of the first length (the minimum of ``repeats``)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from . import AnalysisError

__all__ = ["ModelCost", "forward_flops", "measure_model", "measure_costs", "cost_table", "disk_bytes"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass
class ModelCost:
    model: str
    source: str
    parameters: int
    weight_mb: float
    disk_mb: float | None
    seconds: list[float]
    gflops_per_audio_s: list[float]
    forward_ms: list[float]
    train_step_s: float | None = None
    batch: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def disk_bytes(spec: str) -> int | None:
    """Bytes of the weight files behind a local model spec (a file, a folder, ``hf:FOLDER``, ``cnn14:FILE``); None
    for a hub name or a fresh initialisation."""
    text = spec.split(":", 1)[1] if spec.startswith(("hf:", "cnn14:")) else spec
    p = Path(text)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    return None


class _Forward(nn.Module):
    """waveforms (B, N), valid samples (B,) -> the upstream's frames of ``layer`` (and the head's outputs)."""

    def __init__(self, upstream: nn.Module, layer: int, head: nn.Module | None = None):
        super().__init__()
        self.upstream, self.layer, self.head = upstream, layer, head

    def forward(self, waveform: Tensor, lengths: Tensor) -> Tensor:
        from ..finetune.heads import upstream_frames

        frames, valid = upstream_frames(self.upstream, waveform, lengths, self.layer)
        if self.head is None:
            return frames
        speaker = getattr(self.head, "speaker", None)
        if speaker is not None:
            return self.head(frames, valid, speaker(waveform, lengths))
        return self.head(frames, valid)


def forward_flops(module: Callable[[Tensor, Tensor], Any], waveform: Tensor) -> int:
    """FLOPs of one inference forward of ``waveform`` (B, N) as ``torch.utils.flop_counter`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long, device=waveform.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(waveform, lengths)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def _train_step_time(upstream: nn.Module, layer: int, batch: int, samples: int, classes: int, repeats: int,
                     device: torch.device) -> float:
    from ..finetune.heads import upstream_frames
    from ..finetune.model import FinetuneError, disable_layerdrop, plan_freeze

    try:
        frozen = set(plan_freeze(upstream, "cnn", None, "model").frozen)
    except FinetuneError:
        frozen = set()
    for name, p in upstream.named_parameters():
        p.requires_grad_(name not in frozen)
    head = nn.Linear(upstream.cfg.embed_dim, classes).to(device)
    params = [p for p in upstream.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(batch, samples, generator=g) * 0.1).to(device)
    lengths = torch.full((batch,), samples, dtype=torch.long, device=device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    disable_layerdrop(upstream)  # as fine-tuning does for a head on the hidden states: every step runs every block
    upstream.train()

    def step() -> None:
        frames, _ = upstream_frames(upstream, x, lengths, layer)
        loss = nn.functional.cross_entropy(head(frames.mean(1)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    try:
        return _best_time(step, repeats, device)
    finally:
        upstream.eval()
        for p in upstream.parameters():
            p.requires_grad_(False)


def measure_model(spec: str, seconds: Sequence[float] = (4.0,), batch: int = 4, classes: int = 8,
                  repeats: int = 3, train: bool = True, device: str | torch.device = "cpu",
                  trust: bool = False) -> ModelCost:
    """Every figure of :class:`ModelCost` for one model spec (see the module docstring)."""
    from ..models.upstream import load_upstream
    from ..recognize.recognizer import build_head

    if not seconds or min(seconds) <= 0:
        raise AnalysisError(f"clip lengths {list(seconds)}: give positive seconds")
    if batch < 1 or repeats < 1 or classes < 2:
        raise AnalysisError(f"batch {batch}, repeats {repeats}, classes {classes}: batch and repeats >= 1, "
                            f"classes >= 2")
    device = torch.device(device)
    upstream, info = load_upstream(spec, trust=trust)
    upstream = upstream.to(device).eval()
    for p in upstream.parameters():
        p.requires_grad_(False)
    head, layer, notes = None, upstream.cfg.num_layers - 1, []
    if info.classifier is not None:
        head = build_head(info.classifier.kind, info.classifier.state, info.classifier.config, spec).to(device).eval()
        layer = int(info.classifier.config.get("layer", -1)) % upstream.cfg.num_layers
        notes.append(f"with its {info.classifier.kind} head")
    module = _Forward(upstream, layer, head).eval()
    parameters = sum(p.numel() for p in module.parameters())
    weight = sum(t.numel() * 4 for t in module.state_dict().values() if t.is_floating_point())
    disk = disk_bytes(spec)
    g = torch.Generator().manual_seed(0)
    gflops, forward_ms = [], []
    for s in seconds:
        wav = (torch.randn(1, int(round(s * 16000)), generator=g) * 0.1).to(device)
        lengths = torch.tensor([wav.shape[1]], device=device)
        gflops.append(forward_flops(module, wav) / 1e9 / s)
        with torch.inference_mode():
            forward_ms.append(1000 * _best_time(lambda: module(wav, lengths), repeats, device))
    step = None
    if train:
        step = _train_step_time(upstream, layer, batch, int(round(seconds[0] * 16000)), classes, repeats, device)
    return ModelCost(spec, info.source, parameters, weight / 1e6, None if disk is None else disk / 1e6,
                     [float(s) for s in seconds], gflops, forward_ms, step, batch if train else 0, notes)


def measure_costs(specs: Sequence[str], **kwargs: Any) -> list[ModelCost]:
    """:func:`measure_model` for every spec, in order, in this process (one run: comparable figures)."""
    if not specs:
        raise AnalysisError("no models given")
    out = []
    for spec in specs:
        out.append(measure_model(spec, **kwargs))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def cost_table(costs: Sequence[ModelCost]) -> str:
    """Markdown: one row per model; parameters, sizes, then GFLOPs per audio second and forward time per clip
    length, then the training step."""
    lengths = costs[0].seconds if costs else []
    if any(c.seconds != lengths for c in costs):
        raise AnalysisError("every model of one table must be measured at the same clip lengths")
    cols = ["model", "parameters (M)", "weights fp32 (MB)", "on disk (MB)"]
    cols += [f"GFLOPs / audio s ({s:g} s)" for s in lengths] + [f"forward ms ({s:g} s)" for s in lengths]
    batch = next((c.batch for c in costs if c.train_step_s is not None), 0)
    if batch:
        cols.append(f"train step s ({batch} x {lengths[0]:g} s)")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for c in costs:
        row = [f"`{c.model}`" + (f" ({'; '.join(c.notes)})" if c.notes else ""), f"{c.parameters / 1e6:.2f}",
               f"{c.weight_mb:.1f}", _num(c.disk_mb, ".1f")]
        row += [f"{v:.2f}" for v in c.gflops_per_audio_s] + [f"{v:.1f}" for v in c.forward_ms]
        if batch:
            row.append(_num(c.train_step_s, ".3f"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
