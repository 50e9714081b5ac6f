"""Model configuration: one dataclass, a few presets, and readers for the official config layouts.

The architecture of a checkpoint always comes from the checkpoint's own config (``norm_eps`` in particular:
the official files use 1e-5, the fairseq dataclass default is 1e-6). The readers here translate the
fairseq ``cfg.model`` / ``cfg.task`` dicts and FunASR's ``model_conf`` into :class:`Emotion2VecConfig`;
unknown keys are ignored, unsupported values are refused with the name of the field.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import Emotion2VecError

__all__ = [
    "Emotion2VecConfig",
    "PRESETS",
    "preset",
    "ConfigError",
    "parse_conv_spec",
    "conv_output_length",
    "ATTENTION_IMPLEMENTATIONS",
    "config_from_fairseq",
    "config_from_funasr",
]


#: "sdpa": torch's fused scaled_dot_product_attention; "eager": explicit logits + fp32 softmax, as the original code
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


class ConfigError(Emotion2VecError, ValueError):
    """A configuration value that this implementation cannot honour."""


@dataclass
class Emotion2VecConfig:
    """Architecture and training-time regularisation of the audio data2vec 2.0 / emotion2vec encoder.

    Field names follow the fairseq config where one exists, so official configs map one to one.
    """

    # Waveform front-end: "[(channels, kernel, stride), ...]" as a Python expression.
    feature_encoder_spec: str = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    # Transformer geometry.
    embed_dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    prenet_depth: int = 4  # blocks in the context encoder ("prenet"), before the extra tokens' ...
    depth: int = 8  # ... main blocks, whose FFN outputs are the distillation targets
    num_extra_tokens: int = 10  # learned utterance ("chunk") tokens prepended to the frames
    init_extra_token_zero: bool = True
    norm_eps: float = 1e-5
    # Convolutional relative positional encoder.
    conv_pos_width: int = 95
    conv_pos_groups: int = 16
    conv_pos_depth: int = 5
    conv_pos_pre_ln: bool = False
    # ALiBi: a fixed per-head slope times a (learned) non-negative scale.
    alibi_scale: float = 1.0
    learned_alibi_scale: bool = True
    learned_alibi_scale_per_head: bool = True
    learned_alibi_scale_per_layer: bool = False
    # Regularisation (training only).
    encoder_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    post_mlp_drop: float = 0.1
    dropout_input: float = 0.0
    layerdrop: float = 0.05
    start_drop_path_rate: float = 0.0
    end_drop_path_rate: float = 0.0
    prenet_layerdrop: float = 0.05
    prenet_dropout: float = 0.1
    prenet_start_drop_path_rate: float = 0.0
    prenet_end_drop_path_rate: float = 0.0
    # CNN decoder (training only).
    decoder_dim: int = 384
    decoder_groups: int = 16
    decoder_kernel: int = 7
    decoder_layers: int = 4
    decoder_input_dropout: float = 0.1
    decoder_residual: bool = True
    # Waveform preprocessing (the task config of the checkpoint).
    normalize: bool = True
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def conv_layers(self) -> list[tuple[int, int, int]]:
        return parse_conv_spec(self.feature_encoder_spec)

    @property
    def num_layers(self) -> int:
        """Transformer blocks in feature order: prenet blocks first, then main blocks."""
        return self.prenet_depth + self.depth

    @property
    def conv_pos_kernel(self) -> int:
        return max(3, self.conv_pos_width // self.conv_pos_depth)

    @property
    def frame_stride(self) -> int:
        stride = 1
        for _, _, s in self.conv_layers:
            stride *= s
        return stride

    @property
    def receptive_field(self) -> int:
        field_, jump = 1, 1
        for _, k, s in self.conv_layers:
            field_ += (k - 1) * jump
            jump *= s
        return field_

    def num_frames(self, num_samples: int) -> int:
        """Frames the CNN produces for ``num_samples`` samples (0 when shorter than the receptive field)."""
        return conv_output_length(num_samples, self.conv_layers)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Emotion2VecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown Emotion2VecConfig field(s): {', '.join(unknown)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "Emotion2VecConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        try:
            layers = self.conv_layers
        except Exception as e:  # noqa: BLE001 - re-raised with the offending value
            raise ConfigError(f"feature_encoder_spec {self.feature_encoder_spec!r} is not a list of "
                              f"(channels, kernel, stride) tuples: {e}") from None
        if not layers:
            raise ConfigError("feature_encoder_spec has no layers")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.embed_dim % self.conv_pos_groups:
            raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by conv_pos_groups={self.conv_pos_groups}")
        if self.decoder_layers > 0 and (self.embed_dim % self.decoder_groups or self.decoder_dim % self.decoder_groups):
            raise ConfigError(f"decoder_groups={self.decoder_groups} must divide embed_dim={self.embed_dim} "
                              f"and decoder_dim={self.decoder_dim}")
        for name in ("depth", "prenet_depth", "num_extra_tokens", "conv_pos_depth", "decoder_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        if self.depth < 1:
            raise ConfigError(f"depth={self.depth} must be >= 1")


def parse_conv_spec(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``feature_encoder_spec`` without ``eval``: only list/tuple literals, ``+`` and ``*``."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported syntax {ast.dump(node)}")

    value = ev(ast.parse(spec.strip(), mode="eval"))
    if not isinstance(value, list) or not all(
        isinstance(t, tuple) and len(t) == 3 and all(isinstance(v, int) and v > 0 for v in t) for t in value
    ):
        raise ValueError("expected a list of 3-tuples of positive ints")
    return value


def conv_output_length(num_samples: int, conv_layers: list[tuple[int, int, int]]) -> int:
    length = int(num_samples)
    for _, k, s in conv_layers:
        length = (length - k) // s + 1
        if length <= 0:
            return 0
    return length


# ---------------------------------------------------------------------- presets
PRESETS: dict[str, Emotion2VecConfig] = {
    # emotion2vec_base (the model_conf of FunASR's template.yaml): 4 prenet + 8 main blocks, 10 utterance tokens.
    "emotion2vec_base": Emotion2VecConfig(),
    # data2vec 2.0 base_libri as published (base_audio_only_task.yaml): 12 main blocks, no extra tokens.
    "data2vec2_base": Emotion2VecConfig(prenet_depth=0, depth=12, num_extra_tokens=0),
    # data2vec 2.0 base in the dataclass-default layout (4 prenet + 8 main), no extra tokens.
    "data2vec2_base_8x4": Emotion2VecConfig(prenet_depth=4, depth=8, num_extra_tokens=0),
    # A small model for CPU smoke runs, tests and the demo (~1.3 M parameters).
    "small": Emotion2VecConfig(
        feature_encoder_spec="[(128, 10, 5)] + [(128, 3, 2)] * 4 + [(128,2,2)] + [(128,2,2)]",
        embed_dim=128, num_heads=4, prenet_depth=1, depth=3, num_extra_tokens=4,
        conv_pos_width=95, conv_pos_groups=16, conv_pos_depth=5,
        decoder_dim=64, decoder_groups=16, decoder_layers=2,
    ),
}


def preset(name: str, **overrides: Any) -> Emotion2VecConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ---------------------------------------------------------------------- official config readers
# fairseq field -> our field, at the model level and at cfg.model.modalities.audio level.
_MODEL_LEVEL = {
    "embed_dim": "embed_dim", "num_heads": "num_heads", "mlp_ratio": "mlp_ratio", "depth": "depth",
    "norm_eps": "norm_eps", "encoder_dropout": "encoder_dropout", "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout", "post_mlp_drop": "post_mlp_drop", "dropout_input": "dropout_input",
    "layerdrop": "layerdrop", "start_drop_path_rate": "start_drop_path_rate",
    "end_drop_path_rate": "end_drop_path_rate",
}
_AUDIO_LEVEL = {
    "feature_encoder_spec": "feature_encoder_spec", "prenet_depth": "prenet_depth",
    "num_extra_tokens": "num_extra_tokens", "init_extra_token_zero": "init_extra_token_zero",
    "conv_pos_width": "conv_pos_width", "conv_pos_groups": "conv_pos_groups", "conv_pos_depth": "conv_pos_depth",
    "conv_pos_pre_ln": "conv_pos_pre_ln", "alibi_scale": "alibi_scale", "learned_alibi_scale": "learned_alibi_scale",
    "learned_alibi_scale_per_head": "learned_alibi_scale_per_head",
    "learned_alibi_scale_per_layer": "learned_alibi_scale_per_layer", "prenet_layerdrop": "prenet_layerdrop",
    "prenet_dropout": "prenet_dropout", "start_drop_path_rate": "prenet_start_drop_path_rate",
    "end_drop_path_rate": "prenet_end_drop_path_rate",
}
_DECODER_LEVEL = {
    "decoder_dim": "decoder_dim", "decoder_groups": "decoder_groups", "decoder_kernel": "decoder_kernel",
    "decoder_layers": "decoder_layers", "input_dropout": "decoder_input_dropout",
    "decoder_residual": "decoder_residual",
}
# Values we do not implement; a checkpoint asking for anything else is refused, naming the field.
_REQUIRED = {
    ("model", "layer_norm_first"): False,
    ("model", "norm_affine"): True,
    ("audio", "use_alibi_encoder"): True,
    ("audio", "learned_alibi"): False,
    ("audio", "extractor_mode"): "layer_norm",
    ("decoder", "projection_layers"): 1,
    ("decoder", "add_positions_masked"): False,
    ("decoder", "add_positions_all"): False,
}


def _lookup(d: Mapping[str, Any] | None, key: str) -> Any:
    if d is None:
        return None
    return d.get(key) if hasattr(d, "get") else None


def config_from_fairseq(model_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any] | None = None,
                        where: str = "checkpoint") -> Emotion2VecConfig:
    """Build the architecture from a fairseq ``cfg.model`` (and ``cfg.task``) mapping; unknown keys are ignored."""
    modalities = _lookup(model_cfg, "modalities") or {}
    audio = _lookup(modalities, "audio") or {}
    decoder = _lookup(audio, "decoder") or {}
    levels = {"model": model_cfg, "audio": audio, "decoder": decoder}
    for (level, key), expected in _REQUIRED.items():
        value = _lookup(levels[level], key)
        if value is not None and value != expected:
            raise ConfigError(f"{where}: {level}.{key}={value!r} is not supported (only {expected!r})")
    num_alibi_heads = _lookup(audio, "num_alibi_heads")
    num_heads = _lookup(model_cfg, "num_heads")
    if num_alibi_heads is not None and num_heads is not None and num_alibi_heads != num_heads:
        raise ConfigError(f"{where}: num_alibi_heads={num_alibi_heads} != num_heads={num_heads} is not supported")

    kwargs: dict[str, Any] = {}
    for mapping, src in ((_MODEL_LEVEL, model_cfg), (_AUDIO_LEVEL, audio), (_DECODER_LEVEL, decoder)):
        for theirs, ours in mapping.items():
            value = _lookup(src, theirs)
            if value is not None:
                kwargs[ours] = value
    for key in ("norm_eps", "mlp_ratio", "alibi_scale"):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])  # YAML 1.1 reads "1e-05" as a string
    for key in ("normalize", "sample_rate"):
        value = _lookup(task_cfg, key)
        if value is None:
            value = _lookup(model_cfg, key)  # FunASR keeps `normalize` in model_conf
        if value is not None:
            kwargs[key] = value
    if "sample_rate" in kwargs and int(kwargs["sample_rate"]) != 16000:
        raise ConfigError(f"{where}: task.sample_rate={kwargs['sample_rate']} is not supported (16000 only)")
    try:
        return Emotion2VecConfig(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def config_from_funasr(model_conf: Mapping[str, Any], where: str = "config.yaml") -> Emotion2VecConfig:
    """FunASR keeps the fairseq ``cfg.model`` layout under ``model_conf`` plus ``normalize``."""
    return config_from_fairseq(model_conf, None, where=where)
