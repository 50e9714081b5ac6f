"""``emotion2vec synth OUT_DIR``: the demo's procedural emotional-speech corpus, deterministic from a seed."""

from __future__ import annotations

import argparse
import os

from ..demo.synth import EMOTIONS
from .options import non_negative_int, positive_int, unique_list


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out_dir": "dir"}
OUTPUT_LABELS = {"out_dir": "OUT_DIR"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "example:\n  emotion2vec synth corpora/synthetic --speakers 12 --per-emotion 10 --tsv"
    p.add_argument("out_dir", help="output folder (<emotion>/<speaker>_<emotion>_<nnn>.wav)")
    p.add_argument("--seed", type=int, default=0, help="seed of speakers and utterances (default 0)")
    p.add_argument("--speakers", type=positive_int, default=12, help="number of labelled speakers (default 12)")
    p.add_argument("--per-emotion", type=positive_int, default=10,
                   help="utterances per speaker and emotion (default 10)")
    p.add_argument("--emotions", type=unique_list("emotion", lambda: EMOTIONS), default=",".join(EMOTIONS[:4]),
                   help=f"comma-separated subset of {','.join(EMOTIONS)} (default the first four)")
    p.add_argument("--unlabelled", type=non_negative_int, default=0,
                   help="also write this many unlabelled utterances of other speakers to OUT_DIR/unlabelled")
    p.add_argument("--unlabelled-speakers", type=positive_int, default=8,
                   help="speakers of the unlabelled pool (default 8)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    p.add_argument("--tsv", action="store_true", help="also write OUT_DIR/data.tsv")


def run(args: argparse.Namespace) -> int:
    from ..demo.synth import build_corpus, build_unlabelled
    from ..io.manifests import write_data_tsv

    emotions = [e.strip() for e in args.emotions.split(",") if e.strip()]
    rows, written = build_corpus(args.out_dir, args.seed, args.speakers, args.per_emotion, emotions, args.workers)
    minutes = sum(r["duration"] for r in rows) / 60.0
    print(f"{args.out_dir}: {len(rows)} utterances ({written} written, {len(rows) - written} already there), "
          f"{len(emotions)} emotions ({', '.join(emotions)}), {args.speakers} speakers, {minutes:.1f} min of audio")
    for e in emotions:
        print(f"  {e}: {sum(r['label'] == e for r in rows)} files in {os.path.join(args.out_dir, e)}")
    if args.tsv:
        tsv = os.path.join(args.out_dir, "data.tsv")
        write_data_tsv(tsv, rows)
        print(f"  manifest: {tsv}")
    if args.unlabelled:
        udir = os.path.join(args.out_dir, "unlabelled")
        paths, written = build_unlabelled(udir, args.seed, args.unlabelled_speakers, args.unlabelled, args.workers)
        print(f"  unlabelled: {len(paths)} utterances ({written} written) in {udir}")
    return 0
