"""``emotion2vec pseudo-label``: the run, step by step (:func:`run_pseudo_label`).

    1. process 0 reads the inputs (anything ``emotion2vec extract`` reads), the labelled sets (``--train-with``,
       ``--score-on``, ``--reference``), checks that the dev set shares no file with the inputs, and checks the run
       folder's ``pseudo-label.json``: a folder whose predictions were made with other models, windows or inputs is
       refused, naming each difference (``--overwrite`` starts again);
    2. every model predicts every input (and the dev set), sharded over the processes of a torchrun job
       (:mod:`.predictions`, resumable);
    3. process 0 combines them (:mod:`.combine`), keeps what passes the filters (:mod:`.filter`) and writes
       ``data.tsv`` (+ ``folds.json``, :mod:`.corpus`), ``rejected.tsv`` and the report (:mod:`.report`).

The filters are not part of the recorded settings: re-running with other thresholds only redoes step 3, from the
stored predictions, in seconds.

Outputs in ``out``::

    data.tsv          kept files: key path label speaker gender duration [split] votes confidence margin agreement source
    folds.json        with --score-on: one fold (train: pseudo + --train-with, valid: part of --train-with, test: dev)
    rejected.tsv      key path duration label confidence margin agreement reason
    report.md, report.json, confidence.png, agreement.png
    predictions/      one window table per model (and per model on the dev set)
    pseudo-label.json the settings of the predictions
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..distributed import Processes
from ..extract.inputs import Item, discover_inputs
from ..io.atomic import atomic_write_bytes, atomic_write_text
from . import PseudoLabelError
from .combine import Utterance, combine, common_labels
from .corpus import check_disjoint, corpus_rows, pseudo_rows
from .filter import FilterConfig, select
from .predictions import model_names, predict_model, remove_tables
from .report import agreement_png, build_report, confidence_png, report_markdown

__all__ = ["RUN_FORMAT", "Engine", "run_pseudo_label"]

RUN_FORMAT = "emotion2vec-pseudo-label"
SETTINGS_FILE = "pseudo-label.json"
#: pseudo-label.json fields that must agree for the stored predictions to be reused
PREDICTION_SETTINGS = ("models", "window", "hop", "inputs", "dtype", "attention", "chunk_seconds")


@dataclass
class Engine:
    """How the models run: what :func:`emotion2vec.recognize.run.load_recognition` needs, and the decoding."""

    device: Any = "cpu"
    dtype: str = "float32"
    attention: str = "sdpa"
    max_tokens: int | None = None
    chunk_seconds: float = 30.0
    num_workers: int = 1
    trust: bool = False


@dataclass
class _Plan:
    items: list[Item]
    dev_items: list[Item] = field(default_factory=list)
    dev_labels: dict[str, str] = field(default_factory=dict)
    train_with: list[dict] | None = None
    dev_rows: list[dict] | None = None
    reference: dict[str, str] | None = None
    stamps: list[str] = field(default_factory=list)


def _stamp(model: str) -> str:
    from ..extract.run import checkpoint_stamp

    return checkpoint_stamp(model)


def _digest(pairs: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for k, p in pairs:
        h.update(f"{k}\t{p}\n".encode())
    return h.hexdigest()[:16]


def _read_rows(directory: str, option: str) -> list[dict]:
    from ..io.manifests import ManifestError, read_data_tsv

    try:
        return read_data_tsv(directory)
    except ManifestError as e:
        raise PseudoLabelError(f"{option}: {e}") from None


def _settings(models: Sequence[str], stamps: Sequence[str], window: float, hop: float, items: Sequence[Item],
              engine: Engine) -> dict[str, Any]:
    from ..extract.backends import resolve_dtype

    return {"format": RUN_FORMAT, "version": 1,
            "models": [{"model": str(m) if str(m).startswith("hf:") else str(Path(m).resolve()), "stamp": s}
                       for m, s in zip(models, stamps)],
            "window": float(window), "hop": float(hop), "inputs": _digest([(it.key, it.path) for it in items]),
            "dtype": str(resolve_dtype(engine.dtype, engine.device)).removeprefix("torch."),
            "attention": engine.attention, "chunk_seconds": float(engine.chunk_seconds)}


def _open(out: Path, settings: dict[str, Any], dev_digest: str | None, names: Sequence[str], overwrite: bool,
          log) -> None:
    path = out / SETTINGS_FILE
    if path.exists() and not overwrite:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            old = {}
        if not isinstance(old, dict) or old.get("format") != RUN_FORMAT:
            raise PseudoLabelError(f"{path}: not a pseudo-label settings file; use another --out or --overwrite")
        diffs = [f"{k} is {old.get(k)!r} there, {settings[k]!r} now" for k in PREDICTION_SETTINGS
                 if old.get(k) != settings[k]]
        if diffs:
            raise PseudoLabelError(f"{out} holds predictions made with other settings: " + "; ".join(diffs)
                                   + ". Use --overwrite to predict again, or another --out.")
        if old.get("dev") != dev_digest:  # another dev set: its tables are made again
            for name in names:
                remove_tables(out / "predictions", f"{name}.dev")
    elif overwrite and path.exists():
        shutil.rmtree(out / "predictions", ignore_errors=True)
        for name in ("data.tsv", "folds.json", "rejected.tsv", "report.md", "report.json", "confidence.png",
                     "agreement.png"):
            (out / name).unlink(missing_ok=True)
        log(f"--overwrite: earlier predictions in {out} removed")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**settings, "dev": dev_digest}, indent=2) + "\n")


def _plan(models: Sequence[str], inputs: Sequence[str], out: Path, window: float, hop: float, engine: Engine,
          train_with: str | None, score_on: str | None, reference: str | None, overwrite: bool, log) -> _Plan:
    items = discover_inputs(inputs)
    plan = _Plan(items)
    plan.train_with = _read_rows(train_with, "--train-with") if train_with else None
    plan.dev_rows = _read_rows(score_on, "--score-on") if score_on else None
    check_disjoint([(it.key, it.path) for it in items], plan.train_with, plan.dev_rows)
    if plan.dev_rows is not None:
        plan.dev_items = [Item(r["key"], r["path"], int(r["channel"]) if str(r.get("channel", "")).strip() else None)
                          for r in plan.dev_rows]
        plan.dev_labels = {r["key"]: str(r["label"]) for r in plan.dev_rows}
    if reference:
        by_path = {str(Path(r["path"]).resolve()): str(r["label"]) for r in _read_rows(reference, "--reference")}
        plan.reference = {it.key: by_path[p] for it in items if (p := str(Path(it.path).resolve())) in by_path}
        if not plan.reference:
            raise PseudoLabelError(f"--reference {reference}: none of its files is among the inputs")
    for m in models:
        if not str(m).startswith("hf:") and not Path(m).exists():
            raise PseudoLabelError(f"{m}: no such model (a folder or checkpoint with a classification head)")
    plan.stamps = [_stamp(m) for m in models]
    settings = _settings(models, plan.stamps, window, hop, items, engine)
    dev_digest = _digest([(it.key, it.path) for it in plan.dev_items]) if plan.dev_rows is not None else None
    _open(out, settings, dev_digest, model_names(models), overwrite, log)
    return plan


def _dev_scores(utterances: Sequence[Utterance], labels: dict[str, str]) -> dict[str, Any]:
    from ..downstream.metrics import compute_metrics

    read = [u for u in utterances if u.error is None]
    if not read:
        return {"files": 0, "wa": None, "ua": None, "macro_f1": None}
    y_true = [labels[u.key] for u in read]
    y_pred = [u.label for u in read]
    classes = sorted(set(y_true) | set(y_pred))
    m = compute_metrics(y_true, y_pred, classes)
    return {"files": len(read), "unread": len(utterances) - len(read),
            **{k: round(float(m[k]), 4) for k in ("wa", "ua", "macro_f1")}}


def _rejected_tsv(rejected: Sequence[tuple[Utterance, str]]) -> str:
    lines = ["key\tpath\tduration\tlabel\tconfidence\tmargin\tagreement\treason"]
    for u, why in rejected:
        if u.error is not None:
            lines.append("\t".join([u.key, u.path, "", "", "", "", "", why]))
        else:
            lines.append("\t".join([u.key, u.path, f"{u.duration:.3f}", u.label, f"{u.confidence:.4f}",
                                    f"{u.margin:.4f}", f"{u.agreement:.4f}", why]))
    return "\n".join(lines) + "\n"


def run_pseudo_label(models: Sequence[str], inputs: Sequence[str], out: str | os.PathLike, config: FilterConfig,
                     window: float = 10.0, hop: float | None = None, train_with: str | None = None,
                     score_on: str | None = None, valid_fraction: float = 0.2, reference: str | None = None,
                     engine: Engine | None = None, overwrite: bool = False, progress: bool = True, log=None,
                     processes: Processes | None = None) -> dict[str, Any] | None:
    """Pseudo-label ``inputs`` with ``models`` into ``out`` (see the module docstring). Every process of a sharded
    job calls this with the same arguments; process 0 returns the report, the others None."""
    from ..recognize.run import check_window, load_recognition

    processes = processes or Processes()
    engine = engine or Engine()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    say = log if processes.main else (lambda msg: None)
    if not models:
        raise PseudoLabelError("give at least one model")
    config.check()
    hop = window if hop is None else hop
    check_window(window, hop)
    out = Path(out)
    plan: _Plan = processes.on_main(lambda: _plan(models, inputs, out, window, hop, engine, train_with, score_on,  # 1
                                                  reference, overwrite, log))
    names = model_names(models)
    folder = out / "predictions"

    def loader(model: str) -> Callable:
        return lambda: load_recognition(model, engine.device, engine.dtype, engine.attention, engine.max_tokens,
                                        engine.chunk_seconds, engine.trust)

    tables, dev_tables = [], []
    for model, name in zip(models, names):                                                           # 2
        tables.append(predict_model(model, name, plan.items, folder, loader(model), window, hop, engine.num_workers,
                                    progress, processes, say))
        if plan.dev_rows is not None:
            dev_tables.append(predict_model(model, name, plan.dev_items, folder, loader(model), window, hop,
                                            engine.num_workers, progress, processes, say, table_name=f"{name}.dev"))
    if not processes.main:
        return None
    labels = common_labels(tables, [str(m) for m in models])                                         # 3
    classes = config.classes(labels)
    utterances = combine(plan.items, tables, labels)
    kept, rejected = select(utterances, config, classes)
    dev = None
    if plan.dev_rows is not None:
        dev = {name: _dev_scores(combine(plan.dev_items, [t], labels), plan.dev_labels)
               for name, t in zip(names, dev_tables)}
    atomic_write_text(out / "rejected.tsv", _rejected_tsv(rejected))
    settings = {**config.to_dict(), "window": float(window), "hop": float(hop), "valid_fraction": valid_fraction}
    report = build_report(utterances, kept, rejected, [str(m) for m in models], names, classes, settings, dev,
                          plan.reference)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report))
    atomic_write_bytes(out / "confidence.png", confidence_png(report))
    atomic_write_bytes(out / "agreement.png", agreement_png(report))
    rows = corpus_rows(pseudo_rows(kept, labels, classes), plan.train_with, plan.dev_rows, valid_fraction)
    if not kept:
        (out / "data.tsv").unlink(missing_ok=True)  # an earlier run's labels would pass for this run's
        (out / "folds.json").unlink(missing_ok=True)
        raise PseudoLabelError(f"no file passed the filters ({len(rejected)} rejected, each with its reason in "
                               f"{out / 'rejected.tsv'}; see {out / 'report.md'}): loosen them (--min-confidence, "
                               f"--min-margin, --min-agreement, --min-duration / --max-duration, --labels)")
    from ..io.manifests import ManifestError, write_data_tsv

    try:
        write_data_tsv(out / "data.tsv", rows)
    except ManifestError as e:
        raise PseudoLabelError(f"{out / 'data.tsv'}: {e}") from None
    if plan.dev_rows is not None:
        from ..downstream.folds import make_folds, save_folds

        save_folds(make_folds(rows, "original", seed=0, corpus="pseudo-label", valid_fraction=valid_fraction),
                   out / "folds.json")
    else:
        (out / "folds.json").unlink(missing_ok=True)  # an earlier run's fold would not match this data.tsv
    say(f"kept {len(kept)} of {len(utterances)} file(s) ({report['hours']['kept']:.3f} h), rejected {len(rejected)}"
        + (f"; reference labels: {_pct(report['reference']['accuracy_all'])} % right over all, "
           f"{_pct(report['reference']['accuracy_kept'])} % over the kept" if report.get("reference") else "")
        + f" -> {out / 'data.tsv'}, {out / 'report.md'}")
    return report


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"
