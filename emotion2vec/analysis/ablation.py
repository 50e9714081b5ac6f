"""The emotion2vec paper's ablation tables (Appendix C, Tables 8-11) from the probe runs of ``recipes/ablation.sh``.

The recipe pretrains one model per row, extracts the corpus with it and probes the features with the paper's
protocol, into ``RESULTS/<row>/<downstream>/`` (``frm``: frame features, ``utt``: the utterance tokens, ``utt+frm``:
both joined). :func:`ablation_tables` reads what is there and writes one table per ablation group in the paper's
layout (its row labels and columns, WA / UA / WF1 in percent, mean over the folds); a group without any finished row
is left out, a row without its run is left out of its table.

    Table 8   initialisation               Initialization | WA | UA | WF1
    Table 9   the pretraining losses and   Frm Loss | Utt Loss | Downstream | WA | UA | WF1
              the downstream features
    Table 10  the utterance-loss method    Utt Loss Method | WA | UA | WF1
    Table 11  the utterance-loss weight    Utt Loss α | WA | UA | WF1
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from . import AnalysisError

__all__ = ["ABLATION_TABLES", "DOWNSTREAMS", "downstreams_of", "ablation_tables"]

#: downstream feature folder -> how the paper's Table 9 names it
DOWNSTREAMS = {"frm": "Frm", "utt": "Utt", "utt+frm": "Utt ⊕ Frm"}

#: table number -> (title, label columns, rows: (label cells, recipe row, downstream))
ABLATION_TABLES: dict[int, tuple[str, tuple[str, ...], tuple[tuple[tuple[str, ...], str, str], ...]]] = {
    8: ("Ablation study with initialization methods", ("Initialization",),
        ((("Cold Start",), "init_cold_start", "frm"), (("data2vec",), "init_data2vec", "frm"),
         (("data2vec 2.0",), "init_data2vec2", "frm"))),
    9: ("Ablation study with different loss", ("Frm Loss", "Utt Loss", "Downstream"),
        ((("×", "✓", "Utt"), "loss_utterance_only", "utt"), (("✓", "×", "Frm"), "loss_frame_only", "frm"),
         (("✓", "✓", "Utt"), "loss_both", "utt"), (("✓", "✓", "Frm"), "loss_both", "frm"),
         (("✓", "✓", "Utt ⊕ Frm"), "loss_both", "utt+frm"))),
    10: ("Ablation study with the methods for utterance-level loss", ("Utt Loss Method",),
         ((("Token",), "utterance_token", "frm"), (("Chunk",), "utterance_chunk", "frm"),
          (("Global",), "utterance_global", "frm"))),
    11: ("Ablation study with the weight for utterance-level loss", ("Utt Loss α",),
         ((("0",), "alpha_0", "frm"), (("0.1",), "alpha_0.1", "frm"), (("1",), "alpha_1", "frm"),
          (("10",), "alpha_10", "frm"))),
}


def downstreams_of(row: str) -> list[str]:
    """The downstream feature kinds the tables probe for recipe row ``row`` (``frm`` always)."""
    kinds = {d for _, (_, _, rows) in ABLATION_TABLES.items() for _, r, d in rows if r == row}
    return ["frm"] + sorted(kinds - {"frm"})


def _cell(result: dict[str, Any], metric: str) -> str:
    value = result["summary"].get(metric, {}).get("mean")
    return "–" if value is None else f"{100 * value:.2f}"


def ablation_tables(results: str | os.PathLike, tables: Sequence[int] | None = None) -> str:
    """Markdown: one table per ablation group with at least one finished row under ``results`` (the recipe's
    ``results/ablation/<corpus>``), in the paper's layout, with the corpus, protocol and folds of the runs."""
    from ..downstream.report import corpus_name, load_result

    root = Path(results)
    if not root.is_dir():
        raise AnalysisError(f"{root}: no such folder (the recipe writes results/ablation/<corpus>/<row>/...)")
    out: list[str] = []
    for number in tables or sorted(ABLATION_TABLES):
        title, columns, rows = ABLATION_TABLES[number]
        lines = []
        runs = []
        for cells, row, downstream in rows:
            path = root / row / downstream / "results.json"
            if not path.is_file():
                continue
            result = load_result(path)
            runs.append(result)
            lines.append("| " + " | ".join(cells) + " | "
                         + " | ".join(_cell(result, m) for m in ("wa", "ua", "wf1")) + " |")
        if not lines:
            continue
        first = runs[0]
        folds = sorted({len(r["folds"]) for r in runs})
        out += [f"Table {number}: {title} ({corpus_name(first['corpus'])}, {first.get('protocol')}, "
                f"{'/'.join(map(str, folds))} fold(s)).", "",
                "| " + " | ".join(columns) + " | WA(%) ↑ | UA(%) ↑ | WF1(%) ↑ |",
                "|" + "---|" * len(columns) + "---:|---:|---:|", *lines, ""]
    if not out:
        raise AnalysisError(f"{root}: no finished ablation row (expected <row>/<frm|utt|utt+frm>/results.json for "
                            f"the rows of recipes/ablation.sh)")
    return "\n".join(out) + "Mean over folds of the probe's test scores, in percent.\n"
