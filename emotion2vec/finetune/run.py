"""``emotion2vec finetune``: per fold, an upstream and a head trained end to end on waveforms, scored like a probe.

:func:`run_finetune` reads a prepared corpus (``data.tsv`` + folds, as ``probe``), builds the task's targets, audits
the folds, then for every fold trains :class:`~.model.FinetuneModel` (:func:`~.train.train_fold`), scores the
selected epoch on the test keys and exports it (:mod:`.export`). A fold without valid keys takes a seeded random
``valid_fraction`` of its train keys, drawn exactly as the probe draws them, so a probe and a fine-tuning run of the
same corpus select on the same utterances.

``--task speaker`` ignores the corpus folds: one fold ``speaker`` splits each speaker's utterances at random (seeded;
``speaker_test_fraction`` to test, ``valid_fraction`` of the rest to valid); speakers with fewer than
``min_speaker_utterances`` utterances are left out (listed in the notes).

``text_features``: an utterance-level feature folder of the same keys (``extract --checkpoint text:PATH``: the
transcripts' embeddings) whose vector is concatenated to the pooled speech vector before the output layer (speech +
text fusion); such a model needs that vector for every input, which ``predict`` cannot give, so its folds are scored
but not exported.

``standardize``: the new head standardises its input per dimension with the mean and standard deviation of the start
model's frames over a seeded sample of up to :data:`STANDARDIZE_UTTERANCES` training utterances (the probe's
``--standardize``; they stay fixed while the upstream trains). It matters for upstreams whose features differ little
between utterances compared with their common offset (untrained or lightly trained models).

Outputs in ``out`` (written by the first process; each file atomically):
    finetune.json                 the run's settings; a re-run with other settings is refused before anything is
                                  written, naming each difference
    <fold>/checkpoint_last.pt     resume state (:mod:`.train`), <fold>/checkpoint_best.pt, <fold>/tb/ (TensorBoard)
    <fold>/result.json            the finished fold (its presence marks it done: a re-run skips it)
    models/<fold>/                the exported model of the fold (:mod:`.export`)
    results.json, results.md, predictions.tsv, confusion.png   as a probe run (:mod:`emotion2vec.downstream.report`),
                                  with ``model_dir`` per fold instead of a saved head file
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..downstream.metrics import HEADLINE, METRIC_NAMES, PERCENT_METRICS, bootstrap_ci, summarize, summary_metrics
from ..downstream.targets import Targets, build_targets, vote_classes
from ..io.atomic import atomic_write_bytes, atomic_write_text
from . import FinetuneError
from .config import FinetuneConfig, differences
from .data import WaveformDataset, check_audio
from .export import activation_of, classifier_spec, export_model
from .model import (FinetuneModel, disable_layerdrop, head_config, kept_head, load_speaker_encoder, plan_freeze,
                    probe_head)
from .heads import UtteranceHead
from .train import Collectives, FoldData, Runtime, evaluate, frame_statistics, load_model_state, train_fold

__all__ = ["RUN_FORMAT", "resolve_device", "resolve_precision", "speaker_split", "run_finetune"]

RUN_FORMAT = "emotion2vec-finetune-run"
#: training utterances (a seeded sample) whose frames give the statistics of --standardize
STANDARDIZE_UTTERANCES = 64


# ------------------------------------------------------------------------------------------------ environment
def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available (cuda:LOCAL_RANK under torchrun), else cpu."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise FinetuneError(f"--device {name!r}: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FinetuneError(f"--device {name}: CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local}")
    return device


def resolve_precision(name: str, device: torch.device, width: int | None = None) -> str:
    """``auto``: what ``benchmarks/finetune_step.py`` measured fastest (:func:`emotion2vec.device.
    auto_training_precision`): bf16 where the device computes it natively (GPUs with bf16; CPUs with AMX /
    AVX512-BF16 for models ``width`` >= 768 wide), else fp16 on a GPU and fp32 on a CPU. bf16 on a CPU without
    native bf16 (emulated: slower than fp32) and fp16 on a CPU are refused."""
    from ..device import auto_training_precision, bf16_accelerated

    if name == "auto":
        return auto_training_precision(device, width)
    if name == "bf16" and not bf16_accelerated(device):
        where = "this GPU" if device.type == "cuda" else "this CPU (no AVX512-BF16 / AMX)"
        raise FinetuneError(f"--precision bf16: {where} does not compute bf16 natively; use "
                            f"{'fp16' if device.type == 'cuda' else 'fp32'}")
    if name == "fp16" and device.type != "cuda":
        raise FinetuneError("--precision fp16 needs a GPU; on a CPU use fp32, or bf16 where the CPU has AVX512-BF16 "
                            "or AMX")
    return name


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, the process group initialised (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return dist.get_rank(), world


# ------------------------------------------------------------------------------------------------ data
def speaker_split(rows: Sequence[Mapping], config: FinetuneConfig) -> tuple[list[dict], dict[str, Any], list[str]]:
    """Speaker identification: rows relabelled with their speaker, and one fold that splits each speaker's
    utterances (see the module docstring). -> (rows, folds dict, notes)."""
    missing = [str(r["key"]) for r in rows if not str(r.get("speaker", "") or "").strip()]
    if missing:
        raise FinetuneError(f"--task speaker needs a speaker for every utterance; {len(missing)} row(s) of data.tsv "
                            f"have none (e.g. {', '.join(missing[:3])})")
    by_speaker: dict[str, list[str]] = {}
    for r in rows:
        by_speaker.setdefault(str(r["speaker"]), []).append(str(r["key"]))
    few = sorted(s for s, keys in by_speaker.items() if len(keys) < config.min_speaker_utterances)
    kept = sorted(s for s in by_speaker if s not in few)
    if len(kept) < 2:
        raise FinetuneError(f"--task speaker: {len(kept)} speaker(s) have at least {config.min_speaker_utterances} "
                            f"utterances (--min-speaker-utterances); speaker identification needs two or more")
    fold: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    rng = np.random.default_rng([config.seed, 7])
    for s in kept:
        keys = [by_speaker[s][i] for i in rng.permutation(len(by_speaker[s]))]
        n_test = max(1, int(round(config.speaker_test_fraction * len(keys))))
        n_valid = max(1, int(round(config.valid_fraction * (len(keys) - n_test)))) if config.valid_fraction else 0
        fold["test"] += keys[:n_test]
        fold["valid"] += keys[n_test:n_test + n_valid]
        fold["train"] += keys[n_test + n_valid:]
    notes = [f"speaker identification over {len(kept)} speakers; left out {len(few)} with fewer than "
             f"{config.min_speaker_utterances} utterances: {', '.join(few)}"] if few else []
    relabelled = [{**r, "label": str(r["speaker"])} for r in rows if str(r["speaker"]) in kept]
    return relabelled, {"protocol": "speaker-id", "speaker_independent": False, "labels": kept,
                        "folds": [{"name": "speaker", **fold}]}, notes


def _class_names(config: FinetuneConfig, fold_spec: Mapping, rows: Sequence[Mapping]) -> list[str]:
    if config.task == "regression":
        return list(config.targets)
    if config.downstream_task == "categorical":
        return [str(label) for label in fold_spec.get("labels") or sorted({r["label"] for r in rows})]
    return vote_classes(rows)


def _stamp(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fmt(metric: str, value: Any) -> str:
    if value is None or value != value:
        return "–"
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


# ------------------------------------------------------------------------------------------------ outputs
def _results_md(result: dict[str, Any]) -> str:
    """The probe's results.md, titled as a fine-tuning run, with what was fine-tuned and how."""
    from ..downstream.report import corpus_name, results_markdown

    ft = result["finetune"]
    c = result["config"]
    body = results_markdown(result).split("\n", 1)[1]
    lines = [f"# Fine-tuning: {corpus_name(result['corpus'])} / {result['source']}", "",
             f"- fine-tuned: `{ft['checkpoint']}` ({ft['upstream']}), {ft['start_head']} on layer {result['layer']}; "
             f"{ft['freeze']}" + (f"; head alone for the first {c['freeze_updates']} updates"
                                  if c["freeze_updates"] else ""),
             f"- AdamW lr {c['lr']:g} (head {c['head_lr']:g}, layer decay {c['layer_decay']:g}), weight decay "
             f"{c['weight_decay']:g}, {c['schedule']} schedule after {ft['warmup_updates']} warm-up updates, "
             f"batches of {c['batch_seconds']:g} s (x {c['accumulate']} accumulated x {ft['world_size']} "
             f"process(es)), clip {c['clip_norm']:g}, crops {c['max_seconds'] or 'none'} s, {c['precision']}"
             + (f"; speaker model `{c['speaker_model']}` fused by {c['fusion']}" if c["speaker_model"] else "")
             + (f"; text features `{c['text_features']}` concatenated to the pooled vector"
                if c.get("text_features") else ""),
             f"- models: " + (", ".join(f"`{f['model_dir']}`" for f in result["folds"] if f.get("model_dir"))
                              or "not exported (the head reads text features, which `predict` cannot give)")]
    return "\n".join(lines) + "\n" + body


def _write_outputs(out: Path, result: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    from ..downstream.report import confusion_png, corpus_name, predictions_tsv

    names = result.get("targets") or result["labels"]
    atomic_write_text(out / "predictions.tsv", predictions_tsv(predictions, names, result["task"]))
    if "confusion" in result:
        title = f"{corpus_name(result['corpus'])} / {result['source']} ({len(result['folds'])} fold(s))"
        atomic_write_bytes(out / "confusion.png", confusion_png(result["confusion"], result["labels"], title))
    atomic_write_text(out / "results.md", _results_md(result))
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")


def _check_settings(out: Path, settings: dict[str, Any]) -> bool:
    """Compare with the run already in ``out``; -> whether one is there. Nothing is written."""
    path = out / "finetune.json"
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FinetuneError(f"{path}: unreadable ({e}); use another --out") from None
    if old.get("format") != RUN_FORMAT:
        raise FinetuneError(f"{path}: not a fine-tuning run (format {old.get('format')!r}); use another --out")
    diffs = differences(old.get("settings") or {}, settings)
    if diffs:
        raise FinetuneError(f"{out} holds a fine-tuning run with other settings: " + "; ".join(diffs)
                            + ". Re-run with that run's options to resume it, or use another --out; nothing was "
                              "changed")
    return True


# ------------------------------------------------------------------------------------------------ the run
def _text_vectors(directory: str, keys: Sequence[str]) -> torch.Tensor:
    """(N, T) utterance vectors of ``keys`` from a feature folder (``--text-features``; its model's last layer);
    keys without features (e.g. no transcript) are listed by :func:`~emotion2vec.downstream.features.load_features`."""
    from ..downstream.features import load_features

    packed, info = load_features(directory, keys, layer=-1)
    if packed.frame:
        raise FinetuneError(f"--text-features {directory}: {info['granularity']}-level features; the head fuses one "
                            f"vector per utterance (extract with --checkpoint text:PATH or --granularity utterance)")
    return packed.x.float()


def _new_head(config: FinetuneConfig, info, names: list[str], dim: int, speaker, checkpoint: str, fold: str,
              layer: int, text_dim: int = 0):
    """The head fold ``fold`` starts from -> (head, notes): the start checkpoint's (``--init-head keep``), the
    fold's probe head (``--head-from``) or a new one."""
    if config.init_head == "keep":
        return kept_head(info.classifier, names, config, dim, checkpoint)
    if config.head_from:
        return probe_head(config.head_from, fold, names, config, dim, layer, checkpoint)
    return UtteranceHead(head_config(config, dim, len(names)), config.fusion if speaker is not None else None,
                         speaker, text_dim), []


def _predictions(fold_results: list[dict], targets: Targets, names: list[str], position: Mapping[str, int]
                 ) -> list[dict[str, Any]]:
    """predictions.tsv records (as the probe's): fold, key, true targets, label, prediction."""
    out = []
    for r in fold_results:
        for key, p in zip(r["test_keys"], r["predictions"]):
            j = position[key]
            label = (None if targets.hard is None and targets.task != "categorical" else
                     names[int(targets.y[j] if targets.hard is None else targets.hard[j])])
            out.append({"fold": r["name"], "key": key, "target": targets.y[j], "label": label, "predicted": p})
    return out


def run_finetune(checkpoint: str, data: str | os.PathLike, out: str | os.PathLike, config: FinetuneConfig,
                 protocol: str | None = None, folds: str | None = None, fold_seed: int = 0, name: str | None = None,
                 device: str | torch.device = "auto", num_workers: int = 1, verbose: bool = True,
                 progress: bool = True, trust: bool = False, tensorboard: bool = True,
                 checksum_dir: str | os.PathLike | None = None, audit_audio: bool = True,
                 allow_unseen_test_labels: bool = False) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` on every selected fold of ``data``; write the outputs to ``out`` (see the module
    docstring); return results.json's dict (an empty dict in the other processes under ``torchrun``, where every
    process runs this with the same arguments).

    Every check (options, corpus, targets, audio, checkpoint, freeze mode, speaker model, kept head, schedule, the
    settings of a run already in ``out``) runs before anything is written to ``out``."""
    from .. import __version__
    from ..downstream.audit import HASH_CACHE, audio_hashes, audit_folds, format_audit
    from ..downstream.losses import make_loss
    from ..downstream.metrics import task_metrics
    from ..downstream.probe import (RESULTS_FORMAT, RESULTS_VERSION, check_fold_labels, fold_splits, pick_folds,
                                    read_inputs)
    from ..downstream.report import summary_markdown
    from ..extract.run import checkpoint_stamp
    from ..models.upstream import load_upstream, upstream_kind
    from .train import schedule

    t0 = time.perf_counter()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    rank, world = _init_distributed(dev)
    main = rank == 0
    log = (lambda msg: print(msg, flush=True)) if verbose and main else (lambda msg: None)
    data_dir = Path(data)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    out = Path(out)
    task = config.downstream_task
    checkpoint = str(checkpoint)

    # 1. corpus, folds, targets, audio lengths
    rows, fold_spec = read_inputs(data_dir, protocol, fold_seed)
    notes: list[str] = []
    if config.task == "speaker":
        if folds:
            raise FinetuneError(f"--fold {folds}: --task speaker ignores the corpus folds (it trains one fold, "
                                f"'speaker', on a per-speaker split of the utterances)")
        rows, fold_spec, notes = speaker_split(rows, config)
        selected = fold_spec["folds"]
    else:
        selected = pick_folds(list(fold_spec["folds"]), folds)
    names = _class_names(config, fold_spec, rows)
    warnings: list[str] = []
    if task in ("categorical", "soft"):
        warnings += check_fold_labels(selected, {r["key"]: r["label"] for r in rows}, allow_unseen_test_labels)
    by_key = {r["key"]: r for r in rows}
    keys = list(dict.fromkeys(k for f in selected for s in ("train", "valid", "test") for k in f[s]))
    ordered = [by_key[k] for k in keys]
    position = {k: i for i, k in enumerate(keys)}
    targets = build_targets(task, ordered, names, where=str(data_dir / "data.tsv"))
    notes += targets.notes
    channels = [int(r["channel"]) if str(r.get("channel", "") or "").strip() else None for r in ordered]
    lengths = check_audio(keys, [str(r["path"]) for r in ordered], channels)
    dataset = WaveformDataset([str(r["path"]) for r in ordered], channels)
    text = _text_vectors(config.text_features, keys) if config.text_features else None
    text_dim = 0 if text is None else int(text.shape[1])
    fold_data, split_notes = [], []
    for i, f in enumerate(selected):
        train_keys, valid_keys, test_keys, note = fold_splits(f, i, config.seed, config.valid_fraction,
                                                              config.valid_is_test)
        fold = FoldData(f["name"], dataset, lengths, targets, [position[k] for k in train_keys],
                        [position[k] for k in valid_keys], [position[k] for k in test_keys], text)
        if not fold.train or not fold.test:
            raise FinetuneError(f"{f['name']}: empty train ({len(fold.train)}) or test ({len(fold.test)}) set")
        fold_data.append(fold)
        split_notes.append(note)

    # 2. the upstream, what trains, the speaker model, the start head, the schedule
    upstream, info = load_upstream(checkpoint, trust=trust)
    L, dim = upstream.cfg.num_layers, upstream.cfg.embed_dim
    if config.precision == "auto":  # the fastest for this device and model width
        config = dataclasses.replace(config, precision=resolve_precision("auto", dev, dim))
    if not -L <= config.layer < L:
        raise FinetuneError(f"--layer {config.layer}: {checkpoint} has {L} layers (0..{L - 1}, or -1 for the last)")
    layer = config.layer % L
    freeze = plan_freeze(upstream, config.freeze, config.freeze_top, checkpoint)
    if config.init_head == "keep":
        if info.classifier is None:
            raise FinetuneError(f"--init-head keep: {checkpoint} has no classification head to keep (use "
                                f"--init-head new)")
        if int(info.classifier.config.get("layer", -1)) % L != layer:
            raise FinetuneError(f"--init-head keep: the head of {checkpoint} reads layer "
                                f"{info.classifier.config.get('layer', -1)}, not --layer {config.layer}")
    speaker = load_speaker_encoder(config.speaker_model, trust) if config.speaker_model else None
    for fold in fold_data:  # checks the speaker model's fit, kept label rows, probe heads
        _, head_notes = _new_head(config, info, names, dim, speaker, checkpoint, fold.name, layer, text_dim)
    notes += head_notes
    for fold in fold_data:
        schedule(fold, config, world)
    if (layer != L - 1 or upstream_kind(upstream) == "hf") and disable_layerdrop(upstream):
        notes.append("layerdrop turned off: " + (f"the head reads the intermediate layer {layer}" if layer != L - 1
                                                 else "transformers returns no hidden state for a dropped layer"))
    start_state = {k: v.detach().clone() for k, v in upstream.state_dict().items()}

    # 3. settings: a run already in `out` must have been made with the same ones
    split = [{"name": f.name, **{s: [keys[j] for j in getattr(f, s)] for s in ("train", "valid", "test")}}
             for f in fold_data]
    settings = {**config.to_dict(), "checkpoint": checkpoint, "checkpoint_stamp": checkpoint_stamp(checkpoint),
                "data": str(data_dir.resolve()), "protocol": protocol, "split": _stamp(split), "world_size": world,
                "speaker_model_stamp": checkpoint_stamp(config.speaker_model) if config.speaker_model else None,
                "text_features_stamp": (checkpoint_stamp(str(Path(config.text_features) / "index.tsv"))
                                        if config.text_features else None),
                "head_from_stamp": _stamp([checkpoint_stamp(str(Path(config.head_from) / "heads" / f"{f.name}.pt"))
                                           for f in fold_data]) if config.head_from else None}
    resumed = _check_settings(out, settings)

    # nothing was written before this point
    hashes, unreadable = (audio_hashes(rows, data_dir / HASH_CACHE, log) if audit_audio else (None, []))
    audit = audit_folds(rows, {**fold_spec, "folds": selected}, hashes, unreadable)
    log(format_audit(audit))
    warnings += [f"leakage audit: {w}" for w in audit["warnings"]]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if not resumed:
            atomic_write_text(out / "finetune.json", json.dumps({"format": RUN_FORMAT, "settings": settings},
                                                                indent=1) + "\n")
    runtime = Runtime(dev, rank, world, num_workers, progress, tensorboard,
                      Path(checksum_dir) if checksum_dir else None, log)
    head_text = (f"kept {info.classifier.kind} head" if config.init_head == "keep" else
                 f"probe's {config.head} head" if config.head_from else f"{config.head} head")
    log(f"finetune: {checkpoint} ({info.source}, {upstream_kind(upstream)}, {L} layers, dim {dim}), head on layer "
        f"{layer}; {freeze.describe(config.freeze, config.freeze_top)}; {config.task} task ({config.loss} loss, "
        f"{head_text}), {len(names)} {'targets' if task == 'regression' else 'classes'}; {len(selected)} fold(s), "
        f"{world} process(es), device {dev}, {config.precision}" + (" (resuming)" if resumed else ""))

    # 4. every fold
    coll = Collectives(runtime)
    fold_results: list[dict[str, Any]] = []
    budget = int(config.batch_seconds * 16000)
    upstream_params = dict(upstream.named_parameters())
    for i, (fold, note) in enumerate(zip(fold_data, split_notes)):
        fold_dir = out / fold.name
        done_path = fold_dir / "result.json"
        if coll.broadcast(done_path.exists() if main else None):
            fold_results.append(json.loads(done_path.read_text(encoding="utf-8")) if main else {})
            log(f"finetune: {fold.name}: finished earlier ({done_path})")
            continue
        upstream.load_state_dict(start_state)
        torch.manual_seed(config.seed)
        head, _ = _new_head(config, info, names, dim, speaker, checkpoint, fold.name, layer, text_dim)
        model = FinetuneModel(upstream, head, layer).to(dev)
        if config.standardize:
            sample = np.random.default_rng([config.seed, i, 1]).permutation(fold.train)[:STANDARDIZE_UTTERANCES]
            head.head.set_input_norm(*frame_statistics(model, fold, sorted(int(j) for j in sample), runtime,
                                                       config.precision, budget))
        n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head.speaker."))
        n_trainable = (sum(upstream_params[n].numel() for n in freeze.trainable)
                       + sum(p.numel() for n, p in head.named_parameters() if not n.startswith("speaker.")))
        loss_fn = make_loss(task, config.loss, targets.y[np.asarray(fold.train)], len(names), config.head,
                            config.label_smoothing, config.cb_beta, config.arcface_scale,
                            config.arcface_margin).to(dev)
        log(f"finetune: {fold.name}: train {len(fold.train)} valid {len(fold.valid)} test {len(fold.test)}{note}; "
            f"{n_params:,} parameters, {n_trainable:,} trained")
        outcome = train_fold(model, loss_fn, fold, config, freeze, fold_dir, runtime, settings)
        if not main:
            fold_results.append({})
            continue
        load_model_state(model, outcome.best_state, fold_dir / "checkpoint_best.pt")
        predictions = loss_fn.activate(evaluate(model, fold, fold.test, runtime, config.precision, budget)).numpy()
        idx = np.asarray(fold.test)
        hard = None if targets.hard is None else targets.hard[idx]
        test = task_metrics(task, predictions, targets.y[idx], names, hard)
        ci = (bootstrap_ci(task, predictions, targets.y[idx], hard, resamples=config.bootstrap, seed=config.seed)
              if config.bootstrap else None)
        model_dir = out / "models" / fold.name
        if text is None:  # a text-fused head needs each input's text vector, which predict cannot give
            export_model(model_dir, model.upstream,
                         classifier_spec(model.head, names, layer, config.task, config.loss, activation_of(loss_fn)),
                         {"source": "emotion2vec finetune", "start_checkpoint": checkpoint,
                          "corpus": fold_spec.get("corpus") or data_dir.name, "fold": fold.name,
                          "best_epoch": outcome.best_epoch, "num_updates": outcome.num_updates})
        record = {"name": fold.name, "n_train": len(fold.train), "n_valid": len(fold.valid), "n_test": len(fold.test),
                  "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
                  "num_updates": outcome.num_updates, "warmup_updates": outcome.warmup_updates,
                  "total_updates": outcome.total_updates, "valid": outcome.valid, "test": test, "ci": ci,
                  "seconds": round(outcome.seconds, 3), "history": outcome.history,
                  "model_dir": f"models/{fold.name}" if text is None else None,
                  "test_keys": [keys[j] for j in fold.test],
                  "predictions": predictions.tolist(), "parameters": n_params, "trained_parameters": n_trainable}
        atomic_write_text(done_path, json.dumps(record, ensure_ascii=False) + "\n")
        shown = " ".join(f"{METRIC_NAMES[m]} {_fmt(m, test.get(m))}" for m in summary_metrics(task)[:4])
        log(f"finetune: {fold.name}: best epoch {outcome.best_epoch}/{outcome.epochs_run}, {outcome.num_updates} "
            f"updates; test {shown} ({outcome.seconds:.1f}s)" + (f"; model -> {model_dir}" if text is None else ""))
        fold_results.append(record)

    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if not main:
        return {}

    # 5. results like a probe run's
    first = fold_results[0]
    classes = task != "regression"
    result: dict[str, Any] = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "kind": "finetune",
        "corpus": fold_spec.get("corpus") or data_dir.name, "protocol": fold_spec.get("protocol", protocol),
        "speaker_independent": fold_spec.get("speaker_independent"), "task": task, "loss": config.loss,
        "head": {"type": f"kept {info.classifier.kind}" if config.init_head == "keep" else config.head, "pooling": config.pooling, "hidden": config.hidden,
                 "dropout": config.dropout, "layer_mix": False,
                 **({"arcface_scale": config.arcface_scale, "arcface_margin": config.arcface_margin}
                    if config.head == "arcface" else {})},
        "targets": list(names), "headline": HEADLINE[task], "source": name or f"finetuned_{Path(checkpoint).stem}",
        "features": f"fine-tuned {checkpoint}", "data": str(data_dir), "granularity": "frame", "dim": int(dim),
        "stored_layers": [layer], "layer": layer, "feature_settings": {}, "labels": list(names) if classes else [],
        "parameters": first["parameters"],
        "config": {**config.to_dict(), "optimizer": "adamw", "scheduler": f"{config.schedule} (warm-up "
                   f"{config.warmup:g})", "batch_size": f"{config.batch_seconds:g} s of audio"},
        "device": str(dev),
        "finetune": {"task": config.task, "checkpoint": checkpoint, "upstream": f"{info.source}, "
                     f"{upstream_kind(upstream)}", "freeze": freeze.describe(config.freeze, config.freeze_top),
                     "trained_parameters": first["trained_parameters"], "world_size": world,
                     "start_head": head_text,
                     "warmup_updates": first["warmup_updates"]},
        "folds": [{k: v for k, v in r.items() if k not in ("test_keys", "predictions", "parameters",
                                                            "trained_parameters", "warmup_updates")}
                  for r in fold_results],
        "summary": summarize([r["test"] for r in fold_results], summary_metrics(task, names)),
        "warnings": warnings, "notes": notes + audit["notes"], "audit": audit,
        "timing": {"total_s": round(time.perf_counter() - t0, 3)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "emotion2vec_version": __version__, "torch_version": torch.__version__,
    }
    if classes and all("confusion" in r["test"] for r in fold_results):
        result["confusion"] = np.sum([r["test"]["confusion"] for r in fold_results], axis=0).tolist()
    _write_outputs(out, result, _predictions(fold_results, targets, names, position))
    log(f"finetune: wrote results.json, results.md, predictions.tsv{', confusion.png' if 'confusion' in result else ''}"
        f" and models/ to {out}")
    log(summary_markdown(result))
    return result
