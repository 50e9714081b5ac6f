"""Log-mel filterbank features in pure torch (no torchaudio): the baseline feature source of the probes.

Kaldi-style framing and filterbank (the defaults of ``compute-fbank-feats``, without dither):
25 ms frames every 10 ms with "snip edges" (only whole frames, T = 1 + (N - 400) // 160 at 16 kHz), per frame
DC removal, pre-emphasis 0.97 (the first sample is pre-emphasised against itself), Povey window
(Hann ** 0.85), zero-padding to the next power of two (512), power spectrum ``|rfft|^2``, triangular filters
equally spaced on the HTK mel scale ``1127 ln(1 + f / 700)`` from 20 Hz to Nyquist (8 kHz) and triangular in
the mel domain, then ``log(max(energy, eps))`` with eps = float32 machine epsilon (silence gives ~ -15.9, never
-inf or NaN).

The waveform is used as given (float, typically in [-1, 1]); Kaldi scales int16 audio by 32768, which only
adds log(32768^2) ~ 20.8 to every value. No mean/variance normalisation is applied.

>>> fb = LogMelFbank()
>>> feats, frames = fb(torch.randn(2, 16000), torch.tensor([16000, 8000]))   # (2, 98, 80), [98, 48]
"""

from __future__ import annotations

import math

import torch

__all__ = ["LogMelFbank", "mel_filterbank", "povey_window"]


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)


def povey_window(length: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))).pow(0.85).to(dtype)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, low_freq: float = 20.0,
                   high_freq: float | None = None) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) weights of triangular filters, triangular on the mel axis (as Kaldi)."""
    high_freq = sample_rate / 2 if high_freq is None else high_freq
    if not 0 <= low_freq < high_freq <= sample_rate / 2:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {sample_rate / 2}, got {low_freq}, {high_freq}")
    edges = torch.linspace(float(hz_to_mel(low_freq)), float(hz_to_mel(high_freq)), n_mels + 2, dtype=torch.float64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    bin_mel = hz_to_mel(torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft)[:, None]
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class LogMelFbank(torch.nn.Module):
    """``forward(waveform (B, N), lengths (B,) | None) -> (features (B, T, n_mels), frame_lengths (B,))``.

    Frames past an utterance's ``frame_lengths`` (padding) are zero. Each frame depends only on its own 400
    samples, so batched results equal per-utterance results on the valid frames.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000):
        super().__init__()
        if n_mels < 1:
            raise ValueError(f"n_mels must be positive, got {n_mels}")
        self.n_mels = int(n_mels)
        self.sample_rate = int(sample_rate)
        self.win_length = int(round(0.025 * sample_rate))
        self.hop_length = int(round(0.010 * sample_rate))
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        self.preemphasis = 0.97
        self.dim = self.n_mels
        self.frame_rate = sample_rate / self.hop_length
        self.register_buffer("window", povey_window(self.win_length, torch.float32), persistent=False)
        self.register_buffer("mel_weights", mel_filterbank(n_mels, self.n_fft, sample_rate).to(torch.float32),
                             persistent=False)

    def num_frames(self, num_samples: int) -> int:
        num_samples = int(num_samples)
        return 0 if num_samples < self.win_length else 1 + (num_samples - self.win_length) // self.hop_length

    def extra_repr(self) -> str:
        return (f"n_mels={self.n_mels}, sample_rate={self.sample_rate}, win_length={self.win_length}, "
                f"hop_length={self.hop_length}, n_fft={self.n_fft}")

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, N), got shape {tuple(waveform.shape)}")
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be a float tensor, got {waveform.dtype}")
        batch, n = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), n, dtype=torch.long, device=waveform.device)
        lengths = torch.as_tensor(lengths, device=waveform.device).long()
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must be ({batch},), got shape {tuple(lengths.shape)}")
        if bool((lengths > n).any()) or bool((lengths < 0).any()):
            raise ValueError(f"lengths must lie in [0, {n}], got {lengths.tolist()}")
        frame_lengths = torch.where(
            lengths >= self.win_length,
            1 + torch.div(lengths - self.win_length, self.hop_length, rounding_mode="floor"),
            torch.zeros_like(lengths),
        )
        t = self.num_frames(n)
        dtype = waveform.dtype if waveform.dtype == torch.float64 else torch.float32
        if t == 0:
            return waveform.new_zeros(batch, 0, self.n_mels, dtype=dtype), frame_lengths
        frames = waveform.to(dtype).unfold(1, self.win_length, self.hop_length)  # (B, T, W), a view
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - self.preemphasis * previous) * self.window.to(dtype)
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # (B, T, n_fft // 2 + 1)
        mel = torch.matmul(power, self.mel_weights.to(dtype))
        feats = torch.log(torch.clamp(mel, min=torch.finfo(torch.float32).eps))
        valid = torch.arange(t, device=waveform.device)[None, :] < frame_lengths[:, None]
        return feats.masked_fill(~valid[..., None], 0.0), frame_lengths
