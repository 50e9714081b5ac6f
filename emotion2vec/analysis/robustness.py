"""``emotion2vec robustness RUN_DIR --data MANIFEST_DIR --out DIR``: how predictions move under small signal
changes (Wagner et al.).

For every test utterance of every fold of a finished probe or fine-tuning run, the waveform (16 kHz, as extraction
reads it) is perturbed by each selected perturbation (:mod:`.perturbations`, one value drawn per utterance, seeded)
and run again through the fold's model: for a probe, the features are recomputed through the same upstream with the
settings recorded in the feature folder's ``features.json`` (checkpoint, layers, granularity, compute dtype,
attention, chunk length; :class:`.inference.FeatureExtractor`: a chunk of utterances and all their perturbed versions
go through length-sorted batches together) and the fold's saved head (``heads/<fold>.pt``) scores them; for a
fine-tuning run, the fold's exported model (``models/<fold>``, :class:`.inference.ModelPredictor`) takes the
waveforms. Each prediction is compared with the clean one (the unperturbed waveform through the same path; its
agreement with the run's predictions.tsv is reported as a check).

Scores, per perturbation and overall (the mean over perturbations):
    robustness   share of utterances whose prediction does not change: the same class (categorical, soft), the
                 same set of classes above 1/C (multilabel), |change| < ``threshold`` (0.05, on the targets' [0, 1]
                 scale) per target for regression (robustness per target; the headline is their mean)
    metric       the task's metrics under perturbation per fold (mean ± std over folds) beside the clean ones
Also per drawn value and per fold.

Outputs in ``--out``: results.json, results.md, robustness.png (bars), changes.tsv (per utterance and
perturbation: the drawn value, the clean and the perturbed prediction), ``audio/`` with ``--save-audio N`` (the
first N test utterances, clean and perturbed, as 32-bit float WAV, listed in audio/index.tsv). Each fold's
predictions are kept in ``parts/<fold>.npz`` with a stamp of the settings, so an interrupted run resumes; a part
made with other settings is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..downstream.metrics import HEADLINE, METRIC_NAMES, PERCENT_METRICS, format_metric, summarize, summary_metrics
from . import AnalysisError
from .inference import feature_source
from .perturbations import Perturbation, select_perturbations, utterance_rng

__all__ = ["ROBUSTNESS_FORMAT", "THRESHOLD", "changed", "run_robustness", "robustness_markdown", "robustness_png",
           "robustness_table"]

ROBUSTNESS_FORMAT = "emotion2vec-robustness-results"
THRESHOLD = 0.05


def changed(task: str, clean: np.ndarray, perturbed: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Whether each prediction changed: (N,) for class tasks, (N, K) per target for regression."""
    if task == "regression":
        return np.abs(perturbed - clean) >= threshold
    if task == "multilabel":
        c = clean.shape[1]
        return ((clean > 1.0 / c) != (perturbed > 1.0 / c)).any(axis=1)
    return clean.argmax(1) != perturbed.argmax(1)


# ------------------------------------------------------------------------------------------------ checks
def _check_run(run, run_dir: Path, folds: str | None) -> list[str]:
    from ..downstream.runs import pick_folds

    kind = run.result.get("kind") or ("conversation" if "conversation" in run.result else None)
    if kind not in (None, "probe", "finetune"):
        raise AnalysisError(f"{run_dir} is a{'n' if kind[0] in 'aeiou' else ''} {kind} run; robustness re-runs a "
                            f"probe's saved heads (heads/<fold>.pt) or a fine-tuning run's exported models "
                            f"(models/<fold>): give it a run of `emotion2vec probe` or `emotion2vec finetune`")
    names = [f["name"] for f in pick_folds([{"name": n} for n in run.test.fold_names()], folds, str(run_dir))]
    if kind == "finetune":
        dirs = {f["name"]: f.get("model_dir") for f in run.result.get("folds", [])}
        lost = [f for f in names if not dirs.get(f) or not (run_dir / dirs[f]).is_dir()]
        if lost:
            raise AnalysisError(f"{run_dir} has no exported model for fold(s) {', '.join(lost)} (models/{lost[0]}): "
                                f"a text-fused model is not exported, or the folder was moved without models/")
        return names
    missing = [f for f in names if not run.head_file(f).exists()]
    if missing:
        r = run.result
        raise AnalysisError(f"{run_dir} has no saved head for fold(s) {', '.join(missing)} "
                            f"(heads/{missing[0]}.pt): it was made by an emotion2vec that did not save heads; re-run "
                            f"`emotion2vec probe --features {r.get('features')} --data {r.get('data')} --out "
                            f"{run_dir}` with its options, then this command")
    return names


# ------------------------------------------------------------------------------------------------ extraction
def _finetuned_source(run, fold_names: list[str]) -> tuple[str, dict[str, Any], list[str]]:
    """(what runs, its settings, warnings) of a fine-tuning run: each fold's exported model."""
    from ..extract.run import checkpoint_stamp

    dirs = {f["name"]: run.path / f["model_dir"] for f in run.result["folds"]}
    layer = run.result.get("layer")
    settings = {"checkpoint": str(run.path / "models"), "granularity": "waveform (fine-tuned model)",
                "layers": [layer] if layer is not None else [], "dtype": "float32",
                "checkpoint_stamp": ";".join(checkpoint_stamp(str(dirs[f])) for f in fold_names)}
    return str(run.path / "models"), settings, []


def _stamp(run, perturbations: Sequence[Perturbation], seed: int, source: str, settings: dict[str, Any]) -> str:
    from ..extract.run import checkpoint_stamp

    finetuned = run.result.get("kind") == "finetune"
    blob = {"run": run.result.get("created"), "source": source,
            "stamp": settings.get("checkpoint_stamp") if finetuned else checkpoint_stamp(source),
            "settings": {k: settings.get(k) for k in ("layers", "granularity", "dtype", "attention", "chunk_seconds")},
            "seed": seed, "perturbations": [(p.name, list(p.values)) for p in perturbations]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _audio_name(key: str) -> str:
    return key.replace("/", "__")


def _fold_predictions(fold: str, keys: list[str], rows: dict[str, dict], predict_fn, width: int,
                      perturbations: Sequence[Perturbation], seed: int, num_workers: int, audio: dict[str, Any],
                      log) -> dict[str, np.ndarray]:
    """Clean and perturbed predictions of one fold's test utterances (decoded and perturbed chunk by chunk);
    ``predict_fn(keys, waveforms)`` -> (n, ``width``) is the fold's model."""
    from ..io.audio import SAMPLE_RATE, write_audio
    from .inference import decoded_chunks

    n = len(keys)
    out = {"clean": np.zeros((n, width))}
    for p in perturbations:
        out[p.name] = np.zeros((n, width))
        out[f"{p.name}:value"] = np.zeros(n)
    t0 = time.perf_counter()
    for chunk, wavs in decoded_chunks(keys, rows, num_workers):
        versions_keys, versions = [], []
        for i, clean in zip(chunk, wavs):
            versions_keys.append(("clean", i))
            versions.append(clean)
            save = audio["left"] > 0
            if save:
                audio["left"] -= 1
                path = Path(audio["dir"]) / "clean" / f"{_audio_name(keys[i])}.wav"
                write_audio(path, clean, SAMPLE_RATE, subtype="FLOAT")
                audio["index"].append(("clean", keys[i], "", str(path.relative_to(audio["dir"]))))
            for p in perturbations:
                y, value = p(clean, utterance_rng(seed, p.name, keys[i]))
                out[f"{p.name}:value"][i] = value
                versions_keys.append((p.name, i))
                versions.append(y)
                if save:
                    path = Path(audio["dir"]) / p.name / f"{_audio_name(keys[i])}.wav"
                    write_audio(path, y, SAMPLE_RATE, subtype="FLOAT")
                    audio["index"].append((p.name, keys[i], f"{value:g}", str(path.relative_to(audio["dir"]))))
        predictions = predict_fn([f"{name}:{keys[i]}" for name, i in versions_keys], versions)
        for (name, i), p in zip(versions_keys, predictions):
            out[name][i] = p
        log(f"robustness: {fold}: {chunk[-1] + 1}/{n} utterances x {len(perturbations) + 1} versions "
            f"({time.perf_counter() - t0:.1f}s)")
    return out


def _load_part(path: Path, stamp: str, keys: list[str]) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["stamp"]) != stamp or z["keys"].tolist() != keys:
                return None
            return {k: z[k] for k in z.files if k not in ("stamp", "keys")}
    except (OSError, ValueError, KeyError):
        return None


def _save_part(path: Path, stamp: str, keys: list[str], arrays: dict[str, np.ndarray]) -> None:
    from ..io.atomic import atomic_write

    atomic_write(path, lambda f: np.savez(f, stamp=np.array(stamp), keys=np.array(keys), **arrays))


# ------------------------------------------------------------------------------------------------ scores
def _robustness(task: str, names: list[str], clean: np.ndarray, perturbed: np.ndarray, threshold: float,
                mask: np.ndarray | None = None) -> dict[str, Any]:
    ch = changed(task, clean, perturbed, threshold)
    if mask is not None:
        ch = ch[mask]
    if task == "regression":
        per = {n: float(1.0 - ch[:, k].mean()) for k, n in enumerate(names)}
        return {"robustness": float(np.mean(list(per.values()))), "per_target": per, "n": int(len(ch)),
                "changed": int(ch.any(axis=1).sum())}
    return {"robustness": float(1.0 - ch.mean()), "n": int(len(ch)), "changed": int(ch.sum())}


def _fold_metrics(test, fold_rows: dict[str, np.ndarray], predicted: np.ndarray, metrics: Sequence[str]):
    out = {}
    for fold, idx in fold_rows.items():
        sub = test.select(idx)
        sub.predicted = predicted[idx]
        full = sub.metrics()
        out[fold] = {m: full[m] for m in metrics}
    return out


# ------------------------------------------------------------------------------------------------ the run
def _check_options(perturbations, save_audio: int, threshold: float) -> list[Perturbation]:
    perturbations = list(perturbations) if perturbations is not None else select_perturbations()
    if not perturbations:
        raise AnalysisError("no perturbations selected")
    if save_audio < 0:
        raise AnalysisError(f"--save-audio must be >= 0, got {save_audio}")
    if not 0.0 < threshold < 1.0:
        raise AnalysisError(f"--threshold must lie in (0, 1), got {threshold}")
    return perturbations


def _test_set(run, run_dir: Path, data: Path, fold_names: list[str]):
    """The data.tsv rows by key and the test predictions of ``fold_names`` (the folds one after the other); every
    test key must be in ``data``."""
    from ..io.manifests import ManifestError, read_data_tsv

    try:
        rows = {r["key"]: r for r in read_data_tsv(data)}
    except ManifestError as e:
        raise AnalysisError(str(e)) from None
    test = run.test.select(np.concatenate([run.test.in_fold(f) for f in fold_names]))
    missing = [k for k in dict.fromkeys(test.keys) if k not in rows]
    if missing:
        raise AnalysisError(f"{len(missing)} test key(s) of {run_dir} are not in {data} (e.g. "
                            f"{', '.join(missing[:3])}): pass the prepared corpus the run was tested on (results.json "
                            f"data: {run.result.get('data')}"
                            + (f", test data: {run.result['cross_corpus']['test_data']}"
                               if run.result.get("cross_corpus") else "") + ")")
    return rows, test


def _fold_models(run, fold_names: list[str], source: str, settings: dict[str, Any], first_meta: dict[str, Any],
                 device: str, trust: bool, max_tokens: int | None):
    """-> (a function giving fold f's ``predict_fn(keys, waveforms)``, a description for the log)."""
    from ..downstream.heads import load_head
    from .inference import FeatureExtractor, ModelPredictor, predict

    if run.result.get("kind") == "finetune":
        dirs = {f["name"]: run.path / f["model_dir"] for f in run.result["folds"]}

        def finetuned(fold: str):
            model = ModelPredictor(dirs[fold], device, trust, max_tokens)
            return lambda keys, wavs: model(wavs)

        return finetuned, f"the fine-tuned models models/<fold>"
    extract = FeatureExtractor(source, settings, first_meta, device, trust, max_tokens)

    def probe(fold: str):
        head, meta = load_head(run.head_file(fold))
        return lambda keys, wavs: predict(head, meta, extract(keys, wavs))

    return probe, (f"{source} ({settings['granularity']}-level, layers {extract.layers}) and the saved heads")


def _predict_folds(run, fold_names: list[str], test, rows: dict[str, dict], source: str, settings: dict[str, Any],
                   first_meta: dict[str, Any], perturbations: Sequence[Perturbation], seed: int, stamp: str,
                   out: Path, save_audio: int, device: str, trust: bool, max_tokens: int | None, num_workers: int,
                   threads: int | None, log) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Per fold, the clean and perturbed predictions of its test utterances (a part saved with the same settings
    is reused unless audio is saved). -> (parts by fold, the saved audio's index)."""
    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise AnalysisError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    audio = {"left": int(save_audio), "dir": out / "audio", "index": []}
    try:
        model_of, described = _fold_models(run, fold_names, source, settings, first_meta, device, trust, max_tokens)
        log(f"robustness: {len(test)} test utterance(s) of {len(fold_names)} fold(s) x {len(perturbations)} "
            f"perturbation(s) through {described}")
        parts: dict[str, dict[str, np.ndarray]] = {}
        for fold in fold_names:
            keys = [test.keys[i] for i in test.in_fold(fold)]
            part_path = out / "parts" / f"{fold}.npz"
            part = _load_part(part_path, stamp, keys) if not save_audio else None
            if part is not None:
                log(f"robustness: {fold}: reusing {part_path}")
            else:
                part = _fold_predictions(fold, keys, rows, model_of(fold), len(run.names), perturbations, seed,
                                         num_workers, audio, log)
                _save_part(part_path, stamp, keys, part)
            parts[fold] = part
    finally:
        torch.set_num_threads(previous_threads)
    return parts, audio


def _scores(run, test, fold_names: list[str], parts, perturbations: Sequence[Perturbation], threshold: float,
            warnings: list[str]) -> tuple[dict[str, Any], float, list[dict[str, Any]], np.ndarray]:
    """The clean scores per fold, the clean re-extraction's agreement with the run's predictions (a warning below
    100 %), and per perturbation its robustness (overall, per drawn value, per fold) and metrics.
    -> (clean per fold, agreement, perturbation entries, clean predictions)."""
    task, names = run.task, run.names
    fold_rows = {f: test.in_fold(f) for f in fold_names}  # test holds the folds one after the other
    clean = np.concatenate([parts[f]["clean"] for f in fold_names])
    metrics = list(summary_metrics(task, names))
    clean_folds = _fold_metrics(test, fold_rows, clean, metrics)
    agreement = 1.0 - changed(task, test.predicted, clean, 1e-3 if task == "regression" else THRESHOLD)
    agreement = float(agreement.mean())
    if agreement < 1.0:
        warnings.append(f"the clean re-extraction agrees with the run's predictions.tsv on {100 * agreement:.2f} % of "
                        f"the utterances (numerical differences of the re-extraction, e.g. batching or device)")
    entries = []
    for p in perturbations:
        perturbed = np.concatenate([parts[f][p.name] for f in fold_names])
        values = np.concatenate([parts[f][f"{p.name}:value"] for f in fold_names])
        entry = {"name": p.name, "unit": p.unit, "values": list(p.values),
                 **_robustness(task, names, clean, perturbed, threshold)}
        entry["per_value"] = {f"{v:g}": _robustness(task, names, clean, perturbed, threshold, values == v)
                              for v in p.values if (values == v).any()}
        entry["per_fold"] = {f: _robustness(task, names, clean, perturbed, threshold, np.isin(np.arange(len(test)),
                                                                                           idx))["robustness"]
                             for f, idx in fold_rows.items()}
        folds_metrics = _fold_metrics(test, fold_rows, perturbed, metrics)
        entry["folds"] = folds_metrics
        entry["summary"] = summarize(list(folds_metrics.values()), metrics)
        entries.append(entry)
    return clean_folds, agreement, entries, clean


def _write(out: Path, result: dict[str, Any], changes: str, audio: dict[str, Any]) -> None:
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "changes.tsv", changes)
    if audio["index"]:
        atomic_write_text(out / "audio" / "index.tsv", "perturbation\tkey\tvalue\tpath\n"
                          + "".join("\t".join(r) + "\n" for r in audio["index"]))
    atomic_write_bytes(out / "robustness.png", robustness_png(result))
    atomic_write_text(out / "results.md", robustness_markdown(result))
    atomic_write_text(out / "results.json", json.dumps(result, indent=1) + "\n")


def run_robustness(run_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                   perturbations: Sequence[Perturbation] | None = None, seed: int = 0, save_audio: int = 0,
                   device: str = "cpu", folds: str | None = None, checkpoint: str | None = None, trust: bool = False,
                   max_tokens: int | None = None, num_workers: int = 0, threads: int | None = None,
                   threshold: float = THRESHOLD, verbose: bool = True) -> dict[str, Any]:
    """Perturb, re-extract and re-score every test utterance of the probe run ``run_dir`` (see the module
    docstring); write the outputs to ``out``; return results.json's dict.

    The steps: the options; the run, its folds with saved heads and their test utterances; the feature source and
    settings recorded with the heads; clean and perturbed predictions per fold (resumable parts); the scores;
    results.json and the other files."""
    from ..downstream.heads import load_head
    from .runs import load_run

    t_start = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out)
    perturbations = _check_options(perturbations, save_audio, threshold)
    run = load_run(run_dir)
    fold_names = _check_run(run, run_dir, folds)
    rows, test = _test_set(run, run_dir, Path(data), fold_names)
    if run.result.get("kind") == "finetune":
        if checkpoint:
            raise AnalysisError("--checkpoint names the feature source of a probe run's heads; a fine-tuning run's "
                                "folds are re-run with their own exported models")
        first_meta = {}
        source, settings, warnings = _finetuned_source(run, fold_names)
    else:
        _, first_meta = load_head(run.head_file(fold_names[0]))
        source, settings, warnings = feature_source(first_meta, run_dir, checkpoint)
    for w in warnings:
        log(f"robustness: warning: {w}")
    stamp = _stamp(run, perturbations, seed, source, settings)
    parts, audio = _predict_folds(run, fold_names, test, rows, source, settings, first_meta, perturbations, seed,
                                  stamp, out, save_audio, device, trust, max_tokens, num_workers, threads, log)
    clean_folds, agreement, entries, clean = _scores(run, test, fold_names, parts, perturbations, threshold, warnings)
    task, names = run.task, run.names
    headline = HEADLINE[task]
    clean_summary = summarize(list(clean_folds.values()), list(summary_metrics(task, names)))
    result = {
        "format": ROBUSTNESS_FORMAT, "version": 1, "run": str(run_dir), "corpus": run.result.get("corpus"),
        "source": run.source, "task": task, "targets": names, "headline": headline, "threshold": threshold,
        "seed": seed, "feature_source": source, "feature_settings": settings, "folds": fold_names,
        "utterances": len(test), "clean": {"folds": clean_folds, "summary": clean_summary},
        "clean_agreement": agreement, "perturbations": entries,
        "overall": {"robustness": float(np.mean([e["robustness"] for e in entries])),
                    "metric_drop": float(np.mean([summarize(list(clean_folds.values()), [headline])[headline]["mean"]
                                                  - e["summary"][headline]["mean"] for e in entries]))},
        "warnings": warnings, "seconds": round(time.perf_counter() - t_start, 1),
    }
    _write(out, result, _changes_tsv(task, names, test, clean, parts, fold_names, perturbations), audio)
    log(robustness_markdown(result))
    return result


def _changes_tsv(task: str, names: list[str], test, clean: np.ndarray, parts, fold_names, perturbations) -> str:
    def shown(p: np.ndarray) -> list[str]:
        if task == "regression":
            return [f"{v:.6f}" for v in p]
        if task == "multilabel":
            return ["+".join(n for n, v in zip(names, p) if v > 1.0 / len(names))]
        return [names[int(p.argmax())]]

    width = len(names) if task == "regression" else 1
    suffixes = [f"_{n}" for n in names] if task == "regression" else [""]
    header = ["fold", "key", "perturbation", "value", *(f"clean{s}" for s in suffixes),
              *(f"perturbed{s}" for s in suffixes), "changed"]
    lines = ["\t".join(header)]
    for p in perturbations:
        perturbed = np.concatenate([parts[f][p.name] for f in fold_names])
        values = np.concatenate([parts[f][f"{p.name}:value"] for f in fold_names])
        ch = changed(task, clean, perturbed)
        for i in range(len(test)):
            flag = ch[i].any() if ch.ndim > 1 else ch[i]
            lines.append("\t".join([test.folds[i], test.keys[i], p.name, f"{values[i]:g}", *shown(clean[i])[:width],
                                    *shown(perturbed[i])[:width], "1" if flag else "0"]))
    return "\n".join(lines) + "\n"


def robustness_markdown(result: dict[str, Any]) -> str:
    """results.md: per perturbation the robustness, the changed utterances and the headline metric clean and
    perturbed (mean ± std over folds)."""
    from ..downstream.report import corpus_name

    metric = result["headline"]
    name = METRIC_NAMES.get(metric, metric)
    clean = result["clean"]["summary"][metric]
    lines = [f"# Robustness: {corpus_name(str(result['corpus']))} / {result['source']}", ""]
    if result["warnings"]:
        lines += ["**WARNINGS:**", *(f"- **{w}**" for w in result["warnings"]), ""]
    lines += [f"- run: `{result['run']}` ({result['task']}), {result['utterances']} test utterances of "
              f"{len(result['folds'])} fold(s); features recomputed with `{result['feature_source']}` "
              f"({result['feature_settings'].get('granularity')}-level, layers "
              f"{result['feature_settings'].get('layers')}, {result['feature_settings'].get('dtype')})",
              f"- robustness = share of utterances whose prediction does not change"
              + (f" (|change| < {result['threshold']:g} per target; the mean over targets)"
                 if result["task"] == "regression" else "") + f"; seed {result['seed']}; the clean re-extraction "
              f"agrees with the run's predictions on {100 * result['clean_agreement']:.2f} %", "",
              f"| Perturbation | Values | Robustness (%) | Changed | {name} clean | {name} perturbed | Δ {name} |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for e in result["perturbations"]:
        s = e["summary"][metric]
        lines.append(f"| {e['name']} | {', '.join(f'{v:g}' for v in e['values'])} {e['unit']} | "
                     f"{100 * e['robustness']:.2f} | {e['changed']} / {e['n']} | "
                     f"{format_metric(metric, clean['mean'])} ± {format_metric(metric, clean['std'])} | "
                     f"{format_metric(metric, s['mean'])} ± {format_metric(metric, s['std'])} | "
                     f"{format_metric(metric, s['mean'] - clean['mean'])} |")
    o = result["overall"]
    lines += [f"| **mean** | | **{100 * o['robustness']:.2f}** | | | | "
              f"{format_metric(metric, -o['metric_drop'])} |", "",
              "Per drawn value (robustness %): "
              + "; ".join(f"{e['name']} " + ", ".join(f"{v} {100 * r['robustness']:.1f}"
                                                      for v, r in e["per_value"].items())
                          for e in result["perturbations"]), "",
              f"{name} as mean ± population std over folds" + (" in percent" if metric in PERCENT_METRICS else "")
              + "; Δ = perturbed minus clean.", "", "![robustness](robustness.png)", ""]
    return "\n".join(lines)


def robustness_png(result: dict[str, Any]) -> bytes:
    """Bars: robustness per perturbation (left), the headline metric clean and perturbed (right)."""
    from ..downstream.report import _figure, _png, corpus_name

    metric = result["headline"]
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    entries = result["perturbations"]
    x = np.arange(len(entries))
    fig = _figure((max(8.0, 1.1 * len(entries) + 4.0), 3.8))
    ax = fig.add_subplot(1, 2, 1)
    bars = ax.bar(x, [100 * e["robustness"] for e in entries], color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(100 * result["overall"]["robustness"], color="black", linestyle="--", linewidth=1, label="mean")
    ax.set_xticks(x)
    ax.set_xticklabels([e["name"] for e in entries], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("robustness (% unchanged)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax = fig.add_subplot(1, 2, 2)
    clean = scale * result["clean"]["summary"][metric]["mean"]
    ax.bar(x, [scale * e["summary"][metric]["mean"] for e in entries],
           yerr=[scale * e["summary"][metric]["std"] for e in entries], color="tab:orange", capsize=2,
           label="perturbed")
    ax.axhline(clean, color="black", linestyle="--", linewidth=1, label=f"clean {clean:.1f}")
    ax.set_xticks(x)
    ax.set_xticklabels([e["name"] for e in entries], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(METRIC_NAMES.get(metric, metric) + (" (%)" if scale == 100.0 else ""))
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{corpus_name(str(result['corpus']))} / {result['source']}: robustness to perturbations",
                 fontsize=10)
    return _png(fig)


def robustness_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table across robustness runs (``emotion2vec report``): per run its corpus, feature source, the probe
    or fine-tuning run it perturbed, the test utterances, the robustness (%) under each perturbation ("–" where
    the run left it out), their mean and the mean change of the headline metric."""
    from ..downstream.report import corpus_name

    names = list(dict.fromkeys(e["name"] for r in results for e in r["perturbations"]))
    lines = ["| Corpus | Features | Run | Utterances | " + " | ".join(names) + " | Mean | Δ headline |",
             "|---|---|---|---:|" + "---:|" * (len(names) + 2)]
    for r in results:
        by_name = {e["name"]: e for e in r["perturbations"]}
        metric = r["headline"]
        cells = [f"{100 * by_name[n]['robustness']:.2f}" if n in by_name else "–" for n in names]
        lines.append(f"| {corpus_name(str(r['corpus']))} | {r['source']} | {Path(str(r['run'])).name} | "
                     f"{r['utterances']} | " + " | ".join(cells) + f" | {100 * r['overall']['robustness']:.2f} | "
                     f"{METRIC_NAMES.get(metric, metric)} {format_metric(metric, -r['overall']['metric_drop'])} |")
    return "\n".join(lines) + "\n"
