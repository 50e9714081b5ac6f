"""``emotion2vec prepare``: a corpus as distributed -> ``data.tsv`` (one row per utterance) and its folds.

:func:`prepare` runs the corpus's preparer (:mod:`.corpora`), makes the folds of each requested protocol
(:mod:`.folds`), audits them for leakage (:mod:`.audit`: shared speakers, identical decoded audio, same text, label
distributions; the audio hashes are cached in ``OUT/audio_hashes.tsv``) and writes ``OUT/data.tsv``,
``OUT/folds.json`` (the first protocol) and one ``OUT/folds_<protocol>.json`` per protocol, each atomically and
each with its audit under ``"audit"``. Folds files of an earlier run that no longer match the new ``data.tsv`` are
removed.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..io.manifests import DATA_TSV, write_data_tsv
from .audit import HASH_CACHE, audio_hashes, audit_folds, format_audit
from .corpora import CORPORA, CorpusError, corpus_name, default_protocol, prepare_corpus
from .folds import (FOLDS_JSON, PROTOCOL_OPTIONS, PROTOCOLS, FoldsError, check_folds, folds_filename, make_folds,
                    save_folds)

__all__ = ["PROTOCOL_HELP", "PrepareResult", "prepare", "read_key_list", "parse_protocols"]

log = logging.getLogger("emotion2vec.downstream.prepare")

PROTOCOL_HELP = {
    "loso-session": "leave one session out (IEMOCAP: 5 folds), valid = seeded 20% of the other sessions",
    "session-rotation": "EMO-SUPERB (IEMOCAP): test one session, dev = the session before it, train the rest",
    "loso-speaker": "leave one speaker out: test 1 speaker, valid the next one, train the rest",
    "random-kfold": "seeded label-stratified K partitions (--folds, default 10 = 80/10/10): test i, valid i+1, "
                    "train the rest (K=5: 60/20/20)",
    "speaker-kfold": "K speaker-disjoint groups (--folds, default min(5, #speakers)): test i, valid i+1",
    "holdout": "one seeded split: test = --test-fraction (0.2) stratified, dev = --valid-fraction (0.1) of the rest",
    "speaker-holdout": "holdout with whole speakers: ~20% of utterances as test speakers, ~10% of the rest as dev",
    "original": "the official split (split column); no official valid -> seeded 10% of train",
    "emobox": "EmoBox's own folds (prepare emobox); missing valid -> seeded 20% of train",
    "emo-superb": "EMO-SUPERB's partitions (labels_consensus_<N>.csv: msp-improv, biic-nnime, biic-podcast)",
}


@dataclass
class PrepareResult:
    corpus: str
    out: Path
    rows: list[dict]
    folds: list[tuple[str, dict]]  # (file name, folds dict), folds.json first

    def audit_text(self) -> str:
        """The leakage audit of every folds file written (folds.json's copy once)."""
        seen, parts = set(), []
        for fname, folds in self.folds:
            if folds["protocol"] in seen:
                continue
            seen.add(folds["protocol"])
            parts.append(format_audit(folds["audit"]))
        return "\n".join(parts)

    def summary(self) -> str:
        labels = Counter(r["label"] for r in self.rows)
        speakers = {r["speaker"] for r in self.rows if r["speaker"]}
        hours = sum(r["duration"] for r in self.rows) / 3600
        lines = [f"{self.corpus}: {len(self.rows)} utterances, {hours:.2f} h, {len(speakers)} speakers -> "
                 f"{self.out / DATA_TSV}",
                 "  labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items()))]
        for i, (fname, folds) in enumerate(self.folds):
            if i == 1 and fname == folds_filename(self.folds[0][1]["protocol"]):
                continue  # the copy of folds.json
            shown = f"{fname} (= {folds_filename(folds['protocol'])})" if fname == FOLDS_JSON else fname
            sizes = [(len(f["train"]), len(f["valid"]), len(f["test"])) for f in folds["folds"]]
            lines.append(f"  {shown}: {folds['protocol']}, {len(sizes)} fold(s), seed {folds['seed']}, "
                         f"speaker-independent {str(folds['speaker_independent']).lower()}, "
                         f"train/valid/test of fold1 {'/'.join(map(str, sizes[0]))}")
        return "\n".join(lines)


def read_key_list(values: Iterable[str] | None) -> list[str]:
    """Keys given as comma-separated strings or ``@FILE`` (one key per line)."""
    keys: list[str] = []
    for v in values or []:
        if v.startswith("@"):
            path = Path(v[1:])
            try:
                keys += [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
            except OSError as e:
                raise CorpusError(f"--exclude {v}: cannot read {path}: {e.strerror or e}") from None
        else:
            keys += [k for k in v.split(",") if k.strip()]
    return keys


def parse_protocols(values: Iterable[str] | None) -> list[str]:
    """Protocol names, repeated or comma-separated, in order, without duplicates."""
    out: list[str] = []
    for v in values or []:
        for p in v.split(","):
            p = p.strip()
            if not p:
                continue
            if p not in PROTOCOLS:
                raise FoldsError(f"unknown protocol {p!r}; choose from {', '.join(PROTOCOLS)}")
            if p not in out:
                out.append(p)
    return out


def _other_protocol(folds_json: Path, protocol: str, rows: list[dict]) -> str | None:
    """The protocol of an existing folds.json when it is another one than ``protocol`` and its folds still fit
    ``rows``; None when there is none, it is the same protocol, or it no longer fits (then it is replaced)."""
    try:
        old = json.loads(folds_json.read_text(encoding="utf-8"))
        check_folds(old, rows)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    other = old.get("protocol")
    return str(other) if other and other != protocol else None


def prepare(corpus: str, root: str | os.PathLike, out: str | os.PathLike | None = None,
            protocols: Iterable[str] | None = None, seed: int = 0, folds: int | None = None,
            valid_fraction: float | None = None, label_map=None, exclude: Iterable[str] | None = None,
            test_fraction: float | None = None, audit_audio: bool = True, overwrite_folds: bool = False,
            **corpus_options) -> PrepareResult:
    """Prepare ``corpus`` found at ``root`` into ``out`` (default ``manifests/<corpus>``).

    ``protocols``: fold protocols (default: the corpus's); the first is written as ``folds.json`` unless
    ``folds.json`` already holds the folds of another protocol that still match the corpus (an earlier prepare):
    those are kept (with a note) unless ``overwrite_folds``; every protocol is written as ``folds_<protocol>.json``.
    ``folds`` / ``valid_fraction`` / ``test_fraction``
    override the protocol options that take them; ``audit_audio``: compare decoded audio across splits in the
    audit; ``corpus_options``: the corpus's own options (``all_labels``, ``audio_dir``, ``speaker_regex``,
    ``emobox_data``, ``test_set``, ``condition``, ``keep_neutral``, ``speakers``). A protocol that promises speaker independence but shares a speaker raises
    :class:`~.audit.AuditError` before anything is written.
    """
    from .emo_superb import CONDITIONED, condition_corpus

    name = corpus_name(corpus)
    spec = CORPORA[name]
    protocols = parse_protocols(protocols)
    rows = prepare_corpus(name, root, label_map=label_map, exclude=exclude, **corpus_options)
    condition = corpus_options.get("condition") or ""  # EMO-SUPERB's P / S: part of the corpus's name
    if not condition and name in CONDITIONED:  # scored under two conditions: the default one is named too
        condition = "P"
    if not protocols:
        protocols = [default_protocol(name, rows)]
    overrides = {"folds": folds, "valid_fraction": valid_fraction, "test_fraction": test_fraction}
    for opt, value in overrides.items():
        if value is not None and not any(opt in PROTOCOL_OPTIONS[p] for p in protocols):
            raise FoldsError(f"--{opt.replace('_', '-')} does not apply to protocol(s) {', '.join(protocols)}")
    made = []
    for p in protocols:
        opts = {k: v for k, v in spec.fold_options.items() if k in PROTOCOL_OPTIONS[p]}
        opts.update({k: v for k, v in overrides.items() if v is not None and k in PROTOCOL_OPTIONS[p]})
        made.append((p, make_folds(rows, p, seed=int(seed), corpus=condition_corpus(name, condition), **opts)))

    out = Path(out) if out else Path("manifests") / name
    out.mkdir(parents=True, exist_ok=True)
    hashes, unreadable = audio_hashes(rows, out / HASH_CACHE, log.info) if audit_audio else (None, [])
    for p, f in made:
        f["audit"] = audit_folds(rows, f, hashes, unreadable)
        for w in f["audit"]["warnings"]:
            log.warning("%s: %s", folds_filename(p), w)
    kept = None if overwrite_folds else _other_protocol(out / FOLDS_JSON, made[0][0], rows)
    write_data_tsv(out / DATA_TSV, rows)
    written: list[tuple[str, dict]] = []
    for i, (p, f) in enumerate(made):
        check_folds(f, rows)
        if i == 0 and kept:
            log.info("%s keeps its %s folds; the %s folds are in %s (give --protocol %s to probe, finetune or "
                     "audit; --overwrite-folds makes them folds.json)", out / FOLDS_JSON, kept, p,
                     folds_filename(p), p)
        elif i == 0:
            save_folds(f, out / FOLDS_JSON)
            written.append((FOLDS_JSON, f))
        save_folds(f, out / folds_filename(p))
        written.append((folds_filename(p), f))
    for stale in sorted(out.glob("folds_*.json")):  # an earlier run's folds that no longer match would mislead
        if any(stale.name == n for n, _ in written):
            continue
        try:
            check_folds(json.loads(stale.read_text(encoding="utf-8")), rows)
        except (ValueError, KeyError, TypeError, AttributeError):
            os.unlink(stale)
            log.info("removed %s: it no longer matches the new data.tsv", stale)
    return PrepareResult(name, out, rows, written)
