"""Fairness and per-speaker analysis of a run's test predictions (Wagner et al.), part of every probe report.

Per group of a ``data.tsv`` column (``gender`` by default when the test rows carry it), :func:`group_analysis`
scores the task's headline metric (UA, macro-F1 or CCC) on the group's test utterances pooled over folds, with a
95 % percentile bootstrap interval (:func:`emotion2vec.downstream.metrics.bootstrap_ci`), and per fold; the other
scalar metrics; the recall of every class (the CCC of every target for regression). For a column with two values
it gives their difference: female minus male for ``gender`` (Wagner et al.'s sex fairness score for CCC, the same
difference for UA / macro-F1), else the first value minus the second in sorted order, with an interval from
:func:`difference_ci` (each group's utterances resampled on their own); for regression also the bias
(mean prediction a - mean prediction b) - (mean truth a - mean truth b) per target. A column with more values gets
the spread (best minus worst group).

Per speaker (the ``speaker`` column): the metric of every speaker with at least ``min_utterances`` test utterances
(default 20), with a bootstrap interval over the speaker's utterances, sorted; the spread across speakers (mean,
population std, min, max, range). Rows with an empty value are left out of their column and counted.

The result goes into results.json as ``groups`` (``{column: {"metric", "values": {value: {...}}, "difference" |
"spread", "missing"}}``) and ``speakers``; :func:`group_markdown` is the results.md section and
:func:`fairness_table` the cross-run table of ``emotion2vec report``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..downstream.metrics import HEADLINE, METRIC_NAMES, PERCENT_METRICS, TASK_METRICS, bootstrap_ci, fast_scores
from . import AnalysisError

__all__ = ["DEFAULT_COLUMN", "SPEAKER_COLUMN", "MIN_UTTERANCES", "group_analysis", "difference_ci",
           "group_summary", "group_markdown", "fairness_table"]

DEFAULT_COLUMN = "gender"
SPEAKER_COLUMN = "speaker"
MIN_UTTERANCES = 20
#: the two values whose difference is the fairness score, in that order (female minus male)
ORDERED_PAIRS = {"gender": ("F", "M")}


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def _headline(preds, idx: np.ndarray, metric: str) -> float | None:
    """``metric`` of rows ``idx`` (None where it is undefined, e.g. CCC of fewer than two utterances)."""
    if len(idx) == 0 or (preds.task == "regression" and len(idx) < 2):
        return None
    return float(_scores(preds, idx)[metric])


def _scores(preds, idx: np.ndarray) -> dict[str, float]:
    return fast_scores(preds.task, preds.predicted[idx], preds.target[idx],
                       None if preds.hard is None else preds.hard[idx])


def difference_ci(preds, a: np.ndarray, b: np.ndarray, metric: str, resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap interval of metric(rows ``a``) - metric(rows ``b``): every resample draws |a| rows of
    ``a`` and |b| rows of ``b`` with replacement (seeded) and scores each group with
    :func:`~emotion2vec.downstream.metrics.fast_scores`. -> ``{value, low, high, resamples, level}``."""
    value = _headline(preds, a, metric)
    other = _headline(preds, b, metric)
    out: dict[str, Any] = {"value": None if value is None or other is None else value - other,
                           "low": None, "high": None, "resamples": int(resamples), "level": float(level)}
    if out["value"] is None or resamples <= 0:
        return out
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for r in range(resamples):
        values[r] = (_scores(preds, a[rng.integers(0, len(a), len(a))])[metric]
                     - _scores(preds, b[rng.integers(0, len(b), len(b))])[metric])
    alpha = (1.0 - level) / 2
    out["low"], out["high"] = (float(v) for v in np.nanquantile(values, [alpha, 1.0 - alpha]))
    return out


def _ci(preds, idx: np.ndarray, resamples: int, seed: int) -> dict[str, Any] | None:
    if resamples <= 0 or len(idx) < 2:
        return None
    ci = bootstrap_ci(preds.task, preds.predicted[idx], preds.target[idx],
                      None if preds.hard is None else preds.hard[idx], resamples=resamples, seed=seed)
    return {"low": ci["low"], "high": ci["high"], "resamples": ci["resamples"], "level": ci["level"]}


def _group_entry(preds, idx: np.ndarray, metric: str, resamples: int, seed: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"n": int(len(idx)), "metric": _headline(preds, idx, metric),
                             "ci": _ci(preds, idx, resamples, seed)}
    if entry["metric"] is None:
        return entry
    full = preds.select(idx).metrics()
    entry["metrics"] = {m: full[m] for m in TASK_METRICS[preds.task] if m in full}
    if preds.task == "regression":
        entry["per_target_ccc"] = {n: v["ccc"] for n, v in full["per_target"].items()}
    else:
        entry["per_class_recall"] = {n: v["recall"] for n, v in full["per_class"].items()}
    folds = np.asarray(preds.folds)
    entry["per_fold"] = {f: _headline(preds, idx[folds[idx] == f], metric) for f in preds.fold_names()}
    defined = [v for v in entry["per_fold"].values() if v is not None]
    entry["per_fold_mean"] = float(np.mean(defined)) if defined else None
    entry["per_fold_std"] = float(np.std(defined)) if defined else None
    return entry


def _values(rows_by_key: Mapping[str, Mapping], keys: Sequence[str], column: str) -> list[str]:
    return [str(rows_by_key[k].get(column, "") or "") if k in rows_by_key else "" for k in keys]


def _pair(column: str, values: Sequence[str]) -> tuple[str, str] | None:
    if column in ORDERED_PAIRS and set(ORDERED_PAIRS[column]) <= set(values):
        return ORDERED_PAIRS[column]
    return (values[0], values[1]) if len(values) == 2 else None


def _column(preds, values: list[str], column: str, metric: str, resamples: int, seed: int) -> dict[str, Any]:
    arr = np.asarray(values)
    present = sorted(set(values) - {""})
    out: dict[str, Any] = {"metric": metric, "values": {}, "missing": int((arr == "").sum())}
    for v in present:
        out["values"][v] = _group_entry(preds, np.flatnonzero(arr == v), metric, resamples, seed)
    pair = _pair(column, present)
    if pair:
        a, b = (np.flatnonzero(arr == v) for v in pair)
        out["difference"] = {"of": f"{pair[0]} - {pair[1]}", "a": pair[0], "b": pair[1],
                             **difference_ci(preds, a, b, metric, resamples, seed)}
        if preds.task == "regression":
            bias = ((preds.predicted[a].mean(0) - preds.predicted[b].mean(0))
                    - (preds.target[a].mean(0) - preds.target[b].mean(0)))
            out["difference"]["bias"] = {n: float(v) for n, v in zip(preds.names, bias)}
    elif len(present) > 2:
        scored = {v: e["metric"] for v, e in out["values"].items() if e["metric"] is not None}
        if scored:
            best, worst = max(scored, key=scored.get), min(scored, key=scored.get)
            out["spread"] = {"best": best, "worst": worst, "range": scored[best] - scored[worst]}
    return out


def _speakers(preds, rows_by_key: Mapping[str, Mapping], metric: str, min_utterances: int, resamples: int,
              seed: int) -> dict[str, Any] | None:
    speakers = np.asarray(_values(rows_by_key, preds.keys, SPEAKER_COLUMN))
    genders = _values(rows_by_key, preds.keys, DEFAULT_COLUMN)
    known = sorted(set(speakers.tolist()) - {""})
    if not known:
        return None
    kept, left_out, left_utts = [], 0, 0
    for s in known:
        idx = np.flatnonzero(speakers == s)
        if len(idx) < min_utterances:
            left_out += 1
            left_utts += len(idx)
            continue
        value = _headline(preds, idx, metric)
        if value is None:
            continue
        ci = _ci(preds, idx, resamples, seed)
        kept.append({"speaker": s, "gender": genders[idx[0]] or None, "n": int(len(idx)), "metric": value,
                     "low": ci["low"] if ci else None, "high": ci["high"] if ci else None})
    kept.sort(key=lambda e: -e["metric"])
    out: dict[str, Any] = {"column": SPEAKER_COLUMN, "metric": metric, "min_utterances": int(min_utterances),
                           "resamples": int(resamples), "speakers": kept, "left_out": left_out,
                           "left_out_utterances": left_utts, "of": len(known)}
    if kept:
        scores = np.asarray([e["metric"] for e in kept])
        out["spread"] = {"n": len(kept), "mean": float(scores.mean()), "std": float(scores.std()),
                         "min": float(scores.min()), "max": float(scores.max()),
                         "range": float(scores.max() - scores.min()),
                         "lowest": kept[-1]["speaker"], "highest": kept[0]["speaker"]}
    return out


def group_analysis(preds, rows_by_key: Mapping[str, Mapping], columns: Sequence[str] | None = None,
                   min_utterances: int = MIN_UTTERANCES, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"groups": {column: ...}, "speakers": ...}`` of the test predictions ``preds``
    (:class:`~emotion2vec.analysis.runs.Predictions`); ``rows_by_key``: the data.tsv rows of the test keys.

    ``columns``: data.tsv columns to group by (None: ``gender`` when any test row has one). A named column that
    no test row carries is refused, listing the columns there are."""
    if min_utterances < 1:
        raise AnalysisError(f"--speaker-min-utterances must be positive, got {min_utterances}")
    metric = HEADLINE[preds.task]
    if columns is None:
        columns = [DEFAULT_COLUMN] if any(_values(rows_by_key, preds.keys, DEFAULT_COLUMN)) else []
    available = sorted({c for k in preds.keys if k in rows_by_key for c, v in rows_by_key[k].items() if v != ""})
    out: dict[str, Any] = {"groups": {}}
    for column in columns:
        values = _values(rows_by_key, preds.keys, column)
        if not any(values):
            raise AnalysisError(f"--group-by {column}: no test utterance has a value in that data.tsv column "
                                f"(columns with values: {', '.join(available)})")
        out["groups"][column] = _column(preds, values, column, metric, resamples, seed)
    speakers = _speakers(preds, rows_by_key, metric, min_utterances, resamples, seed)
    if speakers is not None:
        out["speakers"] = speakers
    return out


# ------------------------------------------------------------------------------------------------ reports
def _interval(metric: str, low, high) -> str:
    return "–" if low is None or high is None else f"[{_fmt(metric, low)}, {_fmt(metric, high)}]"


def _difference_text(metric: str, d: Mapping[str, Any]) -> str:
    sign = "+" if (d.get("value") or 0) > 0 else ""
    return (f"{d['of']} = {sign}{_fmt(metric, d.get('value'))} {_interval(metric, d.get('low'), d.get('high'))}"
            if d.get("value") is not None else f"{d['of']} undefined")


def group_summary(result: Mapping[str, Any]) -> list[str]:
    """One console line per group column and one for the speakers."""
    lines = []
    for column, g in (result.get("groups") or {}).items():
        metric = g["metric"]
        name = METRIC_NAMES.get(metric, metric)
        text = ", ".join(f"{v} {name} {_fmt(metric, e['metric'])} ({e['n']})" for v, e in g["values"].items())
        if g.get("difference"):
            text += f"; {_difference_text(metric, g['difference'])}"
        lines.append(f"{column}: {text}")
    sp = result.get("speakers")
    if sp:
        s = sp.get("spread")
        name = METRIC_NAMES.get(sp["metric"], sp["metric"])
        lines.append(f"speakers: {len(sp['speakers'])} of {sp['of']} with >= {sp['min_utterances']} test utterances"
                     + (f"; {name} mean {_fmt(sp['metric'], s['mean'])} ± {_fmt(sp['metric'], s['std'])}, "
                        f"{_fmt(sp['metric'], s['min'])} ({s['lowest']}) to {_fmt(sp['metric'], s['max'])} "
                        f"({s['highest']})" if s else ""))
    return lines


def group_markdown(result: Mapping[str, Any]) -> list[str]:
    """The results.md section of ``result``'s ``groups`` and ``speakers`` entries (empty without them)."""
    groups, speakers = result.get("groups") or {}, result.get("speakers")
    if not groups and not speakers:
        return []
    lines = ["", "## Fairness: groups and speakers", ""]
    for column, g in groups.items():
        metric = g["metric"]
        name = METRIC_NAMES.get(metric, metric)
        first = next((e for e in g["values"].values() if e.get("metric") is not None), {})
        parts = list(first.get("per_class_recall") or first.get("per_target_ccc") or {})
        part_name = "recall" if first.get("per_class_recall") is not None else "CCC"
        lines += [f"Per {column} ({name} over the test utterances of every fold, 95 % bootstrap interval; per fold "
                  "mean ± std):", "",
                  f"| {column} | Test utterances | {name} | 95% CI | Per fold | "
                  + " | ".join(f"{part_name} {p}" for p in parts) + " |",
                  "|---|---:|---:|---|---|" + "---:|" * len(parts)]
        for value, e in g["values"].items():
            ci = e.get("ci") or {}
            per = (f"{_fmt(metric, e['per_fold_mean'])} ± {_fmt(metric, e['per_fold_std'])}"
                   if e.get("per_fold_mean") is not None else "–")
            detail = e.get("per_class_recall") or e.get("per_target_ccc") or {}
            lines.append(f"| {value} | {e['n']} | {_fmt(metric, e['metric'])} | "
                         f"{_interval(metric, ci.get('low'), ci.get('high'))} | {per} | "
                         + " | ".join(_fmt("ua" if part_name == "recall" else "ccc", detail.get(p)) for p in parts)
                         + " |")
        extra = []
        if g.get("difference"):
            d = g["difference"]
            extra.append(f"Difference {_difference_text(metric, d)}"
                         + (" (Wagner et al.'s fairness score)" if column == DEFAULT_COLUMN else ""))
            if d.get("bias"):
                extra.append("bias (mean prediction - mean truth difference): "
                             + ", ".join(f"{n} {v:+.3f}" for n, v in d["bias"].items()))
        if g.get("spread"):
            s = g["spread"]
            extra.append(f"spread: best {s['best']} - worst {s['worst']} = {_fmt(metric, s['range'])}")
        if g.get("missing"):
            extra.append(f"{g['missing']} test utterance(s) without a {column} value left out")
        lines += [""] + [f"- {x}" for x in extra] + [""]
    if speakers:
        metric = speakers["metric"]
        name = METRIC_NAMES.get(metric, metric)
        kept = speakers["speakers"]
        head = (f"Per speaker: {len(kept)} of {speakers['of']} speakers have at least {speakers['min_utterances']} "
                f"test utterances ({speakers['left_out_utterances']} utterance(s) of {speakers['left_out']} "
                f"speaker(s) below that left out); {name} with a 95 % bootstrap interval over the speaker's "
                f"utterances ({speakers['resamples']} resamples).")
        lines += [head]
        if kept:
            s = speakers["spread"]
            lines += ["", f"Spread across speakers: mean {_fmt(metric, s['mean'])}, std {_fmt(metric, s['std'])}, "
                          f"min {_fmt(metric, s['min'])} ({s['lowest']}), max {_fmt(metric, s['max'])} "
                          f"({s['highest']}), range {_fmt(metric, s['range'])}.", "",
                      f"| Speaker | Gender | Test utterances | {name} | 95% CI |", "|---|---|---:|---:|---|"]
            lines += [f"| {e['speaker']} | {e.get('gender') or '–'} | {e['n']} | {_fmt(metric, e['metric'])} | "
                      f"{_interval(metric, e['low'], e['high'])} |" for e in kept]
            lines += ["", "![per-speaker scores](speakers.png)"]
        lines.append("")
    return lines


def fairness_table(results: Sequence[Mapping[str, Any]], corpus_name: Callable[[str], str] = str) -> str:
    """Markdown table across runs: per run and group column, each group's score, the difference with its interval,
    and the spread across speakers (runs without a ``groups`` or ``speakers`` entry show "–"); ``corpus_name``
    spells the corpora."""
    lines = ["| Corpus | Features | Column | Metric | Groups (score, utterances) | Difference [95% CI] | "
             "Speakers (>= N) | Speaker mean ± std | Speaker range |",
             "|---|---|---|---|---|---|---:|---|---|"]
    for r in results:
        groups = r.get("groups") or {"–": None}
        sp = r.get("speakers") or {}
        spread = sp.get("spread")
        for column, g in groups.items():
            metric = (g or sp or {}).get("metric") or HEADLINE.get(r.get("task", "categorical"), "ua")
            cells = "–"
            diff = "–"
            if g:
                cells = ", ".join(f"{v} {_fmt(metric, e['metric'])} ({e['n']})" for v, e in g["values"].items())
                if g.get("difference"):
                    diff = _difference_text(metric, g["difference"])
                elif g.get("spread"):
                    diff = f"best - worst {_fmt(metric, g['spread']['range'])}"
            speakers = (f"{len(sp['speakers'])} of {sp['of']} (N = {sp['min_utterances']})" if sp else "–")
            lines.append(f"| {corpus_name(str(r.get('corpus', '–')))} | {r.get('source', '–')} | {column} | "
                         f"{METRIC_NAMES.get(metric, metric)} | {cells} | {diff} | {speakers} | "
                         + (f"{_fmt(metric, spread['mean'])} ± {_fmt(metric, spread['std'])} | "
                            f"{_fmt(metric, spread['min'])}–{_fmt(metric, spread['max'])} |" if spread else "– | – |"))
    return "\n".join(lines) + "\n"
