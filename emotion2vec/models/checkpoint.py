"""Reading and writing checkpoints: official fairseq / FunASR layouts and our own safetensors format.

Supported inputs
    * fairseq checkpoints (``emotion2vec_base.pt``, data2vec 2.0 ``base_libri.pt``, and the ``checkpoint_*.pt`` our
      fairseq plugin writes): ``cfg`` as a plain dict or a pickled ``DictConfig``, ``model`` with an optional
      nested ``_ema`` (teacher) dict; optimizer state is dropped.
    * FunASR / ModelScope: a directory (or its ``model.pt``) with ``config.yaml`` beside it; an emotion2vec+
      classifier also holds ``proj`` (Linear D -> labels) in ``model.pt`` and the labels in ``tokens.txt``.
    * Ours: a directory with ``config.json`` + ``model.safetensors`` (+ ``teacher.safetensors``, + ``head.safetensors``
      for a classifier).

Security: pickles are read with ``torch.load(weights_only=True)`` and an allow-list of the omegaconf / numpy /
builtin types fairseq checkpoints contain. Anything else is refused unless the caller passes ``trust=True``
(CLI: ``--trust-checkpoint``) for a file they trust; loading never runs code from the file otherwise.

The architecture always comes from the file's own config.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import Emotion2VecError
from ..io.atomic import atomic_write_bytes, atomic_write_text
from .config import ConfigError, Emotion2VecConfig, config_from_fairseq, config_from_funasr, preset

__all__ = [
    "CheckpointError",
    "UntrustedCheckpointError",
    "LoadedCheckpoint",
    "ClassifierSpec",
    "read_checkpoint",
    "build_model",
    "load_model",
    "load_state_strict",
    "official_to_ours",
    "KEY_RULES",
    "convert_checkpoint",
    "save_checkpoint_dir",
    "sha256_file",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "emotion2vec"
FORMAT_VERSION = 1


class CheckpointError(Emotion2VecError, RuntimeError):
    """A checkpoint that cannot be used: unreadable, incompatible or inconsistent."""


class UntrustedCheckpointError(CheckpointError):
    """The pickle references a global outside the allow-list; loading it could run code."""


# ---------------------------------------------------------------------- safe unpickling
def _allowed_globals() -> list[Any]:
    allowed: list[Any] = [dict, list, tuple, set, int, float, bool, str, bytes, complex, slice, type(None),
                          collections.OrderedDict, collections.defaultdict, typing.Any]
    try:
        import omegaconf
        from omegaconf import base, nodes

        allowed += [omegaconf.DictConfig, omegaconf.ListConfig, base.ContainerMetadata, base.Metadata,
                    nodes.AnyNode, nodes.StringNode, nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode,
                    nodes.ValueNode]
        if hasattr(nodes, "BytesNode"):
            allowed.append(nodes.BytesNode)
        if hasattr(nodes, "PathNode"):
            allowed.append(nodes.PathNode)
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        pass
    import numpy as np

    allowed += [np.dtype, np.ndarray]
    try:
        allowed.append(np._core.multiarray._reconstruct)  # numpy >= 2
        allowed.append(np._core.multiarray.scalar)
    except AttributeError:  # pragma: no cover - numpy 1.x
        allowed.append(np.core.multiarray._reconstruct)
        allowed.append(np.core.multiarray.scalar)
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                            "uint8", "bool", "uint16", "uint32", "uint64")]
    return allowed


def _not_a_checkpoint(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a checkpoint ({why})")


def _check_torch_file(path: Path) -> bool:
    """Refuse, before anything is unpickled, a file that is neither of PyTorch's two formats (a zip archive, or a
    pickle from ``torch.save(..., _use_new_zipfile_serialization=False)``): an empty file, text, random bytes.
    -> whether it is a zip archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    if not head:
        raise _not_a_checkpoint(path, "an empty file")
    if head.startswith(b"PK\x03\x04"):
        return True
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5
        return False
    try:
        line = (head.decode("utf-8").splitlines() or [""])[0]
    except UnicodeDecodeError:
        line = ""
    looks = (f"it holds text: {line[:40]!r}" if line.strip() and line.replace("\t", " ").isprintable()
             else f"it starts with the bytes {head[:8].hex(' ')}")
    raise _not_a_checkpoint(path, f"neither a PyTorch zip archive nor a pickle; {looks}")


def _torch_load(path: Path, trust: bool) -> Any:
    mmap = _check_torch_file(path)
    if trust:
        logger.warning("loading %s with --trust-checkpoint: the pickle may execute code", path)
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - classified below
        msg = str(e)
        first = next((line.strip() for line in msg.splitlines() if line.strip()), type(e).__name__)
        if "Unsupported global" not in msg:
            # corrupt or truncated data, or pickle opcodes that are not a pickle's: not a checkpoint; trusting it
            # would not help, so --trust-checkpoint is never suggested for it
            detail = re.search(r"Unsupported operand[^\n]*", msg)
            raise _not_a_checkpoint(path, f"unreadable as a PyTorch file: "
                                          f"{detail.group(0) if detail else type(e).__name__ + ': ' + first}") from e
        m = re.search(r"GLOBAL ([\w.]+)", msg) or re.search(r"Unsupported global[^\n]*?([\w.]+)", msg)
        offending = m.group(1) if m else "an object the safe loader does not allow"
        raise UntrustedCheckpointError(
            f"{path}: refused to unpickle {offending}: it is not one of the tensor/config types a checkpoint "
            f"needs, and unpickling it could execute code. If you trust this file, load it with "
            f"--trust-checkpoint (Python: trust=True); otherwise do not use it."
        ) from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------- official key names -> ours
_A = r"modality_encoders\.AUDIO\."
#: sub-module names inside a transformer block: official -> ours
_BLOCK_PARTS = {"norm1": "attention_norm", "attn.qkv": "attention.qkv", "attn.proj": "attention.out_proj",
                "norm2": "final_norm", "mlp.fc1": "feed_forward.fc1", "mlp.fc2": "feed_forward.fc2"}
_PART = r"(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)$"


def _minus_one(index: str) -> str:
    return str(int(index) - 1)


#: One rule per key family of the fairseq / FunASR data2vec 2.0 audio encoder: (pattern, replacement). A string
#: replacement is a regex template; a callable gets the match. Keys matching no rule are an error.
KEY_RULES: list[tuple[re.Pattern[str], Any]] = [(re.compile(p), r) for p, r in [
    # modality_encoders.AUDIO.local_encoder.conv_layers.3.0.weight -> feature_extractor.layers.3.conv.weight
    (_A + r"local_encoder\.conv_layers\.(\d+)\.0\.weight$", r"feature_extractor.layers.\1.conv.weight"),
    # modality_encoders.AUDIO.local_encoder.conv_layers.3.2.1.bias -> feature_extractor.layers.3.norm.bias
    (_A + r"local_encoder\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$", r"feature_extractor.layers.\1.norm.\2"),
    # modality_encoders.AUDIO.project_features.1.weight -> feature_projection.norm.weight
    (_A + r"project_features\.1\.(weight|bias)$", r"feature_projection.norm.\1"),
    # modality_encoders.AUDIO.project_features.2.bias -> feature_projection.linear.bias
    (_A + r"project_features\.2\.(weight|bias)$", r"feature_projection.linear.\1"),
    # modality_encoders.AUDIO.relative_positional_encoder.1.0.weight -> encoder.pos_conv.layers.0.conv.weight
    # (index 0 of the official Sequential is a transpose, so conv layer i sits at i + 1)
    (_A + r"relative_positional_encoder\.(\d+)\.0\.(weight|bias)$",
     lambda m: f"encoder.pos_conv.layers.{_minus_one(m[1])}.conv.{m[2]}"),
    # conv_pos_pre_ln=True: relative_positional_encoder.0.weight -> encoder.pos_conv.pre_norm.weight
    (_A + r"relative_positional_encoder\.0\.(weight|bias)$", r"encoder.pos_conv.pre_norm.\1"),
    # conv_pos_pre_ln=True: relative_positional_encoder.1.1.0.weight -> encoder.pos_conv.layers.0.conv.weight
    (_A + r"relative_positional_encoder\.1\.(\d+)\.0\.(weight|bias)$",
     lambda m: f"encoder.pos_conv.layers.{_minus_one(m[1])}.conv.{m[2]}"),
    # modality_encoders.AUDIO.alibi_scale -> encoder.alibi_scale
    (_A + r"alibi_scale$", "encoder.alibi_scale"),
    # modality_encoders.AUDIO.extra_tokens -> encoder.extra_tokens
    (_A + r"extra_tokens$", "encoder.extra_tokens"),
    # modality_encoders.AUDIO.context_encoder.norm.bias -> encoder.context_norm.bias
    (_A + r"context_encoder\.norm\.(weight|bias)$", r"encoder.context_norm.\1"),
    # modality_encoders.AUDIO.context_encoder.blocks.2.attn.qkv.weight -> encoder.prenet.2.attention.qkv.weight
    (_A + r"context_encoder\.blocks\.(\d+)\." + _PART,
     lambda m: f"encoder.prenet.{m[1]}.{_BLOCK_PARTS[m[2]]}.{m[3]}"),
    # blocks.7.mlp.fc2.bias -> encoder.blocks.7.feed_forward.fc2.bias
    (r"blocks\.(\d+)\." + _PART, lambda m: f"encoder.blocks.{m[1]}.{_BLOCK_PARTS[m[2]]}.{m[3]}"),
    # modality_encoders.AUDIO.decoder.blocks.1.0.weight -> decoder.layers.1.conv.weight
    (_A + r"decoder\.blocks\.(\d+)\.0\.(weight|bias)$", r"decoder.layers.\1.conv.\2"),
    # modality_encoders.AUDIO.decoder.proj.weight -> decoder.proj.weight
    (_A + r"decoder\.proj\.(weight|bias)$", r"decoder.proj.\1"),
]]


def official_to_ours(key: str) -> str | None:
    """Map one fairseq / FunASR state-dict key to ours; None if it is not part of the audio encoder."""
    if key.startswith("module."):
        key = key[len("module."):]
    for pattern, replacement in KEY_RULES:
        m = pattern.match(key)
        if m:
            return replacement(m) if callable(replacement) else m.expand(replacement)
    return None


def _map_state(state: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    """A student state dict in official names -> ours. Unknown keys are an error naming them."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        ours = official_to_ours(key)
        if ours is None:
            unknown.append(key)
            continue
        if ours.endswith("alibi_scale") and value.dim() == 4:  # legacy (H?, 1, 1) layout without the layer axis
            value = value.unsqueeze(0)
        out[ours] = value
    if unknown:
        raise CheckpointError(f"{where}: {len(unknown)} tensor(s) do not belong to the audio encoder: "
                              f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    return out


def _map_teacher(state: Mapping[str, Tensor], where: str) -> tuple[dict[str, Tensor], list[str]]:
    """The ``_ema`` teacher in official names -> ours, relative to the context encoder (``encoder.``).

    A teacher saved with ``ema_encoder_only`` holds the main blocks alone (``0.attn.qkv.weight``); one saved with
    ``ema_local_encoder`` also holds the CNN and projection, which our teacher does not have (it reads the student's
    CNN features): those keys are returned as the second value, in our names, so callers can report them.
    """
    renamed = {("blocks." + k if re.match(r"\d+\.", k) else k): v for k, v in state.items()}
    mapped = _map_state(renamed, where)
    teacher = {k[len("encoder."):]: v for k, v in mapped.items() if k.startswith("encoder.")}
    outside = sorted(k for k in mapped if not k.startswith("encoder."))
    return teacher, outside


# ---------------------------------------------------------------------- reading
@dataclass
@dataclass
class ClassifierSpec:
    """A classification head stored with an encoder: what :mod:`emotion2vec.recognize` builds a recogniser from.

    ``kind`` names the head (``mean_linear``: mean over the frames of the last layer, then a Linear, as FunASR's
    emotion2vec+); ``labels`` are the label strings as the checkpoint spells them (``生气/angry``, ``<unk>``, ...);
    ``state`` the head's tensors; ``config`` whatever else the head needs (layer, pooling, ...).
    """

    kind: str
    labels: list[str]
    state: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCheckpoint:
    """A checkpoint in our key names: ``model`` (student incl. decoder when present) and ``teacher``
    (the EMA context encoder, keys relative to ``encoder.``) when the file has one; ``classifier`` when the file
    carries a classification head (emotion2vec+, or a model fine-tuned here)."""

    config: Emotion2VecConfig
    model: dict[str, Tensor]
    teacher: dict[str, Tensor] | None
    source: str  # "fairseq", "funasr" or "emotion2vec"
    path: str
    meta: dict[str, Any] = field(default_factory=dict)
    classifier: ClassifierSpec | None = None


def _to_container(cfg: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


def _state_from(obj: Any) -> Mapping[str, Any]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def _is_ours(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(("feature_extractor.", "encoder.")) for k in state)


def _read_fairseq_like(obj: Mapping[str, Any], path: Path) -> LoadedCheckpoint:
    cfg = _to_container(obj.get("cfg"))
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("model"), Mapping):
        raise CheckpointError(f"{path}: fairseq checkpoint without a usable 'cfg.model' (args-only files from "
                              f"fairseq < 0.10 are not supported)")
    model_cfg, task_cfg = cfg["model"], cfg.get("task") or {}
    state = dict(obj["model"])
    ema = state.pop("_ema", None)
    meta = {"cfg": cfg}
    history = obj.get("optimizer_history") or []
    if history and isinstance(history[-1], Mapping):
        meta["num_updates"] = history[-1].get("num_updates")
    if model_cfg.get("_name") == "data2vec_audio":  # data2vec (v1): its own architecture, models/data2vec1.py
        from .data2vec1 import read_fairseq_data2vec1

        try:
            config, student, teacher, info = read_fairseq_data2vec1(model_cfg, task_cfg, state, ema, str(path))
        except Emotion2VecError as e:
            raise CheckpointError(str(e)) from None
        return LoadedCheckpoint(config, student, teacher, "data2vec1-fairseq", str(path), {**meta, **info})
    if model_cfg.get("_name") == "emotion2vec" or _is_ours(state):  # written by our fairseq plugin
        import dataclasses

        C = Emotion2VecConfig
        fields = {f.name for f in dataclasses.fields(C)}
        kwargs = {k: v for k, v in model_cfg.items() if k in fields}
        for key in ("normalize", "sample_rate"):
            if key in task_cfg:
                kwargs[key] = task_cfg[key]
        try:
            config = C(**kwargs)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
        teacher = None
        if isinstance(ema, Mapping):
            teacher = {k: v for k, v in ema.items() if isinstance(v, Tensor)}
        return LoadedCheckpoint(config, {k: v for k, v in state.items() if isinstance(v, Tensor)}, teacher,
                                "emotion2vec-fairseq", str(path), meta)
    try:
        config = config_from_fairseq(model_cfg, task_cfg, where=str(path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    teacher = None
    if isinstance(ema, Mapping):
        teacher, outside = _map_teacher(ema, f"{path} (_ema)")
        if outside:
            meta["teacher_unused"] = outside
    return LoadedCheckpoint(config, _map_state(state, str(path)), teacher, "fairseq", str(path), meta)


def _read_funasr(model_pt: Path, config_yaml: Path, trust: bool) -> LoadedCheckpoint:
    from omegaconf import OmegaConf

    try:
        conf = OmegaConf.to_container(OmegaConf.load(config_yaml), resolve=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{config_yaml}: cannot parse FunASR config: {e}") from None
    if not isinstance(conf, Mapping) or not isinstance(conf.get("model_conf"), Mapping):
        raise CheckpointError(f"{config_yaml}: no 'model_conf' section (is this a FunASR emotion2vec config?)")
    if conf.get("model") not in (None, "Emotion2vec"):
        raise CheckpointError(f"{config_yaml}: model={conf.get('model')!r}, expected 'Emotion2vec'")
    try:
        config = config_from_funasr(conf["model_conf"], where=str(config_yaml))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    obj = _torch_load(model_pt, trust)
    state = _state_from(obj)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{model_pt}: no state dict inside")
    state = {k: v for k, v in state.items() if k != "_ema"}
    head = {k[len("proj."):]: state.pop(k) for k in [k for k in state if k.startswith("proj.")]}
    classifier = _funasr_classifier(head, model_pt.parent / "tokens.txt", model_pt) if head else None
    return LoadedCheckpoint(config, _map_state(state, str(model_pt)), None, "funasr", str(model_pt),
                            {"model_conf": conf["model_conf"]}, classifier)


def _funasr_classifier(head: dict[str, Tensor], tokens: Path, where: Path) -> ClassifierSpec:
    """emotion2vec+ head ``proj`` = Linear(D -> number of labels) with the labels of ``tokens.txt``."""
    weight = head.get("weight")
    if weight is None or weight.dim() != 2 or set(head) - {"weight", "bias"}:
        raise CheckpointError(f"{where}: a classification head 'proj' must be one Linear layer, found "
                              f"{', '.join(f'proj.{k} {tuple(v.shape)}' for k, v in head.items())}")
    n = weight.shape[0]
    if tokens.exists():
        labels = [line.strip() for line in tokens.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(labels) != n:
            raise CheckpointError(f"{tokens}: {len(labels)} label(s), but the head {where} has {n} output(s)")
    else:
        labels = [f"class_{i}" for i in range(n)]
        logger.warning("%s: no tokens.txt beside the model: its %d classes are named class_0 ... class_%d",
                       where.parent, n, n - 1)
    return ClassifierSpec("mean_linear", labels, dict(head), {"layer": -1})


def config_from_dict(model: Mapping[str, Any]):
    """The model config of our ``config.json`` (its ``model`` entry): an emotion2vec / data2vec 2.0 config, or the
    architecture it names (``data2vec1``, ``cnn14``)."""
    architecture = model.get("architecture") if isinstance(model, Mapping) else None
    if architecture == "data2vec1":
        from .data2vec1 import Data2Vec1Config

        return Data2Vec1Config.from_dict(model)
    if architecture == "cnn14":
        from .cnn14 import Cnn14Config

        return Cnn14Config.from_dict(model)
    return Emotion2VecConfig.from_dict(model)


def _read_ours(directory: Path) -> LoadedCheckpoint:
    from safetensors.torch import load_file

    config_path = directory / "config.json"
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path}: cannot read: {e}") from None
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{config_path}: not an emotion2vec config (format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format_version {meta['format_version']} is newer than this "
                              f"emotion2vec ({FORMAT_VERSION}); upgrade the package")
    try:
        config = config_from_dict(meta["model"])
    except (KeyError, ConfigError, TypeError) as e:
        raise CheckpointError(f"{config_path}: invalid model config: {e}") from None
    try:
        model = load_file(directory / "model.safetensors")
        teacher_path = directory / "teacher.safetensors"
        teacher = load_file(teacher_path) if teacher_path.exists() else None
        classifier = None
        if meta.get("classifier"):
            c = meta["classifier"]
            classifier = ClassifierSpec(c["kind"], list(c["labels"]), load_file(directory / "head.safetensors"),
                                        dict(c.get("config") or {}))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{config_path}: invalid classifier entry: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{directory}: cannot read safetensors weights: {e}") from None
    return LoadedCheckpoint(config, model, teacher, "emotion2vec", str(directory), {"config": meta}, classifier)


def read_checkpoint(path: str | os.PathLike, trust: bool = False, preset_name: str | None = None) -> LoadedCheckpoint:
    """Read any supported checkpoint into our key names (no model is built).

    ``preset_name`` supplies the architecture for a bare state dict that carries no config.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "config.json").exists() and (p / "model.safetensors").exists():
            return _read_ours(p)
        if (p / "config.yaml").exists() and (p / "model.pt").exists():
            return _read_funasr(p / "model.pt", p / "config.yaml", trust)
        raise CheckpointError(f"{p}: directory holds neither config.json + model.safetensors (emotion2vec) nor "
                              f"config.yaml + model.pt (FunASR)")
    if p.suffix == ".safetensors":
        return _read_ours(p.parent)
    if p.name == "config.json":
        return _read_ours(p.parent)
    if (p.parent / "config.yaml").exists() and p.name == "model.pt":
        return _read_funasr(p, p.parent / "config.yaml", trust)
    obj = _torch_load(p, trust)
    if isinstance(obj, Mapping) and "cfg" in obj and "model" in obj:
        return _read_fairseq_like(obj, p)
    state = _state_from(obj)
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{p}: not a checkpoint (no state dict found)")
    if preset_name is None:
        raise CheckpointError(f"{p}: a bare state dict without a config; pass a preset (--preset) such as "
                              f"emotion2vec_base or data2vec2_base")
    state = {k: v for k, v in state.items() if k != "_ema"}
    mapped = dict(state) if _is_ours(state) else _map_state(state, str(p))
    return LoadedCheckpoint(preset(preset_name), mapped, None, "state_dict", str(p))


# ---------------------------------------------------------------------- building
def load_state_strict(module: torch.nn.Module, state: Mapping[str, Tensor], where: str,
                      allow_missing: tuple[str, ...] = ()) -> None:
    """load_state_dict that names every missing, unexpected or mis-shaped tensor (with both shapes)."""
    own = module.state_dict()
    problems = []
    for key, value in state.items():
        if key not in own:
            problems.append(f"unexpected tensor {key} {tuple(value.shape)}")
        elif tuple(own[key].shape) != tuple(value.shape):
            problems.append(f"{key}: checkpoint shape {tuple(value.shape)} != model shape {tuple(own[key].shape)}")
    for key in own:
        if key not in state and not key.startswith(allow_missing):
            problems.append(f"missing tensor {key} {tuple(own[key].shape)}")
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not match the architecture in its config:\n  "
                              + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))
    module.load_state_dict(state, strict=False)


def build_model(ckpt: LoadedCheckpoint, with_decoder: bool | None = None):
    """Instantiate :class:`~emotion2vec.models.Emotion2VecModel` and load the student weights strictly.

    ``with_decoder=None`` keeps the decoder when the checkpoint has one (inference works without it).
    """
    from .encoder import Emotion2VecModel

    has_decoder = any(k.startswith("decoder.") for k in ckpt.model)
    if with_decoder is None:
        with_decoder = has_decoder
    if getattr(ckpt.config, "architecture", None) == "data2vec1":
        from .data2vec1 import Data2Vec1Model

        model = Data2Vec1Model(ckpt.config)
    elif getattr(ckpt.config, "architecture", None) == "cnn14":
        from .cnn14 import Cnn14Model

        model = Cnn14Model(ckpt.config, weights=f"{ckpt.path}")
    else:
        model = Emotion2VecModel(ckpt.config, with_decoder=with_decoder)
    state = ckpt.model if with_decoder else {k: v for k, v in ckpt.model.items() if not k.startswith("decoder.")}
    load_state_strict(model, state, ckpt.path)
    return model


def load_model(path: str | os.PathLike, trust: bool = False, preset_name: str | None = None,
               with_decoder: bool | None = None):
    """Read a checkpoint and build the model in eval mode. -> (model, LoadedCheckpoint)."""
    ckpt = read_checkpoint(path, trust=trust, preset_name=preset_name)
    model = build_model(ckpt, with_decoder=with_decoder).eval()
    return model, ckpt


# ---------------------------------------------------------------------- conversion
def save_checkpoint_dir(out_dir: str | os.PathLike, config: Emotion2VecConfig, model: Mapping[str, Tensor],
                        teacher: Mapping[str, Tensor] | None = None, source: dict[str, Any] | None = None,
                        classifier: ClassifierSpec | None = None) -> dict[str, str]:
    """Write our format: ``config.json`` + ``model.safetensors`` (+ ``teacher.safetensors``, + ``head.safetensors``
    with the classifier's kind, labels and config in config.json), each atomically.

    ``model`` is a student state dict in our key names. Returns {file name: SHA-256}.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}

    def write(name: str, tensors: Mapping[str, Tensor]) -> None:
        data = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
        atomic_write_bytes(out / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()

    write("model.safetensors", {k: v for k, v in model.items() if isinstance(v, Tensor)})
    for name, tensors in (("teacher.safetensors", teacher), ("head.safetensors", classifier and classifier.state)):
        if tensors:
            write(name, tensors)
        elif (out / name).exists():
            (out / name).unlink()
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": config.to_dict(),
            "converted_from": source or {}, "sha256": dict(hashes)}
    if classifier is not None:
        meta["classifier"] = {"kind": classifier.kind, "labels": list(classifier.labels),
                              "config": dict(classifier.config)}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    atomic_write_text(out / "config.json", text)
    hashes["config.json"] = hashlib.sha256(text.encode()).hexdigest()
    return hashes


def convert_checkpoint(path: str | os.PathLike, out_dir: str | os.PathLike, trust: bool = False,
                       preset_name: str | None = None) -> dict[str, str]:
    """Convert any supported checkpoint into our format in ``out_dir``. Returns {file name: SHA-256}."""
    ckpt = read_checkpoint(path, trust=trust, preset_name=preset_name)
    build_model(ckpt)  # validates the weights against the architecture before anything is written
    return save_checkpoint_dir(out_dir, ckpt.config, ckpt.model, ckpt.teacher,
                               {"path": str(Path(path).resolve()), "source": ckpt.source,
                                "num_updates": ckpt.meta.get("num_updates")}, ckpt.classifier)
