"""Hugging Face speech encoders as upstreams: ``hf:PATH`` (a ``save_pretrained`` folder or a hub name).

Supported (``model_type`` of the folder's ``config.json`` -> the transformers class loaded): ``wav2vec2`` ->
Wav2Vec2Model, ``hubert`` -> HubertModel, ``wavlm`` -> WavLMModel, ``data2vec-audio`` -> Data2VecAudioModel,
``unispeech`` -> UniSpeechModel, ``unispeech-sat`` -> UniSpeechSatModel (the UniSpeech encoders Gavali & Verma
fine-tune: ``microsoft/unispeech-large-1500h-cv``, ``microsoft/unispeech-large-multi-lingual-1500h-cv``; UniSpeech-SAT
as ``microsoft/unispeech-sat-base`` / ``-large``), ``whisper`` -> the encoder of WhisperModel. A checkpoint saved with a head (``Wav2Vec2ForCTC``, ...) loads its
encoder. transformers is an optional dependency (``pip install 'emotion2vec[hf]'``), imported when a model loads.

Layers are the model's hidden states: layer 0 is the Transformer's input (CNN features + positional convolution
(+ LayerNorm for post-LN models); for Whisper, the convolutional front end + positions), layer i the output of block
i, and the last layer (-1) is the model's final output (``last_hidden_state``, which for pre-LN models includes the
final LayerNorm). So a 12-block base model has 13 layers, 0..12.

Input preprocessing is the model's own: zero mean / unit variance per input (``(x - mean) / sqrt(var + 1e-7)``)
when its feature extractor says ``do_normalize`` (default: yes), and for Whisper its log-mel front end
(``WhisperFeatureExtractor``: 30 s windows, 100 mel frames/s, 50 output frames/s).

Padding semantics (``cfg.padding``), so that a batch gives the features of each input alone:
    ``mask``      the padded batch runs with an attention mask: wav2vec 2.0 / HuBERT / WavLM / UniSpeech /
                  UniSpeech-SAT with a LayerNorm CNN (``feat_extract_norm == "layer"``, the large models), whose
                  valid frames never see padding;
    ``unpadded``  inputs of equal length run together, unpadded, the others alone: the models trained without
                  attention masks (``feat_extract_norm == "group"``, the base models: their first convolution
                  normalises over the whole input, padding included), data2vec-audio (its 5-layer positional
                  convolution spreads padding into the valid frames) and batch-normed positional convolutions;
    ``window``    Whisper pads every input to its 30 s window itself; longer inputs are refused by name (the
                  extraction engine windows long files at ``--chunk-seconds``, 30 s by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError
from .config import ATTENTION_IMPLEMENTATIONS, ConfigError
from .encoder import FeatureOutput

__all__ = ["HFUpstream", "HFUpstreamConfig", "SUPPORTED", "load_hf_upstream", "padding_policy", "read_hf_head",
           "hf_spec", "hf_upstream_from_spec"]

#: config.json model_type -> the transformers class whose encoder is loaded
SUPPORTED = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel", "wavlm": "WavLMModel",
             "data2vec-audio": "Data2VecAudioModel", "unispeech": "UniSpeechModel",
             "unispeech-sat": "UniSpeechSatModel", "whisper": "WhisperModel"}
#: encoders whose LayerNorm-CNN variants zero the padded frames before the positional convolution (``mask`` policy)
_MASKABLE = ("wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat")
SAMPLE_RATE = 16000
_NORM_EPS = 1e-7  # transformers' zero-mean unit-variance normalisation


@dataclass
class HFUpstreamConfig:
    """Geometry of a Hugging Face upstream (the upstream interface's ``cfg``)."""

    model_type: str
    model_class: str
    num_layers: int  # hidden states: blocks + 1
    embed_dim: int
    frame_stride: int  # samples per output frame
    padding: str  # "mask" | "unpadded" | "window" (see the module docstring)
    input_norm: bool  # zero mean / unit variance per input, inside the upstream
    conv_layers: list[tuple[int, int]] = field(default_factory=list)  # (kernel, stride) of the CNN (not Whisper)
    max_samples: int | None = None  # Whisper: its window, 30 s
    normalize: bool = False  # callers never normalise: the upstream applies its own preprocessing

    def num_frames(self, num_samples: int) -> int:
        n = int(num_samples)
        if self.max_samples is not None:  # Whisper: one frame per 320 samples started, within the window
            return min(-(-n // self.frame_stride), self.max_samples // self.frame_stride) if n > 0 else 0
        for kernel, stride in self.conv_layers:
            n = (n - kernel) // stride + 1
            if n <= 0:
                return 0
        return n


def padding_policy(config: Any) -> str:
    """How a transformers config's model must be batched (see the module docstring)."""
    if config.model_type == "whisper":
        return "window"
    layer_norm_cnn = getattr(config, "feat_extract_norm", "group") == "layer"
    if (config.model_type in _MASKABLE and layer_norm_cnn
            and not getattr(config, "conv_pos_batch_norm", False)):
        return "mask"
    return "unpadded"


class HFUpstream(nn.Module):
    """A transformers speech encoder behind the upstream interface (an ``nn.Module``: it can be fine-tuned).

    ``extract_features(waveform (B, N), padding_mask (B, N) | None, layers, ffn=())`` -> FeatureOutput with
    ``layer_outputs`` = the hidden states (see the module docstring for their numbering and the padding policy).
    """

    kind = "hf"

    def __init__(self, model: nn.Module, cfg: HFUpstreamConfig, name: str, mel: Any = None):
        super().__init__()
        self.model, self.cfg, self.name = model, cfg, name
        self.mel = mel  # Whisper's feature extractor (numpy, no parameters)

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        import transformers

        # the stamp replaces the path's: a re-saved model in the same folder, another hub revision or another
        # transformers version is noticed when a run resumes
        stamp = f"{_weights_stamp(self.name, self.model.config)}; transformers {transformers.__version__}"
        return {"hf_class": self.cfg.model_class, "padding": self.cfg.padding, "input_norm": self.cfg.input_norm,
                "checkpoint_stamp": stamp}

    def set_attention_implementation(self, implementation: str) -> "HFUpstream":
        """``"sdpa"`` or ``"eager"``; a model without an SDPA path (WavLM) keeps ``eager`` (see
        :attr:`attention_implementation`, which is what features.json records). Returns self."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"attention implementation {implementation!r}: choose one of "
                              f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
        try:
            self.model.set_attn_implementation(implementation)
        except (ValueError, ImportError, AttributeError):
            pass  # not supported by this model class: it keeps its own
        return self

    @property
    def attention_implementation(self) -> str:
        return getattr(self.model.config, "_attn_implementation", None) or "eager"

    # ------------------------------------------------------------------ forward
    def hidden_states(self, inputs: Tensor, attention_mask: Tensor | None = None) -> list[Tensor]:
        """Model inputs -> every layer (B, T, D): hidden states 0..L-1, then the final output."""
        out = self.model(inputs, attention_mask=attention_mask, output_hidden_states=True)
        return [*out.hidden_states[:-1], out.last_hidden_state]

    def _normalize(self, x: Tensor) -> Tensor:
        """(B, n) unpadded waveforms -> zero mean, unit variance per row (when the model expects it)."""
        if not self.cfg.input_norm:
            return x
        x = x.float()
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + _NORM_EPS)

    def _log_mel(self, waveform: Tensor, lengths: list[int]) -> Tensor:
        longest = max(lengths)
        if longest > self.cfg.max_samples:
            raise ConfigError(f"Whisper's encoder sees at most {self.cfg.max_samples / SAMPLE_RATE:g} s "
                              f"({self.cfg.max_samples} samples at 16 kHz); got an input of {longest} samples. Extract "
                              f"with --chunk-seconds 30 or less (the default), which windows longer inputs")
        wavs = [waveform[b, :n].detach().float().cpu().numpy() for b, n in enumerate(lengths)]
        feats = self.mel(wavs, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        return feats.to(waveform.device)

    def extract_features(self, waveform: Tensor, padding_mask: Tensor | None = None,
                         layers: Iterable[int] | None = None, ffn: Iterable[int] | None = ()) -> FeatureOutput:
        """waveform (B, N) raw 16 kHz samples; padding_mask (B, N) True = padding. -> FeatureOutput, x (B, T, D)."""
        if ffn:
            raise ConfigError("hf: upstreams expose their hidden states only, not FFN outputs")
        B, N = waveform.shape
        L = self.cfg.num_layers
        keep = sorted(set(range(L) if layers is None else (i % L for i in layers)) | {L - 1})
        if padding_mask is not None and bool(padding_mask.any()):
            lengths = [int(n) for n in (~padding_mask).sum(-1)]
        else:
            lengths, padding_mask = [N] * B, None
        frames = [self.cfg.num_frames(n) for n in lengths]
        T = max(frames)
        if self.cfg.padding == "window":
            groups = [(list(range(B)), self._log_mel(waveform, lengths), None)]
        elif self.cfg.padding == "mask":
            x = torch.zeros(B, N, device=waveform.device)
            for b, n in enumerate(lengths):
                x[b, :n] = self._normalize(waveform[b:b + 1, :n])[0]
            mask = None if padding_mask is None else (~padding_mask).long()
            groups = [(list(range(B)), x, mask)]
        else:  # inputs of one length together, without padding
            groups = []
            for n in sorted(set(lengths)):
                idx = [b for b in range(B) if lengths[b] == n]
                groups.append((idx, self._normalize(waveform[idx, :n]), None))
        out: list[Tensor | None] = [None] * L
        for idx, inputs, mask in groups:
            hidden = self.hidden_states(inputs, mask)
            for i in keep:
                h = hidden[i][:, :T]
                if out[i] is None:
                    out[i] = h.new_zeros(B, T, h.shape[-1])
                out[i][idx, :h.shape[1]] = h
        frame_mask = None
        if padding_mask is not None:
            valid = torch.tensor(frames, device=waveform.device)
            frame_mask = torch.arange(T, device=waveform.device)[None, :] >= valid[:, None]
        return FeatureOutput(out[L - 1], out, [], frame_mask)


def _weights_stamp(name: str, config: Any) -> str:
    """Size and mtime of a local folder's weights, else the hub revision transformers resolved."""
    folder = Path(name)
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        return ";".join(f"{p.name}:{p.stat().st_size}-{p.stat().st_mtime_ns}" for p in files)
    commit = getattr(config, "_commit_hash", None)
    return f"revision {commit}" if commit else ""


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise CheckpointError("hf: models need the transformers library: pip install 'emotion2vec[hf]'") from None
    return transformers


def load_hf_upstream(name: str) -> HFUpstream:
    """Load ``name`` (a ``save_pretrained`` folder or a hub name) as an :class:`HFUpstream` in eval mode, fp32."""
    transformers = _import_transformers()
    looks_local = name.startswith((".", "/", "~")) or Path(name).exists()
    if looks_local and not (Path(name).expanduser() / "config.json").is_file():
        raise CheckpointError(f"hf:{name}: no config.json there (expected a folder written by save_pretrained)")
    name = str(Path(name).expanduser()) if looks_local else name
    try:
        config = transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"hf:{name}: transformers cannot read its config: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    supported = ", ".join(f"{c} ({t})" for t, c in SUPPORTED.items())
    if config.model_type not in SUPPORTED:
        found = (getattr(config, "architectures", None) or [type(config).__name__])[0]
        raise CheckpointError(f"hf:{name} is a {found} (model_type {config.model_type!r}), which is not a supported "
                              f"speech encoder; supported: {supported}")
    if getattr(config, "add_adapter", False):
        raise CheckpointError(f"hf:{name}: add_adapter=True (an adapter that shortens the output for a text decoder) "
                              f"is not supported: its hidden states and final output have different frame rates")
    model_class = SUPPORTED[config.model_type]
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a per-load weights bar is noise in extraction logs
    verbosity = transformers.utils.logging.get_verbosity()
    # a model saved with a head (read by read_hf_head) lists the head's tensors as unused encoder weights: not news
    transformers.utils.logging.set_verbosity_error()
    try:
        model = getattr(transformers, model_class).from_pretrained(name)
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    mel, input_norm = None, True
    if config.model_type == "whisper":
        try:
            mel = transformers.WhisperFeatureExtractor.from_pretrained(name)
        except OSError:  # a folder without preprocessor_config.json: the standard front end for its mel bins
            mel = transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    else:
        try:
            input_norm = bool(transformers.Wav2Vec2FeatureExtractor.from_pretrained(name).do_normalize)
        except OSError:  # no preprocessor_config.json: transformers' default
            input_norm = True
    return _wrap(model, config, name, input_norm, mel)


def _wrap(model: nn.Module, config: Any, name: str, input_norm: bool, mel: Any) -> HFUpstream:
    """A transformers model (the whole model; Whisper's encoder is taken here) as an :class:`HFUpstream`."""
    model_class = SUPPORTED[config.model_type]
    if config.model_type == "whisper":
        model = model.get_encoder() if hasattr(model, "get_encoder") else model
        if mel.feature_size != config.num_mel_bins:
            raise CheckpointError(f"hf:{name}: the feature extractor has {mel.feature_size} mel bins, the model "
                                  f"{config.num_mel_bins}")
        cfg = HFUpstreamConfig(config.model_type, model_class, config.encoder_layers + 1, config.d_model,
                               mel.hop_length * 2, "window", False, max_samples=mel.n_samples)
    else:
        stride = 1
        for s in config.conv_stride:
            stride *= s
        cfg = HFUpstreamConfig(config.model_type, model_class, config.num_hidden_layers + 1, config.hidden_size,
                               stride, padding_policy(config), input_norm,
                               conv_layers=list(zip(config.conv_kernel, config.conv_stride)))
    return HFUpstream(model.float().eval(), cfg, name, mel)


def hf_spec(upstream: HFUpstream) -> dict[str, Any]:
    """What :func:`hf_upstream_from_spec` rebuilds an upstream from, besides its tensors: the transformers config,
    the class and the input preprocessing (a speaker network stored inside an exported head)."""
    return {"architecture": "hf", "model_type": upstream.cfg.model_type, "model_class": upstream.cfg.model_class,
            "config": upstream.model.config.to_dict(), "input_norm": upstream.cfg.input_norm}


def hf_upstream_from_spec(spec: Mapping[str, Any], state: Mapping[str, Tensor], where: str) -> HFUpstream:
    """An :class:`HFUpstream` from :func:`hf_spec` and its state dict (keys ``model.*``), loaded strictly."""
    from .checkpoint import load_state_strict

    transformers = _import_transformers()
    try:
        model_type = spec["model_type"]
        config = transformers.AutoConfig.for_model(model_type, **{k: v for k, v in spec["config"].items()
                                                                  if k != "model_type"})
        model = getattr(transformers, SUPPORTED[model_type])(config)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{where}: the stored Hugging Face model cannot be rebuilt ({type(e).__name__}: "
                              f"{e})") from None
    mel = transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins) if model_type == "whisper" else None
    upstream = _wrap(model, config, f"{where} (stored)", bool(spec.get("input_norm", True)), mel)
    load_state_strict(upstream, dict(state), where)
    return upstream.eval()


# ---------------------------------------------------------------------------------------------------- emotion heads
def _weight_file_tensors(name: str, wanted: tuple[str, ...]) -> dict[str, Tensor]:
    """The tensors of ``name``'s weights whose key starts with one of ``wanted`` (model.safetensors, else
    pytorch_model.bin; a local folder, or a hub name in the local cache)."""
    folder = Path(name).expanduser()
    candidates = []
    for file in ("model.safetensors", "pytorch_model.bin"):
        if folder.is_dir():
            candidates.append(folder / file)
        else:
            try:
                from transformers.utils import cached_file

                found = cached_file(name, file, _raise_exceptions_for_missing_entries=False)
                if found:
                    candidates.append(Path(found))
            except Exception:  # noqa: BLE001 - not in the cache, no network: no head
                continue
    for path in candidates:
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys() if k.startswith(wanted)}
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if k.startswith(wanted)}
    return {}


def read_hf_head(name: str, config: Any):
    """The emotion head saved with a Hugging Face speech model, as a ``downstream`` classifier spec on its last
    layer (mean over the frames, then the head), or None when its weights hold no head. Two layouts:

    * audeering's ``Wav2Vec2ForSpeechClassification`` (``classifier.dense``, ``classifier.out_proj``; Wagner et al.'s
      released dimensional model): mean -> dropout -> dense -> tanh -> dropout -> out_proj, the outputs in the order
      of ``id2label`` (arousal, dominance, valence), values as trained (their model card: about 0...1);
    * transformers' ``*ForSequenceClassification`` (``projector``, ``classifier``): projector, mean, classifier (a
      weighted layer sum, ``use_weighted_layer_sum``, is refused by name).

    Regression (identity outputs) when the config says ``problem_type: regression`` or a regression fine-tuning task
    (``finetuning_task`` naming ``reg``), or every label is a dimension (arousal, dominance, valence); multi-label
    (sigmoid) for ``multi_label_classification``; else softmax over the labels."""
    state = _weight_file_tensors(name, ("classifier.", "projector."))
    if not state:
        return None
    from .checkpoint import ClassifierSpec

    dim = int(config.hidden_size)
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label)))
    labels = [str(id2label.get(i, id2label.get(str(i), f"output_{i}"))) for i in range(n)]
    if {"classifier.dense.weight", "classifier.out_proj.weight"} <= set(state):
        hidden, activation = int(state["classifier.dense.weight"].shape[0]), "tanh"
        tensors = {"head.proj.weight": state["classifier.dense.weight"],
                   "head.proj.bias": state["classifier.dense.bias"],
                   "head.output.weight": state["classifier.out_proj.weight"],
                   "head.output.bias": state["classifier.out_proj.bias"]}
        dropout = float(getattr(config, "final_dropout", 0.0) or 0.0)
    elif {"projector.weight", "classifier.weight"} <= set(state):
        if getattr(config, "use_weighted_layer_sum", False):
            raise CheckpointError(f"hf:{name}: its head reads a learned weighted sum of every layer "
                                  f"(use_weighted_layer_sum), which this loader does not rebuild")
        hidden, activation, dropout = int(state["projector.weight"].shape[0]), "identity", 0.0
        tensors = {"head.proj.weight": state["projector.weight"], "head.proj.bias": state["projector.bias"],
                   "head.output.weight": state["classifier.weight"], "head.output.bias": state["classifier.bias"]}
    else:
        return None
    if tensors["head.output.weight"].shape[0] != n:
        outputs = tensors["head.output.weight"].shape[0]
        raise CheckpointError(f"hf:{name}: its head has {outputs} outputs but the config names {n} labels")
    tensors.update({"head.input_mean": torch.zeros(1, dim), "head.input_inv_std": torch.ones(1, dim)})
    problem = str(getattr(config, "problem_type", "") or "")
    dimensional = {label.lower() for label in labels} <= {"arousal", "dominance", "valence"}
    if problem == "regression" or "reg" in str(getattr(config, "finetuning_task", "") or "") or dimensional:
        task, loss, act = "regression", "ccc", "identity"
    elif problem == "multi_label_classification":
        task, loss, act = "multilabel", "bce", "sigmoid"
    else:
        task, loss, act = "categorical", "ce", "softmax"
    head = {"input_dim": dim, "num_outputs": n, "hidden": hidden, "pooling": "mean", "output": "linear",
            "dropout": dropout, "num_layers": 1, "arcface_scale": 30.0, "layout": "pooled", "activation": activation}
    return ClassifierSpec("downstream", labels, {k: v.float() for k, v in tensors.items()},
                          {"layer": -1, "task": task, "loss": loss, "activation": act, "head": head,
                           "source": "hugging face head"})
