"""``emotion2vec report RUN_DIR...``: one markdown table across corpora and feature sources."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TABLE_METRICS = ("wa", "ua", "wf1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rows = feature sources, per corpus a group of metric columns, cells mean ± std over folds in "
                     "percent (the layout of the emotion2vec paper's Tables 2-4).")
    p.epilog = "example:\n  emotion2vec report results/*/* --out results/table.md"
    p.add_argument("results", nargs="+", help="probe output directories or their results.json files")
    p.add_argument("--out", default=None, help="write the table here (atomically) as well as printing it")
    p.add_argument("--metrics", default=",".join(TABLE_METRICS),
                   help="comma-separated: wa,ua,wf1,macro_f1 (classification runs; regression runs always get "
                        "CCC columns: the mean and one per target)")
    p.add_argument("--corpora", default=None, help="comma-separated corpus order (default: first appearance)")
    p.add_argument("--sources", default=None, help="comma-separated row order (default: first appearance)")
    p.add_argument("--skip-missing", action="store_true",
                   help="ignore given directories without results.json instead of failing")
    p.add_argument("--no-bold", action="store_true", help="do not bold the best mean per column")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def run(args: argparse.Namespace) -> int:
    from ..downstream.report import make_table
    from ..io.atomic import atomic_write_text

    paths = list(args.results)
    if args.skip_missing:
        kept = [p for p in paths if (Path(p) / "results.json").is_file() or Path(p).is_file()]
        for p in sorted(set(paths) - set(kept)):
            print(f"report: skipping {p} (no results.json)", file=sys.stderr)
        paths = kept
    text = make_table(paths, metrics=_split(args.metrics) or TABLE_METRICS, corpora=_split(args.corpora),
                      sources=_split(args.sources), bold_best=not args.no_bold)
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0
