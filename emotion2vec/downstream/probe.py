"""``emotion2vec probe``: downstream heads trained per fold on frozen features.

:func:`run_probe`, step by step (the steps a fine-tuning run shares are in :mod:`.runs`):
    1. read a prepared corpus (``emotion2vec prepare``) and its folds, or two corpora for cross-corpus testing
    2. check every fold before training: a categorical fold whose test labels never occur in its training set, or
       whose training set holds fewer than two labels, is refused by name
    3. audit the folds for leakage (:mod:`.audit`: a protocol that promises speaker independence but shares speakers
       is refused, an imported split that shares them is reported loudly)
    4. load the feature folder (``emotion2vec extract``) and build the task's targets (:mod:`.targets`)
    5. train a :class:`~.heads.Head` per fold (:func:`~.training.train_fold`) in the shared fold loop, which scores
       each fold's test predictions
    6. results.json (:class:`ProbeResult`), the fairness and per-speaker analysis, and the files

A fold without valid keys gets a seeded random ``valid_fraction`` (0.2) of its train keys as valid, as the official
recipe's 80/20 split; ``valid_fraction 0`` then keeps the last epoch. ``valid_is_test`` selects on the test keys and
trains on train + valid (the optimistic "*" rows of the paper; the official ``eval_is_test``).

Cross-corpus (``test_features`` + ``test_data``): the training corpus's own folds train and select -- its official
train / valid split when data.tsv has one (a ``split`` column), else folds.json or ``protocol`` -- and every
utterance of the test corpus is each fold's test set (Wagner et al. train and select on MSP-Podcast's own split and
test on other corpora); ``label_map`` ("old=new,...", applied to both corpora, an empty new label drops the rows)
renames labels, and test labels that are not training classes are listed and refused.

Outputs in ``out`` (all written atomically): ``results.json``, ``results.md``, ``predictions.tsv``,
``confusion.png`` (class tasks), ``layer_weights.png`` (``--layer weighted``) and ``heads/<fold>.pt`` (each fold's
selected head with its config, standardisation, class or target names, layer choice and the feature folder's
settings: :func:`~.heads.load_head` reads it back) -- see :mod:`.report`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..device import resolve_device
from . import ProbeError
from .features import PackedFeatures, append_utterances, load_features, load_sources
from .heads import Head, save_head
from .runs import (FoldOutcome, add_groups, audit_run, check_fold_labels, class_names, head_entry, log_audit,
                   pick_folds, prediction_records, read_inputs, read_rows, results_dict, run_folds, split_folds,
                   valid_records, write_valid_predictions)
from .targets import Targets, apply_label_map, build_targets
from .training import PROBE_HINT, ProbeConfig, head_config, train_fold

__all__ = ["ProbeResult", "run_probe", "cpu_settings"]

#: first-layer multiply-adds of an average batch below which training runs on one CPU thread
SMALL_BATCH_WORK = 1 << 28


@contextlib.contextmanager
def cpu_settings(threads: int | None):
    """Torch CPU threads for the duration of training, and denormals flushed to zero: near-converged probes
    push RMSprop's running averages into the denormal range, where CPU float math is several times slower."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


def _check_cross_labels(task: str, names: list[str], test_rows: Sequence[Mapping], dropped: Mapping[str, int]) -> None:
    """Refuse test labels (or vote labels) that are not training classes, listing them with their counts."""
    from ..io.manifests import parse_votes

    if task == "regression":
        return
    counts: dict[str, int] = {}
    for r in test_rows:
        found = set() if task == "categorical" else {
            label for label, c in parse_votes(str(r.get("votes", "") or "")).items() if c > 0}
        found = found or {r["label"]}
        for label in found - set(names):
            counts[label] = counts.get(label, 0) + 1
    if counts:
        listed = ", ".join(f"{k} ({v} utterance(s))" for k, v in sorted(counts.items()))
        raise ProbeError(f"test label(s) not among the training classes {names}: {listed}; map them with "
                         f"--label-map OLD=NEW (e.g. {sorted(counts)[0]}={names[0]}) or drop them with OLD="
                         + (f" (dropped so far: {dict(dropped)})" if dropped else ""))


@dataclass
class ProbeResult:
    """Everything a probe run produces; :meth:`to_dict` is ``results.json``."""

    corpus: str
    protocol: str | None
    speaker_independent: bool | None
    source: str
    features: str
    data: str
    granularity: str
    dim: int
    stored_layers: list[int]
    layer: Any
    names: list[str]
    parameters: int
    config: ProbeConfig
    device: str
    folds: list[FoldOutcome]  # each with its head as ``model``
    timing: dict[str, float]
    feature_settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    cross_corpus: dict[str, Any] | None = None
    concat: list[dict[str, Any]] = field(default_factory=list)  # feature sources joined to ``features``

    def head_meta(self, fold: FoldOutcome) -> dict[str, Any]:
        """What a saved head needs besides its weights to be used again."""
        return {"task": self.config.task, "loss": self.config.loss, "names": list(self.names),
                "layer": self.layer, "stored_layers": list(self.stored_layers), "granularity": self.granularity,
                "standardize": self.config.standardize, "feature_settings": self.feature_settings,
                "fold": fold.name, "corpus": self.corpus, "protocol": self.protocol, "source": self.source,
                "config": asdict(self.config), "concat": self.concat}

    def to_dict(self) -> dict[str, Any]:
        result = results_dict(
            corpus=self.corpus, protocol=self.protocol, speaker_independent=self.speaker_independent,
            task=self.config.task, loss=self.config.loss,
            head=head_entry(self.config.head, self.config, self.layer == "weighted"), names=self.names,
            source=self.source, features=self.features, data=self.data, granularity=self.granularity, dim=self.dim,
            stored_layers=self.stored_layers, layer=self.layer, feature_settings=self.feature_settings,
            parameters=self.parameters, config=asdict(self.config), device=self.device, folds=self.folds,
            warnings=self.warnings, notes=self.notes, audit=self.audit, timing=self.timing)
        weights = [f.extra["layer_weights"] for f in self.folds if "layer_weights" in f.extra]
        if weights:
            result["layer_weights"] = {"layers": self.stored_layers, "mean": np.mean(weights, axis=0).tolist(),
                                       "std": np.std(weights, axis=0).tolist()}
        if self.cross_corpus:
            result["cross_corpus"] = self.cross_corpus
        if self.concat:
            result["concat"] = self.concat
        return result


# ------------------------------------------------------------------------------------------------ the steps
@dataclass
class _Corpus:
    """Step 1: the rows, the folds (keys) and, for cross-corpus testing, the test corpus."""

    rows: list[dict]
    fold_spec: dict[str, Any]
    folds: list[dict]
    test_rows: list[dict] = field(default_factory=list)
    test_dir: Path | None = None
    cross: dict[str, Any] | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # test labels --label-map dropped


def _folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.parent if p.is_file() else p


def _check_options(test_features, test_data, label_map, concat_features) -> bool:
    """-> whether the run tests on another corpus."""
    cross = test_features is not None or test_data is not None
    if cross and (test_features is None or test_data is None):
        raise ProbeError("cross-corpus testing needs both --test-features and --test-data")
    if label_map and not cross:
        raise ProbeError("--label-map applies to cross-corpus runs (with --test-features and --test-data)")
    if cross and concat_features:
        raise ProbeError("--concat-features applies to runs on one corpus, not to cross-corpus testing")
    return cross


def _one_corpus(data_dir: Path, protocol: str | None, fold_seed: int, folds: str | None) -> _Corpus:
    rows, fold_spec = read_inputs(data_dir, protocol, fold_seed)
    return _Corpus(rows, fold_spec, pick_folds(list(fold_spec["folds"]), folds))


def _two_corpora(data_dir: Path, test_data, test_features, label_map: str | None, protocol: str | None,
                 fold_seed: int, folds: str | None) -> _Corpus:
    """Cross-corpus: the training corpus's own folds train and select (its official split when data.tsv has one, a
    ``split`` column; else folds.json or ``protocol``), every utterance of the test corpus is each fold's test set;
    ``label_map`` applied to both."""
    from .corpora import parse_label_map
    from .folds import infer_protocol

    test_dir = _folder(test_data)
    mapping = parse_label_map(label_map)
    all_rows = read_rows(data_dir)
    if protocol is None and all_rows and infer_protocol(all_rows) == "original":
        protocol = "original"  # the corpus's official train / valid / test split
    _, own = read_inputs(data_dir, protocol, fold_seed)
    rows, dropped_a = apply_label_map(all_rows, mapping)
    test_rows, dropped_b = apply_label_map(read_rows(test_dir), mapping)
    if not test_rows:
        raise ProbeError(f"--label-map dropped every utterance of {test_dir}")
    kept = {r["key"] for r in rows}
    train_corpus, test_corpus = own.get("corpus") or data_dir.name, test_dir.name
    selected = [{"name": f["name"], "train": [k for k in f["train"] if k in kept],
                 "valid": [k for k in f["valid"] if k in kept], "test": [r["key"] for r in test_rows]}
                for f in pick_folds(list(own["folds"]), folds)]
    fold_spec: dict[str, Any] = {"corpus": f"{train_corpus}->{test_corpus}", "protocol": "cross-corpus",
                                 "speaker_independent": None, "labels": sorted({r["label"] for r in rows}),
                                 "folds": selected}
    cross = {"train_corpus": train_corpus, "test_corpus": test_corpus, "test_features": str(test_features),
             "test_data": str(test_dir), "label_map": mapping, "dropped": {"train": dropped_a, "test": dropped_b},
             "train_protocol": own.get("protocol")}
    return _Corpus(rows, fold_spec, selected, test_rows, test_dir, cross, dropped_b)


def _check_labels(config: ProbeConfig, names: list[str], corpus: _Corpus, allow_unseen: bool, log) -> list[str]:
    """Step 2: folds a head cannot learn are refused; -> warnings (unseen test labels scored anyway)."""
    warnings: list[str] = []
    if corpus.cross:
        _check_cross_labels(config.task, names, corpus.test_rows, corpus.dropped)
    elif config.task in ("categorical", "soft"):
        warnings += check_fold_labels(corpus.folds, {r["key"]: r["label"] for r in corpus.rows}, allow_unseen)
    for w in warnings:
        log(f"probe: warning: {w}")
    return warnings


def _audit(corpus: _Corpus, data_dir: Path, audit_audio: bool, log, out) -> tuple[dict[str, Any], list[str]]:
    """Step 3: the leakage audit (a broken speaker-independence promise raises before any training)."""
    if not corpus.cross:
        return audit_run(corpus.rows, corpus.fold_spec, corpus.folds, data_dir, audit_audio, log, out)
    from .audit import HASH_CACHE, audio_hashes, audit_cross

    hashes = [audio_hashes(rs, d / HASH_CACHE, log)[0] if audit_audio else None
              for rs, d in ((corpus.rows, data_dir), (corpus.test_rows, corpus.test_dir))]
    audit = audit_cross(corpus.rows, corpus.test_rows, *hashes)
    log_audit(audit, log, out)
    return audit, [f"leakage audit: {w}" for w in audit["warnings"]]


@dataclass
class _Loaded:
    """Step 4: features and targets of every utterance the folds use, addressed by ``position[(side, key)]`` (side
    ``data``, or ``test`` for the test corpus of a cross-corpus run)."""

    packed: PackedFeatures
    info: dict[str, Any]
    targets: Targets
    position: dict[tuple[str, str], int]
    side: dict[str, str]  # fold split -> side


def _load(features: Path, corpus: _Corpus, names: list[str], config: ProbeConfig, layer, concat_features,
          concat_layer, test_features, data_dir: Path, log) -> _Loaded:
    cross = corpus.cross is not None
    by_key = {r["key"]: r for r in corpus.rows}
    keys = list(dict.fromkeys(k for f in corpus.folds for split in ("train", "valid", "test") for k in f[split]
                              if not (cross and split == "test")))
    log(f"probe: loading {len(keys)} feature files from {features}"
        + "".join(f" + {c}" for c in concat_features))
    packed, info = load_sources(features, keys, layer, concat_features, concat_layer)
    ordered_rows = [by_key[k] for k in keys]
    position = {("data", k): i for i, k in enumerate(keys)}
    if cross:
        test_keys = [r["key"] for r in corpus.test_rows]
        log(f"probe: loading {len(test_keys)} test feature files from {test_features}")
        test_packed, test_info = load_features(test_features, test_keys, layer)
        if test_info["stored_layers"] != info["stored_layers"] and info["layer"] == "weighted":
            raise ProbeError(f"--layer weighted: the test features hold layers {test_info['stored_layers']}, the "
                             f"training features {info['stored_layers']}")
        packed = append_utterances(packed, test_packed)
        corpus.cross["test_feature_settings"] = test_info["settings"]
        position.update({("test", k): len(keys) + i for i, k in enumerate(test_keys)})
        ordered_rows += list(corpus.test_rows)
        info["empty"] += test_info["empty"]
        info["frames"] += test_info["frames"]
    if info["empty"]:
        log(f"probe: warning: {len(info['empty'])} utterance(s) have 0 frames (their pooled vector is 0), "
            f"e.g. {info['empty'][:3]}")
    targets = build_targets(config.task, ordered_rows, names, where=str(data_dir / "data.tsv"))
    for n in targets.notes:
        log(f"probe: note: {n}")
    side = {"train": "data", "valid": "data", "test": "test" if cross else "data"}
    return _Loaded(packed, info, targets, position, side)


def _describe(config: ProbeConfig, loaded: _Loaded, names: list[str], n_params: int, device, load_s: float) -> str:
    packed, info = loaded.packed, loaded.info
    return (f"probe: {config.task} task ({config.loss} loss, {config.head} head, {config.pooling} pooling), "
            f"{info['granularity']}-level features, dim {packed.dim}"
            + (f" x {packed.num_layers} layers" if packed.num_layers > 1 else "")
            + f", {info['frames']} frames, {len(names)} {'targets' if config.task == 'regression' else 'classes'} "
              f"{names}, {n_params:,} parameters, device {device} (loaded in {load_s:.1f}s)")


def _threads(threads: int | None, config: ProbeConfig, loaded: _Loaded) -> int | None:
    """None: 1 thread when a batch is small (< SMALL_BATCH_WORK first-layer multiply-adds), else torch's default."""
    packed = loaded.packed
    batch_work = (config.batch_size * loaded.info["frames"] / max(len(loaded.position), 1) * packed.dim
                  * packed.num_layers * config.hidden)
    return 1 if threads is None and batch_work < SMALL_BATCH_WORK else threads


def _fit(loaded: _Loaded, config: ProbeConfig):
    """Step 5: a fold's head (:func:`~.training.train_fold`), with its results.json fields."""

    def fit(i: int, split) -> FoldOutcome:
        outcome = train_fold(loaded.packed, loaded.targets, split, config)
        weights = outcome.model.layer_weights()
        outcome.extra = {"head_file": f"heads/{outcome.name}.pt",
                         **({"layer_weights": [float(v) for v in weights]} if weights is not None else {})}
        return outcome

    return fit


def _result(config: ProbeConfig, corpus: _Corpus, loaded: _Loaded, names: list[str], n_params: int, outcomes,
            warnings: list[str], audit: dict[str, Any], protocol: str | None, data_dir: Path, features: Path,
            name: str | None, device, timing: dict[str, float]) -> ProbeResult:
    fold_spec, info = corpus.fold_spec, loaded.info
    return ProbeResult(
        corpus=fold_spec.get("corpus") or data_dir.name, protocol=fold_spec.get("protocol", protocol),
        speaker_independent=fold_spec.get("speaker_independent"), source=name or features.name,
        features=str(features), data=str(data_dir), granularity=info["granularity"], dim=loaded.packed.dim,
        stored_layers=info["stored_layers"], layer=info["layer"], names=names, parameters=n_params,
        config=config, device=str(device), folds=outcomes, warnings=warnings,
        notes=loaded.targets.notes + audit["notes"], feature_settings=info["settings"], audit=audit,
        cross_corpus=corpus.cross, concat=info.get("concat", []), timing=timing)


def _write(out: Path, result: ProbeResult, result_dict: dict[str, Any], splits, loaded: _Loaded, test_preds,
           embedding: str | None, embedding_colour: str, log, corpus_rows=None) -> None:
    """Step 6: heads/<fold>.pt, valid_predictions.tsv, the analysis figures, results.json and the rest."""
    from ..analysis.plots import write_analysis_plots
    from ..analysis.runs import VALID_PREDICTIONS
    from . import report

    config = result.config
    for f in result.folds:
        save_head(out / "heads" / f"{f.name}.pt", f.model, **result.head_meta(f))
    valid_side = loaded.side["test"] if config.valid_is_test else "data"  # selecting on test: its valid is the test
    write_valid_predictions(out, result.folds, loaded.targets, lambda key: loaded.position[(valid_side, key)])
    if embedding is not None:
        from ..analysis.embedding import write_embedding

        rows_by_key = {r["key"]: r for r in (corpus_rows or [])}
        valid = valid_positions = None
        if embedding_colour == "corpus" and result.cross_corpus:
            from ..analysis.runs import Predictions

            valid = Predictions.from_records(valid_records(result.folds, loaded.targets,
                                                           lambda key: loaded.position[("data", key)]),
                                             config.task, result.names)
            valid_positions = [loaded.position[("data", k)] for k in valid.keys]
        write_embedding(out, result_dict, test_preds, {f.name: f.model for f in result.folds}, embedding,
                        loaded.packed, [loaded.position[(loaded.side["test"], k)] for k in test_preds.keys],
                        config.seed, embedding_colour, rows_by_key, valid, valid_positions or ())
    write_analysis_plots(out, result_dict)
    report.write_outputs(out, result_dict, test_preds.records())
    stale = _stale_outputs(out, result_dict, [f.name for f in result.folds])
    for path in stale:  # a run folder holds one run: an earlier run's heads and figures would pass for this one's
        path.unlink()
    log(f"probe: wrote {', '.join(report.output_files(result_dict))}, {VALID_PREDICTIONS} and heads/ to {out}"
        + (f"; removed {', '.join(str(p.relative_to(out)) for p in stale)} of an earlier run" if stale else ""))


#: figures a probe run may write, depending on its options
_FIGURES = ("confusion.png", "layer_weights.png", "speakers.png", "embedding.png")


def _stale_outputs(out: Path, result_dict: dict[str, Any], folds: Sequence[str]) -> list[Path]:
    """Files of an earlier run in ``out`` that this run did not write: heads of folds outside it (``finetune
    --head-from`` would start from them), figures its options do not make."""
    from . import report

    written = set(report.output_files(result_dict))
    heads = sorted(p for p in (out / "heads").glob("*.pt") if p.stem not in set(folds))
    return heads + [out / name for name in _FIGURES if name not in written and (out / name).is_file()]


# ------------------------------------------------------------------------------------------------ the run
def run_probe(features: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None,
              config: ProbeConfig | None = None, protocol: str | None = None, layer=None, device: str = "cpu",
              folds: str | None = None, name: str | None = None, fold_seed: int = 0, verbose: bool = True,
              threads: int | None = None, allow_unseen_test_labels: bool = False,
              test_features: str | os.PathLike | None = None, test_data: str | os.PathLike | None = None,
              label_map: str | None = None, audit_audio: bool = True, train_fraction: float = 1.0,
              group_by: Sequence[str] | None = None, speaker_min: int = 20, embedding: str | None = None,
              concat_features: Sequence[str | os.PathLike] = (), concat_layer=None,
              embedding_colour: str = "label") -> dict[str, Any]:
    """Train and score the heads on every fold; write the outputs to ``out`` (when given); return results.json's
    dict.

    ``train_fraction``: a stratified, seeded share of each fold's training keys
    (:func:`emotion2vec.analysis.efficiency.subsample_train`). ``group_by`` / ``speaker_min``: the fairness and
    per-speaker analysis (:func:`emotion2vec.analysis.fairness.group_analysis`; None = ``gender`` when present).
    ``embedding``: a fold (name or number) whose head's hidden layer is mapped to 2-D (:mod:`emotion2vec.analysis.
    embedding`).

    ``concat_features``: feature folders of the same utterances joined to ``features`` (each loaded with
    ``concat_layer``, default ``layer``; :func:`~.features.load_sources`): speech + text, frames + utterance tokens.

    ``threads``: torch CPU threads while training; None = 1 when a batch is small (< SMALL_BATCH_WORK
    multiply-adds in the first layer, e.g. any utterance-level features: the matmuls only lose to thread
    synchronisation, badly so on a busy machine), else torch's default. ``audit_audio``: compare decoded audio
    across splits in the leakage audit (hashes cached next to data.tsv).
    """
    from . import report

    config = config or ProbeConfig()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir, features = _folder(data), Path(features)
    cross = _check_options(test_features, test_data, label_map, concat_features)
    corpus = (_two_corpora(data_dir, test_data, test_features, label_map, protocol, fold_seed, folds) if cross  # 1
              else _one_corpus(data_dir, protocol, fold_seed, folds))
    if train_fraction != 1.0:
        from ..analysis.efficiency import subsample_train

        corpus.folds = subsample_train(corpus.folds, {r["key"]: r["label"] for r in corpus.rows}, train_fraction,
                                       config.seed)
    names = class_names(config.task, corpus.fold_spec, corpus.rows, config.targets)
    warnings = _check_labels(config, names, corpus, allow_unseen_test_labels, log)                         # 2
    audit, audit_warnings = _audit(corpus, data_dir, audit_audio, log, out)                                   # 3
    warnings += audit_warnings
    loaded = _load(features, corpus, names, config, layer, concat_features, concat_layer, test_features,    # 4
                   data_dir, log)
    dev = resolve_device(device, error=ProbeError)
    loaded.packed = loaded.packed.to(dev)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in Head(head_config(config, loaded.packed, len(names))).parameters())
    log(_describe(config, loaded, names, n_params, dev, load_s))

    splits = split_folds(corpus.folds, config.seed, config.valid_fraction, config.valid_is_test,               # 5
                         lambda split, key: loaded.position[(loaded.side[split], key)])
    with cpu_settings(_threads(threads, config, loaded)):
        outcomes = run_folds(splits, _fit(loaded, config), loaded.targets, config.bootstrap, config.seed, log,
                             "probe", hint=PROBE_HINT)
    train_s = time.perf_counter() - t0 - load_s

    result = _result(config, corpus, loaded, names, n_params, outcomes, warnings, audit, protocol, data_dir,    # 6
                     features, name, dev, {"load_s": load_s, "train_s": train_s, "total_s": time.perf_counter() - t0})
    result_dict = result.to_dict()
    records = prediction_records(outcomes, loaded.targets, lambda key: loaded.position[(loaded.side["test"], key)])
    test_preds = add_groups(result_dict, records, {r["key"]: r for r in (corpus.test_rows if cross else corpus.rows)},
                            group_by, speaker_min, config.bootstrap, config.seed, log, "probe")
    if train_fraction != 1.0:
        result_dict["train_fraction"] = train_fraction
    if out is not None:
        _write(Path(out), result, result_dict, splits, loaded, test_preds, embedding, embedding_colour, log,
               corpus.test_rows if cross else corpus.rows)
    log(report.summary_markdown(result_dict))
    return result_dict
