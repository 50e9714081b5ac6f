"""Probe reports: the files ``emotion2vec probe`` writes and the cross-corpus table.

Files in a probe's output directory (written atomically, metrics stored as fractions, printed in percent; CCC,
Pearson r and MAE as plain numbers):
    results.json       everything: task, loss, head, targets, config, feature settings, per-fold metrics (valid at
                       the best epoch, test, the headline metric's 95 % bootstrap interval), best epoch, sizes,
                       training curves, learned layer weights, mean/std over folds, summed confusion matrix (class
                       tasks), the leakage audit, warnings, timing
    results.md         the run's settings, a per-fold table with a mean +- std row, warnings and the audit figures
    predictions.tsv    one line per test utterance of every fold:
                         categorical  fold key label prediction p_<class>...
                         soft         fold key label prediction p_<class>... t_<class>...  (t = vote shares)
                         multilabel   fold key label prediction p_<class>... t_<class>...  (prediction = the
                                      classes above 1/C joined by '+', t = 0/1)
                         regression   fold key true_<target>... pred_<target>...
    confusion.png      test confusion matrix summed over folds, row-normalised (class tasks)
    layer_weights.png  the learned softmax weight of every layer, mean and std over folds (``--layer weighted``)
and, beside them, the analyses of :mod:`emotion2vec.analysis`: results.json's ``groups`` and ``speakers`` (fairness
per gender or any data.tsv column, per speaker) with their results.md section, ``speakers.png``, ``embedding.png``
(``--embedding``); a probe also writes ``valid_predictions.tsv`` (each fold's valid utterances, as
predictions.tsv) and ``heads/<fold>.pt``.

The cross-corpus table (layout of the paper's Tables 2-4: one row per feature source, per corpus a group of
WA / UA / WF1 columns -- CCC columns, mean and per target, for regression runs -- cells "mean ± std" over folds, best
mean per column in bold):

    emotion2vec report results/*/* --out results/table.md
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import Emotion2VecError
from ..io.atomic import atomic_write_bytes, atomic_write_text
from .metrics import METRIC_NAMES, METRICS, PERCENT_METRICS, summary_metrics
from .tasks import LOWER_IS_BETTER

#: results.json of every per-fold run (probe, fine-tuning, conversation, ensemble)
RESULTS_FORMAT = "emotion2vec-probe-results"
#: 2: task, loss, head, targets, headline, bootstrap intervals, audit, layer weights, feature settings, saved heads
RESULTS_VERSION = 2

__all__ = [
    "OUTPUT_FILES",
    "output_files",
    "write_outputs",
    "results_markdown",
    "summary_markdown",
    "predictions_tsv",
    "confusion_png",
    "layer_weights_png",
    "load_result",
    "make_table",
    "row_labels",
    "group_labels",
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
    "mosi": "CMU-MOSI", "mosei": "CMU-MOSEI", "msp-podcast": "MSP-Podcast", "crema-d": "CREMA-D",
}


def _value(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def _mean_std(summary: dict[str, dict[str, float]], metric: str) -> str:
    s = summary.get(metric)
    if not s:
        return "–"
    return f"{_value(metric, s['mean'])} ± {_value(metric, s['std'])}"


def _metric_name(metric: str) -> str:
    if metric.startswith("ccc_"):
        return f"CCC {metric[4:]}"
    return METRIC_NAMES.get(metric, metric)


def corpus_name(corpus: str) -> str:
    return CORPUS_NAMES.get(str(corpus).lower(), str(corpus))


def _task(result: dict[str, Any]) -> str:
    return result.get("task", "categorical")


def _run_metrics(result: dict[str, Any]) -> tuple[str, ...]:
    return summary_metrics(_task(result), result.get("targets") or result.get("labels", []))


def output_files(result: dict[str, Any]) -> list[str]:
    """The files :func:`write_outputs` writes for ``result``, and the analysis figures beside them."""
    from ..analysis import analysis_files

    files = ["results.json", "results.md", "predictions.tsv"]
    if "confusion" in result:
        files.append("confusion.png")
    if result.get("layer_weights"):
        files.append("layer_weights.png")
    return files + analysis_files(result)


# ------------------------------------------------------------------------------------------- single run
def _settings_lines(result: dict[str, Any]) -> list[str]:
    if result.get("kind") == "evaluate":  # its results.md says what was scored (emotion2vec.analysis.evaluate)
        return []
    c = result.get("config", {})
    layer = result.get("layer")
    layer_text = "" if layer is None else f", layer {layer}"
    task = _task(result)
    head = result.get("head", {})
    loss = result.get("loss", "ce")
    extra = []
    if c.get("label_smoothing"):
        extra.append(f"label smoothing {c['label_smoothing']}")
    if loss == "cb-ce":
        extra.append(f"beta {c.get('cb_beta')}")
    if head.get("type") == "arcface":
        extra.append(f"ArcFace s {head.get('arcface_scale')} m {head.get('arcface_margin')}")
    if head.get("dropout"):
        extra.append(f"dropout {head['dropout']}")
    names = ", ".join(result.get("targets") or result.get("labels", []))
    lines = [
        f"- task: **{task}** ({'targets' if task == 'regression' else 'classes'} {names}); loss **{loss}**"
        + (f" ({', '.join(extra)})" if extra else "") + f"; head **{head.get('type', 'linear')}**, "
        f"{head.get('pooling', 'mean')} pooling, hidden {c.get('hidden')}"
        + (", learned layer weights" if head.get("layer_mix") else ""),
        f"- features: `{result['features']}` ({result['granularity']}-level, dim {result['dim']}{layer_text})",
    ]
    for c in result.get("concat") or []:
        lines.append(f"- concatenated with: `{c['features']}` ({c['granularity']}-level, dim {c['dim']}"
                     + ("" if c.get("layer") is None else f", layer {c['layer']}") + ")")
    cross = result.get("cross_corpus")
    if cross:
        lines.append(f"- cross-corpus: trained and selected on `{result['data']}` ({cross['train_corpus']}"
                     + (f", its {cross['train_protocol']} folds" if cross.get("train_protocol") else "")
                     + f"), tested on every utterance of `{cross['test_data']}` ({cross['test_corpus']}) with features "
                     f"`{cross['test_features']}`" + (f"; label map {cross['label_map']}" if cross["label_map"] else ""))
    else:
        lines.append(f"- data: `{result['data']}` (protocol {result.get('protocol') or 'default'}, "
                     f"{len(result['folds'])} fold(s))")
    select = c.get("select_metric")
    lines.append(f"- training: {result.get('parameters', 0):,} parameters, {c.get('optimizer')} lr {c.get('lr')}, "
                 f"{c.get('scheduler')} schedule, batch {c.get('batch_size')}, {c.get('epochs')} epochs"
                 f"{', patience ' + str(c['patience']) if c.get('patience') else ''}, best epoch by valid "
                 f"{_metric_name(select) if select else select}, seed {c.get('seed')}")
    return lines


def _audit_lines(audit: dict[str, Any] | None) -> list[str]:
    if not audit:
        return []
    lines = ["", "## Leakage audit", "",
             f"Protocol {audit.get('protocol')} ({audit.get('kind')}); audio "
             f"{'compared (decoded samples)' if audit.get('audio_compared') else 'not compared'}; text "
             f"{'compared' if audit.get('text_compared') else 'not available'}.", "",
             "| Fold | Train / valid / test | Test speakers seen in train or valid | Test utterances of those "
             "speakers | Identical audio (train-test) | Same text (train-test) |",
             "|---|---|---:|---:|---:|---:|"]
    for fold in audit.get("folds", []):
        tt = fold["pairs"].get("train-test", {})
        spk = fold["pairs"].get("train+valid-test", {}).get("speakers")
        dup = tt.get("identical_audio")
        txt = tt.get("same_text")
        sizes = fold["sizes"]
        lines.append(f"| {fold['name']} | {sizes['train']} / {sizes['valid']} / {sizes['test']} | "
                     + (f"{spk['shared']} / {spk['of']}" if spk else "–") + " | "
                     + (f"{spk['utterances']} ({spk['share_pct']:.2f} %)" if spk else "–") + " | "
                     + (str(dup["utterances"]) if dup else "–") + " | "
                     + (f"{txt['utterances']} ({txt['share_pct']:.2f} %)" if txt else "–") + " |")
    labels = list(dict.fromkeys(k for fold in audit.get("folds", []) for split in ("train", "valid", "test")
                                for k in fold.get("labels", {}).get(split, {})))
    if labels and len(labels) <= 40:  # class tasks; not a per-speaker label set
        lines += ["", "Utterances per label, train / valid / test:", "",
                  "| Fold | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for fold in audit.get("folds", []):
            counts = fold.get("labels", {})
            lines.append(f"| {fold['name']} | " + " | ".join(
                " / ".join(str(counts.get(split, {}).get(k, 0)) for split in ("train", "valid", "test"))
                for k in labels) + " |")
    for w in audit.get("warnings", []):
        lines.append(f"- WARNING: {w}")
    for n in audit.get("notes", []):
        lines.append(f"- note: {n}")
    return lines


def results_markdown(result: dict[str, Any], title: str | None = None, preamble: Sequence[str] = ()) -> str:
    """``results.md``: the warnings first, then ``preamble`` (what a fine-tuning or evaluate run adds), the settings,
    a per-fold table with a mean ± std row and the leakage audit. ``title``: the heading (default "Probe: ...")."""
    metrics = _run_metrics(result)
    headline = result.get("headline")
    lines = [title or f"# Probe: {corpus_name(result['corpus'])} / {result['source']}", ""]
    if result.get("warnings"):
        lines += ["**WARNINGS:**", *(f"- **{w}**" for w in result["warnings"]), ""]
    lines += list(preamble)
    lines += _settings_lines(result)
    ci_col = headline is not None and any(f.get("ci") for f in result["folds"])
    lines += ["",
              "| Fold | Train | Valid | Test | Best epoch | " + " | ".join(_metric_name(m) for m in metrics)
              + (f" | {_metric_name(headline)} 95% CI" if ci_col else "") + " |",
              "|---|---:|---:|---:|---:|" + "---:|" * (len(metrics) + ci_col)]
    for f in result["folds"]:
        ci = f.get("ci")
        lines.append(f"| {f['name']} | {f['n_train']} | {f['n_valid']} | {f['n_test']} | {f['best_epoch']} | "
                     + " | ".join(_value(m, f["test"].get(m)) for m in metrics)
                     + (f" | [{_value(ci['metric'], ci['low'])}, {_value(ci['metric'], ci['high'])}]"
                        if ci_col and ci else " | –" if ci_col else "") + " |")
    lines.append("| **mean ± std** | | | | | " + " | ".join(_mean_std(result["summary"], m) for m in metrics)
                 + (" | |" if ci_col else " |"))
    weights = result.get("layer_weights")
    if weights:
        lines += ["", "Learned layer weights (softmax, mean ± std over folds): "
                  + ", ".join(f"layer {layer} {m:.3f} ± {s:.3f}"
                              for layer, m, s in zip(weights["layers"], weights["mean"], weights["std"])),
                  "", "![layer weights](layer_weights.png)"]
    from ..analysis.fairness import group_markdown

    lines += group_markdown(result)
    embedding = result.get("embedding")
    if embedding:
        lines += ["", f"{embedding['method']} of the {embedding['fold']} head's hidden layer beside its input features "
                      f"({embedding['utterances']} test utterances, coloured by {embedding['coloured_by']}):", "",
                  "![embedding](embedding.png)"]
    lines += _audit_lines(result.get("audit"))
    lines += ["", "Classification metrics in percent, CCC / Pearson r / MAE as plain numbers; std over folds is the "
              "population std; intervals are 95 % percentile bootstraps over each fold's test utterances.", ""]
    if "confusion" in result:
        lines += ["![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


def summary_markdown(result: dict[str, Any]) -> str:
    """One-row mean ± std table, printed at the end of a probe run."""
    metrics = _run_metrics(result)
    head = "| Corpus | Features | Folds | " + " | ".join(_metric_name(m) for m in metrics) + " |"
    rule = "|---|---|---:|" + "---:|" * len(metrics)
    row = (f"| {corpus_name(result['corpus'])} | {result['source']} | {len(result['folds'])} | "
           + " | ".join(_mean_std(result["summary"], m) for m in metrics) + " |")
    return "\n".join([head, rule, row])


def predictions_tsv(predictions: Iterable[dict[str, Any]], names: Sequence[str], task: str = "categorical") -> str:
    """One line per test utterance of every fold (columns: see the module docstring)."""
    names = list(names)
    if task == "regression":
        header = ["fold", "key", *(f"true_{n}" for n in names), *(f"pred_{n}" for n in names)]
    else:
        header = ["fold", "key", "label", "prediction", *(f"p_{n}" for n in names)]
        if task != "categorical":
            header += [f"t_{n}" for n in names]
    lines = ["\t".join(header)]
    for p in predictions:
        pred = np.asarray(p["predicted"], dtype=np.float64)
        cells = [str(p["fold"]), str(p["key"])]
        if task == "regression":
            cells += [f"{v:.6f}" for v in np.asarray(p["target"], dtype=np.float64)] + [f"{v:.6f}" for v in pred]
        else:
            if task == "multilabel":
                shown = "+".join(n for n, v in zip(names, pred) if v > 1.0 / len(names))
            else:
                shown = names[int(pred.argmax())]
            cells += [str(p["label"]), shown, *(f"{v:.6f}" for v in pred)]
            if task != "categorical":
                cells += [f"{v:.6f}" for v in np.asarray(p["target"], dtype=np.float64)]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str = "") -> bytes:
    """PNG of a row-normalised confusion matrix (rows = true), annotated with row-% and counts."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    size = max(4.0, 0.75 * n + 2.5)
    fig = _figure((size, size * 0.9))
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
    return _png(fig)


def layer_weights_png(layers: Sequence[int], mean: Sequence[float], std: Sequence[float], title: str = "") -> bytes:
    """PNG bar chart of the learned softmax weight of every layer (mean and std over folds)."""
    fig = _figure((max(4.0, 0.45 * len(layers) + 2.0), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(layers)), mean, yerr=std, color="tab:blue", capsize=3)
    ax.axhline(1.0 / len(layers), color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([str(v) for v in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("softmax weight")
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _png(fig)


def write_outputs(out: str | os.PathLike, result: dict[str, Any], predictions: Iterable[dict[str, Any]],
                  markdown: Callable[[dict[str, Any]], str] | None = None, title: str | None = None) -> None:
    """Write the output files of a per-fold run (probe, fine-tuning, conversation) into ``out`` (created if needed),
    each atomically: predictions.tsv, confusion.png, layer_weights.png (as the result has them), results.md
    (``markdown``, default :func:`results_markdown`) and results.json. ``title``: the figures' (default: corpus /
    source (N fold(s)))."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"{corpus_name(result['corpus'])} / {result['source']} ({len(result['folds'])} fold(s))"
    names = result.get("targets") or result["labels"]
    atomic_write_text(out / "predictions.tsv", predictions_tsv(predictions, names, _task(result)))
    if "confusion" in result:
        atomic_write_bytes(out / "confusion.png", confusion_png(result["confusion"], result["labels"], title))
    weights = result.get("layer_weights")
    if weights:
        atomic_write_bytes(out / "layer_weights.png",
                           layer_weights_png(weights["layers"], weights["mean"], weights["std"], title))
    atomic_write_text(out / "results.md", (markdown or results_markdown)(result))
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
    except (FileNotFoundError, NotADirectoryError):
        raise ReportError(f"{path}: not found (did the probe finish?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: invalid JSON: {e}") from None
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror or e}") from None
    return check_result(result, path)


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_result(result: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``result`` (the JSON of a run's results.json at ``path``) when it is one this version can read: the fields a
    table, an ensemble or a robustness run uses, of the right kinds, and a format version it knows; else a
    :class:`ReportError` naming the file and the field. -> ``result``."""
    from .tasks import TASKS

    def bad(what: str) -> ReportError:
        return ReportError(f"{path}: {what}")

    if not isinstance(result, dict):
        raise bad(f"not the results of an emotion2vec run (a JSON object is expected, got {type(result).__name__})")
    for field in ("corpus", "source", "summary"):
        if field not in result:
            raise bad(f"not a probe results.json (no {field!r})")
    if result.get("format", RESULTS_FORMAT) != RESULTS_FORMAT:
        raise bad(f"format {result.get('format')!r}, not {RESULTS_FORMAT!r}")
    version = result.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= RESULTS_VERSION:
        raise bad(f"version {version!r}: this emotion2vec reads results.json versions 1 to {RESULTS_VERSION} (a "
                  f"newer emotion2vec wrote it, or it was edited)")
    for field in ("corpus", "source"):
        if not isinstance(result[field], str) or not result[field]:
            raise bad(f"{field!r} must be a name, got {result[field]!r}")
    if not isinstance(result.get("protocol"), (str, type(None))):
        raise bad(f"'protocol' must be a name or null, got {result['protocol']!r}")
    if result.get("task", "categorical") not in TASKS:
        raise bad(f"task {result.get('task')!r} is not one of {', '.join(TASKS)}")
    for field in ("labels", "targets"):
        value = result.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad(f"{field!r} must be a list of names, got {str(value)[:60]}")
    summary = result["summary"]
    if not isinstance(summary, dict) or not all(
            isinstance(v, dict) and all(_number_or_none(x) for x in v.values()) for v in summary.values()):
        raise bad(f"'summary' must map each metric to its mean and std, got {str(summary)[:60]}")
    folds = result.get("folds", [])
    if not isinstance(folds, list) or not all(isinstance(f, dict) for f in folds):
        raise bad(f"'folds' must be a list of fold entries, got {str(folds)[:60]}")
    return result


def _group(result: dict[str, Any]) -> tuple[str, str, str | None]:
    """A table's column group: the corpus, whether the run is a regression (CCC columns) or not, and the protocol
    of its folds (runs of one corpus made with different protocols are different columns, never compared)."""
    protocol = result.get("protocol")
    return (str(result["corpus"]), "regression" if _task(result) == "regression" else "classes",
            None if protocol is None else str(protocol))


def row_labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """The table row of each result: its feature source. A further result of a source on a corpus and protocol it
    already has (e.g. one feature folder probed with other settings) gets a row of its own, labelled with its run
    folder's name (``run_dir``, set for results read from a path) or its number, so no result is dropped or
    refused; the first keeps the source's row, which it shares with the source's results on other corpora."""
    keys = [(str(r["source"]), _group(r)) for r in results]
    labels: list[str] = []
    for i, (r, key) in enumerate(zip(results, keys)):
        n = keys[:i + 1].count(key)
        if n == 1:
            labels.append(key[0])
            continue
        d = Path(str(r["run_dir"])).name if r.get("run_dir") else None
        label = f"{key[0]} ({d})" if d and d != key[0] else f"{key[0]} (#{n})"
        labels.append(label if label not in labels else f"{key[0]} (#{n})")
    return labels


def group_labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """Each result's corpus as a table shows it: the corpus's name, with the protocol when the results hold that
    corpus under several protocols."""
    groups = [_group(r) for r in results]
    protocols: dict[str, set] = {}
    for corpus, _, protocol in groups:
        protocols.setdefault(corpus, set()).add(protocol)
    return [corpus_name(c) + (f" ({p or 'protocol unknown'})" if len(protocols[c]) > 1 else "")
            for c, _, p in groups]


def make_table(results: Iterable[str | os.PathLike | dict[str, Any]], metrics: Sequence[str] = TABLE_METRICS,
               corpora: Sequence[str] | None = None, sources: Sequence[str] | None = None,
               bold_best: bool = True, average: bool = False) -> str:
    """Markdown table across corpora: rows = feature sources, per corpus the columns ``<CORPUS> <METRIC>``
    (``metrics``; for regression runs the mean CCC and, with several targets, the CCC of each target), cells
    ``mean ± std`` over folds (percent for classification metrics); "–" where a source has no result.

    ``results`` are result directories, results.json files or already loaded dicts. A corpus evaluated under
    several protocols gets one column group per protocol (``URDU (speaker-kfold) UA``); results sharing a source,
    corpus and protocol get one row each (:func:`row_labels`). Rows and column groups follow ``sources`` (row
    labels) / ``corpora`` when given, else the order of first appearance.

    ``average``: "Average <METRIC>" columns after the corpora, the mean over the column groups of each row's means
    (the class groups for the classification metrics, the regression groups for CCC); "–" for a row that lacks one
    of those groups, so every average covers the same corpora.
    """
    for m in metrics:
        if m not in METRIC_NAMES or m == "loss":
            raise ReportError(f"--metrics: unknown metric {m!r} (choose from {', '.join(METRICS)})")
    loaded = [dict(item) if isinstance(item, dict) else dict(load_result(item), run_dir=str(item))
              for item in results]
    cells: dict[tuple[str, tuple[str, str, str | None]], dict[str, Any]] = {}
    seen_sources: list[str] = []
    seen_groups: list[tuple[str, str, str | None]] = []
    group_metrics: dict[tuple[str, str, str | None], tuple[str, ...]] = {}
    header_of: dict[tuple[str, str, str | None], str] = {}
    for r, label, shown in zip(loaded, row_labels(loaded), group_labels(loaded)):
        group = _group(r)
        key = (label, group)
        cells[key] = r
        header_of[group] = shown
        if group[1] == "regression":
            names = r.get("targets") or []
            group_metrics[group] = tuple(dict.fromkeys(group_metrics.get(group, ()) + ("ccc",) + (
                tuple(f"ccc_{n}" for n in names) if len(names) > 1 else ())))
        else:
            group_metrics[group] = tuple(metrics)
        if label not in seen_sources:
            seen_sources.append(label)
        if group not in seen_groups:
            seen_groups.append(group)
    unknown_sources = [s for s in sources or () if s not in seen_sources]
    if unknown_sources:
        raise ReportError(f"--sources {','.join(sources)}: no run of source {', '.join(unknown_sources)} among "
                          f"the runs given (their rows: {', '.join(seen_sources)})")
    unknown_corpora = [c for c in corpora or () if not any(g[0] == c for g in seen_groups)]
    if unknown_corpora:
        raise ReportError(f"--corpora {','.join(corpora)}: no run on corpus {', '.join(unknown_corpora)} among the "
                          f"runs given (their corpora: {', '.join(dict.fromkeys(g[0] for g in seen_groups))})")
    row_names = list(sources) if sources else seen_sources
    groups = ([g for c in corpora for g in seen_groups if g[0] == c] if corpora else seen_groups)
    if not row_names or not groups:
        raise ReportError("no results to tabulate")

    best: dict[tuple[tuple[str, str], str], float] = {}
    for group in groups:
        for m in group_metrics.get(group, metrics):
            means = [cells[(s, group)]["summary"].get(m, {}).get("mean") for s in row_names if (s, group) in cells]
            means = [v for v in means if v is not None and not math.isnan(v)]
            if len(means) > 1:
                best[(group, m)] = min(means) if m in LOWER_IS_BETTER else max(means)

    averages: list[tuple[str, list[tuple[str, str, str | None]]]] = []
    if average:
        class_groups = [g for g in groups if g[1] == "classes"]
        regression_groups = [g for g in groups if g[1] == "regression"]
        if len(class_groups) > 1:
            averages += [(m, class_groups) for m in metrics]
        if len(regression_groups) > 1:
            averages.append(("ccc", regression_groups))
    average_cells: dict[tuple[str, str], float | None] = {}
    for source in row_names:
        for m, over in averages:
            values = [cells[(source, g)]["summary"].get(m, {}).get("mean") if (source, g) in cells else None
                      for g in over]
            ok = all(v is not None and not math.isnan(v) for v in values)
            average_cells[(source, m)] = float(np.mean(values)) if ok else None
    for m, _ in averages:
        means = [average_cells[(src, m)] for src in row_names if average_cells[(src, m)] is not None]
        if len(means) > 1:
            best[(("average",), m)] = min(means) if m in LOWER_IS_BETTER else max(means)

    header = ["Features"] + [f"{header_of.get(g, corpus_name(g[0]))} {_metric_name(m)}" for g in groups
                             for m in group_metrics.get(g, metrics)] + [f"Average {_metric_name(m)}"
                                                                        for m, _ in averages]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for source in row_names:
        row = [source]
        for group in groups:
            r = cells.get((source, group))
            for m in group_metrics.get(group, metrics):
                if r is None:
                    row.append("–")
                    continue
                text = _mean_std(r["summary"], m)
                mean = r["summary"].get(m, {}).get("mean")
                if bold_best and mean is not None and best.get((group, m)) == mean:
                    text = f"**{text}**"
                row.append(text)
        for m, _ in averages:
            value = average_cells[(source, m)]
            text = _value(m, value)
            if bold_best and value is not None and best.get((("average",), m)) == value:
                text = f"**{text}**"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    folds = []
    for group in groups:
        counts = sorted({len(cells[(s, group)]["folds"]) for s in row_names if (s, group) in cells
                         and "folds" in cells[(s, group)]})
        if counts:
            shown = header_of.get(group, corpus_name(group[0]))
            folds.append(f"{shown}{' (regression)' if group[1] == 'regression' else ''} "
                         f"{'/'.join(map(str, counts))}" + (f" ({group[2]})" if group[2] and group[2] not in shown
                                                            else ""))
    regression = any(g[1] == "regression" for g in groups)
    note = ("Mean ± std over folds, " + ("classification metrics in percent, CCC as a coefficient" if regression
                                         else "in percent") + (f" (folds: {', '.join(folds)})" if folds else ""))
    if averages:
        note += "; Average: the mean over the corpora's means (a row without every corpus has none)"
    lines += ["", note + ("; best mean per column in bold." if bold_best else ".")]
    return "\n".join(lines) + "\n"
