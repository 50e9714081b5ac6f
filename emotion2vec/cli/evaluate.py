"""``emotion2vec evaluate MODEL --data MANIFEST_DIR --out DIR``: a trained predictor scored on a labelled corpus."""

from __future__ import annotations

import argparse
import textwrap

from .options import device, max_tokens, non_negative_int, positive_int, unique_list

EXAMPLES = """
examples:
  emotion2vec evaluate results/urdu/e2v --data manifests/urdu --out results/urdu/e2v_eval --folds all
  emotion2vec evaluate runs/iemocap/ft --data manifests/msp-podcast --out runs/iemocap/ft_on_msp \\
      --label-map contempt=,disgust=,fear=,surprise=,other=
  emotion2vec evaluate checkpoints/emotion2vec_plus_base --data manifests/urdu --out results/urdu/plus \\
      --only-corpus-classes
  emotion2vec evaluate hf:audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim --data manifests/iemocap \\
      --targets arousal,valence,dominance --target-range 1,5 --out results/iemocap/w2v2-L-robust-12"""

OUTPUTS = {"out": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Score any trained predictor on any labelled corpus (`emotion2vec prepare` output): a probe run's saved "
        "heads (on --features of the corpus, or on features recomputed from the audio with the run's recorded "
        "upstream), a fine-tuning run's exported models, or one model with its own head (a fine-tuned export, an "
        "emotion2vec+ folder, hf:PATH with an emotion head such as audeering's arousal / dominance / valence "
        "model). Without --folds every utterance is a test utterance scored by every model fold; with --folds the "
        "corpus's folds choose (test and valid), each scored by the model fold of the same name or by the one "
        "model. Labels the model never learned are refused with counts unless mapped.", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: as `emotion2vec probe` -- results.json (kind evaluate; metrics with bootstrap intervals, "
        "fairness groups, per-speaker scores, the leakage audit against the model's training data where it is "
        "known), results.md, predictions.tsv, valid_predictions.tsv (with --folds), confusion.png, speakers.png; "
        "`emotion2vec report` and `ensemble` read them.", 100) + "\n" + EXAMPLES
    parser.add_argument("model", metavar="MODEL",
                        help="a probe or fine-tuning run folder, a model folder (fine-tuned export, emotion2vec+) or "
                             "hf:PATH (a Hugging Face model with an emotion head)")
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--data", required=True, metavar="DIR", help="corpus directory written by `emotion2vec prepare`")
    io.add_argument("--out", required=True, metavar="DIR", help="output directory (created; outputs replaced)")
    io.add_argument("--features", default=None, metavar="DIR",
                    help="a probe run: the corpus's features, extracted as the run's were (default: recomputed from "
                         "the audio with the upstream and settings the run recorded)")
    io.add_argument("--folds", default=None, metavar="LIST",
                    help="score the test (and valid) utterances of these folds of the corpus: names, 1-based "
                         "numbers or 'all' (default: every utterance is a test utterance)")
    io.add_argument("--protocol", default=None, metavar="P", help="with --folds: folds_<P>.json instead of folds.json")
    io.add_argument("--fold-seed", type=int, default=0, help="seed of folds computed on the fly (default 0)")
    io.add_argument("--name", default=None, help="source name in reports (default: the model folder's name)")
    io.add_argument("--no-audio-audit", action="store_true",
                    help="leave identical decoded audio out of the leakage audit (no audio is hashed)")
    labels = parser.add_argument_group("labels and targets")
    labels.add_argument("--label-map", default=None, metavar="OLD=NEW,...",
                        help="rename the corpus's labels (an empty NEW drops them) onto the model's classes")
    labels.add_argument("--only-corpus-classes", action="store_true",
                        help="score a classifier over the corpus's classes only (its probabilities renormalised over "
                             "them)")
    labels.add_argument("--targets", type=unique_list("column"), default=None, metavar="COLS",
                        help="regression: the model's targets to score (data.tsv columns of the same names; default: "
                             "every one the corpus has)")
    labels.add_argument("--target-range", default=None, metavar="LOW,HIGH",
                        help="regression: map the corpus's ratings linearly from [LOW, HIGH] onto [0, 1] (e.g. 1,5 "
                             "for IEMOCAP, 1,7 for MSP-Podcast)")
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--bootstrap", type=non_negative_int, default=1000,
                          help="resamples of the 95%% interval (default 1000)")
    analysis.add_argument("--seed", type=int, default=42, help="seed of the bootstrap (default 42)")
    analysis.add_argument("--group-by", type=unique_list("column"), default=None, metavar="COLS",
                          help="data.tsv columns whose groups are scored (default: gender when present)")
    analysis.add_argument("--speaker-min-utterances", type=positive_int, default=20, metavar="N",
                          help="score every speaker with at least N test utterances (default 20)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] (default cpu)")
    execution.add_argument("--max-tokens", type=max_tokens, default=None,
                           help="padded samples per batch (default as extract)")
    execution.add_argument("--num-workers", type=non_negative_int, default=0, help="decoding processes (default 0)")
    execution.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects")
    execution.add_argument("--quiet", action="store_true", help="print only the final table")


def run(args: argparse.Namespace) -> int:
    from ..analysis.evaluate import parse_target_range, run_evaluate
    from ..downstream.report import summary_markdown

    result = run_evaluate(args.model, args.data, args.out, features=args.features, label_map=args.label_map,
                          folds=args.folds, protocol=args.protocol, fold_seed=args.fold_seed,
                          targets=args.targets.split(",") if args.targets else None,
                          target_range=parse_target_range(args.target_range),
                          only_corpus_classes=args.only_corpus_classes, name=args.name, device=args.device,
                          bootstrap=args.bootstrap, seed=args.seed,
                          group_by=args.group_by.split(",") if args.group_by else None,
                          speaker_min=args.speaker_min_utterances, trust=args.trust_checkpoint,
                          max_tokens=args.max_tokens, num_workers=args.num_workers,
                          audit_audio=not args.no_audio_audit, verbose=not args.quiet)
    if args.quiet:
        print(summary_markdown(result))
    return 0
