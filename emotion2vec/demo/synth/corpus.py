"""The corpus writer: labelled speakers x emotions x utterances, and an unlabelled pool, written as PCM_16 WAV
atomically and idempotently."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import (EMOTIONS, SAMPLE_RATE, SynthError, utterance_rng, _DOMAIN_EXTRA_SPEAKER, _DOMAIN_UNLABELLED,
                   _DOMAIN_UTTERANCE)
from .emotions import PROFILES, utterance_dimensions
from .plan import utterance_length
from .render import synthesize_utterance
from .speakers import make_speaker, make_speakers


def _wav_bytes_ok(path: Path, n: int, sample_rate: int) -> bool:
    """Whether ``path`` is a mono PCM_16 WAV of ``n`` frames at ``sample_rate`` (and not truncated)."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:
        return False
    if info.frames != n or info.samplerate != sample_rate or info.channels != 1 or info.subtype != "PCM_16":
        return False
    return path.stat().st_size >= 2 * n + 44


def _write_wav(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    from ...io.atomic import atomic_write  # temporary file in the same folder, fsync, os.replace

    pcm = np.clip(np.round(wav.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)

    def write(f):
        sf.write(f, pcm, sample_rate, subtype="PCM_16", format="WAV")

    atomic_write(path, write)


def _make_file(task: tuple) -> tuple[float, bool]:
    """Synthesize one file unless it is there already; returns (duration s, written?)."""
    path, speaker, emotion, seed, index, domain, sample_rate = task
    path = Path(path)
    n = utterance_length(speaker, emotion, utterance_rng(seed, speaker.id, emotion, index, domain), sample_rate)
    if path.exists() and _wav_bytes_ok(path, n, sample_rate):
        return n / sample_rate, False
    wav = synthesize_utterance(speaker, emotion, utterance_rng(seed, speaker.id, emotion, index, domain), sample_rate)
    assert wav.size == n
    _write_wav(path, wav, sample_rate)
    return n / sample_rate, True


def _run_tasks(tasks: list[tuple], num_workers: int) -> list[tuple[float, bool]]:
    if num_workers <= 1 or len(tasks) < 8:
        return [_make_file(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=num_workers) as ex:
        return list(ex.map(_make_file, tasks, chunksize=max(1, len(tasks) // (4 * num_workers))))


def build_corpus(out_dir, seed: int = 0, num_speakers: int = 12, utterances_per_emotion: int = 10,
                 emotions: Sequence[str] = EMOTIONS[:4], num_workers: int = 1,
                 sample_rate: int = SAMPLE_RATE, dimensions: bool = False) -> tuple[list[dict], int]:
    """Write ``out_dir/<emotion>/<speaker>_<emotion>_<nnn>.wav`` (PCM_16) for every speaker x emotion x index.

    Files that exist with the right length are kept (re-runs are cheap and idempotent); new files are written
    atomically (temporary file in the same folder, then ``os.replace``). Returns manifest rows
    ``{key, path, label, speaker, gender, duration}`` in a fixed order (emotion, speaker, index); ``key`` is
    ``<emotion>/<file stem>``, ``path`` is absolute, ``duration`` is in seconds (3 decimals) -- and the number of
    files this call wrote. With ``dimensions`` the rows also carry ``arousal`` and ``valence``
    (:func:`utterance_dimensions`), regression targets the audio actually expresses."""
    emotions = tuple(emotions)
    for e in emotions:
        if e not in PROFILES:
            raise SynthError(f"unknown emotion {e!r}; expected one of {', '.join(EMOTIONS)}")
    if utterances_per_emotion < 1:
        raise SynthError(f"utterances per emotion must be >= 1, got {utterances_per_emotion}")
    if num_speakers < 1:
        raise SynthError(f"number of speakers must be >= 1, got {num_speakers}")
    out = Path(out_dir).resolve()
    speakers = make_speakers(num_speakers, seed)
    tasks, rows = [], []
    for emotion in emotions:
        (out / emotion).mkdir(parents=True, exist_ok=True)
        for spk in speakers:
            for i in range(utterances_per_emotion):
                stem = f"{spk.id}_{emotion}_{i:03d}"
                path = out / emotion / f"{stem}.wav"
                tasks.append((str(path), spk, emotion, seed, i, _DOMAIN_UTTERANCE, sample_rate))
                rows.append({"key": f"{emotion}/{stem}", "path": str(path), "label": emotion, "speaker": spk.id,
                             "gender": spk.gender})
                if dimensions:
                    rows[-1]["arousal"], rows[-1]["valence"] = utterance_dimensions(spk, emotion, seed, i)
    results = _run_tasks(tasks, num_workers)
    for row, (dur, _) in zip(rows, results):
        row["duration"] = round(dur, 3)
    return rows, sum(w for _, w in results)


def build_unlabelled(out_dir, seed: int = 0, num_speakers: int = 8, num_utterances: int = 100,
                     num_workers: int = 1, sample_rate: int = SAMPLE_RATE) -> tuple[list[str], int]:
    """An extra pool of unlabelled pretraining speech: ``num_utterances`` files from ``num_speakers`` speakers
    (``ext00``..) disjoint from the labelled ones, random emotions (all of :data:`EMOTIONS`). Written to
    ``out_dir/<speaker>_<nnnn>.wav`` (same atomic, idempotent writing); returns the absolute paths in a fixed order
    and the number of files this call wrote."""
    if num_speakers < 1 or num_utterances < 0:
        raise SynthError(f"need at least 1 speaker and 0 utterances, got {num_speakers} and {num_utterances}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    speakers = [make_speaker(seed, i, prefix="ext", domain=_DOMAIN_EXTRA_SPEAKER) for i in range(num_speakers)]
    tasks, paths = [], []
    for j in range(num_utterances):
        spk = speakers[j % num_speakers]
        pick = np.random.default_rng(np.random.SeedSequence([_DOMAIN_UNLABELLED, int(seed) & 0xFFFFFFFF, j]))
        emotion = EMOTIONS[int(pick.integers(len(EMOTIONS)))]
        path = out / f"{spk.id}_{j:04d}.wav"
        tasks.append((str(path), spk, emotion, seed, j, _DOMAIN_UNLABELLED, sample_rate))
        paths.append(str(path))
    results = _run_tasks(tasks, num_workers)
    return paths, sum(w for _, w in results)
