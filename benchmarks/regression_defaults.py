"""Which probe settings make regression work: arousal / valence derived from URDU's labels plus noise, fbank
utterance features, every fold of the corpus, each setting a row (CCC and MAE as mean ± std over folds).

    python benchmarks/regression_defaults.py --data manifests/urdu --features features/urdu/fbank [--epochs 100]

The targets: arousal angry 0.8, happy 0.7, neutral 0.3, sad 0.2; valence angry 0.2, happy 0.8, neutral 0.5, sad 0.2;
each plus Gaussian noise (sd 0.1, seed 0), clipped to [0, 1]. The table is what `docs/evaluation-workflows.md`
quotes for the regression defaults of `emotion2vec probe`.

``--class-tasks`` scores the class tasks instead (categorical; soft and multilabel on votes derived from the labels:
two votes for the label and one for a random class, seed 0) with their defaults, with ``--standardize``, and with
AdamW at a constant lr on standardised features.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AROUSAL = {"angry": 0.8, "happy": 0.7, "neutral": 0.3, "sad": 0.2}
VALENCE = {"angry": 0.2, "happy": 0.8, "neutral": 0.5, "sad": 0.2}

#: (row name, ProbeConfig overrides); None values leave the task's default
SETTINGS = [
    ("official recipe (RMSprop + momentum, cyclic LR, raw features)",
     dict(optimizer="rmsprop", scheduler="cyclic", standardize=False, standardize_targets=False)),
    ("+ standardised features", dict(optimizer="rmsprop", scheduler="cyclic", standardize=True,
                                      standardize_targets=False)),
    ("+ standardised targets", dict(optimizer="rmsprop", scheduler="cyclic", standardize=True,
                                     standardize_targets=True)),
    ("RMSprop + momentum, cyclic LR, raw features, standardised targets",
     dict(optimizer="rmsprop", scheduler="cyclic", standardize=False, standardize_targets=True)),
    ("Adam, cyclic LR, standardised features", dict(optimizer="adam", scheduler="cyclic", standardize=True,
                                                     standardize_targets=False)),
    ("Adam, constant LR, standardised features", dict(optimizer="adam", scheduler="none", standardize=True,
                                                       standardize_targets=False)),
    ("Adam, constant LR, raw features", dict(optimizer="adam", scheduler="none", standardize=False,
                                              standardize_targets=False)),
    ("Adam, constant LR, standardised features and targets",
     dict(optimizer="adam", scheduler="none", standardize=True, standardize_targets=True)),
    ("AdamW, constant LR, standardised features", dict(optimizer="adamw", scheduler="none", standardize=True,
                                                        standardize_targets=False)),
    ("AdamW, constant LR, standardised features and targets",
     dict(optimizer="adamw", scheduler="none", standardize=True, standardize_targets=True)),
    ("AdamW, x0.98 per epoch, standardised features and targets",
     dict(optimizer="adamw", scheduler="exponential", standardize=True, standardize_targets=True)),
    ("defaults (task regression)", {}),
]


def derived_corpus(data: Path, out: Path, seed: int = 0) -> Path:
    """A copy of the prepared corpus ``data`` with arousal and valence columns (see the module docstring)."""
    from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

    rows = read_data_tsv(data / "data.tsv")
    rng = np.random.default_rng(seed)
    for r in rows:
        r["arousal"] = f"{float(np.clip(AROUSAL[r['label']] + rng.normal(0, 0.1), 0, 1)):.4f}"
        r["valence"] = f"{float(np.clip(VALENCE[r['label']] + rng.normal(0, 0.1), 0, 1)):.4f}"
    out.mkdir(parents=True, exist_ok=True)
    write_data_tsv(out / "data.tsv", rows)
    for f in data.glob("folds*.json"):
        shutil.copy(f, out / f.name)
    return out


CLASS_SETTINGS = [("defaults", {}), ("--standardize", dict(standardize=True)),
                  ("AdamW, constant LR, --standardize", dict(optimizer="adamw", scheduler="none", standardize=True))]


def voted_corpus(data: Path, out: Path, seed: int = 0) -> Path:
    """A copy of ``data`` with a votes column: two votes for the label, one for a random class."""
    from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

    rows = read_data_tsv(data / "data.tsv")
    labels = sorted({r["label"] for r in rows})
    rng = np.random.default_rng(seed)
    for r in rows:
        other = labels[int(rng.integers(len(labels)))]
        r["votes"] = f"{r['label']}:2,{other}:1" if other != r["label"] else f"{r['label']}:3"
    out.mkdir(parents=True, exist_ok=True)
    write_data_tsv(out / "data.tsv", rows)
    for f in data.glob("folds*.json"):
        shutil.copy(f, out / f.name)
    return out


def class_tasks(features: str, data: Path, epochs: int, folds) -> None:
    from emotion2vec.downstream.probe import run_probe
    from emotion2vec.downstream.training import ProbeConfig

    print("| Task | Setting | headline (mean ± std over folds) | collapse or divergence warnings |")
    print("|---|---|---:|---:|")
    for task in ("categorical", "soft", "multilabel"):
        for name, overrides in CLASS_SETTINGS:
            r = run_probe(features, data, None, ProbeConfig(task=task, epochs=epochs, bootstrap=0, **overrides),
                          folds=folds, verbose=False, audit_audio=False)
            m = r["headline"]
            bad = [w for w in r["warnings"] if "collapsed" in w or "diverged" in w or "far-off" in w]
            print(f"| {task} | {name} | {m} {r['summary'][m]['mean']:.3f} ± {r['summary'][m]['std']:.3f} | "
                  f"{len(bad)} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the prepared URDU corpus (emotion2vec prepare urdu)")
    parser.add_argument("--features", required=True, help="its fbank utterance features")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--folds", default=None, help="only these folds (default: all)")
    parser.add_argument("--class-tasks", action="store_true", help="the class tasks instead (see above)")
    args = parser.parse_args(argv)
    from emotion2vec.downstream.probe import run_probe
    from emotion2vec.downstream.training import ProbeConfig
    from _machine import machine_line

    print(machine_line())
    if args.class_tasks:
        with tempfile.TemporaryDirectory() as tmp:
            class_tasks(args.features, voted_corpus(Path(args.data), Path(tmp) / "urdu_votes"), args.epochs,
                        args.folds)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = derived_corpus(Path(args.data), Path(tmp) / "urdu_av")
        print("| Setting | CCC (mean ± std over folds) | CCC arousal | CCC valence | MAE |")
        print("|---|---:|---:|---:|---:|")
        for name, overrides in SETTINGS:
            config = ProbeConfig(task="regression", targets=("arousal", "valence"), epochs=args.epochs,
                                 bootstrap=0, **overrides)
            r = run_probe(args.features, data, None, config, folds=args.folds, verbose=False, audit_audio=False)
            s = r["summary"]
            print(f"| {name} | {s['ccc']['mean']:.3f} ± {s['ccc']['std']:.3f} | {s['ccc_arousal']['mean']:.3f} | "
                  f"{s['ccc_valence']['mean']:.3f} | {s['mae']['mean']:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
