"""``emotion2vec ensemble RUN_DIR RUN_DIR ... --out DIR``: finished runs combined by voting."""

from __future__ import annotations

import argparse
import textwrap

from .options import non_negative_int, positive_int, unique_list

EXAMPLES = """
examples:
  emotion2vec ensemble results/urdu/e2v results/urdu/wavlm results/urdu/fbank --out results/urdu/ensemble
  emotion2vec ensemble results/urdu/* --vote hard --weights dev --out results/urdu/ensemble_hard
  emotion2vec ensemble results/urdu/* --search all --out results/urdu/ensemble_best     (chosen on dev)"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = textwrap.fill(
        "Combine finished probe, fine-tuning or ensemble runs of one task on the same corpus, folds and test keys "
        "(the first mismatch is named) by a soft vote (mean of probabilities; of predictions for regression) or a "
        "hard majority vote (ties to the largest summed probability), optionally weighted by each run's dev score. "
        "--search ranks combinations on dev (test alongside) and keeps the best on dev.", 100)
    p.epilog = textwrap.fill(
        "outputs in --out, as a probe's: results.json, results.md (the ensemble against its members, the ranking), "
        "predictions.tsv, valid_predictions.tsv, confusion.png, speakers.png; `emotion2vec report` tabulates them.",
        100) + "\n" + EXAMPLES
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories (results.json, "
                   "predictions.tsv; valid_predictions.tsv for --search). A glob may hold more: files (a report's "
                   "table.md), robustness runs, sweeps, the --out folder and an earlier ensemble of runs given too "
                   "are skipped with a note")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--vote", choices=("soft", "hard"), default="soft",
                   help="soft (default): mean of the probabilities / predictions; hard: majority of the classes")
    p.add_argument("--weights", choices=("equal", "dev"), default="equal",
                   help="equal (default) or dev: each member weighs its dev score (headline metric) per fold")
    p.add_argument("--search", default=None, metavar="K|all",
                   help="evaluate every combination of K runs (all: of every size), ranked on dev; the best on dev "
                        "is written")
    p.add_argument("--name", default=None, help="source name in reports (default ensemble(a+b+...))")
    p.add_argument("--group-by", type=unique_list("column"), default=None, metavar="COLS",
                   help="data.tsv columns for the fairness analysis (default: gender when present)")
    p.add_argument("--speaker-min-utterances", type=positive_int, default=20, metavar="N",
                   help="score every speaker with at least N test utterances (default 20)")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000,
                   help="bootstrap resamples of the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..analysis.ensemble import run_ensemble, select_members

    group_by = args.group_by.split(",") if args.group_by else None
    runs = select_members(args.runs, args.out, lambda msg: print(f"ensemble: note: {msg}", file=sys.stderr))
    run_ensemble(runs, args.out, vote=args.vote, weights=args.weights, search=args.search, name=args.name,
                 group_by=group_by, speaker_min=args.speaker_min_utterances, resamples=args.bootstrap,
                 seed=args.seed, verbose=not args.quiet)
    return 0
