"""What a pseudo-labelling run kept and how good its labels are: ``report.json``, ``report.md``, ``confidence.png``
(histogram of the combined confidence, kept and rejected files) and ``agreement.png`` (between models).

* per class: files and hours kept;
* rejections counted by reason (a file with several reasons counts under each);
* the confidence histogram in ten bins over [0, 1];
* the agreement matrix between models: the share of files (read by all) on which two models' own labels agree, and
  Cohen's kappa (agreement beyond chance);
* with a dev set: each model's WA / UA / macro-F1 on it (argmax of its window mean, as the files are labelled);
* with reference labels for some inputs (``--reference``): the accuracy of all their pseudo-labels and of the kept
  ones, the figure that shows whether the filter buys precision.

:func:`rounds_markdown` tabulates the reports of the rounds of ``recipes/data_engine.sh``.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .combine import Utterance

__all__ = ["REPORT_FORMAT", "BINS", "build_report", "report_markdown", "confidence_png", "agreement_png",
           "rounds_markdown"]

REPORT_FORMAT = "emotion2vec-pseudo-label-report"
BINS = 10


def _reason_kind(reason: str) -> str:
    for kind in ("error", "label", "duration", "confidence", "margin", "agreement", "over the quota"):
        if reason.startswith(kind):
            return "quota" if kind == "over the quota" else kind
    return reason


def _agreement(utterances: Sequence[Utterance], names: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score

    read = [u for u in utterances if u.error is None]
    m = len(names)
    share = np.ones((m, m))
    kappa = np.ones((m, m))
    for i in range(m):
        for j in range(m):
            if i == j or not read:
                continue
            a = [u.model_labels[i] for u in read]
            b = [u.model_labels[j] for u in read]
            share[i, j] = float(np.mean([x == y for x, y in zip(a, b)]))
            kappa[i, j] = 1.0 if a == b else float(cohen_kappa_score(a, b))
    return {"models": list(names), "files": len(read), "share": share.round(4).tolist(),
            "kappa": kappa.round(4).tolist()}


def build_report(utterances: Sequence[Utterance], kept: Sequence[Utterance],
                 rejected: Sequence[tuple[Utterance, str]], models: Sequence[str], names: Sequence[str],
                 classes: Sequence[str], settings: Mapping[str, Any], dev: Mapping[str, Any] | None = None,
                 reference: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report of a run (see the module docstring). ``dev``: per model name its dev metrics; ``reference``: true
    label by input key."""
    per_class = {c: {"files": 0, "hours": 0.0} for c in classes}
    for u in kept:
        per_class[u.label]["files"] += 1
        per_class[u.label]["hours"] += u.duration / 3600
    reasons: Counter = Counter()
    for _, why in rejected:
        reasons.update({_reason_kind(part) for part in why.split("; ")})
    edges = np.linspace(0.0, 1.0, BINS + 1)
    kept_keys = {u.key for u in kept}

    def histogram(group: Sequence[Utterance]) -> list[int]:
        values = np.clip([u.confidence for u in group if u.error is None], 0.0, 1.0)
        return np.histogram(values, bins=edges)[0].astype(int).tolist()

    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "version": 1, "models": [{"model": m, "name": n} for m, n in zip(models, names)],
        "classes": list(classes), "files": len(utterances), "read": sum(u.error is None for u in utterances),
        "kept": len(kept), "rejected": len(rejected),
        "hours": {"input": round(sum(u.duration for u in utterances) / 3600, 4),
                  "kept": round(sum(u.duration for u in kept) / 3600, 4)},
        "per_class": {c: {"files": v["files"], "hours": round(v["hours"], 4)} for c, v in per_class.items()},
        "rejected_by_reason": dict(sorted(reasons.items())),
        "confidence_histogram": {"edges": edges.round(2).tolist(),
                                 "kept": histogram([u for u in utterances if u.key in kept_keys]),
                                 "rejected": histogram([u for u in utterances if u.key not in kept_keys])},
        "agreement": _agreement(utterances, names),
        "settings": dict(settings),
        "dev": dict(dev) if dev is not None else None,
        "reference": None,
    }
    if reference is not None:
        scored = [u for u in utterances if u.error is None and u.key in reference]
        kept_scored = [u for u in scored if u.key in kept_keys]

        def accuracy(group):
            return round(float(np.mean([u.label == reference[u.key] for u in group])), 4) if group else None

        report["reference"] = {"files": len(scored), "accuracy_all": accuracy(scored), "kept": len(kept_scored),
                               "accuracy_kept": accuracy(kept_scored)}
    return report


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def report_markdown(report: Mapping[str, Any]) -> str:
    s = report["settings"]
    lines = [f"# Pseudo-labels: {report['kept']} of {report['files']} files kept "
             f"({report['hours']['kept']:.3f} of {report['hours']['input']:.3f} h)", "",
             "Models: " + ", ".join(f"`{m['model']}` ({m['name']})" for m in report["models"]) + ".", "",
             f"Filters: confidence >= {s['min_confidence']:g}, margin >= {s['min_margin']:g}, agreement >= "
             f"{s['min_agreement']:g}, duration {s['min_duration']:g}-{s['max_duration']:g} s"
             + (f", at most {s['max_files_per_class']} files per class" if s.get("max_files_per_class") else "")
             + (f", at most {s['max_hours_per_class']:g} h per class" if s.get("max_hours_per_class") else "")
             + f"; windows of {s['window']:g} s every {s['hop']:g} s.", "",
             "## Kept per class", "", "| class | files | hours |", "|---|---:|---:|"]
    for c, v in report["per_class"].items():
        lines.append(f"| {c} | {v['files']} | {v['hours']:.3f} |")
    lines += ["", "## Rejected", "", f"{report['rejected']} file(s); by reason (a file can have several):", "",
              "| reason | files |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in report["rejected_by_reason"].items()] or ["| – | 0 |"]
    h = report["confidence_histogram"]
    lines += ["", "## Confidence", "", "![confidence](confidence.png)", "", "| confidence | kept | rejected |",
              "|---|---:|---:|"]
    for a, b, k, r in zip(h["edges"][:-1], h["edges"][1:], h["kept"], h["rejected"]):
        lines.append(f"| {a:.1f}-{b:.1f} | {k} | {r} |")
    ag = report["agreement"]
    names = ag["models"]
    lines += ["", "## Agreement between models", "", "![agreement](agreement.png)", "",
              f"Share of the {ag['files']} files read on which the models' own labels agree (Cohen's kappa in "
              f"brackets).", "", "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(f"{100 * ag['share'][i][j]:.1f} ({ag['kappa'][i][j]:.2f})"
                                             for j in range(len(names))) + " |")
    if report.get("dev"):
        lines += ["", "## Models on the dev set", "", "| model | files | WA | UA | macro-F1 |", "|---|---:|---:|---:|---:|"]
        for n, m in report["dev"].items():
            lines.append(f"| {n} | {m['files']} | {_pct(m['wa'])} | {_pct(m['ua'])} | {_pct(m['macro_f1'])} |")
    ref = report.get("reference")
    if ref:
        lines += ["", "## Against reference labels", "",
                  f"Of {ref['files']} files with a reference label, the pseudo-labels are right for "
                  f"{_pct(ref['accuracy_all'])} %; of the {ref['kept']} kept, for {_pct(ref['accuracy_kept'])} %."]
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def confidence_png(report: Mapping[str, Any]) -> bytes:
    h = report["confidence_histogram"]
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    left = np.array(h["edges"][:-1])
    width = left[1] - left[0] if len(left) > 1 else 1.0
    ax.bar(left, h["kept"], width=width, align="edge", label="kept", color="tab:green", edgecolor="white")
    ax.bar(left, h["rejected"], width=width, align="edge", bottom=h["kept"], label="rejected", color="tab:gray",
           edgecolor="white")
    threshold = report["settings"]["min_confidence"]
    ax.axvline(threshold, color="black", lw=1, ls="--", label=f"--min-confidence {threshold:g}")
    ax.set_xlabel("combined confidence (probability of the label)")
    ax.set_ylabel("files")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{report['kept']} of {report['files']} files kept")
    return _png(fig)


def agreement_png(report: Mapping[str, Any]) -> bytes:
    ag = report["agreement"]
    names = ag["models"]
    share = np.array(ag["share"])
    size = 2.5 + 0.7 * len(names)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{100 * share[i, j]:.0f}%\nκ {ag['kappa'][i][j]:.2f}", ha="center", va="center",
                    fontsize=8, color="white" if share[i, j] < 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="files with the same label")
    ax.set_title(f"agreement between models ({ag['files']} files)")
    return _png(fig)


def rounds_markdown(reports: Sequence[str | Path]) -> str:
    """One row per pseudo-labelling run (a round of ``recipes/data_engine.sh``): its labelling model(s) scored on the
    dev set, and the files and hours of the labels it kept."""
    lines = ["| round | labelled by | dev UA | dev macro-F1 | kept files | kept hours |",
             "|---:|---|---:|---:|---:|---:|"]
    for r, path in enumerate(reports):
        rep = json.loads(Path(path).read_text(encoding="utf-8"))
        dev = rep.get("dev") or {}
        for i, m in enumerate(rep["models"]):
            scores = dev.get(m["name"], {})
            first = i == 0
            lines.append(f"| {r if first else ''} | `{m['model']}` | {_pct(scores.get('ua'))} | "
                         f"{_pct(scores.get('macro_f1'))} | {rep['kept'] if first else ''} | "
                         f"{format(rep['hours']['kept'], '.3f') if first else ''} |")
    return "\n".join(lines) + "\n"
