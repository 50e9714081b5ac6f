"""Uploaded bytes -> the 16 kHz mono float32 waveform the model reads, or a :class:`~.errors.RequestError` saying
why not.

``format=auto`` (default): any file soundfile decodes (WAV, FLAC, OGG, MP3, ...) or, with PyAV installed, FFmpeg
(MP4, M4A, WebM, ...), read from memory by :func:`emotion2vec.io.audio.read_audio_bytes` exactly as
``emotion2vec predict`` reads the same file from disk (channels averaged, then soxr to 16 kHz), so that the service
and the command give the same numbers. ``format=pcm_s16le`` / ``pcm_f32le``: headerless little-endian samples,
``channels`` interleaved, at ``sample_rate``.
"""

from __future__ import annotations

import numpy as np

from ..io.audio import MIN_SAMPLES, SAMPLE_RATE, AudioError, read_audio_bytes, resample
from .errors import AUDIO_STATUS, RequestError
from .upload import Upload

__all__ = ["FORMATS", "decode_upload"]

#: raw PCM layouts: name -> (numpy dtype, full scale)
PCM = {"pcm_s16le": ("<i2", 32768.0), "pcm_f32le": ("<f4", 1.0)}
FORMATS = ("auto", *PCM)


def _refuse(e: AudioError, max_seconds: float) -> RequestError:
    status, code = AUDIO_STATUS.get(e.kind, (415, "not_audio"))
    extra = {"limit": max_seconds} if code == "too_long" else {}
    return RequestError(status, code, str(e), **extra)


def _pcm(data: bytes, name: str, fmt: str, sample_rate: int, channels: int, max_seconds: float) -> np.ndarray:
    dtype, scale = PCM[fmt]
    frame = np.dtype(dtype).itemsize * channels
    if not data:
        raise RequestError(400, "empty", f"{name}: empty upload (0 bytes)")
    if len(data) % frame:
        raise RequestError(422, "truncated", f"{name}: {len(data)} bytes is not a whole number of {fmt} frames "
                           f"({frame} bytes each with {channels} channel(s)): the data is cut mid-sample")
    seconds = len(data) / frame / sample_rate
    if seconds > max_seconds:
        raise RequestError(413, "too_long", f"{name}: {seconds:.1f} s of audio, over the limit of {max_seconds:g} s",
                           limit=max_seconds)
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32) / scale
    wav = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    if not np.isfinite(wav).all():
        raise RequestError(422, "invalid", f"{name}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(wav, dtype=np.float32)


def decode_upload(upload: Upload, fmt: str = "auto", sample_rate: int | None = None, channels: int = 1,
                  max_seconds: float = 600.0) -> np.ndarray:
    """(N,) float32 at 16 kHz, at least :data:`~emotion2vec.io.audio.MIN_SAMPLES` long and at most
    ``max_seconds``."""
    name = upload.filename or "upload"
    if fmt == "auto":
        if sample_rate is not None:
            raise RequestError(400, "bad_request", "sample_rate is for raw PCM (format=pcm_s16le or pcm_f32le); a "
                               "file carries its own rate")
        try:
            wav, rate = read_audio_bytes(upload.data, name, max_seconds=max_seconds)
        except AudioError as e:
            raise _refuse(e, max_seconds) from None
    elif fmt in PCM:
        if sample_rate is None:
            raise RequestError(400, "bad_request", f"format={fmt} needs sample_rate (Hz) in the query string")
        wav, rate = _pcm(upload.data, name, fmt, sample_rate, channels, max_seconds), sample_rate
    else:
        raise RequestError(400, "bad_request", f"format={fmt!r}: choose {', '.join(FORMATS)}")
    if rate != SAMPLE_RATE:
        wav = resample(wav, rate, SAMPLE_RATE)
    if len(wav) < MIN_SAMPLES:
        raise RequestError(422, "too_short", f"{name}: too short: {len(wav)} samples at 16 kHz (< {MIN_SAMPLES}, "
                           f"{MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms: one frame of the model)")
    if len(wav) > max_seconds * SAMPLE_RATE:
        raise RequestError(413, "too_long", f"{name}: {len(wav) / SAMPLE_RATE:.1f} s of audio, over the limit of "
                           f"{max_seconds:g} s", limit=max_seconds)
    return wav
