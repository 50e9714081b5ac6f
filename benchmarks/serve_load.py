"""`emotion2vec serve` under load, beside sequential `emotion2vec predict` (the peer), in the same run.

The model is an emotion2vec+ folder in base geometry (emotion2vec_base: 4 prenet + 8 blocks, 768 dims) with random
weights (seed 0) and a random 9-label head, so that the work is that of emotion2vec_plus_base. The requests are the
first --files URDU clips, cycled to --requests, each a multipart upload of the original 44.1 kHz WAV. Rows:

    emotion2vec predict, sequential      the command over the same --requests inputs (a wav.scp of the cycled
                                         clips), with its defaults (one decoding worker, length-sorted batches of
                                         10 s), timed after the model is loaded
    serve --batching on, concurrency C   `emotion2vec serve` in its own process; C clients each sending one request
                                         after another until --requests are answered; requests arriving together
                                         share a forward
    serve --batching off, concurrency C  the same, every request alone
    serve (defaults), concurrency 1      one client: the latency of a request on an idle service

Latency is per request, from the first byte sent to the last received, over HTTP on loopback. Every response is
checked (status 200, a label); the `errors` column counts the others. Each server row starts a fresh process and
sends --warmup requests first, which are not counted.

    python benchmarks/serve_load.py [--requests 64] [--concurrency 8] [--files 16] [--device cpu]
                                    [--corpus ../shared/data/urdu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("E2V_SHARED", REPO.parent / "shared"))
LABELS = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral", "其他/other", "难过/sad",
          "吃惊/surprised", "<unk>"]

PREDICT = r"""
import json, sys, time
a = json.loads(sys.argv[1])
import torch
from emotion2vec.extract.backends import ModelBackend
from emotion2vec.extract.engine import BatchedForward
from emotion2vec.models.upstream import load_upstream
from emotion2vec.recognize.recognizer import Recognizer
from emotion2vec.recognize.run import predict, write_outputs
model, ckpt = load_upstream(a["model"])
recognizer = Recognizer.from_spec(ckpt.classifier, model.cfg.num_layers, model.cfg.embed_dim, a["model"])
device = torch.device(a["device"])
engine = BatchedForward(ModelBackend(model, device), [recognizer.layer], None, 30.0)
recognizer.to(device)
t0 = time.perf_counter()
predictions = predict(engine, recognizer, a["inputs"], num_workers=1, progress=False)
write_outputs(predictions, recognizer, a["out"], None)
print(json.dumps({"seconds": time.perf_counter() - t0, "files": sum(p.error is None for p in predictions)}))
"""


def make_model(out: Path) -> None:
    """An emotion2vec+ folder (our format) in base geometry, random weights and head."""
    import torch

    from emotion2vec.models.checkpoint import ClassifierSpec, save_checkpoint_dir
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel

    torch.manual_seed(0)
    config = preset("emotion2vec_base")
    model = Emotion2VecModel(config, with_decoder=False)
    head = {"weight": torch.randn(len(LABELS), config.embed_dim) * 0.05, "bias": torch.zeros(len(LABELS))}
    save_checkpoint_dir(out, config, model.state_dict(), classifier=ClassifierSpec("mean_linear", LABELS, head,
                                                                                    {"layer": -1}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, options: list[str], log: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "wb") as f:
        process = subprocess.Popen([sys.executable, "-m", "emotion2vec", "serve", str(model), "--port", str(port),
                                    *options], stdout=f, stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")


async def load(url: str, bodies: list[tuple[str, bytes]], concurrency: int) -> dict:
    """Send every body once, ``concurrency`` at a time; latencies, errors and wall time."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    latencies: list[float] = []
    errors: list[str] = []

    async def client(c: httpx.AsyncClient) -> None:
        while not queue.empty():
            name, data = queue.get_nowait()
            t = time.perf_counter()
            try:
                r = await c.post(url + "/predict", files={"file": (name, data, "audio/wav")})
                ok = r.status_code == 200 and "label" in r.json()
                if not ok:
                    errors.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "seconds": wall}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(SHARED / "data" / "urdu"))
    p.add_argument("--files", type=int, default=16, help="distinct clips (the first N of the corpus)")
    p.add_argument("--requests", type=int, default=64, help="requests per server row (the clips, cycled)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], for the service and the command alike")
    args = p.parse_args()

    sys.path.insert(0, str(REPO))
    import httpx

    from _machine import machine_line
    from emotion2vec.io.audio import audio_info

    print(machine_line(), flush=True)
    files = sorted(Path(args.corpus).rglob("*.wav"))[: args.files]
    if not files:
        raise SystemExit(f"no .wav files under {args.corpus}")
    bodies = [(files[i % len(files)].name, files[i % len(files)].read_bytes()) for i in range(args.requests)]
    audio = sum(audio_info(f).duration for f in files)  # of the distinct clips
    request_audio = sum(audio_info(files[i % len(files)]).duration for i in range(args.requests))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "emotion2vec_plus_base_random"
        make_model(model)

        scp = tmp / "inputs.scp"
        scp.write_text("".join(f"r{i:05d} {files[i % len(files)]}\n" for i in range(args.requests)))
        out = subprocess.run([sys.executable, "-c", PREDICT, json.dumps(
            {"model": str(model), "inputs": [str(scp)], "out": str(tmp / "predict.tsv"), "device": args.device})],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        r = json.loads(out.stdout.strip().splitlines()[-1])
        errors = args.requests - r["files"]
        rows.append(("emotion2vec predict, sequential", args.requests, 1, errors, None, None,
                     r["files"] / r["seconds"], request_audio / r["seconds"], "—"))
        print(f"# predict: {r['files']} inputs in {r['seconds']:.1f} s", file=sys.stderr, flush=True)

        for name, options, concurrency in (
                (f"serve --batching on, concurrency {args.concurrency}", ["--batching", "on"], args.concurrency),
                (f"serve --batching off, concurrency {args.concurrency}", ["--batching", "off"], args.concurrency),
                ("serve (defaults), concurrency 1", [], 1)):
            port = free_port()
            server = start_server(model, port, ["--batch-wait-ms", str(args.batch_wait_ms), "--device", args.device,
                                                *options],
                                  tmp / f"server{port}.log")
            url = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(load(url, bodies[: args.warmup], min(args.warmup, concurrency)))
                before = httpx.get(url + "/model").json()["batching"]
                result = asyncio.run(load(url, bodies, concurrency))
                after = httpx.get(url + "/model").json()["batching"]
            finally:
                server.terminate()
                server.wait(60)
            lat = result["latencies"]
            batches = after["batches"] - before["batches"]
            requests = after["requests"] - before["requests"]
            for e in result["errors"][:5]:
                print(f"# error: {e}", file=sys.stderr)
            rows.append((name, args.requests, concurrency, len(result["errors"]),
                         1000 * statistics.median(lat) if lat else float("nan"),
                         1000 * percentile(lat, 0.95) if lat else float("nan"),
                         len(lat) / result["seconds"], request_audio / result["seconds"],
                         f"{requests / batches:.1f}" if batches else "—"))
            print(f"# {name}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)

    print(f"# serve under load: {args.requests} requests per server row from {len(files)} URDU clips "
          f"({audio / len(files):.1f} s each on average, 44.1 kHz WAV uploads); emotion2vec+ folder in base geometry "
          f"(random weights), {'CPU' if args.device == 'cpu' else args.device}, float32; --batch-wait-ms {args.batch_wait_ms:g}")
    print("| setting | requests | concurrency | errors | p50 ms | p95 ms | requests/s | audio s per s | "
          "requests per batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, c, errors, p50, p95, rps, aps, per_batch in rows:
        lat = "— | —" if p50 is None else f"{p50:.0f} | {p95:.0f}"
        print(f"| {name} | {n} | {c} | {errors} | {lat} | {rps:.2f} | {aps:.1f} | {per_batch} |")


if __name__ == "__main__":
    main()
