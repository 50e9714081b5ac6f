"""``emotion2vec evaluate MODEL --data MANIFEST_DIR --out DIR``: any trained predictor scored on any labelled corpus.

MODEL is one of
    a probe run folder          its saved heads (``heads/<fold>.pt``), on ``--features`` of the corpus (an
                                ``emotion2vec extract`` folder) or on features recomputed from the audio with the
                                upstream and settings the run's feature folder recorded;
    a fine-tuning run folder    its exported models (``models/<fold>``);
    a model folder or ``hf:``   a model with its own head: an export of ``emotion2vec finetune``, an emotion2vec+
                                folder, a Hugging Face model with an emotion head (audeering's dimensional model:
                                arousal, dominance, valence; :func:`emotion2vec.models.hf.read_hf_head`).

The corpus (``emotion2vec prepare`` output): without ``--folds`` every utterance is a test utterance, scored by every
fold of the model (one result fold per model fold, mean ± std over them); with ``--folds`` (names, numbers or
``all``) the corpus's folds (folds.json or ``--protocol``) choose: each fold's test and valid utterances are scored by
the model's fold of the same name (a probe or fine-tuning run evaluated on its own corpus) or by the one model, so the
run has valid predictions and dev scores like a probe (``ensemble --search`` / ``--weights dev``).

Labels: ``--label-map OLD=NEW,...`` renames the corpus's labels (an empty NEW drops the utterances); a label the
model never learned is refused with a count per label. ``--only-corpus-classes`` scores a classifier over the
corpus's classes alone (its probabilities renormalised over them), as comparisons of a many-class model on a
four-class corpus often do. Regression: the model's targets that are columns of data.tsv are scored (``--targets``
chooses); ``--target-range LOW,HIGH`` maps the corpus's ratings linearly onto [0, 1] (IEMOCAP's 1-5, MSP-Podcast's
1-7), the scale of models trained on normalised ratings such as audeering's.

Outputs: the probe's files (results.json with ``kind`` ``evaluate``, results.md, predictions.tsv,
valid_predictions.tsv with ``--folds``, confusion.png, the fairness and per-speaker analysis), so ``emotion2vec
report`` puts the run beside in-corpus runs and ``ensemble`` combines it. Where the model's training data is known
(probe and fine-tuning runs, fine-tuned exports) the leakage audit compares it with the test set: utterances the
model was trained on, shared speakers (one corpus), identical audio.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import AnalysisError

__all__ = ["EVALUATE_HINT", "Trained", "load_trained", "run_evaluate", "parse_target_range", "check_labels"]

#: what to check when an evaluated model's predictions collapse on a corpus
EVALUATE_HINT = "check --label-map, and for regression the targets' scale (--target-range)"


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Trained:
    """A trained predictor as evaluate runs it: ``folds`` (its models; ``["model"]`` for one), its task and class or
    target ``names``; ``predict(fold, keys, rows)`` -> (n, len(names)); ``training[fold]``: where that model was
    trained (``data``, ``keys``) when known."""

    kind: str  # probe run | fine-tuning run | model
    spec: str
    source: str
    task: str
    names: list[str]
    folds: list[str]
    predict: Callable[[str, list[str], Mapping[str, Mapping]], np.ndarray]
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    loss: str | None = None
    description: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _run_training(result: Mapping[str, Any], where: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each fold's training keys (train + valid) of a probe or fine-tuning run, from its corpus's folds."""
    from ..downstream.runs import read_inputs

    data, protocol = result.get("data"), result.get("protocol")
    if not data or protocol in ("speaker-id",):
        return {}, [f"the training data of {where} is not recorded: no leakage audit"]
    if protocol == "cross-corpus":  # a cross-corpus probe trained on its corpus's own folds
        protocol = (result.get("cross_corpus") or {}).get("train_protocol")
    try:
        _, spec = read_inputs(Path(data), protocol, 0)
    except Exception as e:  # noqa: BLE001 - a moved corpus: the audit is left out, said in the notes
        return {}, [f"the training corpus of {where} ({data}) cannot be read ({e}): no leakage audit"]
    by_name = {f["name"]: f for f in spec["folds"]}
    names = [f["name"] for f in result.get("folds", [])]
    if protocol == "cross-corpus" and "cross-corpus" in names:  # an older cross-corpus probe: all of the corpus
        every = sorted({k for f in spec["folds"] for s in ("train", "valid", "test") for k in f[s]})
        return {"cross-corpus": {"data": data, "keys": every}}, []
    out = {n: {"data": data, "keys": list(by_name[n]["train"]) + list(by_name[n]["valid"])} for n in names
           if n in by_name}
    notes = [] if len(out) == len(names) else [f"the folds of {where} are not all in {data}'s folds: no leakage "
                                                f"audit for {', '.join(n for n in names if n not in out)}"]
    return out, notes


def _probe_run(run_dir: Path, result: dict[str, Any], features: str | None, device: str, trust: bool,
               max_tokens: int | None, num_workers: int, log) -> Trained:
    from ..downstream.features import load_features
    from ..downstream.heads import load_head
    from .inference import FeatureExtractor, feature_source, predict

    folds = [f["name"] for f in result["folds"]]
    missing = [f for f in folds if not (run_dir / "heads" / f"{f}.pt").exists()]
    if missing:
        raise AnalysisError(f"{run_dir} has no saved head for fold(s) {', '.join(missing)} (heads/{missing[0]}.pt): "
                            f"re-run the probe with this version")
    heads = {f: load_head(run_dir / "heads" / f"{f}.pt") for f in folds}
    meta = heads[folds[0]][1]
    warnings: list[str] = []
    if features is not None:
        import json

        recorded = (meta.get("feature_settings") or {})
        try:
            given = json.loads((Path(features) / "features.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise AnalysisError(f"--features {features}: not a feature folder ({e})") from None
        for k in ("checkpoint", "granularity", "layers", "dtype"):
            if recorded.get(k) is not None and given.get(k) != recorded.get(k):
                warnings.append(f"--features {features} were extracted with {k} {given.get(k)!r}, the heads' features "
                                f"with {recorded.get(k)!r}")

        def from_features(fold: str, keys: list[str], rows) -> np.ndarray:
            packed, _ = load_features(features, keys, meta["layer"])
            head, m = heads[fold]
            return predict(head, m, packed)

        return Trained("probe run", str(run_dir), result["source"], result.get("task", "categorical"),
                       list(meta["names"]), folds, from_features, loss=meta.get("loss"),
                       description=f"probe heads of {run_dir} on features {features}", warnings=warnings)
    source, settings, found = feature_source(meta, run_dir)
    warnings += found
    extract = FeatureExtractor(source, settings, meta, device, trust, max_tokens)

    def from_audio(fold: str, keys: list[str], rows) -> np.ndarray:
        from .inference import decoded_chunks

        head, m = heads[fold]
        out = np.zeros((len(keys), len(meta["names"])))
        for positions, wavs in decoded_chunks(keys, rows, num_workers):
            out[positions] = predict(head, m, extract([keys[i] for i in positions], wavs))
        return out

    return Trained("probe run", str(run_dir), result["source"], result.get("task", "categorical"),
                   list(meta["names"]), folds, from_audio, loss=meta.get("loss"),
                   description=f"probe heads of {run_dir} on features recomputed with {source} "
                               f"({settings['granularity']}-level, layers {extract.layers})", warnings=warnings)


def _model_predict(models: Mapping[str, str], device: str, trust: bool, max_tokens: int | None, num_workers: int):
    from .inference import ModelPredictor, decoded_chunks

    def run(fold: str, keys: list[str], rows) -> np.ndarray:
        model = ModelPredictor(models[fold], device, trust, max_tokens)
        out = None
        for positions, wavs in decoded_chunks(keys, rows, num_workers):
            p = model(wavs)
            out = np.zeros((len(keys), p.shape[1])) if out is None else out
            out[positions] = p
        return out if out is not None else np.zeros((0, len(model.names)))

    return run


def _export_training(path: str) -> dict[str, Any] | None:
    """Where a fine-tuned export was trained (its config.json / classifier.json ``source``), when recorded."""
    import json

    folder = Path(path)
    for name, key in (("config.json", "converted_from"), ("classifier.json", "source")):
        try:
            meta = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        source = meta.get(key) or {}
        if isinstance(source, dict) and source.get("data") and source.get("fold"):
            return source
    return None


def load_trained(model: str, features: str | None = None, device: str = "cpu", trust: bool = False,
                 max_tokens: int | None = None, num_workers: int = 0, log=lambda m: None) -> Trained:
    """What ``model`` names (see the module docstring), ready to predict; a run of another kind (ensemble, evaluate,
    conversation) or a model without a head is refused by name."""
    from .inference import ModelPredictor

    path = Path(model)
    if path.is_dir() and (path / "results.json").is_file():
        from ..downstream.report import load_result

        result = load_result(path)
        kind = result.get("kind")
        if kind is None:
            trained = _probe_run(path, result, features, device, trust, max_tokens, num_workers, log)
        elif kind == "finetune":
            if features is not None:
                raise AnalysisError("--features feeds a probe run's heads; a fine-tuning run's models read the audio")
            dirs = {f["name"]: f.get("model_dir") for f in result["folds"]}
            lost = [f for f, d in dirs.items() if not d or not (path / d).is_dir()]
            if lost:
                raise AnalysisError(f"{path} has no exported model for fold(s) {', '.join(lost)}")
            first = ModelPredictor(path / dirs[next(iter(dirs))], device, trust, max_tokens)
            trained = Trained("fine-tuning run", str(path), result["source"], result.get("task", first.task),
                              first.names, list(dirs), _model_predict({f: str(path / d) for f, d in dirs.items()},
                                                                      device, trust, max_tokens, num_workers),
                              loss=result.get("loss"), description=f"the fine-tuned models of {path}")
            del first
        else:
            raise AnalysisError(f"{path} is a{'n' if kind[0] in 'aeiou' else ''} {kind} run: evaluate scores a probe "
                                f"run's heads, a fine-tuning run's models or a model with a head")
        trained.training, notes = _run_training(result, str(path))
        trained.notes += notes
        return trained
    if features is not None:
        raise AnalysisError("--features feeds a probe run's heads; a model reads the audio")
    predictor = ModelPredictor(model, device, trust, max_tokens)
    source = Path(model.removeprefix("hf:")).name or model
    trained = Trained("model", model, source, predictor.task, predictor.names, ["model"],
                      _model_predict({"model": model}, device, trust, max_tokens, num_workers),
                      loss=predictor.config.get("loss"), description=f"the model {model}")
    origin = _export_training(model.removeprefix("hf:").rsplit("/encoder", 1)[0])
    if origin is not None:
        try:
            from ..downstream.runs import read_inputs

            _, spec = read_inputs(Path(origin["data"]), origin.get("protocol"), 0)
            fold = next(f for f in spec["folds"] if f["name"] == origin["fold"])
            trained.training = {"model": {"data": origin["data"], "keys": list(fold["train"]) + list(fold["valid"])}}
        except Exception:  # noqa: BLE001 - the corpus moved: said in the notes
            trained.notes.append(f"{model} was fine-tuned on {origin['data']} ({origin['fold']}), which cannot be "
                                 f"read: no leakage audit")
    else:
        trained.notes.append(f"the training data of {model} is unknown: no leakage audit")
    del predictor
    return trained


# ------------------------------------------------------------------------------------------------ the corpus
def parse_target_range(text: str | None) -> tuple[float, float] | None:
    """``"1,5"`` -> (1.0, 5.0); refused by name unless two numbers with LOW < HIGH."""
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise AnalysisError(f"--target-range {text!r}: expected LOW,HIGH (e.g. 1,5)") from None
    if not low < high:
        raise AnalysisError(f"--target-range {text!r}: LOW must be below HIGH")
    return low, high


def check_labels(names: Sequence[str], task: str, rows: list[dict], dropped: Mapping[str, int],
                 where: str = "", option: str = "--label-map") -> None:
    """Refuse corpus labels (and vote labels) a model of ``names`` never learned, with a count per label."""
    from ..io.manifests import parse_votes

    counts: dict[str, int] = {}
    for r in rows:
        found = {r["label"]}
        if task != "categorical":
            found |= {label for label, c in parse_votes(str(r.get("votes", "") or "")).items() if c > 0}
        for label in found - set(names):
            counts[label] = counts.get(label, 0) + 1
    if counts:
        listed = ", ".join(f"{k} ({v} utterance(s))" for k, v in sorted(counts.items()))
        raise AnalysisError((f"{where}: " if where else "")
                            + f"label(s) the model never learned (its classes: {', '.join(names)}): {listed}; map "
                            f"them with {option} OLD=NEW (e.g. {sorted(counts)[0]}={names[0]}) or drop them with "
                            f"OLD=" + (f" (dropped so far: {dict(dropped)})" if dropped else ""))


def _regression_columns(trained: Trained, rows: list[dict], targets: Sequence[str] | None,
                        target_range: tuple[float, float] | None, where: str) -> tuple[list[str], list[dict]]:
    """The model's targets scored (``targets``, default every one that is a data.tsv column), rows with them mapped
    by ``target_range``."""
    wanted = list(targets) if targets else [n for n in trained.names if rows and n in rows[0]]
    unknown = [t for t in wanted if t not in trained.names]
    if unknown:
        raise AnalysisError(f"--targets {', '.join(unknown)}: the model predicts {', '.join(trained.names)}")
    missing = [t for t in wanted if rows and t not in rows[0]]
    if not wanted or missing:
        raise AnalysisError(f"{where}: no column {', '.join(missing or trained.names)} for the model's targets "
                            f"{', '.join(trained.names)} (add the ratings as data.tsv columns of those names)")
    if target_range is not None:
        low, high = target_range
        rows = [{**r, **{t: str((float(r[t]) - low) / (high - low)) for t in wanted}} for r in rows]
    return wanted, rows


@dataclass
class _Plan:
    """Each result fold: its name, the model fold that scores it, its test and valid keys."""

    name: str
    model_fold: str
    test: list[str]
    valid: list[str]


def _plan(trained: Trained, data_dir: Path, rows: list[dict], folds: str | None, protocol: str | None,
          fold_seed: int) -> tuple[list[_Plan], str, dict[str, Any]]:
    """-> (the result folds, the protocol shown, the folds dict of the corpus or a whole-corpus one)."""
    from ..downstream.runs import pick_folds, read_inputs

    present = {r["key"] for r in rows}
    if not folds:
        keys = [r["key"] for r in rows]
        name = "all" if trained.folds == ["model"] else None
        plans = [_Plan(name or f, f, keys, []) for f in trained.folds]
        return plans, "whole corpus", {"protocol": "whole corpus", "speaker_independent": None, "folds": []}
    _, spec = read_inputs(data_dir, protocol, fold_seed)
    chosen = spec["folds"] if folds.strip() == "all" else pick_folds(list(spec["folds"]), folds)
    plans = []
    for f in chosen:
        if trained.folds == ["model"]:
            model_fold = "model"
        elif f["name"] in trained.folds:
            model_fold = f["name"]
        else:
            raise AnalysisError(f"--folds: the corpus fold {f['name']} has no model of that name in {trained.spec} "
                                f"(its folds: {', '.join(trained.folds)}); without --folds every model fold scores the "
                                f"whole corpus")
        plans.append(_Plan(f["name"], model_fold, [k for k in f["test"] if k in present],
                           [k for k in f["valid"] if k in present]))
    empty = [p.name for p in plans if not p.test]
    if empty:
        raise AnalysisError(f"fold(s) {', '.join(empty)}: no test utterance left after --label-map")
    return plans, str(spec.get("protocol")), spec


def _audit(trained: Trained, plans: list[_Plan], rows: list[dict], data_dir: Path, audit_audio: bool, log
           ) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """The leakage audit of every result fold whose model's training data is known. -> (audit, warnings, notes)."""
    from ..downstream.audit import HASH_CACHE, audio_hashes, audit_folds
    from ..downstream.runs import log_audit
    from ..io.manifests import read_data_tsv

    known = [p for p in plans if p.model_fold in trained.training]
    if not known:
        return None, [], []
    warnings: list[str] = []
    same = {p.model_fold: Path(trained.training[p.model_fold]["data"]).resolve() == data_dir.resolve() for p in known}
    train_dirs = {Path(trained.training[p.model_fold]["data"]) for p in known if not same[p.model_fold]}
    hashes = audio_hashes(rows, data_dir / HASH_CACHE, log)[0] if audit_audio else None
    all_rows = {f"test:{r['key']}": {**r, "key": f"test:{r['key']}"} for r in rows}
    all_hashes = {f"test:{k}": v for k, v in (hashes or {}).items()}
    for d in train_dirs:
        train_rows = read_data_tsv(d / "data.tsv")
        train_hashes = audio_hashes(train_rows, d / HASH_CACHE, log)[0] if audit_audio else None
        all_rows.update({f"train:{d}:{r['key']}": {**r, "key": f"train:{d}:{r['key']}", "speaker": ""}
                         for r in train_rows})
        all_hashes.update({f"train:{d}:{k}": v for k, v in (train_hashes or {}).items()})
    folds = []
    for p in known:
        info = trained.training[p.model_fold]
        if same[p.model_fold]:
            trained_keys = set(info["keys"])
            seen = [k for k in p.test if k in trained_keys]
            if seen:
                warnings.append(f"{p.name}: {len(seen)} of its {len(p.test)} test utterances were in the training "
                                f"data of the model that scores them (e.g. {seen[0]}): its scores are not held-out")
            train = [f"test:{k}" for k in info["keys"] if f"test:{k}" in all_rows and k not in set(p.test)]
        else:
            d = Path(info["data"])
            train = [f"train:{d}:{k}" for k in info["keys"] if f"train:{d}:{k}" in all_rows]
        folds.append({"name": p.name, "train": train, "valid": [], "test": [f"test:{k}" for k in p.test]})
    audit = audit_folds(list(all_rows.values()), {"protocol": "evaluate", "speaker_independent": False,
                                                  "folds": folds}, all_hashes if audit_audio else None,
                        raise_errors=False)
    log_audit(audit, log, None)
    notes = ["leakage audit against the model's training data (keys prefixed test: / train:<corpus>:; speakers "
             "compared within one corpus only)"]
    return audit, warnings + [f"leakage audit: {w}" for w in audit["warnings"]], notes


# ------------------------------------------------------------------------------------------------ the run
def _corpus_name(data_dir: Path) -> str:
    """The corpus's name as its folds.json records it (``prepare`` writes it), else the folder's name."""
    import json

    try:
        return str(json.loads((data_dir / "folds.json").read_text(encoding="utf-8")).get("corpus") or data_dir.name)
    except (OSError, ValueError):
        return data_dir.name


def _markdown(result: dict[str, Any]) -> str:
    from ..downstream.report import corpus_name, results_markdown

    e = result["evaluate"]
    lines = [f"- model: `{e['model']}` ({e['model_kind']}: {e['description']}), {result['task']} "
             f"({', '.join(result.get('targets') or result.get('labels') or [])})",
             f"- data: `{result['data']}` ({result.get('protocol')}, {len(result['folds'])} fold(s)"
             + (f"; label map {e['label_map']}" if e.get("label_map") else "")
             + (f"; targets mapped from [{e['target_range'][0]:g}, {e['target_range'][1]:g}] to [0, 1]"
                if e.get("target_range") else "")
             + ("; the model's classes restricted to the corpus's" if e.get("only_corpus_classes") else "") + ")",
             f"- trained on: " + (", ".join(sorted({t['data'] for t in e['trained_on'].values()}))
                                  if e.get("trained_on") else "unknown (no leakage audit)"), ""]
    return results_markdown(result, f"# Evaluate: {corpus_name(result['corpus'])} / {result['source']}", lines)


def run_evaluate(model: str, data: str | os.PathLike, out: str | os.PathLike | None, features: str | None = None,
                 label_map: str | None = None, folds: str | None = None, protocol: str | None = None,
                 fold_seed: int = 0, targets: Sequence[str] | None = None,
                 target_range: tuple[float, float] | None = None, only_corpus_classes: bool = False,
                 name: str | None = None, device: str = "cpu", bootstrap: int = 1000, seed: int = 42,
                 group_by: Sequence[str] | None = None, speaker_min: int = 20, trust: bool = False,
                 max_tokens: int | None = None, num_workers: int = 0, audit_audio: bool = True,
                 verbose: bool = True, trained: Trained | None = None) -> dict[str, Any]:
    """Score ``model`` on the corpus ``data`` (see the module docstring); write the outputs to ``out`` (when given);
    return results.json's dict. ``trained``: an already loaded model (:func:`load_trained`)."""
    from ..downstream.corpora import parse_label_map
    from ..downstream.metrics import fast_scores
    from ..downstream.report import corpus_name, write_outputs
    from ..downstream.runs import (FoldOutcome, FoldSplit, add_groups, prediction_records, read_rows, results_dict,
                                   run_folds, write_valid_predictions)
    from ..downstream.targets import apply_label_map, build_targets

    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir = Path(data)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    if bootstrap < 0:
        raise AnalysisError(f"--bootstrap must be >= 0, got {bootstrap}")
    trained = trained or load_trained(model, features, device, trust, max_tokens, num_workers, log)   # 1. the model
    rows = read_rows(data_dir)                                                                          # 2. the corpus
    mapping = parse_label_map(label_map)
    dropped: dict[str, int] = {}
    if trained.task != "regression":
        rows, dropped = apply_label_map(rows, mapping)
        if not rows:
            raise AnalysisError(f"--label-map dropped every utterance of {data_dir}")
        check_labels(trained.names, trained.task, rows, dropped)
        names = list(trained.names)
        columns = list(range(len(names)))
        if only_corpus_classes:
            present = sorted({r["label"] for r in rows})
            columns = [names.index(c) for c in present]
            names = present
    else:
        if only_corpus_classes:
            raise AnalysisError("--only-corpus-classes applies to classifiers, not a regression model")
        names, rows = _regression_columns(trained, rows, targets, target_range, str(data_dir / "data.tsv"))
        columns = [trained.names.index(t) for t in names]
    by_key = {r["key"]: r for r in rows}
    plans, shown_protocol, spec = _plan(trained, data_dir, rows, folds, protocol, fold_seed)              # 3. folds
    keys = list(dict.fromkeys(k for p in plans for k in p.test + p.valid))
    position = {k: i for i, k in enumerate(keys)}
    task = trained.task if trained.task != "soft" or all(str(by_key[k].get("votes", "")).strip() for k in keys) \
        else "categorical"
    target_set = build_targets(task, [by_key[k] for k in keys], names, where=str(data_dir / "data.tsv"))
    audit, audit_warnings, audit_notes = _audit(trained, plans, rows, data_dir, audit_audio, log)       # 4. audit
    log(f"evaluate: {trained.description} on {len(keys)} utterance(s) of {data_dir} ({len(plans)} fold(s))")

    predicted: dict[str, dict[str, np.ndarray]] = {}                                                     # 5. predict
    for model_fold in dict.fromkeys(p.model_fold for p in plans):
        wanted = list(dict.fromkeys(k for p in plans if p.model_fold == model_fold for k in p.test + p.valid))
        t_fold = time.perf_counter()
        raw = np.asarray(trained.predict(model_fold, wanted, by_key), dtype=np.float64)[:, columns]
        if only_corpus_classes and task != "regression":
            total = raw.sum(1, keepdims=True) if task == "categorical" else 1.0
            raw = raw / np.where(total > 0, total, 1.0)
        predicted[model_fold] = dict(zip(wanted, raw))
        log(f"evaluate: {model_fold}: {len(wanted)} utterance(s) predicted ({time.perf_counter() - t_fold:.1f}s)")

    def fit(i: int, split: FoldSplit) -> FoldOutcome:
        plan = plans[i]
        preds = predicted[plan.model_fold]
        test = np.stack([preds[k] for k in plan.test])
        valid = np.stack([preds[k] for k in plan.valid]) if plan.valid else None
        valid_scores = {}
        if valid is not None:
            idx = np.asarray(split.valid)
            valid_scores = fast_scores(task, valid, target_set.y[idx], None if target_set.hard is None
                                       else target_set.hard[idx])
        return FoldOutcome(name=plan.name, n_train=0, n_valid=len(plan.valid), n_test=len(plan.test), best_epoch=0,
                           epochs_run=0, valid={k: float(v) for k, v in valid_scores.items()}, history={},
                           seconds=0.0, test_keys=list(plan.test), predictions=test,
                           extra={"model_fold": plan.model_fold}, valid_keys=list(plan.valid),
                           valid_predictions=valid)

    splits = [FoldSplit(p.name, [], [position[k] for k in p.valid], [position[k] for k in p.test]) for p in plans]
    outcomes = run_folds(splits, fit, target_set, bootstrap, seed, log, "evaluate", hint=EVALUATE_HINT)

    corpus = spec.get("corpus") or _corpus_name(data_dir)                                               # 6. results
    details = {"evaluate": {"model": trained.spec, "model_kind": trained.kind, "description": trained.description,
                            "model_folds": trained.folds, "label_map": mapping, "dropped": dropped,
                            "target_range": list(target_range) if target_range else None,
                            "only_corpus_classes": only_corpus_classes,
                            "trained_on": {p.name: {"data": trained.training[p.model_fold]["data"],
                                                    "model_fold": p.model_fold}
                                           for p in plans if p.model_fold in trained.training}}}
    result = results_dict(
        kind="evaluate", corpus=corpus, protocol=shown_protocol, speaker_independent=spec.get("speaker_independent"),
        task=task, loss=trained.loss, head={"type": trained.kind}, names=names, source=name or trained.source,
        features=trained.description, data=str(data_dir), granularity="", dim=0, stored_layers=[], layer=None,
        feature_settings={}, parameters=0, config={"bootstrap": bootstrap, "seed": seed, "folds": folds,
                                                   "protocol": protocol},
        device=device, folds=outcomes, warnings=trained.warnings + audit_warnings,
        notes=trained.notes + audit_notes + (audit["notes"] if audit else []), audit=audit,
        timing={"total_s": time.perf_counter() - t0}, details=details)
    records = prediction_records(outcomes, target_set, position.__getitem__)
    preds = add_groups(result, records, by_key, group_by, speaker_min, bootstrap, seed, log, "evaluate")
    if out is not None:
        from .plots import write_analysis_plots

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_valid_predictions(out, outcomes, target_set, position.__getitem__)
        write_analysis_plots(out, result)
        write_outputs(out, result, preds.records(), markdown=_markdown,
                      title=f"{corpus_name(corpus)} / {result['source']} (evaluate)")
        log(f"evaluate: wrote results.json, results.md, predictions.tsv and the figures to {out}")
    from ..downstream.report import summary_markdown

    log(summary_markdown(result))
    return result
