"""Audio I/O: soundfile for reading/writing, soxr for resampling, PyAV (optional, FFmpeg inside its wheel) for audio
in video / AAC containers (MELD's .mp4, MEAD's .m4a). No torchaudio, no system ffmpeg.

Files are read by path (:func:`read_audio`, :func:`load_audio`); bytes in memory, such as an upload to
``emotion2vec serve``, by :func:`read_audio_bytes`, which also refuses truncated data and stops decoding past a
duration limit (a small compressed upload can hold hours of audio).

Every failure raises :class:`AudioError` naming the file and the reason, its ``kind`` saying which failure it is.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Emotion2VecError
from .atomic import atomic_write

__all__ = [
    "SAMPLE_RATE",
    "AUDIO_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "MIN_SAMPLES",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "read_audio",
    "read_audio_bytes",
    "load_audio",
    "resample",
    "resampled_length",
    "normalize_waveform",
    "write_audio",
]

SAMPLE_RATE = 16000
#: containers decoded with PyAV (``pip install 'emotion2vec[media]'``); everything else goes through soundfile
MEDIA_EXTENSIONS = (".mp4", ".m4a", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".aac", ".opus", ".wma", ".mka")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3") + MEDIA_EXTENSIONS
MIN_SAMPLES = 400  # one frame of the CNN (receptive field 400 samples = 25 ms)


#: what went wrong, as :attr:`AudioError.kind`
AUDIO_ERROR_KINDS = ("unreadable", "not_found", "empty", "truncated", "too_short", "too_long", "invalid")


class AudioError(Emotion2VecError, ValueError):
    """An audio file that cannot be used; ``str()`` names the file and the reason. ``kind`` (one of
    :data:`AUDIO_ERROR_KINDS`): unreadable (not audio in a format we decode), not_found, empty (0 samples),
    truncated (less data than the header promises), too_short, too_long (over a caller's limit), invalid (NaN or
    infinite samples, a channel that does not exist)."""

    def __init__(self, path: str | os.PathLike, reason: str, kind: str = "unreadable"):
        self.path, self.reason, self.kind = str(path), reason, kind
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _is_media(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def _av(path: str | os.PathLike):
    try:
        import av
    except ImportError:
        raise AudioError(path, f"decoding {Path(path).suffix} needs PyAV: pip install 'emotion2vec[media]'") from None
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    return av


def _media_info(path: str | os.PathLike) -> AudioInfo:
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in this container")
            stream = container.streams.audio[0]
            seconds = (float(stream.duration * stream.time_base) if stream.duration is not None
                       else (container.duration or 0) / 1_000_000)
            return AudioInfo(int(stream.rate), int(round(seconds * stream.rate)), int(stream.channels))
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises FFmpeg's errors
        raise AudioError(path, f"unreadable media ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _media_read(path: str | os.PathLike, source=None, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` (or of the file object ``source``, ``path`` naming it) to float32
    (N, channels) at its own rate; past ``max_seconds`` of audio, stop with an AudioError of kind too_long."""
    if source is None:
        av = _av(path)
    else:
        try:
            import av
        except ImportError:
            raise AudioError(path, "not audio that soundfile reads (WAV, FLAC, OGG, MP3); other containers need "
                                   "PyAV: pip install 'emotion2vec[media]'") from None
    try:
        with av.open(str(path) if source is None else source) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in this container")
            stream = container.streams.audio[0]
            rate = int(stream.rate)
            if max_seconds is not None and stream.duration is not None and stream.time_base is not None:
                _check_duration(path, float(stream.duration * stream.time_base), max_seconds)
            planar = av.AudioResampler(format="fltp")  # float planar, same rate and layout
            chunks, total = [], 0
            for frame in container.decode(stream):
                for f in planar.resample(frame):
                    chunks.append(f.to_ndarray())
                    total += chunks[-1].shape[1]
                if max_seconds is not None and rate and total > max_seconds * rate:
                    raise AudioError(path, f"longer than the limit of {max_seconds:g} s", kind="too_long")
            chunks += [f.to_ndarray() for f in planar.resample(None)]
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AudioError(path, f"unreadable media ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not chunks:
        return np.zeros((0, 1), dtype=np.float32), rate
    return np.ascontiguousarray(np.concatenate(chunks, axis=1).T, dtype=np.float32), rate


def _check_duration(path: str | os.PathLike, seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise AudioError(path, f"{seconds:.1f} s of audio, over the limit of {max_seconds:g} s", kind="too_long")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header-only read of sample rate, length and channels (for media containers, length from the stream's
    duration)."""
    import soundfile as sf

    if _is_media(path):
        return _media_info(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        raise AudioError(path, _reason(e), _kind(_reason(e))) from None
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError) or "No such file" in str(e):
        return "file not found"
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return f"unreadable audio ({msg})"


def _kind(reason: str) -> str:
    return "not_found" if reason == "file not found" else "unreadable"


def resampled_length(num_samples: int, sr_in: int, sr_out: int = SAMPLE_RATE) -> int:
    """Length soxr produces when resampling ``num_samples`` from ``sr_in`` to ``sr_out``."""
    if sr_in == sr_out:
        return int(num_samples)
    return int(np.ceil(num_samples * sr_out / sr_in - 1e-9)) if num_samples else 0


def resample(wav: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE, quality: str = "HQ") -> np.ndarray:
    """Band-limited resampling with soxr. (N,) float32 -> (ceil(N * sr_out / sr_in),) float32."""
    if sr_in == sr_out:
        return wav
    import soxr

    out = soxr.resample(np.ascontiguousarray(wav, dtype=np.float32), sr_in, sr_out, quality=quality)
    return np.asarray(out, dtype=np.float32)


def read_audio(path: str | os.PathLike, channel: int | None = None) -> tuple[np.ndarray, int]:
    """Read a file as mono float32 at its own rate. -> (samples (N,), sample_rate).

    Multi-channel audio is averaged over channels, or ``channel`` (0-based) is selected.
    Raises :class:`AudioError` for missing, corrupt, empty or non-finite audio.
    """
    import soundfile as sf

    if _is_media(path):
        data, sr = _media_read(path)
    else:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            raise AudioError(path, _reason(e), _kind(_reason(e))) from None
    return _mono(path, data, channel), int(sr)


def _mono(path: str | os.PathLike, data: np.ndarray, channel: int | None) -> np.ndarray:
    """(N, channels) -> (N,) float32: the mean over channels, or ``channel``; refuses empty and non-finite audio."""
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)", kind="empty")
    if channel is not None:
        if not 0 <= channel < data.shape[1]:
            raise AudioError(path, f"channel {channel} requested but the file has {data.shape[1]} channel(s)",
                             kind="invalid")
        wav = data[:, channel]
    else:
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(path, "audio contains NaN or infinite samples", kind="invalid")
    return np.ascontiguousarray(wav, dtype=np.float32)


def _riff_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is cut short (it ends inside its header, or its ``data`` chunk declares more bytes than
    the file holds), or None: complete, not WAV, or a streamed WAV whose sizes are placeholders (0, 0xFFFFFFFF)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk == b"data":
            missing = pos + 8 + size - len(data)
            if size in (0, 0xFFFFFFFF) or missing <= 0:
                return None
            return f"truncated WAV: its data chunk needs {missing} more byte(s) than were received"
        pos += 8 + size + (size & 1)
    return f"truncated WAV: the file ends after {len(data)} bytes, before its data chunk"


def read_audio_bytes(data: bytes, name: str = "<upload>", channel: int | None = None,
                     max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """:func:`read_audio` for a file's bytes in memory (``name`` in messages): soundfile's formats (WAV, FLAC, OGG,
    MP3, ...) first, then PyAV's containers (MP4, M4A, WebM, ...) when it is installed. -> (samples (N,), rate).

    Refuses, as :class:`AudioError` of the matching ``kind``: no bytes or 0 samples (empty), bytes that are no
    audio format (unreadable), a WAV or FLAC that stops before its header says it ends (truncated), and more than
    ``max_seconds`` of audio (too_long: decided from the header when it says, else while decoding, so that a small
    compressed upload cannot fill the memory).
    """
    import soundfile as sf

    if not data:
        raise AudioError(name, "empty upload (0 bytes)", kind="empty")
    truncated = _riff_truncation(data)
    if truncated:
        raise AudioError(name, truncated, kind="truncated")
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not a format libsndfile reads: try FFmpeg's
        try:
            wav, rate = _media_read(name, io.BytesIO(data), max_seconds)
        except AudioError as media_error:
            if media_error.kind != "unreadable" or "PyAV" in media_error.reason:
                raise
            raise AudioError(name, "not audio: neither libsndfile (WAV, FLAC, OGG, MP3, ...) nor FFmpeg (MP4, M4A, "
                                   "WebM, ...) recognises its format") from None
        return _mono(name, wav, channel), rate
    with f:
        rate, declared = int(f.samplerate), int(f.frames)
        if max_seconds is not None and rate:
            _check_duration(name, declared / rate, max_seconds)
        try:
            wav = f.read(dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            raise AudioError(name, _reason(e), kind="truncated") from None
    if 0 < len(wav) < declared:
        raise AudioError(name, f"truncated: {len(wav)} of the {declared} samples its header declares",
                         kind="truncated")
    return _mono(name, wav, channel), rate


def load_audio(path: str | os.PathLike, sample_rate: int | None = SAMPLE_RATE, channel: int | None = None,
               min_samples: int = 0) -> np.ndarray:
    """Read a file as mono float32 resampled to ``sample_rate`` (None keeps the file's rate).

    Raises :class:`AudioError` as :func:`read_audio`, and for fewer than ``min_samples`` samples after resampling.
    """
    wav, sr = read_audio(path, channel)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    rate = sample_rate or sr
    if len(wav) < min_samples:
        raise AudioError(path, f"too short: {len(wav)} samples at {rate} Hz (< {min_samples}, "
                               f"{min_samples / rate * 1000:.0f} ms)", kind="too_short")
    return wav


def normalize_waveform(wav, eps: float = 1e-5):
    """Zero mean, unit (biased) variance over the whole utterance, as the checkpoints' ``normalize`` task flag.

    Accepts a numpy array or a torch tensor (last axis = time) and returns the same type.
    """
    import torch
    import torch.nn.functional as F

    if isinstance(wav, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        return F.layer_norm(x, x.shape[-1:], eps=eps).numpy()
    return F.layer_norm(wav, wav.shape[-1:], eps=eps)


def write_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE,
                format: str | None = None, subtype: str | None = None) -> None:
    """Write mono or (N, C) audio atomically; the format follows the extension unless given."""
    import soundfile as sf

    fmt = format or Path(path).suffix.lstrip(".").upper() or "WAV"
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wav), sample_rate, format=fmt, subtype=subtype)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
