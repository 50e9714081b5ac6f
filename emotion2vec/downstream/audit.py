"""Leakage audit of train / valid / test splits: what a test set shares with the data a model learnt from.

For every fold and every pair of its splits (train-valid, train-test, valid-test):

* **speakers**: the speakers of the second split that also speak in the first, and the share of the second split's
  utterances they hold (rows without a speaker are counted apart);
* **identical audio**: utterances whose *decoded* samples (and sample rate) are identical, whatever the file name or
  container (SHA-256 of the float32 samples of the row's channel, or the channel mean); the hashes are cached in
  ``audio_hashes.tsv`` next to ``data.tsv`` (keyed by path, size, modification time and channel), so a second
  audit decodes nothing;
* **same text**: utterances of the second split whose transcript (``text`` column, compared case- and
  punctuation-insensitively) also occurs in the first;
* **labels**: the label distribution of every split (a note when a valid or test set lacks training labels).

Severity: a protocol that promises speaker independence (``speaker_independent`` in folds.json) but shares a
speaker between any two splits is an **error** (:class:`AuditError`); an imported split (EmoBox folds, the
corpus's ``original`` split) whose test set shares speakers with its training set gets a loud **warning** with the
figures (shared with its dev set: a note); identical audio across splits is always a warning; speaker-dependent
protocols (random k-fold, hold-out) get one summary note of how much of their test data comes from training
speakers, and shared sentences (scripted corpora repeat them by design) are notes.

``emotion2vec audit MANIFEST_DIR`` prints it; ``prepare`` stores it in each folds file (``"audit"``) and ``probe``
in results.json.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import Emotion2VecError
from ..io.atomic import atomic_write_text
from .folds import IMPORTED_PROTOCOLS, SPLIT_NAMES

__all__ = ["AuditError", "HASH_CACHE", "audio_hashes", "audit_folds", "audit_cross", "audit_summary", "format_audit"]

HASH_CACHE = "audio_hashes.tsv"
_CACHE_COLUMNS = ("key", "path", "size", "mtime_ns", "channel", "sha256")
PAIRS = (("train", "valid"), ("train", "test"), ("valid", "test"))
#: the training side as a whole (train + valid: both shape the model) against the test set
SEEN = "train+valid"
MAX_LISTED = 10


class AuditError(Emotion2VecError, ValueError):
    """A split that promises speaker independence but shares speakers; the message gives the figures."""


# ------------------------------------------------------------------------------------------------ audio hashes
def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_cache(path: Path) -> dict[tuple[str, str, str, str], str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    if not lines or tuple(lines[0].split("\t")) != _CACHE_COLUMNS:
        return {}
    out = {}
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) == len(_CACHE_COLUMNS):
            _, p, size, mtime, channel, digest = cells
            out[(p, size, mtime, channel)] = digest
    return out


def _decode_hash(path: str, channel: str) -> str:
    from ..io.audio import read_audio

    wav, rate = read_audio(path, int(channel) if channel else None)
    h = hashlib.sha256(str(rate).encode("ascii") + b":")
    h.update(wav.tobytes())
    return h.hexdigest()


def audio_hashes(rows: Sequence[Mapping], cache: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None) -> tuple[dict[str, str], list[str]]:
    """SHA-256 of every row's decoded samples. -> ({key: hash}, [keys whose audio is missing or unreadable]).

    ``cache``: the ``audio_hashes.tsv`` to reuse and update (written atomically; a folder that cannot be written
    only loses the cache)."""
    cached = _read_cache(Path(cache)) if cache else {}
    hashes, unreadable, lines, decoded = {}, [], ["\t".join(_CACHE_COLUMNS)], 0
    for r in rows:
        path, channel = str(r["path"]), str(r.get("channel", "") or "")
        st = _stat(path)
        if st is None:
            unreadable.append(str(r["key"]))
            continue
        ident = (path, str(st[0]), str(st[1]), channel)
        digest = cached.get(ident)
        if digest is None:
            try:
                digest = _decode_hash(path, channel)
            except Emotion2VecError:
                unreadable.append(str(r["key"]))
                continue
            decoded += 1
        hashes[str(r["key"])] = digest
        lines.append("\t".join((str(r["key"]), *ident, digest)))
    if cache and (decoded or len(cached) != len(lines) - 1):
        try:
            atomic_write_text(cache, "\n".join(lines) + "\n")
        except OSError:
            pass
    if log and decoded:
        log(f"audit: decoded and hashed {decoded} file(s)" + (f" (cache {cache})" if cache else ""))
    return hashes, unreadable


# ------------------------------------------------------------------------------------------------ the audit
def _norm_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _few(items: Iterable, n: int = MAX_LISTED) -> list:
    return sorted(items)[:n]


def _pair(a: list[str], b: list[str], rows: Mapping[str, Mapping], hashes: Mapping[str, str] | None,
          speakers: bool, texts: bool) -> dict[str, Any]:
    """What split ``b`` shares with split ``a``."""
    out: dict[str, Any] = {"utterances": len(b)}
    if speakers:
        spk_a = {rows[k].get("speaker", "") for k in a} - {""}
        spk_b = Counter(rows[k].get("speaker", "") for k in b if rows[k].get("speaker", ""))
        shared = sorted(set(spk_b) & spk_a)
        n_utt = sum(spk_b[s] for s in shared)
        out["speakers"] = {"shared": len(shared), "of": len(spk_b), "utterances": n_utt,
                           "share_pct": _pct(n_utt, len(b)), "examples": shared[:MAX_LISTED],
                           "unknown_speaker": sum(1 for k in b if not rows[k].get("speaker", ""))}
    if hashes is not None:
        by_hash = defaultdict(list)
        for k in a:
            if k in hashes:
                by_hash[hashes[k]].append(k)
        dups = [(by_hash[hashes[k]][0], k) for k in b if k in hashes and hashes[k] in by_hash]
        out["identical_audio"] = {"utterances": len(dups), "share_pct": _pct(len(dups), len(b)),
                                  "examples": [list(d) for d in sorted(dups)[:MAX_LISTED]]}
    if texts:
        text_a = {_norm_text(rows[k]["text"]) for k in a if str(rows[k].get("text", "")).strip()}
        same = [k for k in b if str(rows[k].get("text", "")).strip() and _norm_text(rows[k]["text"]) in text_a]
        out["same_text"] = {"utterances": len(same), "share_pct": _pct(len(same), len(b)),
                            "examples": _few(same)}
    return out


def _findings(name: str, pair: tuple[str, str], found: Mapping[str, Any], kind: str
              ) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, notes) of one fold's split pair."""
    errors, warnings, notes = [], [], []
    a, b = pair
    spk = found.get("speakers")
    if spk and spk["shared"]:
        text = (f"{name}: {spk['shared']} of the {spk['of']} {b} speakers also speak in {a} ({spk['utterances']} of "
                f"{found['utterances']} {b} utterances, {spk['share_pct']:.2f} %; e.g. {', '.join(spk['examples'][:5])})")
        if kind == "promised" and a != SEEN:
            errors.append(text + ": the protocol promises speaker independence")
        elif kind == "imported" and a == SEEN:
            warnings.append(text + ": this imported split is NOT speaker-independent; its scores are "
                                   "speaker-dependent")
    if a == SEEN:  # the other findings are reported per split pair
        return errors, warnings, notes
    dup = found.get("identical_audio")
    if dup and dup["utterances"]:
        ex = ", ".join(f"{x} = {y}" for x, y in dup["examples"][:3])
        warnings.append(f"{name}: {dup['utterances']} {b} utterance(s) ({dup['share_pct']:.2f} %) have audio "
                        f"identical to {a} utterances (e.g. {ex})")
    txt = found.get("same_text")
    if txt and txt["utterances"]:
        notes.append(f"{name}: {txt['utterances']} {b} utterance(s) ({txt['share_pct']:.2f} %) say a sentence that "
                     f"also occurs in {a}")
    return errors, warnings, notes


def _labels(keys: list[str], rows: Mapping[str, Mapping]) -> dict[str, int]:
    return dict(sorted(Counter(str(rows[k]["label"]) for k in keys).items()))


def audit_folds(rows: Sequence[Mapping], folds: Mapping, hashes: Mapping[str, str] | None = None,
                unreadable: Sequence[str] = (), raise_errors: bool = True) -> dict[str, Any]:
    """Audit every fold of a folds dict over ``rows`` (data.tsv rows). ``hashes``: {key: audio hash} from
    :func:`audio_hashes` (None: audio not compared). Raises :class:`AuditError` when a speaker-independent
    protocol shares speakers (unless ``raise_errors`` is false: the errors are then only listed)."""
    by_key = {str(r["key"]): r for r in rows}
    protocol = folds.get("protocol")
    kind = ("promised" if folds.get("speaker_independent") else
            "imported" if protocol in IMPORTED_PROTOCOLS else "speaker-dependent")
    has_text = any(str(r.get("text", "")).strip() for r in rows)
    has_speakers = any(str(r.get("speaker", "")).strip() for r in rows)
    report: dict[str, Any] = {"protocol": protocol, "kind": kind, "speakers_known": has_speakers,
                              "text_compared": has_text, "audio_compared": hashes is not None,
                              "audio_unreadable": len(unreadable), "folds": [], "errors": [], "warnings": [],
                              "notes": []}
    if hashes is not None:
        groups = Counter(hashes.values())
        report["audio_duplicate_groups"] = sum(1 for c in groups.values() if c > 1)
    for fold in folds["folds"]:
        parts = {s: list(fold.get(s, [])) for s in SPLIT_NAMES}
        entry: dict[str, Any] = {"name": fold["name"], "sizes": {s: len(parts[s]) for s in SPLIT_NAMES},
                                 "labels": {s: _labels(parts[s], by_key) for s in SPLIT_NAMES},
                                 "speakers": {s: len({by_key[k].get("speaker", "") for k in parts[s]} - {""})
                                              for s in SPLIT_NAMES}, "pairs": {}}
        parts[SEEN] = parts["train"] + parts["valid"]
        trained = set(entry["labels"]["train"])
        for split in ("valid", "test"):
            missing = sorted(trained - set(entry["labels"][split]))
            if parts[split] and missing:
                report["warnings"].append(
                    f"{fold['name']}: {split} holds {len(trained) - len(missing)} of the {len(trained)} training "
                    f"labels; none of {', '.join(missing)}: "
                    + ("the epoch and the head are chosen on the classes it has" if split == "valid" else
                       "its scores average over fewer classes than the model predicts (UA, macro-F1)"))
        for a, b in PAIRS + ((SEEN, "test"),):
            if not parts[a] or not parts[b]:
                continue
            found = _pair(parts[a], parts[b], by_key, hashes if a != SEEN else None, has_speakers,
                          has_text and a != SEEN)
            entry["pairs"][f"{a}-{b}"] = found
            errors, warnings, notes = _findings(fold["name"], (a, b), found, kind)
            report["errors"] += errors
            report["warnings"] += warnings
            report["notes"] += notes
        report["folds"].append(entry)
    seen = [f["pairs"][f"{SEEN}-test"]["speakers"] for f in report["folds"]
            if "speakers" in f["pairs"].get(f"{SEEN}-test", {})]
    if kind == "speaker-dependent" and seen and any(s["shared"] for s in seen):
        report["notes"].append(
            f"speaker-dependent protocol: in {sum(1 for s in seen if s['shared'])} of {len(seen)} fold(s) test "
            f"speakers also speak in train or valid; {sum(s['utterances'] for s in seen)} of "
            f"{sum(f['sizes']['test'] for f in report['folds'])} test utterances "
            f"({_pct(sum(s['utterances'] for s in seen), sum(f['sizes']['test'] for f in report['folds'])):.2f} %) "
            f"come from such speakers")
    if unreadable:
        report["notes"].append(f"{len(unreadable)} audio file(s) missing or unreadable: not compared "
                               f"(e.g. {', '.join(list(unreadable)[:3])})")
    if report["errors"] and raise_errors:
        raise AuditError("protocol " + str(protocol) + " promises speaker independence, but:\n  "
                         + "\n  ".join(report["errors"]))
    return report


def audit_cross(train_rows: Sequence[Mapping], test_rows: Sequence[Mapping],
                train_hashes: Mapping[str, str] | None, test_hashes: Mapping[str, str] | None) -> dict[str, Any]:
    """Cross-corpus audit: identical audio and sentences between the training corpus and the test corpus (speaker
    ids of two corpora are not comparable); keys are prefixed ``train:`` / ``test:``."""
    rows = {f"train:{r['key']}": r for r in train_rows}
    rows.update({f"test:{r['key']}": r for r in test_rows})
    hashes = None
    if train_hashes is not None and test_hashes is not None:
        hashes = {f"train:{k}": v for k, v in train_hashes.items()}
        hashes.update({f"test:{k}": v for k, v in test_hashes.items()})
    fold = {"name": "cross-corpus", "train": [f"train:{r['key']}" for r in train_rows], "valid": [],
            "test": [f"test:{r['key']}" for r in test_rows]}
    spec_rows = [{**r, "key": k, "speaker": ""} for k, r in rows.items()]
    return audit_folds(spec_rows, {"protocol": "cross-corpus", "speaker_independent": False, "folds": [fold]},
                       hashes)


def audit_summary(report: Mapping[str, Any]) -> str:
    """The audit in one line (what a run prints; :func:`format_audit` has the per-fold table): the protocol, the
    test utterances whose speakers also speak in train or valid, identical audio and same text over all folds;
    then one line per warning and error (loud)."""
    folds = report.get("folds", [])
    parts = [f"{len(folds)} fold(s)"]
    n_test = sum(f["sizes"]["test"] for f in folds)
    seen = [f["pairs"].get(f"{SEEN}-test", {}).get("speakers") for f in folds]
    seen = [x for x in seen if x]
    if seen:
        utts = sum(x["utterances"] for x in seen)
        parts.append(f"test speakers also in train or valid in {sum(1 for x in seen if x['shared'])} of {len(seen)} "
                     f"fold(s) ({utts} of {n_test} test utterances, {_pct(utts, n_test):.2f} %)")
    elif not report.get("speakers_known"):
        parts.append("speakers unknown")
    pairs = [f["pairs"].get("train-test", {}) for f in folds]
    if report.get("audio_compared"):
        parts.append(f"identical audio train-test {sum(p.get('identical_audio', {}).get('utterances', 0) for p in pairs)}")
    else:
        parts.append("audio not compared")
    if report.get("text_compared"):
        parts.append(f"same text train-test {sum(p.get('same_text', {}).get('utterances', 0) for p in pairs)}")
    notes = len(report.get("notes", []))
    lines = [f"leakage audit ({report.get('protocol')}, {report.get('kind')}): " + "; ".join(parts)
             + (f"; {notes} note(s)" if notes else "")]
    lines += [f"  WARNING: {w}" for w in report.get("warnings", [])]
    lines += [f"  ERROR: {e}" for e in report.get("errors", [])]
    return "\n".join(lines)


def format_audit(report: Mapping[str, Any]) -> str:
    """The audit as text: one line per fold with the headline figures, then warnings (loud), errors and notes."""
    lines = [f"leakage audit ({report.get('protocol')}, {report.get('kind')}; audio "
             f"{'compared' if report.get('audio_compared') else 'not compared'}, text "
             f"{'compared' if report.get('text_compared') else 'not available'}):"]
    for fold in report.get("folds", []):
        sizes = fold["sizes"]
        line = f"  {fold['name']}: train {sizes['train']} / valid {sizes['valid']} / test {sizes['test']}"
        tt = fold["pairs"].get("train-test", {})
        seen = fold["pairs"].get(f"{SEEN}-test", {})
        if "speakers" in seen:
            s = seen["speakers"]
            line += (f"; test speakers seen in train+valid {s['shared']}/{s['of']} ({s['share_pct']:.2f} % of test "
                     f"utterances)")
        if "identical_audio" in tt:
            line += f"; identical audio {tt['identical_audio']['utterances']}"
        if "same_text" in tt:
            line += f"; same text {tt['same_text']['utterances']} ({tt['same_text']['share_pct']:.2f} %)"
        lines.append(line)
        lines.append("    labels: " + "; ".join(f"{s} " + ", ".join(f"{k} {v}" for k, v in fold["labels"][s].items())
                                               for s in SPLIT_NAMES if fold["labels"][s]))
    for w in report.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    for e in report.get("errors", []):
        lines.append(f"  ERROR: {e}")
    for n in report.get("notes", []):
        lines.append(f"  note: {n}")
    return "\n".join(lines)
