"""What every part of the synthesiser shares: the error, the sample rate, the emotions and genders, and the seed streams
(every random draw derives from integer seeds through :class:`numpy.random.SeedSequence`)."""

from __future__ import annotations

import zlib

import numpy as np

from ...errors import Emotion2VecError


class SynthError(Emotion2VecError, ValueError):
    """An impossible corpus request (unknown emotion, no speakers, ...)."""


SAMPLE_RATE = 16000
EMOTIONS = ("angry", "happy", "neutral", "sad", "fear")
GENDERS = ("M", "F")

# seed-stream domains (the first words of every SeedSequence entropy) keep the streams independent
_DOMAIN_SPEAKER = 0x5350_4B52  # labelled speakers
_DOMAIN_EXTRA_SPEAKER = 0x5850_4B52  # unlabelled-pool speakers
_DOMAIN_UTTERANCE = 0x5554_5452
_DOMAIN_UNLABELLED = 0x554E_4C42


def _crc(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & 0xFFFFFFFF


def utterance_rng(seed: int, speaker: str, emotion: str, index: int, domain: int = _DOMAIN_UTTERANCE):
    """The generator of utterance ``(speaker, emotion, index)``: independent of which other utterances exist."""
    return np.random.default_rng(np.random.SeedSequence(
        [domain, int(seed) & 0xFFFFFFFF, _crc(speaker), _crc(emotion), int(index)]))
