"""The loaded model and what the endpoints compute with it, for a whole batch of requests at once.

``run(jobs)`` is what the batching queue calls in its worker thread: all prediction jobs of the batch go through
one call of the extraction engine (every window of every recording, sorted by length and padded), then the
classification head; extraction jobs are grouped by the layers and granularity they ask for. A result per job, in
order; a failure is retried job by job, so that one request cannot fail the others of its batch.

Prediction rows are :func:`emotion2vec.recognize.run.prediction_row`, the rows of ``emotion2vec predict --out
x.jsonl``: ``key``, ``path``, [``start``, ``end``], ``label``, ``scores``, ``label_raw``, ``scores_raw`` (a regression
head: ``values``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..api import Emotion2Vec
from ..extract import GRANULARITIES, ExtractionError
from ..extract.backends import token_backend
from ..extract.engine import BatchedForward, default_max_tokens, parse_layers, pool
from ..io.audio import SAMPLE_RATE
from ..recognize.run import Prediction, prediction_row, window_bounds

__all__ = ["PredictJob", "ExtractJob", "Service", "MAX_WINDOWS", "MAX_OVERLAP"]

#: per request: at most this many windows, and a hop of at least window / MAX_OVERLAP (so that the windows cover
#: each instant at most MAX_OVERLAP times and the work stays within MAX_OVERLAP times the audio's)
MAX_WINDOWS = 10_000
MAX_OVERLAP = 20

log = logging.getLogger(__name__)


@dataclass
class PredictJob:
    """One recording to recognise: ``wav`` (N,) float32 at 16 kHz; with ``window`` (s) one row per window."""

    wav: np.ndarray
    key: str = "upload"
    path: str = ""
    window: float | None = None
    hop: float | None = None


@dataclass
class ExtractJob:
    """One recording's features: ``layers`` (block indices), ``granularity`` frame / utterance / tokens;
    ``single_layer``: drop the layer axis (the request named one layer)."""

    wav: np.ndarray
    layers: tuple[int, ...] = (-1,)
    granularity: str = "utterance"
    single_layer: bool = True


class Service:
    """An :class:`~emotion2vec.api.Emotion2Vec` model serving batches; ``checkpoint`` as given on the command line."""

    def __init__(self, model: Emotion2Vec, checkpoint: str | os.PathLike = ""):
        self.model, self.checkpoint = model, str(checkpoint)
        self._engines: dict[tuple, BatchedForward] = {}

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str = "cpu", dtype: str = "float32",
             attention: str = "sdpa", trust: bool = False, max_batch_seconds: float | None = None,
             chunk_seconds: float = 30.0) -> "Service":
        max_tokens = (int(max_batch_seconds * SAMPLE_RATE) if max_batch_seconds is not None
                      else default_max_tokens(device))
        model = Emotion2Vec.from_checkpoint(checkpoint, device=device, dtype=dtype, trust=trust, attention=attention,
                                            max_tokens=max_tokens, chunk_seconds=chunk_seconds)
        return cls(model, checkpoint)

    # ----------------------------------------------------------------------------------------------- description
    @property
    def recognizer(self):
        return self.model.recognizer

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_tokens if self.model.max_tokens is not None
                   else default_max_tokens(self.model.backend.device))

    def labels(self) -> dict:
        """What /labels answers: the English labels, the checkpoint's own strings, the task and the head's layer."""
        rec = self.recognizer
        if rec is None:
            return {"labels": [], "labels_raw": [], "task": None, "layer": None}
        task = "regression" if rec.regression else "multi-label" if rec.activation == "sigmoid" else "classification"
        raw = rec.labels if rec.regression else [rec.labels[i] for i in rec.shown]
        names = rec.labels if rec.regression else rec.display_labels
        return {"labels": list(names), "labels_raw": list(raw), "task": task, "layer": rec.layer}

    def info(self) -> dict:
        """What /model answers: the checkpoint (file name and stamp: size and modification time of its weights),
        the encoder's geometry, device, dtype and attention, and the head."""
        from .. import __version__
        from ..extract.run import checkpoint_stamp

        backend = self.model.backend
        settings = backend.settings()
        return {"checkpoint": Path(self.checkpoint).name, "checkpoint_stamp": checkpoint_stamp(self.checkpoint),
                "upstream": backend.name, "device": str(backend.device), "dtype": settings.get("dtype"),
                "attention": settings.get("attention"), "num_layers": backend.num_layers, "dim": backend.dim,
                "frame_rate": backend.frame_rate, "head": self.labels() if self.recognizer is not None else None,
                "max_batch_samples": self.max_tokens, "chunk_seconds": self.model.chunk_seconds,
                "emotion2vec": __version__}

    def check_extract(self, layers: str, granularity: str) -> tuple[tuple[int, ...], bool]:
        """Validated (block indices, single layer) for /extract; an ExtractionError names a bad value."""
        if granularity not in GRANULARITIES:
            raise ExtractionError(f"granularity={granularity!r}: choose {', '.join(GRANULARITIES)}")
        ids = tuple(parse_layers(layers, self.model.num_layers))
        if granularity == "tokens":
            token_backend(self.model.backend, Path(self.checkpoint).name)
        single = layers.strip().lstrip("-").isdigit()
        return ids, single

    def check_windows(self, num_samples: int, window: float | None, hop: float | None) -> int:
        """How many windows ``window`` / ``hop`` cut a recording of ``num_samples`` into (1 without ``window``); a
        ValueError when that is more work than a request may ask for (see :data:`MAX_WINDOWS`)."""
        if not window:
            return 1
        hop = hop or window
        if hop * MAX_OVERLAP < window:
            raise ValueError(f"hop {hop:g}: at least window / {MAX_OVERLAP} = {window / MAX_OVERLAP:g} s (each instant "
                             f"in at most {MAX_OVERLAP} windows)")
        w, h = int(round(window * SAMPLE_RATE)), int(round(hop * SAMPLE_RATE))
        count = 1 if num_samples <= w else (num_samples - w) // h + 1 + int((num_samples - w) % h > 0)
        if count > MAX_WINDOWS:
            raise ValueError(f"window {window:g} s every {hop:g} s cuts this {num_samples / SAMPLE_RATE:.1f} s "
                             f"recording into {count} windows, over the limit of {MAX_WINDOWS}: use a larger hop")
        return count

    def feature_values(self, num_samples: int, layers: tuple[int, ...], granularity: str) -> int:
        """How many numbers /extract returns for a recording of ``num_samples``."""
        backend = self.model.backend
        if granularity == "tokens":
            rows = int(getattr(backend.cfg, "num_extra_tokens", 0) or 0)
        elif granularity == "frame":
            rows = backend.num_frames(num_samples)
        else:
            rows = 1
        return len(layers) * rows * backend.dim

    # ----------------------------------------------------------------------------------------------- computing
    def _engine(self, layers: tuple[int, ...], tokens: bool = False) -> BatchedForward:
        key = (layers, tokens)
        if key not in self._engines:
            backend = token_backend(self.model.backend) if tokens else self.model.backend
            self._engines[key] = BatchedForward(backend, list(layers), self.max_tokens, self.model.chunk_seconds)
        return self._engines[key]

    @torch.inference_mode()
    def predict(self, jobs: list[PredictJob]) -> list:
        """Per job: its row, or with ``window`` the list of its windows' rows."""
        rec = self.recognizer
        engine = self._engine((rec.layer,))
        segments, waves, owners = [], [], []
        for n, job in enumerate(jobs):
            for a, b in window_bounds(len(job.wav), job.window, job.hop) if job.window else [(0, len(job.wav))]:
                segments.append(engine.prepare(job.wav[a:b]))
                waves.append(job.wav[a:b])
                owners.append((n, a, b))
        probs = rec.probabilities([f[0] for f in engine(segments)], waves if rec.needs_waveforms else None)
        rows: list[list[dict]] = [[] for _ in jobs]
        for (n, a, b), p in zip(owners, probs):
            job = jobs[n]
            start, end = (a / SAMPLE_RATE, b / SAMPLE_RATE) if job.window else (None, None)
            rows[n].append(prediction_row(Prediction(job.key, job.path, start, end, p), rec))
        return [r if job.window else r[0] for r, job in zip(rows, jobs)]

    @torch.inference_mode()
    def extract(self, jobs: list[ExtractJob]) -> list[np.ndarray]:
        """Per job (all with the same layers and granularity): frame (T, D), utterance (D,), tokens (E, D), with a
        leading layer axis unless ``single_layer``."""
        tokens = jobs[0].granularity == "tokens"
        engine = self._engine(jobs[0].layers, tokens)
        feats = engine([engine.prepare(job.wav) for job in jobs])
        return [pool(f, "frame" if tokens else job.granularity, job.single_layer) for f, job in zip(feats, jobs)]

    def run(self, jobs: list) -> list:
        """A batch of PredictJob / ExtractJob -> a result (or the exception) per job, in order."""
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            key = ("predict",) if isinstance(job, PredictJob) else ("extract", job.layers, job.granularity == "tokens")
            groups.setdefault(key, []).append(i)
        out: list = [None] * len(jobs)
        for key, idx in groups.items():
            compute = self.predict if key[0] == "predict" else self.extract
            try:
                for i, r in zip(idx, compute([jobs[i] for i in idx])):
                    out[i] = r
            except Exception as e:  # noqa: BLE001 - retried alone, so that only the job at fault fails
                if len(idx) == 1:
                    log.exception("a %s request failed", key[0])
                    out[idx[0]] = e
                    continue
                log.warning("a batch of %d %s requests failed (%s: %s); running them one by one", len(idx), key[0],
                            type(e).__name__, e)
                for i in idx:
                    try:
                        out[i] = compute([jobs[i]])[0]
                    except Exception as e1:  # noqa: BLE001
                        log.exception("a %s request failed", key[0])
                        out[i] = e1
        return out
