"""A recogniser: an upstream encoder, a classification head on one of its layers, and the head's labels.

emotion2vec+ (FunASR / ModelScope ``emotion2vec_plus_*``): the mean over the valid frames of the last layer goes
through ``proj`` = Linear(D -> number of labels); labels whose name starts with ``unuse`` get a logit of -inf, so
their probability is exactly 0 and they never win; softmax gives the scores. Labels are shown in English
(``生气/angry`` -> ``angry``, ``<unk>`` -> ``unknown``); the original strings are kept beside them.

Models from ``emotion2vec finetune`` (head kind ``downstream``, :mod:`emotion2vec.finetune.heads`) say how their
outputs become predictions (``activation``): softmax (class probabilities), sigmoid (multi-label: one probability
per class) or identity (regression: the predicted values of the named targets, e.g. arousal and valence). A
speaker-aware model carries its frozen speaker encoder, which needs the waveforms as well as the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import RecognitionError

__all__ = ["ACTIVATIONS", "display_label", "is_unused", "MeanLinearHead", "Recognizer", "build_head"]


def display_label(raw: str) -> str:
    """The English name of a label: the part after ``/`` when there is one (``生气/angry`` -> ``angry``),
    ``unknown`` for ``<unk>``."""
    s = str(raw).strip()
    if s == "<unk>":
        return "unknown"
    return s.rsplit("/", 1)[-1].strip() or s


def is_unused(raw: str) -> bool:
    """Placeholder rows of a head (``unuse_0``, ...) that are never predicted or listed."""
    return str(raw).strip().startswith("unuse")


class MeanLinearHead(nn.Module):
    """Mean over the valid frames, then Linear(D -> C). frames (B, T, D), lengths (B,) -> logits (B, C)."""

    def __init__(self, dim: int, num_labels: int):
        super().__init__()
        self.linear = nn.Linear(dim, num_labels)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        valid = torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]
        pooled = (frames * valid[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(frames.dtype)
        return self.linear(pooled)


ACTIVATIONS = ("softmax", "sigmoid", "identity")


def build_head(kind: str, state: dict[str, Tensor], config: dict, where: str) -> nn.Module:
    """The head module of a :class:`~emotion2vec.models.checkpoint.ClassifierSpec`, weights loaded strictly:
    ``mean_linear`` (emotion2vec+) or ``downstream`` (a fine-tuned head, frames (B, T, D) and lengths (B,) ->
    outputs (B, C), optionally with a speaker encoder)."""
    if kind == "downstream":
        from ..finetune.heads import classifier_from_spec

        return classifier_from_spec(state, config, where)
    if kind == "park":
        from ..finetune.park import park_from_spec

        return park_from_spec(state, config, where)
    if kind != "mean_linear":
        raise RecognitionError(f"{where}: unknown classifier head {kind!r} (this emotion2vec knows 'mean_linear', "
                               f"'downstream' and 'park')")
    weight = state["weight"]
    head = MeanLinearHead(weight.shape[1], weight.shape[0])
    head.linear.load_state_dict(state)
    return head.eval()


@dataclass
class Recognizer:
    """``head`` on block ``layer`` of an encoder; ``labels`` as the checkpoint spells them (the target names of a
    regression head); ``activation`` turns the head's outputs into predictions."""

    head: nn.Module
    labels: list[str]
    layer: int
    activation: str = "softmax"

    @classmethod
    def from_spec(cls, spec, num_layers: int, dim: int, where: str) -> "Recognizer":
        head = build_head(spec.kind, spec.state, spec.config, where)
        # the width the head reads: its config says (a pooling layer may hold a Linear of another width first)
        in_dim = int((spec.config.get("head") or {}).get("input_dim")
                     or next(m for m in head.modules() if isinstance(m, nn.Linear)).in_features)
        if in_dim != dim:
            raise RecognitionError(f"{where}: the classifier head reads {in_dim}-dim features but the encoder "
                                   f"gives {dim}")
        layer = int(spec.config.get("layer", -1)) % num_layers
        activation = spec.config.get("activation", "softmax")
        if activation not in ACTIVATIONS:
            raise RecognitionError(f"{where}: unknown head activation {activation!r} ({', '.join(ACTIVATIONS)})")
        return cls(head, list(spec.labels), layer, activation)

    @property
    def regression(self) -> bool:
        """Whether the head predicts values (regression targets) rather than class probabilities."""
        return self.activation == "identity"

    @property
    def needs_waveforms(self) -> bool:
        """A speaker-aware head also reads the raw waveforms (its speaker encoder)."""
        return getattr(self.head, "speaker", None) is not None

    @property
    def shown(self) -> list[int]:
        """Indices of the labels that can be predicted (not ``unuse*``)."""
        return [i for i, raw in enumerate(self.labels) if not is_unused(raw)]

    @property
    def display_labels(self) -> list[str]:
        return [display_label(self.labels[i]) for i in self.shown]

    def best(self, probabilities: np.ndarray) -> int:
        """Index of the winning label (never an ``unuse*`` one)."""
        shown = self.shown
        return shown[int(np.argmax(probabilities[shown]))]

    def result(self, probabilities: np.ndarray) -> dict:
        """One input's prediction: ``{"label", "scores", "label_raw", "scores_raw"}`` (English labels, the
        checkpoint's own strings in the ``*_raw`` entries, ``unuse*`` labels left out), or ``{"values": {target:
        value}}`` for a regression head."""
        p = probabilities
        if self.regression:
            return {"values": {name: float(v) for name, v in zip(self.labels, p)}}
        best, raw = self.best(p), self.labels
        return {"label": display_label(raw[best]), "scores": {display_label(raw[i]): float(p[i]) for i in self.shown},
                "label_raw": raw[best], "scores_raw": {raw[i]: float(p[i]) for i in self.shown}}

    def to(self, device: torch.device) -> "Recognizer":
        self.head.to(device)
        return self

    @torch.inference_mode()
    def probabilities(self, features: list[Tensor], waveforms: list | None = None) -> np.ndarray:
        """Per input, frames (T, D) of ``layer`` -> (N, C) probabilities over all labels (``unuse*`` exactly 0), or
        (N, K) values of a regression head. ``waveforms``: the raw 16 kHz inputs, for a speaker-aware head."""
        device = next(self.head.parameters()).device
        lengths = torch.tensor([len(f) for f in features], device=device)
        frames = nn.utils.rnn.pad_sequence([f.float() for f in features], batch_first=True).to(device)
        if self.needs_waveforms:
            if waveforms is None:
                raise RecognitionError("this speaker-aware model needs the waveforms beside the features (its speaker "
                                       "encoder reads them): use `emotion2vec predict` or Emotion2Vec.predict")
            logits = self.head(frames, lengths, self.head.speaker.embed_waveforms(waveforms)).float()
        else:
            logits = self.head(frames, lengths).float()
        if self.activation == "identity":
            return logits.cpu().numpy()
        if self.activation == "sigmoid":
            return torch.sigmoid(logits).cpu().numpy()
        unused = torch.tensor([is_unused(raw) for raw in self.labels], device=device)
        logits = logits.masked_fill(unused[None, :], float("-inf"))
        return F.softmax(logits, dim=-1).cpu().numpy()
