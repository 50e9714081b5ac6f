"""Where extraction time goes: per-component wall time of the forward pass, from forward hooks, plus decoding and
writing, per second of audio.

Components (exclusive times, summed over every instance):
    CNN GEMMs              the 7 convolutions of the waveform encoder (unfold + matrix multiply)
    CNN norms + GELU       the per-layer LayerNorm and GELU of the waveform encoder
    projection             LayerNorm + Linear 512 -> 768
    positional conv        the 5 grouped convolutions (+ their LayerNorm / GELU)
    attention projections  the qkv and output Linear layers
    attention core         scores, ALiBi bias, softmax, weighted values
    FFN GEMMs              fc1 and fc2
    FFN GELU               the activation between them
    block norms + residuals  the two post-norm LayerNorms and residual adds of every block
    other forward          the rest of the forward (ALiBi bias build, extra tokens, context norm, casts)
    decode + resample      soundfile + soxr to 16 kHz
    normalise              per-utterance waveform normalisation
    write .npy             saving the utterance feature
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROWS = ("CNN GEMMs", "CNN norms + GELU", "projection", "positional conv", "attention projections", "attention core",
        "FFN GEMMs", "FFN GELU", "block norms + residuals", "other forward", "decode + resample", "normalise",
        "write .npy")


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
    from emotion2vec.models.components import ConvLayerBlock, FeedForward, SelfAttention, TransformerBlock

    mods = list(model.modules())
    attention = [m for m in mods if isinstance(m, SelfAttention)]
    ffn = [m for m in mods if isinstance(m, FeedForward)]
    return {
        "cnn_block": [m for m in mods if isinstance(m, ConvLayerBlock)],
        "cnn_gemm": [m.conv for m in mods if isinstance(m, ConvLayerBlock)],
        "projection": [model.feature_projection],
        "pos_conv": [model.encoder.pos_conv],
        "attention": attention,
        "attention_linear": [lin for a in attention for lin in (a.qkv, a.out_proj)],
        "ffn": ffn,
        "ffn_linear": [lin for f in ffn for lin in (f.fc1, f.fc2)],
        "block": [m for m in mods if isinstance(m, TransformerBlock)],
    }


def profile_extraction(backend, paths: list[str], repeats: int = 2) -> dict[str, float]:
    """Seconds per second of audio for each of :data:`ROWS` (plus ``"total"``), the fastest of ``repeats`` passes
    over ``paths`` through ``backend`` (a :class:`~emotion2vec.extract.backends.ModelBackend`), one file at a time,
    utterance features of the last layer."""
    import tempfile

    from emotion2vec.io.audio import load_audio, normalize_waveform

    model = backend.model
    layer = [backend.num_layers - 1]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            timer = ModuleTimer(_groups(model))
            t = defaultdict(float)
            audio = 0.0
            for k, path in enumerate(paths):
                t0 = time.perf_counter()
                wav = torch.from_numpy(load_audio(path))
                t1 = time.perf_counter()
                x = normalize_waveform(wav) if backend.normalize else wav
                t2 = time.perf_counter()
                feats = backend.forward(x[None], torch.tensor([len(x)]), layer)[0, 0]
                t3 = time.perf_counter()
                np.save(Path(tmp) / f"{k}.npy", feats.mean(0).numpy())
                t4 = time.perf_counter()
                t["decode + resample"] += t1 - t0
                t["normalise"] += t2 - t1
                t["forward"] += t3 - t2
                t["write .npy"] += t4 - t3
                audio += len(wav) / 16000
            timer.remove()
            g = timer.group
            t["CNN GEMMs"] = g("cnn_gemm")
            t["CNN norms + GELU"] = g("cnn_block") - g("cnn_gemm")
            t["projection"] = g("projection")
            t["positional conv"] = g("pos_conv")
            t["attention projections"] = g("attention_linear")
            t["attention core"] = g("attention") - g("attention_linear")
            t["FFN GEMMs"] = g("ffn_linear")
            t["FFN GELU"] = g("ffn") - g("ffn_linear")
            t["block norms + residuals"] = g("block") - g("attention") - g("ffn")
            t["other forward"] = t["forward"] - sum(t[r] for r in ROWS[:9])
            t["total"] = t["forward"] + t["decode + resample"] + t["normalise"] + t["write .npy"]
            per_audio = {k: v / audio for k, v in t.items() if k != "forward"}
            if not best or per_audio["total"] < best["total"]:
                best = per_audio
    return best
