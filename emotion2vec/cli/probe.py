"""``emotion2vec probe``: the downstream model trained per fold on extracted features."""

from __future__ import annotations

import argparse
import textwrap

from ..downstream import DEFAULT_LR, SELECT_METRICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Train the emotion2vec downstream probe -- Linear(D->256), ReLU, mean over frames, Linear(256->C) -- on "
        "extracted features, one model per fold of folds.json; pick each fold's epoch on its valid keys and "
        "report test WA / UA / WF1 / macro-F1 as mean +- std over folds. Defaults follow the official recipe "
        "(RMSprop 5e-4, momentum 0.9, CyclicLR 5e-4..1e-3, batch 128, 100 epochs, best valid WA, seed 42).", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: results.json (config, per-fold metrics, best epochs, curves, mean/std), results.md "
        "(per-fold table), predictions.tsv (fold, key, label, prediction, p_<label>), confusion.png (summed "
        "over folds, row-normalised).", 100) + ("\n\nexample:\n  emotion2vec probe --features features/urdu/emotion2vec_base "
        "--data manifests/urdu --out results/urdu/emotion2vec_base")
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--features", required=True, metavar="DIR",
                    help="feature directory written by `emotion2vec extract` (features.json, index.tsv, .npy)")
    io.add_argument("--data", required=True, metavar="DIR",
                    help="corpus directory written by `emotion2vec prepare` (data.tsv, folds.json)")
    io.add_argument("--out", required=True, metavar="DIR",
                    help="output directory (created; existing outputs are replaced)")
    io.add_argument("--protocol", default=None, metavar="P",
                    help="use folds_<P>.json (computed from data.tsv when missing) instead of folds.json")
    io.add_argument("--fold-seed", type=int, default=0, help="seed of folds computed on the fly (default 0)")
    io.add_argument("--folds", default=None, metavar="LIST",
                    help="only these folds: comma-separated names or 1-based numbers (default: all)")
    io.add_argument("--layer", default=None, metavar="L",
                    help="with features of several layers: a block index (-1 = last), 'a,b,c' to average those "
                         "layers, or 'mean' to average all stored layers (default: the only stored layer)")
    io.add_argument("--name", default=None,
                    help="feature-source name in reports and tables (default: the --features folder name)")
    train = parser.add_argument_group("model and training")
    train.add_argument("--hidden", type=int, default=256, help="hidden size (default 256)")
    train.add_argument("--epochs", type=int, default=100, help="training epochs per fold (default 100)")
    train.add_argument("--batch-size", type=int, default=128, help="utterances per batch (default 128)")
    train.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="rmsprop",
                       help="rmsprop (default, as the official recipe) or adam")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 5e-4 for rmsprop, 1e-3 for adam)")
    train.add_argument("--momentum", type=float, default=0.9, help="RMSprop momentum (default 0.9)")
    train.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    train.add_argument("--scheduler", choices=("cyclic", "none"), default="cyclic",
                       help="cyclic (default): triangular CyclicLR between lr and 2*lr, 10 epochs up and 10 down, "
                            "as the official recipe; none: constant lr")
    train.add_argument("--select-metric", choices=SELECT_METRICS, default="wa",
                       help="validation metric that picks each fold's best epoch (default wa, as the official "
                            "recipe; ties keep the earlier epoch)")
    train.add_argument("--patience", type=int, default=None,
                       help="stop a fold after this many epochs without validation improvement "
                            "(default: train all epochs, keep the best)")
    train.add_argument("--valid-fraction", type=float, default=0.2,
                       help="folds without valid keys use this seeded random fraction of train as valid "
                            "(default 0.2; 0 = no validation, keep the last epoch)")
    train.add_argument("--valid-is-test", action="store_true",
                       help="select epochs on the test keys and train on train+valid (optimistic, the paper's "
                            "'*' rows)")
    train.add_argument("--standardize", action="store_true",
                       help="standardise every feature dimension with the fold's training mean/std")
    train.add_argument("--seed", type=int, default=42, help="seed of init, shuffling, valid split (default 42)")
    train.add_argument("--allow-unseen-test-labels", action="store_true",
                       help="score folds whose test labels never occur in their training set (cross-corpus work); "
                            "by default such a fold is refused by name. A warning goes into results.md")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", default="auto",
                           help="auto (default: cuda when available), cpu, cuda, cuda:N")
    execution.add_argument("--threads", type=int, default=None,
                           help="CPU threads while training (default: 1 when batches are small, e.g. "
                                "utterance-level features, where threads only add synchronisation; else torch's)")
    execution.add_argument("--quiet", action="store_true", help="print only the final mean +- std table")


def run(args: argparse.Namespace) -> int:
    from ..downstream import ProbeError
    from ..downstream.probe import run_probe
    from ..downstream.report import summary_markdown
    from ..downstream.training import ProbeConfig

    if args.threads is not None and args.threads < 1:
        raise ProbeError(f"--threads must be positive, got {args.threads}")
    config = ProbeConfig(hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                         optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, scheduler=args.scheduler,
                         select_metric=args.select_metric, patience=args.patience, seed=args.seed,
                         standardize=args.standardize, valid_fraction=args.valid_fraction,
                         valid_is_test=args.valid_is_test)
    result = run_probe(args.features, args.data, args.out, config, protocol=args.protocol, layer=args.layer,
                       device=args.device, folds=args.folds, name=args.name, fold_seed=args.fold_seed,
                       verbose=not args.quiet, threads=args.threads,
                       allow_unseen_test_labels=args.allow_unseen_test_labels)
    if args.quiet:
        print(summary_markdown(result))
    return 0
