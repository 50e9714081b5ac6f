"""``emotion2vec prepare CORPUS --root DIR``: data.tsv + folds.json for a corpus as distributed."""

from __future__ import annotations

import argparse

from ..downstream.corpora import ALIASES, CORPORA
from .options import float_range, fraction, int_at_least


def _epilog() -> str:
    from ..downstream.folds import PROTOCOLS
    from ..downstream.prepare import PROTOCOL_HELP

    lines = ["corpora (default protocol; expected layout under --root; names are case-insensitive):"]
    for name, spec in CORPORA.items():
        proto = spec.default_protocol
        if proto == "auto":
            proto = "speaker-kfold with >= 4 speakers, else random-kfold"
        elif spec.fold_options:
            proto += " " + " ".join(f"{k}={v}" for k, v in spec.fold_options.items())
        opts = " ".join("--" + o.replace("_", "-") for o in spec.options)
        lines.append(f"  {name:<13} {spec.description} [{proto}]" + (f" options: {opts}" if opts else ""))
        lines.append(f"  {'':<13}   {spec.layout}")
    lines.append(f"  aliases: {', '.join(f'{a} = {b}' for a, b in ALIASES.items())}")
    lines += ["", "protocols:"]
    lines += [f"  {p:<13} {PROTOCOL_HELP[p]}" for p in PROTOCOLS]
    lines += [
        "",
        "output (--out, default manifests/CORPUS):",
        "  data.tsv              key path label speaker gender duration [channel] [split] [session|foldN]",
        "                        [votes] [arousal valence dominance | sentiment] [text]",
        "  folds.json            the folds of the first --protocol (default: the corpus's protocol above); when",
        "                        folds.json already holds another protocol's folds (an earlier prepare into the",
        "                        same folder), it keeps them (a note says so) unless --overwrite-folds: e.g.",
        "                        `prepare urdu --protocol holdout` adds folds_holdout.json and leaves the default",
        "                        folds; probe / finetune / audit read it with --protocol holdout",
        "  folds_<protocol>.json one per --protocol (the first one too), each with its leakage audit",
        "  audio_hashes.tsv      cache of the decoded-audio hashes the audit compares",
        "",
        "examples:",
        "  emotion2vec prepare urdu --root data/urdu --out manifests/urdu",
        "  emotion2vec prepare urdu --root data/urdu --out manifests/urdu --protocol speaker-holdout",
        "  emotion2vec prepare iemocap --root IEMOCAP_full_release --protocol loso-session --protocol loso-speaker",
        "  emotion2vec prepare iemocap --root IEMOCAP_full_release --all-labels --protocol session-rotation",
        "  emotion2vec prepare msp-podcast --root MSP-Podcast --test-set Test2",
        "  emotion2vec prepare emobox --root data/urdu --emobox-data EmoBox/data/urdu --out manifests/urdu-emobox",
        "  emotion2vec prepare meld --root MELD.Raw --audio-dir MELD.Raw_wav",
        "  emotion2vec prepare folder --root my_corpus --speaker-regex '^(?P<speaker>[^_]+)_' --label-map wut=angry",
    ]
    return "\n".join(lines)


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Scan a speech-emotion corpus as distributed and write DIR/data.tsv (one row per\n"
                          "utterance) and DIR/folds.json (train/valid/test folds of its evaluation protocol).")
    parser.epilog = _epilog()
    parser.add_argument("corpus", metavar="CORPUS", help=f"one of: {', '.join(CORPORA)}")
    parser.add_argument("--root", required=True, metavar="DIR", help="the corpus folder as distributed")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: manifests/CORPUS)")
    parser.add_argument("--protocol", action="append", metavar="P",
                        help="fold protocol (see below); repeat or comma-separate for several: each is written as "
                             "folds_<P>.json, the first also as folds.json unless folds.json holds another "
                             "protocol's folds. Default: the corpus's protocol")
    parser.add_argument("--overwrite-folds", action="store_true",
                        help="write the first --protocol as folds.json even where folds.json holds the folds of "
                             "another protocol")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice in the folds (default 0)")
    parser.add_argument("--folds", type=int_at_least(3), metavar="K",
                        help="number of folds for random-kfold / speaker-kfold")
    parser.add_argument("--valid-fraction", type=fraction, metavar="F",
                        help="valid share for loso-session (0.2), holdout / speaker-holdout (0.1), original "
                             "without official valid (0.1), emobox (0.2)")
    parser.add_argument("--test-fraction", type=float_range(0.0, 1.0, low_open=True), metavar="F",
                        help="test share for holdout / speaker-holdout (default 0.2)")
    parser.add_argument("--no-audio-audit", action="store_true",
                        help="leave identical decoded audio out of the leakage audit (no audio is decoded)")
    parser.add_argument("--label-map", metavar="OLD=NEW,...",
                        help="rename labels (an empty NEW drops the label); for folder: folder name -> label")
    parser.add_argument("--exclude", metavar="KEYS", action="append",
                        help="comma-separated keys to leave out (or @FILE with one key per line)")
    group = parser.add_argument_group("corpus options")
    group.add_argument("--all-labels", action="store_true",
                       help="iemocap: keep every label, not only the 4 classes (EMO-SUPERB's label set); "
                            "msp-podcast: keep other (O) and no-agreement (X, as unknown)")
    group.add_argument("--test-set", metavar="NAME",
                       help="msp-podcast: the Split_Set(s) that are the test set, comma-separated (default Test1; "
                            "the other test sets are left out; EMO-SUPERB: Test1,Test2)")
    group.add_argument("--audio-dir", metavar="DIR",
                       help="meld: wav/flac tree mirroring the release (converted from its .mp4); "
                            "mosi/mosei: folder with <video_id>/<clip_id>.wav (default ROOT/wav)")
    group.add_argument("--speaker-regex", metavar="RE",
                       help="folder: regex searched in the file name (no extension); named group 'speaker' or the "
                            "first group = speaker, optional group 'gender'")
    group.add_argument("--emobox-data", metavar="DIR", help="emobox: EmoBox's data/<ds> folder")
    group.add_argument("--condition", choices=("P", "S", "p", "s"),
                       help="EMO-SUPERB's label condition: P = primary emotions, S = secondary (msp-improv, "
                            "biic-podcast: which label folder; msp-podcast: which raters' votes); the corpus is "
                            "named e.g. 'msp-improv (P)' in folds and results")
    group.add_argument("--keep-neutral", action="store_true",
                       help="mosi: keep the neutral clips (score 0, label neutral), as Wagner et al.'s valence "
                            "regression on the sentiment score does")
    group.add_argument("--speakers", metavar="TABLE",
                       help="mosi: CSV/TSV of video_id (or speaker) and gender (m/f), which the corpus does not "
                            "distribute: fills the gender column")
    parser.add_argument("--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    import logging

    from ..downstream.prepare import prepare, read_key_list

    if args.quiet:
        logging.getLogger("emotion2vec").setLevel(logging.WARNING)
    result = prepare(args.corpus, args.root, args.out, protocols=args.protocol, seed=args.seed, folds=args.folds,
                     valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
                     audit_audio=not args.no_audio_audit, label_map=args.label_map,
                     exclude=read_key_list(args.exclude), overwrite_folds=args.overwrite_folds,
                     all_labels=args.all_labels, audio_dir=args.audio_dir,
                     speaker_regex=args.speaker_regex, emobox_data=args.emobox_data, test_set=args.test_set,
                     condition=args.condition.upper() if args.condition else None, keep_neutral=args.keep_neutral,
                     speakers=args.speakers)
    if not args.quiet:
        print(result.summary())
        print(result.audit_text())
    return 0
