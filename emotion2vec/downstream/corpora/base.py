"""What every corpus preparer shares: the error, label spellings, the registration of a corpus (its protocol and
expected layout), and the file walking, checking and reporting helpers.

A preparer collects every file that does not fit (:class:`_Problems`, :class:`_Misfit`) and :func:`_finish` raises
them in ONE :class:`CorpusError` listing the files (the first :data:`MAX_LISTED` and a count), checks duplicates and
reads every file's duration.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ...errors import Emotion2VecError
from ...io.audio import AUDIO_EXTENSIONS, AudioError, audio_info

log = logging.getLogger("emotion2vec.downstream.prepare")

MAX_LISTED = 20
_AIFF = (".aiff", ".aif")
_SKIP_DIRS = {"__MACOSX", ".git", ".svn"}


class CorpusError(Emotion2VecError, ValueError):
    """A corpus that cannot be prepared: missing root, empty corpus, unknown names or labels, unreadable audio."""


# ------------------------------------------------------------------------------------------------ labels
_SYNONYMS = {
    "anger": "angry", "angry": "angry", "ang": "angry",
    "happiness": "happy", "happy": "happy", "hap": "happy", "joy": "happy",
    "sadness": "sad", "sad": "sad",
    "neutral": "neutral", "neu": "neutral",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "surprise": "surprise", "surprised": "surprise",
    "calm": "calm", "boredom": "boredom", "bored": "boredom",
    "contempt": "contempt", "enthusiasm": "enthusiasm",
    "positive": "positive", "negative": "negative",
}


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def canonical_label(raw: str) -> str:
    """Lower-case canonical English label for common spellings (``Anger`` -> ``angry``, ``joy`` -> ``happy``)."""
    s = _nfc(str(raw)).strip().lower()
    return _SYNONYMS.get(s, s)


def parse_label_map(text: str | Mapping | None) -> dict[str, str]:
    """``"a=b,c=d"`` -> {"a": "b", "c": "d"} (keys lower-cased; an empty value drops that label)."""
    if not text:
        return {}
    if isinstance(text, Mapping):
        return {canonical_label(k) if k else k: str(v).strip().lower() for k, v in text.items()}
    out = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise CorpusError(f"--label-map: {item!r} is not OLD=NEW (give e.g. 'wut=angry,freude=happy')")
        old, new = item.split("=", 1)
        if not old.strip():
            raise CorpusError(f"--label-map: {item!r} has an empty OLD label")
        out[_nfc(old).strip().lower()] = _nfc(new).strip().lower()
    return out


# ------------------------------------------------------------------------------------------------ corpus specs
@dataclass(frozen=True)
class CorpusSpec:
    name: str
    prepare: Callable[..., list[dict]]
    default_protocol: str                     # "auto" = decided from the rows (folder)
    description: str
    layout: str                               # the expected layout under --root, shown by `prepare --help`
    fold_options: dict = field(default_factory=dict)   # defaults passed to make_folds for this corpus
    options: tuple[str, ...] = ()             # corpus-specific keyword options of ``prepare``


#: every corpus by name, in the order :mod:`.registry` lists their preparers (that of ``prepare --help``)
CORPORA: dict[str, CorpusSpec] = {}


def _layout(corpus: str) -> str:
    spec = CORPORA.get(corpus)
    return spec.layout if spec else "?"


def corpus_spec(name: str, default_protocol: str, description: str, layout: str, fold_options: dict | None = None,
                options: tuple[str, ...] = ()):
    """Describe the decorated ``prepare_<corpus>(root, **options)``: its protocol and expected layout, as its
    ``spec`` (a :class:`CorpusSpec`; :mod:`.registry` puts it into :data:`CORPORA`)."""

    def describe(fn: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
        fn.spec = CorpusSpec(name, fn, default_protocol, description, layout, dict(fold_options or {}),
                             tuple(options))
        return fn

    return describe


# ------------------------------------------------------------------------------------------------ helpers
#: how corpora spell a gender (CSV cells, annotation files, --speaker-regex groups) -> M / F
_GENDER_WORDS = {"m": "M", "male": "M", "man": "M", "男": "M", "f": "F", "female": "F", "woman": "F", "女": "F"}


class _Problems:
    """Collects every file that does not fit, then raises one error listing them."""

    def __init__(self, corpus: str, root: Path):
        self.corpus, self.root, self.items = corpus, root, []

    def add(self, where, reason: str) -> None:
        self.items.append((str(where), reason))

    def raise_if_any(self, what: str = "do not fit the expected naming/layout") -> None:
        if not self.items:
            return
        raise CorpusError(_listing(f"{self.corpus}: {len(self.items)} item(s) under {self.root} {what}:",
                                   [f"{w}: {r}" for w, r in self.items])
                          + f"\nExpected layout: {_layout(self.corpus)}")


def _listing(head: str, lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return head + "\n  " + "\n  ".join(shown) + more


def _check_root(corpus: str, root) -> Path:
    if root is None or str(root) == "":
        raise CorpusError(f"{corpus}: --root is required. Expected layout: {_layout(corpus)}")
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not path.exists():
        raise CorpusError(f"{corpus}: root {path} does not exist. Expected layout: {_layout(corpus)}")
    if not path.is_dir():
        raise CorpusError(f"{corpus}: root {path} is not a directory. Expected layout: {_layout(corpus)}")
    return path


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _SKIP_DIRS


def _walk(root: Path, exts: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with one of ``exts`` (case-insensitive), sorted, skipping hidden files and folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            if not _hidden(name) and os.path.splitext(name)[1].lower() in exts:
                out.append(Path(dirpath) / name)
    return out


def _rel_key(path: Path, base: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    return _nfc(rel.as_posix())


def _fold_ascii(s: str) -> tuple[str, str]:
    """Two spellings to compare folder names robustly: accents stripped (NFKD), and non-ASCII characters dropped
    (matches names whose accents were mangled by a zip tool, e.g. 'ColŠre' for 'Colère')."""
    s = _nfc(s).casefold()
    stripped = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    dropped = "".join(c for c in s if ord(c) < 128)
    return stripped, dropped


def _find(base: Path, names: Iterable[str], want_dir: bool, depth: int = 3) -> list[Path]:
    """Paths named one of ``names`` (case-insensitive) up to ``depth`` levels below ``base``, shallowest first."""
    wanted = {n.lower() for n in names}
    found, level = [], [base]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if _hidden(e.name):
                    continue
                is_dir = e.is_dir()
                if e.name.lower() in wanted and is_dir == want_dir:
                    found.append(Path(e.path))
                if is_dir:
                    nxt.append(Path(e.path))
        if found:
            return found
        level = nxt
    return found


def _entry(path: Path, key: str, label: str, speaker: str, gender: str = "", **extra) -> dict:
    return {"key": key, "path": os.path.abspath(str(path)), "label": label, "speaker": speaker, "gender": gender,
            **extra}


class _Misfit(Exception):
    """A file whose name or folder does not fit the corpus's naming scheme; the message says how."""


def _scan_named(corpus: str, root, parse: Callable[[Path], tuple[str, str, str, str | None] | None],
                exts: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[dict]:
    """The preparer of a corpus whose labels and speakers are in its file and folder names.

    ``parse(path)`` -> (label, speaker, gender, utterance id or None), None to leave a file out on purpose, or raises
    _Misfit(reason): every misfit is listed in one CorpusError, never dropped. Utterance ids catch two copies of
    the corpus under one root.
    """
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    entries, utt_ids = [], {}
    for path in _walk(root, exts):
        try:
            parsed = parse(path)
        except _Misfit as why:
            problems.add(path.relative_to(root), str(why))
            continue
        if parsed is None:
            continue
        label, speaker, gender, utt_id = parsed
        key = _rel_key(path, root)
        if utt_id is not None:
            utt_ids[key] = utt_id
        entries.append(_entry(path, key, label, speaker, gender))
    return _finish(corpus, root, entries, problems, utt_ids=utt_ids or None)


def _finish(corpus: str, root: Path, entries: list[dict], problems: _Problems, *,
            multichannel_channel: int | None = None, utt_ids: Mapping[str, str] | None = None) -> list[dict]:
    """Check collected problems, duplicates and audio; add durations. -> rows sorted by key."""
    problems.raise_if_any()
    if not entries:
        raise CorpusError(f"{corpus}: no usable audio found under {root}. Expected layout: {_layout(corpus)}")
    by_key: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        by_key[e["key"]].append(e)
    dups = [f"{k}: {', '.join(x['path'] for x in v)}" for k, v in sorted(by_key.items()) if len(v) > 1]
    if utt_ids is not None:  # the same utterance twice under different paths (two copies of the corpus)
        seen: dict[str, list[str]] = defaultdict(list)
        for e in entries:
            seen[utt_ids[e["key"]]].append(e["path"])
        dups += [f"utterance {u}: {', '.join(p)}" for u, p in sorted(seen.items()) if len(p) > 1]
    if dups:
        raise CorpusError(_listing(f"{corpus}: {len(dups)} utterance(s) occur more than once under {root} "
                                   f"(two copies of the corpus? point --root at one of them):", dups))
    unreadable = []
    for e in entries:
        try:
            info = audio_info(e["path"])
        except AudioError as err:
            unreadable.append(str(err))
            continue
        if info.frames <= 0 or info.sample_rate <= 0:
            unreadable.append(f"{e['path']}: empty audio (0 samples)")
            continue
        e["duration"] = round(info.duration, 3)
        if multichannel_channel is not None:
            e["channel"] = str(multichannel_channel) if info.channels > 2 else ""
    if unreadable:
        raise CorpusError(_listing(f"{corpus}: {len(unreadable)} audio file(s) cannot be read:", unreadable))
    return sorted(entries, key=lambda e: e["key"])


def _pyav_available() -> bool:
    """Whether PyAV (the ``media`` extra) is installed: .mp4 clips are then read as they are."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


def _mp4_error(corpus: str, root: Path, mp4s: list[Path], out_hint: str) -> CorpusError:
    wav_dir = f"{root}_wav"
    cmd = (f"cd {_shq(root)} && find . -name '*.mp4' ! -name '._*' -print0 | while IFS= read -r -d '' f; do "
           f"mkdir -p {_shq(wav_dir)}/\"$(dirname \"$f\")\" && ffmpeg -nostdin -loglevel error -y -i \"$f\" -vn "
           f"-map 0:a:0 -c:a pcm_s16le {_shq(wav_dir)}/\"${{f%.mp4}}.wav\"; done")
    head = (f"{corpus}: {len(mp4s)} clip(s) exist only as .mp4 (e.g. {mp4s[0]}), and PyAV, which reads them, is "
            f"not installed: pip install 'emotion2vec[media]' (FFmpeg inside its wheel) and run again. Or extract "
            f"the audio once with a system ffmpeg (all channels kept, native rate) into a mirror tree and pass it "
            f"with --audio-dir:\n  {cmd}\n  emotion2vec prepare {corpus} --root {_shq(root)} "
            f"--audio-dir {_shq(wav_dir)} {out_hint}")
    return CorpusError(head)


def _scaled(value: float, low: float, high: float) -> str:
    """A rating on [low, high] as a data.tsv cell on [0, 1] (4 decimals)."""
    return f"{(value - low) / (high - low):.4f}"



def _one_line(text) -> str:
    """A transcript as one data.tsv cell: whitespace (tabs, newlines) collapsed to single spaces."""
    return " ".join(str(text or "").split())


def _shq(p) -> str:
    s = str(p)
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\"'\"'") + "'"


def _read_csv(path: Path, required: tuple[str, ...], corpus: str) -> list[dict]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in required if c not in fields]
    if missing:
        raise CorpusError(f"{corpus}: {path}: missing column(s) {', '.join(missing)} (header: {', '.join(fields)})")
    rows = []
    for row in reader:
        rows.append({(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in row.items()})
    return rows
