"""The plan of one utterance: phrases, pauses and syllables ([onset] vowel [coda]) laid out in time with their
formant knots, noise and voicing spans, pitch accents and boundary tones. Every random draw that fixes the
length is made here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .base import SAMPLE_RATE
from .emotions import EmotionProfile, _utterance_profile
from .phonetics import (_CODA_KINDS, _CODA_P, _FRICATIVES, _LOCI, _NASALS, _ONSET_KINDS, _ONSET_P, _SCHWA, _STOPS,
                        _VOWEL_NAMES, _VOWEL_TABLE)
from .speakers import Speaker


@dataclass
class _Plan:
    n: int  # total samples
    sample_rate: int
    profile: EmotionProfile
    speaker: Speaker
    speech_start: float
    speech_end: float
    voiced: list = field(default_factory=list)  # (t0, t1, level_db, attack, release, nasal: bool)
    noise: list = field(default_factory=list)  # (t0, t1, level_db, attack, release, centre, bandwidth)
    aspiration: list = field(default_factory=list)  # (t0, t1, level_db, attack, release)
    knots: list = field(default_factory=list)  # (t, F1, F2, F3, F4)
    nasal_spans: list = field(default_factory=list)  # (t0, t1)
    phrases: list = field(default_factory=list)  # (t0, t1)
    accents: list = field(default_factory=list)  # (centre, width, semitones)
    boundaries: list = field(default_factory=list)  # (t0, t1, semitones)  # smooth step from t0 to t1
    creaks: list = field(default_factory=list)  # (t0, t1, amount)


def utterance_length(speaker: Speaker, emotion: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> int:
    """The number of samples :func:`~.render.synthesize_utterance` would return for the same arguments (consumes
    ``rng``)."""
    return _plan(speaker, emotion, rng, sample_rate).n


def _vowel_target(speaker: Speaker, profile: EmotionProfile, v: int, rng: np.random.Generator) -> np.ndarray:
    f = _VOWEL_TABLE[v].copy()
    f[0] *= speaker.vowel_shift[v][0]
    f[1] *= speaker.vowel_shift[v][1]
    f = f + profile.centralise * (_SCHWA - f)
    f[0] *= profile.f1
    f[1] *= profile.f2
    f *= rng.normal(1.0, 0.025, size=4)  # token-to-token variation
    return f * speaker.formant_scale


def _locus(speaker: Speaker, place: str, vowel: np.ndarray) -> np.ndarray:
    loc = _LOCI[place]
    if loc[0] is None:
        return vowel.copy()
    out = vowel.copy()
    s = speaker.formant_scale
    out[0] = loc[0] * s
    out[1] = 0.55 * loc[1] * s + 0.45 * vowel[1]  # locus equation: the transition goes part of the way
    out[2] = 0.6 * loc[2] * s + 0.4 * vowel[2]
    return out


def _boundary_tone(plan: _Plan, tv0: float, tv1: float, cdur: float, rise: bool) -> None:
    """A phrase-final rise or fall (with creak when the emotion has it) on the syllable whose vowel is tv0..tv1."""
    p, vdur = plan.profile, tv1 - tv0
    if rise:
        plan.boundaries.append((tv0 + 0.3 * vdur, tv1 + cdur, 0.8 * p.range_st + 1.0))
    else:
        plan.boundaries.append((tv0, tv1 + cdur, -p.final_fall_st * plan.speaker.pitch_range ** 0.5))
        if p.creak > 0.05:
            plan.creaks.append((tv1 - 0.45 * vdur, tv1 + cdur, p.creak))


def _plan(speaker: Speaker, emotion: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> _Plan:
    profile, _ = _utterance_profile(speaker, emotion, rng)
    total = float(rng.uniform(1.5, 4.0))
    lead = float(rng.uniform(0.05, 0.35))
    trail = float(rng.uniform(0.05, 0.35))
    n = int(round(total * sample_rate))
    end_budget = total - trail
    plan = _Plan(n=n, sample_rate=sample_rate, profile=profile, speaker=speaker, speech_start=lead, speech_end=lead)

    dur_scale = speaker.tempo * profile.duration
    cons_scale = dur_scale ** 0.6  # consonants stretch less than vowels
    t = lead
    prev_vowel: np.ndarray | None = None
    syllables_done = 0
    finished = False
    while not finished:
        phrase_len = max(1, int(round(rng.normal(profile.phrase_len, 1.2))))
        phrase_t0 = t
        for k in range(phrase_len):
            # ---- draw the syllable
            onset = _ONSET_KINDS[rng.choice(len(_ONSET_KINDS), p=_ONSET_P)]
            coda = _CODA_KINDS[rng.choice(len(_CODA_KINDS), p=_CODA_P)]
            v = int(rng.integers(len(_VOWEL_NAMES)))
            stressed = bool(rng.random() < profile.accent_prob)
            final = k == phrase_len - 1
            vdur = 0.125 * dur_scale * float(rng.lognormal(0.0, 0.18)) * (1.3 if stressed else 1.0)
            if final:
                vdur *= 1.35
            vowel = _vowel_target(speaker, profile, v, rng)
            level = float(rng.normal(0.0, profile.level_sd_db)) + (profile.accent_db if stressed else 0.0)
            level -= 1.2 * (t - phrase_t0)  # energy declination within the phrase
            if final:
                level -= 2.0
            obstruent = level - 0.3 * profile.level_db  # vocal effort raises vowels more than obstruents (dB)
            onset_detail = None
            if onset == "fric":
                name = ("s", "sh", "f")[int(rng.integers(3))]
                odur = float(rng.uniform(0.07, 0.11)) * cons_scale
                onset_detail = name
            elif onset == "stop":
                name = ("p", "t", "k")[int(rng.integers(3))]
                closure = float(rng.uniform(0.035, 0.065)) * cons_scale
                vot = float(rng.uniform(0.02, 0.05)) * cons_scale
                odur = closure + 0.012 + vot
                onset_detail = (name, closure, vot)
            elif onset == "nasal":
                name = ("m", "n")[int(rng.integers(2))]
                odur = float(rng.uniform(0.05, 0.08)) * cons_scale
                onset_detail = name
            elif onset == "h":
                odur = float(rng.uniform(0.05, 0.08)) * cons_scale
            else:
                odur = 0.0
            if coda == "nasal":
                coda_name = ("m", "n")[int(rng.integers(2))]
                cdur = float(rng.uniform(0.05, 0.08)) * cons_scale
            elif coda == "fric":
                coda_name = "s"
                cdur = float(rng.uniform(0.07, 0.1)) * cons_scale
            else:
                coda_name, cdur = None, 0.0
            accent_amp = float(rng.uniform(0.55, 1.0)) * profile.range_st * speaker.pitch_range
            micro = float(rng.uniform(0.5, 1.2))
            rise = bool(rng.random() < profile.rise_prob)
            syl_dur = odur + vdur + cdur
            if t + syl_dur > end_budget and syllables_done > 0:
                finished = True
                if k > 0:  # the utterance ends inside a phrase: its last syllable still gets the boundary tone
                    _boundary_tone(plan, *last)
                break
            # ---- lay it out
            t0 = t
            if onset == "fric":
                place, fc, bw, fdb = _FRICATIVES[onset_detail]
                fc *= speaker.formant_scale
                plan.noise.append((t0, t0 + odur, obstruent + fdb, 0.02, 0.012, fc, bw))
                locus = _locus(speaker, place, vowel)
                plan.knots.append((t0, *locus))
            elif onset == "stop":
                name, closure, vot = onset_detail
                place, fc, bw = _STOPS[name]
                tb = t0 + closure
                plan.noise.append((tb, tb + 0.012, obstruent - 4.0, 0.001, 0.008, fc * speaker.formant_scale, bw))
                plan.aspiration.append((tb + 0.006, tb + 0.012 + vot, obstruent - 10.0, 0.004, 0.012))
                locus = _locus(speaker, place, vowel)
                plan.knots.append((tb, *locus))
            elif onset == "nasal":
                place, murmur = _NASALS[onset_detail]
                m = np.array([*murmur, 3300.0]) * speaker.formant_scale
                plan.voiced.append((t0, t0 + odur + 0.01, level - 9.0, 0.02, 0.01, True))
                plan.nasal_spans.append((t0, t0 + odur))
                plan.knots.append((t0, *m))
                plan.knots.append((t0 + odur, *m))
            elif onset == "h":
                plan.aspiration.append((t0, t0 + odur + 0.01, obstruent - 12.0, 0.02, 0.01))
                plan.knots.append((t0, *vowel))
            tv0 = t0 + odur
            tv1 = tv0 + vdur
            glide = min(0.045, 0.3 * vdur)
            if onset == "none" and prev_vowel is not None and tv0 - plan.speech_end < 0.05:
                plan.knots.append((tv0, *(0.5 * (prev_vowel + vowel))))
            plan.knots.append((tv0 + glide, *vowel))
            plan.knots.append((tv1 - glide, *vowel))
            attack = 0.025 if onset in ("none", "h") else 0.012
            plan.voiced.append((tv0, tv1 + 0.005, level, attack, 0.03 if coda == "none" else 0.015, False))
            if coda == "nasal":
                place, murmur = _NASALS[coda_name]
                m = np.array([*murmur, 3300.0]) * speaker.formant_scale
                plan.knots.append((tv1, *_locus(speaker, place, vowel)))
                plan.knots.append((tv1 + 0.015, *m))
                plan.knots.append((tv1 + cdur, *m))
                plan.voiced.append((tv1 - 0.01, tv1 + cdur, level - 10.0, 0.015, 0.03, True))
                plan.nasal_spans.append((tv1, tv1 + cdur))
            elif coda == "fric":
                place, fc, bw, fdb = _FRICATIVES[coda_name]
                plan.knots.append((tv1 + 0.02, *_locus(speaker, place, vowel)))
                plan.noise.append((tv1 - 0.01, tv1 + cdur, obstruent + fdb - 3.0, 0.02, 0.03,
                                   fc * speaker.formant_scale, bw))
            # ---- prosody of the syllable
            vc = 0.5 * (tv0 + tv1)
            if stressed:
                plan.accents.append((vc + profile.accent_shift * vdur, profile.accent_width * dur_scale ** 0.5,
                                     accent_amp))
            else:
                plan.accents.append((vc, 0.05, 0.15 * accent_amp * (rng.random() - 0.3)))
            if onset in ("fric", "stop"):  # micro-prosody: F0 starts higher after a voiceless obstruent
                plan.accents.append((tv0, 0.015, micro))
            last = (tv0, tv1, cdur, rise)
            if final:
                _boundary_tone(plan, *last)
            prev_vowel = vowel
            t = t0 + syl_dur
            plan.speech_end = t
            syllables_done += 1
        plan.phrases.append((phrase_t0, t))
        if finished:
            break
        pause = float(np.clip(rng.normal(profile.pause_s, 0.35 * profile.pause_s), 0.05, 1.0))
        if t + pause >= end_budget - 0.15:
            break
        t += pause
    # a first syllable longer than the budget (very slow speakers) may overrun: keep a short tail of silence
    plan.n = max(plan.n, int(math.ceil((plan.speech_end + 0.05) * sample_rate)))
    return plan
