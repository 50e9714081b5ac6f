"""Forward time per second of audio and peak memory of a preset (random weights), through what extraction runs
(``ModelBackend``: the per-input CNN on a CPU, the reduced-precision rewrites for bf16).

Inputs of 2 s, 10 s and 30 s, batch 1 and 8, SDPA vs the eager (explicit fp32 softmax) attention, in each of
--dtypes (CPU: float32 and, where the CPU has bf16 units, bfloat16; a GPU adds fp32 + bf16 when present). Each
configuration runs in a fresh subprocess so that its peak RSS is its own. Prints a markdown table; the eager/SDPA
column is eager time / SDPA time measured in the same run, the last column the bf16 time over the fp32 time of the
same input (what `--dtype auto` weighs).

    python benchmarks/forward.py [--preset emotion2vec_base] [--durations 2 10 30] [--batches 1 8] [--repeats 3]
                                 [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, torch
from emotion2vec.extract.backends import ModelBackend
from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel
args = json.loads(sys.argv[1])
torch.manual_seed(0)
device = torch.device(args["device"])
model = Emotion2VecModel(preset(args["preset"]), with_decoder=False).eval()
model.set_attention_implementation(args["attention"])
backend = ModelBackend(model, device, getattr(torch, args["dtype"]))
x = torch.randn(args["batch"], int(args["seconds"] * 16000))
lengths = torch.full((args["batch"],), x.shape[1])
def run():
    backend.forward(x, lengths, [backend.num_layers - 1])
    if device.type == "cuda":
        torch.cuda.synchronize()
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run()  # warm-up
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(args["repeats"]):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"seconds": min(times), "peak_mib": peak, "base_rss_mib": base_rss / 1024}))
"""


def measure(**cfg) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="emotion2vec_base")
    p.add_argument("--durations", type=float, nargs="+", default=[2, 10, 30])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                   help="CPU compute dtypes (bfloat16 only where the CPU has bf16 units)")
    p.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, and cuda if present)")
    args = p.parse_args()
    import torch

    from _machine import machine_line
    from emotion2vec.device import bf16_accelerated

    print(machine_line())
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    setups = [("cpu", d) for d in args.dtypes if "cpu" in devices and (d == "float32" or bf16_accelerated("cpu"))]
    if "cuda" in devices:
        setups += [("cuda", "float32"), ("cuda", "bfloat16")]
    print(f"# forward benchmark: preset {args.preset}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads{', ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}")
    print("| device | dtype | input | batch | SDPA s/s audio | eager s/s audio | eager/SDPA | "
          "SDPA peak MiB | eager peak MiB | bf16 / fp32 (SDPA) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.time()
    fp32: dict[tuple, float] = {}
    for device, dtype in setups:
        for seconds in args.durations:
            for batch in args.batches:
                row = {}
                for attention in ("sdpa", "eager"):
                    r = measure(preset=args.preset, device=device, dtype=dtype, seconds=seconds, batch=batch,
                                attention=attention, repeats=args.repeats)
                    row[attention] = (r["seconds"] / (seconds * batch), r["peak_mib"])
                s, rf = row["sdpa"], row["eager"]
                if dtype == "float32":
                    fp32[(device, seconds, batch)] = s[0]
                ratio = (f"{s[0] / fp32[(device, seconds, batch)]:.2f}"
                         if dtype != "float32" and (device, seconds, batch) in fp32 else "—")
                print(f"| {device} | {dtype} | {seconds:g} s | {batch} | {s[0]:.4f} | {rf[0]:.4f} | "
                      f"{rf[0] / s[0]:.2f}x | {s[1]:.0f} | {rf[1]:.0f} | {ratio} |", flush=True)
    print(f"\n(s/s audio = compute seconds per second of audio, best of {args.repeats}; CPU peak = process max RSS, "
          f"incl. ~model weights; GPU peak = torch max allocated; total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
