"""Where extraction time goes: per-component wall time of the forward passes extraction runs (its length-sorted
batches, ``emotion2vec.extract.engine.BatchedForward``), from forward hooks, plus decoding, normalising and writing,
per second of audio.

Components (exclusive times, summed over every instance):
    CNN first layer        the first convolution with its norm and GELU (fp32 arithmetic in every dtype)
    CNN middle layers      the other convolutions but the last two, with their norms and GELUs (bf16 products in
                           bf16 / int8)
    CNN last two layers    kept in fp32 in every dtype
    projection             LayerNorm + Linear 512 -> 768
    positional conv        the 5 grouped convolutions (+ their LayerNorm / GELU)
    attention projections  the qkv and output Linear layers
    attention core         scores, ALiBi bias, softmax, weighted values
    FFN                    fc1, GELU, fc2
    block norms + residuals  the two post-norm LayerNorms and residual adds of every block
    other forward          the rest: padding the batch, the ALiBi bias, extra tokens, context norm, casts
    decode + resample      soundfile + soxr to 16 kHz
    normalise              per-utterance waveform normalisation
    write .npy             pooling and saving the utterance feature
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROWS = ("CNN first layer", "CNN middle layers", "CNN last two layers", "projection", "positional conv",
        "attention projections", "attention core", "FFN", "block norms + residuals", "other forward",
        "decode + resample", "normalise", "write .npy")


class ModuleTimer:
    """Inclusive wall time per module instance (the CPU runs synchronously: perf_counter around forward)."""

    def __init__(self, modules: dict[str, list[nn.Module]]):
        self.total: dict[int, float] = defaultdict(float)
        self.start: dict[int, float] = {}
        self.groups = modules
        self.handles = []
        for mods in modules.values():
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._pre))
                self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, module, _args):
        self.start[id(module)] = time.perf_counter()

    def _post(self, module, _args, _out):
        self.total[id(module)] += time.perf_counter() - self.start.pop(id(module))

    def group(self, name: str) -> float:
        return sum(self.total[id(m)] for m in self.groups[name])

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _groups(model) -> dict[str, list[nn.Module]]:
    from emotion2vec.models.components import FeedForward, SelfAttention, TransformerBlock

    mods = list(model.modules())
    cnn = list(model.feature_extractor.layers)
    attention = [m for m in mods if isinstance(m, SelfAttention)]
    return {
        "cnn_first": cnn[:1],
        "cnn_middle": cnn[1:-2],
        "cnn_last": cnn[-2:],
        "projection": [model.feature_projection],
        "pos_conv": [model.encoder.pos_conv],
        "attention": attention,
        "attention_linear": [lin for a in attention for lin in (a.qkv, a.out_proj)],
        "ffn": [m for m in mods if isinstance(m, FeedForward)],
        "block": [m for m in mods if isinstance(m, TransformerBlock)],
    }


def profile_extraction(backend, paths: list[str], repeats: int = 2, max_tokens: int | None = None
                       ) -> dict[str, float]:
    """Seconds per second of audio for each of :data:`ROWS` (plus ``"total"``), the fastest of ``repeats`` passes
    over ``paths`` through ``backend`` (a :class:`~emotion2vec.extract.backends.ModelBackend`) in extraction's
    batches, utterance features of the last layer."""
    import tempfile

    from emotion2vec.extract.engine import BatchedForward
    from emotion2vec.io.audio import load_audio, normalize_waveform

    model = backend.model
    engine = BatchedForward(backend, [backend.num_layers - 1], max_tokens)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t = defaultdict(float)
            t0 = time.perf_counter()
            wavs = [torch.from_numpy(load_audio(path)) for path in paths]
            t1 = time.perf_counter()
            wavs = [normalize_waveform(w) if backend.normalize else w for w in wavs]
            t2 = time.perf_counter()
            timer = ModuleTimer(_groups(model))
            feats = engine(wavs)
            t3 = time.perf_counter()
            timer.remove()
            for k, f in enumerate(feats):
                np.save(Path(tmp) / f"{k}.npy", f[0].mean(0).numpy())
            t4 = time.perf_counter()
            audio = sum(len(w) for w in wavs) / 16000
            g = timer.group
            t["decode + resample"], t["normalise"], t["write .npy"] = t1 - t0, t2 - t1, t4 - t3
            t["CNN first layer"], t["CNN middle layers"] = g("cnn_first"), g("cnn_middle")
            t["CNN last two layers"], t["projection"], t["positional conv"] = g("cnn_last"), g("projection"), g(
                "pos_conv")
            t["attention projections"] = g("attention_linear")
            t["attention core"] = g("attention") - g("attention_linear")
            t["FFN"] = g("ffn")
            t["block norms + residuals"] = g("block") - g("attention") - g("ffn")
            t["other forward"] = (t3 - t2) - sum(t[r] for r in ROWS[:9])
            t["total"] = t4 - t0
            per_audio = {k: v / audio for k, v in t.items()}
            if not best or per_audio["total"] < best["total"]:
                best = per_audio
    return best
