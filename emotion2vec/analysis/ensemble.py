"""``emotion2vec ensemble RUN_DIR RUN_DIR ... --out DIR``: finished runs combined by voting (Gavali & Verma).

The runs must share the task, the classes (or regression targets), the corpus, the folds (same names in the same
order) and each fold's test keys; the first difference is named. Their per-utterance predictions
(predictions.tsv) are combined per test utterance:

``soft``  the (weighted) mean of the members' class probabilities (of their predicted values for regression)
``hard``  majority vote over the members' predicted classes (categorical and soft-label runs), each member's vote
          counting its weight; a tie goes to the tied class with the largest (weighted) summed probability. The
          output distribution is the vote shares, nudged to the winner where a tie was broken.

Weights: ``equal``, or ``dev``: each member's score on its own dev set at its selected epoch (results.json, the
task's headline metric per fold; max(score, 0)).

``search`` K evaluates every combination of K runs (``all``: every size from 1), scored on the dev set (the
members' valid_predictions.tsv on the valid keys they share per fold) with the test score alongside; combinations
are ranked by dev score and the best on dev becomes the ensemble written to ``--out`` (the test score never
chooses).

Outputs as a probe run's, so an ensemble is reported, analysed and combined like any run: results.json (``kind``
``ensemble``, per-fold metrics with bootstrap intervals, summary, confusion, the members' leakage audit, groups and
speakers), results.md (the ensemble against its members, the search ranking, the fairness section),
predictions.tsv, valid_predictions.tsv (when the members have dev predictions), confusion.png, speakers.png.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..downstream.metrics import (HEADLINE, METRIC_NAMES, bootstrap_ci, fast_scores, format_metric, summarize,
                                  summary_metrics)
from . import AnalysisError
from .runs import Predictions, Run

__all__ = ["VOTES", "WEIGHTS", "check_compatible", "combine", "run_ensemble", "ensemble_markdown", "select_members",
           "Given", "classify_given"]

VOTES = ("soft", "hard")
WEIGHTS = ("equal", "dev")


# ------------------------------------------------------------------------------------------------ checks
def check_compatible(runs: Sequence[Run]) -> None:
    """Refuse runs that cannot be combined, naming the first mismatch against the first run."""
    if len(runs) < 2:
        raise AnalysisError(f"an ensemble needs at least two runs, got {len(runs)}")
    a = runs[0]
    seen = {a.path.resolve(): a.path}
    for b in runs[1:]:
        if b.path.resolve() in seen:
            raise AnalysisError(f"{b.path} is given twice")
        seen[b.path.resolve()] = b.path
        if b.task != a.task:
            raise AnalysisError(f"{b.path} is a {b.task} run and {a.path} a {a.task} run: an ensemble combines runs "
                                f"of one task")
        if b.names != a.names:
            raise AnalysisError(f"{b.path} predicts {b.names} and {a.path} {a.names}: the members must share the "
                                f"{'targets' if a.task == 'regression' else 'classes'}, in order")
        if b.result.get("corpus") != a.result.get("corpus"):
            raise AnalysisError(f"{b.path} is on corpus {b.result.get('corpus')!r} and {a.path} on "
                                f"{a.result.get('corpus')!r}")
        fa, fb = a.test.fold_names(), b.test.fold_names()
        if fa != fb:
            i = next((i for i, (x, y) in enumerate(zip(fa, fb)) if x != y), min(len(fa), len(fb)))
            first = (f"{fa[i] if i < len(fa) else 'nothing'!r} in {a.path} against "
                     f"{fb[i] if i < len(fb) else 'nothing'!r} in {b.path}")
            raise AnalysisError(f"the runs have different folds: {a.path} has {fa}, {b.path} {fb}; first difference "
                                f"at position {i + 1}: {first}")
        for fold in fa:
            ka = [a.test.keys[i] for i in a.test.in_fold(fold)]
            kb = [b.test.keys[i] for i in b.test.in_fold(fold)]
            if set(ka) != set(kb) or len(ka) != len(kb):
                extra = next((k for k in ka if k not in set(kb)), None)
                if extra is not None:
                    raise AnalysisError(f"{fold}: test key {extra!r} of {a.path} is not among the test keys of "
                                        f"{b.path} ({len(ka)} against {len(kb)} keys)")
                extra = next(k for k in kb if k not in set(ka))
                raise AnalysisError(f"{fold}: test key {extra!r} of {b.path} is not among the test keys of {a.path} "
                                    f"({len(ka)} against {len(kb)} keys)")


def _aligned(reference: Predictions, other: Predictions) -> Predictions:
    """``other``'s rows in ``reference``'s (fold, key) order."""
    where = {(f, k): i for i, (f, k) in enumerate(zip(other.folds, other.keys))}
    return other.select([where[(f, k)] for f, k in zip(reference.folds, reference.keys)])


def _shared_valid(runs: Sequence[Run]) -> tuple[list[Predictions] | None, str]:
    """Every member's valid predictions on the (fold, key) pairs all of them have, aligned; or (None, why not)."""
    missing = [str(r.path) for r in runs if r.valid is None]
    if missing:
        return None, f"no valid_predictions.tsv in {', '.join(missing)} (written by probes of this version)"
    common = set(zip(runs[0].valid.folds, runs[0].valid.keys))
    for r in runs[1:]:
        common &= set(zip(r.valid.folds, r.valid.keys))
    first = runs[0].valid
    keep = [i for i, fk in enumerate(zip(first.folds, first.keys)) if fk in common]
    folds_without = [f for f in runs[0].test.fold_names() if f not in {first.folds[i] for i in keep}]
    if folds_without:
        return None, f"the members share no valid utterance in fold(s) {', '.join(folds_without)}"
    reference = first.select(keep)
    return [_aligned(reference, r.valid) for r in runs], ""


# ------------------------------------------------------------------------------------------------ voting
def _check_vote(task: str, vote: str) -> None:
    if vote not in VOTES:
        raise AnalysisError(f"--vote {vote!r}: choose {' or '.join(VOTES)}")
    if vote == "hard" and task not in ("categorical", "soft"):
        raise AnalysisError(f"--vote hard needs one class per utterance (categorical or soft-label runs); a {task} "
                            f"ensemble averages its members (--vote soft)")


def combine(task: str, predicted: Sequence[np.ndarray], weights: np.ndarray, vote: str = "soft") -> np.ndarray:
    """Combine M members' (N, C) probabilities (or (N, K) values) with ``weights`` (M,) or (M, N) -> (N, C)."""
    p = np.stack([np.asarray(x, dtype=np.float64) for x in predicted])  # (M, N, C)
    w = np.asarray(weights, dtype=np.float64)
    w = np.broadcast_to(w[:, None] if w.ndim == 1 else w, p.shape[:2])[..., None]  # (M, N, 1)
    total = w.sum(0)
    if np.any(total <= 0):
        raise AnalysisError("the member weights sum to 0 for some utterance")
    _check_vote(task, vote)
    mean = (w * p).sum(0) / total
    if vote == "soft":
        return mean
    classes = p.shape[2]
    votes = (w * np.eye(classes)[p.argmax(2)]).sum(0)  # (N, C) weighted votes
    top = votes.max(1, keepdims=True)
    decision = np.where(np.isclose(votes, top, rtol=0.0, atol=1e-12), mean, -np.inf).argmax(1)
    shares = votes / votes.sum(1, keepdims=True)
    rows = np.flatnonzero(shares.argmax(1) != decision)
    shares[rows, decision[rows]] = np.nextafter(shares[rows, decision[rows]], np.inf)
    return shares


def _dev_weights(runs: Sequence[Run], folds: list[str], mode: str) -> np.ndarray:
    """(M, F) member weights per fold."""
    if mode == "equal":
        return np.ones((len(runs), len(folds)))
    if mode != "dev":
        raise AnalysisError(f"--weights {mode!r}: choose {' or '.join(WEIGHTS)}")
    metric = HEADLINE[runs[0].task]
    out = np.zeros((len(runs), len(folds)))
    for m, r in enumerate(runs):
        by_name = {f["name"]: f for f in r.result.get("folds", [])}
        for j, fold in enumerate(folds):
            score = (by_name.get(fold) or {}).get("valid", {}).get(metric)
            if score is None:
                raise AnalysisError(f"--weights dev: {r.path} has no dev {METRIC_NAMES.get(metric, metric)} for "
                                    f"{fold} (trained without valid utterances?); use --weights equal")
            out[m, j] = max(float(score), 0.0)
    return out


def _labels(runs: Sequence[Run]) -> list[str]:
    """Each member's name in tables: its source, with its directory where sources repeat."""
    sources = [r.source for r in runs]
    return [s if sources.count(s) == 1 else f"{s} ({r.path.name})" for s, r in zip(sources, runs)]


def _row_weights(weights: np.ndarray, folds: list[str], preds: Predictions) -> np.ndarray:
    column = {f: j for j, f in enumerate(folds)}
    return weights[:, [column[f] for f in preds.folds]]


def _combined(members: Sequence[Predictions], weights: np.ndarray, folds: list[str], vote: str) -> Predictions:
    first = members[0]
    out = first.select(np.arange(len(first)))
    out.predicted = combine(first.task, [m.predicted for m in members], _row_weights(weights, folds, first), vote)
    return out


def _mean_headline(preds: Predictions) -> float:
    metric = HEADLINE[preds.task]
    return float(np.mean([fast_scores(preds.task, preds.predicted[i], preds.target[i],
                                      None if preds.hard is None else preds.hard[i])[metric]
                          for i in (preds.in_fold(f) for f in preds.fold_names())]))


def _search(size: str, labels: list[str], tests: list[Predictions], valids: list[Predictions],
            weights: np.ndarray, folds: list[str], vote: str) -> list[dict[str, Any]]:
    sizes = range(1, len(labels) + 1) if size == "all" else [int(size)]
    ranked = []
    for k in sizes:
        for combo in itertools.combinations(range(len(labels)), k):
            w = weights[list(combo)]
            dev = _mean_headline(_combined([valids[i] for i in combo], w, folds, vote))
            test = _mean_headline(_combined([tests[i] for i in combo], w, folds, vote))
            ranked.append({"members": [labels[i] for i in combo], "indices": list(combo), "dev": dev,
                           "test": test})
    ranked.sort(key=lambda e: (-e["dev"], len(e["indices"]), e["indices"]))
    for rank, e in enumerate(ranked, start=1):
        e["rank"] = rank
    return ranked


# ------------------------------------------------------------------------------------------------ the run
def _fold_entries(test: Predictions, valid: Predictions | None, resamples: int, seed: int) -> list[dict[str, Any]]:
    out = []
    for fold in test.fold_names():
        sub = test.select(test.in_fold(fold))
        entry = {"name": fold, "n_train": None, "n_valid": 0, "n_test": len(sub), "best_epoch": None, "valid": {},
                 "test": sub.metrics(), "ci": None}
        if valid is not None:
            v = valid.select(valid.in_fold(fold))
            entry["n_valid"] = len(v)
            entry["valid"] = fast_scores(v.task, v.predicted, v.target, v.hard)
        if resamples:
            entry["ci"] = bootstrap_ci(sub.task, sub.predicted, sub.target, sub.hard, resamples=resamples, seed=seed)
        out.append(entry)
    return out


def _rows_by_key(result: dict[str, Any]) -> tuple[dict[str, dict] | None, str]:
    from ..io.manifests import ManifestError, read_data_tsv

    cross = result.get("cross_corpus")
    data = cross["test_data"] if cross else result.get("data")
    if not data:
        return None, "no fairness analysis: the members do not record their corpus"
    try:
        return {r["key"]: r for r in read_data_tsv(data)}, ""
    except (ManifestError, OSError) as e:
        return None, f"no fairness analysis: the corpus of the members cannot be read ({e})"


@dataclass
class Given:
    """A path given to a command that takes run folders (``ensemble``, and ``report``, which uses this too; often a
    shell glob such as ``results/urdu/*``), read once: ``kind`` is

    * ``run``: a results.json of a probe, fine-tuning, ensemble or conversation run (``result``);
    * ``sweep``: a sweep.json of ``probe --train-fraction / --seeds`` (``result``);
    * ``robustness``: a results.json of ``emotion2vec robustness`` (``result``);
    * ``missing``: a folder with none of them (an unfinished run, or a folder that holds no run);
    * ``other``: anything else, e.g. a report's table.md or a JSON file of another kind (``why`` says what)."""

    path: Path
    kind: str
    result: dict[str, Any] | None = None
    why: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path.suffix == ".json" else self.path


def classify_given(path: str | os.PathLike) -> Given:
    """What ``path`` holds (:class:`Given`); a path that does not exist is an :class:`AnalysisError`."""
    from ..downstream.report import check_result
    from .efficiency import SWEEP_FORMAT
    from .robustness import ROBUSTNESS_FORMAT

    path = Path(path)
    if not path.exists():
        raise AnalysisError(f"{path}: no such file or directory")
    if path.is_dir():
        files = [f for f in (path / "results.json", path / "sweep.json") if f.is_file()]
        if not files:
            return Given(path, "missing", why="no results.json or sweep.json (an unfinished run, or not a run)")
        file = path / "sweep.json" if (path / "sweep.json").is_file() else files[0]
    elif path.suffix == ".json":
        file = path
    else:
        return Given(path, "other", why="a file, not a run folder")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnalysisError(f"{file}: invalid JSON: {e}") from None
    except OSError as e:
        raise AnalysisError(f"{file}: cannot read: {e.strerror or e}") from None
    kind = None
    if isinstance(data, dict) and data.get("format") == SWEEP_FORMAT:
        kind = "sweep"
    elif isinstance(data, dict) and data.get("format") == ROBUSTNESS_FORMAT:
        kind = "robustness"
    elif file.name == "results.json" or isinstance(data, dict) and all(k in data for k in ("corpus", "summary")):
        # a run's results.json (by its name, or by its fields) is read as load_result reads it: a broken one is
        # refused by name, not skipped
        kind = "run"
        check_result(data, file)
    if kind is None:
        return Given(path, "other", why=f"{file.name} is not the results of an emotion2vec run")
    return Given(path, kind, data)


def _check_out(given: Sequence[Given], out: Path) -> None:
    """An --out that holds a run other than an earlier ensemble (one of the members, or any other run) is refused:
    the ensemble's files would replace that run's results.json, predictions.tsv and results.md. A folder holds one
    run; an earlier ensemble in --out is replaced (a re-run over a glob that includes it)."""
    if not (out / "results.json").is_file() and not (out / "sweep.json").is_file():
        return
    held = classify_given(out)
    if held.kind == "run" and held.result.get("kind") == "ensemble":
        return
    what = {"run": f"a {held.result.get('kind') or 'probe'} run" if held.result else "a run", "sweep": "a sweep",
            "robustness": "a robustness run"}.get(held.kind, "other results")
    member = any(g.folder.resolve() == out.resolve() for g in given)
    raise AnalysisError(f"--out {out} is {'one of the runs to combine' if member else 'the folder of'} ({what}): the "
                        f"ensemble's results.json, predictions.tsv and results.md would replace that run's; give "
                        f"another --out")


def select_members(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                   note: Callable[[str], None] = lambda msg: None) -> list[str]:
    """The run folders among ``paths`` (e.g. a shell glob ``results/urdu/*``) that an ensemble can combine: probe,
    fine-tuning, conversation and ensemble runs. Left out, each with a ``note``: what is not a run (a report's
    table.md), robustness runs and sweeps, the output folder ``out`` itself, and an earlier ensemble whose members
    are all given too (its members are combined directly). A folder without results.json is an error (an
    unfinished run)."""
    given = [classify_given(p) for p in paths]
    for g in given:
        if g.kind == "missing":
            raise AnalysisError(f"{g.path}: {g.why}; did the run finish?")
    _check_out(given, Path(out))
    folders = {g.folder.resolve() for g in given if g.kind == "run"}
    kept = []
    for g in given:
        if g.kind != "run":
            why = {"robustness": "a robustness run", "sweep": "a sweep (combine its runs' folders)"}.get(g.kind, g.why)
            note(f"skipping {g.path} ({why})")
        elif g.folder.resolve() == Path(out).resolve():
            note(f"skipping {g.path} (the output folder)")
        elif g.result.get("kind") == "ensemble" and all(
                Path(m["path"]).resolve() in folders for m in g.result.get("ensemble", {}).get("members", [])):
            note(f"skipping {g.path} (an ensemble of runs given too)")
        else:
            kept.append(str(g.folder))
    if not kept:
        raise AnalysisError(f"no run to combine among {', '.join(str(p) for p in paths)}")
    return kept


def run_ensemble(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, vote: str = "soft",
                 weights: str = "equal", search: str | None = None, name: str | None = None,
                 group_by: Sequence[str] | None = None, speaker_min: int = 20, resamples: int = 1000, seed: int = 0,
                 verbose: bool = True) -> dict[str, Any]:
    """Combine the finished runs ``run_dirs`` (see the module docstring); write the outputs to ``out``; return
    results.json's dict."""
    from .. import __version__
    from ..downstream.runs import RESULTS_FORMAT, RESULTS_VERSION
    from ..downstream.report import confusion_png, corpus_name, predictions_tsv
    from ..io.atomic import atomic_write_bytes, atomic_write_text
    from .fairness import group_analysis, group_summary
    from .plots import write_analysis_plots
    from .runs import VALID_PREDICTIONS, load_run

    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    if search is not None and search != "all" and not (str(search).isdigit() and 1 <= int(search)):
        raise AnalysisError(f"--search {search!r}: a number of runs K >= 1 or 'all'")
    if resamples < 0:
        raise AnalysisError(f"--bootstrap must be >= 0, got {resamples}")
    runs = [load_run(p) for p in run_dirs]
    check_compatible(runs)
    if search not in (None, "all") and int(search) > len(runs):
        raise AnalysisError(f"--search {search}: only {len(runs)} runs given")
    task, names = runs[0].task, runs[0].names
    _check_vote(task, vote)
    labels = _labels(runs)
    tests = [runs[0].test] + [_aligned(runs[0].test, r.test) for r in runs[1:]]
    folds = tests[0].fold_names()
    w = _dev_weights(runs, folds, weights)
    valids, why_no_dev = _shared_valid(runs)
    notes = [why_no_dev] if why_no_dev else []
    ranking = None
    chosen = list(range(len(runs)))
    if search is not None:
        if valids is None:
            raise AnalysisError(f"--search ranks combinations on dev predictions: {why_no_dev}")
        ranking = _search(str(search), labels, tests, valids, w, folds, vote)
        chosen = ranking[0]["indices"]
        log(f"ensemble: {len(ranking)} combination(s) ranked on dev; best: {' + '.join(ranking[0]['members'])} "
            f"(dev {ranking[0]['dev']:.4f}, test {ranking[0]['test']:.4f})")
    members = [runs[i] for i in chosen]
    test = _combined([tests[i] for i in chosen], w[chosen], folds, vote)
    valid = _combined([valids[i] for i in chosen], w[chosen], folds, vote) if valids is not None else None
    metric = HEADLINE[task]
    metrics = list(summary_metrics(task, names))
    fold_entries = _fold_entries(test, valid, resamples, seed)
    source = name or "ensemble(" + "+".join(labels[i] for i in chosen) + ")"
    first = runs[0].result
    member_info = []
    for m, r in enumerate(runs):
        entry = {"path": str(r.path), "source": labels[m], "chosen": m in chosen,
                 "weights": [float(v) for v in w[m]], "test": {k: r.result["summary"].get(k) for k in metrics},
                 "dev": _mean_headline(valids[m]) if valids is not None else None}
        member_info.append(entry)
    result: dict[str, Any] = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "kind": "ensemble", "corpus": first.get("corpus"),
        "protocol": first.get("protocol"), "speaker_independent": first.get("speaker_independent"), "task": task,
        "loss": None, "head": {"type": f"{vote} vote", "weights": weights}, "targets": names, "headline": metric,
        "source": source, "features": "ensemble of " + ", ".join(str(r.path) for r in members),
        "data": first.get("data"), "granularity": None, "dim": None, "stored_layers": [], "layer": None,
        "feature_settings": {}, "labels": names if task != "regression" else [], "parameters": None,
        "config": {"vote": vote, "weights": weights, "search": search, "bootstrap": resamples, "seed": seed},
        "folds": fold_entries, "summary": summarize([f["test"] for f in fold_entries], metrics),
        "warnings": [], "notes": notes, "audit": first.get("audit"),
        "ensemble": {"vote": vote, "weights": weights, "members": member_info,
                     "dev": _mean_headline(valid) if valid is not None else None, "search": ranking},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "emotion2vec_version": __version__,
    }
    if first.get("cross_corpus"):
        result["cross_corpus"] = first["cross_corpus"]
    if task != "regression":
        result["confusion"] = np.sum([f["test"]["confusion"] for f in fold_entries], axis=0).tolist()
    rows, why = _rows_by_key(first)
    if rows is None:
        result["notes"].append(why)
    else:
        result.update(group_analysis(test, rows, group_by, speaker_min, resamples, seed))
        for line in group_summary(result):
            log(f"ensemble: {line}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predictions.tsv", predictions_tsv(test.records(), names, task))
    if valid is not None:
        atomic_write_text(out / VALID_PREDICTIONS, predictions_tsv(valid.records(), names, task))
    if "confusion" in result:
        atomic_write_bytes(out / "confusion.png", confusion_png(result["confusion"], names,
                                                              f"{corpus_name(str(result['corpus']))} / {source}"))
    write_analysis_plots(out, result)
    atomic_write_text(out / "results.md", ensemble_markdown(result))
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    log(ensemble_markdown(result).split("\n## Fairness")[0])
    return result


def ensemble_markdown(result: dict[str, Any]) -> str:
    """results.md of an ensemble: settings, per-fold table, the ensemble against its members, the search ranking,
    the fairness section."""
    from ..downstream.report import corpus_name
    from .fairness import group_markdown

    e = result["ensemble"]
    metric = result["headline"]
    metrics = list(result["summary"])
    mname = METRIC_NAMES.get(metric, metric)
    vote = ("soft vote (mean of the members' " + ("predictions)" if result["task"] == "regression"
                                                  else "probabilities)") if e["vote"] == "soft" else
            "hard vote (majority of the members' classes; ties to the largest summed probability)")
    lines = [f"# Ensemble: {corpus_name(str(result['corpus']))} / {result['source']}", "",
             f"- {vote}, " + (f"weighted by each member's dev {mname} per fold" if e["weights"] == "dev"
                              else "equal weights"),
             "- members: " + ", ".join(f"`{m['source']}` ({m['path']})" for m in e["members"] if m["chosen"]),
             f"- task {result['task']}, {len(result['folds'])} fold(s)"
             + (f"; dev {mname} of the ensemble {format_metric(metric, e['dev'])}" if e.get("dev") is not None else ""), ""]
    lines += ["| Fold | Test | Dev " + mname + " | " + " | ".join(METRIC_NAMES.get(m, m) for m in metrics)
              + f" | {mname} 95% CI |", "|---|---:|---:|" + "---:|" * (len(metrics) + 1)]
    for f in result["folds"]:
        ci = f.get("ci")
        lines.append(f"| {f['name']} | {f['n_test']} | {format_metric(metric, f['valid'].get(metric))} | "
                     + " | ".join(format_metric(m, f["test"].get(m)) for m in metrics)
                     + (f" | [{format_metric(metric, ci['low'])}, {format_metric(metric, ci['high'])}] |" if ci else " | – |"))
    lines.append("| **mean ± std** | | | " + " | ".join(
        f"{format_metric(m, result['summary'][m]['mean'])} ± {format_metric(m, result['summary'][m]['std'])}" for m in metrics) + " | |")
    lines += ["", "## Ensemble against its members", "",
              f"| Run | In ensemble | Dev {mname} | " + " | ".join(f"Test {METRIC_NAMES.get(m, m)}" for m in metrics)
              + " |", "|---|---|---:|" + "---:|" * len(metrics)]
    for m in e["members"]:
        lines.append(f"| {m['source']} | {'yes' if m['chosen'] else 'no'} | {format_metric(metric, m['dev'])} | "
                     + " | ".join(f"{format_metric(k, (m['test'].get(k) or {}).get('mean'))} ± "
                                  f"{format_metric(k, (m['test'].get(k) or {}).get('std'))}" for k in metrics) + " |")
    lines.append(f"| **{result['source']}** | | {format_metric(metric, e.get('dev'))} | " + " | ".join(
        f"**{format_metric(m, result['summary'][m]['mean'])} ± {format_metric(m, result['summary'][m]['std'])}**" for m in metrics)
        + " |")
    if e.get("search"):
        lines += ["", f"## Combinations ranked on dev ({len(e['search'])})", "",
                  f"| Rank | Members | Dev {mname} | Test {mname} |", "|---:|---|---:|---:|"]
        lines += [f"| {s['rank']} | {' + '.join(s['members'])} | {format_metric(metric, s['dev'])} | {format_metric(metric, s['test'])} |"
                  for s in e["search"][:50]]
        if len(e["search"]) > 50:
            lines.append(f"| ... | {len(e['search']) - 50} more in results.json | | |")
        lines += ["", "The ensemble above is rank 1: chosen on dev; the test column is shown, never used to choose."]
    if result.get("notes"):
        lines += [""] + [f"- note: {n}" for n in result["notes"]]
    lines += group_markdown(result)
    lines += ["", "Classification metrics in percent, CCC as a coefficient; mean ± population std over folds; dev "
              "scores as mean over folds (members: on the valid utterances all members share).", ""]
    if "confusion" in result:
        lines += ["![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)
