"""Probe reports: the files ``emotion2vec probe`` writes and the cross-corpus table.

Files in a probe's output directory (written atomically, metrics stored as fractions, printed in percent):
    results.json     everything: config, per-fold metrics (valid at the best epoch, test), best epoch, sizes,
                     training curves, mean/std over folds, summed confusion matrix, timing
    results.md       per-fold table and a mean +- std row, percent with 2 decimals
    predictions.tsv  fold, key, label, prediction, p_<label> for every label (test keys of every fold)
    confusion.png    test confusion matrix summed over folds, row-normalised, annotated with % and counts

The cross-corpus table (layout of the paper's Tables 2-4: one row per feature source, per corpus a group of
WA / UA / WF1 columns, cells "mean ± std" over folds in percent, best mean per column in bold):

    emotion2vec report results/*/* --out results/table.md
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import Emotion2VecError
from ..io.atomic import atomic_write_bytes, atomic_write_text
from .metrics import METRIC_NAMES, METRICS

__all__ = [
    "OUTPUT_FILES",
    "write_outputs",
    "results_markdown",
    "summary_markdown",
    "predictions_tsv",
    "confusion_png",
    "load_result",
    "make_table",
]

class ReportError(Emotion2VecError, ValueError):
    """Results that cannot be read or tabulated; the message names the file."""


OUTPUT_FILES = ("results.json", "results.md", "predictions.tsv", "confusion.png")
TABLE_METRICS = ("wa", "ua", "wf1")
#: how the paper spells the corpora (falls back to the name as stored)
CORPUS_NAMES = {
    "iemocap": "IEMOCAP", "meld": "MELD", "ravdess": "RAVDESS", "ravdess-song": "RAVDESS-Song",
    "savee": "SAVEE", "emodb": "EmoDB", "emovo": "EMOVO", "cafe": "CaFE", "subesco": "SUBESCO",
    "shemo": "ShEMO", "urdu": "URDU", "aesdd": "AESDD", "resd": "RESD", "m3ed": "M3ED",
    "mosi": "CMU-MOSI", "mosei": "CMU-MOSEI",
}


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _mean_std(summary: dict[str, dict[str, float]], metric: str) -> str:
    s = summary.get(metric)
    if not s:
        return "–"
    return f"{_pct(s['mean'])} ± {_pct(s['std'])}"


def corpus_name(corpus: str) -> str:
    return CORPUS_NAMES.get(str(corpus).lower(), str(corpus))


# ------------------------------------------------------------------------------------------- single run
def results_markdown(result: dict[str, Any]) -> str:
    """``results.md``: a header, a per-fold table and a mean ± std row (percent, 2 decimals)."""
    c = result.get("config", {})
    layer = result.get("layer")
    layer_text = "" if layer is None else f", layer {layer}"
    lines = [
        f"# Probe: {corpus_name(result['corpus'])} / {result['source']}",
        "",
        f"- features: `{result['features']}` ({result['granularity']}-level, dim {result['dim']}{layer_text})",
        f"- data: `{result['data']}` (protocol {result.get('protocol') or 'default'}, {len(result['folds'])} fold(s), "
        f"labels {', '.join(result['labels'])})",
        f"- probe: {result.get('parameters', 0):,} parameters, {c.get('optimizer')} lr {c.get('lr')}, "
        f"{c.get('scheduler')} schedule, batch {c.get('batch_size')}, {c.get('epochs')} epochs"
        f"{', patience ' + str(c['patience']) if c.get('patience') else ''}, best epoch by valid "
        f"{METRIC_NAMES.get(c.get('select_metric'), c.get('select_metric'))}, seed {c.get('seed')}",
        "",
        "| Fold | Train | Valid | Test | Best epoch | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(METRICS),
    ]
    for f in result["folds"]:
        lines.append(f"| {f['name']} | {f['n_train']} | {f['n_valid']} | {f['n_test']} | {f['best_epoch']} | "
                     + " | ".join(_pct(f["test"][m]) for m in METRICS) + " |")
    lines.append("| **mean ± std** | | | | | " + " | ".join(_mean_std(result["summary"], m) for m in METRICS) + " |")
    if result.get("warnings"):
        lines += ["", "**Warnings:**", *(f"- {w}" for w in result["warnings"])]
    lines += ["", "Test metrics in percent; std over folds is the population std.", "",
              "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


def summary_markdown(result: dict[str, Any]) -> str:
    """One-row mean ± std table, printed at the end of a probe run."""
    head = "| Corpus | Features | Folds | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |"
    rule = "|---|---|---:|" + "---:|" * len(METRICS)
    row = (f"| {corpus_name(result['corpus'])} | {result['source']} | {len(result['folds'])} | "
           + " | ".join(_mean_std(result["summary"], m) for m in METRICS) + " |")
    return "\n".join([head, rule, row])


def predictions_tsv(predictions: Iterable[dict[str, Any]], labels: Sequence[str]) -> str:
    """``fold key label prediction p_<label>...``, one line per test utterance of every fold."""
    lines = ["\t".join(["fold", "key", "label", "prediction", *(f"p_{label}" for label in labels)])]
    for p in predictions:
        probs = np.asarray(p["probabilities"], dtype=np.float64)
        lines.append("\t".join([str(p["fold"]), str(p["key"]), str(p["label"]), str(p["prediction"]),
                                *(f"{v:.6f}" for v in probs)]))
    return "\n".join(lines) + "\n"


def confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str = "") -> bytes:
    """PNG of a row-normalised confusion matrix (rows = true), annotated with row-% and counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    size = max(4.0, 0.75 * n + 2.5)
    fig = Figure(figsize=(size, size * 0.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fontsize = 9 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{100 * norm[i, j]:.1f}%\n({int(cm[i, j])})", ha="center", va="center",
                    color=colour, fontsize=fontsize)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(out: str | os.PathLike, result: dict[str, Any], predictions: Iterable[dict[str, Any]]) -> None:
    """Write the four output files of a probe run into ``out`` (created if needed), each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{corpus_name(result['corpus'])} / {result['source']} (sum over {len(result['folds'])} fold(s))"
    atomic_write_text(out / "predictions.tsv", predictions_tsv(predictions, result["labels"]))
    atomic_write_bytes(out / "confusion.png", confusion_png(result["confusion"], result["labels"], title))
    atomic_write_text(out / "results.md", results_markdown(result))
    # results.json last: its presence marks a finished run (the recipes skip a probe whose results.json exists)
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------ cross-corpus table
def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """A probe's results.json, given the file or its directory."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / "results.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found (did the probe finish?)") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: invalid JSON: {e}") from None
    for field in ("corpus", "source", "summary"):
        if field not in result:
            raise ReportError(f"{path}: not a probe results.json (no {field!r})")
    return result


def make_table(results: Iterable[str | os.PathLike | dict[str, Any]], metrics: Sequence[str] = TABLE_METRICS,
               corpora: Sequence[str] | None = None, sources: Sequence[str] | None = None,
               bold_best: bool = True) -> str:
    """Markdown table across corpora: rows = feature sources, per corpus the columns ``<CORPUS> <METRIC>``,
    cells ``mean ± std`` over folds in percent; "–" where a source has no result for a corpus.

    ``results`` are result directories, results.json files or already loaded dicts. Rows and column groups
    follow ``sources`` / ``corpora`` when given, else the order of first appearance.
    """
    for m in metrics:
        if m not in METRIC_NAMES or m == "loss":
            raise ReportError(f"unknown metric {m!r} (choose from {', '.join(METRICS)})")
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    seen_sources: list[str] = []
    seen_corpora: list[str] = []
    for item in results:
        r = item if isinstance(item, dict) else load_result(item)
        key = (str(r["source"]), str(r["corpus"]))
        if key in cells:
            raise ReportError(f"two results for source {key[0]!r} on corpus {key[1]!r}")
        cells[key] = r
        if key[0] not in seen_sources:
            seen_sources.append(key[0])
        if key[1] not in seen_corpora:
            seen_corpora.append(key[1])
    row_names = list(sources) if sources else seen_sources
    col_names = list(corpora) if corpora else seen_corpora
    if not row_names or not col_names:
        raise ReportError("no results to tabulate")

    best: dict[tuple[str, str], float] = {}
    for corpus in col_names:
        for m in metrics:
            means = [cells[(s, corpus)]["summary"].get(m, {}).get("mean") for s in row_names if (s, corpus) in cells]
            means = [v for v in means if v is not None and not math.isnan(v)]
            if len(means) > 1:
                best[(corpus, m)] = max(means)

    header = ["Features"] + [f"{corpus_name(c)} {METRIC_NAMES[m]}" for c in col_names for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for source in row_names:
        row = [source]
        for corpus in col_names:
            r = cells.get((source, corpus))
            for m in metrics:
                if r is None:
                    row.append("–")
                    continue
                text = _mean_std(r["summary"], m)
                mean = r["summary"].get(m, {}).get("mean")
                if bold_best and mean is not None and best.get((corpus, m)) == mean:
                    text = f"**{text}**"
                row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    folds = []
    for corpus in col_names:
        counts = sorted({len(cells[(s, corpus)]["folds"]) for s in row_names if (s, corpus) in cells
                         and "folds" in cells[(s, corpus)]})
        if counts:
            folds.append(f"{corpus_name(corpus)} {'/'.join(map(str, counts))}")
    note = "Mean ± std over folds, in percent" + (f" (folds: {', '.join(folds)})" if folds else "")
    lines += ["", note + ("; best mean per column in bold." if bold_best else ".")]
    return "\n".join(lines) + "\n"
