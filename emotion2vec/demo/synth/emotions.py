"""Emotions as prosody and voice quality: each emotion's profile at full intensity, the per-utterance draw
(intensity, within-class noise), and the arousal / valence an utterance was made with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import EMOTIONS, SynthError, utterance_rng
from .speakers import Speaker


@dataclass(frozen=True)
class EmotionProfile:
    """Prosodic / voice-quality settings of one emotion at full intensity (neutral = the speaker's baseline).

    An utterance interpolates between ``neutral`` and its emotion by a random intensity, then adds noise."""

    f0_st: float  # mean F0 shift (semitones)
    range_st: float  # pitch-accent excursion (semitones)
    accent_prob: float  # probability that a syllable is stressed / accented
    accent_width: float  # accent width (s): small = sharp, large = broad
    accent_shift: float  # accent peak position relative to the vowel centre (fraction of the vowel)
    declination: float  # F0 declination within a phrase (semitones / s)
    rise_prob: float  # probability of a final rise at the end of a phrase (else a fall)
    final_fall_st: float  # size of a final fall (semitones)
    creak: float  # phrase-final creak amount (0..1)
    tremor_st: float  # 5-7 Hz F0 tremor (semitones)
    duration: float  # syllable duration multiplier (>1 = slower)
    phrase_len: float  # mean syllables per phrase
    pause_s: float  # mean pause duration (s)
    level_db: float  # vocal effort (dB)
    accent_db: float  # extra level of stressed syllables (dB): energy variability
    level_sd_db: float  # syllable-to-syllable level variability (dB)
    open_quotient: float  # change of the open quotient
    speed_quotient: float  # glottal opening/closing speed ratio (higher = sharper closure = tenser)
    aspiration_db: float  # change of the aspiration-noise level (dB)
    tilt_db: float  # change of the spectral tilt (dB / octave)
    jitter: float  # jitter multiplier
    shimmer: float  # shimmer multiplier
    f1: float  # F1 multiplier
    f2: float  # F2 multiplier
    centralise: float  # vowel reduction towards schwa (0..1)
    bandwidth: float  # bandwidth multiplier


PROFILES: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile(
        f0_st=0.0, range_st=3.0, accent_prob=0.30, accent_width=0.075, accent_shift=0.0, declination=-2.0,
        rise_prob=0.10, final_fall_st=2.5, creak=0.25, tremor_st=0.0, duration=1.0, phrase_len=5.0, pause_s=0.25,
        level_db=0.0, accent_db=3.0, level_sd_db=1.5, open_quotient=0.0, speed_quotient=2.2, aspiration_db=0.0,
        tilt_db=0.0, jitter=1.0, shimmer=1.0, f1=1.0, f2=1.0, centralise=0.0, bandwidth=1.0),
    "angry": EmotionProfile(
        f0_st=3.5, range_st=5.5, accent_prob=0.55, accent_width=0.045, accent_shift=-0.25, declination=-3.0,
        rise_prob=0.03, final_fall_st=4.5, creak=0.0, tremor_st=0.0, duration=0.86, phrase_len=5.0, pause_s=0.15,
        level_db=6.0, accent_db=6.0, level_sd_db=2.5, open_quotient=-0.14, speed_quotient=3.4, aspiration_db=-6.0,
        tilt_db=3.0, jitter=1.2, shimmer=1.6, f1=1.10, f2=1.0, centralise=0.0, bandwidth=0.9),
    "happy": EmotionProfile(
        f0_st=4.5, range_st=7.5, accent_prob=0.45, accent_width=0.11, accent_shift=0.15, declination=-1.0,
        rise_prob=0.40, final_fall_st=3.0, creak=0.0, tremor_st=0.0, duration=0.9, phrase_len=6.0, pause_s=0.2,
        level_db=3.0, accent_db=4.0, level_sd_db=2.0, open_quotient=-0.05, speed_quotient=2.7, aspiration_db=-2.0,
        tilt_db=1.5, jitter=0.9, shimmer=1.0, f1=1.05, f2=1.07, centralise=0.0, bandwidth=1.0),
    "sad": EmotionProfile(
        f0_st=-2.0, range_st=1.3, accent_prob=0.15, accent_width=0.12, accent_shift=0.1, declination=-1.5,
        rise_prob=0.02, final_fall_st=2.0, creak=0.7, tremor_st=0.0, duration=1.32, phrase_len=3.0, pause_s=0.45,
        level_db=-5.0, accent_db=1.0, level_sd_db=1.0, open_quotient=0.08, speed_quotient=1.6, aspiration_db=6.0,
        tilt_db=-2.0, jitter=1.5, shimmer=1.3, f1=0.93, f2=0.97, centralise=0.3, bandwidth=1.25),
    "fear": EmotionProfile(
        f0_st=6.0, range_st=3.5, accent_prob=0.30, accent_width=0.06, accent_shift=0.0, declination=-0.5,
        rise_prob=0.30, final_fall_st=1.5, creak=0.0, tremor_st=0.8, duration=0.82, phrase_len=3.0, pause_s=0.3,
        level_db=1.0, accent_db=2.0, level_sd_db=2.5, open_quotient=0.05, speed_quotient=2.0, aspiration_db=4.0,
        tilt_db=-1.0, jitter=2.2, shimmer=1.5, f1=1.0, f2=1.03, centralise=0.1, bandwidth=1.1),
}
assert set(PROFILES) == set(EMOTIONS)

# per-utterance noise added after interpolation (standard deviations, same fields): within-class variability
_PROFILE_NOISE = EmotionProfile(
    f0_st=1.3, range_st=1.0, accent_prob=0.06, accent_width=0.01, accent_shift=0.1, declination=0.6,
    rise_prob=0.05, final_fall_st=0.8, creak=0.1, tremor_st=0.1, duration=0.08, phrase_len=0.8, pause_s=0.05,
    level_db=2.0, accent_db=1.0, level_sd_db=0.3, open_quotient=0.03, speed_quotient=0.25, aspiration_db=2.0,
    tilt_db=0.8, jitter=0.15, shimmer=0.15, f1=0.02, f2=0.02, centralise=0.05, bandwidth=0.05)

_PROFILE_BOUNDS = {
    "range_st": (0.3, 14.0), "accent_prob": (0.03, 0.9), "accent_width": (0.025, 0.2), "rise_prob": (0.0, 0.9),
    "final_fall_st": (0.0, 8.0), "creak": (0.0, 1.0), "tremor_st": (0.0, 2.0), "duration": (0.65, 1.7),
    "phrase_len": (1.5, 9.0), "pause_s": (0.06, 0.8), "accent_db": (0.0, 10.0), "level_sd_db": (0.2, 4.0),
    "speed_quotient": (1.2, 4.5), "jitter": (0.3, 4.0), "shimmer": (0.3, 3.0), "f1": (0.8, 1.25), "f2": (0.85, 1.2),
    "centralise": (0.0, 0.6), "bandwidth": (0.7, 1.6),
}
_PROFILE_FIELDS = tuple(EmotionProfile.__dataclass_fields__)


def _utterance_profile(speaker: Speaker, emotion: str, rng: np.random.Generator) -> tuple[EmotionProfile, float]:
    """Interpolate neutral -> ``emotion`` by a random intensity (times the speaker's expressiveness), add noise."""
    if emotion not in PROFILES:
        raise SynthError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    intensity = 0.0 if emotion == "neutral" else float(speaker.expressiveness * rng.uniform(0.35, 1.15))
    neutral, target = PROFILES["neutral"], PROFILES[emotion]
    noise = rng.standard_normal(len(_PROFILE_FIELDS))
    values = {}
    for name, z in zip(_PROFILE_FIELDS, noise):
        a, b, sd = getattr(neutral, name), getattr(target, name), getattr(_PROFILE_NOISE, name)
        v = a + intensity * (b - a) + sd * float(z)
        lo, hi = _PROFILE_BOUNDS.get(name, (-math.inf, math.inf))
        values[name] = min(max(v, lo), hi)
    return EmotionProfile(**values), intensity


#: (arousal, valence) of each emotion at full intensity on [0, 1] (the circumplex; neutral at the centre)
CIRCUMPLEX = {"neutral": (0.5, 0.5), "angry": (0.9, 0.15), "happy": (0.75, 0.9), "sad": (0.15, 0.2),
              "fear": (0.85, 0.2)}
assert set(CIRCUMPLEX) == set(EMOTIONS)
#: the largest intensity an utterance can get (uniform(0.35, 1.15) x expressiveness <= 1.25)
_MAX_INTENSITY = 1.15 * 1.25


def utterance_dimensions(speaker: Speaker, emotion: str, seed: int, index: int) -> tuple[float, float]:
    """The (arousal, valence) an utterance was synthesised with: its emotion's :data:`CIRCUMPLEX` position, moved
    from the neutral centre in proportion to the utterance's emotion intensity (the same draw the synthesis makes,
    so louder, higher, faster renditions of an emotion lie further out). Both on [0, 1]."""
    _, intensity = _utterance_profile(speaker, emotion, utterance_rng(seed, speaker.id, emotion, index))
    scale = intensity / _MAX_INTENSITY
    return tuple(round(0.5 + (c - 0.5) * scale, 4) for c in CIRCUMPLEX[emotion])  # type: ignore[return-value]
