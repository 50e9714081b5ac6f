"""data2vec (v1) audio, natively: the encoder of fairseq's ``data2vec_audio`` checkpoints (``audio_base_ls.pt``).

    waveform (B, N)
      -> feature_extractor (CNN, as data2vec 2.0)          (B, T, C)
      -> feature_projection (LayerNorm + Linear)           (B, T, D)
      -> padded frames set to 0; x = x + pos_conv(x)
      -> context_norm (LayerNorm, *before* the first block: post-LN model)
      -> blocks: post-LN Transformer layers, no ALiBi, no extra tokens, no final LayerNorm
      -> x (B, T, D) = the last block's output, plus every block's output (and FFN output)

Two positional convolutions exist: ``conv_pos_depth > 1`` (the published base: 5 layers of grouped Conv1d with
kernel ``max(3, conv_pos // depth)``, each followed by a LayerNorm over channels without affine and GELU, the same
stack as data2vec 2.0) and ``conv_pos_depth == 1`` (fairseq's default: one weight-normed grouped Conv1d of kernel
``conv_pos``, then GELU). The modules are named like :class:`~emotion2vec.models.Emotion2VecModel`'s wherever they
compute the same function, so a data2vec (v1) state dict is also an emotion2vec state dict of a 0 + L block layout
(:mod:`emotion2vec.pretrain.init` relies on this).

Checkpoint keys are mapped with :data:`KEY_RULES` (one rule per key family, with an example each); a key no rule
knows is an error, the training-only tensors (``mask_emb``, ``final_proj``) are dropped and reported.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import Emotion2VecError
from .components import ATTENTION_IMPLEMENTATIONS, ConvFeatureExtractor, ConvPositionalEncoder, FeatureProjection, \
    TransformerBlock, frames_padding_mask
from .config import ConfigError, conv_output_length, parse_conv_spec
from .encoder import FeatureOutput

__all__ = ["Data2Vec1Config", "Data2Vec1Model", "Data2Vec1Encoder", "WeightNormPositionalConv", "KEY_RULES",
           "Data2Vec1KeyError", "data2vec1_to_ours", "map_state", "read_fairseq_data2vec1", "ARCHITECTURE"]

ARCHITECTURE = "data2vec1"


class Data2Vec1KeyError(Emotion2VecError, ValueError):
    """State-dict keys that do not belong to a data2vec (v1) audio encoder, or an incomplete q/k/v triple."""


@dataclass
class Data2Vec1Config:
    """Architecture of a data2vec (v1) audio encoder (defaults: the published base, ``audio_base_ls.pt``).

    Field names follow :class:`~emotion2vec.models.Emotion2VecConfig` where the meaning is the same; the fairseq
    name is in the comment.
    """

    feature_encoder_spec: str = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"  # conv_feature_layers
    embed_dim: int = 768  # encoder_embed_dim
    num_heads: int = 12  # encoder_attention_heads
    ffn_dim: int = 3072  # encoder_ffn_embed_dim
    depth: int = 12  # encoder_layers
    conv_pos_width: int = 95  # conv_pos
    conv_pos_groups: int = 16  # conv_pos_groups
    conv_pos_depth: int = 5  # pos_conv_depth (1 = one weight-normed convolution)
    norm_eps: float = 1e-5
    # regularisation (training only)
    dropout: float = 0.1  # after attention and after the FFN
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0  # inside the FFN
    dropout_input: float = 0.0  # on the projected CNN features
    layerdrop: float = 0.0  # encoder_layerdrop
    # waveform preprocessing (the checkpoint's task config)
    normalize: bool = True
    sample_rate: int = 16000

    architecture = ARCHITECTURE  # class attribute: recorded in our config.json, selects this model when read
    prenet_depth = 0  # no prenet: every block is a main block (for layout adapters)
    num_extra_tokens = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def conv_layers(self) -> list[tuple[int, int, int]]:
        return parse_conv_spec(self.feature_encoder_spec)

    @property
    def num_layers(self) -> int:
        return self.depth

    @property
    def conv_pos_kernel(self) -> int:
        return self.conv_pos_width if self.conv_pos_depth == 1 else max(3, self.conv_pos_width // self.conv_pos_depth)

    @property
    def frame_stride(self) -> int:
        return math.prod(s for _, _, s in self.conv_layers)

    def num_frames(self, num_samples: int) -> int:
        return conv_output_length(num_samples, self.conv_layers)

    def validate(self) -> None:
        try:
            self.conv_layers
        except Exception as e:  # noqa: BLE001 - re-raised with the value
            raise ConfigError(f"feature_encoder_spec {self.feature_encoder_spec!r}: {e}") from None
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.embed_dim % self.conv_pos_groups:
            raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by conv_pos_groups={self.conv_pos_groups}")
        if int(self.embed_dim * (self.ffn_dim / self.embed_dim)) != self.ffn_dim:
            raise ConfigError(f"ffn_dim={self.ffn_dim} is not representable as a ratio of embed_dim={self.embed_dim}")
        if self.depth < 1 or self.conv_pos_depth < 1:
            raise ConfigError(f"depth={self.depth} and conv_pos_depth={self.conv_pos_depth} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": ARCHITECTURE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Data2Vec1Config":
        d = {k: v for k, v in d.items() if k != "architecture"}
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown Data2Vec1Config field(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "Data2Vec1Config":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ fairseq cfg.model / cfg.task
    #: fairseq field -> ours
    FAIRSEQ_FIELDS = {
        "conv_feature_layers": "feature_encoder_spec", "encoder_embed_dim": "embed_dim",
        "encoder_attention_heads": "num_heads", "encoder_ffn_embed_dim": "ffn_dim", "encoder_layers": "depth",
        "conv_pos": "conv_pos_width", "conv_pos_groups": "conv_pos_groups", "pos_conv_depth": "conv_pos_depth",
        "dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
        "dropout_input": "dropout_input", "encoder_layerdrop": "layerdrop",
    }
    #: values this implementation reproduces; a checkpoint asking for anything else is refused, naming the field
    FAIRSEQ_REQUIRED = {"extractor_mode": "layer_norm", "layer_norm_first": False, "conv_bias": False,
                        "activation_fn": "gelu", "layer_type": "transformer", "pos_enc_type": "abs"}

    @classmethod
    def from_fairseq(cls, model_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any] | None,
                     where: str) -> "Data2Vec1Config":
        for key, expected in cls.FAIRSEQ_REQUIRED.items():
            value = model_cfg.get(key)
            if value is not None and value != expected:
                raise ConfigError(f"{where}: model.{key}={value!r} is not supported for data2vec (v1) "
                                  f"(only {expected!r})")
        kwargs = {ours: model_cfg[theirs] for theirs, ours in cls.FAIRSEQ_FIELDS.items()
                  if model_cfg.get(theirs) is not None}
        for key in ("normalize", "sample_rate"):
            if (task_cfg or {}).get(key) is not None:
                kwargs[key] = task_cfg[key]
        if int(kwargs.get("sample_rate", 16000)) != 16000:
            raise ConfigError(f"{where}: task.sample_rate={kwargs['sample_rate']} is not supported (16000 only)")
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


class WeightNormPositionalConv(nn.Module):
    """One weight-normed grouped Conv1d ('same' padding) -> GELU: fairseq's ``pos_conv_depth == 1``.
    (B, T, D) -> (B, T, D).

    weight = weight_g * weight_v / ||weight_v||, the norm taken over every dim except the kernel axis (dim 2), so
    ``weight_g`` has shape (1, 1, kernel). Padded frames (mask (B, T)) are zeroed before the convolution.
    """

    def __init__(self, embed_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        v = torch.randn(embed_dim, embed_dim // groups, kernel_size) * math.sqrt(4.0 / (kernel_size * embed_dim))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))  # the weight starts equal to v
        self.bias = nn.Parameter(torch.zeros(embed_dim))

    def weight(self) -> Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        y = F.conv1d(x.transpose(1, 2), self.weight().to(x.dtype), self.bias.to(x.dtype),
                     padding=self.kernel_size // 2, groups=self.groups)
        if self.kernel_size % 2 == 0:  # an even kernel yields one extra step
            y = y[..., :-1]
        return F.gelu(y).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, groups={self.groups}, weight_norm_dim=2"


class Data2Vec1Encoder(nn.Module):
    """Positional convolution, the LayerNorm before the first block, the post-LN blocks.

    forward: local features (B, T, D), frame padding mask (B, T) -> (x (B, T, D), per-block outputs, FFN outputs).
    """

    def __init__(self, cfg: Data2Vec1Config):
        super().__init__()
        D = cfg.embed_dim
        if cfg.conv_pos_depth > 1:
            self.pos_conv: nn.Module = ConvPositionalEncoder(D, cfg.conv_pos_kernel, cfg.conv_pos_groups,
                                                             cfg.conv_pos_depth, pre_norm=False, eps=cfg.norm_eps)
        else:
            self.pos_conv = WeightNormPositionalConv(D, cfg.conv_pos_kernel, cfg.conv_pos_groups)
        self.context_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layerdrop = cfg.layerdrop
        self.blocks = nn.ModuleList(
            TransformerBlock(D, cfg.num_heads, cfg.ffn_dim / D, cfg.norm_eps, cfg.attention_dropout, cfg.dropout,
                             cfg.activation_dropout, cfg.dropout, 0.0) for _ in range(cfg.depth))

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, collect_layers: Iterable[int] | None = None,
                collect_ffn: Iterable[int] | None = ()) -> tuple[Tensor, list[Tensor | None], list[Tensor | None]]:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = self.dropout(self.context_norm(x + self.pos_conv(x, padding_mask)))
        bias = None
        if padding_mask is not None:  # keys only: (B, 1, 1, T), -inf at padded frames
            bias = torch.zeros(padding_mask.shape, dtype=torch.float32, device=x.device)
            bias = bias.masked_fill(padding_mask, float("-inf"))[:, None, None, :]
        n = len(self.blocks)
        keep_h = set(range(n) if collect_layers is None else (i % n for i in collect_layers))
        keep_f = set(range(n) if collect_ffn is None else (i % n for i in collect_ffn))
        layer_outputs: list[Tensor | None] = [None] * n
        ffn_outputs: list[Tensor | None] = [None] * n
        for i, blk in enumerate(self.blocks):
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x, ffn = blk(x, bias)
            if i in keep_h:
                layer_outputs[i] = x
            if i in keep_f:
                ffn_outputs[i] = ffn
        return x, layer_outputs, ffn_outputs


class Data2Vec1Model(nn.Module):
    """data2vec (v1) audio encoder with the upstream interface of :class:`~emotion2vec.models.Emotion2VecModel`."""

    kind = ARCHITECTURE

    def __init__(self, cfg: Data2Vec1Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureExtractor(cfg.conv_layers)
        self.feature_projection = FeatureProjection(self.feature_extractor.out_channels, cfg.embed_dim)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = Data2Vec1Encoder(cfg)

    def set_attention_implementation(self, implementation: str) -> "Data2Vec1Model":
        """``"sdpa"`` (fused, default) or ``"eager"`` (explicit fp32 softmax). Returns self."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"attention implementation {implementation!r}: choose one of "
                              f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
        for block in self.encoder.blocks:
            block.attention.implementation = implementation
        return self

    @property
    def attention_implementation(self) -> str:
        return self.encoder.blocks[0].attention.implementation

    def extract_features(self, waveform: Tensor, padding_mask: Tensor | None = None,
                         layers: Iterable[int] | None = None, ffn: Iterable[int] | None = ()) -> FeatureOutput:
        """waveform (B, N), normalised per utterance when ``cfg.normalize``; padding_mask (B, N) True = padding.

        ``layers`` / ``ffn``: block indices (negative allowed) to return; None = all. -> FeatureOutput with x (B, T, D).
        """
        feats = self.feature_projection(self.feature_extractor(waveform))
        frame_mask = frames_padding_mask(self.feature_extractor, padding_mask, feats.shape[1])
        x, hidden, ffn_outputs = self.encoder(self.dropout_input(feats), frame_mask, layers, ffn)
        return FeatureOutput(x, hidden, ffn_outputs, frame_mask)


# ---------------------------------------------------------------------- fairseq key names -> ours
_L = r"encoder\.layers\.(\d+)\."
#: One rule per key family of fairseq's data2vec_audio model: (pattern, template). ``q_proj`` / ``k_proj`` /
#: ``v_proj`` map to per-part names that :func:`map_state` fuses, in that order, into the fused ``qkv`` projection.
KEY_RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    # feature_extractor.conv_layers.3.0.weight -> feature_extractor.layers.3.conv.weight
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight$", r"feature_extractor.layers.\1.conv.weight"),
    # feature_extractor.conv_layers.3.2.1.bias -> feature_extractor.layers.3.norm.bias
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$", r"feature_extractor.layers.\1.norm.\2"),
    # layer_norm.weight -> feature_projection.norm.weight
    (r"layer_norm\.(weight|bias)$", r"feature_projection.norm.\1"),
    # post_extract_proj.bias -> feature_projection.linear.bias
    (r"post_extract_proj\.(weight|bias)$", r"feature_projection.linear.\1"),
    # pos_conv_depth > 1: encoder.pos_conv.4.0.weight -> encoder.pos_conv.layers.4.conv.weight
    (r"encoder\.pos_conv\.(\d+)\.0\.(weight|bias)$", r"encoder.pos_conv.layers.\1.conv.\2"),
    # pos_conv_depth == 1: encoder.pos_conv.0.weight_g -> encoder.pos_conv.weight_g
    (r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)$", r"encoder.pos_conv.\1"),
    # encoder.layer_norm.weight -> encoder.context_norm.weight
    (r"encoder\.layer_norm\.(weight|bias)$", r"encoder.context_norm.\1"),
    # encoder.layers.2.self_attn.k_proj.weight -> encoder.blocks.2.attention.k_proj.weight (fused into qkv)
    (_L + r"self_attn\.(q|k|v)_proj\.(weight|bias)$", r"encoder.blocks.\1.attention.\2_proj.\3"),
    # encoder.layers.2.self_attn.out_proj.bias -> encoder.blocks.2.attention.out_proj.bias
    (_L + r"self_attn\.out_proj\.(weight|bias)$", r"encoder.blocks.\1.attention.out_proj.\2"),
    # encoder.layers.2.self_attn_layer_norm.weight -> encoder.blocks.2.attention_norm.weight
    (_L + r"self_attn_layer_norm\.(weight|bias)$", r"encoder.blocks.\1.attention_norm.\2"),
    # encoder.layers.2.fc1.weight -> encoder.blocks.2.feed_forward.fc1.weight
    (_L + r"(fc1|fc2)\.(weight|bias)$", r"encoder.blocks.\1.feed_forward.\2.\3"),
    # encoder.layers.2.final_layer_norm.bias -> encoder.blocks.2.final_norm.bias
    (_L + r"final_layer_norm\.(weight|bias)$", r"encoder.blocks.\1.final_norm.\2"),
]]
#: tensors used only by data2vec's pretraining objective: the mask embedding and the regression head
TRAINING_ONLY = re.compile(r"(mask_emb|final_proj\.(weight|bias))$")
_QKV = re.compile(r"(.*\.attention\.)(q|k|v)_proj\.(weight|bias)$")


def data2vec1_to_ours(key: str) -> str | None:
    """One fairseq data2vec_audio key -> ours (q/k/v still per part); None if no rule knows it."""
    key = key[len("module."):] if key.startswith("module.") else key
    for pattern, template in KEY_RULES:
        m = pattern.match(key)
        if m:
            return m.expand(template)
    return None


def map_state(state: Mapping[str, Any], where: str) -> tuple[dict[str, Tensor], list[str]]:
    """A fairseq data2vec_audio state dict -> ours with fused q/k/v. Returns (state, dropped training-only keys).

    Unknown keys and incomplete q/k/v triples raise :class:`Data2Vec1KeyError` naming them.
    """
    out: dict[str, Tensor] = {}
    unknown, dropped = [], []
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        if TRAINING_ONLY.fullmatch(key.removeprefix("module.")):
            dropped.append(key)
            continue
        ours = data2vec1_to_ours(key)
        if ours is None:
            unknown.append(key)
        else:
            out[ours] = value
    if unknown:
        raise Data2Vec1KeyError(f"{where}: {len(unknown)} tensor(s) are not part of a data2vec (v1) audio encoder: "
                                f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key in [k for k in out if _QKV.match(k)]:
        m = _QKV.match(key)
        parts.setdefault((m[1], m[3]), {})[m[2]] = out.pop(key)
    for (prefix, kind), qkv in sorted(parts.items()):
        if set(qkv) != {"q", "k", "v"}:
            raise Data2Vec1KeyError(f"{where}: {prefix}{kind}: found only the {'/'.join(sorted(qkv))} projection(s) "
                                    f"of q/k/v")
        out[f"{prefix}qkv.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out, dropped


def read_fairseq_data2vec1(model_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any] | None,
                           state: Mapping[str, Any], ema: Mapping[str, Any] | None, where: str
                           ) -> tuple[Data2Vec1Config, dict[str, Tensor], dict[str, Tensor] | None, dict[str, Any]]:
    """A fairseq ``data2vec_audio`` checkpoint's parts -> (config, student state, teacher state, info).

    The teacher is fairseq's EMA (``_ema``), an EMA of the encoder: its keys (relative to the encoder, or to the
    model for an EMA of the whole model) are mapped like the student's and returned relative to ``encoder.``.
    ``info``: ``dropped`` (training-only keys) and ``teacher_unused`` (EMA tensors outside the encoder).
    """
    config = Data2Vec1Config.from_fairseq(model_cfg, task_cfg, where)
    student, dropped = map_state(state, where)
    info: dict[str, Any] = {"dropped": dropped}
    teacher = None
    if isinstance(ema, Mapping) and ema:
        relative = any(k.startswith("layers.") for k in ema)  # an EMA of the encoder (ema_transformer_only)
        mapped, _ = map_state({("encoder." + k if relative else k): v for k, v in ema.items()}, f"{where} (_ema)")
        teacher = {k[len("encoder."):]: v for k, v in mapped.items() if k.startswith("encoder.")}
        info["teacher_unused"] = sorted(k for k in mapped if not k.startswith("encoder."))
    return config, student, teacher, info
