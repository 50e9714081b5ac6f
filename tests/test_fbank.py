"""emotion2vec.fbank.LogMelFbank against a plain numpy implementation and known signal properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotion2vec.models.fbank import LogMelFbank

SR = 16000


def reference_fbank(x: np.ndarray, n_mels: int = 80, sr: int = SR) -> np.ndarray:
    """Straightforward per-frame numpy version of the documented recipe (float64, explicit loops)."""
    win, hop, n_fft = 400, 160, 512
    n_frames = 0 if len(x) < win else 1 + (len(x) - win) // hop
    window = np.array([(0.5 - 0.5 * math.cos(2 * math.pi * i / (win - 1))) ** 0.85 for i in range(win)])

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    points = [lo + (hi - lo) * k / (n_mels + 1) for k in range(n_mels + 2)]
    filters = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, center, right = points[m], points[m + 1], points[m + 2]
        for b in range(n_fft // 2 + 1):
            z = mel(b * sr / n_fft)
            if left < z < right:
                filters[m, b] = (z - left) / (center - left) if z <= center else (right - z) / (right - center)
    out = np.zeros((n_frames, n_mels))
    eps = float(np.finfo(np.float32).eps)
    for t in range(n_frames):
        frame = np.asarray(x[t * hop: t * hop + win], dtype=np.float64)
        frame = frame - frame.mean()
        emphasised = np.empty_like(frame)
        emphasised[0] = frame[0] - 0.97 * frame[0]
        emphasised[1:] = frame[1:] - 0.97 * frame[:-1]
        padded = np.zeros(n_fft)
        padded[:win] = emphasised * window
        power = np.abs(np.fft.rfft(padded)) ** 2
        out[t] = np.log(np.maximum(filters @ power, eps))
    return out


def test_attributes_and_frame_count_formula():
    fb = LogMelFbank()
    assert fb.dim == 80 and fb.frame_rate == 100.0 and fb.n_fft == 512
    assert LogMelFbank(n_mels=40).dim == 40
    for n, expected in [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (16160, 99)]:
        assert fb.num_frames(n) == expected
        if n:
            feats, lengths = fb(torch.randn(1, n))
            assert feats.shape == (1, expected, 80) and lengths.tolist() == [expected]


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(4000) + 0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / SR)).astype(np.float64)
    ref = reference_fbank(x)
    fb = LogMelFbank()
    out64, _ = fb(torch.from_numpy(x)[None])
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64[0].numpy(), ref, rtol=0, atol=1e-5)
    out32, _ = fb(torch.from_numpy(x).float()[None])
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32[0].numpy(), ref, rtol=0, atol=2e-3)


def test_batched_equals_per_utterance_and_padding_is_zero():
    rng = np.random.default_rng(1)
    lengths = [16000, 5000, 401, 300]
    batch = torch.from_numpy(rng.standard_normal((4, 16000)).astype(np.float32))  # padding = noise, not zeros
    fb = LogMelFbank()
    feats, frame_lengths = fb(batch, torch.tensor(lengths))
    assert frame_lengths.tolist() == [fb.num_frames(n) for n in lengths] == [98, 29, 1, 0]
    for i, n in enumerate(lengths):
        single, single_len = fb(batch[i:i + 1, :n])
        t = fb.num_frames(n)
        assert single_len.tolist() == [t]
        torch.testing.assert_close(feats[i, :t], single[0], rtol=0, atol=1e-5)
        assert torch.count_nonzero(feats[i, t:]) == 0


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_right_mel_bin(freq):
    t = torch.arange(SR) / SR
    feats, _ = LogMelFbank()(torch.sin(2 * math.pi * freq * t)[None])
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)  # noqa: E731
    centers = [mel(20) + (mel(8000) - mel(20)) * (k + 1) / 81 for k in range(80)]
    expected = int(np.argmin([abs(c - mel(freq)) for c in centers]))
    peaks = feats[0].argmax(dim=1)
    assert set(peaks.tolist()) == {expected}
    assert float(feats[0, :, expected].mean() - feats[0].mean()) > 5.0  # well above the other bins


def test_silence_is_finite_floor():
    feats, _ = LogMelFbank()(torch.zeros(2, 8000))
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(feats, torch.full_like(feats, math.log(torch.finfo(torch.float32).eps)))


def test_short_input_and_bad_arguments():
    fb = LogMelFbank()
    feats, lengths = fb(torch.zeros(3, 100))
    assert feats.shape == (3, 0, 80) and lengths.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="lengths must lie"):
        fb(torch.zeros(1, 500), torch.tensor([600]))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        fb(torch.zeros(1, 2, 500))
