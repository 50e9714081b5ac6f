"""``emotion2vec robustness RUN_DIR --data MANIFEST_DIR --out DIR``: predictions under signal perturbations."""

from __future__ import annotations

import argparse
import textwrap

from ..analysis.perturbations import PERTURBATIONS
from .options import device, int_at_least, non_negative_int, positive_float, positive_int, unique_list

#: a batch budget below one second of 16 kHz audio holds no input
MAX_TOKENS = int_at_least(16000)

EXAMPLES = """
examples:
  emotion2vec robustness results/urdu/e2v --data manifests/urdu --out results/urdu/e2v_robustness
  emotion2vec robustness runs/urdu/e2v_ft --data manifests/urdu --out runs/urdu/e2v_ft_robustness   (fine-tuned)
  emotion2vec robustness results/urdu/e2v --data manifests/urdu --out DIR --perturbations gain,white-noise \\
      --values clip=0.1,0.2,0.3 --save-audio 5"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = textwrap.fill(
        "Perturb every test utterance of every fold of a finished probe or fine-tuning run with each of Wagner et "
        "al.'s eight perturbations (one value drawn per utterance, seeded) and run the fold's model again: a probe's "
        "features are recomputed through the same upstream and settings (the feature folder's features.json) for "
        "its saved head, a fine-tuning run's exported model takes the waveforms; compare with the clean "
        "prediction: robustness = share of unchanged predictions (regression: |change| < 0.05 per target), and "
        "the task metric under perturbation beside the clean one.", 100)
    p.epilog = textwrap.fill(
        "outputs in --out: results.json, results.md, robustness.png, changes.tsv (per utterance and perturbation), "
        "audio/ (--save-audio), parts/ (per-fold predictions: an interrupted run resumes). Perturbations and "
        "their default values: " + "; ".join(f"{n} {', '.join(f'{v:g}' for v in q.values)} {q.unit}"
                                             for n, q in PERTURBATIONS.items()) + ".", 100) + "\n" + EXAMPLES
    p.add_argument("run", metavar="RUN_DIR", help="a finished `emotion2vec probe` output directory (with "
                   "heads/<fold>.pt) or `emotion2vec finetune` output directory (with models/<fold>)")
    p.add_argument("--data", required=True, metavar="MANIFEST_DIR",
                   help="the prepared corpus the run was tested on (data.tsv: the audio of the test keys)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--perturbations", type=unique_list("perturbation"), default=None, metavar="LIST",
                   help=f"comma-separated subset (default all: {','.join(PERTURBATIONS)})")
    p.add_argument("--values", action="append", default=None, metavar="NAME=V,V,...",
                   help="replace a perturbation's value set, e.g. clip=0.1,0.2,0.3 (repeatable; range-checked)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-utterance draws (default 0)")
    p.add_argument("--threshold", type=positive_float, default=0.05,
                   help="regression: a change of at least this much counts as changed (default 0.05)")
    p.add_argument("--folds", type=unique_list("fold"), default=None, metavar="LIST",
                   help="only these folds of the run: names or 1-based numbers (default: all)")
    p.add_argument("--save-audio", type=non_negative_int, default=0, metavar="N",
                   help="write the first N test utterances, clean and perturbed, to audio/ for listening")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="the upstream to load instead of the path recorded in features.json (the same weights)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    p.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] for the upstream (default cpu)")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=None, help="padded samples per batch (default as extract)")
    p.add_argument("--num-workers", type=non_negative_int, default=0,
                   help="decoding processes (default 0: in this process)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="print only the final table")


def run(args: argparse.Namespace) -> int:
    from ..analysis.perturbations import parse_overrides, select_perturbations
    from ..analysis.robustness import robustness_markdown, run_robustness

    names = [n.strip() for n in args.perturbations.split(",") if n.strip()] if args.perturbations else None
    perturbations = select_perturbations(names, parse_overrides(args.values))
    result = run_robustness(args.run, args.data, args.out, perturbations, seed=args.seed, save_audio=args.save_audio,
                            device=args.device, folds=args.folds, checkpoint=args.checkpoint,
                            trust=args.trust_checkpoint, max_tokens=args.max_tokens, num_workers=args.num_workers,
                            threads=args.threads, threshold=args.threshold, verbose=not args.quiet)
    if args.quiet:
        print(robustness_markdown(result))
    return 0
