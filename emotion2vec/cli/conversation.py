"""``emotion2vec conversation``: emotion prediction in conversation (the next turn's emotion from the previous ones)."""

from __future__ import annotations

import argparse
import textwrap

from .options import (device, fraction, layer_choice, non_negative_float, non_negative_int, positive_float,
                      positive_int, unique_list)

EXAMPLES = """
examples:
  emotion2vec prepare iemocap --root /data/IEMOCAP_full_release --out manifests/iemocap --protocol loso-speaker
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input manifests/iemocap/data.tsv \\
      --out features/iemocap/emotion2vec_base_utt --granularity utterance
  emotion2vec conversation --features features/iemocap/emotion2vec_base_utt --data manifests/iemocap \\
      --protocol loso-speaker --out results/iemocap_conversation/emotion2vec_base
  emotion2vec conversation ... --concat-features features/iemocap/bert-base-uncased      (speech + text)"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Emotion prediction in conversation: predict the emotion of a speaker's next turn from the previous "
        "--history turns of the dialogue (consecutive utterances of one speaker form a turn) with hierarchical "
        "GRUs over frozen utterance features (a two-layer GRU over each turn's utterances, a two-layer GRU over "
        "the turns). Needs data.tsv columns dialog, start and speaker (emotion2vec prepare iemocap writes them). "
        "Reports UAR and macro-F1 (and WA, WF1) per fold, mean +- std.", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: results.json (the probe's format: emotion2vec report tabulates it), results.md, "
        "predictions.tsv (per test sample: fold, the target turn's first utterance, label, prediction, "
        "probabilities), confusion.png. Dialogues with at most --history turns give no sample: they are listed "
        "and the run goes on.", 100) + "\n" + EXAMPLES
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--features", required=True, metavar="DIR", help="feature folder of `emotion2vec extract` "
                    "(frame-level features are averaged per utterance; utterance tokens: their mean)")
    io.add_argument("--concat-features", action="append", default=[], metavar="DIR",
                    help="another feature folder of the same utterances concatenated to --features (repeatable; "
                         "e.g. text features of `extract --checkpoint text:PATH`)")
    io.add_argument("--layer", type=layer_choice, default=None, metavar="L",
                    help="with features of several layers: a block index "
                    "(-1 = last), 'a,b,c' or 'mean' (average) (default: the only stored layer)")
    io.add_argument("--concat-layer", type=layer_choice, default=None, metavar="L", help="--layer of --concat-features "
                    "(default: --layer)")
    io.add_argument("--data", required=True, metavar="DIR", help="corpus folder of `emotion2vec prepare`")
    io.add_argument("--out", required=True, metavar="DIR", help="output directory")
    io.add_argument("--protocol", default=None, metavar="P", help="folds_<P>.json (computed when missing), e.g. "
                    "loso-speaker for IEMOCAP's leave-one-speaker-out 10 folds (default: folds.json)")
    io.add_argument("--fold-seed", type=int, default=0, help="seed of folds computed on the fly (default 0)")
    io.add_argument("--folds", type=unique_list("fold"), default=None, metavar="LIST",
                    help="only these folds (names or 1-based numbers)")
    io.add_argument("--name", default=None, help="feature-source name in reports (default: the --features folder)")
    task = parser.add_argument_group("task")
    task.add_argument("--history", type=positive_int, default=6, help="previous turns a prediction sees (default 6)")
    task.add_argument("--classes", type=unique_list("class"), default=None, metavar="LIST",
                      help="target emotions, e.g. angry,happy,neutral,sad (default: every label of data.tsv); "
                           "turns with other labels are context only")
    task.add_argument("--label-map", default=None, metavar="OLD=NEW,...",
                      help="rename labels before choosing targets, e.g. excited=happy (an empty NEW: context only)")
    train = parser.add_argument_group("model and training")
    train.add_argument("--hidden", type=positive_int, default=256, help="GRU and projection size (default 256)")
    train.add_argument("--gru-layers", type=positive_int, default=2, help="layers of each GRU (default 2)")
    train.add_argument("--dropout", type=fraction, default=0.2, help="dropout between GRU layers and before the "
                       "output layer (default 0.2)")
    train.add_argument("--epochs", type=positive_int, default=30, help="epochs per fold (default 30)")
    train.add_argument("--batch-size", type=positive_int, default=32, help="samples per batch (default 32)")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="weight decay (default 0)")
    train.add_argument("--no-standardize", action="store_true",
                       help="feed the features as they are (default: standardised with the fold's training mean "
                            "and std)")
    train.add_argument("--valid-fraction", type=fraction, default=0.2, help="folds without valid keys use this "
                       "seeded share of the training samples (default 0.2)")
    train.add_argument("--seed", type=int, default=42, help="seed (default 42)")
    train.add_argument("--bootstrap", type=non_negative_int, default=1000,
                       help="resamples for the UAR's 95%% interval per fold "
                       "(default 1000; 0 = none)")
    parser.add_argument("--device", type=device(auto=True), default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=non_negative_int, default=1,
                        help="CPU threads while training (default 1: small "
                        "GRUs only lose to thread synchronisation; 0 = torch's default)")
    parser.add_argument("--quiet", action="store_true", help="print only the final mean +- std table")


def run(args: argparse.Namespace) -> int:
    from ..downstream.conversation import ConversationConfig, run_conversation
    from ..downstream.report import summary_markdown

    config = ConversationConfig(history=args.history, hidden=args.hidden, gru_layers=args.gru_layers,
                                dropout=args.dropout, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                weight_decay=args.weight_decay, seed=args.seed, standardize=not args.no_standardize,
                                valid_fraction=args.valid_fraction, bootstrap=args.bootstrap)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    result = run_conversation(args.features, args.data, args.out, config, protocol=args.protocol, layer=args.layer,
                              concat_features=args.concat_features, concat_layer=args.concat_layer,
                              classes=classes, label_map=args.label_map, folds=args.folds, name=args.name,
                              fold_seed=args.fold_seed, device=args.device, verbose=not args.quiet,
                              threads=args.threads or None)
    if args.quiet:
        print(summary_markdown(result))
    return 0
