"""The batching engine: length-sorted dynamic batches bounded in padded samples, long inputs in overlapping windows.

Used by the Python API (:class:`emotion2vec.Emotion2Vec`) and by ``emotion2vec extract`` (:mod:`.run`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..io.audio import SAMPLE_RATE, normalize_waveform
from . import ExtractionError
from .backends import Backend

__all__ = ["BatchedForward", "parse_layers", "plan_batches", "default_max_tokens", "pool"]


def parse_layers(spec: str | int | Sequence[int], num_layers: int) -> list[int]:
    """'-1' | 'all' | 'i,j' | int | [i, j] -> non-negative block indices (validated)."""
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return list(range(num_layers))
        try:
            values = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ExtractionError(f"--layers {spec!r}: expected -1, all, or comma-separated block indices") from None
    elif isinstance(spec, int):
        values = [spec]
    else:
        values = [int(v) for v in spec]
    if not values:
        raise ExtractionError("no layers requested")
    out = []
    for v in values:
        if not -num_layers <= v < num_layers:
            raise ExtractionError(f"layer {v} out of range: this model has {num_layers} blocks "
                                  f"(0..{num_layers - 1}, or -1 for the last)")
        out.append(v % num_layers)
    return out


def plan_batches(lengths: Sequence[int], max_tokens: int, long_samples: int) -> list[list[int]]:
    """Length-sorted greedy batches with batch_size * longest <= max_tokens; items over ``long_samples`` alone."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        n = lengths[i]
        if n > long_samples:
            batches.append([i])
            continue
        if current and (len(current) + 1) * lengths[current[0]] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------------- engine
def default_max_tokens(device: str | torch.device) -> int:
    """Padded samples per batch when --max-tokens is not given.

    On a CPU, batching buys no compute: the convolutional front end and the elementwise ops are memory-bound, and
    benchmarks/forward.py measures batch 8 slower per second of audio than batch 1. Batches stay at 10 s of audio,
    which halves peak memory at the same speed (benchmarks/extract.py). On a GPU, large batches are the point.
    """
    return 1_000_000 if torch.device(device).type == "cuda" else 160_000


class BatchedForward:
    """Waveforms -> features with length-sorted batches and chunked long inputs. Per item: (L, T, D) float32.

    Batched results equal per-utterance results: padding never reaches a valid frame (see the backends).
    """

    def __init__(self, backend: Backend, layers: list[int], max_tokens: int | None = None,
                 chunk_seconds: float = 30.0):
        """``max_tokens``: padded samples per batch (default: :func:`default_max_tokens` of the backend's device); a
        batch always holds at least one input or window, so peak memory follows max(max_tokens, chunk)."""
        self.backend, self.layers = backend, layers
        self.max_tokens = int(max_tokens if max_tokens is not None else default_max_tokens(backend.device))
        self.chunk_samples = int(chunk_seconds * SAMPLE_RATE)
        if self.chunk_samples < 2 * SAMPLE_RATE:
            raise ExtractionError(f"--chunk-seconds {chunk_seconds} is too small (>= 2 s)")
        if self.max_tokens < 1:
            raise ExtractionError(f"--max-tokens {max_tokens} must be positive")

    def prepare(self, wav: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        return normalize_waveform(x) if self.backend.normalize else x

    def forward_batch(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Equal-or-shorter prepared waveforms (each <= chunk length) in one padded forward."""
        lengths = torch.tensor([len(w) for w in wavs])
        batch = torch.zeros(len(wavs), int(lengths.max()))
        for b, w in enumerate(wavs):
            batch[b, :len(w)] = w
        feats = self.backend.forward(batch, lengths, self.layers).cpu()  # (L, B, T, D)
        return [feats[:, b, :self.backend.num_frames(int(n))] for b, n in enumerate(lengths)]

    def windows(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """Chunk plan for a long input: (sample start, sample length, first kept frame, end kept frame)."""
        stride = round(SAMPLE_RATE / self.backend.frame_rate)  # samples per frame (5120 for CNN14's 3.125 Hz)
        total = self.backend.num_frames(num_samples)
        wf = self.backend.num_frames(self.chunk_samples)
        context = wf // 6  # frames of left/right context each window adds around the part it keeps
        step = wf - 2 * context
        starts = list(range(0, max(total - wf, 0), step)) + [max(total - wf, 0)]
        plan = []
        for k, a in enumerate(starts):
            length = min(self.chunk_samples, num_samples - a * stride)
            frames = self.backend.num_frames(length)
            lo = 0 if k == 0 else plan[-1][3]
            hi = total if k == len(starts) - 1 else (starts[k + 1] + a + frames) // 2
            plan.append((a * stride, length, lo, hi))
        return plan

    def forward_long(self, wav: torch.Tensor) -> torch.Tensor:
        """Overlapping windows stitched onto the unchunked frame grid (same frame count and timing)."""
        stride = round(SAMPLE_RATE / self.backend.frame_rate)
        plan = self.windows(len(wav))
        per_batch = max(1, self.max_tokens // self.chunk_samples)
        pieces = []
        for i in range(0, len(plan), per_batch):
            group = plan[i:i + per_batch]
            outs = self.forward_batch([wav[s:s + n] for s, n, _, _ in group])
            for (s, _, lo, hi), feats in zip(group, outs):
                first = s // stride
                pieces.append(feats[:, lo - first:hi - first])
        out = torch.cat(pieces, dim=1)
        assert out.shape[1] == self.backend.num_frames(len(wav)), (out.shape, len(wav))
        return out

    def __call__(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Prepared waveforms -> (L, T, D) each, batched by length, long ones chunked."""
        results: list[torch.Tensor | None] = [None] * len(wavs)
        for batch in plan_batches([len(w) for w in wavs], self.max_tokens, self.chunk_samples):
            if len(batch) == 1 and len(wavs[batch[0]]) > self.chunk_samples and getattr(self.backend, "windowed", True):
                results[batch[0]] = self.forward_long(wavs[batch[0]])
            else:
                for i, out in zip(batch, self.forward_batch([wavs[i] for i in batch])):
                    results[i] = out
        return results  # type: ignore[return-value]


def pool(feats: torch.Tensor, granularity: str, single_layer: bool) -> np.ndarray:
    """(L, T, D) -> (T, D) | (D,) | (L, T, D) | (L, D) float32 numpy."""
    x = feats.mean(dim=1) if granularity == "utterance" else feats
    x = x[0] if single_layer else x
    return x.numpy().astype(np.float32, copy=False)
