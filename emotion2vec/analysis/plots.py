"""The analysis figures of a run directory: ``speakers.png`` (per-speaker scores, sorted, with their intervals)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..downstream.metrics import METRIC_NAMES, PERCENT_METRICS
from ..downstream.report import _figure, _png, corpus_name
from ..io.atomic import atomic_write_bytes
from . import analysis_files

__all__ = ["speakers_png", "write_analysis_plots"]

GENDER_COLOURS = {"F": "tab:orange", "M": "tab:blue"}


def speakers_png(speakers: Mapping[str, Any], title: str = "") -> bytes:
    """Horizontal bars of each speaker's score (best on top) with its 95 % interval, coloured by gender."""
    kept = speakers["speakers"]
    metric = speakers["metric"]
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    fig = _figure((6.4, max(2.4, 0.28 * len(kept) + 1.4)))
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(kept)))[::-1]
    values = [scale * e["metric"] for e in kept]
    low = [scale * (e["metric"] - e["low"]) if e.get("low") is not None else 0.0 for e in kept]
    high = [scale * (e["high"] - e["metric"]) if e.get("high") is not None else 0.0 for e in kept]
    colours = [GENDER_COLOURS.get(e.get("gender") or "", "tab:grey") for e in kept]
    ax.barh(y, values, xerr=[low, high], color=colours, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{e['speaker']} ({e['n']})" for e in kept], fontsize=8)
    mean = scale * speakers["spread"]["mean"]
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.1f}")
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric)}" + (" (%)" if scale == 100.0 else ""))
    genders = [g for g in GENDER_COLOURS if any(e.get("gender") == g for e in kept)]
    for g in genders:
        ax.barh([], [], color=GENDER_COLOURS[g], label=g)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"per speaker (>= {speakers['min_utterances']} test utterances)", fontsize=9)
    return _png(fig)


def write_analysis_plots(out: str | os.PathLike, result: Mapping[str, Any]) -> None:
    """Write ``speakers.png`` into ``out`` when ``result`` scores at least one speaker."""
    if "speakers.png" in analysis_files(result):
        sp = result["speakers"]
        title = (f"{corpus_name(result['corpus'])} / {result['source']}: speakers with >= {sp['min_utterances']} "
                 f"test utterances")
        atomic_write_bytes(Path(out) / "speakers.png", speakers_png(sp, title))
