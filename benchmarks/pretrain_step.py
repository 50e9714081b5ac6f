"""Time per pretraining update (forward + backward + Adam + EMA) and per second of audio, CPU (or GPU).

Configurations: the tiny CPU config (the `small` preset, batch 2 x 2 s, clone 4) and the base config in emotion2vec
geometry (4 prenet + 8 main blocks, 10 utterance tokens, clone 8, batch 2 x 4 s), each with SDPA and with the
reference attention (baseline measured in the same run). Dropout/layerdrop as in training. The brief's anchor for
fairseq's own data2vec 2.0 step in the base geometry on a 2-core CPU is 1.375 s per second of audio (fairseq's
examples/data2vec cannot be imported on Python 3.11, so it is quoted, not re-measured here).

    python benchmarks/pretrain_step.py [--configs tiny base] [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from emotion2vec.config import preset
from emotion2vec.masking import block_mask
from emotion2vec.pretraining import DistillationConfig, Emotion2VecPretrainer

CONFIGS = {
    "tiny": dict(preset="small", distill=dict(clone_batch=4, average_top_k_layers=3), batch=2, seconds=2.0),
    "base": dict(preset="emotion2vec_base", distill=dict(clone_batch=8, average_top_k_layers=8), batch=2, seconds=4.0),
}


def step_time(name: str, reference: bool, steps: int, device: torch.device, dtype: torch.dtype) -> float:
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = Emotion2VecPretrainer(preset(c["preset"]), DistillationConfig(**c["distill"])).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    n = int(c["seconds"] * 16000)
    src = torch.randn(c["batch"], n, device=device)
    C = c["distill"]["clone_batch"]
    mask = torch.from_numpy(block_mask(c["batch"] * C, model.cfg.num_frames(n), rng=np.random.default_rng(0))).to(device)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(src, mask, reference=reference)
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

    line, scale = machine_line()
    print(line)
    print(f"# pretraining step benchmark: {args.device} {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} updates after one warm-up")
    print("| config | batch x seconds | clone | SDPA s/update | SDPA s per audio s | reference s/update | "
          "reference s per audio s | reference/SDPA |")
    print("|---|---|---|---|---|---|---|---|")
    sdpa_per_audio = {}
    for name in args.configs:
        c = CONFIGS[name]
        audio = c["batch"] * c["seconds"]
        sdpa = step_time(name, False, args.steps, device, dtype)
        ref = step_time(name, True, args.steps, device, dtype)
        print(f"| {name} | {c['batch']} x {c['seconds']:g} s | {c['distill']['clone_batch']} | {sdpa:.3f} | "
              f"{sdpa / audio:.3f} | {ref:.3f} | {ref / audio:.3f} | {ref / sdpa:.2f}x |", flush=True)
        sdpa_per_audio[name] = sdpa / audio
    if "base" in sdpa_per_audio and device.type == "cpu":
        base = sdpa_per_audio["base"]
        print(f"\nbase, anchor-machine equivalent (x {scale:.2f}): {base * scale:.3f} s per audio s; fairseq's own "
              f"data2vec 2.0 step there: 1.375 ({1.375 / (base * scale):.2f}x ours)")


if __name__ == "__main__":
    main()
