"""Peak memory of `emotion2vec extract` on one long file: chunked windows (the default) vs the whole file at once.

Frame-level features of the last layer with the base preset (random weights, saved once to a temporary folder), on
one file of each duration made by concatenating clips of a corpus (URDU by default) and resampled to 16 kHz. Each run
is a fresh `emotion2vec extract` process; its peak RSS is the largest of that process and its decoding worker. The
baseline is the same command with `--chunk-seconds` longer than the file (one forward over the whole file, what the
official script and FunASR do); wall time includes the process start-up and the model load. The ratio column is
baseline peak / chunked peak. Durations above `--unchunked-max-minutes` skip the baseline (attention over a whole
10-minute file needs tens of GiB).

    python benchmarks/extract_memory.py [--minutes 0.5 2 10] [--unchunked-max-minutes 2] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _paths import SHARED

WRAPPER = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
dt = time.perf_counter() - t0
print(json.dumps({"code": code, "seconds": dt, "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _make_inputs(corpus: Path, minutes: list[float], out: Path) -> dict[float, Path]:
    import numpy as np
    import soundfile as sf

    from emotion2vec.io.audio import load_audio

    clips = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in {".wav", ".flac"})
    if not clips:
        sys.exit(f"error: no wav/flac files under {corpus}")
    need = int(max(minutes) * 60 * 16000)
    parts, total = [], 0
    for path in itertools.cycle(clips):  # through the corpus, again if need be, until long enough
        wav = load_audio(path)
        parts.append(wav)
        total += len(wav)
        if total >= need:
            break
    audio = np.concatenate(parts)
    files = {}
    for m in minutes:
        files[m] = out / f"long_{m:g}min.wav"
        sf.write(files[m], audio[: int(m * 60 * 16000)], 16000, subtype="FLOAT")
    return files


def _run(checkpoint: Path, wav: Path, out: Path, chunk_seconds: float) -> dict:
    cmd = [sys.executable, "-m", "emotion2vec", "extract", "--checkpoint", str(checkpoint), "--input", str(wav),
           "--out", str(out), "--granularity", "frame", "--chunk-seconds", str(chunk_seconds)]
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        return {"code": res.returncode or 1, "error": res.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--preset", default="emotion2vec_base")
    p.add_argument("--minutes", type=float, nargs="+", default=[0.5, 2, 10])
    p.add_argument("--unchunked-max-minutes", type=float, default=2)
    args = p.parse_args()

    import torch

    from emotion2vec.models.checkpoint import save_checkpoint_dir
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        cfg = preset(args.preset)
        save_checkpoint_dir(tmp / "model", cfg, Emotion2VecModel(cfg, with_decoder=False).state_dict(),
                            source={"source": "benchmark random init"})
        files = _make_inputs(Path(args.corpus), args.minutes, tmp)
        from _machine import machine_line

        print(machine_line())
        print(f"# extract memory: preset {args.preset}, frame-level last layer, fp32 CPU, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("| input | chunked (30 s windows) peak MiB | wall s / s audio | whole file peak MiB | wall s / s audio | "
              "whole / chunked peak |")
        print("|---|---:|---:|---:|---:|---:|")
        for m, wav in files.items():
            chunked = _run(tmp / "model", wav, tmp / f"out_c{m:g}", 30.0)
            whole = (_run(tmp / "model", wav, tmp / f"out_w{m:g}", m * 60 + 1)
                     if m <= args.unchunked_max_minutes else None)

            def cells(r):
                if r is None:
                    return "not run", "", ""
                if r["code"] != 0:
                    return f"failed ({r.get('error', ['exit %d' % r['code']])[0][:60]})", "", ""
                return f"{r['peak_mib']:.0f}", f"{r['seconds'] / (m * 60):.3f}", r["peak_mib"]

            c, w = cells(chunked), cells(whole)
            ratio = f"{w[2] / c[2]:.2f}x" if isinstance(w[2], float) and isinstance(c[2], float) else ""
            print(f"| {m:g} min | {c[0]} | {c[1]} | {w[0]} | {w[1]} | {ratio} |", flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
