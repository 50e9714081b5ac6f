"""Does ``torch.compile`` (inductor) pay for extraction on this CPU? Our eager inference (what ``emotion2vec
extract`` runs) against compiled models, in one process, interleaved.

Rows, base geometry with random weights, inputs of URDU's typical lengths (batches of 5 x 2 s and 5 x 3 s):
    eager, fp32 / bf16           ModelBackend: the per-input CNN, and in bf16 the oneDNN kernels of
                                 emotion2vec.models.inference
    torch.compile, fp32          torch.compile(extract_features, dynamic=True) of the plain fp32 model, inductor
                                 with weight freezing (prepacked weights, fused elementwise kernels)
    torch.compile, bf16          the same of the bf16 model without the oneDNN rewrites (prepare_inference(...,
                                 kernels=False): bf16 weights, fp32 layers kept, so the same accuracy), under autocast
Printed: the compile time of the first call and of a second input length (dynamic shapes); with --cache-check, the
first call again in a fresh process (inductor's on-disk caches warm); the steady state in ms per second of audio
(median of --rounds alternating rounds; --cpu-time: the process's CPU time instead of wall time, steadier on a shared
machine); the feature error against fp32 (relative L2, last layer); and the break-even: the seconds of audio after
which compiling has paid for itself.

    python benchmarks/compile.py [--rounds 5] [--threads N] [--cpu-time] [--cache-check]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[2])
from compile import build
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
run, inputs = build(a["dtype"])
t = time.perf_counter(); run(inputs[0]); print(json.dumps({"first": time.perf_counter() - t}))
"""


def build(name: str):
    """(compiled forward, inputs) for dtype ``name``, the model built from seed 0."""
    import torch
    import torch._inductor.config as inductor_config

    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel
    from emotion2vec.models.inference import prepare_inference

    inductor_config.freezing = True
    dtype = getattr(torch, name)
    torch.manual_seed(0)
    model = Emotion2VecModel(preset("emotion2vec_base"), with_decoder=False).eval()
    inputs = [torch.randn(5, 32000, generator=torch.Generator().manual_seed(1)),
              torch.randn(5, 48000, generator=torch.Generator().manual_seed(2))]
    if dtype != torch.float32:
        prepare_inference(model, dtype, kernels=False)
    compiled = torch.compile(model.extract_features, dynamic=True)

    def run(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            return compiled(x, layers=[11], ffn=()).x

    return run, inputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--cpu-time", action="store_true", help="time with the process's CPU time")
    p.add_argument("--cache-check", action="store_true", help="compile again in a fresh process")
    args = p.parse_args()
    import torch

    from _machine import machine_line
    from emotion2vec.extract.backends import ModelBackend
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(machine_line(), flush=True)
    torch.manual_seed(0)
    model = Emotion2VecModel(preset("emotion2vec_base"), with_decoder=False).eval()
    rows, compile_seconds, outputs = {}, {}, {}
    inputs = None
    for name in args.dtypes:
        run, inputs = build(name)
        t = time.perf_counter()
        outputs[f"torch.compile, {name}"] = run(inputs[0]).float()
        first = time.perf_counter() - t
        t = time.perf_counter()
        run(inputs[1])
        compile_seconds[name] = [first, time.perf_counter() - t]
        print(f"# compile, {name}: first call {first:.1f} s, second length {compile_seconds[name][1]:.1f} s",
              flush=True)
        if args.cache_check:
            child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(
                {"dtype": name, "threads": torch.get_num_threads()}), str(__import__("pathlib").Path(
                    __file__).resolve().parent)], capture_output=True, text=True)
            warm = json.loads(child.stdout.strip().splitlines()[-1])["first"] if child.returncode == 0 else None
            print(f"# compile, {name}, fresh process with warm caches: first call "
                  f"{'failed' if warm is None else f'{warm:.1f} s'}", flush=True)
        rows[f"torch.compile, {name}"] = lambda f=run: [f(x) for x in inputs]
        eager = ModelBackend(copy.deepcopy(model), torch.device("cpu"), getattr(torch, name))
        rows[f"eager, {name}"] = lambda b=eager: [b.forward(x, torch.full((x.shape[0],), x.shape[1]), [11])
                                                 for x in inputs]
        outputs[f"eager, {name}"] = rows[f"eager, {name}"]()[0][0]
    audio = sum(x.numel() for x in inputs) / 16000
    times: dict[str, list[float]] = {k: [] for k in rows}
    for f in rows.values():
        f()
    for _ in range(args.rounds):
        for k, f in rows.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    reference = outputs.get("eager, float32")

    def error(k):
        if reference is None or k == "eager, float32":
            return "—"
        return f"{float((outputs[k].double() - reference.double()).norm() / reference.double().norm()):.1e}"

    print(f"# {'CPU' if args.cpu_time else 'wall'} time, median of {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads")
    print("| setting | ms per audio s | vs eager | rel. L2 vs eager fp32 | compile s (first + second length) | "
          "break-even (audio s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.dtypes:
        e = statistics.median(times[f"eager, {name}"]) / audio
        c = statistics.median(times[f"torch.compile, {name}"]) / audio
        cost = sum(compile_seconds[name])
        even = f"{cost / (e - c):.0f}" if c < e else "never"
        print(f"| eager, {name} | {e * 1000:.1f} | 1.00x | {error(f'eager, {name}')} | — | — |")
        print(f"| torch.compile, {name} | {c * 1000:.1f} | {e / c:.2f}x | {error(f'torch.compile, {name}')} | "
              f"{cost:.0f} | {even} |")


if __name__ == "__main__":
    main()
