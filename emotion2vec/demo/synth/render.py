"""An utterance from its plan: sources through the filters, then the recording channel (microphone colouring,
level, gain, background noise at a random SNR)."""

from __future__ import annotations

import math

import numpy as np

from .base import SAMPLE_RATE, SynthError
from .filters import _HOP, _WIN, _active_frames, _istft, _noise_track, _resonances, _stft
from .phonetics import _BANDWIDTHS, _SCHWA
from .plan import _Plan, _plan
from .source import _db, _f0_contour, _glottal_source, _inside, _ramps
from .speakers import Speaker


def _render(plan: _Plan, rng: np.random.Generator) -> np.ndarray:
    sr, n, p, spk = plan.sample_rate, plan.n, plan.profile, plan.speaker
    # ---- excitation (time domain)
    f0c, creakc = _f0_contour(plan, rng)
    ts = np.arange(n) / sr
    tc = np.arange(f0c.size) * 0.001
    f0 = np.interp(ts, tc, f0c)
    creak = np.interp(ts, tc, creakc)
    pulses, open_phase = _glottal_source(f0, creak, plan, rng)
    env_v = _ramps(n, sr, plan.voiced)
    env_n = _ramps(n, sr, plan.noise)
    env_h = _ramps(n, sr, plan.aspiration)
    breath = _db(spk.breathiness_db + p.aspiration_db)
    asp_noise = rng.standard_normal(n, dtype=np.float32)
    fric_noise = rng.standard_normal(n, dtype=np.float32)
    # aspiration: breathy noise pulsed by the glottal open phase + /h/ and stop aspiration
    voiced_src = pulses * env_v + asp_noise * (env_v * np.float32(breath * 3.0) * (0.25 + open_phase) + 0.7 * env_h)
    fric_src = fric_noise * env_n

    # ---- filters (frame domain), on the frames where the sources are active only
    pad = _WIN // 2
    n_pad = n + 2 * pad
    n_frames = (n_pad - _WIN) // _HOP + 1
    frame_t = (np.arange(n_frames) * _HOP) / sr  # frame centres in utterance time
    freqs = np.fft.rfftfreq(_WIN, 1.0 / sr).astype(np.float32)

    # recording channel: a random smooth microphone/room colouring (tilt and two broad bumps), per utterance
    oct_ = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    ch_db = float(rng.uniform(-2.5, 2.5)) * oct_
    for _ in range(2):
        centre, width, gain = np.log2(rng.uniform(200.0, 6000.0) / 1000.0), rng.uniform(0.5, 1.5), rng.uniform(-5, 5)
        ch_db = ch_db + gain * np.exp(-0.5 * ((oct_ - centre) / width) ** 2)
    channel = (10.0 ** (ch_db / 20.0)).astype(np.float32)

    spec = np.zeros((n_frames, freqs.size), dtype=np.complex64)
    # voiced path: cascade formants x tilt x high-frequency roll-off x nasal low-pass x channel
    act_v = _active_frames(env_v + env_h, n_frames)
    if act_v.size:
        knots = np.array(sorted(plan.knots, key=lambda k: k[0])) if plan.knots else np.array([[0.0, *_SCHWA]])
        ft = frame_t[act_v]
        formants = np.stack([np.interp(ft, knots[:, 0], knots[:, 1 + k]) for k in range(4)], axis=1)
        bw = _BANDWIDTHS[None, :] * spk.bandwidth_scale * p.bandwidth * (1.0 + 0.3 * (formants[:, :1] < 350.0))
        h_v = _resonances(freqs, formants, np.broadcast_to(bw, formants.shape))
        tilt = spk.tilt_db + p.tilt_db
        static = 10.0 ** (tilt * np.log2(np.maximum(freqs, 300.0) / 300.0) / 20.0)
        static = static / (1.0 + (freqs / 6500.0) ** 8)  # the voice has little energy above ~6 kHz
        h_v *= (static * channel).astype(np.float32)[None, :]
        if plan.nasal_spans:
            nasal = _inside(ft, plan.nasal_spans)[:, None]
            lowpass = (1.0 / np.sqrt(1.0 + (freqs / 450.0) ** 4)).astype(np.float32)[None, :]
            h_v *= 1.0 - nasal + nasal * lowpass
        spec[act_v] = _stft(np.pad(voiced_src, pad), act_v) * h_v
    # frication path: place-dependent band-pass, high-passed, x channel
    act_f = _active_frames(env_n, n_frames)
    if act_f.size:
        ft = frame_t[act_f]
        fc = np.interp(ft, *_noise_track(plan, 5)).astype(np.float32)[:, None]
        fb = np.interp(ft, *_noise_track(plan, 6)).astype(np.float32)[:, None]
        h_f = 1.0 / np.sqrt(1.0 + ((freqs[None, :] - fc) / (0.5 * fb)) ** 2)
        h_f *= (3.0 * channel / (1.0 + (900.0 / np.maximum(freqs, 1.0)) ** 4)).astype(np.float32)[None, :]
        spec[act_f] += _stft(np.pad(fric_src, pad), act_f) * h_f
    speech = _istft(spec, n_pad)[pad:pad + n]

    # ---- level, recording gain, background noise, limiter
    s0, s1 = int(plan.speech_start * sr), max(int(plan.speech_start * sr) + 1, int(plan.speech_end * sr))
    rms = float(np.sqrt(np.mean(speech[s0:s1].astype(np.float64) ** 2)) + 1e-12)
    level_db = -30.0 + spk.level_db + p.level_db + float(rng.normal(0.0, 1.0))
    gain_db = float(rng.uniform(-6.0, 6.0))  # recording gain: absolute level is only weakly informative
    speech *= np.float32(_db(level_db + gain_db) / rms)
    snr = float(rng.uniform(15.0, 40.0))
    # background: white noise mixed with moving-average (low-passed) noise, random colour
    length = int(rng.integers(4, 40))
    mix = float(rng.uniform(0.0, 0.5 * np.pi))
    w = rng.standard_normal(2 * n + length, dtype=np.float32)
    c = np.cumsum(w[n:].astype(np.float64))
    low = ((c[length:] - c[:-length]) / math.sqrt(length)).astype(np.float32)[:n]
    bg = math.cos(mix) * w[:n] + math.sin(mix) * low
    bg *= np.float32(_db(level_db + gain_db - snr) / (np.sqrt(np.mean(bg.astype(np.float64) ** 2)) + 1e-12))
    out = speech + bg
    peak = float(np.max(np.abs(out)))
    if peak > 0.98:
        out *= np.float32(0.98 / peak)
    return out.astype(np.float32)


def synthesize_utterance(speaker: Speaker, emotion: str, rng: np.random.Generator,
                         sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One utterance of ``speaker`` in ``emotion``: float32 mono in [-1, 1], 1.5-4 s at ``sample_rate``."""
    if sample_rate < 8000:
        raise SynthError(f"sample_rate must be >= 8000, got {sample_rate}")
    plan = _plan(speaker, emotion, rng, sample_rate)
    return _render(plan, rng)
