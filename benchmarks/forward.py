"""Forward time per second of audio and peak memory of the base preset (random weights).

Inputs of 2 s, 10 s and 30 s, batch 1 and 8, SDPA vs the eager (explicit fp32 softmax) attention; fp32 on CPU,
and fp32 + bf16 on a GPU when one is present. Each configuration runs in a fresh subprocess so that its peak RSS is
its own. Prints a markdown table; the ratio column is eager time / SDPA time measured in the same run.

    python benchmarks/forward.py [--preset emotion2vec_base] [--durations 2 10 30] [--batches 1 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, torch
from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel
args = json.loads(sys.argv[1])
torch.manual_seed(0)
device = torch.device(args["device"])
model = Emotion2VecModel(preset(args["preset"]), with_decoder=False).eval().to(device)
model.set_attention_implementation(args["attention"])
dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args["dtype"]]
x = torch.randn(args["batch"], int(args["seconds"] * 16000), device=device)
def run():
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model.extract_features(x, layers=[-1], ffn=())
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
    args = p.parse_args()
    import torch

    from _machine import machine_line

    print(machine_line())
    setups = [("cpu", "float32")]
    if torch.cuda.is_available():
        setups += [("cuda", "float32"), ("cuda", "bfloat16")]
    print(f"# forward benchmark: preset {args.preset}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads{', ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}")
    print("| device | dtype | input | batch | SDPA s/s audio | eager s/s audio | eager/SDPA | "
          "SDPA peak MiB | eager peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    t0 = time.time()
    for device, dtype in setups:
        for seconds in args.durations:
            for batch in args.batches:
                row = {}
                for attention in ("sdpa", "eager"):
                    r = measure(preset=args.preset, device=device, dtype=dtype, seconds=seconds, batch=batch,
                                attention=attention, repeats=args.repeats)
                    row[attention] = (r["seconds"] / (seconds * batch), r["peak_mib"])
                s, rf = row["sdpa"], row["eager"]
                print(f"| {device} | {dtype} | {seconds:g} s | {batch} | {s[0]:.4f} | {rf[0]:.4f} | "
                      f"{rf[0] / s[0]:.2f}x | {s[1]:.0f} | {rf[1]:.0f} |", flush=True)
    print(f"\n(s/s audio = compute seconds per second of audio, best of {args.repeats}; CPU peak = process max RSS, "
          f"incl. ~model weights; GPU peak = torch max allocated; total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
