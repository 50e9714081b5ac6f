"""``emotion2vec probe``: downstream heads trained per fold on frozen features.

:func:`run_probe` reads a feature folder (``emotion2vec extract``) and a prepared corpus (``emotion2vec prepare``),
builds the task's targets (:mod:`.targets`), checks every fold before training (a categorical fold whose test labels
never occur in its training set, or whose training set holds fewer than two labels, is refused by name), audits the
folds for leakage (:mod:`.audit`: a protocol that promises speaker independence but shares speakers is refused, an
imported split that shares them is reported loudly), trains a :class:`~.heads.Head` per fold
(:func:`~.training.train_fold`), and returns a :class:`ProbeResult` whose ``to_dict()`` is ``results.json``.

A fold without valid keys gets a seeded random ``valid_fraction`` (0.2) of its train keys as valid, as the official
recipe's 80/20 split; ``valid_fraction 0`` then keeps the last epoch. ``valid_is_test`` selects on the test keys and
trains on train + valid (the optimistic "*" rows of the paper; the official ``eval_is_test``).

Cross-corpus (``test_features`` + ``test_data``): one fold trained on every utterance of the training corpus (its
dev set carved from it as above) and tested on every utterance of the test corpus; ``label_map`` ("old=new,...",
applied to both corpora, an empty new label drops the rows) renames labels, and test labels that are not training
classes are listed and refused.

Outputs in ``out`` (all written atomically): ``results.json``, ``results.md``, ``predictions.tsv``,
``confusion.png`` (class tasks), ``layer_weights.png`` (``--layer weighted``) and ``heads/<fold>.pt`` (each fold's
selected head with its config, standardisation, class or target names, layer choice and the feature folder's
settings: :func:`~.heads.load_head` reads it back) -- see :mod:`.report`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import ProbeError
from .features import PackedFeatures, append_utterances, load_features, load_sources
from .heads import Head, save_head
from .metrics import HEADLINE, METRIC_NAMES, PERCENT_METRICS, summarize, summary_metrics
from .targets import Targets, apply_label_map, build_targets, vote_classes
from .training import FoldResult, ProbeConfig, head_config, train_fold

__all__ = ["RESULTS_FORMAT", "ProbeResult", "check_fold_labels", "run_probe"]

RESULTS_FORMAT = "emotion2vec-probe-results"
#: 2: task, loss, head, targets, headline, bootstrap intervals, audit, layer weights, feature settings, saved heads
RESULTS_VERSION = 2
#: first-layer multiply-adds of an average batch below which training runs on one CPU thread
SMALL_BATCH_WORK = 1 << 28


def read_inputs(data_dir: Path, protocol: str | None, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """data.tsv rows and the checked folds (the manifest and folds modules own the formats and their checks)."""
    from ..io.manifests import read_data_tsv
    from .folds import load_folds

    try:
        return read_data_tsv(data_dir / "data.tsv"), load_folds(data_dir, protocol=protocol, seed=seed)
    except ValueError as e:  # ManifestError, FoldsError
        raise ProbeError(str(e)) from None


def _read_rows(data_dir: Path) -> list[dict]:
    from ..io.manifests import read_data_tsv

    try:
        return read_data_tsv(data_dir / "data.tsv")
    except ValueError as e:
        raise ProbeError(str(e)) from None


def pick_folds(folds: list[dict], spec: str | None) -> list[dict]:
    if not spec:
        return folds
    by_name = {f["name"]: f for f in folds}
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in by_name:
            out.append(by_name[item])
        elif item.isdigit() and 1 <= int(item) <= len(folds):
            out.append(folds[int(item) - 1])
        else:
            raise ProbeError(f"--folds: no fold {item!r} (folds: {', '.join(by_name)})")
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ProbeError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeError(f"--device {name}: CUDA is not available")
    return device


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


def _fmt(metric: str, value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{100 * value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def carve_valid(train: Sequence, fraction: float, seed: int, index: int) -> tuple[list, list]:
    """A seeded random ``fraction`` of ``train`` (at least one) as valid. -> (train, valid), each in ``train``'s order.
    Probe, fine-tuning and conversation runs carve the same utterances for the same (seed, fold index)."""
    order = np.random.default_rng([seed, index]).permutation(len(train))
    n_valid = max(1, int(round(fraction * len(train))))
    return [train[j] for j in sorted(order[n_valid:])], [train[j] for j in sorted(order[:n_valid])]


def fold_splits(f: Mapping, index: int, seed: int, valid_fraction: float, valid_is_test: bool
                ) -> tuple[list, list, list, str]:
    """train, valid, test of fold ``f`` (the ``index``-th selected) with the dev rules: the fold's own valid set;
    else a seeded ``valid_fraction`` of train (:func:`carve_valid`); 0 = none (the last epoch is kept); with
    ``valid_is_test`` train + valid train and the test set selects. -> (train, valid, test, a note for the log)."""
    train, valid, test = list(f["train"]), list(f["valid"]), list(f["test"])
    if valid_is_test:
        return train + valid, test, test, " (selecting on test)"
    if not valid and valid_fraction > 0:
        train, valid = carve_valid(train, valid_fraction, seed, index)
        return train, valid, test, f" (valid = random {valid_fraction:.0%} of train)"
    return train, valid, test, "" if valid else " (no valid: last epoch)"


def _run_fold(packed: PackedFeatures, targets: Targets, f: dict, i: int, config: ProbeConfig, log
              ) -> tuple[FoldResult, list[int]]:
    """``f``: a fold whose train / valid / test hold positions in ``packed`` and ``targets``. -> (its result, the
    positions its epoch was selected on)."""
    train, valid, test, note = fold_splits(f, i, config.seed, config.valid_fraction, config.valid_is_test)
    result = train_fold(packed, targets, train, valid, test, config, name=f["name"])
    shown = " ".join(f"{METRIC_NAMES[m]} {_fmt(m, result.test.get(m))}"
                     for m in summary_metrics(config.task)[:4])
    ci = (f"; {METRIC_NAMES[result.ci['metric']]} 95% CI [{_fmt(result.ci['metric'], result.ci['low'])}, "
          f"{_fmt(result.ci['metric'], result.ci['high'])}]" if result.ci else "")
    log(f"probe: {result.name}: train {result.n_train} valid {result.n_valid} test {result.n_test}{note}; "
        f"best epoch {result.best_epoch}/{result.epochs_run}; test {shown}{ci} ({result.seconds:.1f}s)")
    return result, valid


def check_fold_labels(folds: Sequence[dict], label_of: dict[str, str], allow_unseen: bool = False) -> list[str]:
    """Refuse folds a classifier cannot learn: fewer than two labels in train, or test labels absent from train.

    With ``allow_unseen`` (cross-corpus work) the second case is returned as warnings instead.
    """
    warnings: list[str] = []
    for f in folds:
        train_labels = sorted({label_of[k] for k in f["train"]})
        if len(train_labels) < 2:
            raise ProbeError(f"{f['name']}: the training set holds {len(train_labels)} label(s) "
                             f"({', '.join(train_labels) or 'none'}); a classifier needs at least two")
        unseen = sorted({label_of[k] for k in f["test"]} - set(train_labels))
        if unseen:
            n = sum(label_of[k] in unseen for k in f["test"])
            msg = (f"{f['name']}: {n} test utterance(s) carry label(s) {', '.join(unseen)} that never occur in its "
                   f"training set ({', '.join(train_labels)})")
            if not allow_unseen:
                raise ProbeError(msg + "; the fold cannot score them (check the split, e.g. a speaker regex that "
                                       "captures the emotion), or pass --allow-unseen-test-labels to score anyway")
            warnings.append(msg + " -- scored anyway (--allow-unseen-test-labels)")
    return warnings


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
    folds: list[FoldResult]
    timing: dict[str, float]
    feature_settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    cross_corpus: dict[str, Any] | None = None
    concat: list[dict[str, Any]] = field(default_factory=list)  # feature sources joined to ``features``

    def head_meta(self, fold: FoldResult) -> dict[str, Any]:
        """What a saved head needs besides its weights to be used again."""
        return {"task": self.config.task, "loss": self.config.loss, "names": list(self.names),
                "layer": self.layer, "stored_layers": list(self.stored_layers), "granularity": self.granularity,
                "standardize": self.config.standardize, "feature_settings": self.feature_settings,
                "fold": fold.name, "corpus": self.corpus, "protocol": self.protocol, "source": self.source,
                "config": asdict(self.config), "concat": self.concat}

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__

        task = self.config.task
        classes = task != "regression"
        folds_out = []
        for fr in self.folds:
            entry = {"name": fr.name, "n_train": fr.n_train, "n_valid": fr.n_valid, "n_test": fr.n_test,
                     "best_epoch": fr.best_epoch, "epochs_run": fr.epochs_run, "valid": fr.valid, "test": fr.test,
                     "ci": fr.ci, "seconds": round(fr.seconds, 3), "history": fr.history,
                     "head_file": f"heads/{fr.name}.pt"}
            if fr.layer_weights is not None:
                entry["layer_weights"] = fr.layer_weights
            folds_out.append(entry)
        result = {
            "format": RESULTS_FORMAT,
            "version": RESULTS_VERSION,
            "corpus": self.corpus,
            "protocol": self.protocol,
            "speaker_independent": self.speaker_independent,
            "task": task,
            "loss": self.config.loss,
            "head": {"type": self.config.head, "pooling": self.config.pooling, "hidden": self.config.hidden,
                     "dropout": self.config.dropout, "layer_mix": self.layer == "weighted",
                     **({"arcface_scale": self.config.arcface_scale, "arcface_margin": self.config.arcface_margin}
                        if self.config.head == "arcface" else {})},
            "targets": list(self.names),
            "headline": HEADLINE[task],
            "source": self.source,
            "features": self.features,
            "data": self.data,
            "granularity": self.granularity,
            "dim": self.dim,
            "stored_layers": self.stored_layers,
            "layer": self.layer,
            "feature_settings": self.feature_settings,
            "labels": list(self.names) if classes else [],
            "parameters": self.parameters,
            "config": asdict(self.config),
            "device": self.device,
            "folds": folds_out,
            "summary": summarize([fr.test for fr in self.folds], summary_metrics(task, self.names)),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "audit": self.audit,
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "emotion2vec_version": __version__,
            "torch_version": torch.__version__,
        }
        if "confusion" in (self.folds[0].test if self.folds else {}):
            result["confusion"] = np.sum([fr.test["confusion"] for fr in self.folds], axis=0).tolist()
        weights = [fr.layer_weights for fr in self.folds if fr.layer_weights is not None]
        if weights:
            result["layer_weights"] = {"layers": self.stored_layers, "mean": np.mean(weights, axis=0).tolist(),
                                       "std": np.std(weights, axis=0).tolist()}
        if self.cross_corpus:
            result["cross_corpus"] = self.cross_corpus
        if self.concat:
            result["concat"] = self.concat
        return result

    def predictions(self, targets: Targets, position: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
        """One record per test utterance of every fold: fold, key, true targets, prediction, probabilities or
        predicted values (see :func:`.report.predictions_tsv`)."""
        out = []
        side = "test" if self.cross_corpus else "data"
        hard = targets.y if targets.task == "categorical" else targets.hard  # None for regression
        for fr in self.folds:
            for key, p in zip(fr.test_keys, fr.predictions):
                i = position[(side, key)]
                out.append({"fold": fr.name, "key": key, "target": targets.y[i], "predicted": p,
                            "label": None if hard is None else targets.names[int(hard[i])]})
        return out


def _names(config: ProbeConfig, fold_spec: Mapping, rows: Sequence[Mapping]) -> list[str]:
    if config.task == "regression":
        return list(config.targets)
    if config.task == "categorical":
        return [str(label) for label in fold_spec.get("labels") or sorted({r["label"] for r in rows})]
    return vote_classes(rows)


def _hashes(rows: Sequence[Mapping], data_dir: Path, enabled: bool, log):
    from .audit import HASH_CACHE, audio_hashes

    if not enabled:
        return None, []
    return audio_hashes(rows, data_dir / HASH_CACHE, log)


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
    from .audit import audit_cross, audit_folds, audit_summary
    from .corpora import parse_label_map

    config = config or ProbeConfig()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir = Path(data)
    if data_dir.is_file():
        data_dir = data_dir.parent
    features = Path(features)
    cross = test_features is not None or test_data is not None
    if cross and (test_features is None or test_data is None):
        raise ProbeError("cross-corpus testing needs both --test-features and --test-data")
    if label_map and not cross:
        raise ProbeError("--label-map applies to cross-corpus runs (with --test-features and --test-data)")
    if cross and concat_features:
        raise ProbeError("--concat-features applies to runs on one corpus, not to cross-corpus testing")
    warnings: list[str] = []
    cross_info = None
    if cross:
        test_dir = Path(test_data)
        test_dir = test_dir.parent if test_dir.is_file() else test_dir
        mapping = parse_label_map(label_map)
        rows, dropped_a = apply_label_map(_read_rows(data_dir), mapping)
        test_rows, dropped_b = apply_label_map(_read_rows(test_dir), mapping)
        if not test_rows:
            raise ProbeError(f"--label-map dropped every utterance of {test_dir}")
        train_corpus, test_corpus = data_dir.name, test_dir.name
        fold_spec: dict[str, Any] = {"corpus": f"{train_corpus}->{test_corpus}", "protocol": "cross-corpus",
                                     "speaker_independent": None, "labels": sorted({r["label"] for r in rows}),
                                     "folds": [{"name": "cross-corpus", "train": [r["key"] for r in rows],
                                                "valid": [], "test": [r["key"] for r in test_rows]}]}
        selected = fold_spec["folds"]
        cross_info = {"train_corpus": train_corpus, "test_corpus": test_corpus, "test_features": str(test_features),
                      "test_data": str(test_dir), "label_map": mapping,
                      "dropped": {"train": dropped_a, "test": dropped_b}}
    else:
        rows, fold_spec = read_inputs(data_dir, protocol, fold_seed)
        test_rows = []
        selected = pick_folds(list(fold_spec["folds"]), folds)
    if train_fraction != 1.0:
        from ..analysis.efficiency import subsample_train

        selected = subsample_train(selected, {r["key"]: r["label"] for r in rows}, train_fraction, config.seed)
    names = _names(config, fold_spec, rows)
    if cross:
        _check_cross_labels(config.task, names, test_rows, dropped_b)
    elif config.task in ("categorical", "soft"):
        warnings += check_fold_labels(selected, {r["key"]: r["label"] for r in rows}, allow_unseen_test_labels)
    for w in warnings:
        log(f"probe: warning: {w}")

    # leakage audit (a broken speaker-independence promise raises before any training)
    if cross:
        audit = audit_cross(rows, test_rows, *(_hashes(rs, d, audit_audio, log)[0]
                                               for rs, d in ((rows, data_dir), (test_rows, test_dir))))
    else:
        hashes, unreadable = _hashes(rows, data_dir, audit_audio, log)
        audit = audit_folds(rows, {**fold_spec, "folds": selected}, hashes, unreadable)
    log(audit_summary(audit) + (f"\n  (per-fold table: {Path(out) / 'results.md'})" if out is not None else ""))
    warnings += [f"leakage audit: {w}" for w in audit["warnings"]]

    # positions: (side, key) -> row of the packed features and of the targets
    by_key = {r["key"]: r for r in rows}
    keys = list(dict.fromkeys(k for f in selected for split in ("train", "valid", "test") for k in f[split]
                              if not (cross and split == "test")))
    log(f"probe: loading {len(keys)} feature files from {features}"
        + "".join(f" + {c}" for c in concat_features))
    packed, info = load_sources(features, keys, layer, concat_features, concat_layer)
    ordered_rows = [by_key[k] for k in keys]
    position = {("data", k): i for i, k in enumerate(keys)}
    if cross:
        test_keys = [r["key"] for r in test_rows]
        log(f"probe: loading {len(test_keys)} test feature files from {test_features}")
        test_packed, test_info = load_features(test_features, test_keys, layer)
        if test_info["stored_layers"] != info["stored_layers"] and info["layer"] == "weighted":
            raise ProbeError(f"--layer weighted: the test features hold layers {test_info['stored_layers']}, the "
                             f"training features {info['stored_layers']}")
        packed = append_utterances(packed, test_packed)
        cross_info["test_feature_settings"] = test_info["settings"]
        position.update({("test", k): len(keys) + i for i, k in enumerate(test_keys)})
        ordered_rows += list(test_rows)
        info["empty"] += test_info["empty"]
        info["frames"] += test_info["frames"]
    if info["empty"]:
        log(f"probe: warning: {len(info['empty'])} utterance(s) have 0 frames (their pooled vector is 0), "
            f"e.g. {info['empty'][:3]}")
    targets = build_targets(config.task, ordered_rows, names, where=str(data_dir / "data.tsv"))
    for n in targets.notes:
        log(f"probe: note: {n}")
    dev = resolve_device(device)
    packed = packed.to(dev)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in Head(head_config(config, packed, len(names))).parameters())
    log(f"probe: {config.task} task ({config.loss} loss, {config.head} head, {config.pooling} pooling), "
        f"{info['granularity']}-level features, dim {packed.dim}"
        + (f" x {packed.num_layers} layers" if packed.num_layers > 1 else "")
        + f", {info['frames']} frames, {len(names)} {'targets' if config.task == 'regression' else 'classes'} "
          f"{names}, {n_params:,} parameters, device {dev} (loaded in {load_s:.1f}s)")

    side = {"train": "data", "valid": "data", "test": "test" if cross else "data"}
    positioned = [{"name": f["name"], **{s: [position[(side[s], k)] for k in f[s]] for s in ("train", "valid", "test")}}
                  for f in selected]
    batch_work = (config.batch_size * info["frames"] / max(len(position), 1) * packed.dim * packed.num_layers
                  * config.hidden)
    if threads is None and batch_work < SMALL_BATCH_WORK:
        threads = 1
    with cpu_settings(threads):
        fold_runs = [_run_fold(packed, targets, f, i, config, log) for i, f in enumerate(positioned)]
    fold_results = [fr for fr, _ in fold_runs]
    train_s = time.perf_counter() - t0 - load_s

    result = ProbeResult(
        corpus=fold_spec.get("corpus") or data_dir.name, protocol=fold_spec.get("protocol", protocol),
        speaker_independent=fold_spec.get("speaker_independent"), source=name or features.name,
        features=str(features), data=str(data_dir), granularity=info["granularity"], dim=packed.dim,
        stored_layers=info["stored_layers"], layer=info["layer"], names=names, parameters=n_params,
        config=config, device=str(dev), folds=fold_results, warnings=warnings, notes=targets.notes + audit["notes"],
        feature_settings=info["settings"], audit=audit, cross_corpus=cross_info, concat=info.get("concat", []),
        timing={"load_s": load_s, "train_s": train_s, "total_s": time.perf_counter() - t0})
    result_dict = result.to_dict()
    # fairness and per-speaker analysis of the test predictions, valid predictions for ensembles (emotion2vec.analysis)
    from ..analysis.fairness import group_analysis, group_summary
    from ..analysis.runs import VALID_PREDICTIONS, Predictions

    test_preds = Predictions.from_records(result.predictions(targets, position), config.task, names)
    result_dict.update(group_analysis(test_preds, {r["key"]: r for r in (test_rows if cross else rows)}, group_by,
                                      speaker_min, config.bootstrap, config.seed))
    if train_fraction != 1.0:
        result_dict["train_fraction"] = train_fraction
    for line in group_summary(result_dict):
        log(f"probe: {line}")
    if out is not None:
        from ..analysis.inference import fold_predictions
        from ..analysis.plots import write_analysis_plots
        from ..io.atomic import atomic_write_text

        for fr in fold_results:
            save_head(Path(out) / "heads" / f"{fr.name}.pt", fr.head, **result.head_meta(fr))
        valid_preds = fold_predictions(packed, targets, [(fr.name, fr.head, result.head_meta(fr), positions)
                                                         for fr, positions in fold_runs])
        atomic_write_text(Path(out) / VALID_PREDICTIONS, report.predictions_tsv(valid_preds.records(), names,
                                                                               config.task))
        if embedding is not None:
            from ..analysis.embedding import write_embedding

            write_embedding(out, result_dict, test_preds, {fr.name: fr.head for fr in fold_results}, embedding,
                            packed, [position[(side["test"], k)] for k in test_preds.keys], config.seed,
                            embedding_colour)
        write_analysis_plots(out, result_dict)
        report.write_outputs(out, result_dict, test_preds.records())
        log(f"probe: wrote {', '.join(report.output_files(result_dict))}, {VALID_PREDICTIONS} and heads/ to {out}")
    log(report.summary_markdown(result_dict))
    return result_dict
