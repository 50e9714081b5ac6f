"""The vocal-tract filter, applied by STFT overlap-add (512-sample Hann frames, 8 ms hop): formant resonators,
the frames where a source is active, the noise-band tracks."""

from __future__ import annotations

import numpy as np

from .plan import _Plan


_WIN = 512
_HOP = 128
_WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_WIN) / _WIN)).astype(np.float32)  # periodic Hann


def _resonances(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of 2-pole resonators (unity gain at DC): (frames, bins)."""
    f = freqs[None, :]
    h = np.ones((formants.shape[0], freqs.size), dtype=np.float32)
    for k in range(formants.shape[1]):
        fk = formants[:, k:k + 1].astype(np.float32)
        bk = (0.5 * bandwidths[:, k:k + 1]).astype(np.float32)
        b2 = bk * bk
        h *= (fk * fk + b2) / np.sqrt(((f - fk) ** 2 + b2) * ((f + fk) ** 2 + b2))
    return h


def _stft(x: np.ndarray, frames_idx: np.ndarray) -> np.ndarray:
    """rfft of the Hann-windowed frames ``frames_idx`` (hop _HOP) of ``x``."""
    frames = np.lib.stride_tricks.sliding_window_view(x, _WIN)[::_HOP][frames_idx]
    return np.fft.rfft(frames * _WINDOW, axis=1)


def _istft(spec: np.ndarray, n_padded: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=_WIN, axis=1).astype(np.float32) * _WINDOW
    nf = frames.shape[0]
    r = _WIN // _HOP
    blocks = np.zeros((nf + r - 1, _HOP), dtype=np.float32)
    parts = frames.reshape(nf, r, _HOP)
    for j in range(r):
        blocks[j:j + nf] += parts[:, j, :]
    out = blocks.reshape(-1)
    norm = float((_WINDOW ** 2).reshape(r, _HOP).sum(axis=0).mean())  # constant for Hann at hop = win / 4
    out = out / norm
    if out.size < n_padded:
        out = np.pad(out, (0, n_padded - out.size))
    return out[:n_padded]


def _active_frames(env: np.ndarray, n_frames: int) -> np.ndarray:
    """Indices of the STFT frames (window _WIN, hop _HOP, centred) in which ``env`` is non-zero."""
    hop_max = np.zeros(n_frames + _WIN // _HOP + 1, dtype=bool)
    nh = env.size // _HOP
    hop_max[:nh] = env[:nh * _HOP].reshape(nh, _HOP).max(axis=1) > 0  # hops holding signal
    if env.size > nh * _HOP:
        hop_max[nh] = env[nh * _HOP:].max() > 0
    # frame f covers samples [f*HOP - WIN/2, f*HOP + WIN/2): hops f-2 .. f+1
    r = _WIN // (2 * _HOP)
    padded = np.concatenate([np.zeros(r, dtype=bool), hop_max])
    act = np.zeros(n_frames, dtype=bool)
    for k in range(2 * r):
        act |= padded[k:k + n_frames]
    return np.flatnonzero(act)


def _noise_track(plan: _Plan, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a step-like track of noise-span field ``index`` (centre or bandwidth) for np.interp."""
    spans = sorted(plan.noise, key=lambda s: s[0])
    t = np.array([x for s in spans for x in (s[0] - 0.01, s[1] + 0.01)])
    v = np.array([s[index] for s in spans for _ in (0, 1)])
    return t, v
