"""The ``data.tsv`` corpus manifest written by ``emotion2vec prepare``.

Format: UTF-8, tab-separated, one header line, one row per utterance::

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
Further trailing columns are allowed (e.g. ``session`` for IEMOCAP, ``fold1``... for imported EmoBox folds); readers
ignore the ones they do not know.

:func:`read_data_tsv` returns a list of dicts (all values strings except ``duration``, a float) and raises
:class:`ManifestError` naming the file and the line for any violation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..fileio import atomic_write_text

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "SPLITS", "GENDERS", "ManifestError", "write_data_tsv",
           "read_data_tsv", "format_data_tsv", "check_key"]

REQUIRED_COLUMNS = ("key", "path", "label", "speaker", "gender", "duration")
OPTIONAL_COLUMNS = ("channel", "split")
SPLITS = ("train", "valid", "test")
GENDERS = ("", "M", "F")
DATA_TSV = "data.tsv"


class ManifestError(ValueError):
    """A data.tsv that breaks the schema; the message names the file (and line)."""


def check_key(key: str) -> str | None:
    """Why ``key`` is not a valid key, or None when it is."""
    if not key:
        return "empty key"
    if key != key.strip():
        return f"key {key!r} has leading/trailing whitespace"
    if key.startswith("/") or "\\" in key:
        return f"key {key!r} must be a relative POSIX path (no leading '/', no backslash)"
    if ".." in key.split("/") or "" in key.split("/"):
        return f"key {key!r} contains an empty or '..' path component"
    return None


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
    return None


def read_data_tsv(path: str | os.PathLike) -> list[dict]:
    """Read and validate a data.tsv (or the data.tsv inside a directory). -> list of row dicts.

    Values are strings except ``duration`` (float). Relative ``path`` values are resolved against the file's folder.
    """
    path = Path(path)
    if path.is_dir():
        path = path / DATA_TSV
    try:
        text = path.read_text(encoding="utf-8")
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
