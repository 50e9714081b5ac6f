"""Time per fine-tuning update (forward + backward + AdamW step of upstream + head) and per second of audio, and
peak memory, in fp32 and bf16 autocast on the CPU (bf16 only where the CPU computes it natively), and on a GPU when
one is present (fp32, bf16, fp16).

Configurations: the demo's `small` preset (batch 8 x 2 s) and the emotion2vec base geometry (4 prenet + 8 main
blocks, 768 dims; batch 4 x 4 s), random weights, the paper's head (Linear 256, mean pooling, 4 classes), the CNN
frozen (the default) and, as the peer of each, everything trained (--freeze none). Dropout and layerdrop as in
training. Each configuration runs in its own process, so the peak resident memory (CPU) is its own; on a GPU the
peak is torch's max_memory_allocated.

    python benchmarks/finetune_step.py [--configs small base] [--steps 3] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np
import torch

CONFIGS = {
    "small": dict(preset="small", batch=8, seconds=2.0),
    "base": dict(preset="emotion2vec_base", batch=4, seconds=4.0),
}


def measure(name: str, precision: str, freeze: str, steps: int, device: str, threads: int | None, queue) -> None:
    from emotion2vec.finetune.config import FinetuneConfig
    from emotion2vec.finetune.heads import UtteranceHead
    from emotion2vec.finetune.model import FinetuneModel, head_config, param_groups, plan_freeze
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    c = CONFIGS[name]
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    upstream = Emotion2VecModel(preset(c["preset"]), with_decoder=False)
    config = FinetuneConfig(freeze=freeze)
    plan = plan_freeze(upstream, freeze, None, name)
    trainable = set(plan.trainable)
    for n, p in upstream.named_parameters():
        p.requires_grad_(n in trainable)
    model = FinetuneModel(upstream, UtteranceHead(head_config(config, upstream.cfg.embed_dim, 4)), -1).to(dev).train()
    optimizer = torch.optim.AdamW(param_groups(model, plan, config), betas=config.betas)
    n = int(c["seconds"] * 16000)
    wav = torch.randn(c["batch"], n, device=dev)
    lengths = torch.full((c["batch"],), n, device=dev)
    lengths[-1] = n * 3 // 4  # one padded row, as in real batches
    y = torch.arange(c["batch"], device=dev) % 4
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(wav, lengths)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i:  # the first update is warm-up
            times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    queue.put((float(np.median(times)), peak, trained))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["small", "base"], choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from _machine import machine_line

    from emotion2vec.device import bf16_accelerated

    if args.device.startswith("cuda"):
        precisions = ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    else:
        precisions = ["fp32", "bf16"] if bf16_accelerated("cpu") else ["fp32"]
    print(machine_line())
    print(f"# fine-tuning update benchmark: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, median of {args.steps} updates after one warm-up, AdamW, head Linear(D->256)-mean-Linear(4)"
          + ("" if "bf16" in precisions or args.device.startswith("cuda") else
             "; bf16 not measured: this CPU has no native bf16"))
    memory = "peak GPU memory MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"| config | batch x seconds | trained | precision | s/update | s per audio s | {memory} | vs fp32 |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    ctx = mp.get_context("spawn")
    for name in args.configs:
        c = CONFIGS[name]
        audio = c["batch"] * c["seconds"]
        for freeze in ("cnn", "none"):
            fp32 = None
            for precision in precisions:
                queue = ctx.Queue()
                proc = ctx.Process(target=measure, args=(name, precision, freeze, args.steps, args.device,
                                                                 args.threads, queue))
                proc.start()
                seconds, peak, trained = queue.get()
                proc.join()
                fp32 = fp32 or seconds
                what = "all but the CNN" if freeze == "cnn" else "everything"
                print(f"| {name} | {c['batch']} x {c['seconds']:g} s | {what} ({trained / 1e6:.1f} M) | {precision} | "
                      f"{seconds:.3f} | {seconds / audio:.4f} | {peak:.0f} | {fp32 / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
