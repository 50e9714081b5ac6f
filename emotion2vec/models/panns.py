"""PANNs' CNN14 files as upstreams: ``cnn14:PATH`` (e.g. ``Cnn14_16k_mAP=0.438.pth``, the 16 kHz CNN14 trained on
AudioSet, which the user downloads and names).

A PANNs file's tensors are mapped by :data:`KEY_RULES` (one rule per key family, with an example each); a key no
rule knows is an error. The file's STFT kernel and mel filterbank (``spectrogram_extractor.*``,
``logmel_extractor.melW``) are compared with :class:`~emotion2vec.models.cnn14.Cnn14Model`'s front end (a 32 kHz
CNN14, or other mel settings, is refused by name), then dropped with the AudioSet head (``fc1``, ``fc_audioset``,
which sit after the time pooling and so are no part of a frame encoder); the dropped tensors are reported in the
upstream's ``meta``. The architecture's widths are read from the tensors' shapes.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor

from ..errors import Emotion2VecError
from .checkpoint import CheckpointError, _torch_load, load_state_strict, sha256_file
from .cnn14 import SPEC, Cnn14Config, Cnn14Model, slaney_mel_filterbank
from .config import ConfigError

__all__ = ["Cnn14KeyError", "KEY_RULES", "DROPPED", "map_panns_state", "read_panns", "load_cnn14"]


class Cnn14KeyError(Emotion2VecError, ValueError):
    """A PANNs file whose tensors are not those of a CNN14 this front end can run."""


def _block_key(m: re.Match) -> str:
    return f"blocks.{int(m.group(1)) - 1}.{m.group(2)}"


#: (pattern, our name, example): every tensor of a PANNs CNN14 file that the upstream keeps
KEY_RULES: list[tuple[re.Pattern, Callable[[re.Match], str], str]] = [
    (re.compile(r"^bn0\.(weight|bias|running_mean|running_var|num_batches_tracked)$"), lambda m: m.group(0),
     "bn0.running_mean"),
    (re.compile(r"^conv_block([1-6])\.(conv[12]\.weight)$"), _block_key, "conv_block3.conv2.weight"),
    (re.compile(r"^conv_block([1-6])\.(bn[12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"),
     _block_key, "conv_block6.bn1.running_var"),
]
#: tensors of a PANNs file that are checked or not part of the frame encoder: dropped (and reported)
DROPPED = {
    "spectrogram_extractor.stft.conv_real.weight": "STFT kernel (compared with this front end)",
    "spectrogram_extractor.stft.conv_imag.weight": "STFT kernel (compared with this front end)",
    "logmel_extractor.melW": "mel filterbank (compared with this front end)",
    "fc1.weight": "AudioSet head", "fc1.bias": "AudioSet head",
    "fc_audioset.weight": "AudioSet head", "fc_audioset.bias": "AudioSet head",
}


def map_panns_state(state: Mapping[str, Tensor], where: str) -> tuple[dict[str, Tensor], list[str]]:
    """A PANNs CNN14 state dict -> (our state dict, dropped key names). Unknown keys are an error naming them."""
    ours: dict[str, Tensor] = {}
    dropped, unknown = [], []
    for key, value in state.items():
        if key in DROPPED:
            dropped.append(key)
            continue
        for pattern, name, _ in KEY_RULES:
            m = pattern.match(key)
            if m:
                ours[name(m)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise Cnn14KeyError(f"{where}: not a PANNs CNN14 file: unknown tensor(s) {', '.join(sorted(unknown)[:10])}"
                            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    return ours, sorted(dropped)


def _config_from_state(state: Mapping[str, Tensor], where: str) -> Cnn14Config:
    try:
        channels = tuple(int(state[f"blocks.{i}.conv1.weight"].shape[0]) for i in range(6))
        mel_bins = int(state["bn0.weight"].shape[0])
    except KeyError as e:
        raise Cnn14KeyError(f"{where}: not a complete CNN14: no tensor for {e.args[0]}") from None
    try:
        return Cnn14Config(mel_bins=mel_bins, channels=channels)
    except ConfigError as e:
        raise Cnn14KeyError(f"{where}: {e}") from None


def _check_front_end(state: Mapping[str, Tensor], cfg: Cnn14Config, where: str) -> None:
    """The file's mel filterbank and STFT kernels must be those this front end computes."""
    mel = state.get("logmel_extractor.melW")
    if mel is not None:
        expected = slaney_mel_filterbank(cfg.sample_rate, cfg.window, cfg.mel_bins, cfg.fmin, cfg.fmax)
        if tuple(mel.shape) != tuple(expected.shape):
            fft = 2 * (int(mel.shape[0]) - 1)
            raise Cnn14KeyError(f"{where}: its log-mel front end uses a {fft}-point FFT and {mel.shape[1]} mel bands "
                                f"(melW {tuple(mel.shape)}); this CNN14 computes a {cfg.window}-point FFT of 16 kHz "
                                f"audio into {cfg.mel_bins} bands {tuple(expected.shape)}. Use PANNs' 16 kHz CNN14 "
                                f"(Cnn14_16k)")
        err = float((mel.double() - expected).abs().max())
        if err > 1e-4 * float(expected.abs().max()):
            raise Cnn14KeyError(f"{where}: its mel filterbank differs from the 16 kHz CNN14 front end ({cfg.fmin:g}.."
                                f"{cfg.fmax:g} Hz, Slaney mel; max difference {err:.3g}): another mel range or scale")
    real = state.get("spectrogram_extractor.stft.conv_real.weight")
    if real is not None:
        n = torch.arange(cfg.window, dtype=torch.float64)
        k = torch.arange(cfg.window // 2 + 1, dtype=torch.float64)[:, None]
        window = torch.hann_window(cfg.window, periodic=True, dtype=torch.float64)
        expected = (torch.cos(2 * math.pi * k * n / cfg.window) * window)[:, None, :]
        if tuple(real.shape) != tuple(expected.shape) or float((real.double() - expected).abs().max()) > 1e-4:
            raise Cnn14KeyError(f"{where}: its STFT kernel {tuple(real.shape)} is not a {cfg.window}-point periodic "
                                f"Hann-windowed DFT with hop {cfg.hop} (the 16 kHz CNN14 front end)")


def read_panns(path: str | os.PathLike, trust: bool = False) -> tuple[Cnn14Config, dict[str, Tensor], list[str]]:
    """A PANNs checkpoint (``{"model": state_dict, ...}`` or a bare state dict) -> (config, our state, dropped)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"cnn14:{path}: no such file (give a PANNs CNN14 checkpoint, e.g. "
                              f"Cnn14_16k_mAP=0.438.pth)")
    obj = _torch_load(p, trust)
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"cnn14:{path}: no state dict of tensors inside (expected PANNs' {{'model': ...}})")
    try:
        ours, dropped = map_panns_state(state, str(p))
        cfg = _config_from_state(ours, str(p))
        _check_front_end(state, cfg, str(p))
    except Cnn14KeyError as e:
        raise CheckpointError(str(e)) from None
    return cfg, ours, dropped


def load_cnn14(spec: str, trust: bool = False) -> tuple[Cnn14Model, str, dict]:
    """``cnn14`` (PANNs' initialisation, fixed seed) or ``cnn14:PATH`` (a PANNs file) -> (model in eval mode,
    source name, meta)."""
    if spec == SPEC:
        return Cnn14Model(Cnn14Config()).eval(), "cnn14", {"weights": "random initialisation"}
    path = spec[len(SPEC) + 1:]
    cfg, state, dropped = read_panns(path, trust)
    for key in [k for k in state if k.endswith(".running_mean")]:  # files written before BatchNorm counted batches
        state.setdefault(key.replace("running_mean", "num_batches_tracked"), torch.zeros((), dtype=torch.long))
    model = Cnn14Model(cfg, weights=f"PANNs file {Path(path).name} sha256 {sha256_file(path)[:16]}")
    load_state_strict(model, state, f"cnn14:{path}")
    return model.eval(), "cnn14-panns", {"dropped": dropped}
