"""``emotion2vec report RUN_DIR...``: one markdown table across corpora and feature sources."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import unique_list

TABLE_METRICS = ("wa", "ua", "wf1")


def _metrics() -> tuple[str, ...]:
    from ..downstream.metrics import METRICS

    return METRICS


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "file", "curve": "file"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rows = feature sources, per corpus a group of metric columns, cells mean ± std over folds in "
                     "percent (the layout of the emotion2vec paper's Tables 2-4).")
    p.epilog = ("Every kind of finished run is read: probe, fine-tuning, ensemble and conversation runs are rows of "
                "the table; sweeps of `probe --train-fraction / --seeds` a row with their largest fraction; "
                "robustness runs a table of their own (robustness per perturbation). A corpus evaluated under "
                "several protocols gets one column group per protocol (e.g. URDU (random-kfold) UA, URDU "
                "(speaker-kfold) UA); runs sharing a source, corpus and protocol get one row each, named by their "
                "folder. What is not a run (a report's table.md, a plot) is skipped with a note, so a glob of a "
                "results folder works.\nAlso a fairness table (per gender and per speaker, from each run's "
                "results.json or its predictions) and, for sweeps, the label-efficiency curve (one line per feature "
                "source).\nexamples:\n  emotion2vec report results/urdu/* --out results/urdu/table.md\n"
                "  emotion2vec report results/*/* --average\n"
                "  emotion2vec report --ablation results/ablation/iemocap --out results/ablation/iemocap/tables.md")
    p.add_argument("results", nargs="*", help="run directories or their results.json files: probe, fine-tuning, "
                   "ensemble, evaluate, conversation, robustness runs, and sweep directories of `--train-fraction / "
                   "--seeds` (sweep.json: their largest fraction, mean +- std over seeds and folds)")
    p.add_argument("--ablation", default=None, metavar="DIR",
                   help="instead: the paper's ablation tables (Tables 8-11, in its layout) from the runs of "
                        "recipes/ablation.sh in DIR (results/ablation/<corpus>)")
    p.add_argument("--out", default=None, help="write the table here (atomically) as well as printing it")
    p.add_argument("--metrics", type=unique_list("metric", _metrics), default=",".join(TABLE_METRICS),
                   help="comma-separated: wa,ua,wf1,macro_f1 (classification runs; regression runs always get "
                        "CCC columns: the mean and one per target)")
    p.add_argument("--corpora", type=unique_list("corpus"), default=None,
                   help="comma-separated corpus order (default: first appearance)")
    p.add_argument("--sources", type=unique_list("source"), default=None,
                   help="comma-separated row order, as the rows are labelled "
                   "(default: first appearance)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip given directories without results.json (unfinished runs) with a note instead of "
                        "failing")
    p.add_argument("--no-bold", action="store_true", help="do not bold the best mean per column")
    p.add_argument("--layout", choices=("corpora", "emo-superb", "park"), default="corpora",
                   help="corpora (default): the table above; emo-superb: EMO-SUPERB's Table 3, one row per upstream, "
                        "the Average and the nine conditions, cells the 1/C-rule macro-F1 of `--task soft` runs; "
                        "park: Park et al.'s Tables 2 and 6 from `finetune --park-blocks K` runs")
    p.add_argument("--average", action="store_true",
                   help="add Average columns: each row's mean over the corpora (the paper tables' average; a row "
                        "that lacks a corpus gets none)")
    p.add_argument("--curve", default=None, metavar="PNG",
                   help="the label-efficiency curve of the sweeps given (default: next to --out as "
                        "<out>_efficiency.png)")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _sorted_paths(paths: list[str], skip_missing: bool) -> tuple[list, list, list]:
    """The given paths as (runs, sweeps, robustness runs); what is not a run is left out with a note each."""
    from ..analysis.ensemble import classify_given
    from ..downstream.report import ReportError

    runs, sweeps, robustness = [], [], []
    for p in paths:
        if skip_missing and not Path(p).exists():
            print(f"report: note: skipping {p} (no such file or directory)", file=sys.stderr)
            continue
        given = classify_given(p)
        if given.kind == "missing" and not skip_missing:
            raise ReportError(f"{p}: {given.why}; if it holds no run, leave it out or add --skip-missing")
        if given.kind in ("missing", "other"):
            print(f"report: note: skipping {p} ({given.why})", file=sys.stderr)
            continue
        {"run": runs, "sweep": sweeps, "robustness": robustness}[given.kind].append(given)
    return runs, sweeps, robustness


def _sweep_protocol(given) -> dict:
    """A sweep's table row, with the protocol its runs recorded (sweeps written before it was stored)."""
    from ..analysis.efficiency import table_result

    row = dict(table_result(given.result), run_dir=str(given.folder))
    if row.get("protocol") is None:
        for run in given.result.get("runs", []):
            try:
                row["protocol"] = json.loads((given.folder / run["dir"] / "results.json").read_text())["protocol"]
                break
            except (OSError, ValueError, KeyError):
                continue
    return row


def run(args: argparse.Namespace) -> int:
    from ..analysis.efficiency import efficiency_png
    from ..analysis.fairness import fairness_table
    from ..analysis.robustness import robustness_table
    from ..analysis.runs import with_groups
    from ..downstream.report import ReportError as ReportError_
    from ..downstream.report import group_labels, make_table, row_labels
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    if args.ablation is not None:
        from ..analysis.ablation import ablation_tables

        if args.results:
            raise ReportError_(f"--ablation reads its runs from {args.ablation}; give no run folders besides it")
        text = ablation_tables(args.ablation)
        if args.out:
            atomic_write_text(args.out, text)
        print(text, end="")
        return 0
    if not args.results:
        raise ReportError_("give run folders (or --ablation DIR)")
    given_runs, given_sweeps, given_robust = _sorted_paths(list(args.results), args.skip_missing)
    if args.layout in ("emo-superb", "park"):
        from ..analysis.park_tables import park_tables
        from ..downstream.emo_superb import benchmark_table

        text = (benchmark_table if args.layout == "emo-superb" else park_tables)([g.result for g in given_runs])
        if args.out:
            atomic_write_text(args.out, text)
        print(text, end="")
        return 0
    runs = [dict(with_groups(g.folder, g.result), run_dir=str(g.folder)) for g in given_runs]
    sweeps = [g.result for g in given_sweeps]
    rows = runs + [_sweep_protocol(g) for g in given_sweeps]
    text = ""
    if rows:
        text = make_table(rows, metrics=_split(args.metrics) or TABLE_METRICS, corpora=_split(args.corpora),
                          sources=_split(args.sources), bold_best=not args.no_bold, average=args.average)
    # fairness rows named as the table names them (the protocol where a corpus has several, the run folder where a
    # source repeats)
    fair = [dict(r, corpus=corpus, source=label) for r, label, corpus in zip(rows, row_labels(rows),
                                                                             group_labels(rows))
            if r.get("groups") or r.get("speakers")]
    if fair:
        text += "\nFairness (per group: the headline metric pooled over folds; per speaker: speakers with >= N test " \
                "utterances):\n\n" + fairness_table(fair)
    if given_robust:
        text += ("\n" if text else "") + "Robustness (% of test utterances whose prediction does not change under " \
                "each perturbation; Δ headline = the metric perturbed minus clean, mean over perturbations):\n\n" \
                + robustness_table([g.result for g in given_robust])
    if not text:
        from ..downstream.report import ReportError

        raise ReportError("no results to tabulate: none of the given paths holds a finished run")
    curve = args.curve or (str(Path(args.out).with_suffix("")) + "_efficiency.png" if args.out else None)
    if curve and any(len(s["fractions"]) > 1 for s in sweeps):
        atomic_write_bytes(curve, efficiency_png([s for s in sweeps if len(s["fractions"]) > 1]))
        text += f"\n![label efficiency]({Path(curve).name})\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0
