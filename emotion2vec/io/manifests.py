"""Every list format the product reads and writes, with one key check and one error type (:class:`ManifestError`).

``data.tsv`` -- the corpus manifest written by ``emotion2vec prepare``. UTF-8 (a byte-order mark, as spreadsheets
write, is accepted by every reader here), tab-separated, one header line, one row per utterance::

    key  path  label  speaker  gender  duration  [channel]  [split]  [other columns...]

* ``key``       unique id, normally the audio path relative to the corpus root without extension, POSIX slashes
                (``Angry/SM1_F10_A010``). Never absolute, never contains ``..`` (it names feature files).
* ``path``      absolute path of the audio file (a relative path is resolved against the folder of data.tsv).
* ``label``     canonical label, lower-case English (``angry``, ``happy``, ``neutral``, ``sad``, ...).
* ``speaker``   speaker id (may be empty when the corpus has none; speaker-based protocols then refuse).
* ``gender``    ``M``, ``F`` or empty when unknown.
* ``duration``  seconds, 3 decimals.
* ``channel``   optional: 0-based channel to read (MELD's multichannel clips), empty = average the channels.
* ``split``     optional: the corpus's official split, ``train``/``valid``/``test``.
* ``votes``     optional: the raters' categorical votes, ``label:count`` pairs separated by commas
                (``angry:2,neutral:1``; counts are non-negative numbers, at least one positive; empty = no votes).
                Soft-label and multi-label targets are derived from it (see :mod:`emotion2vec.downstream.targets`).
* ``arousal``, ``valence``, ``dominance``, ``sentiment``  optional float columns (the preparers scale them to
                [0, 1]); any column of numbers can be a regression target.
* ``text``      optional: the transcript or sentence (whitespace collapsed), used by the leakage audit.
Further trailing columns are allowed (e.g. ``session`` for IEMOCAP, ``fold1``... for imported EmoBox folds); readers
ignore the ones they do not know.

fairseq pretraining manifest ``{split}.tsv`` -- line 1 the root directory, then ``relative/path<TAB>num_samples``.

Kaldi ``wav.scp`` -- ``key<whitespace>path`` per line (no piped commands).

``.jsonl`` -- one object per line with ``key`` and ``path`` (or ``source`` / ``wav``, as FunASR and EmoBox write),
optional ``channel``.

:func:`read_audio_list` reads any of the four as a list of :class:`AudioEntry` (key, path, channel), which is what
extraction and recognition consume.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import Emotion2VecError
from .atomic import atomic_write_text

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "SPLITS", "GENDERS", "DATA_TSV", "ManifestError", "AudioEntry",
           "check_key", "key_from_path", "write_data_tsv", "read_data_tsv", "format_data_tsv", "parse_votes",
           "format_votes",
           "read_pretrain_manifest", "write_pretrain_manifest", "read_wav_scp", "write_wav_scp", "read_jsonl",
           "write_jsonl", "read_audio_list"]

REQUIRED_COLUMNS = ("key", "path", "label", "speaker", "gender", "duration")
OPTIONAL_COLUMNS = ("channel", "split")
SPLITS = ("train", "valid", "test")
GENDERS = ("", "M", "F")
DATA_TSV = "data.tsv"
#: a key names output files (``<key>.npy``, ``<key>.png``): each of its parts must leave room for an extension in the
#: 255 bytes a file name may have
MAX_KEY_PART_BYTES = 200


class ManifestError(Emotion2VecError, ValueError):
    """A list file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class AudioEntry:
    """One audio input: ``key`` names its outputs, ``channel`` (0-based) picks one channel (None = average)."""

    key: str
    path: str
    channel: int | None = None


def check_key(key: str) -> str | None:
    """Why ``key`` is not a valid key, or None when it is. A key names output files, so it is a relative POSIX path
    without ``..``, empty components or surrounding whitespace, each part at most :data:`MAX_KEY_PART_BYTES`
    bytes."""
    if not key:
        return "empty key"
    if key != key.strip():
        return f"key {key!r} has leading/trailing whitespace"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"key {key!r} contains a control character (a tab, newline, NUL, ...)"
    if key.startswith("/") or "\\" in key:
        return f"key {key!r} must be a relative POSIX path (no leading '/', no backslash)"
    if ".." in key.split("/") or "" in key.split("/"):
        return f"key {key!r} contains an empty or '..' path component"
    long = next((part for part in key.split("/") if len(part.encode("utf-8")) > MAX_KEY_PART_BYTES), None)
    if long is not None:
        return (f"key {key[:40]!r}... is too long: its part {long[:20]!r}... has {len(long.encode('utf-8'))} "
                f"bytes, and a file name may have at most 255 ({MAX_KEY_PART_BYTES} for the key, the rest for "
                f"extensions such as .npy)")
    return None


def parse_votes(text: str) -> dict[str, float]:
    """``"angry:2,neutral:1"`` -> ``{"angry": 2.0, "neutral": 1.0}`` (a label named twice adds up); ``""`` -> ``{}``.

    Raises ``ValueError`` saying what does not parse (the callers add the file and line)."""
    votes: dict[str, float] = {}
    text = text.strip()
    if not text:
        return votes
    for item in text.split(","):
        label, sep, count = item.rpartition(":")
        label = label.strip()
        try:
            value = float(count)
        except ValueError:
            value = math.nan
        if not sep or not label or not math.isfinite(value) or value < 0:
            raise ValueError(f"votes {text!r}: {item.strip()!r} is not label:count with a count >= 0")
        votes[label] = votes.get(label, 0.0) + value
    if not any(v > 0 for v in votes.values()):
        raise ValueError(f"votes {text!r}: no positive count")
    return votes


def format_votes(votes: Mapping[str, float]) -> str:
    """The ``votes`` cell for ``{label: count}`` (labels sorted, zero counts left out, integral counts without
    decimals)."""
    return ",".join(f"{label}:{int(c) if float(c).is_integer() else round(float(c), 4)}"
                    for label, c in sorted(votes.items()) if float(c) > 0)


def _columns(rows: list[Mapping]) -> list[str]:
    extra: list[str] = []
    seen = set(REQUIRED_COLUMNS)
    for row in rows:
        for name in row:
            if name not in seen:
                seen.add(name)
                extra.append(name)
    ordered = [c for c in OPTIONAL_COLUMNS if c in extra] + [c for c in extra if c not in OPTIONAL_COLUMNS]
    return list(REQUIRED_COLUMNS) + ordered


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_data_tsv(rows: Iterable[Mapping]) -> str:
    """The text of a data.tsv for ``rows`` (validated; raises :class:`ManifestError`)."""
    rows = list(rows)
    columns = _columns(rows)
    lines = ["\t".join(columns)]
    seen: set[str] = set()
    for i, row in enumerate(rows):
        where = f"row {i + 1} (key {row.get('key')!r})"
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
        values = {}
        for c in columns:
            v = row.get(c, "")
            if c == "duration":
                try:
                    d = float(v)
                except (TypeError, ValueError):
                    raise ManifestError(f"{where}: duration {v!r} is not a number") from None
                if not math.isfinite(d) or d < 0:
                    raise ManifestError(f"{where}: duration {v!r} must be a finite number >= 0")
                values[c] = f"{d:.3f}"
            else:
                values[c] = _cell(v)
            if any(ch in values[c] for ch in "\t\r\n"):
                raise ManifestError(f"{where}: field {c!r} contains a tab or newline: {values[c]!r}")
        problem = _row_problem(values)
        if problem:
            raise ManifestError(f"{where}: {problem}")
        if values["key"] in seen:
            raise ManifestError(f"{where}: duplicate key {values['key']!r}")
        seen.add(values["key"])
        lines.append("\t".join(values[c] for c in columns))
    return "\n".join(lines) + "\n"


def write_data_tsv(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Validate ``rows`` and write them atomically as a data.tsv (columns: required, channel, split, others)."""
    atomic_write_text(path, format_data_tsv(rows))


def _row_problem(values: Mapping[str, str]) -> str | None:
    problem = check_key(values["key"])
    if problem:
        return problem
    if not values["path"]:
        return "empty path"
    if not values["label"]:
        return "empty label"
    if values["gender"] not in GENDERS:
        return f"gender {values['gender']!r} must be M, F or empty"
    channel = values.get("channel", "")
    if channel and not (channel.isdigit()):
        return f"channel {channel!r} must be a non-negative integer or empty"
    split = values.get("split", "")
    if split and split not in SPLITS:
        return f"split {split!r} must be one of {', '.join(SPLITS)} or empty"
    try:
        parse_votes(values.get("votes", ""))
    except ValueError as e:
        return str(e)
    return None


def read_data_tsv(path: str | os.PathLike) -> list[dict]:
    """Read and validate a data.tsv (or the data.tsv inside a directory). -> list of row dicts.

    Values are strings except ``duration`` (float). Relative ``path`` values are resolved against the file's folder.
    """
    path = Path(path)
    if path.is_dir():
        path = path / DATA_TSV
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: not found (run `emotion2vec prepare` first)") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror or e}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}:1: empty file, expected the header {' '.join(REQUIRED_COLUMNS)}")
    header = lines[0].rstrip("\r").split("\t")
    if tuple(header[:len(REQUIRED_COLUMNS)]) != REQUIRED_COLUMNS:
        raise ManifestError(f"{path}:1: header must start with {'<TAB>'.join(REQUIRED_COLUMNS)}, "
                            f"got {'<TAB>'.join(header)}")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup or any(not c for c in header):
        raise ManifestError(f"{path}:1: duplicate or empty column name(s) in the header: {dup or ['']}")
    base = path.parent
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise ManifestError(f"{path}:{lineno}: expected {len(header)} tab-separated columns, got {len(cells)}")
        row = dict(zip(header, cells))
        problem = _row_problem(row)
        if problem:
            raise ManifestError(f"{path}:{lineno}: {problem}")
        try:
            duration = float(row["duration"])
        except ValueError:
            raise ManifestError(f"{path}:{lineno}: duration {row['duration']!r} is not a number") from None
        if not math.isfinite(duration) or duration < 0:
            raise ManifestError(f"{path}:{lineno}: duration {row['duration']!r} must be a finite number >= 0")
        row["duration"] = duration
        if row["key"] in seen:
            raise ManifestError(f"{path}:{lineno}: duplicate key {row['key']!r} (first on line {seen[row['key']]})")
        seen[row["key"]] = lineno
        if not os.path.isabs(row["path"]):
            row["path"] = os.path.normpath(os.path.join(os.path.abspath(base), row["path"]))
        rows.append(row)
    if not rows:
        raise ManifestError(f"{path}: no rows after the header")
    return rows


def key_from_path(relative: str | os.PathLike) -> str:
    """The key of a file given by its path relative to a root: POSIX, without the extension."""
    return Path(relative).with_suffix("").as_posix()


def _checked_key(key: str, where: str) -> str:
    problem = check_key(key)
    if problem:
        raise ManifestError(f"{where}: {problem}")
    return key


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ManifestError(f"{path}: not found") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------------------- fairseq .tsv
def read_pretrain_manifest(path: str | os.PathLike) -> tuple[Path, list[tuple[str, int]]]:
    """A fairseq pretraining manifest. -> (root, [(relative path, num_samples), ...])."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}: empty manifest (expected the root directory on line 1)")
    root = Path(lines[0].strip())
    entries = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip().isdigit():
            raise ManifestError(f"{path}:{n}: expected 'relative_path<TAB>num_samples', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise ManifestError(f"{path}: manifest lists no audio files")
    return root, entries


def write_pretrain_manifest(path: str | os.PathLike, root: str | os.PathLike,
                            entries: Sequence[tuple[str, int]]) -> None:
    """Write a fairseq pretraining manifest atomically."""
    for rel, _ in entries:
        if "\t" in rel or "\n" in rel:
            raise ManifestError(f"{path}: file name {rel!r} contains a tab or newline")
    atomic_write_text(path, "\n".join([str(root)] + [f"{p}\t{n}" for p, n in entries]) + "\n")


# ---------------------------------------------------------------------------------------------------- wav.scp
def read_wav_scp(path: str | os.PathLike) -> list[AudioEntry]:
    """Kaldi ``key path`` lines (paths may contain spaces; piped commands are refused)."""
    path = Path(path)
    entries = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(f"{path}:{n}: expected 'key path', got {line!r}")
        if parts[1].rstrip().endswith("|"):
            raise ManifestError(f"{path}:{n}: piped commands in wav.scp are not supported; give a file path")
        entries.append(AudioEntry(_checked_key(parts[0], f"{path}:{n}"), parts[1].strip()))
    return entries


def write_wav_scp(path: str | os.PathLike, entries: Iterable[AudioEntry]) -> None:
    lines = []
    for e in entries:
        _checked_key(e.key, str(path))
        lines.append(f"{e.key} {e.path}")
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------- jsonl
def read_jsonl(path: str | os.PathLike) -> list[AudioEntry]:
    """Objects with ``path`` (or ``source`` / ``wav``), optional ``key`` (default: the file name without extension)
    and ``channel``."""
    path = Path(path)
    entries = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{n}: invalid JSON: {e.msg}") from None
        audio = (obj.get("path") or obj.get("source") or obj.get("wav")) if isinstance(obj, dict) else None
        if not audio:
            raise ManifestError(f"{path}:{n}: needs a 'path' (or 'source'/'wav') field")
        key = str(obj.get("key") or key_from_path(Path(audio).name))
        channel = obj.get("channel")
        try:
            channel = int(channel) if channel not in (None, "") else None
        except (TypeError, ValueError):
            raise ManifestError(f"{path}:{n}: channel {channel!r} is not an integer") from None
        entries.append(AudioEntry(_checked_key(key, f"{path}:{n}"), str(audio), channel))
    return entries


def write_jsonl(path: str | os.PathLike, entries: Iterable[AudioEntry]) -> None:
    lines = []
    for e in entries:
        _checked_key(e.key, str(path))
        obj = {"key": e.key, "path": e.path}
        if e.channel is not None:
            obj["channel"] = e.channel
        lines.append(json.dumps(obj, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------- any list
def _keyed_tsv(path: Path) -> list[AudioEntry] | None:
    """Entries of a tab-separated file whose header names ``key`` and ``path`` (a data.tsv, validated as one when
    its header is the data.tsv header), or None when the header has no such columns (a fairseq manifest)."""
    lines = _read_lines(path)
    if not lines:
        raise ManifestError(f"{path}: empty manifest")
    header = lines[0].rstrip("\r").split("\t")
    if path.name == DATA_TSV:  # a corpus manifest by its name: read as one, whatever its header says
        return [AudioEntry(r["key"], r["path"], int(r["channel"]) if r.get("channel") else None)
                for r in read_data_tsv(path)]
    if "key" not in header or "path" not in header:
        return None
    if tuple(header[:len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS:
        return [AudioEntry(r["key"], r["path"], int(r["channel"]) if r.get("channel") else None)
                for r in read_data_tsv(path)]
    ki, pi = header.index("key"), header.index("path")
    ci = header.index("channel") if "channel" in header else None
    entries = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) <= max(ki, pi):
            raise ManifestError(f"{path}:{n}: expected {len(header)} tab-separated columns, got {len(cells)}")
        channel = cells[ci].strip() if ci is not None and ci < len(cells) else ""
        if channel and not channel.isdigit():
            raise ManifestError(f"{path}:{n}: channel {channel!r} must be a non-negative integer or empty")
        audio = cells[pi] if os.path.isabs(cells[pi]) else os.path.join(path.parent, cells[pi])
        entries.append(AudioEntry(_checked_key(cells[ki], f"{path}:{n}"), audio, int(channel) if channel else None))
    return entries


def read_audio_list(path: str | os.PathLike) -> list[AudioEntry]:
    """Audio inputs from any list format, chosen by name and content: ``.tsv`` with a ``key``/``path`` header
    (``data.tsv``; its ``channel`` column is honoured), other ``.tsv`` (fairseq manifest: keys are the relative
    paths without extension), ``wav.scp`` / ``.scp``, ``.jsonl``."""
    path = Path(path)
    if path.suffix == ".tsv":
        keyed = _keyed_tsv(path)
        if keyed is not None:
            return keyed
        root, items = read_pretrain_manifest(path)
        return [AudioEntry(_checked_key(key_from_path(rel), f"{path}: {rel}"),
                           str(Path(rel) if Path(rel).is_absolute() else root / rel)) for rel, _ in items]
    if path.suffix == ".scp" or path.name == "wav.scp":
        return read_wav_scp(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    raise ManifestError(f"{path}: unknown list format (expected .tsv, wav.scp / .scp or .jsonl)")
