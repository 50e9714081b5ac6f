"""``emotion2vec manifest``: audio folders -> fairseq-style pretraining manifests (train.tsv / valid.tsv).

Pretraining reads 16 kHz mono audio. Files at another rate, with several channels, or in a video / AAC container
(.mp4, .m4a, ...: decoded with PyAV) are converted into ``--resample-to DIR`` (16 kHz mono FLAC via soxr, mirroring
the source tree, reused by a later run) or, without that option, the whole run is refused with the list of offending
files, so a manifest never silently covers only part of a corpus. Unreadable files are reported and left out;
clips shorter than ``min_seconds`` (the pretraining crop minimum) are dropped and counted; utterances listed in
``exclude`` (e.g. a downstream test set) are left out. Each AUDIO_DIR is one corpus of the hours table
(``hours.md`` beside the manifest).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..io.atomic import atomic_write_text
from ..io.audio import (AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, SAMPLE_RATE, AudioError, audio_info, load_audio,
                        write_audio)
from ..io.manifests import ManifestError, read_audio_list, read_data_tsv, write_pretrain_manifest

__all__ = ["ManifestResult", "build_manifest", "hours_table"]

COUNTS = ("files", "seconds", "converted", "short", "excluded", "unreadable")


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
    corpora: dict[str, dict[str, float]] = field(default_factory=dict)  # corpus -> COUNTS


def hours_table(corpora: dict[str, dict[str, float]]) -> str:
    """Markdown: per corpus (each AUDIO_DIR) the files kept, hours, and what was converted, dropped or excluded."""
    lines = ["| corpus | files | hours | converted | shorter than the minimum | excluded | unreadable |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    total = defaultdict(float)
    for name, c in corpora.items():
        lines.append(f"| {name} | {int(c['files'])} | {c['seconds'] / 3600:.3f} | {int(c['converted'])} | "
                     f"{int(c['short'])} | {int(c['excluded'])} | {int(c['unreadable'])} |")
        for k in COUNTS:
            total[k] += c[k]
    lines.append(f"| **total** | {int(total['files'])} | {total['seconds'] / 3600:.3f} | {int(total['converted'])} | "
                 f"{int(total['short'])} | {int(total['excluded'])} | {int(total['unreadable'])} |")
    return "\n".join(lines) + "\n"


def _exclusions(lists: Iterable[str | os.PathLike]) -> tuple[set[str], set[str]]:
    """Resolved paths and file stems of the utterances in ``lists`` (any list format: data.tsv, wav.scp, ...).

    ``data.tsv:COLUMN=VALUE`` keeps only the rows of a data.tsv whose COLUMN holds VALUE (e.g. ``session=Ses05``).
    """
    paths, stems = set(), set()
    for spec in lists:
        text = str(spec)
        path, sep, condition = text.rpartition(":")
        if sep and "=" in condition and Path(path).suffix == ".tsv":
            column, value = condition.split("=", 1)
            rows = read_data_tsv(path)
            if column not in rows[0]:
                raise ManifestError(f"--exclude {text}: {path} has no column {column!r} (columns: "
                                    f"{', '.join(rows[0])})")
            selected = [r["path"] for r in rows if str(r[column]) == value]
            if not selected:
                raise ManifestError(f"--exclude {text}: no row of {path} has {column}={value}")
        else:
            selected = [entry.path for entry in read_audio_list(text)]
        for p in selected:
            paths.add(str(Path(p).resolve()))
            stems.add(Path(p).stem)
    return paths, stems


def _corpus_dirs(specs: Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """``DIR`` or ``NAME=DIR`` -> [(corpus name, folder)]; an unnamed folder is its own corpus, named after it."""
    out = []
    for spec in specs:
        text = str(spec)
        name, sep, folder = text.partition("=")
        if sep and name and "/" not in name and os.sep not in name:
            out.append((name, Path(folder)))
        else:
            out.append((Path(text).resolve().name, Path(text)))
    return out


def _scan(specs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """-> [(source file, NAME/path relative to the corpus's folders)] sorted, deterministic. Folders given under one
    NAME (e.g. IEMOCAP's five Session*/sentences/wav) are one corpus, paths relative to their common parent."""
    dirs = _corpus_dirs(specs)
    for _, d in dirs:
        if not d.is_dir():
            raise ManifestError(f"{d}: not a directory")
    groups: dict[str, list[Path]] = defaultdict(list)
    for name, d in dirs:
        groups[name].append(d.resolve())
    found = []
    for name, d in dirs:
        members = groups[name]
        base = Path(os.path.commonpath([str(m) for m in members])) if len(members) > 1 else d.resolve()
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        # relative to the folder as given: a symlinked file (a corpus subset of links) resolves elsewhere
        found += [(f, Path(name) / d.resolve().relative_to(base) / f.relative_to(d)) for f in files]
    if not found:
        raise ManifestError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under "
                            f"{', '.join(str(d) for _, d in dirs)}")
    return sorted(set(found))


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


@dataclass
class _Survey:
    """What the scan found: usable 16 kHz mono files (path, samples, corpus), files to convert, unreadable ones, and
    the per-corpus counts of the hours table."""

    corpora: dict[str, dict[str, float]]
    ok: list[tuple[str, int, str]] = field(default_factory=list)
    to_convert: list[tuple[Path, Path]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _survey(files: list[tuple[Path, Path]], exclude, verify: bool, min_samples: int) -> _Survey:
    """Each file excluded, unreadable, to convert (another rate, several channels, a media container), too short,
    or usable as it is."""
    excluded_paths, excluded_stems = _exclusions(exclude)
    survey = _Survey({})
    for _, rel in files:
        survey.corpora.setdefault(rel.parts[0], dict.fromkeys(COUNTS, 0.0))
    for src, rel in files:
        corpus = survey.corpora[rel.parts[0]]
        if str(src.resolve()) in excluded_paths or src.stem in excluded_stems:
            corpus["excluded"] += 1
            continue
        try:
            info = audio_info(src)
            if verify:
                load_audio(src, None)
        except AudioError as e:
            survey.unreadable.append((str(src), e.reason))
            corpus["unreadable"] += 1
            continue
        if info.frames == 0:
            survey.unreadable.append((str(src), "empty audio (0 samples)"))
            corpus["unreadable"] += 1
        elif info.sample_rate != SAMPLE_RATE or info.channels != 1 or src.suffix.lower() in MEDIA_EXTENSIONS:
            survey.to_convert.append((src, rel))
        elif info.frames < min_samples:
            corpus["short"] += 1
        else:
            survey.ok.append((str(src.resolve()), info.frames, rel.parts[0]))
    return survey


def _refuse_unconverted(to_convert: list[tuple[Path, Path]]) -> None:
    listing = "\n  ".join(f"{s} ({audio_info(s).sample_rate} Hz, {audio_info(s).channels} ch"
                          + (", a media container" if s.suffix.lower() in MEDIA_EXTENSIONS else "") + ")"
                          for s, _ in to_convert[:20])
    more = f"\n  ... and {len(to_convert) - 20} more" if len(to_convert) > 20 else ""
    raise ManifestError(f"{len(to_convert)} file(s) are not 16 kHz mono:\n  {listing}{more}\n"
                        f"pass --resample-to DIR to convert them (16 kHz mono FLAC), nothing was written")


def _convert_all(survey: _Survey, dest: Path, num_workers: int, min_samples: int, log) -> tuple[int, int]:
    """Convert ``survey.to_convert`` into ``dest`` (mirroring the corpora's trees; a conversion made by an earlier
    run is reused) and add the results to the survey. -> (files converted now, files reused)."""
    converted = reused = 0
    jobs = [(str(s), str((dest / rel).with_suffix(".flac"))) for s, rel in survey.to_convert]
    log(f"converting {len(jobs)} file(s) to 16 kHz mono FLAC under {dest} ...")
    if num_workers > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(pool.map(_convert, jobs, chunksize=8))
    else:
        results = [_convert(j) for j in jobs]
    for (src, _), (_, rel), (dst, n, err, was_done) in zip(jobs, survey.to_convert, results):
        corpus = survey.corpora[rel.parts[0]]
        if err is not None:
            survey.unreadable.append((src, err))
            corpus["unreadable"] += 1
            continue
        reused += was_done
        converted += not was_done
        corpus["converted"] += 1
        if n < min_samples:
            corpus["short"] += 1
        else:
            survey.ok.append((str(Path(dst).resolve()), n, rel.parts[0]))
    return converted, reused


def _split(ok: list[tuple[str, int, str]], valid_fraction: float, seed: int, notes: list[str]):
    """The files relative to their common folder, sorted, and a seeded ``valid_fraction`` of them as valid.
    -> (root, train, valid)."""
    root = Path(os.path.commonpath([str(Path(p).parent) for p, _, _ in ok]))
    entries = sorted((os.path.relpath(p, root), n) for p, n, _ in ok)
    rng = random.Random(seed)
    n_valid = int(round(valid_fraction * len(entries)))
    if valid_fraction and n_valid == 0:
        notes.append(f"--valid-fraction {valid_fraction} of {len(entries)} files rounds to 0: no valid.tsv written "
                     f"(use a fraction of at least {0.5 / len(entries):.3g})")
    valid_ids = set(rng.sample(range(len(entries)), n_valid)) if n_valid else set()
    train = [e for i, e in enumerate(entries) if i not in valid_ids]
    valid = [e for i, e in enumerate(entries) if i in valid_ids]
    return root, train, valid


def _write(out: Path, root: Path, train: list, valid: list, corpora: dict[str, dict[str, float]]) -> None:
    """train.tsv, valid.tsv (removed when there is none) and hours.md."""
    out.mkdir(parents=True, exist_ok=True)
    write_pretrain_manifest(out / "train.tsv", root, train)
    if valid:
        write_pretrain_manifest(out / "valid.tsv", root, valid)
    elif (out / "valid.tsv").exists():
        (out / "valid.tsv").unlink()
    atomic_write_text(out / "hours.md", hours_table(corpora))


def build_manifest(audio_dirs: list[str | os.PathLike], out: str | os.PathLike, valid_fraction: float = 0.0,
                   resample_to: str | os.PathLike | None = None, seed: int = 0, verify: bool = False,
                   num_workers: int = 1, log=print, min_seconds: float = 0.0,
                   exclude: Iterable[str | os.PathLike] = ()) -> ManifestResult:
    """Scan ``audio_dirs`` (each ``DIR`` or ``NAME=DIR``) and write ``out/train.tsv`` (+ ``valid.tsv``) and
    ``out/hours.md``.

    ``exclude``: lists whose utterances are left out, matched by resolved path or by file name without extension
    (so a converted copy of a listed file is excluded too).

    The steps: scan the folders; sort each file (excluded, unreadable, to convert, too short, usable); refuse files
    to convert without ``resample_to``, else convert them; count per corpus; split train / valid; write.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ManifestError(f"--valid-fraction {valid_fraction} must be in [0, 1)")
    if min_seconds < 0:
        raise ManifestError(f"--min-seconds {min_seconds} must be >= 0")
    min_samples = int(min_seconds * SAMPLE_RATE)
    survey = _survey(_scan(audio_dirs), exclude, verify, min_samples)
    if survey.to_convert and resample_to is None:
        _refuse_unconverted(survey.to_convert)
    converted = reused = 0
    if survey.to_convert:
        converted, reused = _convert_all(survey, Path(resample_to), num_workers, min_samples, log)
    for path, reason in survey.unreadable:
        log(f"skipped unreadable file {path}: {reason}")
    if not survey.ok:
        raise ManifestError("no usable audio: every file was unreadable, too short or excluded")
    corpora = survey.corpora
    for _, n, corpus in survey.ok:
        corpora[corpus]["files"] += 1
        corpora[corpus]["seconds"] += n / SAMPLE_RATE
    notes: list[str] = []
    short = sum(int(c["short"]) for c in corpora.values())
    if short:
        notes.append(f"{short} clip(s) shorter than {min_seconds:g} s left out (--min-seconds)")
    root, train, valid = _split(survey.ok, valid_fraction, seed, notes)
    out = Path(out)
    _write(out, root, train, valid, corpora)
    hours = sum(n for _, n in train + valid) / SAMPLE_RATE / 3600
    for note in notes:
        log(f"note: {note}")
    return ManifestResult(len(train), len(valid), hours, converted, reused, survey.unreadable, out, notes, corpora)
