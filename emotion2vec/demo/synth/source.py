"""The sources: the F0 contour (declination, accents, boundary tones, wander, tremor, creak), the Rosenberg
glottal pulse train with jitter and shimmer, and the ramped envelopes of voicing and noise."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .plan import _Plan


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


def _ramps(n: int, sr: int, spans: Sequence[tuple]) -> np.ndarray:
    """Sum of raised-cosine-ramped windows ``(t0, t1, level_db, attack, release, ...)`` as a per-sample envelope."""
    env = np.zeros(n, dtype=np.float32)
    for span in spans:
        t0, t1, level_db, attack, release = span[:5]
        s0, s1 = max(0, int(round(t0 * sr))), min(n, int(round(t1 * sr)))
        if s1 - s0 < 2:
            continue
        length = s1 - s0
        a = max(1, min(int(attack * sr), length // 2))
        r = max(1, min(int(release * sr), length - a))
        w = np.ones(length, dtype=np.float32)
        w[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a, dtype=np.float32) + 0.5) / a)
        w[length - r:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r, dtype=np.float32) + 0.5) / r)
        env[s0:s1] += np.float32(_db(level_db)) * w
    return env


def _inside(times: np.ndarray, spans: Sequence[tuple]) -> np.ndarray:
    """1.0 where ``times`` fall inside one of the ``(t0, t1, ...)`` spans, else 0.0."""
    out = np.zeros(times.shape, dtype=np.float32)
    for span in spans:
        out[(times >= span[0]) & (times < span[1])] = 1.0
    return out


def _f0_contour(plan: _Plan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz) on a 1 ms control grid and the creak weight on the same grid."""
    p, spk = plan.profile, plan.speaker
    dt = 0.001
    tc = np.arange(int(plan.n / plan.sample_rate / dt) + 2) * dt
    st = np.full(tc.shape, p.f0_st + float(rng.normal(0.0, 0.6)))  # session-to-session variation of the level
    for t0, t1 in plan.phrases:
        sel = (tc >= t0 - 0.05) & (tc < t1 + 0.05)
        st[sel] += float(rng.normal(1.0, 0.5)) + p.declination * (tc[sel] - t0)
    for c, w, a in plan.accents:
        lo, hi = np.searchsorted(tc, [c - 4 * w, c + 4 * w])
        st[lo:hi] += a * np.exp(-0.5 * ((tc[lo:hi] - c) / w) ** 2)
    for t0, t1, a in plan.boundaries:
        x = np.clip((tc - t0) / max(t1 - t0, 1e-3), 0.0, 1.0)
        lo = np.searchsorted(tc, t0)
        st[lo:] += a * (x[lo:] * x[lo:] * (3 - 2 * x[lo:]))
        # the step applies until the next phrase resets it: cancel after the phrase
        hi = np.searchsorted(tc, t1 + 0.02)
        st[hi:] -= a
    # slow wander
    k = max(2, int(tc[-1] / 0.2) + 2)
    st += np.interp(tc, np.arange(k) * 0.2, rng.normal(0.0, 0.35, size=k))
    if p.tremor_st > 0.02:
        st += p.tremor_st * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * tc + rng.uniform(0, 2 * np.pi))
    creak = np.zeros_like(tc)
    for t0, t1, amount in plan.creaks:
        x = np.clip((tc - t0) / max(t1 - t0, 1e-3), 0.0, 1.0)
        sel = (tc >= t0) & (tc < t1 + 0.02)
        creak[sel] = np.maximum(creak[sel], amount * x[sel])
    f0 = spk.f0 * 2.0 ** (st / 12.0) * (1.0 - 0.4 * creak)
    return np.clip(f0, 55.0, 600.0), creak


def _glottal_source(f0: np.ndarray, creak: np.ndarray, plan: _Plan, rng: np.random.Generator):
    """Differentiated Rosenberg pulses with per-period jitter/shimmer; also the open-phase indicator."""
    p, spk, sr = plan.profile, plan.speaker, plan.sample_rate
    jit = spk.jitter * p.jitter * (1.0 + 5.0 * creak)
    phase0 = np.cumsum(f0 / sr)
    periods = int(phase0[-1]) + 3
    r = rng.standard_normal(periods)
    f0j = f0 * (1.0 + np.clip(jit * r[phase0.astype(np.int64)], -0.3, 0.3))
    phase = np.cumsum(f0j / sr)
    idx = phase.astype(np.int64)
    frac = (phase - idx).astype(np.float32)
    oq = float(np.clip(spk.open_quotient + p.open_quotient, 0.3, 0.9))
    sq = p.speed_quotient
    tp, tn = oq * sq / (1.0 + sq), oq / (1.0 + sq)
    # Rosenberg pulse: opening 0.5 - 0.5 cos(pi t / tp), closing cos(pi/2 (t - tp) / tn), then closed
    opening = frac < tp
    c = np.cos(np.where(opening, np.float32(np.pi / tp) * frac,
                        np.minimum(np.float32(0.5 * np.pi / tn) * (frac - np.float32(tp)), np.float32(0.5 * np.pi))))
    g = np.where(opening, 0.5 - 0.5 * c, c)  # the closing cosine reaches 0 at tp + tn and stays there
    dg = np.diff(g, prepend=np.float32(0.0)) * (np.float32(sr * 120.0 ** -0.3) * f0j.astype(np.float32) ** -0.7)
    # unit power whatever the pulse shape and F0: voice quality shows in the spectrum, vocal effort in the level
    dg *= np.float32(1.0 / (math.sqrt(float(np.mean(dg.astype(np.float64) ** 2))) + 1e-12))
    shim = np.clip(1.0 + spk.shimmer * p.shimmer * rng.standard_normal(periods), 0.2, 2.0).astype(np.float32)
    amp = shim[idx]
    return dg * amp, g
