"""Heads on an upstream being fine-tuned, speaker fusion, and the frozen speaker encoder.

:class:`UtteranceHead` is the probe's :class:`~emotion2vec.downstream.heads.Head` (Linear(D -> hidden), ReLU per
frame, pooling, dropout, output layer; ArcFace = cosine output) applied to frames the upstream computes in the same
forward pass. With a speaker model it fuses the speaker's utterance embedding ``e`` (S,) into the pooled emotion
vector ``h`` (H,) before the output layer (Park et al. fuse a speaker-specific representation learnt on speaker
identification):

``concat``  z = [h ; e]                                  (H + S values)
``tensor``  z = vec([h ; 1] (x) [e ; 1])                 ((H + 1)(S + 1) values: h, e and every product h_i e_j;
                                                          the outer-product "tensor fusion" of Zadeh et al., 2017)

``e`` is the L2-normalised pooled vector of a model trained with ``finetune --task speaker`` (its ArcFace head
compares exactly this direction with one centre per speaker), computed by :class:`SpeakerEncoder` with that model's
upstream and head, frozen. An exported emotion model carries the speaker encoder inside its head, so ``predict`` needs
nothing else (:func:`classifier_from_spec`).

With ``text_dim`` T > 0 the head also reads a fixed vector per utterance from outside the waveform (its transcript's
embedding, ``finetune --text-features``: speech + text fusion), concatenated last: z = [h (; e) ; t].

:func:`upstream_frames` is the one place a waveform batch becomes frames of one layer: per-utterance normalisation
when the upstream expects it (over each row's valid samples), the sample padding mask, the layer, the valid frames.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..downstream.heads import CosineClassifier, Head, HeadConfig
from ..extract.engine import plan_batches
from ..io.audio import normalize_waveform
from . import FinetuneError

__all__ = ["MAX_FUSED", "fused_dim", "fuse", "upstream_frames", "UtteranceHead", "SpeakerEncoder",
           "classifier_from_spec", "speaker_spec_config"]

#: largest fused vector (tensor fusion grows with the product of both sizes)
MAX_FUSED = 1 << 20


def fused_dim(fusion: str, pooled: int, speaker: int) -> int:
    return pooled + speaker if fusion == "concat" else (pooled + 1) * (speaker + 1)


def fuse(h: Tensor, e: Tensor, fusion: str) -> Tensor:
    """(B, H) emotion vector, (B, S) speaker embedding -> (B, fused_dim) (see the module docstring)."""
    e = e.to(h.dtype)
    if fusion == "concat":
        return torch.cat([h, e], dim=1)
    one = h.new_ones(h.shape[0], 1)
    return torch.einsum("bi,bj->bij", torch.cat([h, one], 1), torch.cat([e, one], 1)).flatten(1)


def _normalize_rows(waveform: Tensor, lengths: Tensor) -> Tensor:
    out = torch.zeros_like(waveform)
    for b, n in enumerate(lengths.tolist()):
        out[b, :n] = normalize_waveform(waveform[b, :n])
    return out


def upstream_frames(upstream: nn.Module, waveform: Tensor, lengths: Tensor, layer: int) -> tuple[Tensor, Tensor]:
    """Raw 16 kHz waveforms (B, N), valid samples (B,) -> frames of block ``layer`` (B, T, D) and valid frames (B,)."""
    if upstream.cfg.normalize:
        waveform = _normalize_rows(waveform, lengths)
    pad = None
    if bool((lengths < waveform.shape[1]).any()):
        pad = torch.arange(waveform.shape[1], device=waveform.device)[None, :] >= lengths[:, None]
    last = upstream.cfg.num_layers - 1
    out = upstream.extract_features(waveform, pad, layers=[layer], ffn=())
    frames = out.x if layer == last else out.layer_outputs[layer]
    if out.padding_mask is None:
        valid = torch.full((frames.shape[0],), frames.shape[1], dtype=torch.long, device=frames.device)
    else:
        valid = (~out.padding_mask).sum(1)
    return frames, valid


def _output_layer(config: HeadConfig, in_features: int) -> nn.Module:
    if config.output == "arcface":
        return CosineClassifier(in_features, config.num_outputs, config.arcface_scale)
    return nn.Linear(in_features, config.num_outputs)


class UtteranceHead(nn.Module):
    """frames (B, T, D), valid frames (B,) [, speaker embedding (B, S)] -> outputs (B, C).

    ``speaker``: the frozen :class:`SpeakerEncoder` whose embedding is fused in (``fusion`` concat | tensor).
    """

    def __init__(self, config: HeadConfig, fusion: str | None = None, speaker: "SpeakerEncoder | None" = None,
                 text_dim: int = 0):
        super().__init__()
        self.head = Head(config)
        self.fusion = fusion
        self.speaker = speaker
        self.text_dim = int(text_dim)
        if fusion:
            if speaker is None:
                raise FinetuneError(f"fusion {fusion!r} needs a speaker encoder")
            size = fused_dim(fusion, self.pooled_dim, speaker.dim)
            if size > MAX_FUSED:
                raise FinetuneError(f"--fusion {fusion}: the speaker model's {speaker.dim}-dim embedding and the "
                                    f"{self.pooled_dim}-dim emotion vector make {size:,} fused values (at most "
                                    f"{MAX_FUSED:,}); use --fusion concat or a smaller --hidden")
            self.head.output = _output_layer(config, size)
        if self.text_dim:
            self.head.output = _output_layer(config, (size if fusion else self.pooled_dim) + self.text_dim)

    @property
    def config(self) -> HeadConfig:
        return self.head.config

    @property
    def pooled_dim(self) -> int:
        return self.head.pooled_dim

    def embed(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """The pooled vector before dropout and the output layer: (B, pooled_dim)."""
        mask = torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]
        segments = torch.repeat_interleave(torch.arange(frames.shape[0], device=frames.device),
                                           lengths.clamp(max=frames.shape[1]))
        return self.head.pooled(frames[mask], segments, lengths)

    def forward(self, frames: Tensor, lengths: Tensor, speaker: Tensor | None = None,
                text: Tensor | None = None) -> Tensor:
        """``text`` (B, T): the utterances' text vectors, for a head built with ``text_dim`` T."""
        if not self.fusion and not self.text_dim:
            return self.head(frames, lengths)
        z = self.embed(frames, lengths)
        if self.fusion:
            if speaker is None:
                raise FinetuneError("a speaker-aware head needs the speaker embedding of each input")
            z = fuse(z, speaker, self.fusion)
        if self.text_dim:
            if text is None:
                raise FinetuneError("a text-fused head needs the text vector of each input")
            z = torch.cat([z, text.to(z.dtype)], dim=1)
        return self.head.output(self.head.dropout(z))


class SpeakerEncoder(nn.Module):
    """A speaker-identification model (upstream + head), frozen: raw waveforms (B, N), valid samples (B,) ->
    utterance embeddings (B, S), L2-normalised (``normalize``; Park et al.'s speaker network gives its max-pooled
    attention-block output H_id as it is). Always in eval mode, never trained."""

    def __init__(self, upstream: nn.Module, head: nn.Module, layer: int, normalize: bool = True):
        super().__init__()
        self.upstream, self.head, self.layer = upstream, head, int(layer) % upstream.cfg.num_layers
        self.normalize = normalize
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    @property
    def dim(self) -> int:
        return self.head.pooled_dim

    def train(self, mode: bool = True) -> "SpeakerEncoder":
        return self  # frozen: dropout stays off whatever the enclosing model does

    @torch.no_grad()
    def forward(self, waveform: Tensor, lengths: Tensor) -> Tensor:
        frames, valid = upstream_frames(self.upstream, waveform, lengths, self.layer)
        e = self.head.embed(frames, valid).float()
        return F.normalize(e, dim=-1) if self.normalize else e

    @torch.no_grad()
    def embed_waveforms(self, wavs: list, max_samples: int = 160_000) -> Tensor:
        """Raw 16 kHz waveforms (numpy or torch, any lengths) -> (N, S), batched by length."""
        device = next(self.parameters()).device
        wavs = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in wavs]
        out: list[Tensor | None] = [None] * len(wavs)
        for batch in plan_batches([len(w) for w in wavs], max_samples, max_samples):
            lengths = torch.tensor([len(wavs[i]) for i in batch], device=device)
            x = torch.zeros(len(batch), int(lengths.max()), device=device)
            for b, i in enumerate(batch):
                x[b, :len(wavs[i])] = wavs[i].to(device)
            for i, e in zip(batch, self(x, lengths)):
                out[i] = e
        return torch.stack(out)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ stored form
def speaker_spec_config(encoder: SpeakerEncoder) -> dict[str, Any]:
    """What :func:`classifier_from_spec` needs to rebuild ``encoder`` (its tensors go in the state under
    ``speaker.``): the upstream's config, the layer and the head's config."""
    from ..models.upstream import upstream_kind

    head = encoder.head.config
    if upstream_kind(encoder.upstream) == "hf":
        from ..models.hf import hf_spec

        model = hf_spec(encoder.upstream)
    else:
        model = encoder.upstream.cfg.to_dict()
    return {"model": model, "layer": encoder.layer, "head": head.to_dict() if hasattr(head, "to_dict") else asdict(head)}


def _build_upstream(model: Mapping[str, Any], state: dict[str, Tensor], where: str) -> nn.Module:
    from ..models.checkpoint import LoadedCheckpoint, build_model, config_from_dict

    if model.get("architecture") == "hf":  # a Hugging Face speaker model: its transformers config and tensors
        from ..models.hf import hf_upstream_from_spec

        return hf_upstream_from_spec(model, state, f"{where} (speaker model)")
    config = config_from_dict(model)
    return build_model(LoadedCheckpoint(config, state, None, "emotion2vec", f"{where} (speaker model)"),
                       with_decoder=False).eval()


def classifier_from_spec(state: Mapping[str, Tensor], config: Mapping[str, Any], where: str) -> UtteranceHead:
    """The exported head of a fine-tuned model (kind ``downstream``), weights loaded strictly; a speaker-aware head
    rebuilds its frozen speaker encoder from the same state."""
    from ..models.checkpoint import load_state_strict

    try:
        head_config = HeadConfig(**config["head"])
    except (KeyError, TypeError) as e:
        raise FinetuneError(f"{where}: the classifier's head config is incomplete ({e})") from None
    speaker = None
    fusion = config.get("fusion")
    if fusion:
        sp = config.get("speaker") or {}
        prefix = "speaker.upstream."
        upstream = _build_upstream(sp.get("model") or {}, {k[len(prefix):]: v for k, v in state.items()
                                                           if k.startswith(prefix)}, where)
        speaker = SpeakerEncoder(upstream, UtteranceHead(HeadConfig(**sp["head"])), sp["layer"])
        if config.get("speaker_dim") not in (None, speaker.dim):
            raise FinetuneError(f"{where}: the head was trained on {config['speaker_dim']}-dim speaker embeddings, "
                                f"its speaker model gives {speaker.dim}")
    head = UtteranceHead(head_config, fusion, speaker)
    load_state_strict(head, dict(state), where)
    return head.eval()
