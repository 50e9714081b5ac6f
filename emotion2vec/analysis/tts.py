"""Text-to-speech with neutral prosody, for the linguistic-sensitivity test (:mod:`.linguistics`).

Two engines, both offline:

``espeak``   eSpeak NG through its C library, loaded from the ``espeakng-loader`` wheel, which bundles the library
             and its voice data (``pip install 'emotion2vec[tts]'``; nothing is downloaded at run time). eSpeak's
             rule-based intonation carries no emotion; ``pitch_range`` 0 makes it monotone. Output: 22.05 kHz mono.
``command``  any program the user names, as a template with ``{text}`` (the sentence) and ``{out}`` (a .wav file to
             write), e.g. ``espeak-ng -w {out} {text}`` or ``pico2wave -w {out} {text}``. The template is split like a
             shell line (quotes group words), each placeholder is filled inside its own argument (the sentence stays
             one argument whatever it holds), and the program runs without a shell.

Both give float32 mono at the engine's rate; :meth:`Tts.render16k` resamples to 16 kHz.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from . import AnalysisError

__all__ = ["Tts", "EspeakTts", "CommandTts", "make_tts"]

# eSpeak NG's C API (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_INITIALIZE_DONT_EXIT = 0x8000
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "pitch_range": 4}


class Tts(Protocol):
    name: str

    def render(self, text: str) -> tuple[np.ndarray, int]:
        """-> (float32 mono samples, sample rate)"""

    def settings(self) -> dict: ...


def render16k(tts: Tts, text: str) -> np.ndarray:
    """``text`` spoken by ``tts`` as float32 mono at 16 kHz."""
    from ..io.audio import SAMPLE_RATE, resample

    wav, sr = tts.render(text)
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        raise AnalysisError(f"{tts.name}: no audio for {text!r}")
    return resample(wav, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wav


class EspeakTts:
    """eSpeak NG from the ``espeakng-loader`` wheel (library + voice data inside the wheel).

    The library keeps state from one utterance to the next (its pitch-flutter phase), so the same sentence rendered
    twice in one process differs by a few samples. Where the system can fork, every sentence is rendered in a child
    forked from this process, whose engine has never spoken: the same text and settings give the same samples in any
    run, so two models are always tested on identical audio. Elsewhere (Windows) sentences are rendered here, in
    order, and a repeat may differ slightly."""

    name = "espeak"
    _lock = threading.Lock()
    _lib = None
    _rate = 0

    def __init__(self, voice: str = "en", rate: int | None = None, pitch: int | None = None,
                 pitch_range: int | None = None):
        self.voice, self.rate, self.pitch, self.pitch_range = voice, rate, pitch, pitch_range
        for name, value, low, high in (("rate", rate, 80, 450), ("pitch", pitch, 0, 100),
                                       ("pitch_range", pitch_range, 0, 100)):
            if value is not None and not low <= value <= high:
                raise AnalysisError(f"--{name.replace('_', '-')} {value}: eSpeak accepts {low}..{high}")
        self._load()

    @classmethod
    def _load(cls):
        if cls._lib is not None:
            return cls._lib
        try:
            import espeakng_loader
        except ImportError:
            raise AnalysisError("the espeak TTS needs the espeakng-loader wheel (eSpeak NG with its voice data): "
                                "pip install 'emotion2vec[tts]'; or name any TTS program with --tts-command") from None
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as e:
            raise AnalysisError(f"espeak TTS: cannot load eSpeak NG from espeakng-loader: {e}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_GetParameter.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise AnalysisError(f"espeak TTS: eSpeak NG did not initialise (its data folder: {data})")
        cls._lib, cls._rate = lib, rate
        cls._defaults = {name: lib.espeak_GetParameter(code, 0) for name, code in _PARAMETERS.items()}
        return lib

    def settings(self) -> dict:
        return {"tts": "espeak", "voice": self.voice, "rate": self.rate, "pitch": self.pitch,
                "pitch_range": self.pitch_range, "sample_rate": self._rate}

    def render(self, text: str) -> tuple[np.ndarray, int]:
        if hasattr(os, "fork"):
            return self._render_forked(text)
        return self._render_here(text)

    def _render_forked(self, text: str) -> tuple[np.ndarray, int]:
        import pickle
        import warnings

        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork of a threaded process (torch's pool)
            pid = os.fork()
        if pid == 0:  # the child: render, send, leave without running any of the parent's exit handlers
            code = 0
            try:
                os.close(read)
                try:
                    payload = pickle.dumps(self._render_here(text))
                except BaseException as e:  # noqa: BLE001 - sent to the parent, which raises it
                    payload = pickle.dumps(AnalysisError(str(e)) if not isinstance(e, AnalysisError) else e)
                with os.fdopen(write, "wb") as f:
                    f.write(payload)
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise AnalysisError(f"espeak TTS: the rendering process for {text!r} ended without audio (status "
                                f"{status})")
        obj = pickle.loads(data)
        if isinstance(obj, BaseException):
            raise obj
        return obj

    def _render_here(self, text: str) -> tuple[np.ndarray, int]:
        lib = self._lib
        chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def collect(wav, n, _events) -> int:
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        callback = callback_type(collect)
        data = text.encode("utf-8")
        with self._lock:
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(self.voice.encode()) != 0:
                raise AnalysisError(f"espeak TTS: no voice {self.voice!r} in eSpeak NG's data (e.g. en, en-us, de)")
            for name, code in _PARAMETERS.items():
                value = getattr(self, name, None)
                lib.espeak_SetParameter(code, self._defaults[name] if value is None else int(value), 0)
            if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
                raise AnalysisError(f"espeak TTS: synthesis of {text!r} failed")
            lib.espeak_Synchronize()
        if not chunks:
            raise AnalysisError(f"espeak TTS: no audio for {text!r}")
        return np.concatenate(chunks).astype(np.float32) / 32768.0, self._rate


class CommandTts:
    """A TTS program named by a template with ``{text}`` and ``{out}`` (see the module docstring)."""

    name = "command"

    def __init__(self, template: str, timeout: float = 120.0):
        try:
            self.argv = shlex.split(template)
        except ValueError as e:
            raise AnalysisError(f"--tts-command {template!r}: {e}") from None
        if not self.argv or not any("{out}" in a for a in self.argv):
            raise AnalysisError(f"--tts-command {template!r}: the command must write its audio to {{out}} (e.g. "
                                f"'espeak-ng -w {{out}} {{text}}')")
        if not any("{text}" in a for a in self.argv):
            raise AnalysisError(f"--tts-command {template!r}: the command must take the sentence as {{text}}")
        self.template, self.timeout = template, timeout

    def settings(self) -> dict:
        return {"tts": "command", "command": self.template}

    def render(self, text: str) -> tuple[np.ndarray, int]:
        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="e2v_tts_") as tmp:
            out = Path(tmp) / "speech.wav"
            argv = [a.replace("{out}", str(out)).replace("{text}", text) for a in self.argv]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                      env=dict(os.environ))
            except FileNotFoundError:
                raise AnalysisError(f"--tts-command: program {self.argv[0]!r} not found") from None
            except subprocess.TimeoutExpired:
                raise AnalysisError(f"--tts-command: {self.argv[0]} ran past {self.timeout:g} s on {text!r}") from None
            if proc.returncode != 0:
                raise AnalysisError(f"--tts-command: {self.argv[0]} exited {proc.returncode} on {text!r}: "
                                    f"{(proc.stderr or proc.stdout).strip()[-300:]}")
            if not out.is_file():
                raise AnalysisError(f"--tts-command: {self.argv[0]} wrote no audio to {{out}} for {text!r}")
            try:
                wav, sr = sf.read(out, dtype="float32", always_2d=True)
            except Exception as e:  # noqa: BLE001 - any unreadable output is the program's fault
                raise AnalysisError(f"--tts-command: {self.argv[0]} wrote unreadable audio for {text!r}: {e}") \
                    from None
        return wav.mean(axis=1), int(sr)


def make_tts(command: str | None = None, voice: str = "en", rate: int | None = None, pitch: int | None = None,
             pitch_range: int | None = None) -> Tts:
    """``command`` given: :class:`CommandTts`; else :class:`EspeakTts`."""
    if command:
        return CommandTts(command)
    return EspeakTts(voice, rate, pitch, pitch_range)
