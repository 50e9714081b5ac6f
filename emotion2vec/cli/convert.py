"""``emotion2vec convert``: any supported checkpoint -> config.json + model.safetensors (+ teacher)."""

from __future__ import annotations

import argparse
import os

from .options import preset_name


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out_dir": "dir"}
OUTPUT_LABELS = {"out_dir": "OUT_DIR"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "example:\n  emotion2vec convert checkpoints/emotion2vec_base.pt checkpoints/emotion2vec_base_converted"
    p.add_argument("checkpoint", metavar="IN", help="fairseq .pt, FunASR folder (model.pt + config.yaml) or ours")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for config.json + model.safetensors (+ teacher)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--preset", type=preset_name, help="architecture preset for a bare state dict without config")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import convert_checkpoint

    hashes = convert_checkpoint(args.checkpoint, args.out_dir, trust=args.trust_checkpoint, preset_name=args.preset)
    for name, digest in hashes.items():
        print(f"{digest}  {os.path.join(args.out_dir, name)}")
    return 0
