"""Time per pretraining update (forward + backward + Adam + EMA) against fairseq's own data2vec 2.0 step (the peer),
measured in the same run on the same machine, and loss curves of the tiny config in fp32 and bf16.

Tables:
    base   emotion2vec geometry (4 prenet + 8 main blocks, 10 utterance tokens), batch 2 x 4 s, clone 8, layerdrop 0
           (as the peer script sets it): the peer (../shared/peers/data2vec2_step.py, fp32) and ours in fp32 and bf16
           autocast, each with eager and SDPA attention
    tiny   the `small` preset of the demo and CPU configs, batch 2 x 2 s, clone 4: ours only (the peer has no such
           geometry), to choose the demo's settings
Every measurement runs in a fresh process: one warm-up update, then the median of --steps; the rows alternate over
--repeats rounds and each keeps its fastest.

Loss curves: --curve-updates updates of the tiny config on random 2 s crops of a corpus (URDU by default), fp32 and
bf16 from the same initial weights and batches, plus a second fp32 run with another dropout / mask seed as the noise
reference; the plot goes to --plot.

    python benchmarks/pretrain_step.py [--steps 3] [--repeats 2] [--curve-updates 200] [--plot pretrain_curves.png]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
from _paths import PEERS, SHARED, peer_env  # noqa: E402

DTYPE_LABEL = {"float32": "fp32", "bfloat16": "bf16 autocast", "float16": "fp16 autocast"}

GEOMETRY = {
    "base": dict(preset="emotion2vec_base", batch=2, seconds=4.0, clone=8, top_k=8),
    "tiny": dict(preset="small", batch=2, seconds=2.0, clone=4, top_k=3),
}

STEP = r"""
import json, sys, time
import numpy as np, torch
from emotion2vec.models.config import preset
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.masking import block_mask
a = json.loads(sys.argv[1])
torch.manual_seed(0)
cfg = preset(a["preset"]).replace(layerdrop=0.0, prenet_layerdrop=0.0)
fp16 = a["dtype"] == "float16"  # GPU only: autocast to fp16 with a gradient scaler around the model
distill = DistillationConfig(clone_batch=a["clone"], average_top_k_layers=a["top_k"],
                             attention_implementation=a["attention"], compute_dtype="float32" if fp16 else a["dtype"])
device = torch.device(a["device"])
scaler = torch.amp.GradScaler(device.type, enabled=fp16)
model = Emotion2VecPretrainer(cfg, distill).to(device).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
n = int(a["seconds"] * 16000)
src = torch.randn(a["batch"], n, device=device)
mask = torch.from_numpy(block_mask(a["batch"] * a["clone"], cfg.num_frames(n), rng=np.random.default_rng(0))).to(device)
times = []
for i in range(a["steps"] + 1):
    t = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.float16, enabled=fp16):
        out = model(src, mask)
    loss = sum(out.losses.values()) / out.sample_size
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    model.ema_step(i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    if i:  # the first update is warm-up
        times.append(time.perf_counter() - t)
print(json.dumps({"seconds": float(np.median(times)), "loss": float(loss)}))
"""

CURVE = r"""
import json, sys
import numpy as np, torch
from emotion2vec.io.audio import load_audio, normalize_waveform
from emotion2vec.models.config import preset
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.masking import block_mask
a = json.loads(sys.argv[1])
g = a["geometry"]
clips = [load_audio(p) for p in a["paths"]]
n = int(g["seconds"] * 16000)
clips = [c for c in clips if len(c) > n]
rng = np.random.default_rng(0)  # the same batches and masks for every run
torch.manual_seed(0)  # the same initial weights
model = Emotion2VecPretrainer(preset(g["preset"]), DistillationConfig(
    clone_batch=g["clone"], average_top_k_layers=g["top_k"], compute_dtype=a["dtype"],
    ema_decay=0.99, ema_end_decay=0.999, ema_anneal_end_step=a["updates"])).train()
opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
warmup = max(1, a["updates"] // 10)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: min((u + 1) / warmup, 1.0))
torch.manual_seed(a["seed"])  # dropout and layerdrop
losses = []
for u in range(a["updates"]):
    batch = []
    for i in rng.choice(len(clips), g["batch"], replace=False):
        start = rng.integers(0, len(clips[i]) - n)
        batch.append(normalize_waveform(torch.from_numpy(clips[i][start:start + n])))
    mask = torch.from_numpy(block_mask(g["batch"] * g["clone"], model.cfg.num_frames(n), rng=rng))
    out = model(torch.stack(batch), mask)
    loss = sum(out.losses.values()) / out.sample_size
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sched.step()
    model.ema_step(u + 1)
    losses.append(float(loss))
print(json.dumps(losses))
"""


def _json_run(cmd: list[str], env: dict | None = None) -> object:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"a benchmark process failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# The peer script builds and times its model on the CPU in fp32; on a GPU it runs unchanged with cuda as torch's
# default device and its model's forward under autocast.
PEER_ON_DEVICE = r"""
import runpy, sys, torch
device, dtype = sys.argv[1], sys.argv[2]
torch.set_default_device(device)
if dtype != "float32":
    from examples.data2vec.models.data2vec2 import Data2VecMultiModel
    forward = Data2VecMultiModel.forward
    def autocast_forward(self, *a, **k):
        with torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype)):
            return forward(self, *a, **k)
    Data2VecMultiModel.forward = autocast_forward
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def peer_step(threads: int, device: str = "cpu", dtype: str = "float32") -> dict:
    """fairseq's data2vec 2.0 step in emotion2vec base geometry (B = 2 x 4 s, clone 8): the peer script itself on the
    CPU in fp32, else through :data:`PEER_ON_DEVICE`."""
    g = GEOMETRY["base"]
    env = peer_env("fairseq_data2vec.sh", dict(B=str(g["batch"]), SEC=str(g["seconds"]), CLONE=str(g["clone"]),
                                               THREADS=str(threads)))
    script = [str(PEERS / "data2vec2_step.py")]
    if device != "cpu" or dtype != "float32":
        script = ["-c", PEER_ON_DEVICE, device, dtype, *script]
    res = subprocess.run([sys.executable, *script], capture_output=True, text=True, env=env)
    m = re.search(r"median ([\d.]+)s/step", res.stdout)
    if res.returncode != 0 or not m:
        raise RuntimeError(f"the fairseq peer failed (exit {res.returncode}):\n{res.stdout[-1500:]}{res.stderr[-3000:]}")
    return {"seconds": float(m[1])}


def ours_step(geometry: str, attention: str, dtype: str, steps: int, device: str) -> dict:
    args = dict(GEOMETRY[geometry], attention=attention, dtype=dtype, steps=steps, device=device)
    return _json_run([sys.executable, "-c", STEP, json.dumps(args)])  # type: ignore[return-value]


def loss_curves(corpus: str, updates: int, plot: Path) -> str:
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = sorted(glob.glob(os.path.join(corpus, "**", "*.wav"), recursive=True))[::4][:100]
    runs = {"fp32": ("float32", 0), "bf16": ("bfloat16", 0), "fp32, other dropout/mask seed": ("float32", 1)}
    curves = {}
    for name, (dtype, seed) in runs.items():
        curves[name] = np.array(_json_run([sys.executable, "-c", CURVE, json.dumps(
            dict(geometry=GEOMETRY["tiny"], paths=paths, dtype=dtype, seed=seed, updates=updates))]))

    def smooth(x, w=20):
        return np.convolve(x, np.ones(w) / w, mode="valid")

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, c in curves.items():
        ax.plot(np.arange(len(c)) + 1, c, alpha=0.25)
        ax.plot(np.arange(len(smooth(c))) + 20, smooth(c), label=name, color=ax.lines[-1].get_color())
    ax.set_xlabel("update")
    ax.set_ylabel("loss (per masked frame)")
    ax.set_yscale("log")
    ax.set_title(f"tiny config, {updates} updates: fp32 vs bf16 autocast (20-update moving average)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)
    last = slice(-max(updates // 4, 1), None)
    f32, b16, other = (curves[k] for k in runs)
    gap = float(np.mean(np.abs(smooth(b16) - smooth(f32))[last]))
    noise = float(np.mean(np.abs(smooth(other) - smooth(f32))[last]))
    return (f"loss curves ({updates} tiny-config updates, plot: {plot}): mean loss over the last quarter fp32 "
            f"{f32[last].mean():.4f}, bf16 {b16[last].mean():.4f}, fp32 with another seed {other[last].mean():.4f}; "
            f"mean |bf16 - fp32| of the smoothed curves there {gap:.4f} against {noise:.4f} between the two fp32 runs "
            f"({'within' if gap <= 1.5 * noise else 'NOT within'} noise)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3, help="timed updates after one warm-up (median)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds; each row keeps its fastest")
    p.add_argument("--geometries", nargs="+", default=["base", "tiny"], choices=list(GEOMETRY))
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"],
                   help="float16: GPU only (autocast + gradient scaler, as fairseq's fp16 would be replaced by AMP)")
    p.add_argument("--peer-dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"],
                   help="the peer's compute dtypes (other than float32: autocast around its forward)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--curve-updates", type=int, default=200, help="0: no loss curves")
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--plot", default="pretrain_curves.png")
    args = p.parse_args()
    import torch

    from _machine import machine_line
    from emotion2vec.device import auto_attention, cpu_bf16_acceleration

    print(machine_line(), flush=True)
    threads = torch.get_num_threads()
    rows = []  # (geometry, name, run)
    if "base" in args.geometries:
        for dtype in args.peer_dtypes:
            rows.append(("base", f"fairseq data2vec 2.0 (peer), {DTYPE_LABEL[dtype]}",
                         lambda d=dtype: peer_step(threads, args.device, d)))
    for geometry in args.geometries:
        for dtype in args.dtypes:
            for attention in ("eager", "sdpa"):
                name = f"ours, {DTYPE_LABEL[dtype]}, {attention} attention"
                rows.append((geometry, name, lambda g=geometry, a=attention, d=dtype: ours_step(
                    g, a, d, args.steps, args.device)))
    best: dict[tuple[str, str], dict] = {}
    for k in range(args.repeats):
        for geometry, name, run in rows:
            r = run()
            if (geometry, name) not in best or r["seconds"] < best[(geometry, name)]["seconds"]:
                best[(geometry, name)] = r
            print(f"# round {k + 1}: {geometry}: {name}: {r['seconds']:.3f} s/update", file=sys.stderr, flush=True)

    print(f"# pretraining step: {args.device}, torch {torch.__version__}, {threads} threads, bf16 acceleration: "
          f"{cpu_bf16_acceleration() or 'none'}; forward + backward + Adam + EMA, median of {args.steps} updates "
          f"after one warm-up, fastest of {args.repeats} alternating rounds; layerdrop 0")
    for geometry in args.geometries:
        g = GEOMETRY[geometry]
        audio = g["batch"] * g["seconds"]
        names = [n for gg, n, _ in rows if gg == geometry]
        ref = best[(geometry, names[0])]["seconds"]
        print(f"\n{geometry}: {g['preset']} preset, batch {g['batch']} x {g['seconds']:g} s, clone {g['clone']}")
        print(f"| setting | s/update | s per audio s | speed vs {'peer' if geometry == 'base' else 'first row'} |")
        print("|---|---:|---:|---:|")
        for name in names:
            s = best[(geometry, name)]["seconds"]
            print(f"| {name} | {s:.3f} | {s / audio:.3f} | {ref / s:.2f}x |")
        for dtype in args.dtypes:  # what model.attention_implementation=auto picks, against the faster one here
            times = {a: best[(geometry, f"ours, {DTYPE_LABEL[dtype]}, {a} attention")]["seconds"]
                     for a in ("eager", "sdpa")}
            autocast = None if dtype == "float32" else getattr(torch, dtype)
            pick = auto_attention(args.device, autocast)
            fastest = min(times, key=times.get)
            print(f"- {DTYPE_LABEL[dtype]}: attention auto picks {pick}; measured faster here: {fastest} "
                  f"({times['eager'] / times['sdpa']:.2f}x eager / sdpa time)")
    if args.curve_updates:
        print("\n" + loss_curves(args.corpus, args.curve_updates, Path(args.plot)))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
