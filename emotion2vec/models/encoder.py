"""The audio data2vec 2.0 / emotion2vec encoder, readable top to bottom.

    waveform (B, N)
      -> feature_extractor (CNN)            (B, T, C)
      -> feature_projection                 (B, T, D)         "local features"
      -> encoder: + pos_conv(x); ALiBi bias; [extra tokens | frames]; context_norm; prenet blocks; main blocks
      -> x (B, T, D) with the extra tokens removed, plus every block's output and FFN output (and the outputs
         at the extra-token positions, the utterance tokens)

The student adds a CNN ``decoder`` (training only); the EMA teacher is a copy of ``encoder`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .components import (
    ATTENTION_IMPLEMENTATIONS,
    ConvDecoder,
    ConvFeatureExtractor,
    ConvPositionalEncoder,
    FeatureProjection,
    TransformerBlock,
    alibi_slopes,
    frames_padding_mask,
)
from .config import ConfigError, Emotion2VecConfig

__all__ = ["Emotion2VecModel", "ContextEncoder", "EncoderOutput", "FeatureOutput", "MaskInfo"]


@dataclass
class MaskInfo:
    """Which frames the student sees.

    mask (B, T) bool, True = masked; ids_keep (B, K) frame indices fed to the encoder, in that order;
    ids_restore (B, T) inverse permutation putting [kept | dropped] tokens back in time order.
    """

    mask: Tensor
    ids_keep: Tensor
    ids_restore: Tensor


@dataclass
class EncoderOutput:
    """x (B, E+S, D) last block output incl. extra tokens; per block (prenet first), outputs and FFN outputs
    (B, E+S, D) or None where not collected; padding_mask (B, E+S) or None."""

    x: Tensor
    layer_outputs: list[Tensor | None]
    ffn_outputs: list[Tensor | None]
    padding_mask: Tensor | None


@dataclass
class FeatureOutput:
    """Features with the extra tokens removed: x (B, T, D); per block lists of (B, T, D) or None;
    padding_mask (B, T) (True = padded frame) or None when nothing is padded. ``token_outputs``: per block, the
    outputs at the E utterance-token positions (B, E, D) or None (same blocks as ``layer_outputs``); empty for a
    model without extra tokens. The mean over E of the last block's is what the utterance loss trains."""

    x: Tensor
    layer_outputs: list[Tensor | None] = field(default_factory=list)
    ffn_outputs: list[Tensor | None] = field(default_factory=list)
    padding_mask: Tensor | None = None
    token_outputs: list[Tensor | None] = field(default_factory=list)


def _linspace(start: float, end: float, n: int) -> list[float]:
    return [float(v) for v in torch.linspace(start, end, n)] if n > 0 else []


class ContextEncoder(nn.Module):
    """Positional conv + ALiBi + extra tokens + prenet + main blocks: the part the EMA teacher copies.

    forward: local features (B, T, D) -> :class:`EncoderOutput` over E + S tokens (S = T, or K kept frames).
    """

    def __init__(self, cfg: Emotion2VecConfig):
        super().__init__()
        D, H = cfg.embed_dim, cfg.num_heads
        self.num_heads, self.num_extra_tokens, self.depth = H, cfg.num_extra_tokens, cfg.depth
        self.pos_conv = ConvPositionalEncoder(D, cfg.conv_pos_kernel, cfg.conv_pos_groups, cfg.conv_pos_depth,
                                              cfg.conv_pos_pre_ln, cfg.norm_eps)
        scale_shape = (cfg.num_layers if cfg.learned_alibi_scale_per_layer else 1, 1,
                       H if cfg.learned_alibi_scale_per_head else 1, 1, 1)
        scale = torch.full(scale_shape, float(cfg.alibi_scale))
        if cfg.learned_alibi_scale:
            self.alibi_scale = nn.Parameter(scale)
        else:
            self.register_buffer("alibi_scale", scale, persistent=False)
        self.slopes = alibi_slopes(H)  # python floats: exact whatever dtype the module is cast to
        self.extra_tokens = nn.Parameter(torch.zeros(1, cfg.num_extra_tokens, D)) if cfg.num_extra_tokens else None
        self.context_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.prenet_dropout = nn.Dropout(cfg.prenet_dropout)
        self.prenet_layerdrop = cfg.prenet_layerdrop
        self.input_dropout = nn.Dropout(cfg.dropout_input)
        self.layerdrop = cfg.layerdrop

        def block(drop_path: float) -> TransformerBlock:
            return TransformerBlock(D, H, cfg.mlp_ratio, cfg.norm_eps, cfg.attention_dropout, cfg.encoder_dropout,
                                    cfg.activation_dropout, cfg.post_mlp_drop, drop_path)

        self.prenet = nn.ModuleList(block(p) for p in _linspace(
            cfg.prenet_start_drop_path_rate, cfg.prenet_end_drop_path_rate, cfg.prenet_depth))
        self.blocks = nn.ModuleList(block(p) for p in _linspace(
            cfg.start_drop_path_rate, cfg.end_drop_path_rate, cfg.depth))

    def attention_bias(self, positions: Tensor, padding_mask: Tensor | None, layer: int) -> Tensor:
        """ALiBi for frame positions (B|1, S) with the extra-token rows/columns at 0 and padded keys at -inf.

        -> (B|1, H, E+S, E+S) float32
        """
        distance = (positions[:, None, :] - positions[:, :, None]).abs().to(torch.float32)  # (B, S, S)
        scale = self.alibi_scale[layer if self.alibi_scale.shape[0] > 1 else 0].float().clamp_min(0)  # (1,H|1,1,1)
        slopes = torch.tensor(self.slopes, dtype=torch.float32, device=positions.device)
        bias = (-slopes[None, :, None, None] * distance[:, None]) * scale
        E = self.num_extra_tokens
        if E:
            bias = F.pad(bias, (E, 0, E, 0))
        if padding_mask is not None:
            bias = bias.masked_fill(padding_mask[:, None, None, :], float("-inf"))
        return bias

    def set_attention_implementation(self, implementation: str) -> None:
        """``"sdpa"`` (fused, the default) or ``"eager"`` (explicit fp32 softmax, as the original code)."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"attention implementation {implementation!r}: choose one of "
                              f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
        for block in [*self.prenet, *self.blocks]:
            block.attention.implementation = implementation

    @property
    def attention_implementation(self) -> str:
        blocks = [*self.prenet, *self.blocks]
        return blocks[0].attention.implementation if blocks else "sdpa"

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, mask: MaskInfo | None = None,
                collect_layers: Iterable[int] | None = None,
                collect_ffn: Iterable[int] | None = None) -> EncoderOutput:
        """x: local features (B, T, D); padding_mask (B, T); mask: the student's kept frames (training).

        ``collect_layers`` / ``collect_ffn``: block indices (prenet first) whose outputs to keep; None = all.
        """
        B, T, _ = x.shape
        if mask is None:
            x = x + self.pos_conv(x, padding_mask)
            positions = torch.arange(T, device=x.device)[None]
        else:
            if padding_mask is not None:
                raise ValueError("masked (student) encoding takes unpadded, equal-length inputs")
            x_pos = self.pos_conv(x.masked_fill(mask.mask[..., None], 0.0))
            index = mask.ids_keep[..., None].expand(-1, -1, x.shape[-1])
            x = torch.gather(x, 1, index) + torch.gather(x_pos, 1, index)
            positions = mask.ids_keep
        if self.extra_tokens is not None:
            x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (self.num_extra_tokens, 0), value=False)
        x = self.prenet_dropout(self.context_norm(x))

        num_layers = len(self.prenet) + len(self.blocks)
        keep_h = set(range(num_layers) if collect_layers is None else (i % num_layers for i in collect_layers))
        keep_f = set(range(num_layers) if collect_ffn is None else (i % num_layers for i in collect_ffn))
        per_layer_scale = self.alibi_scale.shape[0] > 1
        bias = None if per_layer_scale else self.attention_bias(positions, padding_mask, 0)
        layer_outputs: list[Tensor | None] = [None] * num_layers
        ffn_outputs: list[Tensor | None] = [None] * num_layers
        for i, blk in enumerate([*self.prenet, *self.blocks]):
            if i == len(self.prenet):
                x = self.input_dropout(x)
            p = self.prenet_layerdrop if i < len(self.prenet) else self.layerdrop
            if self.training and p > 0 and float(torch.rand(())) < p:
                continue
            if per_layer_scale:
                bias = self.attention_bias(positions, padding_mask, i)
            x, ffn = blk(x, bias)
            if i in keep_h:
                layer_outputs[i] = x
            if i in keep_f:
                ffn_outputs[i] = ffn
        return EncoderOutput(x, layer_outputs, ffn_outputs, padding_mask)


class Emotion2VecModel(nn.Module):
    """Student network: CNN feature extractor, projection, context encoder and (for training) the decoder."""

    def __init__(self, cfg: Emotion2VecConfig, with_decoder: bool = True):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureExtractor(cfg.conv_layers)
        self.feature_projection = FeatureProjection(self.feature_extractor.out_channels, cfg.embed_dim)
        self.encoder = ContextEncoder(cfg)
        self.decoder = (ConvDecoder(cfg.embed_dim, cfg.decoder_dim, cfg.decoder_kernel, cfg.decoder_groups,
                                    cfg.decoder_layers, cfg.decoder_residual)
                        if with_decoder and cfg.decoder_layers > 0 else None)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation for training from scratch (BERT-style linears, kaiming CNN, chunk tokens N(0, 1))."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        self.feature_projection.linear.reset_parameters()
        if self.decoder is not None:
            self.decoder.proj.reset_parameters()
        for layer in self.feature_extractor.layers:
            nn.init.kaiming_normal_(layer.conv.weight)
        if self.encoder.extra_tokens is not None:
            self.encoder.extra_tokens.normal_(0.0, 1.0)
            if self.cfg.init_extra_token_zero:
                self.encoder.extra_tokens[:, 0].zero_()
        self.encoder.alibi_scale.fill_(float(self.cfg.alibi_scale))

    def local_features(self, waveform: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """waveform (B, N), sample padding mask (B, N) -> local features (B, T, D), frame padding mask (B, T)."""
        feats = self.feature_projection(self.feature_extractor(waveform))
        return feats, frames_padding_mask(self.feature_extractor, padding_mask, feats.shape[1])

    def local_features_per_input(self, waveform: Tensor, lengths: Tensor,
                                 tile_frames: int = 100) -> tuple[Tensor, Tensor | None]:
        """:meth:`local_features` of a right-padded batch with the CNN and the projection run on each input's valid
        samples alone, in exact time tiles (:meth:`ConvFeatureExtractor.forward_tiled`).

        waveform (B, N), lengths (B,) valid samples -> local features (B, T, D) with padded frames set to 0, frame
        padding mask (B, T) or None. Valid frames equal :meth:`local_features`'; padding costs no CNN work, and the
        CNN's activations stay cache-sized, which on a CPU outweighs batching the CNN (the Transformer still runs
        batched). One Python loop per input and tile: for CPUs, not GPUs.
        """
        T = int(self.feature_extractor.output_lengths(waveform.new_tensor([waveform.shape[1]], dtype=torch.long))[0])
        frames = self.feature_extractor.output_lengths(lengths.to(torch.long))
        out: Tensor | None = None
        for b in range(waveform.shape[0]):
            n = int(frames[b])
            if n == 0:
                continue
            feats = self.feature_projection(self.feature_extractor.forward_tiled(
                waveform[b, : int(lengths[b])], tile_frames)[None])[0]
            if out is None:
                out = feats.new_zeros(waveform.shape[0], T, feats.shape[-1])
            out[b, :n] = feats
        if out is None:  # every input shorter than one frame
            out = waveform.new_zeros(waveform.shape[0], T, self.cfg.embed_dim)
        mask = torch.arange(T, device=frames.device)[None, :] >= frames[:, None]
        return out, (mask if bool(mask.any()) else None)

    def set_attention_implementation(self, implementation: str) -> "Emotion2VecModel":
        """``"sdpa"`` (fused, default) or ``"eager"`` (explicit fp32 softmax, as the original code). Returns self."""
        self.encoder.set_attention_implementation(implementation)
        return self

    @property
    def attention_implementation(self) -> str:
        return self.encoder.attention_implementation

    def extract_features(self, waveform: Tensor, padding_mask: Tensor | None = None,
                         layers: Iterable[int] | None = None, ffn: Iterable[int] | None = (),
                         lengths: Tensor | None = None) -> FeatureOutput:
        """Inference forward (call ``eval()`` first for deterministic features).

        waveform (B, N), already normalised per utterance; padding_mask (B, N) True = padding.
        ``layers`` / ``ffn``: block indices (prenet first, negative allowed) to return; None = all.
        ``lengths`` (B,) valid samples, instead of ``padding_mask``: the CNN runs per input
        (:meth:`local_features_per_input`; the same valid frames, faster on a CPU).
        -> :class:`FeatureOutput` with x (B, T, D) = output of the last block, and the utterance-token outputs of
        the same blocks (B, E, D) in ``token_outputs``.
        """
        if lengths is not None:
            feats, frame_mask = self.local_features_per_input(waveform, lengths)
        else:
            feats, frame_mask = self.local_features(waveform, padding_mask)
        out = self.encoder(feats, frame_mask, collect_layers=layers, collect_ffn=ffn)
        E = self.encoder.num_extra_tokens

        def strip(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[:, E:]

        tokens = [None if t is None else t[:, :E] for t in out.layer_outputs] if E else []
        return FeatureOutput(strip(out.x), [strip(t) for t in out.layer_outputs],
                             [strip(t) for t in out.ffn_outputs], frame_mask, tokens)
