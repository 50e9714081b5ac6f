"""Building blocks of the audio data2vec 2.0 / emotion2vec encoder.

Every module documents its input and output shapes. Notation: B batch, N waveform samples, C CNN channels,
T frames (50 per second at 16 kHz), D model width, H attention heads, E extra (utterance) tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ATTENTION_IMPLEMENTATIONS

__all__ = [
    "ConvFeatureExtractor",
    "FeatureProjection",
    "ConvPositionalEncoder",
    "SelfAttention",
    "FeedForward",
    "TransformerBlock",
    "ConvDecoder",
    "ATTENTION_IMPLEMENTATIONS",
    "alibi_slopes",
    "frames_padding_mask",
]



def _layer_norm_channels(x: Tensor, channels: int, eps: float = 1e-5) -> Tensor:
    """LayerNorm (no affine) over the ``channels`` axis of (B, C, T), computed in fp32 and cast back."""
    y = x.transpose(1, 2).float()
    y = F.layer_norm(y, (channels,), eps=eps)
    return y.to(x.dtype).transpose(1, 2)


class ChannelsLastConv1d(nn.Module):
    """A bias-free, unpadded Conv1d on channels-last input, computed as unfold + matrix multiply.

    (B, L, C_in) -> (B, floor((L - kernel) / stride) + 1, C_out). ``weight`` has the Conv1d layout
    (C_out, C_in, kernel). On the time-major layout the following per-frame LayerNorm and GELU read contiguous rows,
    which makes the CNN about 1.25x faster on a CPU than Conv1d with transposes (``benchmarks/forward.py``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        nn.init.kaiming_normal_(self.weight)

    def columns(self, x: Tensor) -> Tensor:
        """(B, L, C_in) -> the input windows (B, L', C_in * kernel), in the (c, k) order of ``weight.flatten(1)``."""
        return x.unfold(1, self.kernel_size, self.stride).flatten(2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():  # ONNX has no unfold over a dynamic length; Conv is the same product
            return F.conv1d(x.transpose(1, 2), self.weight, stride=self.stride).transpose(1, 2)
        return F.linear(self.columns(x), self.weight.flatten(1))

    def extra_repr(self) -> str:
        c_out, c_in, k = self.weight.shape
        return f"{c_in}, {c_out}, kernel_size={k}, stride={self.stride}, bias=False"


class ConvLayerBlock(nn.Module):
    """Conv1d (no bias, no padding) -> LayerNorm over channels (fp32) -> GELU, channels-last.

    (B, L, C_in) -> (B, floor((L - kernel) / stride) + 1, C_out)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = ChannelsLastConv1d(in_channels, out_channels, kernel_size, stride)
        self.norm = nn.LayerNorm(out_channels, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        y = F.layer_norm(y.float(), self.norm.normalized_shape, self.norm.weight.float(), self.norm.bias.float(),
                         self.norm.eps)
        return F.gelu(y.to(x.dtype))


class ConvFeatureExtractor(nn.Module):
    """Waveform -> CNN features, channels-last. (B, N) -> (B, T, C).

    Convolutions have no padding, so a valid output frame only ever reads valid input samples: right-padding a
    waveform does not change the frames computed from its real samples.
    """

    def __init__(self, conv_layers: list[tuple[int, int, int]]):
        super().__init__()
        blocks, in_channels = [], 1
        for channels, kernel, stride in conv_layers:
            blocks.append(ConvLayerBlock(in_channels, channels, kernel, stride))
            in_channels = channels
        self.layers = nn.ModuleList(blocks)
        self.out_channels = in_channels

    def forward(self, waveform: Tensor) -> Tensor:
        x = waveform.unsqueeze(-1)
        for layer in self.layers:
            x = layer(x)
        return x

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames for ``lengths`` valid samples (B,) -> (B,), clamped at 0."""
        for layer in self.layers:
            lengths = torch.div(lengths - layer.kernel_size, layer.stride, rounding_mode="floor") + 1
        return lengths.clamp_min(0)

    @property
    def frame_stride(self) -> int:
        """Samples between two output frames (the product of the strides; 320 in the base model)."""
        return math.prod(layer.stride for layer in self.layers)

    @property
    def receptive_field(self) -> int:
        """Samples one output frame reads (400 in the base model)."""
        field, stride = 1, 1
        for layer in self.layers:
            field += (layer.kernel_size - 1) * stride
            stride *= layer.stride
        return field

    def forward_tiled(self, waveform: Tensor, tile_frames: int = 100) -> Tensor:
        """One input's samples (N,) -> (T, C), computed in time tiles of at most ``tile_frames`` output frames.

        Exact: the convolutions are unpadded and every tile starts at a multiple of :attr:`frame_stride`, so each
        tile's frames are the untiled frames (a tile re-reads the ``receptive_field - frame_stride`` samples it
        shares with the next one). A tile's activations (about 2 s of audio at 100 frames) stay in the CPU's
        caches, where a whole long input's would not: 1.5x faster on 24 s inputs, and the peak memory follows the
        tile, not the input.
        """
        frames = int(self.output_lengths(torch.tensor([waveform.shape[0]]))[0])
        stride, field = self.frame_stride, self.receptive_field
        if frames <= tile_frames:
            return self(waveform[None, : max(0, (frames - 1) * stride + field)])[0]
        tiles = []
        for first in range(0, frames, tile_frames):
            n = min(tile_frames, frames - first)
            tiles.append(self(waveform[None, first * stride: first * stride + (n - 1) * stride + field])[0])
        return torch.cat(tiles)


def frames_padding_mask(extractor: ConvFeatureExtractor, sample_padding_mask: Tensor | None,
                        num_frames: int) -> Tensor | None:
    """Sample-level padding mask (B, N) (True = padding) -> frame-level mask (B, T), or None without padding."""
    if sample_padding_mask is None:
        return None
    if not bool(sample_padding_mask.any()):
        return None
    valid = (~sample_padding_mask).sum(-1)
    valid_frames = extractor.output_lengths(valid)
    return torch.arange(num_frames, device=valid.device)[None, :] >= valid_frames[:, None]


class FeatureProjection(nn.Module):
    """LayerNorm + Linear from CNN channels to the model width. (B, T, C) -> (B, T, D)."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels, eps=1e-5)
        self.linear = nn.Linear(in_channels, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.norm(x))


class GroupedConvLayer(nn.Module):
    """Grouped Conv1d with 'same' padding -> LayerNorm over channels (no affine) -> GELU. (B, C_in, T) -> (B, C, T).

    The layer of the positional encoder and of the student's decoder.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, kernel_size, padding=kernel_size // 2, groups=groups)
        self.trim = 1 if kernel_size % 2 == 0 else 0  # an even kernel yields one extra step

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.trim:
            x = x[..., : -self.trim]
        return F.gelu(_layer_norm_channels(x, self.conv.out_channels))


class ConvPositionalEncoder(nn.Module):
    """Sequential stack of grouped convolutions giving a relative positional signal. (B, T, D) -> (B, T, D).

    The result is *added* to the input by the caller. With a frame padding mask (B, T) the padded frames are
    zeroed before every convolution, so a padded batch sees exactly the zero padding a single utterance sees.
    """

    def __init__(self, embed_dim: int, kernel_size: int, groups: int, depth: int, pre_norm: bool, eps: float):
        super().__init__()
        self.pre_norm = nn.LayerNorm(embed_dim, eps=eps) if pre_norm else None
        self.layers = nn.ModuleList(GroupedConvLayer(embed_dim, embed_dim, kernel_size, groups) for _ in range(depth))

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        keep = None if padding_mask is None else (~padding_mask).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        x = x.transpose(1, 2)
        for layer in self.layers:
            if keep is not None:
                x = x * keep
            x = layer(x)
        return x.transpose(1, 2)


def alibi_slopes(num_heads: int) -> list[float]:
    """Geometric ALiBi slopes; for a non power of two, the power-of-two recipe plus every other slope of 2P."""

    def power_of_two(n: int) -> list[float]:
        ratio = 2.0 ** (-8.0 / n)
        return [ratio ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** int(math.floor(math.log2(num_heads)))
    return power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]


class SelfAttention(nn.Module):
    """Multi-head self-attention with an additive float bias. (B, S, D) + bias (B|1, H, S, S) -> (B, S, D).

    ``implementation``: ``"sdpa"`` (default) is :func:`torch.nn.functional.scaled_dot_product_attention` with the
    bias as ``attn_mask``; ``"eager"`` is the explicit path of the original implementation: logits from the scaled
    query, bias added in fp32, softmax in fp32 and cast back. Set per model with
    :meth:`~emotion2vec.models.Emotion2VecModel.set_attention_implementation`.
    """

    def __init__(self, embed_dim: int, num_heads: int, attention_dropout: float, proj_dropout: float,
                 implementation: str = "sdpa"):
        super().__init__()
        self.implementation = implementation
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.attention_dropout = attention_dropout
        self.proj_dropout = nn.Dropout(proj_dropout)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attention_dropout if self.training else 0.0
        if self.implementation == "eager":
            logits = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)  # (B, H, S, S)
            if bias is not None:
                logits = logits.to(bias.dtype) + bias
            probs = logits.float().softmax(dim=-1).to(q.dtype)
            probs = F.dropout(probs, dropout, self.training)
            out = probs @ v
        else:
            mask = None if bias is None else bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(B, S, D)
        return self.proj_dropout(self.out_proj(out))


class FeedForward(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout. (B, S, D) -> (B, S, D)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerBlock(nn.Module):
    """Post-norm block returning the block output and its raw FFN output (the distillation target).

    a = x + Attn(x); r = LN1(a); t = FFN(r); out = LN2(r + Dropout(t))
    (B, S, D) -> ((B, S, D), (B, S, D))
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float, norm_eps: float, attention_dropout: float,
                 proj_dropout: float, activation_dropout: float, post_ffn_dropout: float, drop_path: float):
        super().__init__()
        self.attention = SelfAttention(embed_dim, num_heads, attention_dropout, proj_dropout)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.feed_forward = FeedForward(embed_dim, int(embed_dim * mlp_ratio), activation_dropout)
        self.final_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.post_ffn_dropout = nn.Dropout(post_ffn_dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.attention_norm(x + self.drop_path(self.attention(x, bias)))
        ffn = self.feed_forward(x)
        out = self.final_norm(x + self.drop_path(self.post_ffn_dropout(ffn)))
        return out, ffn


class ConvDecoder(nn.Module):
    """Light CNN decoder of the student (training only): predicts the teacher targets of every frame.

    (B, T, D) -> (B, T, D). Layers after the first are residual.
    """

    def __init__(self, embed_dim: int, channels: int, kernel_size: int, groups: int, num_layers: int,
                 residual: bool):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(
            GroupedConvLayer(embed_dim if i == 0 else channels, channels, kernel_size, groups) for i in range(num_layers)
        )
        self.proj = nn.Linear(channels, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        for layer in self.layers:
            y = layer(x)
            x = y + x if self.residual and y.shape == x.shape else y
        return self.proj(x.transpose(1, 2))
