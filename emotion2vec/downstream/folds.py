"""Evaluation protocols: train/valid/test folds over the rows of a ``data.tsv``.

``folds.json`` (and ``folds_<protocol>.json``)::

    {"corpus": "urdu", "protocol": "random-kfold", "seed": 0, "speaker_independent": false,
     "labels": ["angry", "happy", "neutral", "sad"], "options": {"folds": 10, "stratify": true},
     "folds": [{"name": "fold1", "train": [keys], "valid": [keys], "test": [keys]}, ...]}

Protocols (all deterministic for a seed and independent of the row order: keys are sorted before any shuffle,
and every random draw comes from ``random.Random`` seeded with the seed):

``loso-session``  leave-one-session-out (IEMOCAP; needs a ``session`` column): one fold per session, test = that
                  session, valid = a seeded random ``valid_fraction`` (0.2) of the other sessions' utterances, train =
                  the rest. Test speakers never occur in train/valid, but valid shares speakers with train, so the
                  folds are not marked speaker-independent.
``session-rotation``  EMO-SUPERB's IEMOCAP partition (needs a ``session`` column, >= 3 sessions in sorted order
                  S1..Sn): fold i tests session S(i-1) (cyclic: fold1 tests the last session), validates on the
                  session before it and trains on the rest (5 sessions: fold1 = train 1, 2, 3 / dev 4 / test 5).
                  Model selection on a whole held-out session. Speaker-independent (refused if a speaker crosses
                  sessions).
``loso-speaker``  leave-one-speaker-out: one fold per speaker (>= 3 speakers); speakers in a seeded order, fold i tests
                  speaker i, validates on speaker i+1 (cyclic), trains on the rest. Speaker-independent.
``random-kfold``  the paper's "10-fold" 80/10/10: keys are dealt into K seeded partitions (option ``folds``, default 10,
                  >= 3), stratified by label (``stratify``, default true: each label is shuffled and dealt round-robin,
                  continuing where the previous label stopped, so partitions differ by at most one item overall and
                  per label). Fold i: test = partition i, valid = partition i+1 (mod K), train = the other K-2.
                  For other K the proportions are (K-2)/K, 1/K, 1/K: K=5 (RAVDESS-song) gives 60/20/20.
``speaker-kfold`` K speaker-disjoint groups (option ``folds``, default min(5, number of speakers), >= 3): speakers
                  are shuffled with the seed, then placed largest first into the group with the fewest utterances.
                  Fold i: test = group i, valid = group i+1 (mod K), train = the rest. Speaker-independent.
``holdout``       one fold, the paper's hold-out 8:2: a seeded ``test_fraction`` (0.2) of the utterances is the test
                  set (label-stratified with ``stratify``, default true), a seeded ``valid_fraction`` (0.1) of the
                  rest is the dev set. Speaker-dependent.
``speaker-holdout`` the speaker-independent hold-out: speakers in a seeded order go to the test set while that
                  brings it closer to ``test_fraction`` of the utterances, then likewise ``valid_fraction`` of the
                  remaining utterances to the dev set (>= 3 speakers). Speaker-independent.
``original``      the corpus's official split from the ``split`` column (one fold). When the corpus has no official
                  valid set (RESD), valid = a seeded label-stratified ``valid_fraction`` (0.1) of train.
                  ``speaker_independent`` is computed from the data (true only when no speaker crosses sets).
``emobox``        folds imported from EmoBox (columns ``fold1``, ``fold2``, ... holding train/valid/test or empty);
                  a fold without valid keys gets a seeded stratified ``valid_fraction`` (0.2) of its train keys, as
                  the EmoBox recipe does. ``speaker_independent`` computed from the data.
``emo-superb``    EMO-SUPERB's partitions, imported the same way (columns ``fold1``, ... from the benchmark's
                  ``labels_consensus_<N>.csv`` files, each with its own development set).

Invariants (:func:`check_folds`, run before every save and after every load): train/valid/test disjoint within a
fold; every key exists in data.tsv; every fold has train and test keys; for the k-fold and leave-one-out protocols
every key is in exactly one test set and in every fold; when ``speaker_independent`` is true no speaker appears in
two of a fold's train/valid/test.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..errors import Emotion2VecError
from ..io.atomic import atomic_write_text
from ..io.manifests import DATA_TSV, read_data_tsv

__all__ = ["PROTOCOLS", "PROTOCOL_OPTIONS", "PARTITION_PROTOCOLS", "SPEAKER_INDEPENDENT_PROTOCOLS",
           "IMPORTED_PROTOCOLS", "FoldsError", "make_folds", "check_folds",
           "save_folds", "load_folds", "read_folds_file", "folds_filename", "infer_protocol"]

PROTOCOLS = ("loso-session", "session-rotation", "loso-speaker", "random-kfold", "speaker-kfold", "holdout",
             "speaker-holdout", "original", "emobox", "emo-superb")
#: protocols that promise speaker independence (a fold sharing a speaker is an error, see audit.py)
SPEAKER_INDEPENDENT_PROTOCOLS = ("session-rotation", "loso-speaker", "speaker-kfold", "speaker-holdout")
#: protocols whose split comes from outside (the corpus's official split, EmoBox's folds): speaker overlap is
#: reported loudly, not refused
IMPORTED_PROTOCOLS = ("original", "emobox", "emo-superb")
#: protocols whose test sets partition the corpus and whose folds each cover every key
PARTITION_PROTOCOLS = ("loso-session", "session-rotation", "loso-speaker", "random-kfold", "speaker-kfold")
SPLIT_NAMES = ("train", "valid", "test")
FOLDS_JSON = "folds.json"

PROTOCOL_OPTIONS = {
    "loso-session": {"valid_fraction": 0.2},
    "session-rotation": {},
    "loso-speaker": {},
    "random-kfold": {"folds": 10, "stratify": True},
    "speaker-kfold": {"folds": None},
    "holdout": {"test_fraction": 0.2, "valid_fraction": 0.1, "stratify": True},
    "speaker-holdout": {"test_fraction": 0.2, "valid_fraction": 0.1},
    "original": {"valid_fraction": 0.1},
    "emobox": {"valid_fraction": 0.2},
    "emo-superb": {"valid_fraction": 0.2},
}


class FoldsError(Emotion2VecError, ValueError):
    """Folds that cannot be made or that break an invariant; the message names the fold and the keys."""


def folds_filename(protocol: str | None) -> str:
    return FOLDS_JSON if protocol is None else f"folds_{protocol}.json"


def _few(items: Iterable, n: int = 10) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" ... ({len(items)} in all)" if len(items) > n else "")


def _rng(seed: int, *salt) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across runs and Python versions
    return random.Random(":".join(str(x) for x in (int(seed),) + salt))


def _rows_by_key(rows: Sequence[Mapping]) -> dict[str, Mapping]:
    out: dict[str, Mapping] = {}
    for row in rows:
        key = row["key"]
        if key in out:
            raise FoldsError(f"duplicate key {key!r} in the rows")
        out[key] = row
    if not out:
        raise FoldsError("no rows to make folds from")
    return out


def _stratified_sample(keys: Sequence[str], labels: Mapping[str, str], fraction: float, rng: random.Random) -> set[str]:
    """About ``fraction`` of ``keys`` (at least one when there are >= 2 keys), the same fraction of every label."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for k in sorted(keys):
        by_label[labels[k]].append(k)
    chosen: list[str] = []
    carry = 0.0
    for label in sorted(by_label):
        ks = by_label[label]
        rng.shuffle(ks)
        exact = fraction * len(ks) + carry
        n = int(exact + 0.5)
        carry = exact - n
        chosen.extend(ks[:n])
    if not chosen and len(keys) >= 2 and fraction > 0:
        chosen = [rng.choice(sorted(keys))]
    return set(chosen)


def _random_sample(keys: Sequence[str], fraction: float, rng: random.Random) -> set[str]:
    ks = sorted(keys)
    rng.shuffle(ks)
    n = int(round(fraction * len(ks)))
    if n == 0 and len(ks) >= 2 and fraction > 0:
        n = 1
    return set(ks[:n])


def _fold(name: str, train, valid, test) -> dict:
    return {"name": name, "train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


def _need_speakers(rows: Mapping[str, Mapping], protocol: str) -> dict[str, list[str]]:
    missing = [k for k, r in rows.items() if not str(r.get("speaker", "")).strip()]
    if missing:
        raise FoldsError(f"protocol {protocol} needs a speaker for every row; {len(missing)} row(s) have none: "
                         f"{_few(sorted(missing))}")
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for k in sorted(rows):
        by_speaker[rows[k]["speaker"]].append(k)
    return by_speaker


def _check_fraction(value, name: str = "valid_fraction") -> float:
    f = float(value)
    if not 0.0 <= f < 1.0:
        raise FoldsError(f"{name} must be in [0, 1), got {value}")
    return f


def _check_k(value, n: int, what: str) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise FoldsError(f"folds must be an integer, got {value!r}") from None
    if k < 3:
        raise FoldsError(f"folds must be >= 3 (each fold needs distinct test, valid and train parts), got {k}")
    if k > n:
        raise FoldsError(f"folds={k} but there are only {n} {what}")
    return k


def _speaker_independent(folds: list[dict], rows: Mapping[str, Mapping]) -> bool:
    for fold in folds:
        sets = [{rows[k].get("speaker", "") for k in fold[s]} for s in SPLIT_NAMES]
        if any("" in s for s in sets):
            return False
        if (sets[0] & sets[1]) or (sets[0] & sets[2]) or (sets[1] & sets[2]):
            return False
    return True


@dataclass(frozen=True)
class _Corpus:
    """What a protocol sees: rows by key, sorted keys, labels by key."""

    by_key: Mapping[str, Mapping]
    keys: list[str]
    labels: Mapping[str, str]


#: protocol name -> function(corpus, options, seed) -> (folds, speaker_independent); see :func:`_protocol`
_PROTOCOL_FUNCTIONS: dict[str, Callable[[_Corpus, dict, int], tuple[list[dict], bool]]] = {}


def _protocol(name: str):
    def register(fn):
        _PROTOCOL_FUNCTIONS[name] = fn
        return fn

    return register


@_protocol("loso-session")
def _loso_session(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    frac = opts["valid_fraction"] = _check_fraction(opts["valid_fraction"])
    sessions = _sessions(c, "loso-session", 2)
    folds = []
    for i, sess in enumerate(sessions):
        test = [k for k in c.keys if c.by_key[k]["session"] == sess]
        rest = [k for k in c.keys if c.by_key[k]["session"] != sess]
        valid = _random_sample(rest, frac, _rng(seed, "loso-session", sess))
        folds.append(_fold(f"fold{i + 1}", [k for k in rest if k not in valid], valid, test))
    return folds, False


def _sessions(c: _Corpus, protocol: str, minimum: int) -> list[str]:
    missing = [k for k in c.keys if not str(c.by_key[k].get("session", "")).strip()]
    if missing:
        raise FoldsError(f"protocol {protocol} needs a 'session' column (IEMOCAP); {len(missing)} row(s) "
                         f"have none: {_few(missing)}")
    sessions = sorted({c.by_key[k]["session"] for k in c.keys})
    if len(sessions) < minimum:
        raise FoldsError(f"protocol {protocol} needs >= {minimum} sessions, found {sessions}")
    return sessions


@_protocol("session-rotation")
def _session_rotation(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    sessions = _sessions(c, "session-rotation", 3)
    n = len(sessions)
    folds = []
    for i in range(n):
        test, dev = sessions[(i - 1) % n], sessions[(i - 2) % n]
        folds.append(_fold(f"fold{i + 1}", [k for k in c.keys if c.by_key[k]["session"] not in (test, dev)],
                           [k for k in c.keys if c.by_key[k]["session"] == dev],
                           [k for k in c.keys if c.by_key[k]["session"] == test]))
    return folds, True


@_protocol("holdout")
def _holdout(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    test_frac = opts["test_fraction"] = _check_fraction(opts["test_fraction"], "test_fraction")
    valid_frac = opts["valid_fraction"] = _check_fraction(opts["valid_fraction"])
    opts["stratify"] = bool(opts["stratify"])
    if test_frac == 0:
        raise FoldsError("protocol holdout needs test_fraction > 0")
    draw = (lambda keys, f, rng: _stratified_sample(keys, c.labels, f, rng)) if opts["stratify"] else _random_sample
    test = draw(c.keys, test_frac, _rng(seed, "holdout", "test"))
    rest = [k for k in c.keys if k not in test]
    valid = draw(rest, valid_frac, _rng(seed, "holdout", "valid"))
    return [_fold("holdout", [k for k in rest if k not in valid], valid, test)], False


def _speaker_share(speakers: list[str], by_speaker: Mapping[str, list[str]], target: float) -> list[str]:
    """Speakers, in order, taken while each brings the utterance count closer to ``target`` (at least one)."""
    chosen, count = [], 0
    for s in speakers:
        n = len(by_speaker[s])
        if not chosen or abs(count + n - target) < abs(count - target):
            chosen.append(s)
            count += n
    return chosen


@_protocol("speaker-holdout")
def _speaker_holdout(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    test_frac = opts["test_fraction"] = _check_fraction(opts["test_fraction"], "test_fraction")
    valid_frac = opts["valid_fraction"] = _check_fraction(opts["valid_fraction"])
    by_speaker = _need_speakers(c.by_key, "speaker-holdout")
    speakers = sorted(by_speaker)
    if len(speakers) < 3:
        raise FoldsError(f"protocol speaker-holdout needs >= 3 speakers, found {len(speakers)}: {speakers}")
    if test_frac == 0:
        raise FoldsError("protocol speaker-holdout needs test_fraction > 0")
    _rng(seed, "speaker-holdout").shuffle(speakers)
    test_spk = _speaker_share(speakers, by_speaker, test_frac * len(c.keys))
    rest = [s for s in speakers if s not in test_spk]
    if len(rest) < 1 + (valid_frac > 0):
        raise FoldsError(f"protocol speaker-holdout: test_fraction {test_frac} leaves {len(rest)} speaker(s) for "
                         f"train and valid")
    valid_spk = (_speaker_share(rest[:-1], by_speaker, valid_frac * sum(len(by_speaker[s]) for s in rest))
                 if valid_frac > 0 else [])
    train_spk = [s for s in rest if s not in valid_spk]
    keys = lambda group: [k for s in group for k in by_speaker[s]]  # noqa: E731
    return [_fold("holdout", keys(train_spk), keys(valid_spk), keys(test_spk))], True


@_protocol("loso-speaker")
def _loso_speaker(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    by_speaker = _need_speakers(c.by_key, "loso-speaker")
    speakers = sorted(by_speaker)
    if len(speakers) < 3:
        raise FoldsError(f"protocol loso-speaker needs >= 3 speakers, found {len(speakers)}: {speakers}")
    _rng(seed, "loso-speaker").shuffle(speakers)
    folds = []
    for i, spk in enumerate(speakers):
        vspk = speakers[(i + 1) % len(speakers)]
        train = [k for s in speakers if s not in (spk, vspk) for k in by_speaker[s]]
        folds.append(_fold(f"fold{i + 1}", train, by_speaker[vspk], by_speaker[spk]))
    return folds, True


@_protocol("random-kfold")
def _random_kfold(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    k_folds = opts["folds"] = _check_k(opts["folds"], len(c.keys), "rows")
    opts["stratify"] = bool(opts["stratify"])
    rng = _rng(seed, "random-kfold")
    parts: list[list[str]] = [[] for _ in range(k_folds)]
    groups = ({lab: [k for k in c.keys if c.labels[k] == lab] for lab in sorted(set(c.labels.values()))}
              if opts["stratify"] else {"": list(c.keys)})
    offset = 0
    for lab in sorted(groups):
        ks = groups[lab]
        rng.shuffle(ks)
        for j, key in enumerate(ks):
            parts[(offset + j) % k_folds].append(key)
        offset = (offset + len(ks)) % k_folds
    folds = []
    for i in range(k_folds):
        v = (i + 1) % k_folds
        train = [key for p in range(k_folds) if p not in (i, v) for key in parts[p]]
        folds.append(_fold(f"fold{i + 1}", train, parts[v], parts[i]))
    return folds, False


@_protocol("speaker-kfold")
def _speaker_kfold(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    by_speaker = _need_speakers(c.by_key, "speaker-kfold")
    n_spk = len(by_speaker)
    if opts["folds"] is None:
        opts["folds"] = min(5, n_spk)
    k_folds = opts["folds"] = _check_k(opts["folds"], n_spk, "speakers")
    speakers = sorted(by_speaker)
    _rng(seed, "speaker-kfold").shuffle(speakers)
    speakers.sort(key=lambda s: -len(by_speaker[s]))  # stable: equal sizes keep the seeded order
    groups: list[list[str]] = [[] for _ in range(k_folds)]
    sizes = [0] * k_folds
    for s in speakers:
        g = min(range(k_folds), key=lambda i: (sizes[i], len(groups[i]), i))
        groups[g].append(s)
        sizes[g] += len(by_speaker[s])
    folds = []
    for i in range(k_folds):
        v = (i + 1) % k_folds
        test = [k for s in groups[i] for k in by_speaker[s]]
        valid = [k for s in groups[v] for k in by_speaker[s]]
        train = [k for g in range(k_folds) if g not in (i, v) for s in groups[g] for k in by_speaker[s]]
        folds.append(_fold(f"fold{i + 1}", train, valid, test))
    return folds, True


@_protocol("original")
def _original(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    frac = opts["valid_fraction"] = _check_fraction(opts["valid_fraction"])
    split = {k: str(c.by_key[k].get("split", "")).strip() for k in c.keys}
    bad = [k for k in c.keys if split[k] not in SPLIT_NAMES]
    if bad:
        raise FoldsError(f"protocol original needs a 'split' column with train/valid/test for every row; "
                         f"{len(bad)} row(s) have {sorted({split[k] for k in bad})}: {_few(bad)}")
    parts = {s: [k for k in c.keys if split[k] == s] for s in SPLIT_NAMES}
    if not parts["train"] or not parts["test"]:
        raise FoldsError(f"protocol original: the split column has {len(parts['train'])} train and "
                         f"{len(parts['test'])} test rows; both must be non-empty")
    if not parts["valid"]:
        valid = _stratified_sample(parts["train"], c.labels, frac, _rng(seed, "original"))
        parts = {"train": [k for k in parts["train"] if k not in valid], "valid": sorted(valid),
                 "test": parts["test"]}
        opts["valid_from_train"] = True
    folds = [_fold("fold1", parts["train"], parts["valid"], parts["test"])]
    return folds, _speaker_independent(folds, c.by_key)


@_protocol("emobox")
def _emobox(c: _Corpus, opts: dict, seed: int, protocol: str = "emobox") -> tuple[list[dict], bool]:
    frac = opts["valid_fraction"] = _check_fraction(opts["valid_fraction"])
    columns = sorted({col for r in c.by_key.values() for col in r if col.startswith("fold") and col[4:].isdigit()},
                     key=lambda col: int(col[4:]))
    if not columns:
        raise FoldsError(f"protocol {protocol} needs fold1, fold2, ... columns (written by `prepare "
                         f"{'emobox' if protocol == 'emobox' else 'msp-improv / biic-nnime / biic-podcast'}`)")
    folds = []
    for col in columns:
        val = {k: str(c.by_key[k].get(col, "")).strip() for k in c.keys}
        bad = [k for k in c.keys if val[k] not in SPLIT_NAMES + ("",)]
        if bad:
            raise FoldsError(f"column {col}: values must be train/valid/test or empty; bad rows: {_few(bad)}")
        parts = {s: [k for k in c.keys if val[k] == s] for s in SPLIT_NAMES}
        if not parts["valid"]:
            valid = _stratified_sample(parts["train"], c.labels, frac, _rng(seed, protocol, col))
            parts["train"] = [k for k in parts["train"] if k not in valid]
            parts["valid"] = sorted(valid)
        folds.append(_fold(col, parts["train"], parts["valid"], parts["test"]))
    return folds, _speaker_independent(folds, c.by_key)


@_protocol("emo-superb")
def _emo_superb(c: _Corpus, opts: dict, seed: int) -> tuple[list[dict], bool]:
    return _emobox(c, opts, seed, "emo-superb")


def make_folds(rows: list[dict], protocol: str, seed: int = 0, corpus: str = "", **options) -> dict:
    """Folds for ``rows`` (data.tsv rows) under ``protocol``. -> the folds.json dict (see the module docstring).

    Options: ``folds`` (random-kfold, speaker-kfold), ``stratify`` (random-kfold, holdout), ``valid_fraction``
    (loso-session, holdout, speaker-holdout, original, emobox), ``test_fraction`` (holdout, speaker-holdout).
    Unknown options raise. The result has passed :func:`check_folds`.
    """
    if protocol not in PROTOCOLS:
        raise FoldsError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    unknown = sorted(set(options) - set(PROTOCOL_OPTIONS[protocol]))
    if unknown:
        raise FoldsError(f"protocol {protocol} takes no option(s) {', '.join(unknown)} "
                         f"(it takes: {', '.join(PROTOCOL_OPTIONS[protocol]) or 'none'})")
    opts = {**PROTOCOL_OPTIONS[protocol], **{k: v for k, v in options.items() if v is not None}}
    by_key = _rows_by_key(rows)
    keys = sorted(by_key)
    corpus_view = _Corpus(by_key, keys, {k: str(by_key[k]["label"]) for k in keys})
    folds, speaker_independent = _PROTOCOL_FUNCTIONS[protocol](corpus_view, opts, int(seed))
    result = {
        "corpus": corpus,
        "protocol": protocol,
        "seed": int(seed),
        "speaker_independent": bool(speaker_independent),
        "labels": sorted(set(corpus_view.labels.values())),
        "options": opts,
        "folds": folds,
    }
    check_folds(result, rows)
    return result


def check_folds(folds: Mapping, rows: Sequence[Mapping]) -> None:
    """Raise :class:`FoldsError` (a ValueError) naming the fold and the keys on any violated invariant."""
    if not isinstance(folds, Mapping) or not isinstance(folds.get("folds"), list) or not folds["folds"]:
        raise FoldsError("folds must be a dict with a non-empty 'folds' list")
    by_key = {r["key"]: r for r in rows}
    protocol = folds.get("protocol", "")
    if protocol is not None and not isinstance(protocol, str):
        raise FoldsError(f"'protocol' must be a protocol name, got {protocol!r}")
    labels = folds.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise FoldsError(f"'labels' must be a list of label names, got {labels!r}")
        unknown = sorted({str(r["label"]) for r in rows} - set(labels))
        if unknown:
            raise FoldsError(f"labels {unknown} occur in data.tsv but not in the folds' label list {labels}")
    for i, fold in enumerate(folds["folds"]):
        if not isinstance(fold, Mapping) or not isinstance(fold.get("name"), str) or not fold["name"]:
            raise FoldsError(f"fold {i + 1}: must be an object with a 'name' and its 'train', 'valid' and 'test' "
                             f"keys, got {str(fold)[:80]}")
    names = [f["name"] for f in folds["folds"]]
    if len(set(names)) != len(names):
        raise FoldsError(f"duplicate fold names: {names}")
    in_test: Counter = Counter()
    for fold in folds["folds"]:
        name = fold["name"]
        parts = {}
        for s in SPLIT_NAMES:
            if not isinstance(fold.get(s), list) or not all(isinstance(k, str) for k in fold[s]):
                raise FoldsError(f"fold {name}: '{s}' must be a list of keys")
            parts[s] = fold[s]
            dups = sorted(k for k, c in Counter(fold[s]).items() if c > 1)
            if dups:
                raise FoldsError(f"fold {name}: keys listed twice in {s}: {_few(dups)}")
            missing = [k for k in fold[s] if k not in by_key]
            if missing:
                raise FoldsError(f"fold {name}: {len(missing)} {s} key(s) not in data.tsv: {_few(missing)}")
        if not parts["train"] or not parts["test"]:
            raise FoldsError(f"fold {name}: empty {'train' if not parts['train'] else 'test'} set")
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            both = sorted(set(parts[a]) & set(parts[b]))
            if both:
                raise FoldsError(f"fold {name}: {len(both)} key(s) in both {a} and {b}: {_few(both)}")
        if protocol in PARTITION_PROTOCOLS:
            covered = set(parts["train"]) | set(parts["valid"]) | set(parts["test"])
            left = sorted(set(by_key) - covered)
            if left:
                raise FoldsError(f"fold {name}: {len(left)} key(s) of data.tsv in none of train/valid/test: "
                                 f"{_few(left)}")
        in_test.update(parts["test"])
        if folds.get("speaker_independent"):
            spk = {s: defaultdict(list) for s in SPLIT_NAMES}
            for s in SPLIT_NAMES:
                for k in parts[s]:
                    spk[s][str(by_key[k].get("speaker", ""))].append(k)
            for s in SPLIT_NAMES:
                if "" in spk[s]:
                    raise FoldsError(f"fold {name}: marked speaker-independent but {s} keys have no speaker: "
                                     f"{_few(spk[s][''])}")
            for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
                shared = sorted(set(spk[a]) & set(spk[b]))
                if shared:
                    s0 = shared[0]
                    raise FoldsError(f"fold {name}: not speaker-independent: speaker {s0!r} is in {a} "
                                     f"({_few(spk[a][s0], 3)}) and {b} ({_few(spk[b][s0], 3)})"
                                     + (f"; {len(shared)} shared speakers: {_few(shared)}" if len(shared) > 1 else ""))
    if protocol in PARTITION_PROTOCOLS:
        twice = sorted(k for k, c in in_test.items() if c > 1)
        if twice:
            raise FoldsError(f"{len(twice)} key(s) are in more than one test set: {_few(twice)}")
        never = sorted(set(by_key) - set(in_test))
        if never:
            raise FoldsError(f"the test sets do not cover the corpus: {len(never)} key(s) never tested: {_few(never)}")


def save_folds(folds: Mapping, path: str | os.PathLike) -> None:
    """Write a folds dict atomically as JSON."""
    atomic_write_text(path, json.dumps(folds, indent=1, ensure_ascii=False) + "\n")


def infer_protocol(rows: Sequence[Mapping]) -> str:
    """A sensible protocol for rows without a stored folds.json: the official split when there is one, IEMOCAP's
    sessions, imported EmoBox folds, speaker-kfold with >= 4 known speakers, else random-kfold."""
    if rows and all(str(r.get("split", "")).strip() for r in rows):
        return "original"
    if rows and all(str(r.get("session", "")).strip() for r in rows):
        return "loso-session"
    if rows and "fold1" in rows[0]:
        return "emobox"
    speakers = {str(r.get("speaker", "")).strip() for r in rows}
    if "" not in speakers and len(speakers) >= 4:
        return "speaker-kfold"
    return "random-kfold"


def read_folds_file(path: str | os.PathLike) -> dict:
    """A folds.json / folds_<protocol>.json as written: a JSON object with a ``folds`` list (the folds themselves
    are checked against data.tsv by :func:`check_folds`). Every command that reads folds reads them here."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FoldsError(f"{path}: invalid JSON ({e.msg}, line {e.lineno}); re-run `emotion2vec prepare`") from None
    except UnicodeDecodeError as e:
        raise FoldsError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise FoldsError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("folds"), list):
        raise FoldsError(f"{path}: not a folds file (a JSON object with a 'folds' list is expected, got "
                         f"{type(data).__name__ if not isinstance(data, dict) else 'no folds list'}); re-run "
                         f"`emotion2vec prepare`")
    return data


def _checked(folds: dict, rows, path: Path, data_tsv: Path) -> dict:
    try:
        check_folds(folds, rows)
    except FoldsError as e:
        raise FoldsError(f"{path}: does not match {data_tsv} (re-run prepare): {e}") from None
    return folds


def load_folds(data_dir, protocol: str | None = None, seed: int = 0) -> dict:
    """The folds of a prepared corpus directory (the ``--out`` of ``emotion2vec prepare``).

    ``protocol=None`` reads ``folds.json``; a protocol name reads ``folds_<protocol>.json`` (or ``folds.json`` when
    that one is of this protocol). A stored file is returned as written, whatever ``seed``. When there is no such
    file the folds are computed from data.tsv with :func:`make_folds` and ``seed`` (with the corpus's default
    options, e.g. 5 folds for RAVDESS-song, when folds.json names the corpus) and not written; without any
    folds.json and ``protocol=None``, :func:`infer_protocol` chooses. The result is always checked against data.tsv
    (a stale file raises, naming it).
    """
    data_dir = Path(data_dir)
    data_tsv = data_dir / DATA_TSV
    rows = read_data_tsv(data_tsv)
    if protocol is not None and protocol not in PROTOCOLS:
        raise FoldsError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    main = data_dir / FOLDS_JSON
    main_folds = read_folds_file(main) if main.exists() else None
    if protocol is None:
        if main_folds is not None:
            return _checked(main_folds, rows, main, data_tsv)
        protocol = infer_protocol(rows)
    else:
        path = data_dir / folds_filename(protocol)
        if path.exists():
            return _checked(read_folds_file(path), rows, path, data_tsv)
        if main_folds is not None and main_folds.get("protocol") == protocol:
            return _checked(main_folds, rows, main, data_tsv)
    corpus = (main_folds or {}).get("corpus") or data_dir.name
    options: dict = {}
    from .corpora import CORPORA, ALIASES

    spec = CORPORA.get(ALIASES.get(str(corpus).lower(), str(corpus).lower()))
    if spec is not None:
        options = {k: v for k, v in spec.fold_options.items() if k in PROTOCOL_OPTIONS[protocol]}
    return make_folds(rows, protocol, seed=seed, corpus=corpus, **options)
