"""Upstreams: every speech model features can be extracted from (and that a downstream model can fine-tune).

An upstream is a ``torch.nn.Module`` with the interface of :class:`~emotion2vec.models.Emotion2VecModel`
(:class:`Upstream`). Three families implement it, chosen by the spec :func:`load_upstream` gets:

* a fairseq / FunASR / converted emotion2vec or data2vec 2.0 checkpoint ->
  :class:`~emotion2vec.models.Emotion2VecModel`;
* a fairseq ``data2vec_audio`` checkpoint (data2vec (v1), ``audio_base_ls.pt``) ->
  :class:`~emotion2vec.models.data2vec1.Data2Vec1Model`;
* ``hf:PATH`` (a ``save_pretrained`` folder or a hub name: wav2vec 2.0, HuBERT, WavLM, data2vec-audio, UniSpeech,
  UniSpeech-SAT, the Whisper encoder) -> :class:`~emotion2vec.models.hf.HFUpstream`;
* ``cnn14`` (PANNs' CNN14 on log-mel, a fresh initialisation: Wagner et al.'s from-scratch baseline) or
  ``cnn14:PATH`` (PANNs' AudioSet weights from that file) -> :class:`~emotion2vec.models.cnn14.Cnn14Model`; a
  fine-tuned CNN14 export is our checkpoint format and loads like the first family.

:func:`load_upstream` is the one loader the extraction backends, the Python API and fine-tuning use.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

from torch import Tensor

from .checkpoint import CheckpointError, load_model

__all__ = ["Upstream", "UpstreamConfig", "UpstreamInfo", "load_upstream", "upstream_kind", "upstream_settings",
           "HF_PREFIX"]

HF_PREFIX = "hf:"


@runtime_checkable
class UpstreamConfig(Protocol):
    """What callers read from ``upstream.cfg``."""

    num_layers: int  # entries of FeatureOutput.layer_outputs (--layers counts these from 0; -1 = the last)
    embed_dim: int  # feature width D
    frame_stride: int  # input samples (16 kHz) per output frame
    normalize: bool  # whether callers normalise each waveform (zero mean, unit variance) before the forward

    def num_frames(self, num_samples: int) -> int: ...


@runtime_checkable
class Upstream(Protocol):
    """A speech encoder: (B, N) padded 16 kHz waveforms -> per-layer (B, T, D) features.

    ``extract_features(waveform, padding_mask=None, layers=None, ffn=())`` takes the waveforms (B, N) and the
    sample padding mask (B, N) (True = padding, or None), returns a
    :class:`~emotion2vec.models.encoder.FeatureOutput`: ``x`` (B, T, D) the final output, ``layer_outputs`` one
    entry per layer (``None`` where not requested in ``layers``; None = all), ``padding_mask`` (B, T) or None.
    Valid frames of a padded batch equal those of each input alone (within float tolerance).
    Optional: ``kind`` (recorded as the backend name; default ``emotion2vec``) and ``settings()`` (extra entries for
    ``features.json``).
    """

    cfg: UpstreamConfig

    def extract_features(self, waveform: Tensor, padding_mask: Tensor | None = None,
                         layers: Iterable[int] | None = None, ffn: Iterable[int] | None = ()) -> Any: ...

    def set_attention_implementation(self, implementation: str) -> Any: ...

    @property
    def attention_implementation(self) -> str: ...


@dataclass
class UpstreamInfo:
    """Where an upstream came from: ``source`` (e.g. ``hf:Wav2Vec2Model``), ``path``, the classification head the
    file carries (``classifier``, emotion2vec+ only) and free-form ``meta``. For our checkpoint readers this is the
    :class:`~emotion2vec.models.checkpoint.LoadedCheckpoint` itself, which has the same fields."""

    source: str
    path: str
    classifier: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def upstream_kind(model: Any) -> str:
    """The backend name recorded in ``features.json``: ``emotion2vec``, ``data2vec1`` or ``hf``."""
    return getattr(model, "kind", "emotion2vec")


def upstream_settings(model: Any) -> dict[str, Any]:
    """Settings beyond dtype and attention that change an upstream's features (recorded in ``features.json``)."""
    settings = getattr(model, "settings", None)
    return dict(settings()) if callable(settings) else {}


HF_CLASSIFIER = "classifier.json"  # beside a fine-tuned Hugging Face encoder (``encoder/``): the head's entry


def read_hf_classifier(folder: str | os.PathLike):
    """The classification head stored beside a fine-tuned Hugging Face encoder (``classifier.json`` +
    ``head.safetensors`` in ``folder``, the encoder in ``folder/encoder``), or None when ``folder`` has none."""
    import json

    from safetensors.torch import load_file

    from .checkpoint import CheckpointError, ClassifierSpec

    folder = Path(folder)
    if not (folder / HF_CLASSIFIER).exists():
        return None
    try:
        meta = json.loads((folder / HF_CLASSIFIER).read_text(encoding="utf-8"))
        return ClassifierSpec(meta["kind"], list(meta["labels"]), load_file(folder / "head.safetensors"),
                              dict(meta.get("config") or {}))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder}: cannot read the classifier beside the encoder: {e}") from None


def load_upstream(spec: str | os.PathLike, trust: bool = False, preset_name: str | None = None):
    """Load any upstream in eval mode. -> (model, info).

    ``hf:PATH`` -> :class:`~emotion2vec.models.hf.HFUpstream` (with the classifier beside it when ``PATH`` is the
    ``encoder/`` of a fine-tuned export, else the emotion head saved in its own weights: :func:`~.hf.read_hf_head`);
    a fine-tuned Hugging Face export folder (``classifier.json`` + ``encoder/``) likewise; ``cnn14`` / ``cnn14:PATH``
    -> :class:`~emotion2vec.models.cnn14.Cnn14Model`; anything else goes to :func:`~emotion2vec.models.checkpoint.load_model`, which reads emotion2vec /
    data2vec 2.0 / FunASR / our checkpoints and fairseq data2vec (v1) ``data2vec_audio`` checkpoints (as
    :class:`~emotion2vec.models.data2vec1.Data2Vec1Model`). ``info`` has ``source``, ``path``, ``classifier`` and
    ``meta``.
    """
    text = os.fspath(spec)
    export = Path(text)
    if not text.startswith(HF_PREFIX) and export.is_dir() and (export / HF_CLASSIFIER).exists():
        text = HF_PREFIX + str(export / "encoder")
    if text.startswith(HF_PREFIX):
        from .hf import load_hf_upstream

        model = load_hf_upstream(text[len(HF_PREFIX):])
        beside = Path(text[len(HF_PREFIX):]).parent
        classifier = read_hf_classifier(beside) if beside.is_dir() else None
        if classifier is None:  # a head saved in the model's own weights (audeering's, *ForSequenceClassification)
            from .hf import read_hf_head

            classifier = read_hf_head(text[len(HF_PREFIX):], model.model.config)
        return model.eval(), UpstreamInfo(f"hf:{model.cfg.model_class}", text, classifier, {"hf": model.settings()})
    if text == "cnn14" or text.startswith("cnn14:"):
        from .panns import load_cnn14

        model, source, meta = load_cnn14(text, trust=trust)
        return model, UpstreamInfo(source, text, None, meta)
    if text == "fbank" or text.startswith("opensmile:"):
        raise CheckpointError(f"{text!r} is a feature baseline, not a model: use it with `emotion2vec extract "
                              f"--checkpoint {text}` (and in recipes), not as a model")
    return load_model(text, trust=trust, preset_name=preset_name, with_decoder=False)
