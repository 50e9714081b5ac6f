"""Audio I/O: soundfile for reading/writing, soxr for resampling, PyAV (optional, FFmpeg inside its wheel) for audio
in video / AAC containers (MELD's .mp4, MEAD's .m4a). No torchaudio, no system ffmpeg.

Every failure raises :class:`AudioError` naming the file and the reason.
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


class AudioError(Emotion2VecError, ValueError):
    """An audio file that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
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


def _media_read(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to float32 (N, channels) at its own rate."""
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in this container")
            stream = container.streams.audio[0]
            planar = av.AudioResampler(format="fltp")  # float planar, same rate and layout
            chunks = [f.to_ndarray() for frame in container.decode(stream) for f in planar.resample(frame)]
            chunks += [f.to_ndarray() for f in planar.resample(None)]
            rate = int(stream.rate)
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AudioError(path, f"unreadable media ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not chunks:
        return np.zeros((0, 1), dtype=np.float32), rate
    return np.ascontiguousarray(np.concatenate(chunks, axis=1).T, dtype=np.float32), rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header-only read of sample rate, length and channels (for media containers, length from the stream's
    duration)."""
    import soundfile as sf

    if _is_media(path):
        return _media_info(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        raise AudioError(path, _reason(e)) from None
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError) or "No such file" in str(e):
        return "file not found"
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return f"unreadable audio ({msg})"


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
            raise AudioError(path, _reason(e)) from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if channel is not None:
        if not 0 <= channel < data.shape[1]:
            raise AudioError(path, f"channel {channel} requested but the file has {data.shape[1]} channel(s)")
        wav = data[:, channel]
    else:
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


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
                               f"{min_samples / rate * 1000:.0f} ms)")
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
