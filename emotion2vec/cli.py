"""``emotion2vec`` command line: prepare | manifest | extract | probe | convert | demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys

EPILOG = """\
typical use
  emotion2vec manifest /data/corpus --out manifests/mycorpus --resample-to /data/corpus16k
  fairseq-hydra-train --config-dir configs --config-name emotion2vec_base task.data=manifests/mycorpus \\
      common.user_dir=$(python -c "import emotion2vec; print(emotion2vec.fairseq_user_dir())")
  emotion2vec prepare urdu --root /data/URDU --out manifests/urdu
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input manifests/urdu/data.tsv --out features/urdu
  emotion2vec probe --features features/urdu --data manifests/urdu --out results/urdu
"""


def _add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="emotion2vec/data2vec 2.0 fairseq .pt, FunASR folder, our "
                   "converted folder, or 'fbank' for the 80-dim log-mel baseline")
    p.add_argument("--input", required=True, nargs="+", help="data.tsv or fairseq .tsv manifest, Kaldi wav.scp, "
                   ".jsonl (key/path), directories (recursive) or audio files")
    p.add_argument("--out", required=True, help="output folder: one .npy per input mirroring its key, index.tsv, "
                   "features.json")
    p.add_argument("--granularity", choices=["frame", "utterance"], default="frame",
                   help="frame: (T, D) at 50 Hz; utterance: mean over frames (D,) (default frame)")
    p.add_argument("--layers", default="-1", help="-1 (last block, default), all, or comma-separated block "
                   "indices counted from 0 with prenet blocks first (emotion2vec base: 0..11)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="compute dtype (autocast); outputs are always float32 (default float32)")
    p.add_argument("--max-tokens", type=int, default=None, help="max padded samples per batch (default: 160,000 "
                   "= 10 s on CPU, where batching buys no speed, and 1,000,000 = 62.5 s on GPU)")
    p.add_argument("--num-workers", type=int, default=1, help="decoding processes feeding the model (default 1; "
                   "0 decodes in the main process)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer inputs run in overlapping windows of "
                   "this length, stitched onto the full frame grid (default 30)")
    p.add_argument("--packed", action="store_true", help="one features.npy (+ features.lengths) in input order, as "
                   "the official downstream recipe expects, instead of one .npy per input")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: resume, skip them)")
    p.add_argument("--skip-errors", action="store_true", help="exit 0 even if some inputs failed (they are listed "
                   "in index.tsv either way)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects in the "
                   "checkpoint (can run code: only for files you trust)")
    p.add_argument("--preset", help="architecture preset for a bare state dict without config")
    p.add_argument("--attention", choices=["sdpa", "reference"], default="sdpa",
                   help="sdpa (fused, default) or reference (explicit fp32 softmax, as the original code)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_extract(args) -> int:
    import torch

    from .extract import load_backend, parse_layers, run_extraction

    torch.set_num_threads(max(1, torch.get_num_threads()))
    backend = load_backend(args.checkpoint, args.device, args.dtype, args.trust_checkpoint, args.preset,
                           reference=args.attention == "reference")
    layers = parse_layers(args.layers, backend.num_layers)
    summary = run_extraction(args.input, args.out, backend, layers, args.granularity, args.max_tokens,
                             args.num_workers, args.chunk_seconds, args.packed, args.overwrite, args.skip_errors,
                             checkpoint_name=args.checkpoint, progress=not args.quiet)
    return summary.get("exit_code", 0)


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="IN", help="fairseq .pt, FunASR folder (model.pt + config.yaml) or ours")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for config.json + model.safetensors (+ teacher)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--preset", help="architecture preset for a bare state dict without config")


def _run_convert(args) -> int:
    from .checkpoint import convert_checkpoint

    hashes = convert_checkpoint(args.checkpoint, args.out_dir, trust=args.trust_checkpoint, preset_name=args.preset)
    for name, digest in hashes.items():
        print(f"{digest}  {os.path.join(args.out_dir, name)}")
    return 0


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out); re-runs reuse it")
    p.add_argument("--fast", action="store_true", default=os.environ.get("DEMO_FAST") == "1",
                   help="shortened run for tests (also DEMO_FAST=1)")
    p.add_argument("--seed", type=int, default=0, help="corpus and training seed (default 0)")


def _run_demo(args) -> int:
    from .demo.pipeline import DemoError, run_demo

    try:
        return run_demo(args.out, fast=args.fast, seed=args.seed)
    except DemoError as e:
        print(f"emotion2vec demo: error: {e}", file=sys.stderr)
        return 1


def _lazy(module: str, attr: str):
    def call(*a):
        import importlib

        return getattr(importlib.import_module(module), attr)(*a)

    return call


COMMANDS = {
    "prepare": ("write data.tsv + folds.json for a downstream corpus",
                _lazy("emotion2vec.downstream.prepare", "add_arguments"),
                _lazy("emotion2vec.downstream.prepare", "run")),
    "manifest": ("scan audio folders into pretraining manifests (train.tsv / valid.tsv)",
                 _lazy("emotion2vec.manifest", "add_arguments"), _lazy("emotion2vec.manifest", "run")),
    "extract": ("extract frame/utterance features of any layer to .npy", _add_extract, _run_extract),
    "probe": ("train and evaluate the linear probe per fold (WA / UA / WF1 / macro-F1)",
              _lazy("emotion2vec.downstream.probe", "add_arguments"), _lazy("emotion2vec.downstream.probe", "run")),
    "convert": ("convert an official checkpoint to config.json + model.safetensors", _add_convert, _run_convert),
    "demo": ("the whole pipeline on an embedded synthetic corpus, in minutes on a CPU", _add_demo, _run_demo),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand's arguments are added (keeps start-up imports small)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="emotion2vec", description="Self-supervised speech emotion "
                                     "representations: pretraining, feature extraction, linear probes.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"emotion2vec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if only is None or only == name:
            add(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .audio import AudioError
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .extract import ExtractionError
    from .features import FeatureStoreError
    from .pretrain_data import ManifestError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(COMMANDS[args.command][2](args) or 0)
    except (AudioError, CheckpointError, ConfigError, ExtractionError, FeatureStoreError, ManifestError,
            FileNotFoundError, ValueError) as e:
        print(f"emotion2vec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emotion2vec {args.command}: interrupted; finished outputs are kept, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
