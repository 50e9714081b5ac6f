"""``emotion2vec demo``: the product end to end on an embedded synthetic corpus (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import os


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out); re-runs reuse it")
    p.add_argument("--fast", action="store_true", default=os.environ.get("DEMO_FAST") == "1",
                   help="shortened run for tests (also DEMO_FAST=1)")
    p.add_argument("--seed", type=int, default=0, help="corpus and training seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import run_demo

    return run_demo(args.out, fast=args.fast, seed=args.seed)
