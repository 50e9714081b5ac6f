"""``emotion2vec report RUN_DIR...``: one markdown table across corpora and feature sources."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TABLE_METRICS = ("wa", "ua", "wf1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rows = feature sources, per corpus a group of metric columns, cells mean ± std over folds in "
                     "percent (the layout of the emotion2vec paper's Tables 2-4).")
    p.epilog = ("Also a fairness table (per gender and per speaker, from each run's results.json or its predictions) "
                "and, for sweeps of `probe --train-fraction`, the label-efficiency curve (one line per feature "
                "source).\nexample:\n  emotion2vec report results/*/* --out results/table.md")
    p.add_argument("results", nargs="+", help="probe output directories or their results.json files; sweep "
                   "directories of `probe --train-fraction / --seeds` (sweep.json: their largest fraction, mean +- "
                   "std over seeds and folds)")
    p.add_argument("--out", default=None, help="write the table here (atomically) as well as printing it")
    p.add_argument("--metrics", default=",".join(TABLE_METRICS),
                   help="comma-separated: wa,ua,wf1,macro_f1 (classification runs; regression runs always get "
                        "CCC columns: the mean and one per target)")
    p.add_argument("--corpora", default=None, help="comma-separated corpus order (default: first appearance)")
    p.add_argument("--sources", default=None, help="comma-separated row order (default: first appearance)")
    p.add_argument("--skip-missing", action="store_true",
                   help="ignore given directories without results.json instead of failing")
    p.add_argument("--no-bold", action="store_true", help="do not bold the best mean per column")
    p.add_argument("--layout", choices=("corpora", "emo-superb", "park"), default="corpora",
                   help="corpora (default): the table above; emo-superb: EMO-SUPERB's Table 3, one row per upstream, "
                        "the Average and the nine conditions, cells the 1/C-rule macro-F1 of `--task soft` runs; "
                        "park: Park et al.'s Tables 2 and 6 from `finetune --park-blocks K` runs")
    p.add_argument("--curve", default=None, metavar="PNG",
                   help="the label-efficiency curve of the sweeps given (default: next to --out as "
                        "<out>_efficiency.png)")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def run(args: argparse.Namespace) -> int:
    from ..analysis.efficiency import efficiency_png, load_sweep, table_result
    from ..analysis.fairness import fairness_table
    from ..analysis.runs import with_groups
    from ..downstream.report import corpus_name, load_result, make_table
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    paths = list(args.results)
    if args.skip_missing:
        kept = [p for p in paths if (Path(p) / "results.json").is_file() or (Path(p) / "sweep.json").is_file()
                or Path(p).is_file()]
        for p in sorted(set(paths) - set(kept)):
            print(f"report: skipping {p} (no results.json)", file=sys.stderr)
        paths = kept
    if args.layout in ("emo-superb", "park"):
        from ..analysis.park_tables import park_tables
        from ..downstream.emo_superb import benchmark_table

        text = (benchmark_table if args.layout == "emo-superb" else park_tables)([load_result(p) for p in paths])
        if args.out:
            atomic_write_text(args.out, text)
        print(text, end="")
        return 0
    sweeps = [load_sweep(p) for p in paths if (Path(p) / "sweep.json").is_file()]
    runs = [with_groups(p, load_result(p)) for p in paths if not (Path(p) / "sweep.json").is_file()]
    text = make_table(runs + [table_result(s) for s in sweeps], metrics=_split(args.metrics) or TABLE_METRICS,
                      corpora=_split(args.corpora), sources=_split(args.sources), bold_best=not args.no_bold)
    fair = [r for r in runs if r.get("groups") or r.get("speakers")]
    if fair:
        text += "\nFairness (per group: the headline metric pooled over folds; per speaker: speakers with >= N test " \
                "utterances):\n\n" + fairness_table(fair, corpus_name)
    curve = args.curve or (str(Path(args.out).with_suffix("")) + "_efficiency.png" if args.out else None)
    if curve and any(len(s["fractions"]) > 1 for s in sweeps):
        atomic_write_bytes(curve, efficiency_png([s for s in sweeps if len(s["fractions"]) > 1]))
        text += f"\n![label efficiency]({Path(curve).name})\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0
