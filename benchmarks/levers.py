"""Each speed lever of CPU inference on its own: A/B in one process, interleaved (A, B, A, B, ... over --rounds
rounds, the median of each), so that a shared, drifting CPU affects both sides alike. Base geometry, the peer's
random weights are not needed: random weights (seed 0), the first --files URDU files (decoded once) through
extraction's batching engine, last layer.

Levers (B against A; "kept" = what emotion2vec runs by default, "dropped" = measured and not used):
    cnn per input         fp32 and bf16: the CNN per input in time tiles (B) vs on the padded batch (A)
    first layer folded    bf16: LayerNorm folded + GELU fused + split-bf16 product (B) vs the plain fp32 layer (A)
    middle convolutions   bf16: oneDNN channels-last prepacked convolution (B) vs windows + prepacked linear (A)
    FFN GELU fused        bf16: fc1 with its GELU fused (B) vs separate (A)
    positional conv       bf16: channels-last prepacked grouped convolutions in fp32 (B) vs Conv1d with transposes (A)
    packed linears        bf16: attention projections with prepacked weights (B) vs autocast linear (A)
    positional conv bf16  bf16: the positional convolutions in bf16 (B) vs fp32 (A)
    eager attention       fp32 and bf16: the explicit-softmax attention (B) vs SDPA (A)
    int8                  the Transformer's linear layers in int8 (B) vs bf16 (A)
    int8 scales per row   int8 with one activation scale per row (B) vs per tensor over [min, max] (A)
    batch                 bf16: --max-tokens 32000 (one 2 s input per batch), 160000 (the default), 640000
    threads               bf16: 1 thread (B) vs all (A)
    decode overlap        bf16, emotion2vec extract end to end: 1 decoding worker (B) vs decoding in the main process

Printed per lever: A and B in ms per audio second, B's speed-up, and B's frame-level error against fp32 where it
changes precision (relative L2, max over the files).

    python benchmarks/levers.py [--files 40] [--rounds 5] [--threads N] [--cpu-time] [--only NAME ...]

On a shared machine, `--threads 1 --cpu-time` compares the kernels steadily (one thread's CPU time is not stretched
by other jobs; with several threads, a thread that waits for a descheduled one stretches the whole step).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import types
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=None)
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cpu-time", action="store_true", help="the process's CPU time instead of wall time")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, one per core)")
    p.add_argument("--only", nargs="+", default=None, help="levers to run (names as printed, e.g. 'int8')")
    args = p.parse_args()
    import numpy as np
    import torch

    from _machine import machine_line
    from _paths import SHARED
    from emotion2vec.extract.backends import ModelBackend
    from emotion2vec.extract.engine import BatchedForward
    from emotion2vec.io.audio import load_audio, normalize_waveform
    from emotion2vec.models import inference
    from emotion2vec.models.components import ConvLayerBlock
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line(), flush=True)
    inference._release = lambda *modules: None  # keep every module's weight: the variants put plain layers back
    clock = time.process_time if args.cpu_time else time.perf_counter
    corpus = Path(args.corpus or SHARED / "data" / "urdu")
    paths = sorted(corpus.rglob("*.wav"))[: args.files]
    wavs = [normalize_waveform(torch.from_numpy(load_audio(p))) for p in paths]
    audio = sum(len(w) for w in wavs) / 16000
    torch.manual_seed(0)
    model = Emotion2VecModel(preset("emotion2vec_base"), with_decoder=False).eval()

    def backend(dtype=torch.float32, **kw):
        return ModelBackend(copy.deepcopy(model), torch.device("cpu"), dtype, **kw)

    def run(b, max_tokens=None):
        return lambda: BatchedForward(b, [11], max_tokens)(wavs)

    reference = run(backend())()

    def error(outputs) -> float:
        return max(float((o.double() - r.double()).norm() / r.double().norm()) for o, r in zip(outputs, reference))

    # ---- the variants: each a function returning (the run, a backend or None for its error) ------------------------
    def batched_cnn(dtype):
        b = backend(dtype)
        b.per_input = False
        return b

    def plain_first_layer():
        b = backend(torch.bfloat16)
        layer = b.model.feature_extractor.layers[0]
        layer.forward = inference._Float32Forward(types.MethodType(ConvLayerBlock.forward, layer))
        return b

    def windows_middle():
        b = backend(torch.bfloat16)
        for layer in b.model.feature_extractor.layers[1:-2]:
            packed = inference._PackedLinear(types.SimpleNamespace(weight=layer.conv.weight.flatten(1), bias=None))
            out = layer.forward.out_dtype

            def forward(x, layer=layer, packed=packed, out=out):
                y = packed(layer.conv.columns(x.to(torch.bfloat16)))
                return inference._layer_norm_gelu(y, layer.norm, out)

            layer.forward = forward
        return b

    def unfused_ffn():
        b = backend(torch.bfloat16)
        for block in [*b.model.encoder.prenet, *b.model.encoder.blocks]:
            f = block.feed_forward
            del f.forward
            f.fc1.forward, f.fc2.forward = inference._PackedLinear(f.fc1), inference._PackedLinear(f.fc2)
        return b

    def plain_pos_conv():
        b = backend(torch.bfloat16)
        pc = b.model.encoder.pos_conv
        pc.forward = inference._Float32Forward(types.MethodType(type(pc).forward, pc))
        return b

    def autocast_linears():
        b = backend(torch.bfloat16)
        for block in [*b.model.encoder.prenet, *b.model.encoder.blocks]:
            del block.attention.qkv.forward, block.attention.out_proj.forward
        return b

    def bf16_pos_conv():
        b = backend(torch.bfloat16)
        pc = b.model.encoder.pos_conv
        pc.to(torch.bfloat16)
        pc.forward = types.MethodType(type(pc).forward, pc)
        return b

    class _RowInt8(inference._Int8Linear):
        """int8 with one activation scale per row (token), symmetric: the scales applied to the output."""

        def __call__(self, x):
            with torch.autocast("cpu", enabled=False):
                x = x.float()
                scale = (x.abs().amax(-1, keepdim=True) / 127).clamp_min(1e-12)
                q = (x / scale).add_(128.5).clamp_(0, 255.49).to(torch.uint8)
                y = torch.ops.onednn.qlinear_pointwise(q, 1.0, 128, self.weight, self.w_scale, self.w_zero, None,
                                                       1.0, 0, torch.float32, "none", [], "")
                y = y.mul_(scale) if self.bias is None else torch.addcmul(self.bias, y, scale)
                return (torch.nn.functional.gelu(y) if self.attr == "gelu" else y).to(self.out_dtype)

    def int8_per_row():
        b = backend(torch.int8)
        out = b.autocast or torch.float32
        fp32_blocks = [*model.encoder.prenet, *model.encoder.blocks]  # quantised from the fp32 weights
        for block, src in zip([*b.model.encoder.prenet, *b.model.encoder.blocks], fp32_blocks):
            a, f, sa, sf = block.attention, block.feed_forward, src.attention, src.feed_forward
            a.qkv.forward, a.out_proj.forward = _RowInt8(sa.qkv, out), _RowInt8(sa.out_proj, out)
            f.forward = inference._FusedFeedForward(_RowInt8(sf.fc1, out, gelu=True), _RowInt8(sf.fc2, out))
        return b

    def eager(dtype):
        b = backend(dtype)
        b.model.set_attention_implementation("eager")
        return b

    def threads(n):
        b = backend(torch.bfloat16)
        f = run(b)

        def go():
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return f()
            finally:
                torch.set_num_threads(before)
        return go

    def extract_end_to_end(workers):
        from emotion2vec.extract.run import run_extraction

        b = backend(torch.bfloat16)
        tmp = Path(tempfile.mkdtemp())
        scp = tmp / "inputs.scp"
        scp.write_text("".join(f"u{i} {p}\n" for i, p in enumerate(paths)))

        def go():
            run_extraction([str(scp)], tmp / "out", b, [11], granularity="utterance", num_workers=workers,
                           overwrite=True, progress=False, log=lambda m: None)
        return go

    f32, b16 = backend(), backend(torch.bfloat16)
    levers = {  # name: (A label, A run, B label, B run, B's backend for the error or None)
        "cnn per input, fp32": ("batched CNN", run(batched_cnn(torch.float32)), "per input", run(f32), None),
        "cnn per input, bf16": ("batched CNN", run(batched_cnn(torch.bfloat16)), "per input", run(b16), b16),
        "first layer folded": ("plain fp32 layer", run(plain_first_layer()), "folded", run(b16), b16),
        "middle convolutions": ("windows + linear", run(windows_middle()), "channels-last conv", run(b16), b16),
        "FFN GELU fused": ("separate", run(unfused_ffn()), "fused", run(b16), b16),
        "positional conv": ("Conv1d + transposes", run(plain_pos_conv()), "channels-last", run(b16), b16),
        "packed linears": ("autocast linear", run(autocast_linears()), "prepacked", run(b16), b16),
        "positional conv bf16": ("fp32", run(b16), "bf16", run(bf16_pos_conv()), "bf16_pos_conv"),
        "eager attention, fp32": ("sdpa", run(f32), "eager", run(eager(torch.float32)), None),
        "eager attention, bf16": ("sdpa", run(b16), "eager", run(eager(torch.bfloat16)), None),
        "int8": ("bf16", run(b16), "int8", run(backend(torch.int8)), "int8"),
        "int8 scales per row": ("per tensor", run(backend(torch.int8)), "per row", run(int8_per_row()),
                                "int8_per_row"),
        "batch 32000 vs 160000": ("160000", run(b16), "32000", run(b16, 32000), None),
        "batch 640000 vs 160000": ("160000", run(b16), "640000", run(b16, 640000), None),
        "threads": (f"{torch.get_num_threads()} threads", run(b16), "1 thread", threads(1), None),
        "decode overlap": ("0 workers", extract_end_to_end(0), "1 worker", extract_end_to_end(1), None),
    }
    if torch.get_num_threads() == 1:
        del levers["threads"]
    if args.cpu_time:  # the decoding worker's CPU time is not the main process's: only wall time compares them
        del levers["decode overlap"]
    if args.only:
        levers = {k: v for k, v in levers.items() if any(o in k for o in args.only)}
    errors = {"bf16": error(run(b16)())}
    for key, fn in (("bf16_pos_conv", bf16_pos_conv), ("int8", lambda: backend(torch.int8)),
                    ("int8_per_row", int8_per_row)):
        if any(v[4] == key for v in levers.values()):
            errors[key] = error(run(fn())())
    times: dict[str, list[list[float]]] = {k: [[], []] for k in levers}
    for k, (_, a, _, b, _) in levers.items():  # warm-up
        a()
        b()
    for _ in range(args.rounds):
        for k, (_, a, _, b, _) in levers.items():
            for side, f in enumerate((a, b)):
                t = clock()
                f()
                times[k][side].append(clock() - t)
    print(f"# levers: {len(paths)} files, {audio:.0f} s of audio; base geometry, random weights; "
          f"{'CPU' if args.cpu_time else 'wall'} time, median of {args.rounds} interleaved rounds; "
          f"{torch.get_num_threads()} threads; bf16 frame-level error vs fp32 (max) {errors['bf16']:.2e}")
    print("| lever | A | A ms per audio s | B | B ms per audio s | B speed-up | B error vs fp32 (max) |")
    print("|---|---|---:|---|---:|---:|---:|")
    for k, (la, _, lb, _, err) in levers.items():
        ta, tb = (statistics.median(v) / audio * 1000 for v in times[k])
        e = "—" if err is None else f"{errors['bf16'] if err is b16 else errors[err]:.2e}"
        print(f"| {k} | {la} | {ta:.1f} | {lb} | {tb:.1f} | {ta / tb:.2f}x | {e} |")


if __name__ == "__main__":
    main()
