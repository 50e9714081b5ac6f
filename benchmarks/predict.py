"""Emotion recognition of a corpus (`emotion2vec predict`) against FunASR's emotion2vec (the peer), in the same run.

The model is an emotion2vec+ folder in base geometry (FunASR's layout: model.pt with the encoder and the ``proj``
head, config.yaml, tokens.txt with the 9 emotion2vec+ labels) built from the peer's own random weights (seed 0) and a
random head, so the work is that of emotion2vec_plus_base. Rows, each in a fresh process, alternating over
--repeats rounds, each keeping its fastest:
    FunASR (peer), one at a time, fp32   the peer script funasr_extract.py: read, resample, normalise, forward, mean
                                         (its classification head, a 768 x 9 product, is not run: negligible)
    emotion2vec predict, fp32            the exact default
    emotion2vec predict, --dtype auto    the fastest measured for this model and device (bf16 on CPUs with AMX /
                                         AVX512-BF16 for this 768-wide model, fp32 elsewhere)
    emotion2vec predict, --dtype int8    the Transformer's linear layers in int8 (CPU)
Times are end to end after loading the model: decoding, resampling, batching, forward, head, writing the TSV. The
floor and the GEMM rates as in benchmarks/extract.py. The last column is the agreement of the predicted labels with
fp32.

    python benchmarks/predict.py [--corpus DIR] [--limit N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from extract import (HERE, PEAK, PEER, PEER_WEIGHTS, PEERS, SHARED, _json_run, corpus_files, corpus_flops, floor_cells,
                     peer_env)

LABELS = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral", "其他/other", "难过/sad",
          "吃惊/surprised", "<unk>"]

ADD_HEAD = r"""
import sys, torch
path = sys.argv[1]
ckpt = torch.load(path + "/model.pt", weights_only=True)
g = torch.Generator().manual_seed(1)
ckpt["state_dict"]["proj.weight"] = torch.randn(9, 768, generator=g) * 0.05
ckpt["state_dict"]["proj.bias"] = torch.zeros(9)
torch.save(ckpt, path + "/model.pt")
"""

OURS = r"""
import json, sys, time
a = json.loads(sys.argv[1])
sys.path.insert(0, a["here"])
import torch
from _floor import gemm_rates
from emotion2vec.extract.backends import ModelBackend, resolve_dtype
from emotion2vec.extract.engine import BatchedForward
from emotion2vec.models.upstream import load_upstream
from emotion2vec.recognize.recognizer import Recognizer
from emotion2vec.recognize.run import predict, write_outputs
rates = gemm_rates()
model, ckpt = load_upstream(a["model"])
recognizer = Recognizer.from_spec(ckpt.classifier, model.cfg.num_layers, model.cfg.embed_dim, a["model"])
dtype = resolve_dtype(a["dtype"], "cpu", model.cfg.embed_dim)
backend = ModelBackend(model, torch.device("cpu"), dtype)
engine = BatchedForward(backend, [recognizer.layer], None, 30.0)
t0 = time.perf_counter()
predictions = predict(engine, recognizer, [a["scp"]], num_workers=1, progress=False)
write_outputs(predictions, recognizer, a["out"], None)
seconds = time.perf_counter() - t0
peak = %s
after = gemm_rates()
print(json.dumps({"seconds": seconds, "files": sum(p.error is None for p in predictions),
                  "dtype": str(dtype).replace("torch.", ""), "peak_rss_mib": peak,
                  "rates": {k: (v + after[k]) / 2 for k, v in rates.items()}}))
""" % PEAK


def _labels(tsv: Path) -> dict[str, str]:
    with open(tsv, newline="") as f:
        return {row["key"]: row["label"] for row in csv.DictReader(f, delimiter="\t")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--limit", type=int, default=0, help="first N files only (0 = all)")
    p.add_argument("--repeats", type=int, default=1, help="alternating rounds; each row keeps its fastest")
    args = p.parse_args()

    from _machine import machine_line
    from emotion2vec.device import bf16_accelerated
    from emotion2vec.io.manifests import key_from_path

    print(machine_line(), flush=True)
    files = [Path(f) for f in corpus_files(args.corpus, args.limit)]
    flops, _ = corpus_flops([str(f) for f in files])
    funasr_env = peer_env("funasr_emotion2vec.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scp = tmp / "inputs.scp"
        scp.write_text("".join(f"{key_from_path(str(f.relative_to(args.corpus)))} {f}\n" for f in files))
        model = tmp / "emotion2vec_plus_base_random"
        subprocess.run([sys.executable, "-c", PEER_WEIGHTS, str(PEERS), str(model)], check=True, env=funasr_env)
        subprocess.run([sys.executable, "-c", ADD_HEAD, str(model)], check=True)
        (model / "tokens.txt").write_text("".join(f"{label}\n" for label in LABELS))

        peer_out = tmp / "peer"
        peer_out.mkdir()
        rows = {"FunASR (peer), one at a time, fp32": lambda k: _json_run(
            [sys.executable, "-c", PEER, str(PEERS / "funasr_extract.py"), args.corpus, "--out", str(peer_out)]
            + (["--limit", str(args.limit)] if args.limit else []), env=funasr_env)}
        ours = {"emotion2vec predict, fp32": "float32", "emotion2vec predict, --dtype auto": "auto",
                "emotion2vec predict, --dtype int8": "int8"}
        for name, dtype in ours.items():
            rows[name] = lambda k, d=dtype: _json_run([sys.executable, "-c", OURS, json.dumps(
                {"model": str(model), "scp": str(scp), "dtype": d, "out": str(tmp / f"{d}{k}.tsv"),
                 "here": str(HERE)})])
        best: dict[str, dict] = {}
        for k in range(args.repeats):
            for name, run in rows.items():
                r = run(k)
                print(f"# round {k + 1}: {name}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
        reference = _labels(tmp / "float320.tsv")
        agree = {name: sum(_labels(tmp / f"{d}0.tsv")[k] == v for k, v in reference.items()) / len(reference)
                 for name, d in ours.items()}

    peer = best["FunASR (peer), one at a time, fp32"]
    audio = peer["audio_seconds"]
    units = bf16_accelerated("cpu")
    print(f"# recognition: {len(files)} files, {audio / 60:.1f} min of audio from {args.corpus}; emotion2vec+ folder "
          f"in base geometry (random weights); --dtype auto chose {best['emotion2vec predict, --dtype auto']['dtype']}; "
          f"fastest of {args.repeats} round(s); {sum(flops.values()) / audio / 1e9:.1f} GFLOP of matrix products per "
          f"audio second; floor: those FLOPs at the GEMM rate measured in each row's process")
    print("| setting | wall s | files/s | s per audio s | speed vs peer | floor s | of the floor | peak RSS MiB | "
          "labels equal to fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in best.items():
        same = "—" if name not in agree else f"{agree[name]:.1%}"
        floor, fraction = floor_cells(r, r.get("dtype", ""), flops, units) if name in ours else ("—", "—")
        print(f"| {name} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | {r['seconds'] / audio:.4f} | "
              f"{peer['seconds'] / r['seconds']:.2f}x | {floor} | {fraction} | {r['peak_rss_mib']:.0f} | {same} |")


if __name__ == "__main__":
    main()
