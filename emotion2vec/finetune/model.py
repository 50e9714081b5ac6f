"""The model being fine-tuned: an upstream (any :func:`~emotion2vec.models.upstream.load_upstream` loads) and a head
on one of its layers, trained together; which parameters train, and at which learning rate.

Parameters are placed by depth (:func:`parameter_depths`): 0 the convolutional front end (the CNN feature encoder;
Whisper's two convolutions), 1 what sits between it and the first transformer block (projection, positional
convolution, utterance tokens, input LayerNorm), 2 + i transformer block i (emotion2vec: the prenet blocks first),
and a final LayerNorm after the last block (pre-LN Hugging Face models, Whisper) goes with the last block.

Freezing (``--freeze``): ``cnn`` (default; Wagner et al. fine-tune the transformer with the CNN frozen) freezes
depth 0; ``none`` trains everything; ``all-but-top N`` trains the top N blocks (and the head) only. A frozen
parameter never receives a gradient, so it stays bitwise unchanged. ``--freeze-updates K`` trains the head alone for
the first K updates (the encoder's gradients are off), then the encoder parameters that the freeze mode trains.

Learning rates: the head at ``head_lr``; the encoder's top block at ``lr`` and each depth below at ``layer_decay``
times the one above (layer-wise learning-rate decay; 1 = one lr for the whole encoder). Weight decay applies to
matrices and convolution kernels, not to biases, norms, scales or tokens.

Starting from a model with a classification head (an emotion2vec+ folder, or a model fine-tuned here),
``--init-head keep`` keeps that head: each class of the task takes the head's row of the same English label (or the
row ``--head-label-map DATA=HEAD`` names); classes without a row start fresh; ``new`` (default) builds a new head.
``--head-from PROBE_RUN`` starts every fold from that fold's probe head (linear probing, then fine-tuning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..downstream.heads import HeadConfig
from . import FinetuneError
from .config import FinetuneConfig
from .heads import SpeakerEncoder, UtteranceHead, upstream_frames

__all__ = ["FinetuneModel", "parameter_depths", "FreezePlan", "plan_freeze", "param_groups", "kept_head",
           "probe_head", "load_speaker_encoder", "head_config", "disable_layerdrop"]

#: (parameter-name pattern, depth rule) per upstream family; the first match wins
_FRONT_END = re.compile(r"^(feature_extractor|model\.feature_extractor|model\.conv1|model\.conv2)\.")
_BLOCK_PATTERNS = [
    (re.compile(r"^encoder\.prenet\.(\d+)\."), "prenet"),
    (re.compile(r"^encoder\.blocks\.(\d+)\."), "blocks"),
    (re.compile(r"^model\.(?:encoder\.)?layers\.(\d+)\."), "blocks"),
]


def parameter_depths(upstream: nn.Module) -> tuple[dict[str, int], int]:
    """-> ({parameter name: depth}, number of transformer blocks) (depths: see the module docstring)."""
    names = [n for n, _ in upstream.named_parameters()]
    prenet = len({m.group(1) for n in names if (m := _BLOCK_PATTERNS[0][0].match(n))})
    depths: dict[str, int] = {}
    for n in names:
        if _FRONT_END.match(n):
            depths[n] = 0
            continue
        for pattern, kind in _BLOCK_PATTERNS:
            m = pattern.match(n)
            if m:
                depths[n] = 2 + int(m.group(1)) + (prenet if kind == "blocks" and not n.startswith("model.") else 0)
                break
        else:
            depths[n] = 1
    num_blocks = max([d - 1 for d in depths.values() if d >= 2], default=0)
    hf_config = getattr(getattr(upstream, "model", None), "config", None)
    final_norm = hf_config is not None and (getattr(hf_config, "do_stable_layer_norm", False)
                                            or getattr(hf_config, "model_type", "") == "whisper")
    for n in names:
        if final_norm and re.match(r"^model\.(encoder\.)?layer_norm\.", n):
            depths[n] = 1 + num_blocks
    return depths, num_blocks


@dataclass
class FreezePlan:
    frozen: list[str]       # upstream parameters that never train
    trainable: list[str]    # upstream parameters that train (after --freeze-updates)
    num_blocks: int
    depths: dict[str, int]

    def describe(self, mode: str, top: int | None) -> str:
        what = {"cnn": "the convolutional front end frozen", "none": "nothing frozen",
                "all-but-top": f"all but the top {top} of {self.num_blocks} blocks frozen"}[mode]
        return f"{what}: {len(self.trainable)} upstream tensors train, {len(self.frozen)} frozen"


def plan_freeze(upstream: nn.Module, mode: str, top: int | None, where: str) -> FreezePlan:
    """Which upstream parameters ``--freeze mode [top]`` freezes; a mode naming layers the checkpoint does not have is
    refused by name."""
    depths, num_blocks = parameter_depths(upstream)
    if mode == "cnn":
        frozen = [n for n, d in depths.items() if d == 0]
        if not frozen:
            raise FinetuneError(f"--freeze cnn: {where} has no convolutional front end (no feature_extractor "
                                f"parameters); use --freeze none or all-but-top N")
    elif mode == "none":
        frozen = []
    else:
        if top is None or top > num_blocks:
            raise FinetuneError(f"--freeze all-but-top {top}: {where} has {num_blocks} transformer block(s); N must "
                                f"lie in 0..{num_blocks}")
        frozen = [n for n, d in depths.items() if d < 2 + num_blocks - top]
    frozen += [n for n, p in upstream.named_parameters() if not p.requires_grad and n not in frozen]  # fixed by design
    frozen_set = set(frozen)
    return FreezePlan(frozen, [n for n in depths if n not in frozen_set], num_blocks, depths)


def disable_layerdrop(upstream: nn.Module) -> bool:
    """Set every layerdrop probability of the upstream to 0, in its modules and in a Hugging Face model's config (a
    dropped block has no output for a head reading an intermediate layer, and transformers returns no hidden state
    for it at all). -> whether any was non-zero."""
    changed = False
    holders = list(upstream.modules()) + [m.config for m in upstream.modules() if hasattr(m, "config")
                                          and hasattr(m.config, "layerdrop")]
    for m in holders:
        for attr in ("layerdrop", "prenet_layerdrop"):
            if isinstance(getattr(m, attr, None), float) and getattr(m, attr) > 0:
                setattr(m, attr, 0.0)
                changed = True
    return changed


class FinetuneModel(nn.Module):
    """raw 16 kHz waveforms (B, N), valid samples (B,) -> head outputs (B, C).

    ``head`` reads block ``layer`` of ``upstream``; a speaker-aware head (an :class:`UtteranceHead` with a speaker
    encoder) also gets the speaker embedding of each waveform.
    """

    def __init__(self, upstream: nn.Module, head: nn.Module, layer: int):
        super().__init__()
        self.upstream, self.head = upstream, head
        self.layer = int(layer) % upstream.cfg.num_layers

    @property
    def speaker(self) -> SpeakerEncoder | None:
        return getattr(self.head, "speaker", None)

    def forward(self, waveform: Tensor, lengths: Tensor, text: Tensor | None = None) -> Tensor:
        """``text`` (B, T): the inputs' text vectors, for a head with ``text_dim`` (speech + text fusion)."""
        frames, valid = upstream_frames(self.upstream, waveform, lengths, self.layer)
        speaker = self.speaker(waveform, lengths) if self.speaker is not None else None
        if text is not None:
            return self.head(frames, valid, speaker, text)
        if speaker is not None:
            return self.head(frames, valid, speaker)
        return self.head(frames, valid)


def param_groups(model: FinetuneModel, plan: FreezePlan, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: the head at head_lr; trainable upstream tensors at lr * layer_decay ** (top depth - depth);
    weight decay on tensors of two or more dimensions only."""
    top = 1 + plan.num_blocks
    groups: dict[tuple[str, float, bool], list[nn.Parameter]] = {}
    params = dict(model.upstream.named_parameters())
    for name in plan.trainable:
        lr = config.lr * config.layer_decay ** max(0, top - plan.depths[name])
        p = params[name]
        groups.setdefault(("upstream", lr, p.dim() >= 2), []).append(p)
    for p in model.head.parameters():
        if p.requires_grad:
            groups.setdefault(("head", config.head_lr, p.dim() >= 2), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0, "name": part}
            for (part, lr, decay), ps in groups.items()]


def head_config(config: FinetuneConfig, dim: int, num_outputs: int) -> HeadConfig:
    return HeadConfig(dim, num_outputs, config.hidden, config.pooling,
                      "arcface" if config.head == "arcface" else "linear", config.dropout, 1, config.arcface_scale,
                      "pooled" if config.head == "wagner" else "frame")


def load_speaker_encoder(path: str, trust: bool = False) -> SpeakerEncoder:
    """The frozen speaker encoder of a ``finetune --task speaker`` export (its utterance head, or Park et al.'s
    speaker network)."""
    from ..models.upstream import load_upstream
    from .heads import classifier_from_spec

    upstream, info = load_upstream(path, trust=trust)
    spec = info.classifier
    if spec is None or spec.kind not in ("downstream", "park") or spec.config.get("task") != "speaker":
        found = "no classification head" if spec is None else f"a {spec.config.get('task') or spec.kind} head"
        raise FinetuneError(f"--speaker-model {path}: not a speaker model ({found}); train one with "
                            f"`emotion2vec finetune --task speaker` and give its exported folder")
    if spec.config.get("fusion"):
        raise FinetuneError(f"--speaker-model {path}: a speaker-aware model cannot itself be the speaker model")
    if spec.kind == "park":  # Park et al.'s speaker network: its max-pooled attention-block output H_id, unscaled
        from .park import park_from_spec

        head = park_from_spec(spec.state, spec.config, path)
        return SpeakerEncoder(upstream, head, int(spec.config.get("layer", -1)), normalize=False)
    head = classifier_from_spec(spec.state, spec.config, path)
    return SpeakerEncoder(upstream, head, int(spec.config.get("layer", -1)))


def probe_head(run: str, fold: str, names: Sequence[str], config: FinetuneConfig, dim: int, layer: int,
               checkpoint: str) -> tuple[UtteranceHead, list[str]]:
    """``--head-from RUN``: fold ``fold``'s head of the probe run ``RUN`` (``heads/<fold>.pt``, with its
    standardisation), checked against the fine-tuning task -> (head, notes). Linear probing, then fine-tuning (LP-FT)
    starts the encoder's training from a head that already reads its features."""
    from ..downstream.heads import load_head
    from ..extract.run import checkpoint_stamp

    path = Path(run) / "heads" / f"{fold}.pt"
    if not path.exists():
        raise FinetuneError(f"--head-from {run}: no head for fold {fold} ({path}); the probe run must cover the same "
                            f"folds")
    head, meta = load_head(path)
    task = config.downstream_task
    problems = []
    if meta.get("task") != task:
        problems.append(f"task {meta.get('task')!r}, not {task!r}")
    if list(meta.get("names") or []) != list(names):
        problems.append(f"classes/targets {meta.get('names')}, not {list(names)}")
    stored = list(meta.get("stored_layers") or [])
    read = meta.get("layer") if meta.get("layer") is not None or len(stored) != 1 else stored[0]
    if read != layer or head.config.num_layers != 1:
        problems.append(f"layer {read!r}, not {layer}")
    if head.config.input_dim != dim:
        problems.append(f"{head.config.input_dim}-dim features, not {dim}")
    wanted = head_config(config, dim, len(names))
    problems += [f"{k} {getattr(head.config, k)!r} (asked: {getattr(wanted, k)!r})"
                 for k in ("hidden", "pooling", "output", "dropout") if getattr(head.config, k) != getattr(wanted, k)]
    if problems:
        raise FinetuneError(f"--head-from {path}: the probe's head does not fit this run: " + "; ".join(problems))
    notes = []
    settings = meta.get("feature_settings") or {}
    if settings.get("checkpoint") != checkpoint or settings.get("checkpoint_stamp") != checkpoint_stamp(checkpoint):
        notes.append(f"--head-from: the probe's features came from {settings.get('checkpoint')!r} "
                     f"({settings.get('checkpoint_stamp')}), this run fine-tunes {checkpoint!r}")
    start = UtteranceHead(head.config)
    start.head.load_state_dict(head.state_dict())
    return start, notes


def _match_rows(names: Sequence[str], labels: Sequence[str], mapping: dict[str, str], where: str
                ) -> tuple[dict[int, int], list[str]]:
    """Class index -> head row, and notes. A class matches the row ``mapping`` names (raw or English label), else
    the row whose English label equals the class (case-insensitive)."""
    from ..recognize.recognizer import display_label, is_unused

    by_name: dict[str, int] = {}
    for j, raw in enumerate(labels):
        if not is_unused(raw):
            by_name.setdefault(str(raw).strip().lower(), j)
            by_name.setdefault(display_label(raw).lower(), j)
    absent = sorted(k for k in mapping if k not in {str(n).lower() for n in names})
    if absent:
        raise FinetuneError(f"--head-label-map names data label(s) {', '.join(absent)} that the task does not have "
                            f"(its classes: {', '.join(names)})")
    unknown = sorted(v for v in mapping.values() if v and v not in by_name)
    if unknown:
        raise FinetuneError(f"--head-label-map names head label(s) {', '.join(unknown)} that {where} does not have "
                            f"(its labels: {', '.join(labels)})")
    rows: dict[int, int] = {}
    for c, name in enumerate(names):
        key = mapping.get(name.lower(), name.lower())
        if key in by_name:
            rows[c] = by_name[key]
    if not rows:
        raise FinetuneError(f"--init-head keep: none of the classes {list(names)} matches a label of the head of "
                            f"{where} ({', '.join(labels)}); map them with --head-label-map DATA=HEAD,... or use "
                            f"--init-head new")
    kept = ", ".join(f"{names[c]} <- {labels[j]}" for c, j in rows.items())
    fresh = [n for c, n in enumerate(names) if c not in rows]
    return rows, [f"kept head rows: {kept}" + (f"; new rows: {', '.join(fresh)}" if fresh else "")]


def _copy_rows(new: nn.Module, old: dict[str, Tensor], rows: dict[int, int]) -> None:
    with torch.no_grad():
        for name, p in new.named_parameters():
            if name in old:
                for c, j in rows.items():
                    p[c].copy_(old[name][j])


def kept_head(spec, names: Sequence[str], config: FinetuneConfig, dim: int, where: str) -> tuple[nn.Module, list[str]]:
    """``--init-head keep``: the start checkpoint's classification head over the task's classes -> (head, notes).

    ``mean_linear`` (emotion2vec+: mean over frames, Linear) stays that; a head fine-tuned here keeps its config.
    Rows of the output layer follow :func:`_match_rows`; everything before the output layer is kept as it is.
    """
    from ..downstream.corpora import parse_label_map
    from ..recognize.recognizer import MeanLinearHead

    if config.task == "regression":
        raise FinetuneError("--init-head keep applies to class tasks: a regression head has no class rows to keep")
    mapping = parse_label_map(config.head_label_map)
    rows, notes = _match_rows(names, spec.labels, mapping, where)
    if spec.kind == "mean_linear":
        asked = {"--head": (config.head, "linear"), "--pooling": (config.pooling, "mean"),
                 "--dropout": (config.dropout, 0.0)}
        clash = [f"{k} {v}" for k, (v, kept) in asked.items() if v != kept]
        if clash:
            raise FinetuneError(f"--init-head keep keeps the head of {where} (mean over frames, then one Linear "
                                f"layer); {', '.join(clash)} do not apply to it (use --init-head new)")
        head = MeanLinearHead(dim, len(names))
        _copy_rows(head.linear, {k: v for k, v in spec.state.items()}, rows)
        return head, notes
    if spec.kind != "downstream" or spec.config.get("fusion"):
        raise FinetuneError(f"--init-head keep: the head of {where} ({spec.kind}"
                            + (", speaker-aware" if spec.config.get("fusion") else "") + ") cannot be kept")
    stored = HeadConfig(**spec.config["head"])
    wanted = head_config(config, dim, len(names))
    clash = [f"{k} {getattr(wanted, k)!r} (the kept head has {getattr(stored, k)!r})"
             for k in ("input_dim", "hidden", "pooling", "output", "dropout", "layout")
             if getattr(wanted, k) != getattr(stored, k)]
    if clash:
        raise FinetuneError(f"--init-head keep keeps the head of {where}; these options differ from it: "
                            + "; ".join(clash))
    head = UtteranceHead(HeadConfig(**{**spec.config["head"], "num_outputs": len(names)}))
    state = dict(spec.state)
    body = {k: v for k, v in state.items() if not k.startswith("head.output.")}
    head.load_state_dict(body, strict=False)
    _copy_rows(head.head.output, {k[len("head.output."):]: v for k, v in state.items()
                                  if k.startswith("head.output.")}, rows)
    return head, notes
