"""``emotion2vec probe``: the downstream model trained per fold on extracted features."""

from __future__ import annotations

import argparse
import textwrap

from ..downstream import DEFAULT_LR, SELECT_METRICS
from ..downstream.tasks import (DEFAULT_LOSS, DEFAULT_SELECT, HEADS, LOSSES, OPTIMIZERS, POOLINGS, SCHEDULERS, TASKS,
                                 TRAINING_DEFAULTS)
from .options import (EMBEDDING_COLOURS, decay_factor, device, fraction, fractions_list, layer_choice,
                      non_negative_float, non_negative_int, positive_float, positive_int, seeds_list, unique_list)

EXAMPLES = """
examples:
  emotion2vec probe --features features/urdu/e2v --data manifests/urdu --out results/urdu/e2v
  emotion2vec probe ... --loss cb-ce --cb-beta 0.999 --label-smoothing 0.05
  emotion2vec probe ... --head arcface --arcface-scale 30 --arcface-margin 0.3
  emotion2vec probe ... --layer weighted --pooling attention --dropout 0.2     (features of --layers all)
  emotion2vec probe ... --task soft          (votes column; EMO-SUPERB: --protocol session-rotation)
  emotion2vec probe ... --task multilabel
  emotion2vec probe ... --task regression --targets arousal,valence,dominance
  emotion2vec probe ... --head wagner --pooling max --dropout 0.1       (Wagner et al.'s head)
  emotion2vec probe ... --optimizer adamw --scheduler exponential --lr-decay 0.98 --undersample   (Park et al.)
  emotion2vec probe --features features/iemocap/e2v --concat-features features/iemocap/e2v_tokens ...
  emotion2vec probe --features features/iemocap/e2v --data manifests/iemocap \\
      --test-features features/msp-podcast/e2v --test-data manifests/msp-podcast \\
      --label-map contempt=,disgust=,fear=,surprise=,other= --out results/iemocap-to-msp/e2v"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Train downstream heads on extracted features, one per fold of folds.json (or trained on one corpus and "
        "tested on another); pick each fold's epoch on its valid keys and report the test metrics as mean +- std "
        "over folds, with 95% bootstrap intervals. Default head: the emotion2vec probe -- Linear(D->256), ReLU, "
        "mean over frames, Linear(256->C) -- with the official recipe's training for the class tasks (RMSprop 5e-4, "
        "momentum 0.9, CyclicLR 5e-4..1e-3, batch 128, 100 epochs, seed 42); regression standardises features and "
        "targets and trains with AdamW at a constant lr. Tasks: categorical (label column), soft and multilabel "
        "(votes column), regression (--targets columns). A run whose training diverges stops with an error; "
        "collapsed predictions (constant or far-off values, one class for everything) are a WARNING at the top of "
        "results.md and in results.json.", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: results.json (task, loss, head, config, per-fold metrics and intervals, best epochs, "
        "curves, layer weights, mean/std, leakage audit), results.md, predictions.tsv (per test utterance: fold, "
        "key, true targets, prediction, probabilities or predicted values), confusion.png, layer_weights.png "
        "(--layer weighted), heads/<fold>.pt (each fold's head: emotion2vec.downstream.heads.load_head).", 100) \
        + "\n" + EXAMPLES
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
    io.add_argument("--folds", type=unique_list("fold"), default=None, metavar="LIST",
                    help="only these folds: comma-separated names or 1-based numbers (default: all)")
    io.add_argument("--layer", type=layer_choice, default=None, metavar="L",
                    help="with features of several layers: a block index (-1 = last), 'a,b,c' to average those "
                         "layers, 'mean' to average all stored layers, or 'weighted' to learn a softmax-weighted "
                         "sum of all stored layers (reported per run) (default: the only stored layer)")
    io.add_argument("--concat-features", action="append", default=[], metavar="DIR",
                    help="another feature folder of the same utterances whose vectors are concatenated to "
                         "--features' (repeatable): utterance-level vectors side by side, or repeated on every "
                         "frame of a frame-level source (speech + text: a text:PATH folder; the paper's Utt + Frm: "
                         "frames + --granularity tokens)")
    io.add_argument("--concat-layer", type=layer_choice, default=None, metavar="L",
                    help="--layer of the --concat-features folders (default: --layer)")
    io.add_argument("--name", default=None,
                    help="feature-source name in reports and tables (default: the --features folder name)")
    io.add_argument("--test-features", default=None, metavar="DIR",
                    help="cross-corpus: features of another corpus; each fold of --data trains and selects on its "
                         "own train / valid keys (the official split when data.tsv has a split column, else "
                         "folds.json or --protocol; --folds picks) and is tested on every utterance of --test-data")
    io.add_argument("--test-data", default=None, metavar="DIR", help="cross-corpus: the test corpus's prepared folder")
    io.add_argument("--label-map", default=None, metavar="OLD=NEW,...",
                    help="cross-corpus: rename labels of both corpora (an empty NEW drops them); test labels that "
                         "are not training classes are listed and refused")
    io.add_argument("--no-audio-audit", action="store_true",
                    help="leave identical decoded audio out of the leakage audit (no audio is read)")
    task = parser.add_argument_group("task, loss and head")
    task.add_argument("--task", choices=TASKS, default="categorical",
                      help="categorical (default: the label column), soft (vote distributions), multilabel "
                           "(classes above 1/C of the votes), regression (--targets columns)")
    task.add_argument("--targets", type=unique_list("column"), default=None, metavar="COLS",
                      help="regression: comma-separated data.tsv columns, e.g. arousal,valence,dominance")
    task.add_argument("--loss", default=None, metavar="LOSS",
                      help="; ".join(f"{t}: {', '.join(v)} (default {DEFAULT_LOSS[t]})" for t, v in LOSSES.items()))
    task.add_argument("--label-smoothing", type=fraction, default=0.0,
                      help="label smoothing of the cross-entropy losses (EMO-SUPERB: 0.05; default 0)")
    task.add_argument("--cb-beta", type=fraction, default=0.999,
                      help="beta of --loss cb-ce: class j weighs (1-beta)/(1-beta^n_j) (default 0.999)")
    task.add_argument("--head", choices=HEADS, default="linear",
                      help="linear (default: the paper's MLP, hidden layer on every frame, then pooling), arcface "
                           "(cosine classifier with an additive angular margin; categorical only) or wagner (Wagner "
                           "et al.: pooling, dropout, Linear(D->hidden), tanh, dropout, output)")
    task.add_argument("--arcface-scale", type=positive_float, default=30.0, help="ArcFace scale s (default 30)")
    task.add_argument("--arcface-margin", type=non_negative_float, default=0.3,
                      help="ArcFace margin m in radians (default 0.3)")
    task.add_argument("--pooling", choices=POOLINGS, default="mean",
                      help="mean (default), sum, max, attention or stats (mean+std) over frames (all but mean need "
                           "frame-level features)")
    task.add_argument("--dropout", type=fraction, default=0.0, help="dropout on the pooled vector (default 0)")
    train = parser.add_argument_group("model and training")
    train.add_argument("--hidden", type=positive_int, default=256, help="hidden size (default 256)")
    train.add_argument("--epochs", type=positive_int, default=100, help="training epochs per fold (default 100)")
    train.add_argument("--batch-size", type=positive_int, default=128, help="utterances per batch (default 128)")
    defaults = "; ".join(f"{t}: {d['optimizer']}, {d['scheduler']}" for t, d in TRAINING_DEFAULTS.items())
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                       help=f"rmsprop (as the official recipe), adam or adamw (default per task: {defaults})")
    train.add_argument("--lr", type=positive_float, default=None,
                       help="learning rate (default " + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items())
                            + ")")
    train.add_argument("--momentum", type=fraction, default=0.9, help="RMSprop momentum (default 0.9)")
    train.add_argument("--weight-decay", type=non_negative_float, default=None,
                       help="weight decay (default 0; 0.01 with adamw)")
    train.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                       help="cyclic: triangular CyclicLR between lr and 2*lr, 10 epochs up and 10 down, as the "
                            "official recipe; none: constant lr; exponential: lr x --lr-decay after every epoch "
                            "(Park et al.) (default per task, see --optimizer)")
    train.add_argument("--lr-decay", type=decay_factor, default=0.98, metavar="G",
                       help="--scheduler exponential: the factor after every epoch (default 0.98)")
    train.add_argument("--undersample", action="store_true",
                       help="every epoch trains on a fresh random subset in which each class has as many utterances "
                            "as the smallest class (Park et al.; categorical and soft)")
    train.add_argument("--select-metric", choices=SELECT_METRICS, default=None,
                       help="validation metric that picks each fold's best epoch; defaults: "
                            + ", ".join(f"{t} {m}" for t, m in DEFAULT_SELECT.items())
                            + " (the official recipe used wa); ties keep the earlier epoch")
    train.add_argument("--patience", type=positive_int, default=None,
                       help="stop a fold after this many epochs without validation improvement "
                            "(default: train all epochs, keep the best)")
    train.add_argument("--valid-fraction", type=fraction, default=0.2,
                       help="folds without valid keys use this seeded random fraction of train as valid "
                            "(default 0.2; 0 = no validation, keep the last epoch)")
    train.add_argument("--valid-is-test", action="store_true",
                       help="select epochs on the test keys and train on train+valid (optimistic, the paper's "
                            "'*' rows)")
    train.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                       help="standardise every feature dimension with the fold's training mean/std (default: on for "
                            "regression, off for the class tasks)")
    train.add_argument("--standardize-targets", action=argparse.BooleanOptionalAction, default=None,
                       help="regression: learn the targets standardised with the fold's training mean/std (the "
                            "saved head predicts them on their own scale; default on)")
    train.add_argument("--seed", type=int, default=42, help="seed of init, shuffling, valid split (default 42)")
    train.add_argument("--bootstrap", type=non_negative_int, default=1000,
                       help="resamples of each fold's test set for the 95%% interval of the headline metric "
                            "(default 1000; 0 = none)")
    train.add_argument("--allow-unseen-test-labels", action="store_true",
                       help="score folds whose test labels never occur in their training set (cross-corpus work); "
                            "by default such a fold is refused by name. A warning goes into results.md")
    analysis = parser.add_argument_group("analysis (emotion2vec.analysis)")
    analysis.add_argument("--group-by", type=unique_list("column"), default=None, metavar="COLS",
                          help="data.tsv columns whose groups are scored, with bootstrap intervals and the "
                               "difference of two groups (default: gender when present; F minus M)")
    analysis.add_argument("--speaker-min-utterances", type=positive_int, default=20, metavar="N",
                          help="score every speaker with at least N test utterances (default 20)")
    analysis.add_argument("--train-fraction", type=fractions_list, default=None, metavar="LIST",
                          help="label efficiency: e.g. 0.1,0.25,0.5,1.0 -- one probe per stratified, seeded share "
                               "of each fold's training set in OUT/fraction_<f>/, sweep.json, results.md and the "
                               "curve efficiency.png")
    analysis.add_argument("--seeds", type=seeds_list, default=None, metavar="LIST",
                          help="e.g. 0,1,2 -- one probe per seed in OUT/seed_<s>/ (with --train-fraction: "
                               "OUT/fraction_<f>_seed_<s>/); results.md gives mean +- std over seeds and folds")
    analysis.add_argument("--embedding", nargs="?", const="1", default=None, metavar="FOLD",
                          help="embedding.png: 2-D map (t-SNE, or UMAP when installed) of the head's hidden layer "
                               "on the test set of FOLD (name or number; default the first), beside its input "
                               "features")
    analysis.add_argument("--embedding-colour", choices=EMBEDDING_COLOURS, default="label",
                          help="colour the --embedding points by label (default), the label's arousal group (high: "
                               "angry, happy, excited; low: sad, neutral; the paper's Figure 3) or valence group "
                               "(regression: that target), speaker, gender, or corpus (cross-corpus runs: the fold's "
                               "valid utterances of the training corpus beside the test corpus)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", type=device(auto=True), default="auto",
                           help="auto (default: cuda when available), cpu, cuda, cuda:N")
    execution.add_argument("--threads", type=positive_int, default=None,
                           help="CPU threads while training (default: 1 when batches are small, e.g. "
                                "utterance-level features, where threads only add synchronisation; else torch's)")
    execution.add_argument("--quiet", action="store_true", help="print only the final mean +- std table")


def run(args: argparse.Namespace) -> int:
    from ..analysis.efficiency import parse_fractions, parse_seeds, run_sweep, sweep_markdown
    from ..downstream import ProbeError
    from ..downstream.probe import run_probe
    from ..downstream.report import summary_markdown
    from ..downstream.training import ProbeConfig

    if args.threads is not None and args.threads < 1:
        raise ProbeError(f"--threads must be positive, got {args.threads}")
    targets = tuple(t.strip() for t in (args.targets or "").split(",") if t.strip())
    config = ProbeConfig(task=args.task, loss=args.loss, targets=targets, head=args.head, pooling=args.pooling,
                         dropout=args.dropout, label_smoothing=args.label_smoothing, cb_beta=args.cb_beta,
                         arcface_scale=args.arcface_scale, arcface_margin=args.arcface_margin,
                         hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                         optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, scheduler=args.scheduler, lr_decay=args.lr_decay,
                         undersample=args.undersample, select_metric=args.select_metric, patience=args.patience,
                         seed=args.seed, standardize=args.standardize,
                         standardize_targets=args.standardize_targets, valid_fraction=args.valid_fraction,
                         valid_is_test=args.valid_is_test, bootstrap=args.bootstrap)
    options = dict(protocol=args.protocol, layer=args.layer, device=args.device, folds=args.folds, name=args.name,
                   fold_seed=args.fold_seed, threads=args.threads,
                   allow_unseen_test_labels=args.allow_unseen_test_labels, test_features=args.test_features,
                   test_data=args.test_data, label_map=args.label_map, audit_audio=not args.no_audio_audit,
                   group_by=args.group_by.split(",") if args.group_by else None,
                   speaker_min=args.speaker_min_utterances, embedding=args.embedding,
                   concat_features=args.concat_features, concat_layer=args.concat_layer,
                   embedding_colour=args.embedding_colour)
    fractions, seeds = parse_fractions(args.train_fraction), parse_seeds(args.seeds)
    if fractions or seeds:
        sweep = run_sweep(run_probe, args.features, args.data, args.out, config, fractions, seeds,
                          verbose=not args.quiet, **options)
        if args.quiet:
            print(sweep_markdown(sweep))
        return 0
    result = run_probe(args.features, args.data, args.out, config, verbose=not args.quiet, **options)
    if args.quiet:
        print(summary_markdown(result))
    return 0
