"""The FastAPI application: ``create_app(service, config)``.

Routes (OpenAPI description at ``/openapi.json``, interactive at ``/docs``):

- ``GET /``: the web page (``page/``): choose, drop or record audio; the top emotion, every probability as a bar,
  and for long audio a timeline of each emotion over windows.
- ``POST /predict``: audio -> the row ``emotion2vec predict`` writes to a .jsonl (with ``window`` / ``hop``: a list
  of rows, one per window, with ``start`` and ``end``).
- ``POST /extract``: audio -> features (``layers``, ``granularity`` as ``emotion2vec extract``), as ``.npy`` bytes
  or JSON.
- ``GET /health`` (open, for probes), ``GET /labels``, ``GET /model`` (checkpoint stamp, dtype, device, limits,
  batching counters).

FastAPI is there for the OpenAPI description and the parameter validation of the query strings; the body is read
by :mod:`.upload` (bounded, in memory), not by FastAPI's form parsing, which spools large files to disk. The
endpoints that compute need the API key when one is set; refused requests get the JSON of :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..extract import ExtractionError
from ..io.audio import SAMPLE_RATE
from ..recognize import RecognitionError
from ..recognize.run import check_window
from .batching import Admission, Batcher
from .config import ServeConfig
from .decode import FORMATS, decode_upload
from .errors import RequestError
from .service import ExtractJob, PredictJob, Service
from .upload import read_upload, upload_key

__all__ = ["create_app", "PAGE", "MAX_VALUES"]

log = logging.getLogger(__name__)

#: the web page's files: name -> media type
PAGE = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

#: the most numbers /extract returns: .npy (4 bytes each: 400 MB) and JSON (about 20 bytes each: 400 MB)
MAX_VALUES = {"npy": 100_000_000, "json": 20_000_000}

_AUDIO_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the audio file (any format the service "
                 "decodes), or raw PCM with format=pcm_s16le / pcm_f32le and sample_rate"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
_ERRORS = {code: {"description": text, "content": {"application/json": {"example": {
    "error": name, "message": "...", "status": code}}}} for code, name, text in [
    (400, "bad_request", "bad parameter or form, or an empty upload"),
    (401, "unauthorized", "missing or wrong API key"),
    (408, "timeout", "the upload took longer than --upload-timeout"),
    (409, "no_classifier", "/predict on a model without a classification head"),
    (413, "too_long", "upload over --max-upload-mb (too_large) or audio over --max-seconds (too_long)"),
    (415, "not_audio", "not audio in a format the service decodes"),
    (422, "truncated", "truncated, too short or invalid audio"),
    (503, "busy", "too many requests in progress: retry after the Retry-After seconds")]}


def _bearer(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if key is None and auth[:7].lower() == "bearer ":
        key = auth[7:].strip()
    return key


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only ``http.disconnect`` can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(service: Service, config: ServeConfig | None = None) -> FastAPI:
    """The service's ASGI application. Its lifespan starts and (after the requests in flight) stops the queue."""
    import anyio

    config = config or ServeConfig()
    batching = config.batching
    batcher = Batcher(service.run, service.max_tokens if config.max_batch_seconds is None
                      else int(config.max_batch_seconds * SAMPLE_RATE), config.batch_wait_ms / 1000, batching)
    admission = Admission(config.max_queue, batcher.retry_after)
    decoders = anyio.CapacityLimiter(max(1, min(4, os.cpu_count() or 1)))
    page = {name: (Path(__file__).with_name("page") / name).read_bytes() for name in PAGE}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        log.info("serving %s (%s)", Path(service.checkpoint).name or "a model", ", ".join(
            service.labels()["labels"]) or "features only")
        try:
            yield
        finally:
            await batcher.close()

    from .. import __version__

    app = FastAPI(title="emotion2vec", version=__version__, lifespan=lifespan,
                  description="Speech emotion recognition and features with an emotion2vec model. Send audio as "
                  "multipart/form-data in the field `file`; parameters go in the query string.")
    app.state.service, app.state.config, app.state.batcher, app.state.admission = service, config, batcher, admission

    # ------------------------------------------------------------------------------------------------ errors
    @app.exception_handler(RequestError)
    async def _refused(request: Request, e: RequestError):
        log.info("%s %s refused: %s %s", request.method, request.url.path, e.status, e.message)
        return JSONResponse(e.body(), e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        parts = [f"{' '.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return JSONResponse(RequestError(400, "bad_request", "; ".join(parts)).body(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse({"error": code, "message": str(e.detail), "status": e.status_code}, e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(e).__name__, e, exc_info=e)
        return JSONResponse({"error": "internal", "message": f"internal error ({type(e).__name__}); the service "
                             f"logged it", "status": 500}, 500)

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise RequestError(401, "unauthorized", ("wrong API key" if given else "this service needs an API key")
                               + ": send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                               {"WWW-Authenticate": "Bearer"})

    async def receive_audio(request: Request, fmt: str, sample_rate: int | None, channels: int):
        try:
            upload = await asyncio.wait_for(read_upload(request, config.max_upload_bytes), config.upload_timeout)
        except asyncio.TimeoutError:
            raise RequestError(408, "timeout", f"the upload took longer than {config.upload_timeout:g} s "
                               f"(--upload-timeout)", limit=config.upload_timeout) from None
        wav = await anyio.to_thread.run_sync(decode_upload, upload, fmt, sample_rate, channels, config.max_seconds,
                                             limiter=decoders)
        return upload, wav

    async def compute(request: Request, job, samples: int):
        """The job's result from the queue; dropped from the queue if the client goes away meanwhile."""
        result = asyncio.ensure_future(batcher.submit(job, samples))
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not result.done():
                result.cancel()
        if result.cancelled():
            raise ClientDisconnect()
        return result.result()

    def disconnected(request: Request) -> Response:
        log.info("%s %s: the client went away; its request was dropped", request.method, request.url.path)
        return Response(status_code=499)

    # ------------------------------------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    async def index():
        return Response(page["index.html"], media_type=PAGE["index.html"], headers=PAGE_HEADERS)

    @app.get("/page/{name}", include_in_schema=False)
    async def page_file(name: str):
        if name not in page or name == "index.html":
            raise StarletteHTTPException(404, f"no page file {name!r}")
        return Response(page[name], media_type=PAGE[name], headers=PAGE_HEADERS)

    # ------------------------------------------------------------------------------------------------ API
    @app.get("/health", summary="liveness and load (no API key needed)")
    async def health():
        return {"status": "ok", "in_flight": admission.count, "queued": batcher.queued,
                "api_key_required": config.api_key is not None,
                "predict": service.recognizer is not None}

    @app.get("/labels", summary="the labels of the model's classification head")
    async def labels(request: Request):
        check_key(request)
        return service.labels()

    @app.get("/model", summary="what is loaded: checkpoint stamp, dtype, device, limits, batching counters")
    async def model(request: Request):
        check_key(request)
        return {**service.info(), "limits": config.public(),
                "batching": {"enabled": batcher.batching, **batcher.stats.as_dict()}}

    @app.post("/predict", summary="the emotion of a recording (or of each window of it)",
              openapi_extra={"requestBody": _AUDIO_BODY}, responses=_ERRORS)
    async def predict(request: Request,
                      window: float | None = Query(None, gt=0, description="one row per window of this many seconds "
                                                   "(the last aligned to the end); none: one row for the recording"),
                      hop: float | None = Query(None, gt=0, description="window start every this many seconds "
                                                "(default: window)"),
                      format: str = Query("auto", description=f"{', '.join(FORMATS)}: auto decodes a file; pcm_* "
                                          "is headerless little-endian PCM"),
                      sample_rate: int | None = Query(None, ge=1000, le=384000, description="Hz, for raw PCM"),
                      channels: int = Query(1, ge=1, le=64, description="interleaved channels of raw PCM")):
        """The row `emotion2vec predict --out x.jsonl` writes for this recording: `key` and `path` (from the file
        name), `label` (English), `scores` (every label's probability), `label_raw` and `scores_raw` (the
        checkpoint's own strings); a regression head gives `values`. With `window`: a list of such rows, one per
        window, each with `start` and `end` in seconds."""
        check_key(request)
        if service.recognizer is None:
            raise RequestError(409, "no_classifier", "this model has no classification head: it serves features "
                               "(/extract); load an emotion2vec+ model or one from `emotion2vec finetune` to predict")
        try:
            check_window(window, hop)
        except RecognitionError as e:
            raise RequestError(400, "bad_request", str(e).replace("--", "")) from None
        try:
            with admission.slot():
                upload, wav = await receive_audio(request, format, sample_rate, channels)
                try:
                    service.check_windows(len(wav), window, hop)
                except ValueError as e:
                    raise RequestError(400, "bad_request", str(e)) from None
                job = PredictJob(wav, upload_key(upload.filename), upload.filename, window, hop)
                return JSONResponse(await compute(request, job, len(wav)))
        except ClientDisconnect:
            return disconnected(request)

    @app.post("/extract", summary="features of a recording (.npy or JSON)",
              openapi_extra={"requestBody": _AUDIO_BODY},
              responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}, "application/json": {}},
                                          "description": "the features: .npy bytes, or JSON with out=json"}})
    async def extract(request: Request,
                      layers: str = Query("-1", description="-1 (last block), all, or comma-separated block indices"),
                      granularity: str = Query("utterance", description="utterance (mean over frames, (D,)), "
                                               "frame ((T, D) at 50 Hz) or tokens ((E, D), emotion2vec models)"),
                      out: str = Query("npy", pattern="^(npy|json)$", description="npy (bytes of a .npy file) or json"),
                      format: str = Query("auto", description=f"{', '.join(FORMATS)}"),
                      sample_rate: int | None = Query(None, ge=1000, le=384000, description="Hz, for raw PCM"),
                      channels: int = Query(1, ge=1, le=64, description="interleaved channels of raw PCM")):
        """Features as `emotion2vec extract` computes them: (D,) per layer for `utterance`, (T, D) for `frame`,
        (E, D) for `tokens`; several layers add a leading layer axis. `.npy` bytes (numpy.load reads them) or
        JSON `{key, layers, granularity, shape, features}`."""
        check_key(request)
        try:
            ids, single = service.check_extract(layers, granularity)
        except ExtractionError as e:
            raise RequestError(400, "bad_request", str(e).replace("--", "")) from None
        try:
            with admission.slot():
                upload, wav = await receive_audio(request, format, sample_rate, channels)
                values = service.feature_values(len(wav), ids, granularity)
                if values > MAX_VALUES[out]:
                    raise RequestError(413, "too_large", f"these features would be {values:,} numbers, over the "
                                       f"limit of {MAX_VALUES[out]:,} for out={out}: ask for fewer layers, utterance "
                                       f"granularity, out=npy or a shorter recording", limit=MAX_VALUES[out])
                feats = await compute(request, ExtractJob(wav, ids, granularity, single), len(wav))
        except ClientDisconnect:
            return disconnected(request)
        key = upload_key(upload.filename)
        if out == "json":
            return JSONResponse({"key": key, "layers": list(ids), "granularity": granularity,
                                 "shape": list(feats.shape), "features": feats.tolist()})
        buffer = io.BytesIO()
        np.save(buffer, feats)
        safe = re.sub(r"[^\w.-]", "_", key, flags=re.ASCII)
        return Response(buffer.getvalue(), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{safe}.npy"'})

    return app
