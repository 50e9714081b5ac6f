"""``emotion2vec probe``: the downstream model of the emotion2vec paper trained per fold on frozen features.

:func:`run_probe` reads a feature folder (``emotion2vec extract``) and a prepared corpus (``emotion2vec prepare``),
checks every fold before training (a fold whose test labels never occur in its training set, or whose training set
holds fewer than two labels, is refused by name), trains :class:`~.heads.ProbeModel` per fold
(:func:`~.training.train_fold`), and returns a :class:`ProbeResult` whose ``to_dict()`` is ``results.json``.

A fold without valid keys gets a seeded random ``valid_fraction`` (0.2) of its train keys as valid, as the official
recipe's 80/20 split; ``valid_fraction 0`` then keeps the last epoch. ``valid_is_test`` selects on the test keys and
trains on train + valid (the optimistic "*" rows of the paper; the official ``eval_is_test``).

Outputs in ``out`` (all written atomically): ``results.json``, ``results.md``, ``predictions.tsv``,
``confusion.png`` -- see :mod:`.report`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import ProbeError
from .features import PackedFeatures, load_features
from .heads import ProbeModel
from .metrics import summarize
from .training import FoldResult, ProbeConfig, train_fold

__all__ = ["RESULTS_FORMAT", "ProbeResult", "check_fold_labels", "run_probe"]

RESULTS_FORMAT = "emotion2vec-probe-results"
#: first-layer multiply-adds of an average batch below which training runs on one CPU thread
SMALL_BATCH_WORK = 1 << 28


def _read_inputs(data_dir: Path, protocol: str | None, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """data.tsv rows and the checked folds (the manifest and folds modules own the formats and their checks)."""
    from ..io.manifests import read_data_tsv
    from .folds import load_folds

    try:
        return read_data_tsv(data_dir / "data.tsv"), load_folds(data_dir, protocol=protocol, seed=seed)
    except ValueError as e:  # ManifestError, FoldsError
        raise ProbeError(str(e)) from None


def _pick_folds(folds: list[dict], spec: str | None) -> list[dict]:
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


def _resolve_device(name: str) -> torch.device:
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
def _cpu_settings(threads: int | None):
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


def _run_fold(packed: PackedFeatures, y: torch.Tensor, labels: list[str], position: dict[str, int], f: dict,
              i: int, config: ProbeConfig, log) -> FoldResult:
    train, valid, test = list(f["train"]), list(f["valid"]), list(f["test"])
    note = ""
    if config.valid_is_test:
        train, valid, note = train + valid, test, " (selecting on test)"
    elif not valid and config.valid_fraction > 0:
        rng = np.random.default_rng([config.seed, i])
        order = rng.permutation(len(train))
        n_valid = max(1, int(round(config.valid_fraction * len(train))))
        valid = [train[j] for j in sorted(order[:n_valid])]
        train = [train[j] for j in sorted(order[n_valid:])]
        note = f" (valid = random {config.valid_fraction:.0%} of train)"
    elif not valid:
        note = " (no valid: last epoch)"
    result = train_fold(packed, y, len(labels), [position[k] for k in train], [position[k] for k in valid],
                        [position[k] for k in test], config, name=f["name"])
    t = result.test
    log(f"probe: {result.name}: train {result.n_train} valid {result.n_valid} test {result.n_test}{note}; "
        f"best epoch {result.best_epoch}/{result.epochs_run}; test WA {100 * t['wa']:.2f} UA {100 * t['ua']:.2f} "
        f"WF1 {100 * t['wf1']:.2f} ({result.seconds:.1f}s)")
    return result


def check_fold_labels(folds: Sequence[dict], label_of: dict[str, str], allow_unseen: bool = False) -> list[str]:
    """Refuse folds a probe cannot learn: fewer than two labels in train, or test labels absent from train.

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
    labels: list[str]
    parameters: int
    config: ProbeConfig
    device: str
    folds: list[FoldResult]
    timing: dict[str, float]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__

        def relabel(metrics: dict) -> dict:
            metrics = dict(metrics)
            metrics["per_class"] = {self.labels[int(k)]: v for k, v in metrics["per_class"].items()}
            return metrics

        folds_out = [{"name": fr.name, "n_train": fr.n_train, "n_valid": fr.n_valid, "n_test": fr.n_test,
                      "best_epoch": fr.best_epoch, "epochs_run": fr.epochs_run, "valid": fr.valid,
                      "test": relabel(fr.test), "seconds": round(fr.seconds, 3), "history": fr.history}
                     for fr in self.folds]
        return {
            "format": RESULTS_FORMAT,
            "version": 1,
            "corpus": self.corpus,
            "protocol": self.protocol,
            "speaker_independent": self.speaker_independent,
            "source": self.source,
            "features": self.features,
            "data": self.data,
            "granularity": self.granularity,
            "dim": self.dim,
            "stored_layers": self.stored_layers,
            "layer": self.layer,
            "labels": self.labels,
            "parameters": self.parameters,
            "config": asdict(self.config),
            "device": self.device,
            "folds": folds_out,
            "summary": summarize([fr.test for fr in self.folds]),
            "confusion": np.sum([fr.test["confusion"] for fr in self.folds], axis=0).tolist(),
            "warnings": list(self.warnings),
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "emotion2vec_version": __version__,
            "torch_version": torch.__version__,
        }

    def predictions(self, label_of: dict[str, str]) -> list[dict[str, Any]]:
        return [{"fold": fr.name, "key": key, "label": label_of[key], "prediction": self.labels[int(p.argmax())],
                 "probabilities": p}
                for fr in self.folds for key, p in zip(fr.test_keys, fr.probabilities)]


def run_probe(features: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None,
              config: ProbeConfig | None = None, protocol: str | None = None, layer=None, device: str = "cpu",
              folds: str | None = None, name: str | None = None, fold_seed: int = 0, verbose: bool = True,
              threads: int | None = None, allow_unseen_test_labels: bool = False) -> dict[str, Any]:
    """Train and score the probe on every fold; write the outputs to ``out`` (when given); return results.json's dict.

    ``threads``: torch CPU threads while training; None = 1 when a batch is small (< SMALL_BATCH_WORK
    multiply-adds in the first layer, e.g. any utterance-level features: the matmuls only lose to thread
    synchronisation, badly so on a busy machine), else torch's default.
    """
    from . import report

    config = config or ProbeConfig()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir = Path(data)
    if data_dir.is_file():
        data_dir = data_dir.parent
    features = Path(features)
    rows, fold_spec = _read_inputs(data_dir, protocol, fold_seed)
    label_of = {r["key"]: r["label"] for r in rows}
    labels = [str(label) for label in fold_spec.get("labels") or sorted({r["label"] for r in rows})]
    selected = _pick_folds(list(fold_spec["folds"]), folds)
    warnings = check_fold_labels(selected, label_of, allow_unseen_test_labels)
    for w in warnings:
        log(f"probe: warning: {w}")
    keys = list(dict.fromkeys(k for f in selected for split in ("train", "valid", "test") for k in f[split]))
    label_index = {label: i for i, label in enumerate(labels)}

    log(f"probe: loading {len(keys)} feature files from {features}")
    packed, info = load_features(features, keys, layer)
    if info["empty"]:
        log(f"probe: warning: {len(info['empty'])} utterance(s) have 0 frames (their pooled vector is 0), "
            f"e.g. {info['empty'][:3]}")
    dev = _resolve_device(device)
    packed = packed.to(dev)
    y = torch.as_tensor([label_index[label_of[k]] for k in keys], dtype=torch.long)
    position = {k: i for i, k in enumerate(keys)}
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in ProbeModel(packed.dim, len(labels), config.hidden).parameters())
    log(f"probe: {info['granularity']}-level features, dim {packed.dim}, {info['frames']} frames, "
        f"{len(labels)} classes {labels}, {n_params:,} parameters, device {dev} (loaded in {load_s:.1f}s)")

    batch_work = config.batch_size * info["frames"] / max(len(keys), 1) * packed.dim * config.hidden
    if threads is None and batch_work < SMALL_BATCH_WORK:
        threads = 1
    with _cpu_settings(threads):
        fold_results = [_run_fold(packed, y, labels, position, f, i, config, log) for i, f in enumerate(selected)]
    train_s = time.perf_counter() - t0 - load_s

    result = ProbeResult(
        corpus=fold_spec.get("corpus") or data_dir.name, protocol=fold_spec.get("protocol", protocol),
        speaker_independent=fold_spec.get("speaker_independent"), source=name or features.name,
        features=str(features), data=str(data_dir), granularity=info["granularity"], dim=packed.dim,
        stored_layers=info["stored_layers"], layer=info["layer"], labels=labels, parameters=n_params,
        config=config, device=str(dev), folds=fold_results, warnings=warnings,
        timing={"load_s": load_s, "train_s": train_s, "total_s": time.perf_counter() - t0})
    result_dict = result.to_dict()
    if out is not None:
        report.write_outputs(out, result_dict, result.predictions(label_of))
        log(f"probe: wrote {', '.join(report.OUTPUT_FILES)} to {out}")
    log(report.summary_markdown(result_dict))
    return result_dict
