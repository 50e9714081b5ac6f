"""Synthetic speakers: the baselines (F0, vocal-tract length, voice quality, tempo, loudness, accent) every emotion
is expressed relative to."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .base import GENDERS, SynthError, _DOMAIN_SPEAKER
from .phonetics import _VOWEL_NAMES


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: the baseline every emotion is expressed relative to."""

    id: str
    gender: str  # "M" or "F"
    f0: float  # baseline F0 (Hz)
    formant_scale: float  # inverse vocal-tract length: formants are multiplied by it
    open_quotient: float  # glottal open quotient (higher = breathier / laxer)
    breathiness_db: float  # aspiration-noise level relative to the voiced source (dB)
    tilt_db: float  # extra spectral tilt (dB / octave above 300 Hz); negative = darker
    jitter: float  # cycle-to-cycle F0 perturbation (fraction)
    shimmer: float  # cycle-to-cycle amplitude perturbation (fraction)
    tempo: float  # duration multiplier (>1 = slower habitual speaking rate)
    pitch_range: float  # multiplier of pitch excursions
    expressiveness: float  # multiplier of the emotion effects
    level_db: float  # habitual loudness offset (dB)
    bandwidth_scale: float  # formant bandwidth multiplier
    vowel_shift: tuple = field(default=(), repr=False)  # per-vowel (F1, F2) multipliers: an "accent"


def make_speaker(seed: int, index: int, prefix: str = "spk", domain: int = _DOMAIN_SPEAKER) -> Speaker:
    """Speaker ``index`` of the population of ``seed``; independent of how many speakers are made."""
    rng = np.random.default_rng(np.random.SeedSequence([domain, int(seed) & 0xFFFFFFFF, int(index)]))
    gender = GENDERS[index % 2]  # alternate: balanced genders in every prefix of the population
    male = gender == "M"
    u = rng.uniform
    f0 = math.exp(u(math.log(90.0), math.log(150.0))) if male else math.exp(u(math.log(165.0), math.log(260.0)))
    formant_scale = float(np.clip(rng.normal(1.0, 0.035), 0.92, 1.08) if male
                          else np.clip(rng.normal(1.15, 0.04), 1.06, 1.25))
    vowel_shift = tuple((round(float(a), 4), round(float(b), 4))
                        for a, b in np.clip(rng.normal(1.0, 0.05, size=(len(_VOWEL_NAMES), 2)), 0.88, 1.12))
    return Speaker(
        id=f"{prefix}{index:02d}",
        gender=gender,
        f0=round(f0, 2),
        formant_scale=round(formant_scale, 4),
        open_quotient=round(float(u(0.50, 0.62) if male else u(0.56, 0.70)), 3),
        breathiness_db=round(float(u(-30.0, -22.0) if male else u(-26.0, -18.0)), 2),
        tilt_db=round(float(u(-2.0, 1.0)), 2),
        jitter=round(float(u(0.003, 0.009)), 4),
        shimmer=round(float(u(0.02, 0.06)), 4),
        tempo=round(float(u(0.85, 1.18)), 3),
        pitch_range=round(float(u(0.7, 1.3)), 3),
        expressiveness=round(float(u(0.7, 1.25)), 3),
        level_db=round(float(rng.normal(0.0, 2.0)), 2),
        bandwidth_scale=round(float(u(0.85, 1.2)), 3),
        vowel_shift=vowel_shift,
    )


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """``n`` speakers ``spk00``.. with alternating genders (M, F, ...); ``make_speakers(k, s)`` is a prefix of
    ``make_speakers(n, s)``."""
    if n < 1:
        raise SynthError(f"need at least one speaker, got {n}")
    return [make_speaker(seed, i) for i in range(n)]
