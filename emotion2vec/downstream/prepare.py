"""``emotion2vec prepare CORPUS --root DIR --out DIR``: write ``data.tsv`` and ``folds.json`` for a corpus.

Wired into the main CLI through :func:`add_arguments` and :func:`run`; also runnable on its own as
``python -m emotion2vec.downstream.prepare``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from ..audio import AudioError
from .corpora import ALIASES, CORPORA, LAYOUTS, CorpusError, default_protocol, prepare_corpus
from .folds import (PROTOCOL_OPTIONS, FOLDS_JSON, PROTOCOLS, FoldsError, check_folds, folds_filename, make_folds,
                    save_folds)
from .manifest import DATA_TSV, ManifestError, write_data_tsv

__all__ = ["add_arguments", "run", "main", "EPILOG"]

log = logging.getLogger("emotion2vec.downstream.prepare")

_PROTOCOL_HELP = {
    "loso-session": "leave one session out (IEMOCAP: 5 folds), valid = seeded 20% of the other sessions",
    "loso-speaker": "leave one speaker out: test 1 speaker, valid the next one, train the rest",
    "random-kfold": "seeded label-stratified K partitions (--folds, default 10 = 80/10/10): test i, valid i+1, "
                    "train the rest (K=5: 60/20/20)",
    "speaker-kfold": "K speaker-disjoint groups (--folds, default min(5, #speakers)): test i, valid i+1",
    "original": "the official split (split column); no official valid -> seeded 10% of train",
    "emobox": "EmoBox's own folds (prepare emobox); missing valid -> seeded 20% of train",
}


def _epilog() -> str:
    lines = ["corpora (default protocol; expected layout under --root):"]
    for name, spec in CORPORA.items():
        proto = spec.default_protocol
        if proto == "auto":
            proto = "speaker-kfold with >= 4 speakers, else random-kfold"
        elif spec.fold_options:
            proto += " " + " ".join(f"{k}={v}" for k, v in spec.fold_options.items())
        opts = " ".join("--" + o.replace("_", "-") for o in spec.options)
        lines.append(f"  {name:<13} {spec.description} [{proto}]" + (f" options: {opts}" if opts else ""))
        lines.append(f"  {'':<13}   {LAYOUTS[name]}")
    lines.append(f"  aliases: {', '.join(f'{a} = {b}' for a, b in ALIASES.items())}")
    lines.append("")
    lines.append("protocols:")
    for p in PROTOCOLS:
        lines.append(f"  {p:<13} {_PROTOCOL_HELP[p]}")
    lines += [
        "",
        "output (--out, default manifests/CORPUS):",
        "  data.tsv              key path label speaker gender duration [channel] [split] [session|foldN]",
        "  folds.json            the folds of the first --protocol (default: the corpus's protocol above)",
        "  folds_<protocol>.json one per --protocol (the first one too)",
        "",
        "examples:",
        "  emotion2vec prepare urdu --root ../shared/data/urdu --out manifests/urdu",
        "  emotion2vec prepare iemocap --root IEMOCAP_full_release --protocol loso-session --protocol loso-speaker",
        "  emotion2vec prepare meld --root MELD.Raw --audio-dir MELD.Raw_wav",
        "  emotion2vec prepare folder --root my_corpus --speaker-regex '^(?P<speaker>[^_]+)_' --label-map wut=angry",
    ]
    return "\n".join(lines)


EPILOG = _epilog()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` arguments (and its help epilog) to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if not parser.description:
        parser.description = ("Scan a speech-emotion corpus as distributed and write DIR/data.tsv (one row per\n"
                              "utterance) and DIR/folds.json (train/valid/test folds of its evaluation protocol).")
    parser.epilog = EPILOG
    names = list(CORPORA) + list(ALIASES)
    parser.add_argument("corpus", metavar="CORPUS", choices=names, help=f"one of: {', '.join(CORPORA)}")
    parser.add_argument("--root", required=True, metavar="DIR", help="the corpus folder as distributed")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: manifests/CORPUS)")
    parser.add_argument("--protocol", action="append", metavar="P",
                        help=f"fold protocol ({', '.join(PROTOCOLS)}); repeat or comma-separate for several: "
                             f"the first is written as folds.json, each as folds_<P>.json. "
                             f"Default: the corpus's protocol (see below)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice in the folds (default 0)")
    parser.add_argument("--folds", type=int, metavar="K", help="number of folds for random-kfold / speaker-kfold")
    parser.add_argument("--valid-fraction", type=float, metavar="F",
                        help="valid share for loso-session (0.2), original without official valid (0.1), emobox (0.2)")
    parser.add_argument("--label-map", metavar="OLD=NEW,...",
                        help="rename labels (an empty NEW drops the label); for folder: folder name -> label")
    parser.add_argument("--exclude", metavar="KEYS", action="append",
                        help="comma-separated keys to leave out (or @FILE with one key per line)")
    group = parser.add_argument_group("corpus options")
    group.add_argument("--all-labels", action="store_true", help="iemocap: keep every label, not only the 4 classes")
    group.add_argument("--audio-dir", metavar="DIR",
                       help="meld: wav/flac tree mirroring the release (converted from its .mp4); "
                            "mosi/mosei: folder with <video_id>/<clip_id>.wav (default ROOT/wav)")
    group.add_argument("--speaker-regex", metavar="RE",
                       help="folder: regex searched in the file name (no extension); named group 'speaker' or the "
                            "first group = speaker, optional group 'gender'")
    group.add_argument("--emobox-data", metavar="DIR", help="emobox: EmoBox's data/<ds> folder")
    parser.add_argument("--quiet", action="store_true", help="print only errors")


def _exclude_keys(values) -> list[str]:
    keys: list[str] = []
    for v in values or []:
        if v.startswith("@"):
            path = Path(v[1:])
            try:
                keys += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except OSError as e:
                raise CorpusError(f"--exclude {v}: cannot read {path}: {e.strerror or e}") from None
        else:
            keys += [k for k in v.split(",") if k.strip()]
    return keys


def _protocols(values) -> list[str]:
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


def _summary(corpus: str, out: Path, rows: list[dict], written: list[tuple[str, dict]]) -> str:
    labels = Counter(r["label"] for r in rows)
    speakers = {r["speaker"] for r in rows if r["speaker"]}
    hours = sum(r["duration"] for r in rows) / 3600
    lines = [f"{corpus}: {len(rows)} utterances, {hours:.2f} h, {len(speakers)} speakers -> {out / DATA_TSV}",
             "  labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items()))]
    for fname, folds in written:
        sizes = [(len(f["train"]), len(f["valid"]), len(f["test"])) for f in folds["folds"]]
        first = "/".join(map(str, sizes[0]))
        lines.append(f"  {fname}: {folds['protocol']}, {len(sizes)} fold(s), seed {folds['seed']}, "
                     f"speaker-independent {str(folds['speaker_independent']).lower()}, "
                     f"train/valid/test of fold1 {first}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prepare the corpus described by ``args`` (see :func:`add_arguments`). -> exit status (0 ok, 1 error)."""
    handler = None
    logger = logging.getLogger("emotion2vec.downstream")
    old_level = logger.level
    if not getattr(args, "quiet", False):
        # the notes (skipped broken clips, left-out labels, ...) are part of the result: show them
        logger.setLevel(logging.INFO)
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("note: %(message)s"))
            logger.addHandler(handler)
    try:
        return _run(args)
    except (CorpusError, FoldsError, ManifestError, AudioError) as e:
        print(f"emotion2vec prepare: error: {e}", file=sys.stderr)
        return 1
    finally:
        logger.setLevel(old_level)
        if handler is not None:
            logger.removeHandler(handler)


def _run(args: argparse.Namespace) -> int:
    corpus = ALIASES.get(args.corpus, args.corpus)
    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {args.corpus!r}; choose from {', '.join(CORPORA)}")
    spec = CORPORA[corpus]
    protocols = _protocols(getattr(args, "protocol", None))
    rows = prepare_corpus(
        corpus, args.root,
        label_map=getattr(args, "label_map", None),
        exclude=_exclude_keys(getattr(args, "exclude", None)),
        all_labels=getattr(args, "all_labels", False),
        audio_dir=getattr(args, "audio_dir", None),
        speaker_regex=getattr(args, "speaker_regex", None),
        emobox_data=getattr(args, "emobox_data", None),
    )
    if not protocols:
        protocols = [default_protocol(corpus, rows)]
    cli_options = {"folds": getattr(args, "folds", None), "valid_fraction": getattr(args, "valid_fraction", None)}
    for opt, value in cli_options.items():
        if value is not None and not any(opt in PROTOCOL_OPTIONS[p] for p in protocols):
            raise FoldsError(f"--{opt.replace('_', '-')} does not apply to protocol(s) {', '.join(protocols)}")
    seed = int(getattr(args, "seed", 0) or 0)
    all_folds = []
    for p in protocols:
        opts = {k: v for k, v in spec.fold_options.items() if k in PROTOCOL_OPTIONS[p]}
        opts.update({k: v for k, v in cli_options.items() if v is not None and k in PROTOCOL_OPTIONS[p]})
        all_folds.append((p, make_folds(rows, p, seed=seed, corpus=corpus, **opts)))

    out = Path(args.out) if getattr(args, "out", None) else Path("manifests") / corpus
    out.mkdir(parents=True, exist_ok=True)
    write_data_tsv(out / DATA_TSV, rows)
    written = []
    for i, (p, folds) in enumerate(all_folds):
        check_folds(folds, rows)
        save_folds(folds, out / folds_filename(p))
        written.append((folds_filename(p), folds))
        if i == 0:
            save_folds(folds, out / FOLDS_JSON)
            written.insert(0, (FOLDS_JSON, folds))
    # folds files from an earlier run that no longer match the new data.tsv would mislead: remove them
    for stale in sorted(out.glob("folds_*.json")):
        if any(stale.name == name for name, _ in written):
            continue
        try:
            check_folds(json.loads(stale.read_text(encoding="utf-8")), rows)
        except (ValueError, KeyError, TypeError, AttributeError):
            os.unlink(stale)
            log.info("removed %s: it no longer matches the new data.tsv", stale)
    if not getattr(args, "quiet", False):
        shown = [(f"{FOLDS_JSON} (= {folds_filename(all_folds[0][0])})", all_folds[0][1])]
        shown += [(folds_filename(p), f) for p, f in all_folds[1:]]
        print(_summary(corpus, out, rows, shown))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="emotion2vec prepare")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
