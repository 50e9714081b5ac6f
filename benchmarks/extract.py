"""Extraction throughput on a real corpus: our batched pipeline vs one utterance at a time through the same model.

The naive strategy is what the official script and FunASR do: for each file, read, resample, normalise, forward
alone, save. The batched strategy is ``emotion2vec extract``: length-sorted dynamic batches, decoding in a worker
process, SDPA attention. Both use the base preset with the same random weights and write utterance-level features of
the last layer; each runs in a fresh subprocess (peak RSS is its own) and the features are compared.

    python benchmarks/extract.py [--corpus ../shared/data/urdu] [--limit N] [--device cpu|cuda] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from pathlib import Path
from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel
from emotion2vec.extract.backends import ModelBackend
from emotion2vec.extract.inputs import discover_inputs
from emotion2vec.extract.run import run_extraction
from emotion2vec.io.audio import load_audio, normalize_waveform
a = json.loads(sys.argv[1])
torch.manual_seed(0)
model = Emotion2VecModel(preset(a["preset"]), with_decoder=False)
dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[a["dtype"]]
backend = ModelBackend(model, torch.device(a["device"]), dtype)
items = discover_inputs([a["corpus"]])[: a["limit"]]
out = Path(a["out"])
t0 = time.perf_counter()
if a["strategy"] == "naive":
    layer = [model.cfg.num_layers - 1]
    audio = 0.0
    for it in items:
        wav = torch.from_numpy(load_audio(it.path))
        audio += len(wav) / 16000
        x = normalize_waveform(wav)[None]
        feats = backend.forward(x, torch.tensor([x.shape[1]]), layer)[0, 0]
        path = out / f"{it.key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, feats.mean(0).cpu().numpy())
else:
    scp = Path(str(out) + ".scp")  # the same keys as the naive run
    scp.write_text("".join(f"{it.key} {it.path}\n" for it in items))
    summary = run_extraction([scp], out, backend, [-1 % model.cfg.num_layers],
                             granularity="utterance", num_workers=a["workers"], max_tokens=a["max_tokens"],
                             progress=False, log=lambda m: None)
    audio = summary["audio_seconds"]
if a["device"] == "cuda":
    torch.cuda.synchronize()
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "files": len(items), "audio": audio,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if a["device"] == "cuda" else None}))
"""


def run(**cfg) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "urdu"))
    p.add_argument("--preset", default="emotion2vec_base")
    p.add_argument("--limit", type=int, default=0, help="first N files only (0 = all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=None, help="default: emotion2vec extract's for the device")
    p.add_argument("--repeats", type=int, default=2, help="alternate naive / batched runs this many times and keep "
                   "each strategy's fastest (the CPU's speed drifts between runs)")
    args = p.parse_args()
    import numpy as np
    import torch

    from emotion2vec.extract.engine import default_max_tokens

    with tempfile.TemporaryDirectory() as tmp:
        common = dict(preset=args.preset, corpus=args.corpus, limit=args.limit or None, device=args.device,
                      dtype=args.dtype, workers=args.workers, max_tokens=args.max_tokens)
        naive = batched = None
        for k in range(args.repeats):  # fresh output folders: a second batched run must not resume the first
            n = run(strategy="naive", out=f"{tmp}/naive{k}", **common)
            b = run(strategy="batched", out=f"{tmp}/batched{k}", **common)
            naive = n if naive is None or n["seconds"] < naive["seconds"] else naive
            batched = b if batched is None or b["seconds"] < batched["seconds"] else batched
        diffs = []
        for f in Path(tmp, "naive0").rglob("*.npy"):
            b = np.load(Path(tmp, "batched0") / f.relative_to(Path(tmp, "naive0")))
            diffs.append(float(np.abs(np.load(f) - b).max()))
    from _machine import machine_line

    print(machine_line())
    print(f"# extraction benchmark: {naive['files']} files, {naive['audio'] / 60:.1f} min of audio from {args.corpus}; "
          f"preset {args.preset}, {args.device} {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.workers} decode worker(s), max_tokens "
          f"{args.max_tokens or default_max_tokens(args.device)}, fastest of {args.repeats} alternating runs")
    print("| strategy | wall s | files/s | audio s per s | compute s per audio s | peak RSS MiB |"
          + (" GPU peak MiB |" if args.device == "cuda" else ""))
    print("|---|---|---|---|---|---|" + ("---|" if args.device == "cuda" else ""))
    for name, r in (("one utterance at a time (naive)", naive), ("emotion2vec extract (batched)", batched)):
        print(f"| {name} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | {r['audio'] / r['seconds']:.1f} | "
              f"{r['seconds'] / r['audio']:.4f} | {r['peak_rss_mib']:.0f} |"
              + (f" {r['gpu_peak_mib']:.0f} |" if args.device == "cuda" else ""))
    print(f"\nspeed-up batched / naive: {naive['seconds'] / batched['seconds']:.2f}x; "
          f"max abs feature difference over {len(diffs)} files: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
