"""CNN14 (Kong et al., PANNs) on log-mel spectrograms: the non-transformer baseline of Wagner et al.

Wagner et al. compare their fine-tuned transformers with a 14-layer CNN that follows PANNs' CNN14 and is trained
from scratch on the emotion task. This module is that network as an upstream (``cnn14``: a fresh initialisation;
``cnn14:PATH``: PANNs' AudioSet weights from a file the user supplies, e.g. ``Cnn14_16k_mAP=0.438.pth``).

    waveform (B, N) at 16 kHz, as read (no normalisation)
      -> power spectrogram: Hann window of 512 samples (periodic), hop 160 (10 ms), centred frames (the input is
         reflect-padded by 256 samples at both ends): 1 + N // 160 frames
      -> 64 mel bands, Slaney mel scale and area normalisation, 50 Hz .. 8 kHz
      -> 10 log10(max(power, 1e-10))                                    (B, 1, T, 64)
      -> bn0: BatchNorm over the mel bands
      -> 6 convolution blocks, each: Conv 3x3 (no bias) -> BN -> ReLU -> Conv 3x3 (no bias) -> BN -> ReLU, then
         2 x 2 average pooling (blocks 1-5; block 6 pools nothing) and dropout 0.2 (training only);
         channels 64, 128, 256, 512, 1024, 2048
      -> mean over the remaining frequency bins                         (B, T', 2048)

``x`` and the one layer this upstream has (``layer_outputs[0]``) are those frames: one every 32 spectrogram frames
(320 ms, ``frame_stride`` 5120 samples), ``ceil((1 + N // 160) / 32)`` of them. PANNs' AudioSet head (max + mean over
time, ``fc1``, ``fc_audioset``) is not part of it: fine-tuning puts the task's head on these frames, and Wagner et
al.'s embedding (the average over time of the last convolution block's output) is ``extract --granularity
utterance``.

Two choices make variable-length batches exact (the valid frames of a padded batch equal those of each input
alone): each input's spectrogram is computed on its own samples (its own reflect padding), and after every
normalisation + ReLU the frames past an input's end are set to 0, which is what a convolution's zero padding shows
the input alone. A last pooling window that is only half inside the input averages its valid frames (PANNs' pooling
drops such a tail, up to 310 ms, and so cannot handle inputs under 0.31 s; here every input of at least 257 samples
gives frames). In training, batch normalisation takes its statistics over the valid frames only.

PANNs' own files are read by :mod:`emotion2vec.models.panns`; a fine-tuned CNN14 is saved in our checkpoint format
(``config.json`` with ``architecture: cnn14`` + ``model.safetensors``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ATTENTION_IMPLEMENTATIONS, ConfigError
from .encoder import FeatureOutput

__all__ = ["ARCHITECTURE", "SPEC", "Cnn14Config", "Cnn14Model", "LogMel", "MaskedBatchNorm2d",
           "slaney_mel_filterbank", "hz_to_slaney_mel"]

ARCHITECTURE = "cnn14"
SPEC = "cnn14"  # load_upstream("cnn14") / "cnn14:PATH"
_POOLED_BLOCKS = 5  # blocks 1-5 halve time and frequency
_AMIN = 1e-10  # power floor of the dB conversion
_INIT_SEED = 0


@dataclass
class Cnn14Config:
    """Architecture of a CNN14 (defaults: PANNs' 16 kHz CNN14)."""

    sample_rate: int = 16000
    window: int = 512  # STFT window = FFT size (samples)
    hop: int = 160  # STFT hop (samples)
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    dropout: float = 0.2  # after every convolution block (training only)

    architecture = ARCHITECTURE  # class attribute: recorded in our config.json, selects this model when read
    num_layers = 1  # one layer: the last block's frames
    normalize = False  # the waveform goes in as read
    num_extra_tokens = 0

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.validate()

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @property
    def frame_stride(self) -> int:
        return self.hop * 2 ** _POOLED_BLOCKS

    @property
    def min_samples(self) -> int:
        return self.window // 2 + 1  # the centred STFT reflect-pads window // 2 samples

    def spectrogram_frames(self, num_samples: int) -> int:
        return 1 + int(num_samples) // self.hop

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.min_samples:
            return 0
        return -(-self.spectrogram_frames(num_samples) // 2 ** _POOLED_BLOCKS)

    def validate(self) -> None:
        if self.sample_rate != 16000:
            raise ConfigError(f"CNN14 sample_rate {self.sample_rate}: emotion2vec feeds 16 kHz audio (use the 16 kHz "
                              f"CNN14)")
        if len(self.channels) != 6 or min(self.channels) < 1:
            raise ConfigError(f"CNN14 channels {self.channels}: six positive widths, one per convolution block")
        if self.mel_bins < 32 or self.mel_bins % 32:
            raise ConfigError(f"CNN14 mel_bins {self.mel_bins}: a multiple of 32 (five 2 x 2 poolings)")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"CNN14 mel range {self.fmin}..{self.fmax} Hz: need 0 <= fmin < fmax <= "
                              f"{self.sample_rate / 2:g}")
        if self.window < 2 or self.hop < 1:
            raise ConfigError(f"CNN14 window {self.window} / hop {self.hop}: must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"CNN14 dropout {self.dropout}: must lie in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": ARCHITECTURE, **{k: (list(v) if isinstance(v, tuple) else v)
                                                  for k, v in dataclasses.asdict(self).items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cnn14Config":
        d = {k: v for k, v in d.items() if k != "architecture"}
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown Cnn14Config field(s): {', '.join(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------ front end
def hz_to_slaney_mel(f: Tensor | float) -> Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    f = torch.as_tensor(f, dtype=torch.float64)
    linear = f * 3.0 / 200.0
    log = 15.0 + torch.log(torch.clamp(f, min=1e-10) / 1000.0) * 27.0 / math.log(6.4)
    return torch.where(f >= 1000.0, log, linear)


def slaney_mel_to_hz(m: Tensor) -> Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    return torch.where(m >= 15.0, 1000.0 * torch.exp((m - 15.0) * math.log(6.4) / 27.0), m * 200.0 / 3.0)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    """(n_fft // 2 + 1, n_mels) weights: triangles between consecutive mel-spaced edge frequencies (triangular in
    Hz), each scaled by 2 / (its upper edge - its lower edge in Hz) so that every band has the same area."""
    edges = slaney_mel_to_hz(torch.linspace(float(hz_to_slaney_mel(fmin)), float(hz_to_slaney_mel(fmax)),
                                            n_mels + 2, dtype=torch.float64))
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)[:, None]
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return weights * (2.0 / (upper - lower))


class LogMel(nn.Module):
    """(n,) samples of one input -> (1 + n // hop, mel_bins) log-mel frames in dB (see the module docstring)."""

    def __init__(self, cfg: Cnn14Config):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.window, periodic=True, dtype=torch.float64).float(),
                             persistent=False)
        self.register_buffer("mel", slaney_mel_filterbank(cfg.sample_rate, cfg.window, cfg.mel_bins, cfg.fmin,
                                                          cfg.fmax).float(), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        with torch.autocast(wav.device.type, enabled=False):  # power and its log in float32 under any precision
            spec = torch.stft(wav.float(), self.cfg.window, self.cfg.hop, self.cfg.window, self.window, center=True,
                              pad_mode="reflect", return_complex=True)  # (..., F, T)
            power = spec.real.square() + spec.imag.square()
            return 10.0 * torch.log10(torch.clamp(power.transpose(-1, -2) @ self.mel, min=_AMIN))


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the valid time steps only: ``forward(x (B, C, T, F), valid
    (B, T) bool | None)``. In eval mode (or without a mask) it is ``nn.BatchNorm2d``; the state dict is the same."""

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if not self.training or valid is None or bool(valid.all()):
            return super().forward(x)
        w = valid[:, None, :, None].to(x.dtype)  # (B, 1, T, 1)
        n = w.sum() * x.shape[3]
        mean = (x * w).sum((0, 2, 3)) / n
        var = ((x - mean[None, :, None, None]).square() * w).sum((0, 2, 3)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(float(n) - 1, 1.0), alpha=m)
        y = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def _masked(x: Tensor, valid: Tensor | None) -> Tensor:
    return x if valid is None else x * valid[:, None, :, None].to(x.dtype)


def _pool_time_freq(x: Tensor, valid: Tensor | None, lengths: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """2 x 2 average pooling of (B, C, T, F) whose frames past ``lengths`` are 0; a window half past an input's end
    averages its valid frames. -> (pooled, its valid mask, its lengths)."""
    B, C, T, Fq = x.shape
    if T % 2:
        x = F.pad(x, (0, 0, 0, 1))
    summed = x.reshape(B, C, (T + 1) // 2, 2, Fq // 2, 2).sum((3, 5))
    new_lengths = (lengths + 1) // 2
    steps = torch.arange((T + 1) // 2, device=x.device)
    count = torch.clamp(lengths[:, None] - 2 * steps[None, :], 0, 2)  # valid frames in each window (B, T')
    pooled = summed / (2 * count.clamp(min=1))[:, None, :, None].to(x.dtype)
    new_valid = None if valid is None else steps[None, :] < new_lengths[:, None]
    return _masked(pooled, new_valid), new_valid, new_lengths


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = MaskedBatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm2d(c_out)

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        x = _masked(F.relu(self.bn1(self.conv1(x), valid)), valid)
        return _masked(F.relu(self.bn2(self.conv2(x), valid)), valid)


class Cnn14Model(nn.Module):
    """The upstream: ``extract_features(waveform (B, N), padding_mask (B, N) | None, layers, ffn=())`` ->
    :class:`~emotion2vec.models.encoder.FeatureOutput` with ``x`` (B, T', C6) the last block's frames averaged over
    frequency, ``layer_outputs`` = [x], ``padding_mask`` (B, T') or None."""

    kind = "cnn14"

    def __init__(self, cfg: Cnn14Config, weights: str = ""):
        super().__init__()
        self.cfg = cfg
        self.weights = weights  # what the parameters came from (recorded in features.json)
        self.logmel = LogMel(cfg)
        self.bn0 = MaskedBatchNorm2d(cfg.mel_bins)
        widths = (1, *cfg.channels)
        self.blocks = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(6))
        self.reset_parameters()

    def reset_parameters(self, seed: int = _INIT_SEED) -> None:
        """PANNs' initialisation (Xavier-uniform convolutions, BN weight 1 and bias 0), from a fixed seed."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in, fan_out = m.weight.shape[1] * 9, m.weight.shape[0] * 9
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_parameters()

    def settings(self) -> dict[str, Any]:
        return {"cnn14_weights": self.weights or f"random initialisation (seed {_INIT_SEED})"}

    def set_attention_implementation(self, implementation: str) -> "Cnn14Model":
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"attention implementation {implementation!r}: choose one of "
                              f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
        return self  # a CNN has no attention

    @property
    def attention_implementation(self) -> str:
        return "none"

    def log_mel(self, waveform: Tensor, lengths: list[int]) -> Tensor:
        """(B, N) waveforms with valid ``lengths`` -> (B, 1, T, mel_bins), each input's frames from its own samples,
        zeros past them."""
        B = waveform.shape[0]
        T = self.cfg.spectrogram_frames(max(lengths))
        out = waveform.new_zeros(B, 1, T, self.cfg.mel_bins, dtype=torch.float32)
        for n in sorted(set(lengths)):
            idx = [b for b in range(B) if lengths[b] == n]
            if n < self.cfg.min_samples:
                raise ConfigError(f"CNN14 needs inputs of at least {self.cfg.min_samples} samples "
                                  f"({self.cfg.min_samples / self.cfg.sample_rate * 1000:.0f} ms at 16 kHz), got {n}")
            out[idx, 0, :self.cfg.spectrogram_frames(n)] = self.logmel(waveform[idx, :n])
        return out

    def extract_features(self, waveform: Tensor, padding_mask: Tensor | None = None,
                         layers: Iterable[int] | None = None, ffn: Iterable[int] | None = ()) -> FeatureOutput:
        """waveform (B, N) raw 16 kHz samples; padding_mask (B, N) True = padding. -> FeatureOutput, x (B, T', C)."""
        if ffn:
            raise ConfigError("cnn14 has no FFN outputs")
        for i in (layers or ()):
            if not -1 <= int(i) < 1:
                raise ConfigError(f"cnn14 has one layer (0, or -1): got {i}")
        B, N = waveform.shape
        if padding_mask is not None and bool(padding_mask.any()):
            sample_lengths = [int(n) for n in (~padding_mask).sum(-1)]
        else:
            sample_lengths, padding_mask = [N] * B, None
        x = self.log_mel(waveform, sample_lengths)
        lengths = torch.tensor([self.cfg.spectrogram_frames(n) for n in sample_lengths], device=x.device)
        valid = None
        if padding_mask is not None:
            valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
        x = self.bn0(x.transpose(1, 3), None if valid is None else valid).transpose(1, 3)
        x = _masked(x, valid)
        for i, block in enumerate(self.blocks):
            x = block(x, valid)
            if i < _POOLED_BLOCKS:
                x, valid, lengths = _pool_time_freq(x, valid, lengths)
            x = F.dropout(x, self.cfg.dropout, self.training)
        frames = x.mean(dim=3).transpose(1, 2)  # (B, T', C)
        frame_mask = None if valid is None else ~valid
        return FeatureOutput(frames, [frames], [], frame_mask)
