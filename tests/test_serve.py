"""`emotion2vec serve`: the rows of `emotion2vec predict`, batching equal to one-by-one prediction, every bad input
refused with its status while the service stays up, a real uvicorn process (disconnects, temporary files, SIGTERM
with requests in flight), the web page in a real Chromium, and the docs page's commands."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from emotion2vec import Emotion2Vec
from emotion2vec.cli import main as cli
from emotion2vec.io.audio import load_audio
from emotion2vec.recognize.run import window_bounds
from emotion2vec.serve.app import create_app
from emotion2vec.serve.batching import Batcher
from emotion2vec.serve.config import ServeConfig
from emotion2vec.serve.service import Service

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def plus():
    from conftest import FIXTURES, require

    return require(FIXTURES / "funasr_emotion2vec_plus", "golden emotion2vec+ fixture")


@pytest.fixture(scope="module")
def clips():
    """Eight URDU clips of one folder (so that `emotion2vec predict` keys them by their stem, as the service does)."""
    from conftest import URDU, require

    return sorted((require(URDU, "URDU corpus") / "Angry").glob("*.wav"))[:8]


@pytest.fixture(scope="module")
def service(plus):
    return Service.load(plus)


@asynccontextmanager
async def _client(app):
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            yield client


def _run(coroutine):
    return asyncio.run(coroutine)


def _file(path: Path, name: str | None = None) -> dict:
    return {"file": (name or path.name, path.read_bytes(), "audio/wav")}


def _wav_bytes(wav: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wav, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _cli_rows(model, inputs: list[Path], tmp_path: Path, *options: str) -> list[dict]:
    out = tmp_path / f"cli{len(list(tmp_path.glob('cli*')))}.jsonl"
    assert cli(["predict", str(model), *map(str, inputs), "--out", str(out), "--quiet", "--num-workers", "0",
                *options]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _same_row(served: dict, written: dict) -> None:
    """Every field of the command's row, in its order; equal labels; probabilities within TOL."""
    assert list(served) == list(written)
    for field in ("key", "label", "label_raw", "start", "end"):
        assert served.get(field) == written.get(field), field
    for field in ("scores", "scores_raw"):
        assert list(served[field]) == list(written[field])
        assert max(abs(served[field][k] - written[field][k]) for k in written[field]) < TOL


# ------------------------------------------------------------------------------------------------------ in process
def test_predict_returns_the_rows_of_emotion2vec_predict(plus, clips, service, tmp_path):
    written = _cli_rows(plus, clips[:3], tmp_path)
    windows = _cli_rows(plus, clips[:1], tmp_path, "--window", "1", "--hop", "0.5")

    async def go():
        async with _client(create_app(service)) as c:
            rows = [(await c.post("/predict", files=_file(p))).json() for p in clips[:3]]
            windowed = await c.post("/predict?window=1&hop=0.5", files=_file(clips[0]))
            raw = await c.post("/predict", content=clips[0].read_bytes(),
                               headers={"Content-Type": "application/octet-stream"})
            wav, rate = sf.read(clips[0], dtype="int16")
            pcm = await c.post(f"/predict?format=pcm_s16le&sample_rate={rate}", files={"file": ("pcm", wav.tobytes())})
            return rows, windowed, raw, pcm

    rows, windowed, raw, pcm = _run(go())
    for served, row in zip(rows, written):
        assert served["path"] == Path(row["path"]).name
        _same_row(served, row)
    assert windowed.status_code == 200 and len(windowed.json()) == len(windows) > 2
    for served, row in zip(windowed.json(), windows):
        _same_row(served, row)
    assert raw.status_code == 200 and raw.json()["key"] == "upload"
    assert raw.json()["scores"] == rows[0]["scores"]
    # int16 PCM is what the WAV holds: the same samples, so the same prediction
    assert pcm.status_code == 200 and pcm.json()["label"] == rows[0]["label"]
    assert max(abs(pcm.json()["scores"][k] - rows[0]["scores"][k]) for k in rows[0]["scores"]) < TOL


def test_concurrent_requests_are_batched_and_equal_one_by_one(plus, clips, service):
    model = Emotion2Vec.from_checkpoint(plus)
    app = create_app(service, ServeConfig(batching=True, batch_wait_ms=300, max_batch_seconds=600))

    async def go():
        async with _client(app) as c:
            requests = [c.post("/predict", files=_file(p)) for p in clips]
            requests.append(c.post("/predict?window=1.5", files=_file(clips[0])))
            requests.append(c.post("/extract?layers=-1&granularity=utterance", files=_file(clips[1])))
            requests.append(c.post("/extract?layers=all&granularity=frame", files=_file(clips[2])))
            return await asyncio.gather(*requests)

    responses = _run(go())
    assert [r.status_code for r in responses] == [200] * len(responses)
    stats = app.state.batcher.stats
    assert stats.largest >= 4 and stats.batched_requests >= 4, stats  # they did share forwards
    for r, path in zip(responses, clips):
        alone = model.predict(path)
        assert r.json()["label"] == alone["label"]
        assert max(abs(r.json()["scores"][k] - alone["scores"][k]) for k in alone["scores"]) < TOL
    for served, alone in zip(responses[len(clips)].json(), model.predict(clips[0], window=1.5)):
        assert served["label"] == alone["label"] and abs(served["start"] - round(alone["start"], 3)) < 1e-9
        assert max(abs(served["scores"][k] - alone["scores"][k]) for k in alone["scores"]) < TOL
    utterance = np.load(io.BytesIO(responses[-2].content))
    assert utterance.shape == (96,) and np.abs(utterance - model.extract(clips[1])).max() < TOL
    frames = np.load(io.BytesIO(responses[-1].content))
    expected = model.extract(clips[2], granularity="frame", layers="all")
    assert frames.shape == expected.shape == (3, expected.shape[1], 96)
    assert np.abs(frames - expected).max() < TOL


def test_extract_json_tokens_and_a_model_without_head(plus, clips, fixtures_dir, monkeypatch):
    from emotion2vec.serve import app as app_module

    tiny = fixtures_dir / "tiny_emotion2vec.pt"
    model = Emotion2Vec.from_checkpoint(tiny)
    monkeypatch.setitem(app_module.MAX_VALUES, "json", 10_000)  # under the frames of every layer of 3 s

    async def go():
        async with _client(create_app(Service.load(tiny, ), ServeConfig())) as c:
            return (await c.post("/extract?layers=0,-1&out=json", files=_file(clips[0])),
                    await c.post("/extract?granularity=tokens", files=_file(clips[0])),
                    await c.post("/extract?layers=7", files=_file(clips[0])),
                    await c.post("/extract?layers=all&granularity=frame&out=json", files=_file(clips[0])),
                    await c.post("/predict", files=_file(clips[0])),
                    await c.get("/labels"))

    js, tokens, bad_layer, too_many, predict, labels = _run(go())
    body = js.json()
    assert body["key"] == clips[0].stem and body["layers"] == [0, model.num_layers - 1]
    expected = model.extract(clips[0], layers=[0, -1])
    assert body["shape"] == list(expected.shape) and np.abs(np.array(body["features"]) - expected).max() < TOL
    tok = np.load(io.BytesIO(tokens.content))
    assert tok.shape == (model.config.num_extra_tokens, model.config.embed_dim)
    assert bad_layer.status_code == 400 and "layer 7 out of range" in bad_layer.json()["message"]
    assert too_many.status_code == 413 and too_many.json()["error"] == "too_large"
    assert "over the limit of 10,000 for out=json" in too_many.json()["message"]
    assert predict.status_code == 409 and predict.json()["error"] == "no_classifier"
    assert labels.json() == {"labels": [], "labels_raw": [], "task": None, "layer": None}


def test_every_bad_input_gets_its_status_and_reason_and_the_service_stays_up(service, clips):
    data = clips[0].read_bytes()
    wav, rate = sf.read(clips[0], dtype="float32")
    cases = [  # (what, request kwargs, query, status, error code, words of the message)
        ("not audio", {"files": {"file": ("notes.wav", b"these are my notes, not audio " * 20)}}, "", 415,
         "not_audio", "notes.wav: not audio"),
        ("truncated", {"files": {"file": ("cut.wav", data[:len(data) // 2])}}, "", 422, "truncated",
         "cut.wav: truncated WAV"),
        ("truncated FLAC", {"files": {"file": ("cut.flac", _wav_bytes(wav, rate, "FLAC")[:30000])}}, "", 422,
         "truncated", "cut.flac"),
        ("empty", {"files": {"file": ("empty.wav", b"")}}, "", 400, "empty", "empty upload (0 bytes)"),
        ("no samples", {"files": {"file": ("zero.wav", _wav_bytes(np.zeros(0, np.float32), 16000))}}, "", 400,
         "empty", "0 samples"),
        ("too short", {"files": {"file": ("blip.wav", _wav_bytes(wav[:441], rate))}}, "", 422, "too_short",
         "too short: 160 samples"),
        ("too long", {"files": {"file": ("long.wav", _wav_bytes(np.zeros(8000 * 6, np.float32), 8000))}}, "", 413,
         "too_long", "over the limit of 5 s"),
        ("too large", {"files": {"file": ("big.wav", _wav_bytes(np.zeros(700_000, np.float32), 8000))}}, "", 413,
         "too_large", "limit of 1 MB"),
        ("NaN", {"files": {"file": ("nan.wav", _wav_bytes(np.full(4000, np.nan, np.float32), 8000, "WAV", "FLOAT"))}},
         "", 422, "invalid", "NaN"),
        ("PCM cut mid-sample", {"files": {"file": ("pcm", b"\0" * 1001)}}, "?format=pcm_s16le&sample_rate=16000",
         422, "truncated", "cut mid-sample"),
        ("PCM without rate", {"files": {"file": ("pcm", b"\0" * 1000)}}, "?format=pcm_s16le", 400, "bad_request",
         "needs sample_rate"),
        ("unknown format", {"files": {"file": ("a.wav", data)}}, "?format=mp3", 400, "bad_request", "format='mp3'"),
        ("bad window", {"files": {"file": ("a.wav", data)}}, "?window=0.01", 400, "bad_request",
         "window 0.01: must be at least"),
        ("hop without window", {"files": {"file": ("a.wav", data)}}, "?hop=1", 400, "bad_request", "hop needs window"),
        ("windows overlapping too much", {"files": {"file": ("a.wav", data)}}, "?window=1&hop=0.01", 400,
         "bad_request", "hop 0.01: at least window / 20"),
        ("window not a number", {"files": {"file": ("a.wav", data)}}, "?window=soon", 400, "bad_request",
         "window: Input should be a valid number"),
        ("no file field", {"data": {"note": "x"}, "files": {"other": ("a.wav", data)}}, "", 400, "bad_request",
         "unknown form field 'note'"),
        ("a path instead of audio", {"files": {"file": (None, "/etc/hostname")}}, "", 415, "not_audio",
         "upload: not audio"),
        ("two files", {"files": [("file", ("a.wav", data)), ("file", ("b.wav", data))]}, "", 400, "bad_request",
         "more than one 'file'"),
        ("JSON body", {"json": {"path": "/etc/hostname"}}, "", 415, "not_audio", "multipart/form-data"),
        ("form without closing boundary", {"content": b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nab',
                                           "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}},
         "", 400, "bad_request", "closing boundary"),
    ]
    app = create_app(service, ServeConfig(max_seconds=5, max_upload_mb=1))

    async def go():
        async with _client(app) as c:
            out = [(await c.post("/predict" + query, **kwargs)) for _, kwargs, query, *_ in cases]
            return out, await c.get("/health"), await c.post("/predict", files=_file(clips[0])), await c.get("/x")

    responses, health, good, missing = _run(go())
    for (what, _, _, status, code, words), r in zip(cases, responses):
        body = r.json()
        assert (r.status_code, body["error"], body["status"]) == (status, code, status), (what, body)
        assert words in body["message"], (what, body["message"])
    assert responses[6].json()["limit"] == 5 and responses[7].json()["limit"] == 1
    assert service.check_windows(len(wav), 1, 0.05) == len(window_bounds(len(wav), 1, 0.05))
    for n, window, hop in [(16000, 1, None), (16001, 1, 0.5), (160000, 3, 1.5), (48057, 1, 0.5), (100, 1, 1)]:
        assert service.check_windows(n, window, hop) == len(window_bounds(n, window, hop))
    with pytest.raises(ValueError, match="into 11981 windows, over the limit of 10000"):
        service.check_windows(600 * 16000, 1, 0.05)
    assert health.json()["status"] == "ok" and health.json()["in_flight"] == 0
    assert good.status_code == 200 and good.json()["key"] == clips[0].stem
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_api_key(service, clips):
    app = create_app(service, ServeConfig(api_key="s3cret-key-1"))

    async def go():
        async with _client(app) as c:
            return {"none": await c.post("/predict", files=_file(clips[0])),
                    "wrong": await c.post("/predict", files=_file(clips[0]), headers={"X-API-Key": "s3cret-key-2"}),
                    "wrong model": await c.get("/model", headers={"Authorization": "Bearer nope"}),
                    "bearer": await c.post("/predict", files=_file(clips[0]),
                                           headers={"Authorization": "Bearer s3cret-key-1"}),
                    "header": await c.get("/labels", headers={"X-API-Key": "s3cret-key-1"}),
                    "health": await c.get("/health"), "page": await c.get("/")}

    r = _run(go())
    for name in ("none", "wrong", "wrong model"):
        assert r[name].status_code == 401 and r[name].json()["error"] == "unauthorized", name
        assert r[name].headers["www-authenticate"] == "Bearer"
    assert "wrong API key" in r["wrong"].json()["message"] and "needs an API key" in r["none"].json()["message"]
    assert r["bearer"].status_code == 200 and r["header"].json()["labels"][0] == "angry"
    assert r["health"].json()["api_key_required"] is True and r["page"].status_code == 200
    with pytest.raises(ValueError, match="at least 8 characters"):
        ServeConfig(api_key="short")


def test_a_trickling_upload_times_out_and_frees_its_place(service, clips):
    app = create_app(service, ServeConfig(upload_timeout=0.3, max_queue=1))

    async def trickle():
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.wav\"\r\n\r\n"
        await asyncio.sleep(2)
        yield b"RIFF"

    async def go():
        async with _client(app) as c:
            slow = await c.post("/predict", content=trickle(),
                                headers={"Content-Type": "multipart/form-data; boundary=xyz"})
            return slow, await c.post("/predict", files=_file(clips[0]))

    t0 = time.monotonic()
    slow, after = _run(go())
    assert slow.status_code == 408 and slow.json()["error"] == "timeout" and time.monotonic() - t0 < 1.9
    assert "longer than 0.3 s (--upload-timeout)" in slow.json()["message"]
    assert after.status_code == 200  # its place in --max-queue 1 was given back


def test_a_full_queue_answers_503_with_retry_after(service, clips):
    gate, started = threading.Event(), threading.Event()

    class Held(Service):
        def run(self, jobs):
            started.set()
            assert gate.wait(20)
            return super().run(jobs)

    app = create_app(Held(service.model, service.checkpoint), ServeConfig(max_queue=1))

    async def go():
        async with _client(app) as c:
            first = asyncio.ensure_future(c.post("/predict", files=_file(clips[0])))
            while not started.is_set():  # until the first one is computing
                await asyncio.sleep(0.01)
            assert app.state.admission.count == 1
            refused = await c.post("/predict", files=_file(clips[1]))
            gate.set()
            return refused, await first, await c.post("/predict", files=_file(clips[1]))

    refused, first, later = _run(go())
    assert refused.status_code == 503 and refused.json()["error"] == "busy"
    assert int(refused.headers["retry-after"]) >= 1 and "--max-queue 1" in refused.json()["message"]
    assert first.status_code == 200 and later.status_code == 200


def test_batcher_budget_and_a_cancelled_request_is_never_computed():
    seen: list[list[str]] = []
    gate = threading.Event()

    def run_batch(jobs):
        seen.append(list(jobs))
        if jobs[0] == "hold":
            gate.wait(10)
        return [j.upper() for j in jobs]

    async def go():
        b = Batcher(run_batch, max_samples=250, max_wait=0.05)
        await b.start()
        held = asyncio.ensure_future(b.submit("hold", 10))
        await asyncio.sleep(0.1)  # "hold" is computing
        jobs = [asyncio.ensure_future(b.submit(name, 100)) for name in "abcde"]
        gone = asyncio.ensure_future(b.submit("gone", 10))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away while it waited
        gate.set()
        results = await asyncio.gather(held, *jobs)
        await b.close()
        return results, b.stats

    results, stats = _run(go())
    assert results == ["HOLD", "A", "B", "C", "D", "E"]
    assert seen == [["hold"], ["a", "b"], ["c", "d"], ["e"]]  # 250 samples a batch; "gone" never ran
    assert stats.batches == 4 and stats.largest == 2 and stats.requests == 6


def test_serve_options_are_checked(plus, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["serve", str(plus), "--max-queue", "0"])
    assert e.value.code == 2 and "argument --max-queue: must be >= 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("EMOTION2VEC_API_KEY", "from-the-environment")
    assert cli(["serve", str(plus), "--api-key", "another-key-1"]) == 2
    assert "given twice (--api-key and $EMOTION2VEC_API_KEY)" in capsys.readouterr().err
    monkeypatch.delenv("EMOTION2VEC_API_KEY")
    assert cli(["serve", str(plus), "--api-key-file", str(tmp_path / "none.txt")]) == 2
    assert "none.txt: No such file" in capsys.readouterr().err
    assert cli(["serve", str(tmp_path / "missing"), "--port", "8765"]) == 2
    assert "missing" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m emotion2vec serve MODEL` on a free loopback port, its temporary folder its own."""

    def __init__(self, model: Path, folder: Path, *options: str):
        self.port, self.tmp = _free_port(), folder / "tmp"
        self.tmp.mkdir(parents=True)
        self.log = folder / "server.log"
        env = {**os.environ, "TMPDIR": str(self.tmp), "PYTHONPATH": str(REPO)}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "emotion2vec", "serve", str(model), "--port",
                                             str(self.port), *options], stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=folder)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not answer: {self.log.read_text()[-3000:]}")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def wait_in_flight(self, n: int) -> None:
        for _ in range(200):
            if self.health()["in_flight"] == n:
                return
            time.sleep(0.05)
        raise AssertionError(f"in_flight never became {n}: {self.health()}")

    def open_files(self) -> list[str]:
        fd = Path(f"/proc/{self.process.pid}/fd")
        return [os.readlink(p) for p in fd.iterdir()] if fd.exists() else []

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = "e2v-boundary-7f3a"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _open_upload(port: int, body: bytes, ctype: str, sent: int) -> socket.socket:
    """A POST /predict whose first ``sent`` bytes of body are on their way; the rest is up to the caller."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:sent])
    return s


def _response(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(plus, tmp_path_factory):
    s = Server(plus, tmp_path_factory.mktemp("server"))
    yield s
    assert s.stop() == 0, s.log.read_text()[-3000:]


def test_real_server_disconnects_and_large_uploads_leave_nothing_behind(server, clips, service, tmp_path):
    long = np.concatenate([sf.read(p, dtype="float32")[0] for p in clips])  # ~20 s, 1.8 MB as WAV
    (tmp_path / "long.wav").write_bytes(_wav_bytes(long, 44100))
    body, ctype = _multipart((tmp_path / "long.wav").read_bytes(), "long.wav")
    assert len(body) > 1 << 20  # over the size from which form parsers spool a file to disk (Starlette: 1 MiB)
    for sent in (0, 300_000, len(body) - 10):  # the client goes away before, during, at the end of the upload
        s = _open_upload(server.port, body, ctype, sent)
        if sent:
            server.wait_in_flight(1)
        s.close()
        server.wait_in_flight(0)
    r = httpx.post(server.url + "/predict?window=3", files=_file(tmp_path / "long.wav"), timeout=60)
    assert r.status_code == 200 and len(r.json()) == len(window_bounds(len(load_audio(tmp_path / "long.wav")), 3))
    too_big = np.zeros(30_000_000, np.int16).tobytes()  # 60 MB: over the default limit of 50 MB
    r = httpx.post(server.url + "/predict?format=pcm_s16le&sample_rate=16000", content=too_big,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert server.health() == {"status": "ok", "in_flight": 0, "queued": 0, "api_key_required": False,
                               "predict": True}
    assert list(server.tmp.iterdir()) == []
    assert not [f for f in server.open_files() if f.startswith(str(server.tmp)) or "(deleted)" in f]


def test_sigterm_finishes_the_requests_in_flight(plus, clips, service, tmp_path):
    s = Server(plus, tmp_path)
    try:
        body, ctype = _multipart(clips[3].read_bytes(), clips[3].name)
        upload = _open_upload(s.port, body, ctype, len(body) // 2)  # half of it sent when the signal comes
        s.wait_in_flight(1)
        s.process.send_signal(signal.SIGTERM)
        for _ in range(100):  # it stops accepting connections...
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                break
        else:
            raise AssertionError("the server still accepts connections after SIGTERM")
        assert s.process.poll() is None  # ... but waits for the upload in flight
        upload.sendall(body[len(body) // 2:])
        status, row = _response(upload)
        assert status == 200 and row["key"] == clips[3].stem
        assert row["label"] == service.model.predict(clips[3])["label"]
        assert s.process.wait(30) == 0
    finally:
        s.stop()


# ------------------------------------------------------------------------------------------------------ browser
def _chromium() -> str:
    path = os.environ.get("E2V_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "Chromium is not installed (`make test` installs it with apt-get as root: apt-get install chromium)"
    if os.environ.get("E2V_REQUIRE_BROWSER"):
        pytest.fail(reason + "; E2V_REQUIRE_BROWSER is set, so the browser test must run")
    pytest.skip(reason)


def test_the_page_in_chromium_shows_the_label_of_emotion2vec_predict(server, plus, clips, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    clip = clips[4]
    expected = _cli_rows(plus, [clip], tmp_path)[0]
    long = np.concatenate([sf.read(p, dtype="float32")[0] for p in clips[:4]])  # ~12 s: a timeline
    sf.write(tmp_path / "talk.wav", long, 44100)
    expected_long = _cli_rows(plus, [tmp_path / "talk.wav"], tmp_path)[0]
    windows = len(window_bounds(len(load_audio(tmp_path / "talk.wav")), 3.0, 1.5))
    (tmp_path / "notes.wav").write_text("not a recording")

    with sync_playwright() as p:
        # a fake microphone (a tone) that needs no permission prompt, for the recording button
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            context = browser.new_context()
            context.grant_permissions(["microphone"])
            page = context.new_page()
            problems: list[str] = []  # script errors, Content-Security-Policy violations
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 415" not in
                    m.text else None)
            page.goto(server.url + "/")
            page.locator("#model-line", has_text="angry").wait_for()
            answered = 0

            def upload(path: Path) -> None:  # the page counts the uploads it has answered (or shown the error of)
                nonlocal answered
                page.set_input_files("#file", str(path))
                answered += 1
                page.locator(f"#result[data-answered='{answered}']").wait_for(state="attached", timeout=30000)

            upload(clip)
            assert page.is_visible("#result") and not page.is_visible("#error")
            assert page.text_content("#label") == expected["label"]
            bars = page.query_selector_all("#bars .row")
            assert [b.get_attribute("data-label") for b in bars] == sorted(
                expected["scores"], key=lambda k: -expected["scores"][k])
            shown = float(page.text_content("#bars .row.best .value").rstrip("%"))
            assert abs(shown - 100 * expected["scores"][expected["label"]]) < 0.051
            assert not page.is_visible("#timeline-box")

            upload(tmp_path / "talk.wav")
            assert page.text_content("#label") == expected_long["label"]
            assert page.is_visible("#timeline-box")
            assert page.get_attribute("#timeline", "data-windows") == str(windows)
            assert len(page.query_selector_all("#timeline polyline")) == len(expected["scores"])

            upload(tmp_path / "notes.wav")
            assert page.is_visible("#error") and not page.is_visible("#result")
            message = page.text_content("#error")
            assert "notes.wav: not audio" in message and "415 not_audio" in message

            page.click("#record")  # record from the microphone: the page posts a WAV of what it heard
            page.locator("#record.recording").wait_for()
            page.wait_for_timeout(1200)
            page.click("#record")
            answered += 1
            page.locator(f"#result[data-answered='{answered}']").wait_for(state="attached", timeout=30000)
            with page.expect_download() as saved:  # what was sent, as the page offers to keep it
                page.click("#save-recording")
            saved.value.save_as(tmp_path / "recording.wav")
            assert sf.info(tmp_path / "recording.wav").duration > 0.8
            assert page.text_content("#file-line").startswith("recording.wav")
            assert page.text_content("#label") == _cli_rows(plus, [tmp_path / "recording.wav"], tmp_path)[0]["label"]
            assert not page.is_visible("#error")
            assert problems == []
        finally:
            browser.close()


# ------------------------------------------------------------------------------------------------------ docs page
def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def test_docs_page_commands_run_as_written(plus, clips, fixtures_dir, urdu_dir, tmp_path):
    """docs/serve.md's bash and Python blocks, in order, in a workspace laid out as the docs assume: each `emotion2vec
    serve` line starts in the background (on a free port standing in for the one written, bound to loopback) and is
    waited for; every other command must succeed; the servers are stopped at the end."""
    text = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "emotion2vec_plus_base").symlink_to(plus)
    (tmp_path / "checkpoints" / "emotion2vec_base.pt").symlink_to(fixtures_dir / "tiny_emotion2vec.pt")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "urdu").symlink_to(urdu_dir)
    ports: dict[str, str] = {}
    lines = []
    for lang, block in _blocks(text):
        if lang == "python":
            lines += ["python - <<'PYTHON_BLOCK'", block.rstrip("\n"), "PYTHON_BLOCK"]
            continue
        for line in block.replace("\\\n", " ").splitlines():
            install = re.match(r"^pip install -e '\.\[([\w,-]+)\]'$", line)
            if install:  # not run here (it would change the test's environment): the extras must exist
                setup = (REPO / "setup.py").read_text()
                assert all(f'"{extra}": [' in setup for extra in install.group(1).split(",")), line
                continue
            if not re.match(r"^(\w+=\S+ )*emotion2vec serve ", line):
                lines.append(line)
                continue
            port = re.search(r"--port (\d+)", line)
            written = port.group(1) if port else "8000"
            free = ports.setdefault(written, str(_free_port()))
            command = line.replace("--host 0.0.0.0", "--host 127.0.0.1")
            command = command.replace(f"--port {written}", f"--port {free}") if port else f"{command} --port {free}"
            lines += [f"{command} > serve{free}.log 2>&1 &",
                      f"for i in $(seq 300); do curl -sf http://127.0.0.1:{free}/health >/dev/null && break; "
                      f"sleep 0.2; done"]
    assert len(ports) == 2, "the docs page starts a server on its own and one with a key"
    script = "\n".join(lines)
    for written, free in ports.items():
        script = script.replace(f"127.0.0.1:{written}", f"127.0.0.1:{free}")
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script + "\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("EMOTION2VEC_API_KEY", None)
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    logs = "".join(p.read_text() for p in tmp_path.glob("serve*.log"))
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n{logs[-3000:]}"
    out = r.stdout
    windows = len(window_bounds(len(load_audio(urdu_dir / "Angry" / "SM1_F10_A010.wav")), 1.0, 0.5))
    assert out.count('"label":"') == 1 + windows + 3, out  # a file, its windows, as a body, as PCM, with the key
    assert '"status":"ok"' in out and '"labels":["angry"' in out
    assert '"error":"not_audio","message":"notes.txt: not audio' in out
    assert re.search(r"[}\n]401\n", out)  # without the key
    assert "(3, 1" in out  # frames of the 3 blocks of the test model
    assert "Retry-After" not in logs and "Traceback" not in logs
