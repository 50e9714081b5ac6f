"""``emotion2vec manifest``: scan audio folders into fairseq-style pretraining manifests (train.tsv / valid.tsv).

Pretraining reads 16 kHz mono audio. Files at another rate or with several channels are converted into
``--resample-to DIR`` (16 kHz mono FLAC via soxr, mirroring the source tree) or, without that option, the whole
run is refused with the list of offending files, so a manifest never silently covers only part of a corpus.
Unreadable files are reported and left out.
"""

from __future__ import annotations

import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..io.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, audio_info, load_audio, write_audio
from ..io.manifests import ManifestError, write_pretrain_manifest

__all__ = ["ManifestResult", "build_manifest"]


@dataclass
class ManifestResult:
    train: int
    valid: int
    hours: float
    converted: int  # files converted by this run
    reused: int  # files converted by an earlier run and reused
    unreadable: list[tuple[str, str]]
    out: Path
    notes: list[str]


def _scan(dirs: list[Path]) -> list[tuple[Path, Path]]:
    """-> [(source file, path relative to a per-directory prefix)] sorted, deterministic."""
    found = []
    for d in dirs:
        if not d.is_dir():
            raise ManifestError(f"{d}: not a directory")
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        found += [(f, Path(d.resolve().name) / f.relative_to(d)) for f in files]
    if not found:
        raise ManifestError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {', '.join(map(str, dirs))}")
    return found


def _convert(job: tuple[str, str]) -> tuple[str, int | None, str | None, bool]:
    """-> (destination, samples, error, reused: converted by an earlier run)."""
    src, dst = job
    try:
        dst_info = audio_info(dst) if os.path.exists(dst) else None
        if dst_info is not None and dst_info.sample_rate == SAMPLE_RATE and dst_info.channels == 1:
            return dst, dst_info.frames, None, True
        wav = load_audio(src, SAMPLE_RATE)
        write_audio(dst, wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return dst, len(wav), None, False
    except AudioError as e:
        return dst, None, e.reason, False


def build_manifest(audio_dirs: list[str | os.PathLike], out: str | os.PathLike, valid_fraction: float = 0.0,
                   resample_to: str | os.PathLike | None = None, seed: int = 0, verify: bool = False,
                   num_workers: int = 1, log=print) -> ManifestResult:
    if not 0.0 <= valid_fraction < 1.0:
        raise ManifestError(f"--valid-fraction {valid_fraction} must be in [0, 1)")
    files = _scan([Path(d) for d in audio_dirs])
    ok: list[tuple[str, int]] = []
    unreadable: list[tuple[str, str]] = []
    to_convert: list[tuple[Path, Path]] = []
    for src, rel in files:
        try:
            info = audio_info(src)
            if verify:
                load_audio(src, None)
        except AudioError as e:
            unreadable.append((str(src), e.reason))
            continue
        if info.frames == 0:
            unreadable.append((str(src), "empty audio (0 samples)"))
        elif info.sample_rate != SAMPLE_RATE or info.channels != 1:
            to_convert.append((src, rel))
        else:
            ok.append((str(src.resolve()), info.frames))
    if to_convert and resample_to is None:
        listing = "\n  ".join(f"{s} ({audio_info(s).sample_rate} Hz, {audio_info(s).channels} ch)"
                              for s, _ in to_convert[:20])
        more = f"\n  ... and {len(to_convert) - 20} more" if len(to_convert) > 20 else ""
        raise ManifestError(f"{len(to_convert)} file(s) are not 16 kHz mono:\n  {listing}{more}\n"
                         f"pass --resample-to DIR to convert them (16 kHz mono FLAC), nothing was written")
    converted = reused = 0
    notes: list[str] = []
    if to_convert:
        dest = Path(resample_to)
        jobs = [(str(s), str((dest / rel).with_suffix(".flac"))) for s, rel in to_convert]
        log(f"converting {len(jobs)} file(s) to 16 kHz mono FLAC under {dest} ...")
        if num_workers > 1:
            with ProcessPoolExecutor(num_workers) as pool:
                results = list(pool.map(_convert, jobs, chunksize=8))
        else:
            results = [_convert(j) for j in jobs]
        for (src, _), (dst, n, err, was_done) in zip(jobs, results):
            if err is not None:
                unreadable.append((src, err))
            else:
                ok.append((str(Path(dst).resolve()), n))
                reused += was_done
                converted += not was_done
    for path, reason in unreadable:
        log(f"skipped unreadable file {path}: {reason}")
    if not ok:
        raise ManifestError("no usable audio: every file was unreadable")
    root = Path(os.path.commonpath([str(Path(p).parent) for p, _ in ok]))
    entries = sorted((os.path.relpath(p, root), n) for p, n in ok)
    rng = random.Random(seed)
    n_valid = int(round(valid_fraction * len(entries)))
    if valid_fraction and n_valid == 0:
        notes.append(f"--valid-fraction {valid_fraction} of {len(entries)} files rounds to 0: no valid.tsv written "
                     f"(use a fraction of at least {0.5 / len(entries):.3g})")
    valid_ids = set(rng.sample(range(len(entries)), n_valid)) if n_valid else set()
    train = [e for i, e in enumerate(entries) if i not in valid_ids]
    valid = [e for i, e in enumerate(entries) if i in valid_ids]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_pretrain_manifest(out / "train.tsv", root, train)
    if valid:
        write_pretrain_manifest(out / "valid.tsv", root, valid)
    elif (out / "valid.tsv").exists():
        (out / "valid.tsv").unlink()
    hours = sum(n for _, n in entries) / SAMPLE_RATE / 3600
    for note in notes:
        log(f"note: {note}")
    return ManifestResult(len(train), len(valid), hours, converted, reused, unreadable, out, notes)
