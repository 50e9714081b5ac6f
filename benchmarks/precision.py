"""Does a faster precision change what a *trained* model's features are good for? The demo's pretrained model
(``emotion2vec demo --out DIR``) extracted in fp32, bf16, int8 (torch, ``--dtype int8``) and ONNX Runtime int8, then
probed on held-out speakers with the demo's probe settings.

Prints the frame-level error of each setting against fp32 (relative L2 per utterance) and the probe's UA per
setting; the probe noise is a second fp32 probe run with another training seed (the folds stay the same).

    python benchmarks/precision.py DEMO_OUT [--probe-epochs 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("demo", help="the output folder of a finished `emotion2vec demo` (not --fast)")
    p.add_argument("--probe-epochs", type=int, default=30, help="as the demo (30)")
    args = p.parse_args()
    import numpy as np
    import torch

    from _machine import machine_line
    from emotion2vec.downstream.probe import run_probe
    from emotion2vec.downstream.training import ProbeConfig
    from emotion2vec.extract.backends import load_backend
    from emotion2vec.extract.export import export_onnx
    from emotion2vec.extract.run import run_extraction
    from emotion2vec.extract.store import FeatureStore
    from emotion2vec.io.manifests import read_data_tsv

    demo = Path(args.demo)
    checkpoint = demo / "pretrain" / "checkpoint_last.pt"
    data = demo / "manifests" / "demo"
    if not checkpoint.exists() or not (data / "data.tsv").exists():
        sys.exit(f"error: {demo} is not a finished demo output (run `emotion2vec demo --out {demo}` first)")
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        graph = export_onnx(checkpoint, tmp / "int8.onnx", quantize="int8")["path"]
        settings = {"fp32": (str(checkpoint), "float32"), "bf16": (str(checkpoint), "bfloat16"),
                    "int8": (str(checkpoint), "int8"), "onnxruntime int8": (graph, "float32")}
        for name, (ckpt, dtype) in settings.items():
            backend = load_backend(ckpt, dtype=dtype)
            run_extraction([str(data / "data.tsv")], tmp / name, backend, [backend.num_layers - 1], "frame",
                           checkpoint_name=ckpt, progress=False, log=lambda m: None)
        keys = [r["key"] for r in read_data_tsv(data / "data.tsv")]
        stores = {name: FeatureStore(tmp / name) for name in settings}
        errors = {}
        for name in ("bf16", "int8", "onnxruntime int8"):
            errors[name] = np.array([np.linalg.norm(stores[name][k] - stores["fp32"][k])
                                     / np.linalg.norm(stores["fp32"][k]) for k in keys])
        base = ProbeConfig(epochs=args.probe_epochs, standardize=True)
        runs = {"fp32": ("fp32", base), "fp32, probe seed + 1": ("fp32", dataclasses.replace(base, seed=base.seed + 1)),
                "bf16": ("bf16", base), "int8": ("int8", base), "onnxruntime int8": ("onnxruntime int8", base)}
        ua = {}
        for run, (name, config) in runs.items():
            t = time.perf_counter()
            result = run_probe(tmp / name, data, None, config, layer=-1, name=name, verbose=False)
            ua[run] = result["summary"]["ua"]
            print(f"# probe {run}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    print(f"# trained model: {checkpoint} ({len(keys)} utterances of the demo corpus, frame-level features of the "
          f"last layer); probe as the demo ({args.probe_epochs} epochs, speaker-independent folds); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print("| setting | frame rel. L2 vs fp32: median | p99 | max | within its bound (bf16 1 %, int8 2 %) | "
          "UA (mean ± std over folds) |")
    print("|---|---:|---:|---:|---:|---:|")
    for run, (name, _) in runs.items():
        e = errors.get(name) if run == name else None
        bound = 0.02 if "int8" in name else 0.01
        cells = (f"{np.median(e):.2e} | {np.percentile(e, 99):.2e} | {e.max():.2e} | {(e <= bound).mean():.0%}"
                 if e is not None else "— | — | — | —")
        print(f"| {run} | {cells} | {100 * ua[run]['mean']:.2f} ± {100 * ua[run]['std']:.2f} |")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
