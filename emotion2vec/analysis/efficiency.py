"""Label efficiency and seed variance: ``emotion2vec probe --train-fraction 0.1,0.25,0.5,1.0 --seeds 0,1,2``.

:func:`subsample_train` keeps a stratified share of each fold's training keys: per label, round(fraction x n)
utterances (at least one) in the order of a permutation seeded by the probe seed and the fold name, so a smaller
fraction's subset lies inside every larger one; valid and test keys are untouched (a fold without valid keys
carves its valid share from the subset, as a full probe does).

:func:`run_sweep` runs one probe per fraction and seed into ``OUT/fraction_<f>[_seed_<s>]`` (or ``OUT/seed_<s>``)
and writes beside them ``sweep.json`` (every run's summary; per fraction the mean and std over seeds and folds
pooled, and of the per-seed means across seeds), ``results.md`` and ``efficiency.png`` (the headline metric
against the fraction, error bars = std over seeds and folds). ``emotion2vec report`` reads sweeps: one row per
sweep in the table (its largest fraction) and one line per feature source in the curve (:func:`efficiency_png`).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..downstream.metrics import HEADLINE, METRIC_NAMES, PERCENT_METRICS, format_metric, summarize, summary_metrics
from . import AnalysisError

__all__ = ["SWEEP_FORMAT", "parse_fractions", "parse_seeds", "subsample_train", "run_sweep", "load_sweep",
           "sweep_markdown", "table_result", "efficiency_png"]

SWEEP_FORMAT = "emotion2vec-probe-sweep"


def parse_fractions(text: str | None) -> list[float] | None:
    """``"0.1,0.25,0.5,1.0"`` -> sorted distinct fractions in (0, 1]; None for no option."""
    if not text:
        return None
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise AnalysisError(f"--train-fraction {text!r}: expected comma-separated numbers in (0, 1]") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if not values or bad:
        raise AnalysisError(f"--train-fraction {text!r}: every fraction must lie in (0, 1]" +
                            (f", not {', '.join(f'{v:g}' for v in bad)}" if bad else ""))
    return values


def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1,2"`` -> [0, 1, 2] (distinct, in order); None for no option."""
    if not text:
        return None
    try:
        values = list(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise AnalysisError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not values:
        raise AnalysisError(f"--seeds {text!r}: no seeds")
    return values


def subsample_train(folds: Sequence[Mapping[str, Any]], label_of: Mapping[str, str], fraction: float,
                    seed: int) -> list[dict[str, Any]]:
    """``folds`` with each training list cut to a stratified, seeded ``fraction`` (nested across fractions)."""
    if not 0.0 < fraction <= 1.0:
        raise AnalysisError(f"--train-fraction {fraction:g} must lie in (0, 1]")
    out = []
    for f in folds:
        train = list(f["train"])
        order = np.random.default_rng([int(seed), zlib.crc32(str(f["name"]).encode())]).permutation(len(train))
        by_label: dict[str, list[int]] = {}
        for j in order.tolist():
            by_label.setdefault(label_of[train[j]], []).append(j)
        keep = sorted(j for members in by_label.values()
                      for j in members[:max(1, int(round(fraction * len(members))))])
        out.append({**f, "train": [train[j] for j in keep]})
    return out


def _run_name(fraction: float, seed: int, fractions: bool, seeds: bool) -> str:
    parts = ([f"fraction_{fraction:g}"] if fractions else []) + ([f"seed_{seed}"] if seeds else [])
    return "_".join(parts)


def _aggregate(runs: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for fraction in sorted({r["fraction"] for r in runs}):
        group = [r for r in runs if r["fraction"] == fraction]
        folds = [f["test"] for r in group for f in r["folds"]]
        seed_means = {m: [r["summary"][m]["mean"] for r in group] for m in metrics}
        out.append({"fraction": fraction, "runs": len(group), "seeds": [r["seed"] for r in group],
                    "n_train_mean": float(np.mean([f["n_train"] for r in group for f in r["folds"]])),
                    "summary": summarize(folds, metrics),
                    "across_seeds": {m: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                                     for m, v in seed_means.items()}})
    return out


def run_sweep(probe: Callable[..., dict[str, Any]], features: str | os.PathLike, data: str | os.PathLike,
              out: str | os.PathLike, config, fractions: Sequence[float] | None = None,
              seeds: Sequence[int] | None = None, verbose: bool = True, **probe_kwargs: Any) -> dict[str, Any]:
    """One ``probe(features, data, out/<run>, config, train_fraction=..., verbose=..., **probe_kwargs)`` per fraction
    and seed (``probe`` is :func:`emotion2vec.downstream.probe.run_probe`, or
    :func:`emotion2vec.finetune.run.run_finetune` with a checkpoint as ``features``); the sweep's files in ``out``.
    Returns sweep.json's dict (empty in the other processes of a distributed fine-tuning run)."""
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    if not fractions and not seeds:
        raise AnalysisError("a sweep needs --train-fraction or --seeds")
    out = Path(out)
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    fraction_list, seed_list = list(fractions or [1.0]), list(seeds or [config.seed])
    runs, first = [], None
    for fraction in fraction_list:
        for seed in seed_list:
            name = _run_name(fraction, seed, bool(fractions), bool(seeds))
            log(f"sweep: run {name} (train fraction {fraction:g}, seed {seed}) -> {out / name}")
            result = probe(features, data, out / name, replace(config, seed=seed), train_fraction=fraction,
                           verbose=verbose, **probe_kwargs)
            if not result:  # a process of a distributed run that does not write
                continue
            first = first or result
            runs.append({"fraction": fraction, "seed": seed, "dir": name, "summary": result["summary"],
                         "folds": [{"name": f["name"], "n_train": f["n_train"], "test": {
                             m: f["test"][m] for m in result["summary"]}} for f in result["folds"]]})
    if first is None:
        return {}
    task = first.get("task", "categorical")
    names = first.get("targets") or first.get("labels") or []
    metrics = list(summary_metrics(task, names))
    sweep = {"format": SWEEP_FORMAT, "version": 1, "kind": first.get("kind") or "probe", "corpus": first["corpus"],
             "source": first["source"],
             "protocol": first.get("protocol"), "task": task, "headline": HEADLINE[task], "targets": first.get("targets", []),
             "labels": first.get("labels", []), "metrics": metrics, "fractions": fraction_list, "seeds": seed_list,
             "runs": runs, "by_fraction": _aggregate(runs, metrics)}
    out.mkdir(parents=True, exist_ok=True)
    if len(fraction_list) > 1:
        atomic_write_bytes(out / "efficiency.png", efficiency_png([sweep]))
    atomic_write_text(out / "results.md", sweep_markdown(sweep))
    atomic_write_text(out / "sweep.json", json.dumps(sweep, indent=1) + "\n")
    log(sweep_markdown(sweep))
    return sweep


def load_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """A sweep's sweep.json, given the file or its directory."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / "sweep.json"
    try:
        sweep = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnalysisError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise AnalysisError(f"{path}: invalid JSON: {e}") from None
    if sweep.get("format") != SWEEP_FORMAT:
        raise AnalysisError(f"{path}: not a probe sweep (format {sweep.get('format')!r})")
    return sweep


def sweep_markdown(sweep: Mapping[str, Any]) -> str:
    """The sweep's results.md: per fraction, mean ± std over seeds and folds of every metric."""
    from ..downstream.report import corpus_name

    metrics, headline = sweep["metrics"], sweep["headline"]
    kind = "Fine-tuning" if sweep.get("kind") == "finetune" else "Probe"
    lines = [f"# {kind} sweep: {corpus_name(sweep['corpus'])} / {sweep['source']}", "",
             f"Train fractions {', '.join(f'{f:g}' for f in sweep['fractions'])}; seeds "
             f"{', '.join(str(s) for s in sweep['seeds'])}; one run per fraction and seed in "
             + ", ".join(f"`{r['dir']}/`" for r in sweep["runs"]) + ".", "",
             "| Train fraction | Train utterances per fold | Runs | "
             + " | ".join(f"{METRIC_NAMES.get(m, m)} (seeds x folds)" for m in metrics)
             + f" | {METRIC_NAMES.get(headline, headline)} across seeds |",
             "|---:|---:|---:|" + "---:|" * (len(metrics) + 1)]
    for b in sweep["by_fraction"]:
        s, a = b["summary"], b["across_seeds"].get(headline)
        lines.append(f"| {b['fraction']:g} | {b['n_train_mean']:.0f} | {b['runs']} | "
                     + " | ".join(f"{format_metric(m, s[m]['mean'])} ± {format_metric(m, s[m]['std'])}" for m in metrics)
                     + (f" | {format_metric(headline, a['mean'])} ± {format_metric(headline, a['std'])} |" if a else " | – |"))
    lines += ["", "Mean ± population std over every (seed, fold) pair; the last column: mean ± std of the per-seed "
              "means over folds.", ""]
    if len(sweep["fractions"]) > 1:
        lines += ["![label efficiency](efficiency.png)", ""]
    return "\n".join(lines)


def table_result(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """A results.json-like dict of the sweep's largest fraction (mean ± std over seeds and folds; the folds of one
    seed), for :func:`emotion2vec.downstream.report.make_table`."""
    last = sweep["by_fraction"][-1]
    folds = next(r["folds"] for r in sweep["runs"] if r["fraction"] == last["fraction"])
    return {"corpus": sweep["corpus"], "source": sweep["source"], "protocol": sweep.get("protocol"),
            "task": sweep["task"],
            "targets": sweep.get("targets", []), "labels": sweep.get("labels", []), "summary": last["summary"],
            "folds": folds}


def efficiency_png(sweeps: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """The headline metric (mean ± std over seeds and folds) against the train fraction, one line per sweep
    (labelled by feature source, and corpus when several are shown)."""
    from ..downstream.report import _figure, _png, corpus_name

    fig = _figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    corpora = {s["corpus"] for s in sweeps}
    metrics = {s["headline"] for s in sweeps}
    for s in sweeps:
        metric = s["headline"]
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        x = [b["fraction"] for b in s["by_fraction"]]
        y = [scale * b["summary"][metric]["mean"] for b in s["by_fraction"]]
        err = [scale * b["summary"][metric]["std"] for b in s["by_fraction"]]
        label = s["source"] + (f" ({corpus_name(s['corpus'])})" if len(corpora) > 1 else "")
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    fractions = sorted({b["fraction"] for s in sweeps for b in s["by_fraction"]})
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("share of each fold's training set")
    names = " / ".join(METRIC_NAMES.get(m, m) + (" (%)" if m in PERCENT_METRICS else "") for m in sorted(metrics))
    ax.set_ylabel(names)
    ax.legend(fontsize=8)
    ax.set_title(title or "label efficiency (mean ± std over seeds and folds)", fontsize=9)
    ax.grid(alpha=0.3)
    return _png(fig)
