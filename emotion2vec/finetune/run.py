"""``emotion2vec finetune``: per fold, an upstream and a head trained end to end on waveforms, scored like a probe.

:func:`run_finetune`, step by step (the steps a probe shares are in :mod:`emotion2vec.downstream.runs`):
    1. read a prepared corpus (``data.tsv`` + folds, as ``probe``), build the task's targets, check the audio and
       each fold's train / valid / test
    2. load the upstream, plan what trains, load the speaker model, check the start head and the schedule
    3. compare the settings with a run already in ``out`` (nothing is written before this point), audit the folds
    4. for every fold not finished earlier: train :class:`~.model.FinetuneModel` (:func:`~.train.train_fold`) in the
       shared fold loop, which scores the selected epoch on the test keys; export it (:mod:`.export`)
    5. results.json and the other files, as a probe run's

A fold without valid keys takes a seeded random ``valid_fraction`` of its train keys, drawn exactly as the probe
draws them, so a probe and a fine-tuning run of the same corpus select on the same utterances.

``--task speaker`` ignores the corpus folds: one fold ``speaker`` splits each speaker's utterances at random (seeded;
``speaker_test_fraction`` to test, ``valid_fraction`` of the rest to valid), or with ``--speaker-split official`` by
the corpus's own identification split (its ``split`` column: VoxCeleb1's iden_split.txt); speakers with fewer than
``min_speaker_utterances`` utterances are left out (listed in the notes).

``--start-from RUN``: each fold starts from the model RUN exported for the same fold (its encoder; with
``--init-head keep`` its head too) instead of the start checkpoint's weights: Park et al.'s second step, where each
fold's trained emotion network is integrated with the speaker network (``--fusion park``).

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
    models/<fold>/                the exported model of the fold (:mod:`.export`; with ``--layer N`` the blocks above
                                  N are removed from the model that trains and is exported: :mod:`emotion2vec.models.
                                  prune`)
    results.json, results.md, predictions.tsv, valid_predictions.tsv, confusion.png, speakers.png, embedding.png
                                  as a probe run (:mod:`emotion2vec.downstream.report`: fairness and per-speaker
                                  analysis, warnings at the top), with ``model_dir`` per fold instead of a saved head
    test_<corpus>/                every fold's model scored on another corpus (``test_data``, an evaluate run)

``train_fraction`` trains on a stratified, seeded share of each fold's training keys (the probe's
:func:`emotion2vec.analysis.efficiency.subsample_train`; ``--train-fraction`` / ``--seeds`` sweeps run
:func:`emotion2vec.analysis.efficiency.run_sweep` over this function).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..device import resolve_device
from ..downstream.heads import fold_target_scaling
from ..downstream.runs import (FoldOutcome, FoldSplit, add_groups, audit_run, check_fold_labels, class_names,
                               head_entry, pick_folds, prediction_records, read_inputs, results_dict, run_folds,
                               split_folds, write_valid_predictions)
from ..downstream.training import target_scaling
from ..downstream.targets import Targets, build_targets
from ..io.atomic import atomic_write_text
from . import FinetuneError
from .config import FinetuneConfig, differences
from .data import WaveformDataset, check_audio
from .export import activation_of, classifier_spec, export_model
from .heads import UtteranceHead
from .park import JointLoss, TrainableSpeaker, build_park_head
from .model import (FinetuneModel, disable_layerdrop, head_config, kept_head, load_speaker_encoder, plan_freeze,
                    probe_head)
from .train import (FINETUNE_HINT, Collectives, FoldData, Runtime, evaluate, frame_statistics, load_model_state,
                    train_fold)

__all__ = ["RUN_FORMAT", "resolve_precision", "speaker_split", "run_finetune"]

RUN_FORMAT = "emotion2vec-finetune-run"
#: training utterances (a seeded sample) whose frames give the statistics of --standardize
STANDARDIZE_UTTERANCES = 64


# ------------------------------------------------------------------------------------------------ environment
def resolve_precision(name: str, device: torch.device, width: int | None = None) -> str:
    """``auto``: what ``benchmarks/finetune_step.py`` measured fastest (:func:`emotion2vec.device.
    auto_training_precision`): bf16 where the device computes it natively (GPUs with bf16; CPUs with AMX;
    CPUs with AVX512-BF16 alone for models ``width`` >= 768 wide), else fp16 on a GPU and fp32 on a CPU. bf16 on a CPU without
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
    if config.speaker_split == "official":  # the corpus's identification split (VoxCeleb1's iden_split.txt)
        splits = {str(r["key"]): str(r.get("split", "") or "").strip() for r in rows}
        bad = sorted(k for k, v in splits.items() if v not in fold)
        if bad:
            raise FinetuneError(f"--speaker-split official needs a split column with train/valid/test for every row "
                                f"(e.g. `prepare voxceleb1`); {len(bad)} row(s) have none (e.g. {', '.join(bad[:3])})")
        for s in kept:
            for k in by_speaker[s]:
                fold[splits[k]].append(k)
        notes = [f"speaker identification over {len(kept)} speakers on the corpus's own split"]
        if few:
            notes.append(f"left out {len(few)} speaker(s) with fewer than {config.min_speaker_utterances} "
                         f"utterances: {', '.join(few)}")
        relabelled = [{**r, "label": str(r["speaker"])} for r in rows if str(r["speaker"]) in kept]
        return relabelled, {"protocol": "speaker-id-official", "speaker_independent": False, "labels": kept,
                            "folds": [{"name": "speaker", **fold}]}, notes
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


def _stamp(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ outputs
def _results_md(result: dict[str, Any]) -> str:
    """The probe's results.md, titled as a fine-tuning run, with what was fine-tuned and how."""
    from ..downstream.metrics import METRIC_NAMES, format_metric
    from ..downstream.report import corpus_name, results_markdown

    ft = result["finetune"]
    c = result["config"]
    lines = [f"- fine-tuned: `{ft['checkpoint']}` ({ft['upstream']}), {ft['start_head']} on layer {result['layer']}; "
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
    for t in result.get("test_data") or []:
        m = t["headline"]
        s = t["summary"].get(m, {})
        lines.append(f"- tested on `{t['data']}` ({t['corpus']}, every fold's model on every utterance): "
                     f"{METRIC_NAMES.get(m, m)} {format_metric(m, s.get('mean'))} ± {format_metric(m, s.get('std'))} "
                     f"(`{Path(t['results']).name}/`)")
    return results_markdown(result, f"# Fine-tuning: {corpus_name(result['corpus'])} / {result['source']}", lines)


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
    before = old.get("settings") or {}
    now = {k: v for k, v in settings.items() if k != "folds" or k in before}  # runs from before "folds" was kept
    diffs = differences(before, now)
    if any(d.startswith("folds ") for d in diffs):  # the fold names say it; the split's hash adds nothing
        diffs = [d for d in diffs if not d.startswith("split ")]
    else:
        diffs = [("the folds hold other utterances (data.tsv or the folds file changed since that run)"
                  if d.startswith("split ") else d) for d in diffs]
    if diffs:
        raise FinetuneError(f"{out} holds a fine-tuning run with other settings: " + "; ".join(diffs)
                            + ". Re-run with that run's options to resume it, or use another --out; nothing was "
                              "changed")
    return True


def _open_output(out: Path, settings: dict[str, Any], resumed: bool) -> None:
    """``out`` created, with finetune.json (the settings) unless a run with the same settings is there."""
    out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        atomic_write_text(out / "finetune.json", json.dumps({"format": RUN_FORMAT, "settings": settings}, indent=1)
                          + "\n")


# ------------------------------------------------------------------------------------------------ 1. corpus
def _text_vectors(directory: str, keys: Sequence[str]) -> torch.Tensor:
    """(N, T) utterance vectors of ``keys`` from a feature folder (``--text-features``; its model's last layer);
    keys without features (e.g. no transcript) are listed by :func:`~emotion2vec.downstream.features.load_features`."""
    from ..downstream.features import load_features

    packed, info = load_features(directory, keys, layer=-1)
    if packed.frame:
        raise FinetuneError(f"--text-features {directory}: {info['granularity']}-level features; the head fuses one "
                            f"vector per utterance (extract with --checkpoint text:PATH or --granularity utterance)")
    return packed.x.float()


@dataclass
class _Corpus:
    """The rows, folds, classes and targets of the run, its audio, and each fold's utterances (positions)."""

    rows: list[dict]
    fold_spec: dict[str, Any]
    folds: list[dict]
    names: list[str]
    keys: list[str]  # every utterance a fold uses; position = index
    targets: Targets
    splits: list[FoldSplit]
    data: list[FoldData]  # per split
    text: torch.Tensor | None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_corpus(data_dir: Path, protocol: str | None, fold_seed: int, folds: str | None, config: FinetuneConfig,
                 allow_unseen: bool, train_fraction: float = 1.0) -> _Corpus:
    """Rows and folds (``--task speaker``: one per-speaker split instead), classes and label checks, targets, the
    audio's lengths, the text vectors, and each fold's train / valid / test under the dev rules."""
    task = config.downstream_task
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
    if train_fraction != 1.0:
        from ..analysis.efficiency import subsample_train

        selected = subsample_train(selected, {r["key"]: r["label"] for r in rows}, train_fraction, config.seed)
    names = class_names(task, fold_spec, rows, config.targets)
    warnings: list[str] = []
    if task in ("categorical", "soft"):
        warnings += check_fold_labels(selected, {r["key"]: r["label"] for r in rows}, allow_unseen)
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
    splits = split_folds(selected, config.seed, config.valid_fraction, config.valid_is_test,
                         lambda split, key: position[key])
    fold_data = []
    for sp in splits:
        scaling = target_scaling(targets, np.asarray(sp.train, dtype=np.int64)) if config.standardize_targets else None
        fold = FoldData(sp.name, dataset, lengths, targets, sp.train, sp.valid, sp.test, text, scaling)
        if not fold.train or not fold.test:
            raise FinetuneError(f"{sp.name}: empty train ({len(fold.train)}) or test ({len(fold.test)}) set")
        fold_data.append(fold)
    return _Corpus(rows, fold_spec, selected, names, keys, targets, splits, fold_data, text, warnings, notes)


# ------------------------------------------------------------------------------------------------ 2. the start model
def _new_head(config: FinetuneConfig, info, names: list[str], dim: int, speaker, checkpoint: str, fold: str,
              layer: int, text_dim: int = 0):
    """The head fold ``fold`` starts from -> (head, notes): the start checkpoint's (``--init-head keep``; with
    ``--start-from``, the fold's model's), the fold's probe head (``--head-from``), Park et al.'s
    (``--park-blocks``: :func:`~.park.build_park_head`) or a new one."""
    classifier, where = info.classifier, checkpoint
    if config.start_from and config.init_head == "keep":
        where = str(Path(config.start_from) / "models" / fold)
        classifier = _fold_model(config.start_from, fold)[1].classifier
    if config.park_blocks:
        return build_park_head(config, names, dim, speaker, classifier if config.init_head == "keep" else None,
                               where), []
    if config.init_head == "keep":
        return kept_head(classifier, names, config, dim, where)
    if config.head_from:
        return probe_head(config.head_from, fold, names, config, dim, layer, checkpoint)
    return UtteranceHead(head_config(config, dim, len(names)), config.fusion if speaker is not None else None,
                         speaker, text_dim), []


_FOLD_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _fold_model(run: str, fold: str):
    """(upstream, info) of the model ``run`` exported for ``fold`` (``--start-from``), read once."""
    from ..models.upstream import load_upstream

    key = (str(Path(run).resolve()), fold)
    if key not in _FOLD_MODELS:
        folder = Path(run) / "models" / fold
        if not folder.is_dir():
            raise FinetuneError(f"--start-from {run}: no model for fold {fold} ({folder}); the run must have "
                                f"finished the same folds")
        _FOLD_MODELS.clear()  # one fold's model at a time in memory
        _FOLD_MODELS[key] = load_upstream(str(folder))
    return _FOLD_MODELS[key]


def _fold_state(config: FinetuneConfig, fold: str, start: "_Start") -> dict[str, torch.Tensor]:
    """The upstream weights fold ``fold`` starts from: the start checkpoint's, or (``--start-from``) those of the
    fold's model of that run, which must have the start checkpoint's architecture."""
    if not config.start_from:
        return start.state
    upstream, _ = _fold_model(config.start_from, fold)
    state = upstream.state_dict()
    bad = sorted(k for k in start.state if k not in state or tuple(state[k].shape) != tuple(start.state[k].shape))
    if bad or set(state) - set(start.state):
        raise FinetuneError(f"--start-from {config.start_from}: the model of fold {fold} is not a fine-tuned "
                            f"{start.info.source} (mismatched tensors: {', '.join(bad[:5]) or 'extra tensors'})")
    return state


@dataclass
class _Start:
    """What every fold starts from: the upstream (and its weights), the layer the head reads, what trains, the
    speaker model; and notes for results.json."""

    upstream: Any
    info: Any
    num_layers: int
    dim: int
    layer: int
    freeze: Any
    speaker: Any
    state: dict[str, torch.Tensor]
    text_dim: int
    notes: list[str]

    def head(self, config: FinetuneConfig, names: list[str], checkpoint: str, fold: str):
        return _new_head(config, self.info, names, self.dim, self.speaker, checkpoint, fold, self.layer,
                         self.text_dim)

    def head_text(self, config: FinetuneConfig) -> str:
        if config.init_head == "keep" and config.start_from:
            return "each fold's kept head" + (" (Park, its fusion extended by the speaker network)"
                                              if config.fusion == "park" else "")
        if config.park_blocks:
            return (f"Park {config.head} head ({config.park_blocks} attention block(s)"
                    + (", fused with the speaker network" if config.fusion == "park" else "") + ")")
        return (f"kept {self.info.classifier.kind} head" if config.init_head == "keep" else
                f"probe's {config.head} head" if config.head_from else f"{config.head} head")


def _load_start(checkpoint: str, config: FinetuneConfig, trust: bool, corpus: _Corpus, world: int) -> _Start:
    """The upstream, its layer and freeze plan, the kept head's fit, the speaker model, every fold's start head and
    schedule: all checked before anything is written."""
    from ..models.upstream import load_upstream, upstream_kind
    from .train import schedule

    upstream, info = load_upstream(checkpoint, trust=trust)
    L, dim = upstream.cfg.num_layers, upstream.cfg.embed_dim
    if not -L <= config.layer < L:
        raise FinetuneError(f"--layer {config.layer}: {checkpoint} has {L} layers (0..{L - 1}, or -1 for the last)")
    layer = config.layer % L
    pruned: list[str] = []
    if config.prune and layer != L - 1 and config.init_head != "keep":
        from ..models.prune import prune_upstream

        pruned = prune_upstream(upstream, layer)  # the blocks above the head's layer never reach its output
        L = upstream.cfg.num_layers
        layer = L - 1
    freeze = plan_freeze(upstream, config.freeze, config.freeze_top, checkpoint)
    if config.init_head == "keep" and not config.start_from:
        if info.classifier is None:
            raise FinetuneError(f"--init-head keep: {checkpoint} has no classification head to keep (use "
                                f"--init-head new)")
        if int(info.classifier.config.get("layer", -1)) % L != layer:
            raise FinetuneError(f"--init-head keep: the head of {checkpoint} reads layer "
                                f"{info.classifier.config.get('layer', -1)}, not --layer {config.layer}")
    speaker = load_speaker_encoder(config.speaker_model, trust) if config.speaker_model else None
    text_dim = 0 if corpus.text is None else int(corpus.text.shape[1])
    start = _Start(upstream, info, L, dim, layer, freeze, speaker, {}, text_dim, list(pruned))
    for fold in corpus.data:  # checks the speaker model's fit, kept label rows, probe heads
        _, head_notes = start.head(config, corpus.names, checkpoint, fold.name)
    start.notes += head_notes
    for fold in corpus.data:
        schedule(fold, config, world)
    if (layer != L - 1 or upstream_kind(upstream) == "hf") and disable_layerdrop(upstream):
        start.notes.append("layerdrop turned off: " + (f"the head reads the intermediate layer {layer}"
                                                       if layer != L - 1 else
                                                       "transformers returns no hidden state for a dropped layer"))
    start.state = {k: v.detach().clone() for k, v in upstream.state_dict().items()}
    for fold in corpus.data if config.start_from else ():  # every fold's start model fits, before anything is written
        _fold_state(config, fold.name, start)
    return start


# ------------------------------------------------------------------------------------------------ 3. settings
def _settings(config: FinetuneConfig, checkpoint: str, data_dir: Path, protocol: str | None, corpus: _Corpus,
              world: int) -> dict[str, Any]:
    """The run's settings (finetune.json): a run already in ``out`` must have been made with the same ones."""
    from ..extract.run import checkpoint_stamp

    keys = corpus.keys
    split = [{"name": f.name, **{s: [keys[j] for j in getattr(f, s)] for s in ("train", "valid", "test")}}
             for f in corpus.data]
    return {**config.to_dict(), "checkpoint": checkpoint, "checkpoint_stamp": checkpoint_stamp(checkpoint),
            "data": str(data_dir.resolve()), "protocol": protocol, "folds": [f.name for f in corpus.data],
            "split": _stamp(split), "world_size": world,
            "speaker_model_stamp": checkpoint_stamp(config.speaker_model) if config.speaker_model else None,
            "text_features_stamp": (checkpoint_stamp(str(Path(config.text_features) / "index.tsv"))
                                    if config.text_features else None),
            "start_from_stamp": _stamp([checkpoint_stamp(str(Path(config.start_from) / "models" / f.name))
                                        for f in corpus.data]) if config.start_from else None,
            "head_from_stamp": _stamp([checkpoint_stamp(str(Path(config.head_from) / "heads" / f"{f.name}.pt"))
                                       for f in corpus.data]) if config.head_from else None}


# ------------------------------------------------------------------------------------------------ 4. the folds
def _listed(values) -> Any:
    return values.tolist() if isinstance(values, np.ndarray) else values


def _record(outcome: FoldOutcome) -> dict[str, Any]:
    """A finished fold as ``<fold>/result.json`` keeps it (its presence marks the fold done)."""
    return {**outcome.entry(), "test_keys": list(outcome.test_keys), "predictions": _listed(outcome.predictions),
            "valid_keys": list(outcome.valid_keys), "valid_predictions": _listed(outcome.valid_predictions),
            **outcome.stats}


def _from_record(r: Mapping[str, Any]) -> FoldOutcome:
    return FoldOutcome(name=r["name"], n_train=r["n_train"], n_valid=r["n_valid"], n_test=r["n_test"],
                       best_epoch=r["best_epoch"], epochs_run=r["epochs_run"], valid=r["valid"], history=r["history"],
                       seconds=r["seconds"], test_keys=r["test_keys"], predictions=r["predictions"], test=r["test"],
                       ci=r["ci"], updates={k: r[k] for k in ("num_updates", "total_updates", "best_update")
                                            if k in r},
                       extra={"model_dir": r["model_dir"]},
                       stats={k: r[k] for k in ("parameters", "trained_parameters", "warmup_updates")},
                       valid_keys=list(r.get("valid_keys") or []), valid_predictions=r.get("valid_predictions"),
                       warnings=list(r.get("warnings") or []))


def _finished(out: Path, corpus: _Corpus, coll: Collectives, main: bool) -> dict[str, FoldOutcome | None]:
    """Folds an earlier run finished (``<fold>/result.json``), read on the first process (None on the others)."""
    done = {}
    for fold in corpus.data:
        path = out / fold.name / "result.json"
        if coll.broadcast(path.exists() if main else None):
            done[fold.name] = _from_record(json.loads(path.read_text(encoding="utf-8"))) if main else None
    return done


def _fitter(out: Path, config: FinetuneConfig, corpus: _Corpus, start: _Start, checkpoint: str, runtime: Runtime,
            settings: dict[str, Any], log):
    """A fold's training from the start weights and head, its selected epoch's test predictions."""
    from ..downstream.losses import make_loss

    budget = int(config.batch_seconds * 16000)
    upstream_params = dict(start.upstream.named_parameters())
    task, names, targets = config.downstream_task, corpus.names, corpus.targets

    def fit(i: int, split: FoldSplit) -> FoldOutcome | None:
        fold = corpus.data[i]
        fold_dir = out / fold.name
        start.upstream.load_state_dict(_fold_state(config, fold.name, start))
        torch.manual_seed(config.seed)
        head, _ = start.head(config, names, checkpoint, fold.name)
        speaker_index = None
        if config.speaker_train != "frozen":  # Eq. (6): the speaker network trains, over the fold's train speakers
            speaker_of = {r["key"]: str(r.get("speaker", "") or "") for r in corpus.rows}
            spoken = [speaker_of[corpus.keys[j]] for j in fold.train]
            known = sorted({s for s in spoken if s})
            if len(known) < 2:
                raise FinetuneError(f"--speaker-train {config.speaker_train}: fold {fold.name} has {len(known)} "
                                    f"training speaker(s); the identification loss needs two or more")
            index = {s: n for n, s in enumerate(known)}
            speaker_index = torch.full((len(corpus.keys),), -1, dtype=torch.long)
            for j in fold.train:
                speaker_index[j] = index.get(speaker_of[corpus.keys[j]], -1)
            head.speaker = TrainableSpeaker(start.speaker, config.speaker_train, len(known), config.arcface_scale,
                                            plan_freeze)
        model = FinetuneModel(start.upstream, head, start.layer).to(runtime.device)
        if config.standardize:
            sample = np.random.default_rng([config.seed, i, 1]).permutation(fold.train)[:STANDARDIZE_UTTERANCES]
            head.head.set_input_norm(*frame_statistics(model, fold, sorted(int(j) for j in sample), runtime,
                                                       config.precision, budget))
        n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head.speaker."))
        n_trainable = (sum(upstream_params[n].numel() for n in start.freeze.trainable)
                       + sum(p.numel() for n, p in head.named_parameters() if not n.startswith("speaker.")))
        loss_fn = make_loss(task, config.loss, targets.y[np.asarray(fold.train)], len(names), config.head,
                            config.label_smoothing, config.cb_beta, config.arcface_scale,
                            config.arcface_margin).to(runtime.device)
        if speaker_index is not None:
            loss_fn = JointLoss(loss_fn, head.speaker, config.emotion_weight, config.id_weight, config.arcface_scale,
                                config.arcface_margin)
            loss_fn.speaker_index = speaker_index
        log(f"finetune: {fold.name}: train {len(fold.train)} valid {len(fold.valid)} test {len(fold.test)}"
            f"{split.note}; {n_params:,} parameters, {n_trainable:,} trained")
        trained = train_fold(model, loss_fn, fold, config, start.freeze, fold_dir, runtime, settings)
        if not runtime.main:
            return None
        load_model_state(model, trained.best_state, fold_dir / "checkpoint_best.pt")
        if fold.scaling is not None:
            fold_target_scaling(model.head, *fold.scaling)
        predictions = loss_fn.activate(evaluate(model, fold, fold.test, runtime, config.precision, budget)).numpy()
        valid_predictions = (loss_fn.activate(evaluate(model, fold, fold.valid, runtime, config.precision,
                                                       budget)).numpy() if fold.valid else None)
        exported = corpus.text is None  # a text-fused head needs each input's text vector, which predict cannot give
        return FoldOutcome(
            name=fold.name, n_train=len(fold.train), n_valid=len(fold.valid), n_test=len(fold.test),
            best_epoch=trained.best_epoch, epochs_run=trained.epochs_run, valid=trained.valid,
            history=trained.history, seconds=trained.seconds, test_keys=[corpus.keys[j] for j in fold.test],
            predictions=predictions, model=(model, activation_of(loss_fn)),
            updates={"num_updates": trained.num_updates, "total_updates": trained.total_updates,
                     **({"best_update": trained.best_update} if config.eval_interval_updates else {})},
            extra={"model_dir": f"models/{fold.name}" if exported else None},
            stats={"parameters": n_params, "trained_parameters": n_trainable,
                   "warmup_updates": trained.warmup_updates},
            valid_keys=[corpus.keys[j] for j in fold.valid], valid_predictions=valid_predictions,
            warnings=list(trained.warnings))

    return fit


def _keeper(out: Path, config: FinetuneConfig, corpus: _Corpus, start: _Start, checkpoint: str, data_dir: Path,
            log):
    """A scored fold exported (:mod:`.export`) and marked done (``<fold>/result.json``)."""

    def keep(outcome: FoldOutcome) -> None:
        model, activation = outcome.model
        if outcome.extra["model_dir"] is not None:
            model_dir = out / outcome.extra["model_dir"]
            export_model(model_dir, model.upstream,
                         classifier_spec(model.head, corpus.names, start.layer, config.task, config.loss, activation),
                         {"source": "emotion2vec finetune", "start_checkpoint": checkpoint,
                          "corpus": corpus.fold_spec.get("corpus") or data_dir.name, "fold": outcome.name,
                          "data": str(data_dir.resolve()), "protocol": corpus.fold_spec.get("protocol"),
                          "best_epoch": outcome.best_epoch, "num_updates": outcome.updates["num_updates"]})
            log(f"finetune: {outcome.name}: model -> {model_dir}")
        atomic_write_text(out / outcome.name / "result.json", json.dumps(_record(outcome), ensure_ascii=False) + "\n")

    return keep


# ------------------------------------------------------------------------------------------------ 5. results
def _results(config: FinetuneConfig, checkpoint: str, name: str | None, data_dir: Path, protocol: str | None,
             corpus: _Corpus, start: _Start, outcomes: list[FoldOutcome], audit: dict[str, Any], device: torch.device,
             world: int, t0: float) -> dict[str, Any]:
    """results.json: a probe's fields (:func:`~emotion2vec.downstream.runs.results_dict`), ``kind`` finetune and
    what was fine-tuned and how."""
    from ..models.upstream import upstream_kind

    first = outcomes[0]
    info, spec = start.info, corpus.fold_spec
    return results_dict(
        kind="finetune", corpus=spec.get("corpus") or data_dir.name, protocol=spec.get("protocol", protocol),
        speaker_independent=spec.get("speaker_independent"), task=config.downstream_task, loss=config.loss,
        head=head_entry(f"kept {info.classifier.kind}" if config.init_head == "keep" and not config.start_from
                        else start.head_text(config) if config.init_head == "keep" or config.park_blocks
                        else config.head, config),
        names=corpus.names, source=name or f"finetuned_{Path(checkpoint).stem}", features=f"fine-tuned {checkpoint}",
        data=str(data_dir), granularity="frame", dim=int(start.dim), stored_layers=[start.layer], layer=start.layer,
        feature_settings={}, parameters=first.stats["parameters"],
        config={**config.to_dict(), "optimizer": "adamw", "scheduler": f"{config.schedule} (warm-up "
                f"{config.warmup:g})", "batch_size": f"{config.batch_seconds:g} s of audio"},
        device=str(device),
        details={"finetune": {"task": config.task, "checkpoint": checkpoint, "upstream": f"{info.source}, "
                              f"{upstream_kind(start.upstream)}",
                              "freeze": start.freeze.describe(config.freeze, config.freeze_top),
                              "trained_parameters": first.stats["trained_parameters"], "world_size": world,
                              "start_head": start.head_text(config),
                              "warmup_updates": first.stats["warmup_updates"]}},
        folds=outcomes, warnings=corpus.warnings, notes=corpus.notes + start.notes + audit["notes"], audit=audit,
        timing={"total_s": time.perf_counter() - t0})


def _describe(checkpoint: str, config: FinetuneConfig, corpus: _Corpus, start: _Start, world: int, device,
              resumed: bool) -> str:
    from ..models.upstream import upstream_kind

    task = config.downstream_task
    return (f"finetune: {checkpoint} ({start.info.source}, {upstream_kind(start.upstream)}, {start.num_layers} "
            f"layers, dim {start.dim}), head on layer {start.layer}; "
            f"{start.freeze.describe(config.freeze, config.freeze_top)}; {config.task} task ({config.loss} loss, "
            f"{start.head_text(config)}), {len(corpus.names)} {'targets' if task == 'regression' else 'classes'}; "
            f"{len(corpus.folds)} fold(s), {world} process(es), device {device}, {config.precision}"
            + (" (resuming)" if resumed else ""))


def _write(out: Path, result: dict[str, Any], corpus: _Corpus, outcomes: list[FoldOutcome], group_by, speaker_min,
           config: FinetuneConfig, log, embedding: str | None = None, embedding_colour: str = "label",
           device="cpu") -> None:
    """valid_predictions.tsv, the fairness and per-speaker analysis, the figures, results.json and the rest."""
    from ..analysis.plots import write_analysis_plots
    from ..downstream.report import output_files, write_outputs

    position = {k: i for i, k in enumerate(corpus.keys)}.__getitem__
    records = prediction_records(outcomes, corpus.targets, position)
    write_valid_predictions(out, outcomes, corpus.targets, position)
    rows_by_key = {r["key"]: r for r in corpus.rows}
    preds = add_groups(result, records, rows_by_key, group_by, speaker_min, config.bootstrap, config.seed, log,
                       "finetune")
    if embedding is not None:
        from ..analysis.embedding import embedding_figure, model_vectors, pick_fold

        fold = pick_fold(preds.fold_names(), embedding)
        model_dir = next((f.extra.get("model_dir") for f in outcomes if f.name == fold), None)
        if not model_dir:
            raise FinetuneError(f"--embedding {embedding}: fold {fold} has no exported model (a text-fused head)")
        sub = preds.select(preds.in_fold(fold))
        log(f"finetune: embedding map of {fold}'s {len(sub)} test utterances")
        inputs, hidden = model_vectors(out / model_dir, sub.keys, rows_by_key, str(device))
        embedding_figure(out, result, fold, inputs, hidden, sub, embedding_colour, rows_by_key, seed=config.seed,
                         panels=("fine-tuned upstream, the head's layer (mean over frames)",
                                 "head hidden layer (pooled)"))
    write_analysis_plots(out, result)
    write_outputs(out, result, records, markdown=_results_md)
    log(f"finetune: wrote {', '.join(output_files(result))}, valid_predictions.tsv and models/ to {out}")


def _check_other_corpora(test_data, label_map: str | None, corpus: _Corpus, config: FinetuneConfig) -> None:
    """--test-data checked before anything is written: corpora that exist, labels the run learns (after
    ``label_map``) or the regression targets as columns; a text-fused model, never exported, is refused."""
    if not test_data:
        return
    from ..analysis.evaluate import check_labels
    from ..downstream.corpora import parse_label_map
    from ..downstream.runs import read_rows
    from ..downstream.targets import apply_label_map

    if config.text_features:
        raise FinetuneError("--test-data scores the exported models; a text-fused model is not exported")
    if config.task == "speaker":
        raise FinetuneError("--test-data scores emotion models on another corpus; --task speaker has other speakers")
    mapping = parse_label_map(label_map)
    for d in test_data:
        rows = read_rows(Path(d))
        if config.task == "regression":
            missing = [t for t in corpus.names if rows and t not in rows[0]]
            if len(missing) == len(corpus.names):
                raise FinetuneError(f"--test-data {d}: no column {', '.join(missing)} for the run's targets")
            continue
        rows, dropped = apply_label_map(rows, mapping)
        check_labels(corpus.names, config.downstream_task, rows, dropped, f"--test-data {d}", "--test-label-map")


def _other_corpora(out: Path, result: dict[str, Any], test_data, label_map: str | None, config: FinetuneConfig,
                   device, num_workers: int, audit_audio: bool, group_by, speaker_min: int, verbose: bool, log) -> None:
    """Every fold's exported model scored on each corpus of ``test_data`` (``out/test_<name>/``, an evaluate run);
    their summaries added to results.json and results.md."""
    from ..analysis.evaluate import load_trained, run_evaluate
    from ..downstream.report import write_outputs

    trained = load_trained(str(out), device=str(device), num_workers=max(num_workers, 0))
    entries = []
    for d in test_data:
        d = Path(d)
        folder = out / f"test_{d.name}"
        log(f"finetune: scoring every fold's model on {d} -> {folder}")
        r = run_evaluate(str(out), d, folder, label_map=label_map, bootstrap=config.bootstrap, seed=config.seed,
                         device=str(device), group_by=group_by, speaker_min=speaker_min, audit_audio=audit_audio,
                         verbose=verbose, trained=trained)
        entries.append({"data": str(d), "corpus": r["corpus"], "results": str(folder), "summary": r["summary"],
                        "headline": r["headline"], "warnings": r["warnings"]})
    result["test_data"] = entries
    records = _read_records(out, result)
    write_outputs(out, result, records, markdown=_results_md)


def _read_records(out: Path, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The test predictions of a finished run as records (to rewrite its files with more results)."""
    from ..analysis.runs import load_run

    return load_run(out).test.records()


# ------------------------------------------------------------------------------------------------ the run
def run_finetune(checkpoint: str, data: str | os.PathLike, out: str | os.PathLike, config: FinetuneConfig,
                 protocol: str | None = None, folds: str | None = None, fold_seed: int = 0, name: str | None = None,
                 device: str | torch.device = "auto", num_workers: int = 1, verbose: bool = True,
                 progress: bool = True, trust: bool = False, tensorboard: bool = True,
                 checksum_dir: str | os.PathLike | None = None, audit_audio: bool = True,
                 allow_unseen_test_labels: bool = False, group_by: Sequence[str] | None = None,
                 speaker_min: int = 20, train_fraction: float = 1.0, test_data: Sequence[str | os.PathLike] = (),
                 test_label_map: str | None = None, embedding: str | None = None,
                 embedding_colour: str = "label") -> dict[str, Any]:
    """Fine-tune ``checkpoint`` on every selected fold of ``data``; write the outputs to ``out`` (see the module
    docstring); return results.json's dict (an empty dict in the other processes under ``torchrun``, where every
    process runs this with the same arguments).

    Every check (options, corpus, targets, audio, checkpoint, freeze mode, speaker model, kept head, schedule, the
    settings of a run already in ``out``) runs before anything is written to ``out``.

    ``test_data``: other prepared corpora every fold's exported model is scored on after the run
    (:func:`emotion2vec.analysis.evaluate.run_evaluate`, ``test_label_map`` renaming their labels), each into
    ``out/test_<corpus folder>/`` and summarised under results.json's ``test_data``."""
    from ..downstream.report import summary_markdown

    t0 = time.perf_counter()
    dev = device if isinstance(device, torch.device) else resolve_device(device, error=FinetuneError)
    rank, world = _init_distributed(dev)
    main = rank == 0
    log = (lambda msg: print(msg, flush=True)) if verbose and main else (lambda msg: None)
    data_dir = Path(data)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    out, checkpoint = Path(out), str(checkpoint)

    corpus = _read_corpus(data_dir, protocol, fold_seed, folds, config, allow_unseen_test_labels,           # 1
                          train_fraction)
    _check_other_corpora(test_data, test_label_map, corpus, config)
    start = _load_start(checkpoint, config, trust, corpus, world)                                          # 2
    if config.precision == "auto":  # the fastest for this device and model width
        config = dataclasses.replace(config, precision=resolve_precision("auto", dev, start.dim))
    settings = _settings(config, checkpoint, data_dir, protocol, corpus, world)                            # 3
    resumed = _check_settings(out, settings)
    # nothing was written before this point
    audit, audit_warnings = audit_run(corpus.rows, corpus.fold_spec, corpus.folds, data_dir, audit_audio, log,
                                      out)
    corpus.warnings += audit_warnings
    if main:
        _open_output(out, settings, resumed)
    runtime = Runtime(dev, rank, world, num_workers, progress, tensorboard,
                      Path(checksum_dir) if checksum_dir else None, log)
    log(_describe(checkpoint, config, corpus, start, world, dev, resumed))

    outcomes = run_folds(corpus.splits, _fitter(out, config, corpus, start, checkpoint, runtime, settings, log),   # 4
                         corpus.targets, config.bootstrap, config.seed, log, "finetune",
                         earlier=_finished(out, corpus, Collectives(runtime), main),
                         keep=_keeper(out, config, corpus, start, checkpoint, data_dir, log), hint=FINETUNE_HINT)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if not main:
        return {}

    result = _results(config, checkpoint, name, data_dir, protocol, corpus, start, outcomes, audit, dev, world, t0)  # 5
    if train_fraction != 1.0:
        result["train_fraction"] = train_fraction
    _write(out, result, corpus, outcomes, group_by, speaker_min, config, log, embedding, embedding_colour, dev)
    if test_data:
        _other_corpora(out, result, test_data, test_label_map, config, dev, num_workers, audit_audio, group_by,
                       speaker_min, verbose, log)
    log(summary_markdown(result))
    return result
