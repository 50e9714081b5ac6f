"""Extraction on a real corpus against FunASR's emotion2vec (the peer), measured in the same run on the same machine,
with the machine's arithmetic floor.

Rows (utterance features of the last layer, base geometry, the peer's own random weights with seed 0 loaded into
ours, so that every row is compared with the peer's features):
    FunASR, one at a time, fp32      the peer script funasr_extract.py: read, resample, normalise, forward, save
    emotion2vec extract, fp32        the exact default
    emotion2vec extract, bf16        --dtype bfloat16 (what --dtype auto picks for this model on a CPU with AMX /
                                     AVX512-BF16)
    emotion2vec extract, int8        --dtype int8 (the Transformer's linear layers in int8; CPU only)
    onnxruntime fp32, int8           with --onnx: emotion2vec export [--quantize int8], extract --backend onnxruntime
Each row runs in a fresh process; the rows alternate over --repeats rounds and each keeps its fastest (other jobs
share the CPU). Wall time is end to end after the model is loaded: decoding, resampling, batching, forward, writing.

The floor: every file's matrix-multiply FLOPs (benchmarks/_floor.py) at the GEMM rate of the row's dtype measured
in the row's own process just before and after its run (mean of the two); "floor" is the fraction of that limit a
row reaches (floor seconds / wall seconds). Memory: the row's peak RSS (VmHWM) against the RSS after loading (the
runtime and the weights) plus one batch's activations: the RSS growth of one forward of the largest batch in a fresh
process.

Then: the feature error of every row against the peer and against our fp32 (relative L2 per utterance), the
frame-level error distribution of bf16 and int8 against fp32 on the first --accuracy-files files, and the profile
(where the time goes per dtype, in the batches extraction runs; benchmarks/_profile.py).

    python benchmarks/extract.py [--corpus DIR] [--limit N] [--repeats 2] [--dtypes float32 bfloat16 int8] [--onnx]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _paths import PEERS, SHARED, peer_env

HERE = Path(__file__).resolve().parent

PEER_WEIGHTS = r"""
import copy, json, sys, torch, yaml
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from funasr_extract import BASE  # the peer's own model_conf
from funasr.models.emotion2vec.model import Emotion2vec
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)  # as funasr_extract.py does: the same weights
model = Emotion2vec(model_conf=copy.deepcopy(BASE))
torch.save({"state_dict": model.state_dict()}, out / "model.pt")
(out / "config.yaml").write_text(yaml.safe_dump({"model": "Emotion2vec", "model_conf": BASE}))
"""

# Peak RSS = VmHWM of the process that runs the model, read by itself at the end (getrusage's maxrss would include
# the memory of the parent it was forked from). Decoding workers hold no model and are not counted.
RSS = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('%s'))) / 1024"
PEAK = RSS % "VmHWM"

PEER = r"""
import contextlib, io, json, runpy, sys
sys.argv = sys.argv[1:]
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    runpy.run_path(sys.argv[0], run_name="__main__")
out = json.loads(buf.getvalue().strip().splitlines()[-1])
out["peak_rss_mib"] = %s
print(json.dumps(out))
""" % PEAK

OURS = r"""
import json, sys, time
a = json.loads(sys.argv[1])
sys.path.insert(0, a["here"])
import torch
from _floor import gemm_rates
from emotion2vec.extract.backends import load_backend
from emotion2vec.extract.run import run_extraction
rates = gemm_rates()
backend = load_backend(a["checkpoint"], a["device"], dtype=a["dtype"], backend=a["backend"])
loaded = %s
t0 = time.perf_counter()
r = run_extraction([a["scp"]], a["out"], backend, [backend.num_layers - 1], granularity="utterance",
                   num_workers=a["workers"], max_tokens=a["max_tokens"], progress=False, log=lambda m: None)
if a["device"].startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - t0
peak = %s
after = gemm_rates()
print(json.dumps({"seconds": seconds, "files": r.extracted, "audio_seconds": r.audio_seconds, "peak_rss_mib": peak,
                  "loaded_rss_mib": loaded, "rates": {k: (v + after[k]) / 2 for k, v in rates.items()}}))
""" % (RSS % "VmRSS", PEAK)

# One forward of the largest batch extraction forms (max_tokens // longest inputs of the longest length) in a fresh
# process: its peak RSS above the RSS after loading is one batch's activations (torch's buffers, oneDNN's scratch).
ACTIVATIONS = r"""
import json, sys, torch
a = json.loads(sys.argv[1])
from emotion2vec.extract.backends import load_backend
backend = load_backend(a["checkpoint"], a["device"], dtype=a["dtype"])
loaded = %s
n = min(a["longest"], a["chunk"])
batch = max(1, a["max_tokens"] // n)
backend.forward(torch.randn(batch, n), torch.full((batch,), n), [backend.num_layers - 1])
print(json.dumps({"activations_mib": %s - loaded, "batch": batch}))
""" % (RSS % "VmRSS", PEAK)

ACCURACY = r"""
import json, sys, numpy as np, torch
a = json.loads(sys.argv[1])
from emotion2vec.extract.backends import load_backend
from emotion2vec.io.audio import load_audio, normalize_waveform
backends = {name: load_backend(ckpt, a["device"] if not ckpt.endswith(".onnx") else "cpu", dtype=dtype)
            for name, (ckpt, dtype) in a["backends"].items()}
rel = {name: [] for name in backends if name != "fp32"}
for path in a["paths"]:
    x = normalize_waveform(torch.from_numpy(load_audio(path)))[None]
    feats = {n: b.forward(x, torch.tensor([x.shape[1]]), [b.num_layers - 1])[0, 0].double().cpu()
             for n, b in backends.items()}
    for n in rel:
        rel[n].append(float((feats[n] - feats["fp32"]).norm() / feats["fp32"].norm()))
print(json.dumps(rel))
"""

PROFILE = r"""
import json, sys, torch
a = json.loads(sys.argv[1])
sys.path.insert(0, a["here"])
from _profile import profile_extraction
from emotion2vec.extract.backends import load_backend
print(json.dumps({d: profile_extraction(load_backend(a["checkpoint"], dtype=d), a["paths"], a["repeats"],
                                        a["max_tokens"]) for d in a["dtypes"]}))
"""

LABEL = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}


def _json_run(cmd: list[str], env: dict | None = None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"a benchmark process failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _stats(values: list[float]) -> str:
    import numpy as np

    v = np.asarray(values)
    return (f"median {np.median(v):.2e}, p90 {np.percentile(v, 90):.2e}, p99 {np.percentile(v, 99):.2e}, "
            f"max {v.max():.2e}")


def corpus_files(corpus: str, limit: int = 0) -> list[str]:
    """The corpus's wav / flac files in the peer's order (sorted wavs, then flacs)."""
    files = sorted(glob.glob(os.path.join(corpus, "**", "*.wav"), recursive=True)
                   + glob.glob(os.path.join(corpus, "**", "*.flac"), recursive=True))
    return files[:limit] if limit else files


def corpus_flops(files: list[str]) -> tuple[dict[str, float], int]:
    """FLOPs by part of the base model's forward over every file (at 16 kHz), and the longest file in samples."""
    import soundfile as sf

    from _floor import forward_flops
    from emotion2vec.models.config import preset

    cfg = preset("emotion2vec_base")
    total: dict[str, float] = {}
    longest = 0
    for f in files:
        info = sf.info(f)
        n = int(round(info.frames * 16000 / info.samplerate))
        longest = max(longest, n)
        for k, v in forward_flops(cfg, n).items():
            total[k] = total.get(k, 0.0) + v
    return total, longest


def floor_cells(r: dict, dtype: str, flops: dict[str, float], bf16_units: bool) -> tuple[str, str]:
    """('floor s', 'fraction of the floor') of a row, from the GEMM rates measured in its process."""
    from _floor import floor_seconds

    if dtype not in LABEL or "rates" not in r or (dtype == "int8" and "int8" not in r["rates"]):
        return "—", "—"
    floor = floor_seconds(flops, dtype, r["rates"], bf16_units)
    return f"{floor:.1f}", f"{floor / r['seconds']:.0%}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--limit", type=int, default=0, help="first N files only (0 = all)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds; each row keeps its fastest")
    p.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU: fp32 and bf16 only, no profile)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8"], help="our rows' --dtype")
    p.add_argument("--onnx", action="store_true", help="also the ONNX Runtime rows (fp32, int8)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes of emotion2vec extract")
    p.add_argument("--max-tokens", type=int, default=None, help="default: emotion2vec extract's for the device")
    p.add_argument("--accuracy-files", type=int, default=100, help="files for the frame-level error distribution")
    p.add_argument("--profile-files", type=int, default=100, help="files for the profile (0: no profile)")
    args = p.parse_args()
    import numpy as np
    import torch

    from _floor import gemm_rates
    from _machine import machine_line
    from _profile import ROWS
    from emotion2vec.device import bf16_accelerated, cpu_bf16_acceleration
    from emotion2vec.extract.engine import default_max_tokens
    from emotion2vec.io.manifests import key_from_path

    cpu = args.device == "cpu"
    dtypes = [d for d in args.dtypes if cpu or d != "int8"]
    print(machine_line(gemm_rates()), flush=True)
    files = corpus_files(args.corpus, args.limit)
    keys = [key_from_path(os.path.relpath(f, args.corpus)) for f in files]
    flops, longest = corpus_flops(files)
    max_tokens = args.max_tokens or default_max_tokens(args.device)
    funasr_env = peer_env("funasr_emotion2vec.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scp = tmp / "inputs.scp"
        scp.write_text("".join(f"{k} {f}\n" for k, f in zip(keys, files)))
        ckpt = tmp / "peer_weights"
        subprocess.run([sys.executable, "-c", PEER_WEIGHTS, str(PEERS), str(ckpt)], check=True, env=funasr_env)
        graphs = {}
        if args.onnx and cpu:
            from emotion2vec.extract.export import export_onnx

            graphs = {q: export_onnx(ckpt, tmp / f"model_{q}.onnx", quantize=q)["path"] for q in ("none", "int8")}

        rows = {  # name -> how to run it once into an output folder
            "FunASR (peer), one at a time, fp32": lambda out: _json_run(
                [sys.executable, "-c", PEER, str(PEERS / "funasr_extract.py"), args.corpus,
                 "--limit", str(len(files)), "--threads", str(torch.get_num_threads()), "--out", str(out),
                 "--device", args.device],
                env=funasr_env),
        }
        ours = {f"emotion2vec extract, {LABEL[d]}": (str(ckpt), d, "torch") for d in dtypes}
        if graphs:
            ours["onnxruntime, fp32"] = (graphs["none"], "float32", "onnxruntime")
            ours["onnxruntime, int8 linear layers"] = (graphs["int8"], "float32", "onnxruntime")
        for name, (checkpoint, dtype, backend) in ours.items():
            rows[name] = lambda out, c=checkpoint, d=dtype, b=backend: _json_run([
                sys.executable, "-c", OURS, json.dumps(dict(
                    checkpoint=c, dtype=d, backend=b, scp=str(scp), out=str(out), workers=args.workers,
                    max_tokens=args.max_tokens, device=args.device if b == "torch" else "cpu", here=str(HERE)))])
        best: dict[str, dict] = {}
        for k in range(args.repeats):
            for i, (name, run) in enumerate(rows.items()):
                out = tmp / f"out{i}_{k}"
                out.mkdir()
                r = run(out)
                r["dir"] = out
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
                print(f"# round {k + 1}: {name}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)

        peer_name = next(iter(rows))
        peer_dir = best[peer_name]["dir"]
        feats = {peer_name: [np.load(peer_dir / f"{i:06d}.npy") for i in range(len(files))]}
        for name in ours:
            feats[name] = [np.load(best[name]["dir"] / f"{k}.npy") for k in keys]

        def rel(a, b):
            return [float(np.linalg.norm(x - y) / np.linalg.norm(y)) for x, y in zip(a, b)]

        accuracy_paths = files[: args.accuracy_files]
        compared = {LABEL[d]: (str(ckpt), d) for d in ["float32", *[d for d in dtypes if d != "float32"]]}
        if graphs:
            compared.update({"onnxruntime fp32": (graphs["none"], "float32"), "onnxruntime int8": (graphs["int8"],
                                                                                                   "float32")})
        accuracy = _json_run([sys.executable, "-c", ACCURACY, json.dumps(
            {"paths": accuracy_paths, "backends": compared, "device": args.device})])
        activations = {LABEL[d]: _json_run([sys.executable, "-c", ACTIVATIONS, json.dumps(
            {"checkpoint": str(ckpt), "dtype": d, "device": args.device, "max_tokens": max_tokens,
             "longest": longest, "chunk": 30 * 16000})]) for d in dtypes if cpu}
        profile = None
        if args.profile_files and cpu:
            profile = _json_run([sys.executable, "-c", PROFILE, json.dumps(
                {"checkpoint": str(ckpt), "paths": files[: args.profile_files], "repeats": 2, "dtypes": dtypes,
                 "here": str(HERE), "max_tokens": max_tokens})])

    peer = best[peer_name]
    audio = peer["audio_seconds"]
    units = bf16_accelerated(args.device)
    print(f"# extraction: {len(files)} files, {audio / 60:.1f} min of audio from {args.corpus}; base geometry with the "
          f"peer's random weights (seed 0); utterance features of the last layer; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; CPU bf16 units: "
          f"{cpu_bf16_acceleration() or 'none'}; ours: {args.workers} decode worker(s), batches of {max_tokens} "
          f"samples; fastest of {args.repeats} alternating rounds; {sum(flops.values()) / 1e12:.1f} TFLOP of matrix "
          f"products ({sum(flops.values()) / audio / 1e9:.1f} GFLOP per audio second)")
    print("| setting | wall s | files/s | s per audio s | speed vs peer | floor s | of the floor | peak RSS MiB | "
          "rel. L2 vs peer (max) | rel. L2 vs our fp32 (max) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    fp32_name = "emotion2vec extract, fp32"
    for name, r in best.items():
        dtype = ours[name][1] if name in ours and ours[name][2] == "torch" else None
        floor, fraction = floor_cells(r, dtype, flops, units) if dtype else ("—", "—")
        vs_peer = "—" if name == peer_name else f"{max(rel(feats[name], feats[peer_name])):.1e}"
        vs_fp32 = ("—" if name in (peer_name, fp32_name) or fp32_name not in feats
                   else f"{max(rel(feats[name], feats[fp32_name])):.1e}")
        print(f"| {name} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | {r['seconds'] / audio:.4f} | "
              f"{peer['seconds'] / r['seconds']:.2f}x | {floor} | {fraction} | {r['peak_rss_mib']:.0f} | {vs_peer} | "
              f"{vs_fp32} |")
    print(f"\npeer compute alone (forward only): {peer['compute_seconds'] / audio:.4f} s per audio s")
    for name, r in best.items():
        if "rates" in r:
            rates = ", ".join(f"{k} {v:.0f}" for k, v in r["rates"].items())
            print(f"- {name}: GEMM GFLOP/s in its process {rates}")
    print("\nmemory: peak RSS against the RSS after loading (runtime + weights) plus one batch's activations "
          "(the RSS growth of one forward of the largest batch, in a fresh process):")
    for name, r in best.items():
        key = LABEL.get(ours.get(name, ("", ""))[1]) if name in ours and ours[name][2] == "torch" else None
        act = activations.get(key) if key else None
        if act is not None and "loaded_rss_mib" in r:
            bound = r["loaded_rss_mib"] + act["activations_mib"]
            print(f"- {name}: peak {r['peak_rss_mib']:.0f} MiB; loaded {r['loaded_rss_mib']:.0f} + activations of a "
                  f"batch of {act['batch']} ({act['activations_mib']:.0f}) = {bound:.0f} MiB; peak / that = "
                  f"{r['peak_rss_mib'] / bound:.2f}")
    print(f"\nframe-level features, relative L2 per utterance against our fp32 ({len(accuracy_paths)} files):")
    for name, values in accuracy.items():
        bound = 0.02 if "int8" in name else 0.01
        print(f"- {name}: {_stats(values)}; {sum(v <= bound for v in values)}/{len(values)} within {bound:.0%}")
    if profile:
        print(f"\nprofile, s per audio s (the first {args.profile_files} files in extraction's batches, fastest of 2):")
        names = list(profile)
        print("| component | " + " | ".join(LABEL[d] for d in names) + " | "
              + " | ".join(f"{LABEL[d]} share" for d in names) + " |")
        print("|---|" + "---:|" * (2 * len(names)))
        for row in (*ROWS, "total"):
            print(f"| {row} | " + " | ".join(f"{profile[d][row]:.4f}" for d in names) + " | "
                  + " | ".join(f"{profile[d][row] / profile[d]['total']:.0%}" for d in names) + " |")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
