"""Corpus preparers: walk a corpus as distributed and return ``data.tsv`` rows (see :mod:`emotion2vec.io.manifests`).

Every preparer is ``prepare_<corpus>(root, **options) -> list[dict]`` and is registered in :data:`CORPORA` by the
``@_corpus`` line above it, which also gives its default protocol, fold options and expected layout (``--help``).
Rows are sorted by key; each has ``key, path, label, speaker, gender, duration`` (+ ``channel``, ``split``,
``session`` or ``foldN`` where the corpus has them, and what a corpus has beyond one label: ``votes`` (raters'
categorical votes: IEMOCAP, MSP-Podcast, CREMA-D), ``arousal`` / ``valence`` / ``dominance`` (IEMOCAP,
MSP-Podcast) or ``sentiment`` (CMU-MOSI / MOSEI) scaled to [0, 1], ``text`` (MELD, MOSI / MOSEI, CREMA-D, and
IEMOCAP / MSP-Podcast where their transcripts are present), ``dialog`` / ``start`` / ``end`` (IEMOCAP: the
dialogue and the utterance's time in it, seconds, for the conversation task)).

Policy: known variants of a corpus's layout are accepted (Kaggle SAVEE, CaFE's Neutre folder and mangled accents,
MELD's known broken clips, ...); anything else that does not fit -- a file name that does not parse, an unknown
label, a missing audio file -- is collected and reported in ONE :class:`CorpusError` listing the files (the first
20 and a count), never silently dropped. Deliberate skips (MELD's broken clips, MOSI/MOSEI neutral segments,
IEMOCAP labels outside the 4 classes) are logged on the ``emotion2vec.downstream`` logger.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..errors import Emotion2VecError
from ..io.audio import AUDIO_EXTENSIONS, AudioError, audio_info
from ..io.manifests import format_votes

__all__ = ["CorpusError", "CorpusSpec", "CORPORA", "ALIASES", "canonical_label", "corpus_name", "prepare_corpus",
           "default_protocol", "parse_label_map"] + [
    "prepare_iemocap", "prepare_meld", "prepare_ravdess", "prepare_ravdess_song", "prepare_savee", "prepare_emodb",
    "prepare_emovo", "prepare_cafe", "prepare_subesco", "prepare_shemo", "prepare_urdu", "prepare_aesdd",
    "prepare_resd", "prepare_m3ed", "prepare_mosi", "prepare_mosei", "prepare_msp_podcast", "prepare_crema_d",
    "prepare_folder", "prepare_emobox"]

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


# ------------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class CorpusSpec:
    name: str
    prepare: Callable[..., list[dict]]
    default_protocol: str                     # "auto" = decided from the rows (folder)
    description: str
    layout: str                               # the expected layout under --root, shown by `prepare --help`
    fold_options: dict = field(default_factory=dict)   # defaults passed to make_folds for this corpus
    options: tuple[str, ...] = ()             # corpus-specific keyword options of ``prepare``


CORPORA: dict[str, CorpusSpec] = {}  # filled by @_corpus, in the order of the preparers below


def _layout(corpus: str) -> str:
    spec = CORPORA.get(corpus)
    return spec.layout if spec else "?"


def _corpus(name: str, default_protocol: str, description: str, layout: str, fold_options: dict | None = None,
            options: tuple[str, ...] = ()):
    """Register the decorated ``prepare_<corpus>(root, **options)`` with its protocol and expected layout."""

    def register(fn: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
        CORPORA[name] = CorpusSpec(name, fn, default_protocol, description, layout, dict(fold_options or {}),
                                   tuple(options))
        return fn

    return register


# ------------------------------------------------------------------------------------------------ helpers
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


# ------------------------------------------------------------------------------------------------ IEMOCAP
_IEMOCAP_4 = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}
_IEMOCAP_ALL = {"ang": "angry", "hap": "happy", "exc": "excited", "neu": "neutral", "sad": "sad",
                "fru": "frustrated", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
                "xxx": "unknown"}
_IEMOCAP_UTT = re.compile(r"Ses0([1-5])([FM])_(.+)_([FM])(\d{3})")
#: the evaluators' category names (``C-E2:<TAB>Frustration; Anger;<TAB>()``) -> labels
_IEMOCAP_VOTE = {"neutral state": "neutral", "neutral": "neutral", "frustration": "frustrated", "anger": "angry",
                 "sadness": "sad", "happiness": "happy", "excited": "excited", "surprise": "surprise",
                 "fear": "fear", "disgust": "disgust", "other": "other"}
_IEMOCAP_VAD = re.compile(r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]")
_IEMOCAP_TIME = re.compile(r"\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]")
#: a transcription line: ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``
_IEMOCAP_LINE = re.compile(r"(Ses0[1-5][FM]_\S+_[FM]\d{3})\s*\[[^\]]*\]\s*:\s?(.*)")


def _iemocap_transcripts(sess_dir: Path) -> dict[str, str] | None:
    """Utterance id -> its words, from ``dialog/transcriptions/<dialog>.txt``; None when the folder is absent."""
    folder = sess_dir / "dialog" / "transcriptions"
    if not folder.is_dir():
        return None
    text = {}
    for f in sorted(folder.glob("*.txt")):
        if _hidden(f.name):
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _IEMOCAP_LINE.match(line.strip())
            if m:
                text[m.group(1)] = _one_line(m.group(2))
    return text


def _scaled(value: float, low: float, high: float) -> str:
    """A rating on [low, high] as a data.tsv cell on [0, 1] (4 decimals)."""
    return f"{(value - low) / (high - low):.4f}"


@_corpus('iemocap', "loso-session", "IEMOCAP, 4 classes (5531 utt.), 10 speakers",
         layout=("IEMOCAP_full_release/Session{1-5}/dialog/EmoEvaluation/<dialog>.txt (lines '[start - "
                 "end]<TAB>Ses01F_impro01_M000<TAB>neu<TAB>[V, A, D]') and "
                 'Session{1-5}/sentences/wav/<dialog>/<utterance>.wav; --root = IEMOCAP_full_release (or its '
                 'parent)'),
         options=("all_labels",))
def prepare_iemocap(root, all_labels: bool = False) -> list[dict]:
    """IEMOCAP. 4 classes by default (ang, hap+exc -> happy, neu, sad: 5531 utterances); ``all_labels`` keeps
    every label (exc stays ``excited``, xxx -> ``unknown``, oth -> ``other``: EMO-SUPERB's label set).
    speaker = session + gender of the utterance's own speaker (``Ses01M`` for ``Ses01F_impro01_M000``: the letter
    before the utterance number, not the dialog's), extra columns ``session`` (``Ses01``), ``dialog``
    (``Ses01F_impro01``), ``start`` / ``end`` (the utterance's ``[start - end]`` in the dialogue, seconds) and
    ``text`` (its words from ``dialog/transcriptions/<dialog>.txt``, when that folder exists; empty for an
    utterance the transcripts lack).
    ``votes``: one vote per category an evaluator named on the utterance's ``C-E*`` (annotators), ``C-F*`` and
    ``C-M*`` (the actors' self-evaluations) lines (Excited counts as happy unless ``all_labels``);
    ``valence``, ``arousal``, ``dominance``: the ``[V, A, D]`` consensus (1-5) scaled to [0, 1] by (x - 1) / 4."""
    corpus = "iemocap"
    root = _check_root(corpus, root)
    base = root
    if not any((root / f"Session{i}").is_dir() for i in range(1, 6)):
        found = _find(root, [f"Session{i}" for i in range(1, 6)], want_dir=True, depth=2)
        if not found:
            raise CorpusError(f"{corpus}: no Session1..Session5 folder under {root}. Expected layout: "
                              f"{_layout(corpus)}")
        base = found[0].parent
    problems = _Problems(corpus, base)
    entries, utt_ids = [], {}
    dropped: Counter = Counter()
    table = _IEMOCAP_ALL if all_labels else _IEMOCAP_4
    for n in range(1, 6):
        sess_dir = base / f"Session{n}"
        if not sess_dir.is_dir():
            continue
        emo_dir = sess_dir / "dialog" / "EmoEvaluation"
        label_files = sorted(p for p in emo_dir.glob("*.txt") if not _hidden(p.name)) if emo_dir.is_dir() else []
        if not label_files:
            problems.add(emo_dir, "no label files (<dialog>.txt) found")
            continue
        transcripts = _iemocap_transcripts(sess_dir)
        for lf in label_files:
            current: dict | None = None  # the entry the following C-* vote lines belong to
            for lineno, line in enumerate(lf.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if re.match(r"C-[EFM]\d*:", line):
                    if current is not None:
                        for name in line.split("\t")[1].split(";") if "\t" in line else []:
                            name = name.split(":")[0].strip().lower()
                            if not name:
                                continue
                            if name not in _IEMOCAP_VOTE:
                                problems.add(f"{lf}:{lineno}", f"unknown category {name!r} in {line.strip()!r}")
                                continue
                            vote = _IEMOCAP_VOTE[name]
                            vote = "happy" if vote == "excited" and not all_labels else vote
                            current["_votes"][vote] = current["_votes"].get(vote, 0) + 1
                    continue
                if not line.startswith("["):
                    continue
                current = None
                parts = [p.strip() for p in line.split("\t")]
                if len(parts) < 3:
                    problems.add(f"{lf}:{lineno}", f"expected '[start - end]<TAB>utterance<TAB>label', got {line!r}")
                    continue
                utt, emo = parts[1], parts[2].lower()
                m = _IEMOCAP_UTT.fullmatch(utt)
                if not m:
                    problems.add(f"{lf}:{lineno}", f"utterance id {utt!r} does not look like Ses01F_impro01_M000")
                    continue
                if int(m.group(1)) != n:
                    problems.add(f"{lf}:{lineno}", f"utterance {utt} listed under Session{n}")
                    continue
                if emo not in _IEMOCAP_ALL:
                    problems.add(f"{lf}:{lineno}", f"unknown label {emo!r} for {utt}")
                    continue
                if emo not in table:
                    dropped[emo] += 1
                    continue
                dialog = utt.rsplit("_", 1)[0]
                wav = sess_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    problems.add(wav, f"audio missing for labelled utterance {utt}")
                    continue
                vad = _IEMOCAP_VAD.fullmatch(parts[3]) if len(parts) > 3 else None
                if not vad:
                    problems.add(f"{lf}:{lineno}", f"no [V, A, D] triple for {utt}")
                    continue
                when = _IEMOCAP_TIME.fullmatch(parts[0])
                if not when:
                    problems.add(f"{lf}:{lineno}", f"no [start - end] time for {utt}")
                    continue
                gender = m.group(4)
                key = _rel_key(wav, base)
                utt_ids[key] = utt
                v, a, d = (float(x) for x in vad.groups())
                extra = {} if transcripts is None else {"text": transcripts.get(utt, "")}
                current = _entry(wav, key, table[emo], f"Ses0{n}{gender}", gender, session=f"Ses0{n}",
                                 dialog=dialog, start=f"{float(when.group(1)):.4f}", end=f"{float(when.group(2)):.4f}",
                                 valence=_scaled(v, 1, 5), arousal=_scaled(a, 1, 5), dominance=_scaled(d, 1, 5),
                                 **extra, _votes={})
                entries.append(current)
    for e in entries:
        e["votes"] = format_votes(e.pop("_votes"))
    if dropped:
        log.info("iemocap: kept %d utterances (%s); left out %d with other labels (%s) -- --all-labels keeps them",
                 len(entries), "4 classes, exc merged into happy" if not all_labels else "all labels",
                 sum(dropped.values()), ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return _finish(corpus, base, entries, problems, utt_ids=utt_ids)


# ------------------------------------------------------------------------------------------------ MELD
_MELD_LABELS = {"neutral": "neutral", "joy": "happy", "surprise": "surprise", "anger": "angry", "sadness": "sad",
                "disgust": "disgust", "fear": "fear"}
# (csv prefix, split column value, clip folder names in order of preference)
_MELD_SPLITS = (("train", "train", ("train_splits", "train")),
                ("dev", "valid", ("dev_splits_complete", "dev_splits", "dev")),
                ("test", "test", ("output_repeated_splits_test", "test_splits", "test")))
_MELD_BROKEN = {("train", "dia125_utt3"), ("dev", "dia110_utt7")}


@_corpus('meld', "original", "MELD (Friends), 7 classes, official train/dev/test",
         layout=('MELD.Raw/{train,dev,test}_sent_emo.csv (Dialogue_ID, Utterance_ID, Speaker, Emotion) and the '
                 'clips train_splits/, dev_splits_complete/, output_repeated_splits_test/ as diaX_uttY.mp4 as '
                 'distributed (read with PyAV: pip install emotion2vec[media]) or .wav/.flac (anywhere up to 3 '
                 'levels below --root, or below --audio-dir for a converted mirror tree)'),
         options=("audio_dir",))
def prepare_meld(root, audio_dir=None) -> list[dict]:
    """MELD: rows from {train,dev,test}_sent_emo.csv, 7 labels (joy -> happy, anger -> angry, sadness -> sad),
    speaker = the CSV's Speaker, split train/valid/test, key ``<train|dev|test>/diaX_uttY``. The two known broken
    clips (train dia125_utt3, dev dia110_utt7) are skipped with a note. Audio: .wav/.flac next to the release's
    .mp4 or in a mirror tree given as ``audio_dir``, else the release's .mp4 itself when PyAV is installed (the
    ``media`` extra; extraction then decodes it directly); clips with more than 2 channels get ``channel=2``."""
    corpus = "meld"
    root = _check_root(corpus, root)
    audio_base = _check_root(corpus, audio_dir) if audio_dir else root
    problems = _Problems(corpus, root)
    entries, mp4_only, notes = [], [], []
    csv_found = False
    for prefix, split, folder_names in _MELD_SPLITS:
        csvs = _find(root, [f"{prefix}_sent_emo.csv"], want_dir=False, depth=3)
        if not csvs:
            problems.add(root / f"{prefix}_sent_emo.csv", "label file not found (searched 3 levels deep)")
            continue
        csv_found = True
        rows = _read_csv(csvs[0], ("Dialogue_ID", "Utterance_ID", "Speaker", "Emotion"), corpus)
        folders = []
        for name in folder_names:
            folders = _find(audio_base, [name], want_dir=True, depth=3)
            if folders:
                break
        mp4_folders = folders if audio_base == root else []
        if audio_base != root:
            for name in folder_names:
                mp4_folders = _find(root, [name], want_dir=True, depth=3)
                if mp4_folders:
                    break
        if not folders:
            problems.add(audio_base / folder_names[0], f"clip folder for the {prefix} split not found "
                                                       f"(looked for {', '.join(folder_names)})")
            continue
        folder = folders[0]
        for i, row in enumerate(rows, start=2):
            d, u = row["Dialogue_ID"], row["Utterance_ID"]
            if not (d.isdigit() and u.isdigit()):
                problems.add(f"{csvs[0]}:{i}", f"Dialogue_ID/Utterance_ID {d!r}/{u!r} are not integers")
                continue
            name = f"dia{int(d)}_utt{int(u)}"
            if (prefix, name) in _MELD_BROKEN:
                notes.append(f"{prefix}/{name}")
                continue
            emo = row["Emotion"].strip().lower()
            if emo not in _MELD_LABELS:
                problems.add(f"{csvs[0]}:{i}", f"unknown emotion {row['Emotion']!r}")
                continue
            speaker = row["Speaker"].strip()
            if not speaker:
                problems.add(f"{csvs[0]}:{i}", "empty Speaker")
                continue
            audio = next((folder / f"{name}{ext}" for ext in (".wav", ".flac", ".WAV", ".FLAC")
                          if (folder / f"{name}{ext}").is_file()), None)
            if audio is None:
                mp4 = next((f / f"{name}.mp4" for f in mp4_folders if (f / f"{name}.mp4").is_file()), None)
                if mp4 is None:
                    problems.add(folder / f"{name}.wav", f"audio missing for {prefix} row {i} of {csvs[0].name}")
                    continue
                if not _pyav_available():
                    mp4_only.append(mp4)
                    continue
                audio = mp4
            entries.append(_entry(audio, f"{prefix}/{name}", _MELD_LABELS[emo], speaker.replace("\t", " "), "",
                                  channel="", split=split, text=_one_line(row.get("Utterance", ""))))
    if not csv_found:
        raise CorpusError(f"{corpus}: no *_sent_emo.csv under {root}. Expected layout: {_layout(corpus)}")
    if mp4_only:
        raise _mp4_error(corpus, root, mp4_only, "--out manifests/meld")
    if notes:
        log.info("meld: skipped the known broken clip(s) %s", ", ".join(notes))
    return _finish(corpus, root, entries, problems, multichannel_channel=2)


# ------------------------------------------------------------------------------------------------ RAVDESS
_RAV_EMO = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
            "07": "disgust", "08": "surprise"}
_RAV_NAME = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")


def _ravdess(root, corpus: str, vocal: str) -> list[dict]:
    allowed = set(_RAV_EMO) if vocal == "01" else {"01", "02", "03", "04", "05", "06"}
    other = 0

    def parse(path: Path):
        nonlocal other
        m = _RAV_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not MM-VV-EE-II-SS-RR-AA (7 two-digit fields)")
        modality, channel, emo, intensity, statement, rep, actor = m.groups()
        if channel in ("01", "02") and channel != vocal:
            other += 1
            return None
        reasons = []
        if modality != "03":
            reasons.append(f"modality {modality} (03 = audio-only expected)")
        if channel not in ("01", "02"):
            reasons.append(f"vocal channel {channel} (01 speech / 02 song)")
        if emo not in allowed:
            reasons.append(f"emotion code {emo} (valid: {', '.join(sorted(allowed))})")
        if intensity not in ("01", "02") or statement not in ("01", "02") or rep not in ("01", "02"):
            reasons.append("intensity/statement/repetition must be 01 or 02")
        if not 1 <= int(actor) <= 24:
            reasons.append(f"actor {actor} (01-24)")
        pm = re.fullmatch(r"actor_(\d{2})", path.parent.name.lower())
        if pm and pm.group(1) != actor:
            reasons.append(f"actor {actor} inside folder {path.parent.name}")
        if reasons:
            raise _Misfit("; ".join(reasons))
        return _RAV_EMO[emo], f"Actor_{actor}", "M" if int(actor) % 2 else "F", path.stem

    rows = _scan_named(corpus, root, parse)
    if other:
        log.info("%s: ignored %d file(s) of the other vocal channel (%s)", corpus, other,
                 "song: use ravdess-song" if vocal == "01" else "speech: use ravdess")
    return rows


@_corpus('ravdess', "random-kfold", "RAVDESS speech, 8 classes, 24 actors",
         layout=('Audio_Speech_Actors_01-24/Actor_XX/03-01-EE-II-SS-RR-AA.wav '
                 '(modality-channel-emotion-intensity-statement-repetition-actor; odd actor = male)'))
def prepare_ravdess(root) -> list[dict]:
    """RAVDESS speech (03-01-*): 8 labels, speaker ``Actor_XX``, odd actor = M. Song files are ignored (noted)."""
    return _ravdess(root, "ravdess", "01")


@_corpus('ravdess-song', "random-kfold", "RAVDESS song, 6 classes, 23 actors",
         layout=('Audio_Song_Actors_01-24/Actor_XX/03-02-EE-II-SS-RR-AA.wav (emotions 01-06; no Actor_18)'),
         fold_options={"folds": 5})
def prepare_ravdess_song(root) -> list[dict]:
    """RAVDESS song (03-02-*): 6 labels (neutral, calm, happy, sad, angry, fear)."""
    return _ravdess(root, "ravdess-song", "02")


# ------------------------------------------------------------------------------------------------ SAVEE
_SAVEE_EMO = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
              "su": "surprise"}
_SAVEE_SPK = ("DC", "JE", "JK", "KL")
_SAVEE_FLAT = re.compile(r"(DC|JE|JK|KL)_(a|d|f|h|n|sa|su)(\d{2})")
_SAVEE_ORIG = re.compile(r"(a|d|f|h|n|sa|su)(\d{2})")


@_corpus('savee', "random-kfold", "SAVEE, 7 classes, 4 male speakers",
         layout=('AudioData/{DC,JE,JK,KL}/{a,d,f,h,n,sa,su}NN.wav (original) or flat DC_a01.wav (Kaggle)'))
def prepare_savee(root) -> list[dict]:
    """SAVEE: original AudioData/<SPK>/<e>NN.wav or Kaggle's flat <SPK>_<e>NN.wav; 7 labels, 4 male speakers."""
    def parse(path: Path):
        m = _SAVEE_FLAT.fullmatch(path.stem)
        if m:
            spk, emo, num = m.groups()
        else:
            m = _SAVEE_ORIG.fullmatch(path.stem)
            if not m or path.parent.name not in _SAVEE_SPK:
                raise _Misfit("expected <SPK>/<e>NN.wav or <SPK>_<e>NN.wav with SPK in DC/JE/JK/KL and e in "
                              "a/d/f/h/n/sa/su")
            spk, (emo, num) = path.parent.name, m.groups()
        return _SAVEE_EMO[emo], spk, "M", f"{spk}_{emo}{num}"

    return _scan_named("savee", root, parse)


# ------------------------------------------------------------------------------------------------ EmoDB
_EMODB_EMO = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_EMODB_SPK = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M",
              "16": "F"}
_EMODB_NAME = re.compile(r"(\d{2})([ab]\d{2})([A-Z])([a-z])")


@_corpus('emodb', "random-kfold", "EmoDB (German), 7 classes, 10 speakers",
         layout=('wav/03a01Wa.wav (speaker 2 digits, text a01..b10, emotion W/L/E/A/F/T/N, version letter)'))
def prepare_emodb(root) -> list[dict]:
    """EmoDB (Berlin): wav/SSTTTEV.wav, 7 labels, 10 speakers with known genders."""
    def parse(path: Path):
        m = _EMODB_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not SSTTTEV (e.g. 03a01Wa)")
        spk, _text, emo, _ver = m.groups()
        if spk not in _EMODB_SPK:
            raise _Misfit(f"unknown speaker {spk}")
        if emo not in _EMODB_EMO:
            raise _Misfit(f"unknown emotion letter {emo} (W/L/E/A/F/T/N)")
        return _EMODB_EMO[emo], spk, _EMODB_SPK[spk], path.stem

    return _scan_named("emodb", root, parse)


# ------------------------------------------------------------------------------------------------ EMOVO
_EMOVO_EMO = {"neu": "neutral", "dis": "disgust", "gio": "happy", "pau": "fear", "rab": "angry", "sor": "surprise",
              "tri": "sad"}
_EMOVO_NAME = re.compile(r"(neu|dis|gio|pau|rab|sor|tri)-([fm][1-3])-([a-z]\d)")


@_corpus('emovo', "random-kfold", "EMOVO (Italian), 7 classes, 6 speakers",
         layout=('{f1,f2,f3,m1,m2,m3}/<emo>-<speaker>-<sentence>.wav, emo in neu/dis/gio/pau/rab/sor/tri'))
def prepare_emovo(root) -> list[dict]:
    """EMOVO (Italian): <spk>/<emo>-<spk>-<sentence>.wav, 7 labels, speakers f1-f3/m1-m3."""
    def parse(path: Path):
        m = _EMOVO_NAME.fullmatch(path.stem.lower())
        if not m:
            raise _Misfit("name is not <emo>-<spk>-<sentence> (e.g. rab-f1-b1)")
        emo, spk, _sent = m.groups()
        parent = path.parent.name.lower()
        if re.fullmatch(r"[fm][1-3]", parent) and parent != spk:
            raise _Misfit(f"speaker {spk} inside folder {path.parent.name}")
        return _EMOVO_EMO[emo], spk, spk[0].upper(), path.stem.lower()

    return _scan_named("emovo", root, parse)


# ------------------------------------------------------------------------------------------------ CaFE
_CAFE_EMO = {"C": ("angry", "Colère"), "D": ("disgust", "Dégoût"), "J": ("happy", "Joie"),
             "N": ("neutral", "Neutre"), "P": ("fear", "Peur"), "S": ("surprise", "Surprise"),
             "T": ("sad", "Tristesse")}
_CAFE_NAME = re.compile(r"(\d{2})-([CDJNPST])-([12])-(\d)")
_CAFE_INTENSITY = {"1": "Faible", "2": "Fort"}


def _same_folder(actual: str, expected: str) -> bool:
    a, e = _fold_ascii(actual), _fold_ascii(expected)
    return a[0] == e[0] or a[1] == e[1]


@_corpus('cafe', "random-kfold", "CaFE (Canadian French), 7 classes, 12 actors",
         layout=('CaFE_48k/<Émotion>/{Faible,Fort}/AA-E-I-S.wav and CaFE_48k/Neutre/AA-N-1-S.wav (E in '
                 'C/D/J/N/P/S/T; folder accents may be decomposed or mangled; .aiff of the 192 kHz release '
                 'accepted)'))
def prepare_cafe(root) -> list[dict]:
    """CaFE (Canadian French): <Émotion>/<Faible|Fort>/AA-E-I-S.wav, Neutre/AA-N-1-S.wav; 7 labels, 12 actors
    (odd = M). Folder names are compared accent-insensitively (NFC/NFD and zip-mangled accents accepted) and must
    agree with the emotion and intensity in the file name."""
    def parse(path: Path):
        m = _CAFE_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not AA-E-I-S (e.g. 01-C-1-1)")
        actor, emo, intensity, _sent = m.groups()
        label, emo_folder = _CAFE_EMO[emo]
        parent, grand = path.parent.name, path.parent.parent.name
        if emo == "N":
            ok = _same_folder(parent, emo_folder) or (_same_folder(grand, emo_folder)
                                                      and _same_folder(parent, _CAFE_INTENSITY[intensity]))
            where = f"{emo_folder}/"
        else:
            ok = _same_folder(grand, emo_folder) and _same_folder(parent, _CAFE_INTENSITY[intensity])
            where = f"{emo_folder}/{_CAFE_INTENSITY[intensity]}/"
        if not ok:
            raise _Misfit(f"emotion {emo}, intensity {intensity} belongs in {where}")
        if not 1 <= int(actor) <= 12:
            raise _Misfit(f"actor {actor} (01-12)")
        return label, actor, "M" if int(actor) % 2 else "F", path.stem

    return _scan_named("cafe", root, parse, AUDIO_EXTENSIONS + _AIFF)


# ------------------------------------------------------------------------------------------------ SUBESCO
_SUBESCO_NAME = re.compile(r"([FM])_(\d{2})_([A-Za-z]+)_S_(\d{1,2})_(ANGRY|DISGUST|FEAR|HAPPY|NEUTRAL|SAD|SURPRISE)"
                           r"_(\d{1,2})", re.IGNORECASE)


@_corpus('subesco', "random-kfold", "SUBESCO (Bangla), 7 classes, 20 speakers",
         layout=('flat F_01_OISHI_S_1_ANGRY_1.wav (gender_speaker_NAME_S_sentence_EMOTION_take)'))
def prepare_subesco(root) -> list[dict]:
    """SUBESCO (Bangla): F_01_OISHI_S_1_ANGRY_1.wav, 7 labels, speaker ``F_01`` (gender + number)."""
    def parse(path: Path):
        m = _SUBESCO_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not G_NN_NAME_S_n_EMOTION_t")
        g, num, _name, _sent, emo, _take = m.groups()
        return canonical_label(emo), f"{g.upper()}_{num}", g.upper(), path.stem.upper()

    return _scan_named("subesco", root, parse)


# ------------------------------------------------------------------------------------------------ ShEMO
_SHEMO_EMO = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad", "W": "surprise", "F": "fear"}
_SHEMO_NAME = re.compile(r"([FM])(\d{2})([AHNSWF])(\d{2})")


@_corpus('shemo', "random-kfold", "ShEMO (Persian), 6 classes",
         layout=('{male,female}/M36S02.wav (gender+speaker number, emotion A/H/N/S/W/F, utterance number)'))
def prepare_shemo(root) -> list[dict]:
    """ShEMO (Persian): {male,female}/M36S02.wav; 6 labels; speaker = first 3 characters (``M36``)."""
    def parse(path: Path):
        m = _SHEMO_NAME.fullmatch(path.stem.upper())
        if not m:
            raise _Misfit("name is not GNNENN (e.g. M36S02; emotion A/H/N/S/W/F)")
        g, num, emo, _n = m.groups()
        parent = path.parent.name.lower()
        if parent in ("male", "female") and parent[0] != g.lower():
            raise _Misfit(f"gender {g} inside folder {path.parent.name}")
        return _SHEMO_EMO[emo], f"{g}{num}", g, path.stem.upper()

    return _scan_named("shemo", root, parse)


# ------------------------------------------------------------------------------------------------ URDU
_URDU_FOLDERS = {"angry": "A", "happy": "H", "neutral": "N", "sad": "S"}
_URDU_NAME = re.compile(r"(S([MF])\d+)_[^_]+_([AHNS])\d+")


@_corpus('urdu', "random-kfold", "URDU, 4 classes, 29 speakers",
         layout=("{Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav (speaker S<M|F><n> before the first '_', emotion "
                 'letter starts the last token)'))
def prepare_urdu(root) -> list[dict]:
    """URDU: {Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav; label = folder (its letter must start the last token),
    speaker = token before the first '_', gender = its second letter."""
    def parse(path: Path):
        folder = path.parent.name.lower()
        if folder not in _URDU_FOLDERS:
            raise _Misfit(f"folder {path.parent.name!r} is not Angry/Happy/Neutral/Sad")
        m = _URDU_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not S<M|F><n>_<...>_<E><nnn>")
        spk, g, letter = m.groups()
        if letter != _URDU_FOLDERS[folder]:
            raise _Misfit(f"emotion letter {letter} inside folder {path.parent.name}")
        return folder, spk, g, None

    return _scan_named("urdu", root, parse)


# ------------------------------------------------------------------------------------------------ AESDD
_AESDD_FOLDERS = {"anger": "a", "disgust": "d", "fear": "f", "happiness": "h", "sadness": "s"}
_AESDD_NAME = re.compile(r"([adfhs])(\d{2})\s*\((\d+)\)\s*([a-z]?)")


@_corpus('aesdd', "random-kfold", "AESDD (Greek), 5 classes",
         layout=('{anger,disgust,fear,happiness,sadness}/a03 (3).wav (emotion letter, utterance, (actor))'))
def prepare_aesdd(root) -> list[dict]:
    """AESDD (Greek): {anger,...}/a03 (3).wav; label = folder (must agree with the first letter), speaker =
    the actor number in parentheses, gender unknown."""
    def parse(path: Path):
        folder = path.parent.name.lower()
        if folder not in _AESDD_FOLDERS:
            raise _Misfit(f"folder {path.parent.name!r} is not one of {', '.join(_AESDD_FOLDERS)}")
        m = _AESDD_NAME.fullmatch(path.stem.strip())
        if not m:
            raise _Misfit("name is not <e><nn> (<actor>) (e.g. 'a03 (3)')")
        letter, _utt, actor, _suffix = m.groups()
        if letter != _AESDD_FOLDERS[folder]:
            raise _Misfit(f"emotion letter {letter} inside folder {path.parent.name}")
        return canonical_label(folder), str(int(actor)), "", None

    return _scan_named("aesdd", root, parse)


# ------------------------------------------------------------------------------------------------ RESD
_RESD_LABELS = {"anger": "angry", "disgust": "disgust", "enthusiasm": "enthusiasm", "fear": "fear",
                "happiness": "happy", "neutral": "neutral", "sadness": "sad"}
_RESD_NAME = re.compile(r"(\d+)_([a-z]+)_([a-z]+)[ _]([a-z])_(\d+)")


@_corpus('resd', "original", "RESD (Russian), 7 classes, official train/test",
         layout=('train.csv and test.csv (columns path, emotion; path relative to train/ or test/) and '
                 '{train,test}/<e1>_<e2>_<id>/<id>_<e1>_<e2>_<letter>_<n>.wav'))
def prepare_resd(root) -> list[dict]:
    """RESD (Russian): train.csv/test.csv (path, emotion) + train/, test/ folders; split train/test (no official
    valid: the ``original`` protocol takes 10% of train). The corpus has no speaker ids: speaker = the scripted
    dialogue number + the role's emotion letter from the file name (``32_h``), a stand-in, not an identity."""
    corpus = "resd"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    entries = []
    for split in ("train", "test"):
        found = _find(root, [f"{split}.csv"], want_dir=False, depth=2)
        if not found:
            problems.add(root / f"{split}.csv", "label file not found")
            continue
        table = found[0]
        base = table.parent
        for i, row in enumerate(_read_csv(table, ("path", "emotion"), corpus), start=2):
            rel = row["path"].replace("\\", "/")
            audio = next((c for c in (base / split / rel, base / rel) if c.is_file()), None)
            if audio is None:
                problems.add(f"{table}:{i}", f"audio {rel!r} not found under {base / split} or {base}")
                continue
            emo = row["emotion"].strip().lower()
            if emo not in _RESD_LABELS:
                problems.add(f"{table}:{i}", f"unknown emotion {row['emotion']!r}")
                continue
            m = _RESD_NAME.fullmatch(audio.stem.lower())
            if not m:
                problems.add(f"{table}:{i}", f"file name {audio.name!r} is not <id>_<e1>_<e2>_<letter>_<n>")
                continue
            entries.append(_entry(audio, _rel_key(audio, root) if audio.is_relative_to(root) else
                                  f"{split}/{audio.stem}", _RESD_LABELS[emo], f"{int(m.group(1)):02d}_{m.group(4)}",
                                  "", split=split))
    return _finish(corpus, root, entries, problems)


# ------------------------------------------------------------------------------------------------ M3ED
_M3ED_LABELS = {"neutral": "neutral", "happy": "happy", "surprise": "surprise", "sad": "sad", "disgust": "disgust",
                "anger": "angry", "fear": "fear"}
_GENDER_WORDS = {"m": "M", "male": "M", "man": "M", "男": "M", "f": "F", "female": "F", "woman": "F", "女": "F"}


@_corpus('m3ed', "original", "M3ED (Chinese), 7 classes, official movie-level split",
         layout=('annotation.json (movie -> dialog -> Dialog -> utterance {Speaker, '
                 'EmoAnnotation.final_main_emo}), splitInfo/movie_list_{train,val,test}.txt and '
                 'modality_speech/<SpeakerLetter>_<utterance_id>.wav'))
def prepare_m3ed(root) -> list[dict]:
    """M3ED (Chinese TV): annotation.json + splitInfo/movie_list_{train,val,test}.txt + modality_speech/; 7 labels
    (final_main_emo), speaker = ``<movie>_<character name>``, split from the movie lists (speaker-disjoint)."""
    corpus = "m3ed"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    ann = _find(root, ["annotation.json"], want_dir=False, depth=2)
    if not ann:
        raise CorpusError(f"{corpus}: annotation.json not found under {root}. Expected layout: {_layout(corpus)}")
    base = ann[0].parent
    try:
        meta = json.loads(ann[0].read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{corpus}: {ann[0]}: invalid JSON ({e.msg}, line {e.lineno})") from None
    split_of: dict[str, str] = {}
    for name, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        lists = _find(root, [f"movie_list_{name}.txt"], want_dir=False, depth=3)
        if not lists:
            problems.add(base / "splitInfo" / f"movie_list_{name}.txt", "split list not found")
            continue
        for movie in lists[0].read_text(encoding="utf-8").split():
            if movie in split_of and split_of[movie] != split:
                problems.add(lists[0], f"movie {movie} is in both {split_of[movie]} and {split}")
            split_of[movie] = split
    speech = _find(root, ["modality_speech"], want_dir=True, depth=2)
    speech_dir = speech[0] if speech else base / "modality_speech"
    if not speech_dir.is_dir():
        problems.add(speech_dir, "audio folder not found")
        problems.raise_if_any()
    entries = []
    if not isinstance(meta, dict):
        raise CorpusError(f"{corpus}: {ann[0]}: expected an object movie -> dialog -> ...")
    for movie in sorted(meta):
        if movie not in split_of:
            problems.add(ann[0], f"movie {movie!r} is in no splitInfo/movie_list_*.txt")
            continue
        dialogs = meta[movie] if isinstance(meta[movie], dict) else {}
        for clip in sorted(dialogs):
            info = dialogs[clip] if isinstance(dialogs[clip], dict) else {}
            spk_info = info.get("SpeakerInfo") or {}
            utts = info.get("Dialog")
            if not isinstance(utts, dict):
                problems.add(ann[0], f"{movie}/{clip}: no 'Dialog' object")
                continue
            for utt_id in sorted(utts):
                utt = utts[utt_id] if isinstance(utts[utt_id], dict) else {}
                spk = str(utt.get("Speaker", "")).strip()
                emo = (utt.get("EmoAnnotation") or {}).get("final_main_emo")
                if isinstance(emo, list):
                    emo = emo[0] if len(emo) == 1 else None
                emo = str(emo).strip().lower() if emo is not None else ""
                if emo not in _M3ED_LABELS:
                    problems.add(ann[0], f"{movie}/{clip}/{utt_id}: unknown final_main_emo {emo!r}")
                    continue
                if not spk:
                    problems.add(ann[0], f"{movie}/{clip}/{utt_id}: no Speaker")
                    continue
                wav = speech_dir / f"{spk}_{utt_id}.wav"
                if not wav.is_file():
                    problems.add(wav, f"audio missing for {utt_id}")
                    continue
                who = spk_info.get(spk) if isinstance(spk_info, dict) else None
                who = who if isinstance(who, dict) else {}
                name = str(who.get("Name") or "").strip()
                gender = _GENDER_WORDS.get(str(who.get("Gender") or "").strip().lower(), "")
                speaker = f"{movie}_{name}" if name else f"{movie}_{clip}_{spk}"
                entries.append(_entry(wav, _rel_key(wav, root), _M3ED_LABELS[emo], speaker, gender,
                                      split=split_of[movie]))
    return _finish(corpus, root, entries, problems)


# ------------------------------------------------------------------------------------------------ CMU-MOSI / MOSEI
def _mmsa(root, corpus: str, audio_dir=None) -> list[dict]:
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    labels = _find(root, ["label.csv"], want_dir=False, depth=2)
    if not labels:
        raise CorpusError(f"{corpus}: label.csv not found under {root}. Expected layout: {_layout(corpus)}")
    base = labels[0].parent
    wav_dir = _check_root(corpus, audio_dir) if audio_dir else base / "wav"
    raw_dir = base / "Raw"
    entries, mp4_only, neutral = [], [], 0
    modes = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
    for i, row in enumerate(_read_csv(labels[0], ("video_id", "clip_id", "label", "mode"), corpus), start=2):
        vid, clip = row["video_id"], row["clip_id"]
        try:
            score = float(row["label"])
        except ValueError:
            problems.add(f"{labels[0]}:{i}", f"label {row['label']!r} is not a number")
            continue
        mode = modes.get(row["mode"].strip().lower())
        if mode is None or not vid or not clip or not math.isfinite(score):
            problems.add(f"{labels[0]}:{i}", f"bad row (video_id {vid!r}, clip_id {clip!r}, mode {row['mode']!r})")
            continue
        if score == 0:
            neutral += 1
            continue
        audio = next((wav_dir / vid / f"{clip}{e}" for e in (".wav", ".flac")
                      if (wav_dir / vid / f"{clip}{e}").is_file()), None)
        if audio is None:
            mp4 = raw_dir / vid / f"{clip}.mp4"
            if mp4.is_file():
                mp4_only.append(mp4)
            else:
                problems.add(wav_dir / vid / f"{clip}.wav", f"audio missing for row {i}")
            continue
        entries.append(_entry(audio, f"{vid}/{clip}", "positive" if score > 0 else "negative", vid, "", split=mode,
                              sentiment=_scaled(score, -3, 3), text=_one_line(row.get("text", ""))))
    if mp4_only and not entries:
        wav = base / "wav"
        raise CorpusError(
            f"{corpus}: no wav/<video_id>/<clip_id>.wav, only {len(mp4_only)} Raw/*.mp4 clip(s), which soundfile "
            f"cannot read (e.g. {mp4_only[0]}). Extract them once with ffmpeg:\n  cd {_shq(raw_dir)} && find . "
            f"-name '*.mp4' -print0 | while IFS= read -r -d '' f; do mkdir -p {_shq(wav)}/\"$(dirname \"$f\")\" && "
            f"ffmpeg -nostdin -loglevel error -y -i \"$f\" -vn -ac 1 -ar 16000 -c:a pcm_s16le "
            f"{_shq(wav)}/\"${{f%.mp4}}.wav\"; done")
    for mp4 in mp4_only:
        problems.add(mp4, "only the .mp4 exists (extract it to wav/ with ffmpeg)")
    if neutral:
        log.info("%s: binary sentiment: left out %d neutral segment(s) (label 0)", corpus, neutral)
    return _finish(corpus, root, entries, problems)


@_corpus('mosi', "original", "CMU-MOSI, binary sentiment (neutral left out)",
         layout=('MMSA layout: label.csv (video_id, clip_id, text, label, ..., mode in train/valid/test) and '
                 'wav/<video_id>/<clip_id>.wav (or --audio-dir DIR holding <video_id>/<clip_id>.wav)'),
         options=("audio_dir",))
def prepare_mosi(root, audio_dir=None) -> list[dict]:
    """CMU-MOSI, MMSA layout: binary sentiment (label > 0 positive, < 0 negative, 0 left out), speaker = video_id,
    split from ``mode``; the continuous score (-3..3) is kept as ``sentiment`` scaled to [0, 1] by (x + 3) / 6 (a
    regression target), the transcript as ``text``."""
    return _mmsa(root, "mosi", audio_dir)


@_corpus('mosei', "original", "CMU-MOSEI, binary sentiment (neutral left out)",
         layout=('MMSA layout: label.csv (video_id, clip_id, text, label, ..., mode in train/valid/test) and '
                 'wav/<video_id>/<clip_id>.wav (or --audio-dir DIR holding <video_id>/<clip_id>.wav)'),
         options=("audio_dir",))
def prepare_mosei(root, audio_dir=None) -> list[dict]:
    """CMU-MOSEI, MMSA layout: as :func:`prepare_mosi`."""
    return _mmsa(root, "mosei", audio_dir)


# ------------------------------------------------------------------------------------------------ MSP-Podcast
_MSP_CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
              "C": "contempt", "N": "neutral", "O": "other", "X": "unknown"}
_MSP_SPLITS = {"train": "train", "development": "valid", "validation": "valid"}


def _msp_category(raw: str) -> str | None:
    """A rater's or the consensus category (letter code or English name) -> label; None when unknown."""
    raw = raw.strip()
    if raw.upper() in _MSP_CODES and len(raw) == 1:
        return _MSP_CODES[raw.upper()]
    low = raw.lower()
    if low.startswith("other"):
        return "other"
    label = canonical_label(low)
    return label if label in _MSP_CODES.values() else None


def _msp_votes(path: Path, corpus: str, problems: "_Problems") -> dict[str, dict[str, int]]:
    """Per file, the raters' primary categories from labels_detailed.csv: one row per rater with
    ``EmoClass_Major`` (or ``EmoClass``), or an ``EmoDetail`` cell 'WORKER; Primary; secondary,...; A:..; ...'."""
    rows = _read_csv(path, ("FileName",), corpus)
    votes: dict[str, dict[str, int]] = defaultdict(dict)
    for i, row in enumerate(rows, start=2):
        if "EmoDetail" in row:
            fields = [f.strip() for f in str(row["EmoDetail"]).split(";")]
            raw = fields[1] if len(fields) > 1 else ""
        else:
            raw = row.get("EmoClass_Major") or row.get("EmoClass") or ""
        label = _msp_category(raw)
        if label is None:
            problems.add(f"{path}:{i}", f"unknown category {raw!r}")
            continue
        name = Path(row["FileName"]).stem
        votes[name][label] = votes[name].get(label, 0) + 1
    return votes


@_corpus('msp-podcast', "original", "MSP-Podcast, 8 classes + arousal/valence/dominance, official split",
         layout=('Labels/labels_consensus.csv (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, '
                 'Split_Set in Train/Development/Test1/Test2), optional Labels/labels_detailed.csv (one row per '
                 'rater: FileName + EmoClass_Major, or an EmoDetail cell), Audios/<FileName> and optional '
                 'Transcripts/<FileName stem>.txt'),
         options=("all_labels", "test_set"))
def prepare_msp_podcast(root, all_labels: bool = False, test_set: str | None = None) -> list[dict]:
    """MSP-Podcast: 8 consensus classes (A, S, H, U, F, D, C, N; ``all_labels`` keeps O = other and X = no
    agreement as ``unknown``), split Train / Development / ``test_set`` (default Test1) -> train / valid / test,
    segments of the other test sets left out (logged); ``arousal``, ``valence``, ``dominance`` = EmoAct, EmoVal,
    EmoDom (1-7) scaled to [0, 1] by (x - 1) / 6; speaker = SpkrID (empty when Unknown); ``votes`` = the raters'
    primary categories from labels_detailed.csv when present; ``text`` = ``Transcripts/<stem>.txt`` when that
    folder exists (empty for a segment without one)."""
    corpus = "msp-podcast"
    root = _check_root(corpus, root)
    test_set = (test_set or "Test1").strip()
    found = _find(root, ["labels_consensus.csv"], want_dir=False, depth=2)
    if not found:
        raise CorpusError(f"{corpus}: Labels/labels_consensus.csv not found under {root}. Expected layout: "
                          f"{_layout(corpus)}")
    labels_csv = found[0]
    base = labels_csv.parent.parent if labels_csv.parent.name.lower() == "labels" else labels_csv.parent
    audio_dirs = _find(base, ["Audios", "Audio"], want_dir=True, depth=1)
    audio_dir = audio_dirs[0] if audio_dirs else base / "Audios"
    transcript_dirs = _find(base, ["Transcripts", "Transcript", "Transcription", "Transcriptions"], want_dir=True,
                            depth=1)
    problems = _Problems(corpus, root)
    detailed = labels_csv.parent / "labels_detailed.csv"
    votes = _msp_votes(detailed, corpus, problems) if detailed.is_file() else {}
    rows = _read_csv(labels_csv, ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
                                  "Split_Set"), corpus)
    sets = sorted({r["Split_Set"] for r in rows})
    if test_set.lower() not in {s.lower() for s in sets}:
        raise CorpusError(f"{corpus}: --test-set {test_set} is not a Split_Set of {labels_csv} ({', '.join(sets)})")
    entries, left_out, dropped = [], Counter(), Counter()
    for i, row in enumerate(rows, start=2):
        split_set = row["Split_Set"].strip()
        split = "test" if split_set.lower() == test_set.lower() else _MSP_SPLITS.get(split_set.lower())
        if split is None:
            left_out[split_set] += 1
            continue
        label = _msp_category(row["EmoClass"]) if len(row["EmoClass"].strip()) == 1 else None
        if label is None:
            problems.add(f"{labels_csv}:{i}", f"unknown EmoClass {row['EmoClass']!r}")
            continue
        if label in ("other", "unknown") and not all_labels:
            dropped[label] += 1
            continue
        try:
            act, val, dom = (float(row[c]) for c in ("EmoAct", "EmoVal", "EmoDom"))
        except ValueError:
            problems.add(f"{labels_csv}:{i}", "EmoAct / EmoVal / EmoDom are not numbers")
            continue
        audio = audio_dir / row["FileName"]
        if not audio.is_file():
            problems.add(audio, f"audio missing for row {i} of {labels_csv.name}")
            continue
        speaker = row["SpkrID"].strip()
        stem = Path(row["FileName"]).stem
        extra = {}
        if transcript_dirs:
            words = transcript_dirs[0] / f"{stem}.txt"
            extra["text"] = _one_line(words.read_text(encoding="utf-8", errors="replace")) if words.is_file() else ""
        entries.append(_entry(audio, stem, label, "" if speaker.lower() in ("unknown", "") else speaker,
                              _GENDER_WORDS.get(row["Gender"].strip().lower(), ""), split=split,
                              arousal=_scaled(act, 1, 7), valence=_scaled(val, 1, 7), dominance=_scaled(dom, 1, 7),
                              votes=format_votes(votes.get(stem, {})), **extra))
    if left_out:
        log.info("%s: left out the segments of %s (--test-set %s is the test set)", corpus,
                 ", ".join(f"{k} ({v})" for k, v in sorted(left_out.items())), test_set)
    if dropped:
        log.info("%s: left out %s -- --all-labels keeps them", corpus,
                 ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    return _finish(corpus, root, entries, problems)


# ------------------------------------------------------------------------------------------------ CREMA-D
_CREMA_EMO = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_VOTE = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
_CREMA_SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before", "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes"}
_CREMA_NAME = re.compile(r"(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)")


def _crema_votes(root: Path, corpus: str) -> tuple[dict[str, dict[str, float]], str]:
    """Per file stem, the voice-only raters' votes: counts from processedResults/tabulatedVotes.csv (rows keyed
    100000 * query type + clip, query type 1 = audio only), else the VoiceVote of summaryTable.csv (one vote per
    emotion named; ties are 'A:N'). -> (votes, the file used or '')."""
    tab = _find(root, ["tabulatedVotes.csv"], want_dir=False, depth=2)
    if tab:
        rows = _read_csv(tab[0], ("fileName",), corpus)
        index = next((c for c in rows[0] if c in ("", "Unnamed: 0")), None) if rows else None
        out: dict[str, dict[str, float]] = {}
        for row in rows:
            try:
                if index is not None and int(float(row[index])) // 100000 != 1:
                    continue
                out[row["fileName"].strip()] = {_CREMA_VOTE[c]: float(row[c]) for c in _CREMA_VOTE if row.get(c)}
            except ValueError:
                raise CorpusError(f"{corpus}: {tab[0]}: row of {row.get('fileName')!r} has non-numeric counts")
        return out, str(tab[0])
    summary = _find(root, ["summaryTable.csv"], want_dir=False, depth=2)
    if summary:
        rows = _read_csv(summary[0], ("FileName", "VoiceVote"), corpus)
        return {row["FileName"].strip(): {_CREMA_VOTE[c]: 1.0 for c in row["VoiceVote"].split(":")
                                          if c in _CREMA_VOTE} for row in rows}, str(summary[0])
    return {}, ""


@_corpus('crema-d', "speaker-kfold", "CREMA-D, 6 classes, 91 actors",
         layout=('AudioWAV/1001_DFA_ANG_XX.wav (actor_sentence_EMOTION_level, EMOTION in ANG/DIS/FEA/HAP/NEU/SAD, '
                 'level LO/MD/HI/XX); optional VideoDemographics.csv (ActorID, Sex) and processedResults/'
                 'tabulatedVotes.csv or summaryTable.csv (rater votes)'))
def prepare_crema_d(root) -> list[dict]:
    """CREMA-D: AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav; 6 labels (the acted emotion), speaker = actor,
    gender from VideoDemographics.csv when present, ``text`` = the sentence, ``votes`` = the audio-only raters'
    votes when processedResults/ is present."""
    corpus = "crema-d"
    root = _check_root(corpus, root)
    sex: dict[str, str] = {}
    demo = _find(root, ["VideoDemographics.csv"], want_dir=False, depth=2)
    if demo:
        sex = {r["ActorID"].strip(): _GENDER_WORDS.get(r["Sex"].strip().lower(), "")
               for r in _read_csv(demo[0], ("ActorID", "Sex"), corpus)}

    def parse(path: Path):
        m = _CREMA_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not AAAA_SSS_EMO_LV (e.g. 1001_DFA_ANG_XX)")
        actor, sentence, emo, _level = m.groups()
        if sentence not in _CREMA_SENTENCES:
            raise _Misfit(f"unknown sentence code {sentence}")
        return _CREMA_EMO[emo], actor, sex.get(actor, ""), path.stem

    rows = _scan_named(corpus, root, parse)
    votes, source = _crema_votes(root, corpus)
    missing = 0
    for r in rows:
        stem = Path(r["path"]).stem
        r["text"] = _CREMA_SENTENCES[stem.split("_")[1]]
        r["votes"] = format_votes(votes.get(stem, {}))
        missing += bool(votes) and not r["votes"]
    if missing:
        log.info("%s: %d clip(s) have no votes in %s", corpus, missing, source)
    return rows


# ------------------------------------------------------------------------------------------------ generic folder
@_corpus('folder', "auto", "any <label>/ folder tree",
         layout=('<label>/**/<file>.{wav,flac,ogg,mp3}: one sub-folder per label; speaker from the file name with '
                 "--speaker-regex (named group 'speaker' or the first group; optional group 'gender' = M/F)"),
         options=("speaker_regex", "label_map"))
def prepare_folder(root, speaker_regex: str | None = None, label_map=None) -> list[dict]:
    """Any corpus with one sub-folder per label: ``<label>/**/<file>``. Label = folder name, lower-cased, common
    spellings made canonical, then ``label_map`` (matched on the folder name or the canonical label; an empty
    target drops that label). ``speaker_regex`` is searched in the file name without extension: the named group
    ``speaker`` (else the first group, else the whole match) is the speaker, an optional group ``gender``
    (M/F/male/female) the gender. Without it the speaker is empty (only random-kfold then applies)."""
    corpus = "folder"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    mapping = parse_label_map(label_map)
    regex = None
    if speaker_regex:
        try:
            regex = re.compile(speaker_regex)
        except re.error as e:
            raise CorpusError(f"folder: --speaker-regex {speaker_regex!r} is not a valid regular expression: {e}")
    entries, dropped, used = [], Counter(), set()
    for path in _walk(root, AUDIO_EXTENSIONS):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            problems.add(rel, "file directly under the root; put it in a <label>/ folder")
            continue
        folder = _nfc(rel.parts[0]).strip()
        low = folder.lower()
        label = mapping.get(low, mapping.get(canonical_label(low), canonical_label(low)))
        used.update(k for k in (low, canonical_label(low)) if k in mapping)
        if label == "":
            dropped[folder] += 1
            continue
        speaker, gender = "", ""
        if regex is not None:
            m = regex.search(path.stem)
            if not m:
                problems.add(rel, f"--speaker-regex {speaker_regex!r} does not match {path.stem!r}")
                continue
            gd = m.groupdict()
            speaker = gd.get("speaker") or (m.group(1) if m.re.groups else m.group(0)) or ""
            if "gender" in gd and gd["gender"]:
                gender = _GENDER_WORDS.get(gd["gender"].strip().lower(), "")
            if not speaker:
                problems.add(rel, f"--speaker-regex {speaker_regex!r} matched an empty speaker")
                continue
        entries.append(_entry(path, _rel_key(path, root), label, speaker, gender))
    unused = sorted(set(mapping) - used)
    if unused and not problems.items:
        raise CorpusError(f"folder: --label-map names {unused}, which match no label folder under {root}")
    if dropped:
        log.info("folder: dropped by --label-map: %s", ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    return _finish(corpus, root, entries, problems)


# ------------------------------------------------------------------------------------------------ EmoBox import
def _read_json_or_jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    out = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"emobox: {path}:{n}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict) or "key" not in obj:
                    raise CorpusError(f"emobox: {path}:{n}: expected an object with a 'key'")
                out.append(obj)
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"emobox: {path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, dict):
        return [{"key": k, **(v if isinstance(v, dict) else {})} for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(x, dict) and "key" in x for x in data):
        return data
    raise CorpusError(f"emobox: {path}: expected {{key: {{wav, emo, ...}}}} or a list of objects with 'key'")


@_corpus('emobox', "emobox", "import an EmoBox data/<ds> folder with its folds",
         layout=('--emobox-data EmoBox/data/<ds> holding <ds>.jsonl (or <ds>.json), optional label_map.json and '
                 "data.seg.wrd.stm (speakers), fold_N/<ds>_{train,valid,test}_fold_N.jsonl (or .json); the 'wav' "
                 'paths (downloads/<ds>/...) are looked up under --root'),
         options=("emobox_data",))
def prepare_emobox(root, emobox_data=None) -> list[dict]:
    """Import an EmoBox dataset: rows from ``<ds>.jsonl``/``<ds>.json`` (key = EmoBox key, label via label_map.json
    when present, speaker from data.seg.wrd.stm when present), audio = the ``wav`` path looked up under ``root``
    (as given, without a leading ``downloads/``, or without ``downloads/<ds>/``), and EmoBox's folds as columns
    ``fold1``, ``fold2``, ... (train/valid/test/empty) for the ``emobox`` protocol."""
    corpus = "emobox"
    root = _check_root(corpus, root)
    if not emobox_data:
        raise CorpusError("emobox: --emobox-data DIR is required (EmoBox's data/<ds> folder). "
                          f"Expected layout: {_layout(corpus)}")
    data_dir = Path(os.path.abspath(os.path.expanduser(str(emobox_data))))
    if not data_dir.is_dir():
        raise CorpusError(f"emobox: --emobox-data {data_dir} is not a directory. Expected layout: {_layout(corpus)}")
    ds = data_dir.name
    meta_file = next((data_dir / f"{ds}{ext}" for ext in (".jsonl", ".json") if (data_dir / f"{ds}{ext}").is_file()),
                     None)
    if meta_file is None:
        cands = sorted(data_dir.glob("*.jsonl")) or sorted(p for p in data_dir.glob("*.json")
                                                          if p.name not in ("label_map.json", "label_dict.json"))
        if len(cands) != 1:
            raise CorpusError(f"emobox: {data_dir}: expected {ds}.jsonl or {ds}.json. Expected layout: "
                              f"{_layout(corpus)}")
        meta_file = cands[0]
    problems = _Problems(corpus, root)
    label_map: dict[str, str] = {}
    for name in ("label_map.json", "label_dict.json"):
        if (data_dir / name).is_file():
            raw = json.loads((data_dir / name).read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                label_map = {str(k).strip().lower(): str(v) for k, v in raw.items()}
            break
    speakers: dict[str, str] = {}
    stm = data_dir / "data.seg.wrd.stm"
    if stm.is_file():
        for line in stm.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3:
                speakers[parts[0]] = parts[2]
    entries, seen = [], set()
    for obj in _read_json_or_jsonl(meta_file):
        key = str(obj["key"]).strip()
        wav = str(obj.get("wav") or obj.get("audio") or "").strip()
        emo = str(obj.get("emo") or obj.get("emotion") or "").strip()
        if not wav or not emo:
            problems.add(f"{meta_file.name}:{key}", "needs 'wav' and 'emo'")
            continue
        rel = wav.replace("\\", "/")
        cands = [Path(rel)] if os.path.isabs(rel) else []
        stripped = rel[len("downloads/"):] if rel.startswith("downloads/") else rel
        cands += [root / rel, root / stripped]
        if stripped.startswith(f"{ds}/"):
            cands.append(root / stripped[len(ds) + 1:])
        audio = next((c for c in cands if c.is_file()), None)
        if audio is None:
            problems.add(f"{meta_file.name}:{key}", f"audio {wav!r} not found under {root}")
            continue
        mapped = label_map.get(emo.lower(), emo)
        entries.append(_entry(audio, key, canonical_label(mapped), speakers.get(key, ""), ""))
        seen.add(key)
    fold_dirs = sorted((d for d in data_dir.iterdir() if d.is_dir() and re.fullmatch(r"fold_\d+", d.name)),
                       key=lambda d: int(d.name[5:]))
    if not fold_dirs:
        problems.add(data_dir, "no fold_N folders")
    membership: dict[str, dict[str, str]] = defaultdict(dict)
    for d in fold_dirs:
        n = int(d.name[5:])
        for split in ("train", "valid", "test"):
            files = [d / f"{ds}_{split}_fold_{n}{ext}" for ext in (".jsonl", ".json")]
            files = [f for f in files if f.is_file()] or sorted(
                p for p in d.iterdir() if re.fullmatch(rf".*_{split}_fold_{n}\.jsonl?", p.name))
            if not files:
                if split != "valid":
                    problems.add(d, f"no *_{split}_fold_{n}.jsonl/.json")
                continue
            for obj in _read_json_or_jsonl(files[0]):
                key = str(obj["key"]).strip()
                if key not in seen:
                    problems.add(files[0], f"key {key!r} is not in {meta_file.name} (or its audio was not found)")
                    continue
                prev = membership[key].get(f"fold{n}")
                if prev and prev != split:
                    problems.add(files[0], f"key {key!r} is in both {prev} and {split} of fold {n}")
                membership[key][f"fold{n}"] = split
    for e in entries:
        for d in fold_dirs:
            col = f"fold{int(d.name[5:])}"
            e[col] = membership[e["key"]].get(col, "")
    return _finish(corpus, root, entries, problems, multichannel_channel=2)


ALIASES = {"ravdess-speech": "ravdess", "cmu-mosi": "mosi", "cmu-mosei": "mosei", "emo-db": "emodb",
           "msp": "msp-podcast", "msppodcast": "msp-podcast", "cremad": "crema-d", "crema": "crema-d"}


def default_protocol(corpus: str, rows: list[Mapping] | None = None) -> str:
    """The paper's protocol for ``corpus``; for ``folder``: speaker-kfold with >= 4 known speakers, else
    random-kfold."""
    spec = CORPORA[corpus_name(corpus)]
    if spec.default_protocol != "auto":
        return spec.default_protocol
    speakers = {str(r.get("speaker", "")) for r in (rows or [])}
    return "speaker-kfold" if "" not in speakers and len(speakers) >= 4 else "random-kfold"


def _apply_label_map(rows: list[dict], mapping: Mapping[str, str], corpus: str) -> list[dict]:
    if not mapping:
        return rows
    unused = sorted(set(mapping) - {r["label"] for r in rows})
    if unused:
        raise CorpusError(f"{corpus}: --label-map names label(s) {unused} that do not occur; labels are "
                          f"{sorted({r['label'] for r in rows})}")
    out, dropped = [], Counter()
    for r in rows:
        new = mapping.get(r["label"], r["label"])
        if new == "":
            dropped[r["label"]] += 1
            continue
        out.append({**r, "label": new})
    if dropped:
        log.info("%s: dropped by --label-map: %s", corpus, ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    if not out:
        raise CorpusError(f"{corpus}: --label-map dropped every row")
    return out


def prepare_corpus(corpus: str, root, label_map=None, exclude: Iterable[str] | None = None, **options) -> list[dict]:
    """Run the preparer of ``corpus`` with its ``options``, then ``label_map`` ("old=new,..."; for ``folder`` it is
    applied to folder names inside the preparer) and ``exclude`` (keys to leave out; unknown keys raise)."""
    name = corpus_name(corpus)
    spec = CORPORA[name]
    bad = sorted(k for k, v in options.items() if v not in (None, False) and k not in spec.options)
    if bad:
        raise CorpusError(f"{name}: option(s) {', '.join('--' + b.replace('_', '-') for b in bad)} do not apply to "
                          f"this corpus")
    kwargs = {k: v for k, v in options.items() if k in spec.options and v not in (None, False)}
    if name == "folder":
        rows = spec.prepare(root, label_map=label_map, **kwargs)
    else:
        rows = spec.prepare(root, **kwargs)
        rows = _apply_label_map(rows, parse_label_map(label_map), name)
    if exclude:
        exclude = {e.strip() for e in exclude if e.strip()}
        keys = {r["key"] for r in rows}
        unknown = sorted(exclude - keys)
        if unknown:
            raise CorpusError(_listing(f"{name}: --exclude names {len(unknown)} key(s) not in the corpus:", unknown))
        rows = [r for r in rows if r["key"] not in exclude]
        log.info("%s: excluded %d key(s) on request", name, len(exclude))
        if not rows:
            raise CorpusError(f"{name}: --exclude removed every row")
    labels = Counter(r["label"] for r in rows)
    if len(labels) < 2:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(labels.items()))
        raise CorpusError(f"{name}: {len(rows)} utterance(s) under {root} carry a single label: {found}. Emotion "
                          f"recognition needs at least two labels; is --root one folder too deep? Expected layout: "
                          f"{spec.layout}")
    return rows


def corpus_name(corpus: str) -> str:
    """The registered name of ``corpus``, whatever its case and spelling (``URDU``, ``cmu-mosi``, ``ravdess_song``)."""
    name = str(corpus).strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; choose from {', '.join(CORPORA)}")
    return name
