"""Downstream heads on frozen features.

:class:`ProbeModel` is the downstream model of the emotion2vec paper (section 4.2 and the official
``iemocap_downstream`` recipe): Linear(D -> 256) -> ReLU applied to every frame -> mean over the valid frames ->
Linear(256 -> C); 197,892 parameters at D = 768, C = 4 (the "0.20M" of the paper). Utterance-level features (D,)
are one frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProbeModel"]


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
