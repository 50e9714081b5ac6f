"""Time per pretraining update (forward + backward + Adam + EMA) and per second of audio, CPU (or GPU).

Configurations: the tiny CPU config (the `small` preset, batch 2 x 2 s, clone 4) and the base config in emotion2vec
geometry (4 prenet + 8 main blocks, 10 utterance tokens, clone 8, batch 2 x 4 s), each with SDPA and with the
eager attention (baseline measured in the same run). Dropout/layerdrop as in training.

    python benchmarks/pretrain_step.py [--configs tiny base] [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from emotion2vec.models.config import preset
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.masking import block_mask

CONFIGS = {
    "tiny": dict(preset="small", distill=dict(clone_batch=4, average_top_k_layers=3), batch=2, seconds=2.0),
    "base": dict(preset="emotion2vec_base", distill=dict(clone_batch=8, average_top_k_layers=8), batch=2, seconds=4.0),
}


def step_time(name: str, attention: str, steps: int, device: torch.device, dtype: torch.dtype) -> float:
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = Emotion2VecPretrainer(preset(c["preset"]), DistillationConfig(**c["distill"])).to(device).train()
    model.set_attention_implementation(attention)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    n = int(c["seconds"] * 16000)
    src = torch.randn(c["batch"], n, device=device)
    C = c["distill"]["clone_batch"]
    mask = torch.from_numpy(block_mask(c["batch"] * C, model.cfg.num_frames(n), rng=np.random.default_rng(0))).to(device)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(src, mask)
        loss = sum(out.losses.values()) / out.sample_size
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.ema_step(i + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step is warm-up
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "base"], choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = p.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    from _machine import machine_line

    print(machine_line())
    print(f"# pretraining step benchmark: {args.device} {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} updates after one warm-up")
    print("| config | batch x seconds | clone | SDPA s/update | SDPA s per audio s | eager s/update | "
          "eager s per audio s | eager/SDPA |")
    print("|---|---|---|---|---|---|---|---|")
    sdpa_per_audio = {}
    for name in args.configs:
        c = CONFIGS[name]
        audio = c["batch"] * c["seconds"]
        sdpa = step_time(name, "sdpa", args.steps, device, dtype)
        ref = step_time(name, "eager", args.steps, device, dtype)
        print(f"| {name} | {c['batch']} x {c['seconds']:g} s | {c['distill']['clone_batch']} | {sdpa:.3f} | "
              f"{sdpa / audio:.3f} | {ref:.3f} | {ref / audio:.3f} | {ref / sdpa:.2f}x |", flush=True)
        sdpa_per_audio[name] = sdpa / audio


if __name__ == "__main__":
    main()
