"""emotion2vec online distillation (torch-only): the student, its EMA teacher and the two losses.

One training step (per micro-batch):
    1. student CNN + projection -> local features F (B, T, D); repeated C = clone_batch times -> (B*C, T, D)
    2. masked frames are dropped before the encoder (MAE-style); extra (utterance) tokens are prepended
    3. encoder output -> dropout -> utterance prediction (from the extra tokens) and, after re-inserting noise
       tokens at the masked positions, the CNN decoder -> frame predictions P (B*C, T, D)
    4. teacher (EMA copy of the encoder, eval mode, no grad) on the unmasked F -> the FFN outputs of its top-k main
       blocks, each instance-normalised over time, averaged -> targets Y (B, T, D)
    5. frame loss  = sum over masked frames of r(P, Y)
       utt. loss   = sum over rows of r(u_hat, mean_t Y) * alpha * M      (M = number of masked frames)
       with r(a, b) = (a - b)^2 / sqrt(D); the trainer divides the summed loss by M.
After every optimizer step u (1-based) call :meth:`Emotion2VecPretrainer.ema_step` with u.

Speed settings (they change no algorithm):
    attention_implementation  "auto" (default): what benchmarks/pretrain_step.py measured faster for the device and
                              compute dtype: the explicit-softmax attention for bf16 on a CPU with AMX, SDPA
                              elsewhere (emotion2vec.device.auto_attention)
    compute_dtype             "float32" (default), "bfloat16" (autocast: matrix multiplies in bf16, norms, softmax
                              and losses in fp32) or "auto" (bfloat16 on CPUs with AMX / AVX512-BF16, float32
                              elsewhere). It applies to fp32 weights; with fairseq's common.fp16 / common.bf16 the
                              trainer has already cast the whole model and this setting is not used.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import AUTO, auto_attention, resolve_compute_dtype
from ..models.config import ATTENTION_IMPLEMENTATIONS, ConfigError, Emotion2VecConfig
from ..models.encoder import ContextEncoder, Emotion2VecModel
from .masking import mask_info, span_mask

__all__ = ["DistillationConfig", "EMATeacher", "Emotion2VecPretrainer", "PretrainOutput", "ema_decay_at",
           "CollapseError", "UTTERANCE_LOSSES"]

logger = logging.getLogger(__name__)

UTTERANCE_LOSSES = ("token", "chunk", "global")
UTTERANCE_TARGETS = ("instance_norm", "layer_norm")


class CollapseError(RuntimeError):
    """Targets or predictions lost their variance: the representation collapsed."""


@dataclass
class DistillationConfig:
    """Training-only settings of the distillation objective (official emotion2vec values by default)."""

    clone_batch: int = 8  # masked copies of every utterance per step
    average_top_k_layers: int = 8  # teacher main blocks averaged into the frame targets
    instance_norm_target_layer: bool = True  # each target layer normalised over time, per utterance and channel
    layer_norm_target_layer: bool = False  # each target layer normalised over channels, per frame (after the above)
    loss_beta: float = 0.0  # 0 = MSE, > 0 = smooth-L1 with this beta
    loss_scale: float | None = None  # None = 1 / sqrt(D)
    frame_loss_weight: float = 1.0  # fairseq d2v_loss
    utterance_loss: str = "chunk"  # token: last extra token; chunk: mean of extra tokens; global: mean of frames
    utterance_loss_weight: float = 1.0  # alpha (fairseq cls_loss)
    # Utterance target. "instance_norm" (official): the time-mean of the frame targets, which is identically zero
    # when instance_norm_target_layer is on (each target channel is normalised over time). "layer_norm": the time-mean
    # of the top-k teacher FFN outputs, each layer-normalised over channels per frame, so it keeps utterance-level
    # information (level, voice quality) that the instance norm removes.
    utterance_target: str = "instance_norm"
    mask_prob: float = 0.5
    mask_prob_adjust: float = 0.05
    mask_length: int = 5
    mask_noise_std: float = 0.01  # std of the noise tokens put in place of masked frames for the decoder
    ema_decay: float = 0.999
    ema_end_decay: float = 0.99999
    ema_anneal_end_step: int = 20000
    min_target_var: float = 0.1
    min_pred_var: float = 0.01
    collapse_check_after: int = 5000  # updates before the collapse guard is armed
    # Speed only (see the module docstring): attention "auto" = the one measured faster for the device and dtype;
    # compute dtype "float32" | "bfloat16" | "auto" (bf16 autocast where the CPU accelerates it).
    attention_implementation: str = "auto"
    compute_dtype: str = "float32"

    def validate(self, model_cfg: Emotion2VecConfig) -> None:
        if self.utterance_loss not in UTTERANCE_LOSSES:
            raise ConfigError(f"utterance_loss={self.utterance_loss!r}; choose one of {', '.join(UTTERANCE_LOSSES)}")
        if self.utterance_target not in UTTERANCE_TARGETS:
            raise ConfigError(f"utterance_target={self.utterance_target!r}; choose one of {', '.join(UTTERANCE_TARGETS)}")
        if self.utterance_loss_weight and self.utterance_loss != "global" and model_cfg.num_extra_tokens == 0:
            raise ConfigError(f"utterance_loss={self.utterance_loss!r} needs num_extra_tokens > 0")
        if not 1 <= self.average_top_k_layers <= model_cfg.depth:
            raise ConfigError(f"average_top_k_layers={self.average_top_k_layers} must be in 1..depth={model_cfg.depth}")
        if self.clone_batch < 1:
            raise ConfigError(f"clone_batch={self.clone_batch} must be >= 1")
        if not 0 < self.mask_prob < 1:
            raise ConfigError(f"mask_prob={self.mask_prob} must be in (0, 1)")
        if model_cfg.decoder_layers < 1:
            raise ConfigError("pretraining needs the CNN decoder (decoder_layers >= 1)")
        if self.attention_implementation not in (AUTO, *ATTENTION_IMPLEMENTATIONS):
            raise ConfigError(f"attention_implementation={self.attention_implementation!r}; choose one of "
                              f"{', '.join((AUTO, *ATTENTION_IMPLEMENTATIONS))}")
        if self.compute_dtype not in (AUTO, "float32", "bfloat16"):
            raise ConfigError(f"compute_dtype={self.compute_dtype!r}; choose float32, bfloat16 or auto")


def ema_decay_at(num_updates: int, start: float, end: float, anneal_end_step: int) -> float:
    """Linear EMA decay schedule: ``start`` at update 0 to ``end`` at ``anneal_end_step``, then constant."""
    if start == end or num_updates >= anneal_end_step:
        return end
    return end - (end - start) * (1.0 - num_updates / anneal_end_step)


class EMATeacher:
    """The teacher: a copy of the student's :class:`ContextEncoder`, always in eval mode and without gradients,
    whose weights are an exponential moving average of the student's, accumulated in fp32 master copies.

    Not an ``nn.Module`` attribute of the student on purpose: it never receives gradients, is excluded from the
    optimizer and from ``.half()``, and is moved/cast lazily to the student's device and dtype.
    """

    def __init__(self, encoder: ContextEncoder):
        self.module = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.fp32 = {k: v.detach().float().clone() for k, v in self.module.state_dict().items()}

    @torch.no_grad()
    def step(self, student: ContextEncoder, decay: float) -> None:
        """theta_T <- decay * theta_T + (1 - decay) * theta_S for every trainable student parameter (fp32)."""
        for name, p in student.named_parameters():
            master = self.fp32.get(name)
            if master is None:
                continue
            if master.device != p.device:
                master = self.fp32[name] = master.to(p.device)
            if p.requires_grad:
                master.mul_(decay).add_(p.detach().float(), alpha=1.0 - decay)
            else:
                master.copy_(p.detach().float())
        self._sync()

    @torch.no_grad()
    def _sync(self) -> None:
        for name, p in self.module.named_parameters():
            p.copy_(self.fp32[name].to(p.device))

    def to(self, device: torch.device, dtype: torch.dtype) -> "EMATeacher":
        ref = next(self.module.parameters())
        if ref.device != device or ref.dtype != dtype:
            self.module.to(device=device, dtype=dtype)
            self.fp32 = {k: v.to(device) for k, v in self.fp32.items()}
            self._sync()
        return self

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.fp32)

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> list[str]:
        """Load fp32 teacher weights; returns the teacher keys the state did not provide."""
        unexpected = sorted(set(state) - set(self.fp32))
        shape_errors = [f"{k}: {tuple(v.shape)} != {tuple(self.fp32[k].shape)}" for k, v in state.items()
                        if k in self.fp32 and tuple(v.shape) != tuple(self.fp32[k].shape)]
        missing = sorted(set(self.fp32) - set(state))
        if shape_errors or (strict and (unexpected or missing)):
            raise RuntimeError("teacher state does not match: " + "; ".join(
                shape_errors + [f"unexpected {k}" for k in unexpected] + [f"missing {k}" for k in missing]))
        for k, v in state.items():
            if k in self.fp32:
                self.fp32[k] = v.detach().float().clone().to(self.fp32[k].device)
        self._sync()
        return missing

    def __call__(self, feats: Tensor, collect_ffn: list[int]):
        return self.module(feats, collect_layers=(), collect_ffn=collect_ffn)


@dataclass
class PretrainOutput:
    """losses: {"frame", "utt"} summed (not averaged) scalars; sample_size: masked frames M; logs: floats."""

    losses: dict[str, Tensor]
    sample_size: int
    logs: dict[str, float] = field(default_factory=dict)


class Emotion2VecPretrainer(Emotion2VecModel):
    """The student (an :class:`Emotion2VecModel` with decoder) plus its EMA teacher and the distillation loss.

    ``state_dict()`` is the student's (our key names, tensors only); the teacher's fp32 weights are
    :meth:`teacher_state_dict` / :meth:`load_teacher_state_dict` (the fairseq adapter stores them under ``_ema``).
    """

    def __init__(self, cfg: Emotion2VecConfig, distill: DistillationConfig | None = None):
        distill = distill or DistillationConfig()
        distill.validate(cfg)
        super().__init__(cfg, with_decoder=True)
        self.distill = distill
        self.teacher = EMATeacher(self.encoder)  # a plain attribute, not a submodule (see EMATeacher)
        self.num_updates = 0

    def set_attention_implementation(self, implementation: str) -> "Emotion2VecPretrainer":
        """Student and teacher; also becomes ``distill.attention_implementation`` (``"auto"`` re-selects per device
        at the next forward)."""
        if implementation != AUTO:
            super().set_attention_implementation(implementation)
            self.teacher.module.set_attention_implementation(implementation)
        self.distill.attention_implementation = implementation
        return self

    # -- speed settings (no effect on the algorithm) -----------------------------------------------------------
    def attention_for(self, device: torch.device) -> str:
        """The attention implementation used on ``device``: ``auto`` = the one ``benchmarks/pretrain_step.py``
        measured faster for this device and compute dtype (:func:`emotion2vec.device.auto_attention`: eager for bf16
        on a CPU with AMX, SDPA elsewhere)."""
        choice = self.distill.attention_implementation
        if choice == AUTO:
            dtype = self.autocast_dtype(device) or self.feature_projection.linear.weight.dtype
            return auto_attention(device, dtype)
        return choice

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype ``compute_dtype`` selects on ``device``, or None for none: float32, or weights that
        are not fp32 (fairseq's common.fp16 / bf16 have cast the model already)."""
        if self.feature_projection.linear.weight.dtype != torch.float32:
            return None
        dtype = resolve_compute_dtype(self.distill.compute_dtype, device)
        return None if dtype == torch.float32 else dtype

    # -- teacher bookkeeping -------------------------------------------------------------------------------
    def ema_decay(self, num_updates: int | None = None) -> float:
        d = self.distill
        u = self.num_updates if num_updates is None else num_updates
        return ema_decay_at(u, d.ema_decay, d.ema_end_decay, d.ema_anneal_end_step)

    def ema_step(self, num_updates: int) -> float:
        """Call once after optimizer step ``num_updates`` (1-based). Returns the decay used."""
        decay = self.ema_decay(num_updates)
        if decay < 1.0:
            self.teacher.step(self.encoder, decay)
        return decay

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates

    def teacher_state_dict(self) -> dict[str, Tensor]:
        """The teacher's fp32 weights on the CPU, keys relative to the context encoder."""
        return {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}

    def load_teacher_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> list[str]:
        """Load teacher weights; returns the teacher keys ``state`` did not provide (non-strict)."""
        return self.teacher.load_state_dict(state, strict=strict)

    # -- the objective ---------------------------------------------------------------------------------------
    def regression(self, pred: Tensor, target: Tensor) -> Tensor:
        """Element-wise r(a, b) in fp32: scaled MSE (or smooth-L1 when loss_beta > 0). (..., D) -> (..., D)."""
        pred, target = pred.float(), target.float()
        if self.distill.loss_beta == 0:
            loss = (pred - target) ** 2
        else:
            loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.distill.loss_beta)
        scale = self.distill.loss_scale if self.distill.loss_scale is not None else 1.0 / math.sqrt(pred.shape[-1])
        return loss * scale

    @torch.no_grad()
    def teacher_targets(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher targets from the student's local features.

        (B, T, D) -> frame targets (B, T, D) fp32 and utterance targets (B, D) fp32 (see ``utterance_target``).
        """
        self.teacher.to(feats.device, self.feature_projection.linear.weight.dtype)  # autocast keeps it fp32
        P, L = self.cfg.prenet_depth, self.cfg.depth
        top = list(range(P + L - self.distill.average_top_k_layers, P + L))
        out = self.teacher(feats.detach(), collect_ffn=top)
        E = self.cfg.num_extra_tokens
        frame_layers, utt_layers = [], []
        for i in top:
            t = out.ffn_outputs[i][:, E:].float()
            if self.distill.utterance_target == "layer_norm":
                utt_layers.append(F.layer_norm(t, t.shape[-1:]).mean(1))
            if self.distill.instance_norm_target_layer:
                t = F.instance_norm(t.transpose(1, 2)).transpose(1, 2)
            if self.distill.layer_norm_target_layer:
                t = F.layer_norm(t, t.shape[-1:])
            frame_layers.append(t)
        y = torch.stack(frame_layers).mean(0)
        utt = torch.stack(utt_layers).mean(0) if utt_layers else y.mean(1)
        return y, utt

    def forward(self, source: Tensor, mask: Tensor | None = None) -> PretrainOutput:
        """source (B, N) equal-length normalised waveforms; mask (B*C, T) bool, True = masked (None: span masks).

        -> :class:`PretrainOutput`. Divide ``sum(losses)`` by ``sample_size`` for the per-frame objective.
        """
        attention = self.attention_for(source.device)
        if attention != self.attention_implementation:
            super().set_attention_implementation(attention)
            self.teacher.module.set_attention_implementation(attention)
        dtype = self.autocast_dtype(source.device)
        with torch.autocast(source.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return self._forward(source, mask)

    def _forward(self, source: Tensor, mask: Tensor | None) -> PretrainOutput:
        d, cfg = self.distill, self.cfg
        C, E = d.clone_batch, cfg.num_extra_tokens
        feats, _ = self.local_features(source)  # (B, T, D)
        B, T, D = feats.shape
        if T < 2:
            raise ValueError(f"inputs of {source.shape[-1]} samples give {T} frame(s); pretraining needs >= 2 "
                             f"(raise min_sample_size)")
        if mask is None:
            mask = torch.from_numpy(span_mask(B * C, T, d.mask_prob, d.mask_length)).to(feats.device)
        if tuple(mask.shape) != (B * C, T):
            raise ValueError(f"mask shape {tuple(mask.shape)} != (batch * clone_batch, frames) = ({B * C}, {T})")
        info = mask_info(mask.to(feats.device))

        enc = self.encoder(feats.repeat_interleave(C, dim=0), mask=info, collect_layers=(), collect_ffn=())
        x = F.dropout(enc.x, cfg.decoder_input_dropout, self.training)  # (B*C, E+K, D), shared by both heads
        frames = x[:, E:]
        noise = frames.new_empty(B * C, T - frames.shape[1], D).normal_(0.0, d.mask_noise_std)
        full = torch.gather(torch.cat([frames, noise], dim=1), 1, info.ids_restore[..., None].expand(-1, -1, D))
        pred = self.decoder(full)  # (B*C, T, D)

        y, y_utt = self.teacher_targets(feats)  # (B, T, D), (B, D) fp32
        masked = info.mask
        p_masked = pred[masked]
        y_masked = y.repeat_interleave(C, dim=0)[masked]
        M = int(p_masked.shape[0])
        losses = {"frame": self.regression(p_masked, y_masked).sum() * d.frame_loss_weight}
        if d.utterance_loss_weight:
            utt_pred = {"token": lambda: x[:, E - 1], "chunk": lambda: x[:, :E].mean(1),
                        "global": lambda: frames.mean(1)}[d.utterance_loss]()
            utt_target = y_utt.repeat_interleave(C, dim=0)
            losses["utt"] = self.regression(utt_pred, utt_target).sum() * d.utterance_loss_weight * M
        else:
            losses["utt"] = torch.zeros((), device=x.device)

        with torch.no_grad():
            logs = {
                "target_var": float(torch.sqrt(y_masked.float().var(0) + 1e-6).mean()),
                "pred_var": float(torch.sqrt(p_masked.float().var(0) + 1e-6).mean()),
                "masked_pct": 1.0 - (T - int(masked[0].sum())) / T,
                "ema_decay": self.ema_decay() * 1000,
            }
        if self.training and self.num_updates >= d.collapse_check_after:
            if logs["target_var"] < d.min_target_var or logs["pred_var"] < d.min_pred_var:
                raise CollapseError(
                    f"representation collapse at update {self.num_updates}: target_var={logs['target_var']:.4f} "
                    f"(min {d.min_target_var}), pred_var={logs['pred_var']:.4f} (min {d.min_pred_var}). Lower the "
                    f"learning rate, check the data, or restart from the last good checkpoint.")
        return PretrainOutput(losses, M, logs)

    def extra_repr(self) -> str:
        return f"distill={asdict(self.distill)}"
