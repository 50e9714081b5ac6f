"""``emotion2vec finetune``: an upstream and a head trained end to end per fold, scored and exported."""

from __future__ import annotations

import argparse
import textwrap

from ..downstream import SELECT_METRICS
from ..downstream.tasks import DEFAULT_LOSS, HEADS, LOSSES, POOLINGS
from ..finetune import FT_TASKS, FUSIONS, INIT_HEAD, PRECISIONS, SCHEDULES
from .options import (EMBEDDING_COLOURS, decay_factor, device, fraction, fractions_list,
                      non_negative_float, non_negative_int, positive_float, positive_int, seeds_list, unique_list)

EXAMPLES = """
examples:
  emotion2vec finetune --checkpoint checkpoints/emotion2vec_base.pt --data manifests/urdu --out runs/urdu/e2v_ft
  emotion2vec finetune ... --freeze all-but-top 4 --layer-decay 0.8 --freeze-updates 200
  emotion2vec finetune --checkpoint checkpoints/emotion2vec_plus_base --init-head keep ...   (emotion2vec+ head)
  emotion2vec finetune ... --task regression --targets arousal,valence --loss ccc
  emotion2vec finetune ... --layer 8 --head wagner --eval-interval-updates 100   (Wagner et al.: pruned, steps)
  emotion2vec finetune ... --train-fraction 0.25,0.5,1.0 --seeds 0,1,2           (one run each: sweep.json)
  emotion2vec finetune --checkpoint ... --data manifests/iemocap --task speaker --out runs/iemocap/spk
  emotion2vec finetune ... --speaker-model runs/iemocap/spk/models/speaker --fusion tensor
  torchrun --nproc_per_node 4 $(which emotion2vec) finetune ...          (DDP; CPU processes use gloo)
  emotion2vec predict runs/urdu/e2v_ft/models/fold1 recordings/ --out predictions.tsv"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir", "checksum_dir": "dir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Fine-tune an upstream (our checkpoints, official emotion2vec / data2vec / data2vec 2.0, FunASR and "
        "emotion2vec+ folders, hf:PATH) with a downstream head on the waveforms of a prepared corpus, one model "
        "per fold: AdamW, warm-up then linear or cosine decay, batches by total seconds, the CNN frozen by default "
        "(Wagner et al.), the epoch chosen on the fold's valid keys, scored on its test keys like a probe. A re-run "
        "of the same command resumes (also after a kill) without repeating or skipping an update.", 100)
    parser.epilog = textwrap.fill(
        "outputs in --out: results.json, results.md, predictions.tsv, valid_predictions.tsv, confusion.png, "
        "speakers.png, embedding.png (as `emotion2vec probe`), models/<fold>/ (the fold's best model: config.json, "
        "model.safetensors, head.safetensors; `emotion2vec predict`, `extract`, `evaluate` and `robustness` load "
        "it), test_<corpus>/ (--test-data), <fold>/checkpoint_last.pt, checkpoint_best.pt, tb/ (TensorBoard), "
        "<fold>/result.json, finetune.json (the settings a resume must match). A run whose training diverges stops "
        "with an error; collapsed predictions are a WARNING at the top of results.md.", 100) + "\n" + EXAMPLES
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--checkpoint", required=True, metavar="CKPT",
                    help="the model to fine-tune: any checkpoint `emotion2vec extract` loads (or hf:PATH)")
    io.add_argument("--data", required=True, metavar="DIR",
                    help="corpus directory written by `emotion2vec prepare` (data.tsv, folds.json)")
    io.add_argument("--out", required=True, metavar="DIR", help="output directory (a re-run resumes it)")
    io.add_argument("--protocol", default=None, metavar="P", help="use folds_<P>.json instead of folds.json")
    io.add_argument("--fold-seed", type=int, default=0, help="seed of folds computed on the fly (default 0)")
    io.add_argument("--fold", "--folds", dest="folds", type=unique_list("fold"), default=None, metavar="LIST",
                    help="only these folds: comma-separated names or 1-based numbers (default: all)")
    io.add_argument("--name", default=None, help="source name in reports and tables (default finetuned_<ckpt>)")
    io.add_argument("--test-data", action="append", default=[], metavar="DIR",
                    help="after the run, score every fold's model on this other prepared corpus too (repeatable): "
                         "OUT/test_<folder>/ as `emotion2vec evaluate` writes it, summarised in results.json")
    io.add_argument("--test-label-map", default=None, metavar="OLD=NEW,...",
                    help="rename the --test-data corpora's labels onto the run's classes (an empty NEW drops them)")
    io.add_argument("--no-audio-audit", action="store_true",
                    help="leave identical decoded audio out of the leakage audit (no audio is hashed)")
    io.add_argument("--allow-unseen-test-labels", action="store_true",
                    help="score folds whose test labels never occur in their training set")
    io.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    task = parser.add_argument_group("task, loss and head (as `emotion2vec probe`)")
    task.add_argument("--task", choices=FT_TASKS, default="categorical",
                      help="categorical (label column), soft / multilabel (votes), regression (--targets), speaker "
                           "(speaker identification on the speaker column, ArcFace by default)")
    task.add_argument("--targets", type=unique_list("column"), default=None, metavar="COLS",
                      help="regression: data.tsv columns, e.g. "
                      "arousal,valence")
    task.add_argument("--loss", default=None, metavar="LOSS",
                      help="; ".join(f"{t}: {', '.join(v)} (default {DEFAULT_LOSS[t]})" for t, v in LOSSES.items()))
    task.add_argument("--label-smoothing", type=fraction, default=0.0, help="label smoothing of the CE losses")
    task.add_argument("--cb-beta", type=fraction, default=0.999, help="beta of --loss cb-ce (default 0.999)")
    task.add_argument("--head", choices=HEADS, default=None,
                      help="linear (the paper's MLP; default), arcface (default for --task speaker) or wagner "
                           "(Wagner et al.: pooling, dropout, Linear, tanh, dropout, output)")
    task.add_argument("--arcface-scale", type=positive_float, default=30.0, help="ArcFace scale s (default 30)")
    task.add_argument("--arcface-margin", type=non_negative_float, default=0.3,
                      help="ArcFace margin m, radians (default 0.3)")
    task.add_argument("--pooling", choices=POOLINGS, default="mean", help="pooling over frames (default mean)")
    task.add_argument("--dropout", type=fraction, default=0.0, help="dropout on the pooled vector (default 0)")
    task.add_argument("--hidden", type=positive_int, default=256, help="head hidden size (default 256)")
    task.add_argument("--layer", type=int, default=-1,
                      help="upstream layer the head reads (default -1: the last); the blocks above it are removed "
                           "from the model that trains and is exported (smaller and faster; --no-prune keeps them)")
    task.add_argument("--no-prune", dest="prune", action="store_false",
                      help="with --layer N: keep the blocks above N in the model (they do not change its output)")
    task.add_argument("--standardize", action="store_true",
                      help="the new head standardises its input with the start model's training mean/std")
    task.add_argument("--standardize-targets", action=argparse.BooleanOptionalAction, default=None,
                      help="regression: learn the targets standardised with the training mean/std (the exported head "
                           "predicts them on their own scale; default on for regression)")
    ft = parser.add_argument_group("what trains")
    ft.add_argument("--freeze", nargs="+", default=["cnn"], metavar="MODE",
                    help="cnn (default: the convolutional front end frozen), none, or all-but-top N (only the top N "
                         "transformer blocks and the head train)")
    ft.add_argument("--freeze-updates", type=non_negative_int, default=0, metavar="K",
                    help="train the head alone for the first K updates, then the encoder too (default 0)")
    ft.add_argument("--layer-decay", type=decay_factor, default=1.0,
                    help="layer-wise lr decay: each block below the top gets this times the lr of the one above "
                         "(default 1 = none)")
    ft.add_argument("--init-head", choices=INIT_HEAD, default="new",
                    help="new (default) or keep the checkpoint's classification head (emotion2vec+ or a model "
                         "fine-tuned here): each class keeps the row of the same English label")
    ft.add_argument("--head-label-map", default=None, metavar="DATA=HEAD,...",
                    help="with --init-head keep: which head label each class keeps (e.g. 'ang=angry')")
    ft.add_argument("--head-from", default=None, metavar="PROBE_RUN",
                    help="start each fold from that fold's head of a finished `emotion2vec probe` run on this "
                         "checkpoint's features (heads/<fold>.pt, its standardisation included): linear probing, then "
                         "fine-tuning")
    ft.add_argument("--speaker-model", default=None, metavar="DIR",
                    help="fuse this `finetune --task speaker` model's utterance embedding (frozen) into the head")
    ft.add_argument("--fusion", choices=FUSIONS, default="concat",
                    help="concat: [h; e]; tensor: Zadeh et al.'s (2017) outer-product tensor fusion, "
                         "vec([h; 1] outer [e; 1]); park: Park et al.'s Eq. (5), the speaker network's vector joins "
                         "the emotion network's k block vectors, E = sum_i W_i * h_i (needs --park-blocks and a Park "
                         "speaker model) (default concat)")
    ft.add_argument("--park-blocks", type=non_negative_int, default=0, metavar="K",
                    help="Park et al.'s head instead of the utterance head: ReLU, FC, K attention blocks each "
                         "max-pooled over time, fused by Eq. (5), then --head arcface (l2-normalised, s cos) or "
                         "linear; with --task speaker their speaker network (FC, one block, max-pool: K = 1) "
                         "(default 0: the utterance head)")
    ft.add_argument("--park-dim", type=non_negative_int, default=0, metavar="D",
                    help="width of Park et al.'s head (default 0: the upstream's)")
    ft.add_argument("--park-ffn", type=non_negative_int, default=0, metavar="F",
                    help="feed-forward width of its attention blocks (default 0: --park-dim)")
    ft.add_argument("--speaker-train", choices=("frozen", "head", "all"), default="frozen",
                    help="--fusion park: the speaker network frozen (default), or trained with the emotion network "
                         "by Eq. (6), alpha L_emotion + beta L_identification (ArcFace over the fold's training "
                         "speakers): head = the layers after its upstream, all = its upstream too (its CNN frozen)")
    ft.add_argument("--emotion-weight", type=non_negative_float, default=1.0, metavar="ALPHA",
                    help="alpha of Eq. (6) (default 1)")
    ft.add_argument("--id-weight", type=non_negative_float, default=1.0, metavar="BETA",
                    help="beta of Eq. (6) (default 1)")
    ft.add_argument("--start-from", default=None, metavar="FINETUNE_RUN",
                    help="each fold starts from the model that finished fine-tuning run exported for the same fold "
                         "(models/<fold>: its encoder, and its head with --init-head keep); --checkpoint gives the "
                         "architecture (Park et al.'s second step: integrate each fold's emotion network with the "
                         "speaker network)")
    ft.add_argument("--text-features", default=None, metavar="DIR",
                    help="speech + text: concatenate each utterance's vector from this feature folder (`extract "
                         "--checkpoint text:PATH`) to the pooled speech vector before the output layer (the folds "
                         "are scored, not exported: predict cannot give the text)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=positive_int, default=10, help="epochs per fold (default 10)")
    train.add_argument("--lr", type=positive_float, default=1e-4,
                       help="peak lr of the encoder's top block (default 1e-4)")
    train.add_argument("--head-lr", type=positive_float, default=1e-3, help="peak lr of the head (default 1e-3)")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.01,
                       help="AdamW weight decay (default 0.01)")
    train.add_argument("--schedule", choices=SCHEDULES, default="linear",
                       help="after the warm-up: linear (default) or cosine decay to 0, constant, or exponential (lr x "
                            "--lr-decay after every epoch, Park et al.)")
    train.add_argument("--lr-decay", type=decay_factor, default=0.98, metavar="G",
                       help="--schedule exponential: the factor after every epoch (default 0.98)")
    train.add_argument("--undersample", action="store_true",
                       help="every epoch trains on a fresh random subset in which each class has as many utterances "
                            "as the smallest class (Park et al.; categorical, soft, speaker)")
    train.add_argument("--warmup", type=non_negative_float, default=0.1,
                       help="warm-up: a share of all updates (< 1) or a number of updates (default 0.1)")
    train.add_argument("--batch-seconds", type=positive_float, default=60.0,
                       help="padded audio per batch, batch size x longest input (default 60 s)")
    train.add_argument("--accumulate", type=positive_int, default=1, help="batches accumulated per update (default 1)")
    train.add_argument("--clip-norm", type=non_negative_float, default=1.0,
                       help="gradient clipping norm (default 1; 0 = off)")
    train.add_argument("--max-seconds", type=non_negative_float, default=15.0,
                       help="crop longer training inputs at a random position (default 15; 0 = whole inputs)")
    train.add_argument("--repeat-pad", type=non_negative_float, default=0.0, metavar="S",
                       help="repeat shorter training inputs up to S seconds (default 0 = off)")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="autocast precision; auto (default): the fastest measured for the device and model: bf16 "
                            "on GPUs with bf16, on CPUs with AMX, on CPUs with AVX512-BF16 alone for models 768 wide and "
                            "up; else fp16 on a GPU and fp32 on a CPU")
    train.add_argument("--select-metric", choices=SELECT_METRICS, default=None,
                       help="valid metric choosing the epoch (default: the task's, as the probe)")
    train.add_argument("--patience", type=positive_int, default=None,
                       help="stop after this many epochs without improvement")
    train.add_argument("--seed", type=int, default=42, help="seed of the head, batches, crops, dropout (default 42)")
    train.add_argument("--valid-fraction", type=fraction, default=0.2,
                       help="folds without valid keys use this seeded share of train as valid (default 0.2)")
    train.add_argument("--valid-is-test", action="store_true", help="select on the test keys (optimistic)")
    train.add_argument("--speaker-test-fraction", type=fraction, default=0.2,
                       help="--task speaker: share of each speaker's utterances tested (default 0.2)")
    train.add_argument("--speaker-split", choices=("random", "official"), default="random",
                       help="--task speaker: random (default: --speaker-test-fraction of each speaker's utterances "
                            "tested) or official (the corpus's split column: VoxCeleb1's identification split)")
    train.add_argument("--min-speaker-utterances", type=positive_int, default=3,
                       help="--task speaker: leave out speakers with fewer utterances (default 3)")
    train.add_argument("--bootstrap", type=non_negative_int, default=1000,
                       help="resamples of the 95%% interval (default 1000)")
    train.add_argument("--save-interval-updates", type=non_negative_int, default=0, metavar="N",
                       help="also write checkpoint_last every N updates (default 0: every epoch)")
    train.add_argument("--eval-interval-updates", type=non_negative_int, default=0, metavar="N",
                       help="also score the dev set every N updates and keep the best step (Wagner et al.: every 100 "
                            "steps; default: at the end of every epoch only)")
    sweep = parser.add_argument_group("sweeps and analysis")
    sweep.add_argument("--train-fraction", type=fractions_list, default=None, metavar="LIST",
                       help="e.g. 0.25,0.5,1.0 -- one run per stratified, seeded share of each fold's training set "
                            "in OUT/fraction_<f>/ (valid and test untouched), sweep.json, results.md, efficiency.png")
    sweep.add_argument("--seeds", type=seeds_list, default=None, metavar="LIST",
                       help="e.g. 0,1,2 -- one run per seed in OUT/seed_<s>/ (with --train-fraction: "
                            "OUT/fraction_<f>_seed_<s>/); results.md gives mean +- std over seeds and folds")
    sweep.add_argument("--embedding", nargs="?", const="1", default=None, metavar="FOLD",
                       help="embedding.png: 2-D map of the fine-tuned head's hidden layer on the test set of FOLD "
                            "(name or number; default the first) beside the fine-tuned upstream's features")
    sweep.add_argument("--embedding-colour", choices=EMBEDDING_COLOURS, default="label",
                       help="colour the map by label (default), the label's arousal or valence group (regression: "
                            "that target), speaker or gender")
    sweep.add_argument("--group-by", type=unique_list("column"), default=None, metavar="COLS",
                       help="data.tsv columns whose groups are scored (default: gender when present)")
    sweep.add_argument("--speaker-min-utterances", type=positive_int, default=20, metavar="N",
                       help="score every speaker with at least N test utterances (default 20)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", type=device(auto=True), default="auto",
                           help="auto (default: cuda when available), cpu, cuda[:N]")
    execution.add_argument("--num-workers", type=non_negative_int, default=1,
                           help="decoding processes (default 1; 0 = main)")
    execution.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default torch's)")
    execution.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    execution.add_argument("--checksum-dir", default=None, metavar="DIR",
                           help="write the SHA-256 of the weights after every update, one file per process "
                                "(proves DDP replicas stay identical)")
    execution.add_argument("--quiet", action="store_true", help="no progress bar; print only the final table")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..analysis.efficiency import parse_fractions, parse_seeds, run_sweep, sweep_markdown
    from ..downstream.report import summary_markdown
    from ..finetune import FinetuneError
    from ..finetune.config import FinetuneConfig, parse_freeze
    from ..device import resolve_device
    from ..finetune.run import resolve_precision, run_finetune

    if args.threads is not None:
        if args.threads < 1:
            raise FinetuneError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.num_workers < 0:
        raise FinetuneError(f"--num-workers must be >= 0, got {args.num_workers}")
    device = resolve_device(args.device, error=FinetuneError)
    freeze, top = parse_freeze(args.freeze)
    config = FinetuneConfig(
        task=args.task, loss=args.loss, targets=tuple(t.strip() for t in (args.targets or "").split(",") if t.strip()),
        head=args.head, pooling=args.pooling, dropout=args.dropout, hidden=args.hidden,
        label_smoothing=args.label_smoothing, cb_beta=args.cb_beta, arcface_scale=args.arcface_scale,
        arcface_margin=args.arcface_margin, layer=args.layer, prune=args.prune, standardize=args.standardize,
        standardize_targets=args.standardize_targets, freeze=freeze, freeze_top=top,
        freeze_updates=args.freeze_updates, layer_decay=args.layer_decay, init_head=args.init_head,
        head_label_map=args.head_label_map, head_from=args.head_from, speaker_model=args.speaker_model,
        fusion=args.fusion, park_blocks=args.park_blocks, park_dim=args.park_dim, park_ffn=args.park_ffn,
        start_from=args.start_from, speaker_split=args.speaker_split, speaker_train=args.speaker_train,
        emotion_weight=args.emotion_weight, id_weight=args.id_weight, text_features=args.text_features,
        epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, weight_decay=args.weight_decay,
        schedule=args.schedule, lr_decay=args.lr_decay, undersample=args.undersample, warmup=args.warmup,
        batch_seconds=args.batch_seconds, accumulate=args.accumulate,
        clip_norm=args.clip_norm, max_seconds=args.max_seconds or None, repeat_pad=args.repeat_pad,
        precision=args.precision if args.precision == "auto" else resolve_precision(args.precision, device),
        select_metric=args.select_metric,
        patience=args.patience, seed=args.seed, valid_fraction=args.valid_fraction, valid_is_test=args.valid_is_test,
        speaker_test_fraction=args.speaker_test_fraction, min_speaker_utterances=args.min_speaker_utterances,
        bootstrap=args.bootstrap, save_interval_updates=args.save_interval_updates,
        eval_interval_updates=args.eval_interval_updates)
    options = dict(protocol=args.protocol, folds=args.folds, fold_seed=args.fold_seed, name=args.name, device=device,
                   num_workers=args.num_workers, progress=not args.quiet, trust=args.trust_checkpoint,
                   tensorboard=not args.no_tensorboard, checksum_dir=args.checksum_dir,
                   audit_audio=not args.no_audio_audit, allow_unseen_test_labels=args.allow_unseen_test_labels,
                   group_by=args.group_by.split(",") if args.group_by else None,
                   speaker_min=args.speaker_min_utterances, test_data=args.test_data,
                   test_label_map=args.test_label_map, embedding=args.embedding,
                   embedding_colour=args.embedding_colour)
    fractions, seeds = parse_fractions(args.train_fraction), parse_seeds(args.seeds)
    if fractions or seeds:
        sweep = run_sweep(run_finetune, args.checkpoint, args.data, args.out, config, fractions, seeds,
                          verbose=not args.quiet, **options)
        if args.quiet and sweep:
            print(sweep_markdown(sweep))
        return 0
    result = run_finetune(args.checkpoint, args.data, args.out, config, verbose=not args.quiet, **options)
    if args.quiet and result:
        print(summary_markdown(result))
    return 0
