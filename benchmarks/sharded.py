"""Sharded extraction and recognition under torchrun: files per second with 1 and with 2 processes, in the same run.

The model is emotion2vec_base's geometry with random weights (seed 0) and a random 9-label head (an emotion2vec+
layout in our format), so the work per file is that of emotion2vec_plus_base. Rows, each a fresh command, alternating
over --repeats rounds, each keeping its fastest:

    extract, 1 process     emotion2vec extract             (OMP_NUM_THREADS = --threads)
    extract, 2 processes   torchrun --nproc_per_node 2 -m emotion2vec extract   (each --threads / 2 threads)
    predict, 1 process     emotion2vec predict ... --out predictions.tsv
    predict, 2 processes   torchrun --nproc_per_node 2 -m emotion2vec predict ...

Both rows of a command use the same number of cores in all (--threads), so on a CPU the gain of the second process
is what sharding adds beyond what threads already give; on a machine with one GPU per process it is the second GPU.
"wall" is the whole command (Python and torch start-up, model loading, torchrun's rendezvous included); "run" is the
extraction's own time from its summary line (discovery, planning, decoding, forward, writing, merging). The outputs
of the 2-process rows are checked against the 1-process ones (extract: every .npy bitwise when the threads per
process match, else the largest difference; predict: the labels).

    python benchmarks/sharded.py [--corpus ../shared/data/urdu] [--limit N] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("E2V_SHARED", HERE.parents[1] / "shared"))
REPO = HERE.parent
BIN = Path(sys.executable).parent
LABELS = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral", "其他/other", "难过/sad",
          "吃惊/surprised", "<unk>"]


def _model(folder: Path) -> Path:
    """emotion2vec_base geometry, random weights (seed 0), a random mean-linear head over the 9 labels."""
    import torch

    from emotion2vec.models.checkpoint import ClassifierSpec, save_checkpoint_dir
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    torch.manual_seed(0)
    cfg = preset("emotion2vec_base")
    model = Emotion2VecModel(cfg, with_decoder=False)
    g = torch.Generator().manual_seed(1)
    head = {"weight": torch.randn(len(LABELS), cfg.embed_dim, generator=g) * 0.05, "bias": torch.zeros(len(LABELS))}
    spec = ClassifierSpec("mean_linear", LABELS, head, {"layer": -1})
    save_checkpoint_dir(folder, cfg, model.state_dict(), None, {"benchmark": "sharded.py"}, spec)
    return folder


def _run(cmd: list[str], threads: int) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def _launch(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "emotion2vec"]
    return [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(processes), "-m", "emotion2vec"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--limit", type=int, default=0, help="first N files only (0 = all)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores in all, per row (default: all)")
    p.add_argument("--repeats", type=int, default=1, help="alternating rounds; each row keeps its fastest")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from _machine import machine_line

    print(machine_line(), flush=True)
    files = sorted(Path(args.corpus).rglob("*.wav"))
    files = files[:args.limit] if args.limit else files
    if not files:
        raise SystemExit(f"{args.corpus}: no .wav files")
    import soundfile as sf

    audio_h = sum(sf.info(str(f)).duration for f in files) / 3600
    with tempfile.TemporaryDirectory(prefix="e2v-sharded-") as tmp_name:
        tmp = Path(tmp_name)
        model = _model(tmp / "model")
        scp = tmp / "wav.scp"
        scp.write_text("".join(f"{f.parent.name}/{f.stem} {f}\n" for f in files))
        rows: dict[tuple[str, int], dict] = {}
        for _ in range(args.repeats):
            for command in ("extract", "predict"):
                for n in (1, 2):
                    threads = max(1, args.threads // n)
                    out = tmp / f"{command}-{n}"
                    shutil.rmtree(out, ignore_errors=True)
                    if command == "extract":
                        cmd = [*_launch(n), "extract", "--checkpoint", str(model), "--input", str(scp), "--out",
                               str(out), "--granularity", "utterance", "--device", args.device, "--quiet"]
                    else:
                        out.mkdir()
                        cmd = [*_launch(n), "predict", str(model), str(scp), "--out", str(out / "predictions.tsv"),
                               "--device", args.device, "--quiet"]
                    wall, err = _run(cmd, threads)
                    found = re.search(r"extracted (\d+) file\(s\) .* in ([\d.]+) s", err)
                    row = {"wall": wall, "run": float(found.group(2)) if found else None, "threads": threads}
                    best = rows.get((command, n))
                    if best is None or wall < best["wall"]:
                        rows[(command, n)] = row
                    keep = tmp / f"keep-{command}-{n}"
                    shutil.rmtree(keep, ignore_errors=True)
                    shutil.copytree(out, keep)
        print(f"# {len(files)} files, {audio_h:.3f} h of audio, emotion2vec_base geometry, device {args.device}, "
              f"{args.threads} cores per row, fastest of {args.repeats}; command: python benchmarks/sharded.py "
              + " ".join(sys.argv[1:]))
        print("| command | processes x threads | wall s | files/s (wall) | run s | files/s (run) | speed-up (wall) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for command in ("extract", "predict"):
            one = rows[(command, 1)]["wall"]
            for n in (1, 2):
                r = rows[(command, n)]
                run = f"{r['run']:.1f} | {len(files) / r['run']:.2f}" if r["run"] else "– | –"
                print(f"| {command} | {n} x {r['threads']} | {r['wall']:.1f} | {len(files) / r['wall']:.2f} | {run} | "
                      f"{one / r['wall']:.2f}x |")
        # the outputs of 2 processes against 1
        a, b = tmp / "keep-extract-1", tmp / "keep-extract-2"
        same = (a / "index.tsv").read_bytes() == (b / "index.tsv").read_bytes()
        worst = max(float(np.abs(np.load(x) - np.load(b / x.relative_to(a))).max()) for x in a.rglob("*.npy"))
        print(f"# extract: index.tsv {'identical' if same else 'DIFFERS'}; largest feature difference {worst:.2e} "
              f"({'bitwise equal' if worst == 0 else 'the threads per process differ: other summation orders'})")

        def labels(folder: Path) -> list[str]:
            with open(folder / "predictions.tsv", newline="") as f:
                return [r["label"] for r in csv.DictReader(f, delimiter="\t")]

        la, lb = labels(tmp / "keep-predict-1"), labels(tmp / "keep-predict-2")
        print(f"# predict: {sum(x == y for x, y in zip(la, lb))} of {len(la)} labels the same")


if __name__ == "__main__":
    main()
