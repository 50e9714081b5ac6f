"""The Python API: ``Emotion2Vec.from_checkpoint(path).extract(wav, sample_rate)``."""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np
import torch

from .extract import ExtractionError
from .extract.backends import ModelBackend, resolve_dtype
from .extract.engine import BatchedForward, parse_layers, pool
from .io.audio import MIN_SAMPLES, SAMPLE_RATE, AudioError, load_audio, resample

__all__ = ["Emotion2Vec"]

AudioLike = Union[str, os.PathLike, np.ndarray, torch.Tensor]


class Emotion2Vec:
    """A loaded model ready for feature extraction.

    >>> model = Emotion2Vec.from_checkpoint("checkpoints/emotion2vec_base.pt")
    >>> emb = model.extract("speech.wav")                            # (768,) utterance embedding, last layer
    >>> frames = model.extract(wav, sample_rate=44100, granularity="frame", layers="all")   # (12, T, 768)

    ``dtype``: ``"float32"`` (default, exact), ``"bfloat16"``, ``"float16"``, ``"int8"`` (CPU) or ``"auto"`` (the
    fastest measured: bfloat16 on GPUs with bf16, on CPUs with AMX, and on CPUs with AVX512-BF16 alone for models
    768 wide and up; float32 elsewhere; see :mod:`emotion2vec.device`).
    """

    def __init__(self, model, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 max_tokens: int | None = None, chunk_seconds: float = 30.0, attention: str = "sdpa",
                 recognizer=None):
        device = torch.device(device)
        dtype = resolve_dtype(dtype, device, model.cfg.embed_dim)  # "auto": the fastest measured for device, size
        model.set_attention_implementation(attention)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        self.backend = ModelBackend(model, device, dtype)
        self.model, self.config = self.backend.model, model.cfg
        self.max_tokens, self.chunk_seconds = max_tokens, chunk_seconds
        self.recognizer = recognizer.to(device) if recognizer is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype = "float32", trust: bool = False, preset: str | None = None,
                        **kwargs) -> "Emotion2Vec":
        """Load an official emotion2vec / data2vec 2.0 / FunASR checkpoint, one of ours (see ``emotion2vec convert``),
        a fairseq data2vec (v1) checkpoint or a Hugging Face model (``"hf:PATH"``): any upstream of
        :func:`~emotion2vec.models.upstream.load_upstream`."""
        from .models.upstream import load_upstream

        model, ckpt = load_upstream(path, trust=trust, preset_name=preset)
        recognizer = None
        if ckpt.classifier is not None:
            from .recognize.recognizer import Recognizer

            recognizer = Recognizer.from_spec(ckpt.classifier, model.cfg.num_layers, model.cfg.embed_dim, str(path))
        return cls(model, device=device, dtype=dtype, recognizer=recognizer, **kwargs)

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def labels(self) -> list[str]:
        """The emotions this model recognises, in English (empty for a model without a classification head)."""
        return self.recognizer.display_labels if self.recognizer is not None else []

    def _waveform(self, x: AudioLike, sample_rate: int | None) -> np.ndarray:
        if isinstance(x, (str, os.PathLike)):
            if sample_rate is not None:
                raise ValueError("sample_rate is only for waveforms; files are read at their own rate")
            return load_audio(x, SAMPLE_RATE, min_samples=MIN_SAMPLES)
        wav = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
        if wav.ndim == 2:  # (channels, N) or (N, channels): average the shorter axis
            wav = wav.mean(axis=0 if wav.shape[0] < wav.shape[1] else 1)
        if wav.ndim != 1:
            raise ValueError(f"waveform must be 1-D (or 2-D multi-channel), got shape {tuple(wav.shape)}")
        if sample_rate is None:
            raise ValueError("pass sample_rate= for a waveform (it is resampled to 16 kHz when different)")
        if sample_rate != SAMPLE_RATE:
            wav = resample(wav, int(sample_rate), SAMPLE_RATE)
        if len(wav) < MIN_SAMPLES:
            raise AudioError("<waveform>", f"too short: {len(wav)} samples at 16 kHz (< {MIN_SAMPLES})",
                             kind="too_short")
        if not np.isfinite(wav).all():
            raise AudioError("<waveform>", "waveform contains NaN or infinite samples", kind="invalid")
        return wav

    def extract(self, audio: AudioLike | Sequence[AudioLike], sample_rate: int | None = None,
                granularity: str = "utterance", layers: int | str | Sequence[int] = -1):
        """Features of one input or a list of inputs (batched by length internally).

        audio: a path, a waveform (numpy/torch, 1-D) or a list of those; sample_rate: of the waveforms.
        granularity: "utterance" (mean over frames) or "frame"; layers: -1 (last), "all", an index or a list.
        Returns numpy float32: frame (T, D) per layer, utterance (D,); with several layers a leading layer axis.
        """
        if granularity not in ("frame", "utterance"):
            raise ExtractionError(f"granularity={granularity!r}: choose 'frame' or 'utterance'")
        layer_ids = parse_layers(layers, self.num_layers)
        single_input = isinstance(audio, (str, os.PathLike, torch.Tensor)) or (
            isinstance(audio, np.ndarray) and audio.dtype != object)
        inputs = [audio] if single_input else list(audio)
        engine = BatchedForward(self.backend, layer_ids, self.max_tokens, self.chunk_seconds)
        feats = engine([engine.prepare(self._waveform(x, sample_rate)) for x in inputs])
        single_layer = isinstance(layers, int) or (isinstance(layers, str) and layers.strip().lstrip("-").isdigit())
        outs = [pool(f, granularity, single_layer) for f in feats]
        return outs[0] if single_input else outs

    def predict(self, audio: AudioLike | Sequence[AudioLike], sample_rate: int | None = None,
                window: float | None = None, hop: float | None = None):
        """Recognise emotions with the model's classification head (emotion2vec+ or a model fine-tuned here).

        Per input: ``{"label": "angry", "scores": {"angry": 0.81, ...}, "label_raw": ..., "scores_raw": ...}``
        (English labels; the checkpoint's own strings in the ``*_raw`` entries; ``unuse*`` labels never appear); a
        regression model (``finetune --task regression``) gives ``{"values": {"arousal": 0.61, ...}}``.
        With ``window`` (seconds, ``hop`` default ``window``) a list of such dicts per input, one per window, each
        with ``start`` and ``end`` in seconds. A list of inputs gives a list of results.
        """
        from .recognize import RecognitionError
        from .recognize.run import check_window, window_bounds

        if self.recognizer is None:
            raise RecognitionError("this model has no classification head: use an emotion2vec+ model or one "
                                   "fine-tuned with `emotion2vec finetune` (features: .extract())")
        check_window(window, hop)
        single_input = isinstance(audio, (str, os.PathLike, torch.Tensor)) or (
            isinstance(audio, np.ndarray) and audio.dtype != object)
        inputs = [audio] if single_input else list(audio)
        engine = BatchedForward(self.backend, [self.recognizer.layer], self.max_tokens, self.chunk_seconds)
        segments, waves, owners = [], [], []
        for n, x in enumerate(inputs):
            wav = self._waveform(x, sample_rate)
            for a, b in (window_bounds(len(wav), window, hop) if window else [(0, len(wav))]):
                segments.append(engine.prepare(wav[a:b]))
                waves.append(wav[a:b])
                owners.append((n, a, b))
        probs = self.recognizer.probabilities([f[0] for f in engine(segments)],
                                              waves if self.recognizer.needs_waveforms else None)
        results: list[list[dict]] = [[] for _ in inputs]
        for (n, a, b), p in zip(owners, probs):
            r = self.recognizer.result(p)
            if window:
                r.update(start=a / SAMPLE_RATE, end=b / SAMPLE_RATE)
            results[n].append(r)
        out = [r if window else r[0] for r in results]
        return out[0] if single_input else out
