"""Downstream heads on frame or utterance features.

:class:`Head` generalises the downstream model of the emotion2vec paper (section 4.2 and the official
``iemocap_downstream`` recipe): Linear(D -> 256) -> ReLU applied to every frame -> mean over the valid frames ->
Linear(256 -> C); 197,892 parameters at D = 768, C = 4 (the "0.20M" of the paper), which is what the default
:class:`HeadConfig` builds. Options (:mod:`.tasks`):

* ``num_layers`` L > 1: the input carries every stored layer and a learnable softmax-weighted sum mixes them first
  (s3prl's featurizer); :meth:`Head.layer_weights` gives the weights (they sum to 1);
* ``pooling``: ``mean`` | ``sum`` | ``max`` (per dimension, over the utterance's frames) | ``attention`` (softmax
  over frames of a learned score, one per frame) | ``stats`` (mean and standard deviation concatenated: the output
  layer sees 2 x hidden); Gavali & Verma name mean, sum and max as the merge strategies of a fine-tuned model;
* ``dropout`` on the pooled vector;
* ``layout``: ``frame`` (ours, above: the hidden layer on every frame, then pooling) | ``pooled`` (Wagner et al.'s
  head, as in their released model: pooling over the input frames -> dropout -> Linear(D -> hidden) -> tanh ->
  dropout -> output layer);
* ``activation`` after the hidden layer: the layout's own (ReLU for ``frame``, tanh for ``pooled``) or ``relu`` |
  ``tanh`` | ``identity`` (a Hugging Face ``*ForSequenceClassification`` head: projector, mean, classifier);
* ``output``: ``linear`` | ``arcface`` (s times the cosine between the pooled vector and one learned centre per
  class; the margin lives in :class:`.losses.ArcFaceLoss`).

Input layouts (a layer axis, when L > 1, always sits just before D):
    padded frames   (B, T, D) / (B, T, L, D) with ``lengths`` (B,) valid frames (None: all valid)
    utterances      (B, D) / (B, L, D)  (one frame each)
    packed frames   (F, D) / (F, L, D) with ``segments`` (F,) the utterance of each frame and ``lengths`` (B,)
Padded input is packed (its valid frames gathered), so padding never reaches the pooling.

Standardisation (:meth:`Head.set_input_norm`): ``(x - mean) * inv_std`` per layer and dimension; with one layer it is
folded into the first linear layer (``W diag(inv_std)`` and ``b - W diag(inv_std) mean``), so no normalised copy of
the frames is ever made. It is part of the state dict, so a saved head (:func:`save_head`) carries it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ProbeError

__all__ = ["HEAD_FORMAT", "LAYOUTS", "HeadConfig", "LayerWeights", "MeanPooling", "SumPooling", "MaxPooling",
           "AttentionPooling", "StatsPooling", "CosineClassifier", "Head", "save_head", "load_head",
           "fold_target_scaling"]

HEAD_FORMAT = "emotion2vec-head"
#: where the hidden layer sits: on every frame before pooling (ours) or on the pooled vector (Wagner et al.)
LAYOUTS = ("frame", "pooled")
def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


#: what follows the hidden layer
ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "identity": _identity}


@dataclass
class HeadConfig:
    input_dim: int
    num_outputs: int
    hidden: int = 256
    pooling: str = "mean"      # mean | sum | max | attention | stats
    output: str = "linear"     # linear | arcface
    dropout: float = 0.0
    num_layers: int = 1
    arcface_scale: float = 30.0
    layout: str = "frame"      # frame (hidden layer per frame, then pooling) | pooled (Wagner: pooling first)
    activation: str = ""       # after the hidden layer: "" (the layout's: relu / tanh) | relu | tanh | identity

    def __post_init__(self):
        if self.activation not in ("",) + tuple(ACTIVATIONS):
            raise ProbeError(f"unknown head activation {self.activation!r} ({', '.join(ACTIVATIONS)})")
        if self.pooling not in POOLING_MODULES:
            raise ProbeError(f"unknown pooling {self.pooling!r} ({', '.join(POOLING_MODULES)})")
        if self.layout not in LAYOUTS:
            raise ProbeError(f"unknown head layout {self.layout!r} ({', '.join(LAYOUTS)})")
        if self.output not in ("linear", "arcface"):
            raise ProbeError(f"unknown output layer {self.output!r} (linear, arcface)")
        if not 0.0 <= self.dropout < 1.0:
            raise ProbeError(f"--dropout must lie in [0, 1), got {self.dropout}")
        for name in ("input_dim", "num_outputs", "hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be positive, got {getattr(self, name)}")


class LayerWeights(nn.Module):
    """Softmax-weighted sum over the layer axis: (..., L, D) -> (..., D); the logits start equal (a plain mean)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ld,l->...d", x, self.weights().to(x.dtype))


def _segment_sum(h: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """(F, H) rows summed per segment -> (n, H)."""
    return h.new_zeros(n, h.shape[1]).index_add_(0, segments, h)


class MeanPooling(nn.Module):
    """(F, H) frames, ``segments`` (F,), ``lengths`` (B,) -> (B, H) mean of each utterance's frames (0 for none)."""

    def forward(self, h: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return _segment_sum(h, segments, len(lengths)) / lengths.clamp(min=1)[:, None].to(h.dtype)


class SumPooling(nn.Module):
    """(F, H) frames -> (B, H) sum of each utterance's frames (0 for none)."""

    def forward(self, h: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return _segment_sum(h, segments, len(lengths))


class MaxPooling(nn.Module):
    """(F, H) frames -> (B, H) per-dimension maximum over each utterance's frames (0 for none); the gradient goes to
    the frame that holds the maximum."""

    def forward(self, h: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        index = segments[:, None].expand_as(h)
        peak = h.new_full((len(lengths), h.shape[1]), -torch.inf).scatter_reduce(0, index, h, "amax",
                                                                                  include_self=True)
        return torch.where(lengths[:, None] > 0, peak, torch.zeros_like(peak))


class AttentionPooling(nn.Module):
    """Self-attentive pooling: weights = softmax over an utterance's frames of a linear score w.h + b."""

    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(1)
        peak = scores.new_full((len(lengths),), -torch.inf).scatter_reduce_(0, segments, scores.detach(), "amax")
        e = torch.exp(scores - peak[segments])
        total = e.new_zeros(len(lengths)).index_add_(0, segments, e)
        return _segment_sum(h * (e / total[segments])[:, None], segments, len(lengths))


class StatsPooling(nn.Module):
    """Mean and standard deviation of each utterance's frames, concatenated: (F, H) -> (B, 2H)."""

    def forward(self, h: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n = lengths.clamp(min=1)[:, None].to(h.dtype)
        mean = _segment_sum(h, segments, len(lengths)) / n
        var = (_segment_sum(h * h, segments, len(lengths)) / n - mean * mean).clamp(min=1e-6)
        return torch.cat([mean, var.sqrt()], dim=1)


#: pooling name -> module (attention takes the width of what it pools)
POOLING_MODULES = {"mean": MeanPooling, "sum": SumPooling, "max": MaxPooling, "attention": AttentionPooling,
                   "stats": StatsPooling}


class CosineClassifier(nn.Module):
    """``scale * cos(angle between x and each class centre)``: (B, H) -> (B, C), values in [-scale, scale]."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0):
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


class Head(nn.Module):
    """``frame`` layout: [layer mix] -> standardise -> Linear(D -> hidden) -> ReLU per frame -> pooling -> dropout ->
    output layer. ``pooled`` layout (Wagner et al.): [layer mix] -> standardise -> pooling -> dropout ->
    Linear(D -> hidden) -> tanh -> dropout -> output layer."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = c = config
        self.layers = LayerWeights(c.num_layers) if c.num_layers > 1 else None
        pool_dim = c.hidden if c.layout == "frame" else c.input_dim
        self.pooling = POOLING_MODULES[c.pooling](*((pool_dim,) if c.pooling == "attention" else ()))
        widened = 2 if c.pooling == "stats" else 1
        self.proj = nn.Linear(c.input_dim if c.layout == "frame" else widened * c.input_dim, c.hidden)
        pooled = widened * c.hidden if c.layout == "frame" else c.hidden
        self.dropout = nn.Dropout(c.dropout)
        self.act = ACTIVATIONS[c.activation or ("relu" if c.layout == "frame" else "tanh")]
        self.output = (CosineClassifier(pooled, c.num_outputs, c.arcface_scale) if c.output == "arcface"
                       else nn.Linear(pooled, c.num_outputs))
        self.register_buffer("input_mean", torch.zeros(c.num_layers, c.input_dim))
        self.register_buffer("input_inv_std", torch.ones(c.num_layers, c.input_dim))

    @property
    def pooled_dim(self) -> int:
        """Width of :meth:`pooled`: what the output layer reads."""
        return 2 * self.config.hidden if self.config.layout == "frame" and self.config.pooling == "stats" \
            else self.config.hidden

    def set_input_norm(self, mean: torch.Tensor, inv_std: torch.Tensor) -> None:
        """``mean``, ``inv_std`` ([L,] D): the per-layer, per-dimension statistics of the training frames."""
        self.input_mean.copy_(mean.reshape(self.input_mean.shape))
        self.input_inv_std.copy_(inv_std.reshape(self.input_inv_std.shape))

    def layer_weights(self) -> torch.Tensor | None:
        """(L,) softmax weights of the layer mix, or None with one layer."""
        return None if self.layers is None else self.layers.weights().detach()

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """(F, [L,] D) -> (F, hidden) = proj(mix((x - mean) * inv_std))."""
        if self.layers is None:
            weight = self.proj.weight * self.input_inv_std[0]
            return F.linear(x, weight, self.proj.bias - weight @ self.input_mean[0])
        return self.proj(self.layers((x - self.input_mean) * self.input_inv_std))

    def _standardized(self, x: torch.Tensor) -> torch.Tensor:
        """(F, [L,] D) -> (F, D) = mix((x - mean) * inv_std)."""
        if self.layers is None:
            return (x - self.input_mean[0]) * self.input_inv_std[0]
        return self.layers((x - self.input_mean) * self.input_inv_std)

    def pooled(self, frames: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The head's utterance vector before the last dropout and the output layer. ``frames`` (F, [L,] D) of
        len(lengths) utterances back to back; ``segments`` (F,) the utterance of each. -> (B, hidden), or
        (B, 2 hidden) for stats pooling in the ``frame`` layout."""
        if self.config.layout == "pooled":
            pooled = self.pooling(self._standardized(frames), segments, lengths)
            return self.act(self.proj(self.dropout(pooled)))
        return self.pooling(self.act(self._project(frames)), segments, lengths)

    def forward_packed(self, frames: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``frames`` (F, [L,] D) of len(lengths) utterances back to back; ``segments`` (F,) the utterance of each."""
        return self.output(self.dropout(self.pooled(frames, segments, lengths)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Padded frames (B, T, [L,] D) with ``lengths`` (B,) (None: all valid), or utterances (B, [L,] D)."""
        utterance_dims = 2 if self.layers is None else 3
        if x.dim() == utterance_dims:
            ones = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
            return self.forward_packed(x, torch.arange(x.shape[0], device=x.device), ones)
        if x.dim() != utterance_dims + 1:
            raise ProbeError(f"head input of shape {tuple(x.shape)}: expected (B, T, {'L, ' * (self.layers is not None)}"
                             f"D) or (B, {'L, ' * (self.layers is not None)}D)")
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        segments = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), lengths.clamp(max=x.shape[1]))
        return self.forward_packed(x[mask], segments, lengths)


@torch.no_grad()
def fold_target_scaling(head: nn.Module, mean, std) -> None:
    """Fold a regression head's target standardisation into its output layer: a head trained on (y - mean) / std
    predicts y afterwards (``W <- diag(std) W``, ``b <- std * b + mean``). ``head``: a :class:`Head` (or a module with
    ``head.output``); ``mean``, ``std``: (K,)."""
    output = head.output if hasattr(head, "output") else head.head.output
    if not isinstance(output, nn.Linear):
        raise ProbeError("target standardisation needs a linear output layer")
    std = torch.as_tensor(np.asarray(std, dtype=np.float32), device=output.weight.device)
    mean = torch.as_tensor(np.asarray(mean, dtype=np.float32), device=output.weight.device)
    output.weight.mul_(std[:, None])
    output.bias.mul_(std).add_(mean)


def save_head(path: str | os.PathLike, head: Head, **meta: Any) -> None:
    """Write ``head`` (config + state dict, standardisation included) and ``meta`` (plain JSON-like values: task,
    loss, class or target names, layer choice, feature settings ...) atomically as one torch file."""
    from ..io.atomic import atomic_write

    blob = {"format": HEAD_FORMAT, "version": 1, "config": asdict(head.config),
            "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}, "meta": meta}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_head(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Head, dict[str, Any]]:
    """A head written by :func:`save_head` (safe loading: tensors and plain values only) -> (head in eval mode,
    its meta)."""
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ProbeError(f"{path}: not found") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ProbeError(f"{path}: not a saved head ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != HEAD_FORMAT:
        raise ProbeError(f"{path}: not a saved head (format {blob.get('format') if isinstance(blob, dict) else None!r})")
    head = Head(HeadConfig(**blob["config"]))
    head.load_state_dict(blob["state_dict"])
    return head.eval(), blob["meta"]
