"""Where the arithmetic floor is lost: each component of the base model's forward (the rows of the extraction
profile, benchmarks/_profile.py) with its matrix-product FLOPs, its time, the GFLOP/s it achieves, and the rate of
a single product of the component's own shape (the rows the model's batches give it) beside the 2048^3 rate that
benchmarks/extract.py's floor uses.

Base geometry, random weights (seed 0), the first --files URDU files through extraction's batching engine
(ModelBackend, the default --max-tokens), last layer; the fastest of 2 passes. Components without matrix products
(norms, residuals, decoding) show their time only: the floor counts them as free.

    python benchmarks/roofline.py [--corpus DIR] [--files 100] [--dtypes float32 bfloat16] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

#: profile row -> the forward_flops parts it holds (fraction of the part)
PARTS = {
    "CNN first layer": (), "CNN last two layers": (), "CNN middle layers": (("cnn", 1.0),),
    "projection": (("projection", 1.0),), "positional conv": (("pos_conv", 1.0),),
    "attention projections": (("linears", None),), "attention core": (("attention", 1.0),),
    "FFN": (("linears", None),),
}


def cnn_fp32_flops(cfg, samples: int) -> tuple[float, float]:
    """FLOPs of the first and of the last two CNN layers for one input (the layers reduced precision keeps fp32)."""
    out, n, c_in = [], samples, 1
    for c, k, s in cfg.conv_layers:
        n = max(0, (n - k) // s + 1)
        out.append(2.0 * n * c * c_in * k)
        c_in = c
    return out[0], sum(out[-2:])


def shape_rate(dtype, m: int, k: int, n: int) -> float:
    """GFLOP/s of one (m x k) @ (k x n) product in ``dtype`` as inference runs it: oneDNN's linear with the weight
    prepacked once (bf16 on a CPU with oneDNN), else torch's matmul."""
    import torch

    from _floor import _time_rate
    from emotion2vec.models.inference import onednn_kernels

    x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    if dtype == torch.bfloat16 and onednn_kernels():
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        f = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")  # noqa: E731
    else:
        wt = w.t().contiguous()
        f = lambda: x @ wt  # noqa: E731
    return _time_rate(f, 2.0 * m * k * n, seconds=0.3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=None)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=("float32", "bfloat16"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, one per core)")
    args = p.parse_args()
    import soundfile as sf
    import torch

    from _floor import forward_flops, gemm_rates
    from _machine import machine_line
    from _paths import SHARED
    from _profile import profile_extraction
    from emotion2vec.extract.backends import ModelBackend
    from emotion2vec.extract.engine import default_max_tokens
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    if args.threads:
        torch.set_num_threads(args.threads)
    rates = gemm_rates()
    print(machine_line(rates), flush=True)
    corpus = Path(args.corpus or SHARED / "data" / "urdu")
    paths = [str(q) for q in sorted(corpus.rglob("*.wav"))[: args.files]]
    cfg = preset("emotion2vec_base")
    flops: dict[str, float] = {}
    audio = 0.0
    frames, samples = [], []
    for path in paths:
        info = sf.info(path)
        n = int(round(info.frames * 16000 / info.samplerate))
        audio += n / 16000
        frames.append(n // 320)
        samples.append(n)
        for k, v in forward_flops(cfg, n).items():
            flops[k] = flops.get(k, 0.0) + v
    cnn_fp32 = {"CNN first layer": 0.0, "CNN last two layers": 0.0}
    for n in samples:
        first, last = cnn_fp32_flops(cfg, n)
        cnn_fp32["CNN first layer"] += first
        cnn_fp32["CNN last two layers"] += last
    D, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    projections = 4 * D * D / (4 * D * D + 2 * D * hidden)  # the attention projections' share of the linears
    share = {"attention projections": projections, "FFN": 1 - projections}
    # the rows one batch gives a Transformer product: the batch's inputs x their frames (batches of similar length)
    max_tokens = default_max_tokens("cpu")
    typical = sorted(frames)[len(frames) // 2]
    rows = max(1, max_tokens // (typical * 320)) * typical
    shapes = {"attention projections": (rows, D, 3 * D), "FFN": (rows, D, hidden)}

    torch.manual_seed(0)
    model = Emotion2VecModel(cfg, with_decoder=False).eval()
    results = {}
    for name in args.dtypes:
        dtype = getattr(torch, name)
        backend = ModelBackend(copy.deepcopy(model), torch.device("cpu"), dtype)
        results[name] = profile_extraction(backend, paths, 2)
        results[name]["shape rates"] = {row: shape_rate(dtype, *s) for row, s in shapes.items()}

    total_flops = sum(flops.values())
    print(f"# {len(paths)} files, {audio:.0f} s of audio; {total_flops / audio / 1e9:.1f} GFLOP of matrix products "
          f"per audio second; a Transformer product of a typical batch has {rows} rows (median input {typical} "
          f"frames, batches of {max_tokens} samples)")
    for name in args.dtypes:
        rate = rates["fp32" if name == "float32" else "bf16"]
        prof = results[name]
        print(f"\n{name}: the 2048^3 rate is {rate:.0f} GFLOP/s; floor {total_flops / audio / rate / 1e9:.4f} s per "
              f"audio s, measured {prof['total']:.4f} ({total_flops / audio / rate / 1e9 / prof['total']:.0%})")
        print("| component | GFLOP per audio s | s per audio s | achieved GFLOP/s | of the 2048^3 rate | "
              "rate of one product of its shape | time above its floor, s per audio s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        lost = 0.0
        for row in (*PARTS, "block norms + residuals", "other forward", "decode + resample", "normalise",
                    "write .npy"):
            seconds = prof[row]
            work = sum(flops[part] * (share[row] if f is None else f) for part, f in PARTS.get(row, ())) / audio
            if row in ("CNN first layer", "CNN last two layers"):
                work = cnn_fp32[row] / audio
            above = seconds - work / rate / 1e9
            lost += above
            if work:
                shape = prof["shape rates"].get(row)
                shape_cell = f"{shape:.0f}" if shape else "—"
                print(f"| {row} | {work / 1e9:.2f} | {seconds:.4f} | {work / 1e9 / seconds:.0f} | "
                      f"{work / 1e9 / seconds / rate:.0%} | {shape_cell} | {above:.4f} |")
            else:
                print(f"| {row} | — | {seconds:.4f} | — | — | — | {above:.4f} |")
        print(f"| total | {total_flops / audio / 1e9:.2f} | {prof['total']:.4f} | "
              f"{total_flops / audio / 1e9 / prof['total']:.0f} | {total_flops / audio / 1e9 / prof['total'] / rate:.0%}"
              f" | — | {lost:.4f} |")


if __name__ == "__main__":
    main()
