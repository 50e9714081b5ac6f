"""Extraction on a real corpus against FunASR's emotion2vec (the peer), measured in the same run on the same machine.

Rows (utterance features of the last layer, base geometry, the peer's own random weights with seed 0 loaded into
ours, so that every row is compared with the peer's features):
    FunASR, one at a time, fp32      ../shared/peers/funasr_extract.py: read, resample, normalise, forward, save
    emotion2vec extract, fp32        the exact default
    emotion2vec extract, bf16        --dtype bfloat16 (what --dtype auto picks on a CPU with AMX / AVX512-BF16)
    onnxruntime fp32, int8           emotion2vec export [--quantize int8], extract --backend onnxruntime
Each row runs in a fresh process (peak RSS = that process's VmHWM; decoding workers hold no model and are not
counted); the rows alternate over
--repeats rounds and each keeps its fastest (the CPU's speed drifts, other jobs share it). Wall time is end to end
after the model is loaded: decoding, resampling, batching, forward, writing.

Then: the feature error of every row against the peer and against our fp32 (relative L2 per utterance), the
frame-level error distribution of bf16 and int8 against fp32 on the first --accuracy-files files, and the profile
(where the time goes, fp32 and bf16, one file at a time over the first --profile-files files; benchmarks/_profile.py).

    python benchmarks/extract.py [--corpus ../shared/data/urdu] [--limit N] [--repeats 2] [--profile-files 100]
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

HERE = Path(__file__).resolve().parent
from _paths import PEERS, SHARED  # noqa: E402

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
PEAK = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))) / 1024"

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
from emotion2vec.extract.backends import load_backend
from emotion2vec.extract.run import run_extraction
backend = load_backend(a["checkpoint"], a["device"], dtype=a["dtype"], backend=a["backend"])
t0 = time.perf_counter()
r = run_extraction([a["scp"]], a["out"], backend, [backend.num_layers - 1], granularity="utterance",
                   num_workers=a["workers"], max_tokens=a["max_tokens"], progress=False, log=lambda m: None)
if a["device"].startswith("cuda"):
    import torch
    torch.cuda.synchronize()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "files": r.extracted, "audio_seconds": r.audio_seconds,
                  "peak_rss_mib": %s}))
""" % PEAK

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
sys.path.insert(0, sys.argv[2])
from _profile import profile_extraction
from emotion2vec.extract.backends import load_backend
a = json.loads(sys.argv[1])
print(json.dumps({d: profile_extraction(load_backend(a["checkpoint"], dtype=d), a["paths"], a["repeats"])
                  for d in a["dtypes"]}))
"""


def _json_run(cmd: list[str], env: dict | None = None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"a benchmark process failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _peer_env(script: str) -> dict:
    path = subprocess.run(["bash", str(PEERS / script)], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PY=sys.executable)).stdout.strip().splitlines()[-1]
    return dict(os.environ, PYTHONPATH=path)


def _stats(values: list[float]) -> str:
    import numpy as np

    v = np.asarray(values)
    return (f"median {np.median(v):.2e}, p90 {np.percentile(v, 90):.2e}, p99 {np.percentile(v, 99):.2e}, "
            f"max {v.max():.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--limit", type=int, default=0, help="first N files only (0 = all)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds; each row keeps its fastest")
    p.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU: no ONNX rows and no profile)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes of emotion2vec extract")
    p.add_argument("--max-tokens", type=int, default=None, help="default: emotion2vec extract's for the CPU")
    p.add_argument("--accuracy-files", type=int, default=100, help="files for the frame-level error distribution")
    p.add_argument("--profile-files", type=int, default=100, help="files for the profile (0: no profile)")
    args = p.parse_args()
    import numpy as np
    import torch

    from _machine import machine_line
    from _profile import ROWS
    from emotion2vec.device import cpu_bf16_acceleration
    from emotion2vec.extract.engine import default_max_tokens
    from emotion2vec.extract.export import export_onnx
    from emotion2vec.io.manifests import key_from_path

    print(machine_line(), flush=True)
    files = sorted(glob.glob(os.path.join(args.corpus, "**", "*.wav"), recursive=True)
                   + glob.glob(os.path.join(args.corpus, "**", "*.flac"), recursive=True))  # the peer's order
    files = files[: args.limit] if args.limit else files
    keys = [key_from_path(os.path.relpath(f, args.corpus)) for f in files]
    funasr_env = _peer_env("funasr_emotion2vec.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scp = tmp / "inputs.scp"
        scp.write_text("".join(f"{k} {f}\n" for k, f in zip(keys, files)))
        ckpt = tmp / "peer_weights"
        subprocess.run([sys.executable, "-c", PEER_WEIGHTS, str(PEERS), str(ckpt)], check=True, env=funasr_env)
        t = time.perf_counter()
        cpu = args.device == "cpu"
        graphs = {q: export_onnx(ckpt, tmp / f"model_{q}.onnx", quantize=q)["path"] for q in ("none", "int8") if cpu}
        export_seconds = time.perf_counter() - t

        rows = {  # name -> how to run it once into an output folder
            "FunASR (peer), one at a time, fp32": lambda out: _json_run(
                [sys.executable, "-c", PEER, str(PEERS / "funasr_extract.py"), args.corpus,
                 "--limit", str(len(files)), "--threads", str(torch.get_num_threads()), "--out", str(out),
                 "--device", args.device],
                env=funasr_env),
        }
        ours = {"emotion2vec extract, fp32": (str(ckpt), "float32", "torch"),
                "emotion2vec extract, bf16": (str(ckpt), "bfloat16", "torch")}
        if cpu:
            ours["onnxruntime, fp32"] = (graphs["none"], "float32", "onnxruntime")
            ours["onnxruntime, int8 linear layers"] = (graphs["int8"], "float32", "onnxruntime")
        for name, (checkpoint, dtype, backend) in ours.items():
            rows[name] = lambda out, c=checkpoint, d=dtype, b=backend: _json_run([sys.executable, "-c", OURS, json.dumps(
                dict(checkpoint=c, dtype=d, backend=b, scp=str(scp), out=str(out), workers=args.workers,
                     max_tokens=args.max_tokens, device=args.device if b == "torch" else "cpu"))])
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
        compared = {"fp32": (str(ckpt), "float32"), "bf16": (str(ckpt), "bfloat16")}
        if cpu:
            compared.update({"onnxruntime fp32": (graphs["none"], "float32"), "int8": (graphs["int8"], "float32")})
        frame_rel = _json_run([sys.executable, "-c", ACCURACY, json.dumps(
            {"paths": accuracy_paths, "backends": compared, "device": args.device})])
        profile = None
        if args.profile_files and cpu:
            profile = _json_run([sys.executable, "-c", PROFILE, json.dumps(
                {"checkpoint": str(ckpt), "paths": files[: args.profile_files], "repeats": 2,
                 "dtypes": ["float32", "bfloat16"]}), str(HERE)])

    peer = best[peer_name]
    audio = peer["audio_seconds"]
    print(f"# extraction: {len(files)} files, {audio / 60:.1f} min of audio from {args.corpus}; base geometry with the "
          f"peer's random weights (seed 0); utterance features of the last layer; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; CPU bf16 acceleration: "
          f"{cpu_bf16_acceleration() or 'none'}; ours: "
          f"{args.workers} decode worker(s), batches of {args.max_tokens or default_max_tokens(args.device)} samples; "
          f"fastest of {args.repeats} alternating rounds; ONNX export of fp32 + int8: {export_seconds:.0f} s")
    print("| setting | wall s | files/s | s per audio s | speed vs peer | peak RSS MiB | rel. L2 vs peer (max) | "
          "rel. L2 vs our fp32 (max) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    fp32 = feats["emotion2vec extract, fp32"]
    for name, r in best.items():
        vs_peer = "—" if name == peer_name else f"{max(rel(feats[name], feats[peer_name])):.1e}"
        vs_fp32 = "—" if name in (peer_name, "emotion2vec extract, fp32") else f"{max(rel(feats[name], fp32)):.1e}"
        print(f"| {name} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | {r['seconds'] / audio:.4f} | "
              f"{peer['seconds'] / r['seconds']:.2f}x | {r['peak_rss_mib']:.0f} | {vs_peer} | {vs_fp32} |")
    print(f"\npeer compute alone (forward only): {peer['compute_seconds'] / audio:.4f} s per audio s")
    print(f"\nframe-level features, relative L2 per utterance against our fp32 ({len(accuracy_paths)} files):")
    for name, values in frame_rel.items():
        print(f"- {name}: {_stats(values)}; {sum(v <= 0.01 for v in values)}/{len(values)} within 1 %")
    if profile:
        print(f"\nprofile, s per audio s (one file at a time, first {args.profile_files} files, fastest of 2):")
        print("| component | fp32 | bf16 | fp32 share | bf16 share |")
        print("|---|---:|---:|---:|---:|")
        f, b = profile["float32"], profile["bfloat16"]
        for row in (*ROWS, "total"):
            print(f"| {row} | {f[row]:.4f} | {b[row]:.4f} | {f[row] / f['total']:.0%} | {b[row] / b['total']:.0%} |")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
