"""EMO-SUPERB (Wu et al.): its label files, its nine benchmark conditions and the layout of its results table.

The benchmark scores six corpora under nine conditions: primary-emotion (P, one choice per rater) and
secondary-emotion (S, several choices per rater) labels for MSP-IMPROV, MSP-Podcast and BIIC-Podcast, one label set
each for CREMA-D, IEMOCAP and BIIC-NNIME. Targets are the raters' label distributions (soft labels), scored by
macro-F1 after the 1/C rule (a class counts as present, in the truth and in a prediction, when its share exceeds
1 / the number of classes): ``ml_macro_f1`` of a ``--task soft`` run.

The benchmark distributes, per corpus and condition, a folder with ``config.json`` (the class list ``categorical.
emo_type``, the rating scale ``dimensional.min_score`` / ``max_score``, the names of the three sets
``data_split_type``) and one ``labels_consensus_<N>.csv`` per partition N: ``FileName`` (the first column, named or
not), one column per class with its (label-smoothed) share, ``EmoAct``, ``EmoVal``, ``EmoDom``, optionally ``SpkrID``
and ``Gender``, and ``Split_Set`` (which set of partition N the file is in). :func:`read_condition` reads such a
folder; the preparers of MSP-IMPROV, BIIC-NNIME and BIIC-Podcast (``emotion2vec prepare msp-improv --condition P``)
turn it into data.tsv rows with one ``foldN`` column per partition (protocol ``emo-superb``).

:func:`benchmark_table` lays finished runs out as the paper's Table 3: one row per upstream, the Average over the
nine conditions, then one column per condition.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import Emotion2VecError

__all__ = ["EmoSuperbError", "CONDITIONS", "CONDITION_FOLDERS", "CONDITIONED", "Condition", "LabelRow", "read_condition",
           "condition_corpus", "benchmark_table"]


class EmoSuperbError(Emotion2VecError, ValueError):
    """An EMO-SUPERB label folder or result that cannot be read; the message names the file and line."""


#: the nine conditions in the order of the paper's Table 3: (column title, corpus as prepared, condition)
CONDITIONS = (("IMPROV (P)", "msp-improv", "P"), ("CREMA-D", "crema-d", ""), ("POD (P)", "msp-podcast", "P"),
              ("B-POD (P)", "biic-podcast", "P"), ("IEMOCAP", "iemocap", ""), ("NNIME", "biic-nnime", ""),
              ("IMPROV (S)", "msp-improv", "S"), ("POD (S)", "msp-podcast", "S"), ("B-POD (S)", "biic-podcast", "S"))
CONDITION_FOLDERS = {"P": "Primary", "S": "Secondary"}
#: corpora only read for the benchmark and scored under both conditions: prepared without --condition they are P
CONDITIONED = ("msp-improv", "biic-podcast")
_SPLITS = {"train": "train", "dev": "valid", "test": "test"}
_FILE_COLUMNS = ("FileName", "")
_DIMENSIONS = (("EmoAct", "arousal"), ("EmoVal", "valence"), ("EmoDom", "dominance"))


def condition_corpus(corpus: str, condition: str) -> str:
    """The corpus name a prepared condition carries in folds.json and results (``msp-improv (P)``)."""
    return f"{corpus} ({condition})" if condition else corpus


@dataclass
class LabelRow:
    file: str
    shares: dict[str, float]
    dimensions: dict[str, float]  # arousal / valence / dominance on [0, 1]
    speaker: str = ""
    gender: str = ""
    folds: dict[str, str] = field(default_factory=dict)  # fold name -> train / valid / test


@dataclass
class Condition:
    folder: Path
    classes: list[str]
    rows: dict[str, LabelRow]  # by file name
    folds: list[str]  # fold1, fold2, ... in partition order
    description: str = ""


def _read_config(folder: Path) -> tuple[list[str], dict[str, str], float, float, str]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        classes = [str(c) for c in config["categorical"]["emo_type"]]
        split_names = {str(v): _SPLITS[k] for k, v in config["data_split_type"].items()}
        low = float(config.get("dimensional", {}).get("min_score", 1))
        high = float(config.get("dimensional", {}).get("max_score", 7))
    except FileNotFoundError:
        raise EmoSuperbError(f"{path}: not found (each EMO-SUPERB condition folder has config.json and "
                             f"labels_consensus_<N>.csv)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EmoSuperbError(f"{path}: not an EMO-SUPERB config (categorical.emo_type, data_split_type with "
                             f"train/dev/test): {type(e).__name__}: {e}") from None
    if len(classes) < 2 or len(set(classes)) != len(classes) or not high > low:
        raise EmoSuperbError(f"{path}: needs at least two distinct classes and max_score > min_score")
    return classes, split_names, low, high, str(config.get("description", ""))


def _gender(raw: str) -> str:
    g = raw.strip().lower()
    return {"female": "F", "f": "F", "male": "M", "m": "M"}.get(g, "")


def read_condition(folder: str | Path) -> Condition:
    """One EMO-SUPERB condition folder (``config.json`` + ``labels_consensus_<N>.csv``) -> :class:`Condition`.

    Every partition file must have the config's classes as columns; a file's shares, ratings, speaker and gender must
    agree between partitions (they differ only in ``Split_Set``); shares must be non-negative and sum to 1."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmoSuperbError(f"{folder}: no such folder")
    classes, split_names, low, high, description = _read_config(folder)
    numbered = {int(m.group(1)): p for p in folder.glob("labels_consensus_*.csv")
                if (m := re.fullmatch(r"labels_consensus_(\d+)\.csv", p.name))}
    files = [numbered[n] for n in sorted(numbered)]
    if not files:
        raise EmoSuperbError(f"{folder}: no labels_consensus_<N>.csv")
    rows: dict[str, LabelRow] = {}
    folds = []
    for number, path in zip(sorted(numbered), files):
        fold = f"fold{number}"
        folds.append(fold)
        text = path.read_text(encoding="utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        name_col = next((c for c in _FILE_COLUMNS if c in header), None)
        missing = [c for c in (*classes, "Split_Set") if c not in header]
        if name_col is None or missing:
            raise EmoSuperbError(f"{path}:1: expected FileName (or an unnamed first column), the classes of "
                                 f"config.json and Split_Set; missing {missing or ['FileName']} (header: {header})")
        for lineno, r in enumerate(reader, start=2):
            name = (r.get(name_col) or "").strip()
            split = split_names.get((r.get("Split_Set") or "").strip())
            if not name or split is None:
                raise EmoSuperbError(f"{path}:{lineno}: empty FileName or Split_Set {r.get('Split_Set')!r} not in "
                                     f"{sorted(split_names)}")
            try:
                shares = {c: float(r[c]) for c in classes}
                dims = {ours: round((float(r[theirs]) - low) / (high - low), 4)
                        for theirs, ours in _DIMENSIONS if (r.get(theirs) or "").strip()}
            except ValueError as e:
                raise EmoSuperbError(f"{path}:{lineno}: {e}") from None
            total = sum(shares.values())
            if min(shares.values()) < 0 or not math.isclose(total, 1.0, abs_tol=0.01):
                raise EmoSuperbError(f"{path}:{lineno}: class shares of {name} sum to {total:.4f}, not 1")
            speaker = (r.get("SpkrID") or "").strip()
            gender = _gender(r.get("Gender") or "")
            if speaker and gender:
                speaker = f"{gender}{speaker}"  # MSP-IMPROV numbers its actors per gender (F01 ... M06)
            row = LabelRow(name, shares, dims, speaker, gender)
            known = rows.setdefault(name, row)
            if known is not row and (any(abs(known.shares[c] - shares[c]) > 1e-6 for c in classes)
                                     or known.speaker != speaker):
                raise EmoSuperbError(f"{path}:{lineno}: {name}'s labels differ from its row in another partition")
            if fold in known.folds:
                raise EmoSuperbError(f"{path}:{lineno}: {name} listed twice")
            known.folds[fold] = split
    return Condition(folder, classes, rows, folds, description)


# ------------------------------------------------------------------------------------------------ the table
def _condition_of(result: Mapping[str, Any]) -> str | None:
    corpus = str(result.get("corpus", ""))
    for title, name, cond in CONDITIONS:
        if corpus == condition_corpus(name, cond):
            return title
    return None


def benchmark_table(results: Iterable[Mapping[str, Any]], metric: str = "ml_macro_f1", decimals: int = 3) -> str:
    """Markdown in the layout of EMO-SUPERB's Table 3: rows = feature sources (upstreams) in order of appearance,
    the Average over the conditions a source has all of (blank otherwise: an average over fewer is not the
    benchmark's), then the nine conditions; cells are the fold mean of ``metric`` (a fraction, as the paper prints).
    Results of corpora outside the benchmark are refused by name."""
    cells: dict[tuple[str, str], float] = {}
    sources: list[str] = []
    for r in results:
        title = _condition_of(r)
        if title is None:
            raise EmoSuperbError(f"a result of corpus {r.get('corpus')!r} is not an EMO-SUPERB condition (prepared "
                                 f"as {', '.join(condition_corpus(n, c) for _, n, c in CONDITIONS)})")
        summary = (r.get("summary") or {}).get(metric)
        if summary is None:
            raise EmoSuperbError(f"{r.get('source')} on {title}: no {metric} in its results (EMO-SUPERB's runs are "
                                 f"`--task soft`, whose ml_macro_f1 is the 1/C-rule macro-F1)")
        source = str(r.get("source"))
        if (source, title) in cells:
            raise EmoSuperbError(f"two results for {source} on {title}")
        cells[(source, title)] = float(summary["mean"])
        if source not in sources:
            sources.append(source)
    titles = [t for t, _, _ in CONDITIONS]
    lines = ["| Upstream | Average | " + " | ".join(titles) + " |", "|---|" + "---:|" * (len(titles) + 1)]
    for s in sources:
        values = [cells.get((s, t)) for t in titles]
        average = sum(values) / len(values) if all(v is not None for v in values) else None
        row = [s, "" if average is None else f"{average:.{decimals + 2}f}"]
        row += ["–" if v is None else f"{v:.{decimals}f}" for v in values]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
