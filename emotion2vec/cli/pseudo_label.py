"""``emotion2vec pseudo-label MODEL [MODEL ...] --input UNLABELLED --out DIR``: the data engine's labelling step."""

from __future__ import annotations

import argparse
import textwrap

from ..extract import DTYPE_NAMES
from ..models.config import ATTENTION_IMPLEMENTATIONS
from .options import (device, fraction, max_tokens, non_negative_float, non_negative_int, positive_float,
                      positive_int, probability)

EXAMPLES = """
outputs in DIR: data.tsv (kept files: label, soft votes, confidence, margin, agreement), folds.json (with
--score-on), rejected.tsv (each other file with its reasons), report.md / report.json (hours kept per class,
confidence histogram, agreement between models, the models on the dev set), confidence.png, agreement.png,
predictions/ (one window table per model: a re-run with other filters reuses them).

examples:
  emotion2vec pseudo-label checkpoints/emotion2vec_plus_base --input data/urdu --out pseudo/urdu
  emotion2vec pseudo-label runs/seed/models/fold1 runs/seed2/models/fold1 --input unlabelled/ --out pseudo/r1 \\
      --train-with manifests/seed --score-on manifests/dev --min-confidence 0.7
  torchrun --nproc_per_node 8 -m emotion2vec pseudo-label MODEL --input podcasts.scp --out pseudo/r1 --device cuda
  emotion2vec finetune --checkpoint checkpoints/emotion2vec_base.pt --data pseudo/r1 --out runs/r1"""

OUTPUTS = {"out": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Label unlabelled speech with one or more emotion recognisers (emotion2vec+ models or models of "
        "`emotion2vec finetune`): a prediction per utterance and per window of a long recording, combined over "
        "models and windows (mean probability, agreement), filtered by confidence, margin, agreement, duration and "
        "a per-class quota, written as a corpus that `emotion2vec probe` and `finetune` read (label and soft "
        "votes). Sharded under torchrun like `extract`; a stopped run resumes.", 100)
    parser.epilog = EXAMPLES
    parser.add_argument("models", nargs="+", metavar="MODEL", help="models with a classification head that share "
                        "their labels")
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--input", required=True, nargs="+", metavar="PATH", help="the unlabelled audio: files, "
                    "folders (recursive), data.tsv / fairseq .tsv, wav.scp or .jsonl")
    io.add_argument("--out", required=True, metavar="DIR", help="output folder (a re-run resumes it)")
    io.add_argument("--train-with", metavar="DIR", help="a labelled corpus (data.tsv) added to the training rows, "
                    "e.g. the seed set (needs --score-on)")
    io.add_argument("--score-on", metavar="DIR", help="a labelled dev corpus (data.tsv): every model is scored on it, "
                    "and it becomes the test split of the corpus written (never pseudo-labelled)")
    io.add_argument("--valid-fraction", type=fraction, default=0.2, help="with --score-on: share of the --train-with "
                    "rows (else of the pseudo-labelled rows) that chooses the fine-tuning epoch (default 0.2)")
    io.add_argument("--reference", metavar="DATA_TSV", help="known labels for some inputs (matched by audio path): "
                    "the report gives the accuracy of all their pseudo-labels and of the kept ones")
    io.add_argument("--overwrite", action="store_true", help="predict again (default: reuse the predictions in "
                    "DIR when they were made with the same models, windows and inputs)")
    f = parser.add_argument_group("filters (fractions in [0, 1]; changing them reuses the stored predictions)")
    f.add_argument("--labels", metavar="A,B,...", help="the classes to keep (default: every label of the models "
                   "except other and unknown)")
    f.add_argument("--min-confidence", type=probability, default=0.6, help="combined probability of the label "
                   "(default 0.6)")
    f.add_argument("--min-margin", type=probability, default=0.2, help="its lead over the second label (default 0.2)")
    f.add_argument("--min-agreement", type=probability, default=0.75, help="share of the model x window predictions "
                   "that pick the label (default 0.75)")
    f.add_argument("--min-duration", type=non_negative_float, default=1.0, help="seconds (default 1)")
    f.add_argument("--max-duration", type=positive_float, default=30.0, help="seconds (default 30)")
    f.add_argument("--max-files-per-class", type=positive_int, metavar="N",
                   help="quota: keep the N most confident files of each class")
    f.add_argument("--max-hours-per-class", type=positive_float, metavar="H", help="quota: keep up to H hours of each "
                   "class, most confident first")
    r = parser.add_argument_group("recognition")
    r.add_argument("--window", type=positive_float, default=10.0, metavar="S", help="longer recordings get a prediction per "
                   "window of S seconds (default 10)")
    r.add_argument("--hop", type=positive_float, metavar="S", help="window start every S seconds (default: --window / 2)")
    r.add_argument("--device", type=device(), default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK; default cpu)")
    r.add_argument("--dtype", choices=(*DTYPE_NAMES, "auto"), default="float32", help="compute dtype (default "
                   "float32)")
    r.add_argument("--attention", choices=ATTENTION_IMPLEMENTATIONS, default="sdpa", help="attention (default sdpa)")
    r.add_argument("--max-tokens", type=max_tokens, default=None, help="max padded samples per batch (default as extract)")
    r.add_argument("--num-workers", type=non_negative_int, default=1, help="decoding processes (default 1; 0 = main process)")
    r.add_argument("--chunk-seconds", type=positive_float, default=30.0, help="inputs longer than this run in stitched "
                   "windows through the encoder (default 30)")
    r.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..distributed import join
    from ..pseudolabel import PseudoLabelError
    from ..pseudolabel.filter import FilterConfig
    from ..pseudolabel.run import Engine, run_pseudo_label

    labels = None
    if args.labels is not None:
        labels = tuple(x.strip() for x in args.labels.split(",") if x.strip())
    config = FilterConfig(labels, args.min_confidence, args.min_margin, args.min_agreement, args.min_duration,
                          args.max_duration, args.max_files_per_class, args.max_hours_per_class).check()
    if args.num_workers < 0:
        raise PseudoLabelError(f"--num-workers must be >= 0, got {args.num_workers}")
    hop = args.hop if args.hop is not None else args.window / 2
    processes, device = join(args.device)
    try:
        engine = Engine(device, args.dtype, args.attention, args.max_tokens, args.chunk_seconds, args.num_workers,
                        args.trust_checkpoint)
        run_pseudo_label(args.models, args.input, args.out, config, args.window, hop, args.train_with,
                         args.score_on, args.valid_fraction, args.reference, engine, args.overwrite,
                         progress=not args.quiet, processes=processes)
    finally:
        processes.close()
    return 0
