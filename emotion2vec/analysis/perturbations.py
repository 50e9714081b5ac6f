"""The eight signal perturbations of Wagner et al.'s robustness tests, on 16 kHz mono float waveforms.

Each perturbation draws one value per utterance from its set (uniformly, seeded by :func:`utterance_rng`: the same
seed, perturbation and key always give the same draw, whatever else is selected or however it is batched) and
returns a new float32 array (the input is never changed). Definitions, for a waveform x of N samples at
fs = 16000 Hz:

``tone``          x + a sin(2 pi f n / fs + phi), f uniform in [5000, 7000] Hz, phi uniform in [0, 2 pi), a such
                  that the peak-SNR 20 log10(max|x| / max|tone|) (peaks over the samples) equals the drawn value:
                  40, 45 or 50 dB.
``append-zeros``  x followed by 100, 500 or 1000 zero samples.
``clip``          the k = round(q N) samples of largest magnitude clipped at the threshold they exceed: with |x|
                  sorted ascending as s_0..s_{N-1}, t = s_{N-k-1} and the output is min(max(x, -t), t);
                  q = 1, 0.2 or 0.3 % as published (the 1 % may be a typo for 0.1 %: override with
                  ``clip=0.1,0.2,0.3``).
``crop``          the first 100, 500 or 1000 samples removed (at most N - 400, so one 25 ms frame always stays).
``gain``          x 10^(g / 20) for g = -2, -1, +1 or +2 dB (no clipping: the waveform stays float).
``highpass``      first-order Butterworth high-pass (``scipy.signal.butter(1, fc, "highpass", fs=16000)``, applied
                  causally with ``lfilter``) at fc = 50, 100 or 150 Hz: -3.01 dB at fc.
``lowpass``       the same low-pass at fc = 7500, 7000 or 6500 Hz.
``white-noise``   x + s w, w standard normal, s such that the RMS-SNR 20 log10(rms(x) / rms(s w)) (over the samples)
                  equals the drawn value: 35, 40 or 45 dB.

A silent waveform (max|x| = 0) is returned unchanged by ``tone`` and ``white-noise`` (no reference level).
Every value set can be replaced (``NAME=V,V,...``, :func:`parse_overrides`); values outside a sane range
(:attr:`Perturbation.low` .. :attr:`Perturbation.high`) are refused by name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from ..io.audio import MIN_SAMPLES, SAMPLE_RATE
from . import AnalysisError

__all__ = ["Perturbation", "PERTURBATIONS", "additive_tone", "append_zeros", "clip", "crop_beginning", "gain",
           "highpass", "lowpass", "white_noise", "utterance_rng", "parse_overrides", "select_perturbations"]

TONE_BAND = (5000.0, 7000.0)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def additive_tone(x: np.ndarray, psnr_db: float, rng: np.random.Generator, band: tuple[float, float] = TONE_BAND,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """x plus a sinusoid of random frequency in ``band`` and random phase at peak-SNR ``psnr_db``."""
    x = np.asarray(x, dtype=np.float64)
    frequency = rng.uniform(*band)
    phase = rng.uniform(0.0, 2 * np.pi)
    peak = np.abs(x).max() if len(x) else 0.0
    if peak == 0:
        return _f32(x)
    tone = np.sin(2 * np.pi * frequency * np.arange(len(x)) / sample_rate + phase)
    tone *= peak / (np.abs(tone).max() * 10 ** (psnr_db / 20))
    return _f32(x + tone)


def append_zeros(x: np.ndarray, samples: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """x followed by ``samples`` zeros."""
    return _f32(np.concatenate([np.asarray(x, dtype=np.float32), np.zeros(int(samples), dtype=np.float32)]))


def clip(x: np.ndarray, percent: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The round(percent / 100 * N) samples of largest magnitude clipped at the largest magnitude below them."""
    x = np.asarray(x, dtype=np.float32)
    k = int(round(percent / 100 * len(x)))
    if k <= 0 or k >= len(x):
        return x.copy() if k <= 0 else np.zeros_like(x)
    threshold = np.partition(np.abs(x), len(x) - k - 1)[len(x) - k - 1]
    return np.clip(x, -threshold, threshold)


def crop_beginning(x: np.ndarray, samples: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """x without its first ``samples`` samples (at most N - 400: one frame always stays)."""
    x = np.asarray(x, dtype=np.float32)
    n = min(int(samples), max(len(x) - MIN_SAMPLES, 0))
    return x[n:].copy()


def gain(x: np.ndarray, db: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """x scaled by ``db`` decibels."""
    return _f32(np.asarray(x, dtype=np.float64) * 10 ** (db / 20))


def _butterworth(x: np.ndarray, cutoff: float, kind: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    from scipy.signal import butter, lfilter

    b, a = butter(1, cutoff, kind, fs=sample_rate)
    return _f32(lfilter(b, a, np.asarray(x, dtype=np.float64)))


def highpass(x: np.ndarray, cutoff: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """First-order Butterworth high-pass at ``cutoff`` Hz (-3 dB there)."""
    return _butterworth(x, cutoff, "highpass")


def lowpass(x: np.ndarray, cutoff: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """First-order Butterworth low-pass at ``cutoff`` Hz (-3 dB there)."""
    return _butterworth(x, cutoff, "lowpass")


def white_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """x plus Gaussian white noise at RMS-SNR ``snr_db``."""
    x = np.asarray(x, dtype=np.float64)
    rms = np.sqrt(np.mean(x * x)) if len(x) else 0.0
    if rms == 0:
        return _f32(x)
    noise = rng.standard_normal(len(x))
    noise *= rms / (np.sqrt(np.mean(noise * noise)) * 10 ** (snr_db / 20))
    return _f32(x + noise)


@dataclass(frozen=True)
class Perturbation:
    """A named waveform change with its value set; ``apply(x, value, rng)`` -> new float32 waveform."""

    name: str
    values: tuple[float, ...]
    unit: str
    low: float
    high: float
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    integer: bool = False

    def __post_init__(self):
        if not self.values:
            raise AnalysisError(f"perturbation {self.name}: no values")
        for v in self.values:
            if not (np.isfinite(v) and self.low <= v <= self.high) or (self.integer and v != int(v)):
                raise AnalysisError(f"perturbation {self.name}: value {v:g} {self.unit} is outside the sane range "
                                    f"{self.low:g}..{self.high:g} {self.unit}"
                                    + (" (whole samples)" if self.integer else ""))

    def with_values(self, values: Sequence[float]) -> "Perturbation":
        """The same perturbation drawing from ``values`` (range-checked)."""
        return replace(self, values=tuple(float(v) for v in values))

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Draw a value with ``rng`` and apply it. -> (perturbed waveform, value)."""
        value = self.values[int(rng.integers(len(self.values)))]
        return self.apply(x, value, rng), value


#: the published value sets, in the order of Wagner et al.'s table
PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("tone", (40.0, 45.0, 50.0), "dB peak-SNR", 10.0, 100.0, additive_tone),
    Perturbation("append-zeros", (100.0, 500.0, 1000.0), "samples", 1, 10 * SAMPLE_RATE, append_zeros, True),
    Perturbation("clip", (1.0, 0.2, 0.3), "% of samples", 0.001, 10.0, clip),
    Perturbation("crop", (100.0, 500.0, 1000.0), "samples", 1, 10 * SAMPLE_RATE, crop_beginning, True),
    Perturbation("gain", (-2.0, -1.0, 1.0, 2.0), "dB", -20.0, 20.0, gain),
    Perturbation("highpass", (50.0, 100.0, 150.0), "Hz", 1.0, 1000.0, highpass),
    Perturbation("lowpass", (7500.0, 7000.0, 6500.0), "Hz", 1000.0, SAMPLE_RATE / 2 - 1, lowpass),
    Perturbation("white-noise", (35.0, 40.0, 45.0), "dB RMS-SNR", 0.0, 100.0, white_noise),
)}


def utterance_rng(seed: int, perturbation: str, key: str) -> np.random.Generator:
    """The generator of one perturbation of one utterance (independent of order and of the other selections)."""
    return np.random.default_rng([int(seed), zlib.crc32(perturbation.encode()), zlib.crc32(key.encode())])


def parse_overrides(items: Sequence[str] | None) -> dict[str, tuple[float, ...]]:
    """``["clip=0.1,0.2,0.3", "gain=-3,3"]`` -> {name: values}; unknown names and non-numbers are refused."""
    out: dict[str, tuple[float, ...]] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in PERTURBATIONS:
            raise AnalysisError(f"--values {item!r}: expected NAME=V,V,... with NAME one of {', '.join(PERTURBATIONS)}")
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise AnalysisError(f"--values {item!r}: the values must be numbers") from None
        if not values:
            raise AnalysisError(f"--values {item!r}: no values")
        out[name] = values
    return out


def select_perturbations(names: Sequence[str] | None = None,
                         overrides: Mapping[str, Sequence[float]] | None = None) -> list[Perturbation]:
    """The perturbations ``names`` (default: all eight, in table order) with ``overrides`` applied (range-checked)."""
    names = list(names) if names else list(PERTURBATIONS)
    unknown = [n for n in list(names) + list(overrides or {}) if n not in PERTURBATIONS]
    if unknown:
        raise AnalysisError(f"unknown perturbation(s) {', '.join(unknown)}; choose from {', '.join(PERTURBATIONS)}")
    if len(set(names)) != len(names):
        raise AnalysisError(f"perturbations listed twice: {names}")
    unused = [n for n in overrides or {} if n not in names]
    if unused:
        raise AnalysisError(f"--values {', '.join(unused)}: not among the selected perturbations ({', '.join(names)})")
    out = []
    for name in names:
        p = PERTURBATIONS[name]
        out.append(p.with_values(overrides[name]) if overrides and name in overrides else p)
    return out
