"""``emotion2vec serve MODEL``: a recognition service over HTTP with a web page (see :mod:`emotion2vec.serve`)."""

from __future__ import annotations

import argparse
import logging
import os

from ..extract import DTYPE_NAMES
from ..models.config import ATTENTION_IMPLEMENTATIONS
from .options import device, int_at_least, non_negative_float, positive_float, positive_int

KEY_ENV = "EMOTION2VEC_API_KEY"

EXAMPLES = f"""\
The page is at http://HOST:PORT/, the API description at /docs. Endpoints: POST /predict and /extract (the audio as
multipart/form-data in the field `file`, parameters in the query string), GET /health, /labels, /model.

The service binds 127.0.0.1 (this machine only) unless --host says otherwise; when it does, set an API key: in
the environment variable {KEY_ENV} or a file (--api-key-file), which other users cannot read in the process
list as they can --api-key.

examples:
  emotion2vec serve checkpoints/emotion2vec_plus_base
  curl -F file=@speech.wav http://127.0.0.1:8000/predict
  curl -F file=@talk.wav 'http://127.0.0.1:8000/predict?window=3&hop=1.5'
  {KEY_ENV}=$(cat key.txt) emotion2vec serve checkpoints/emotion2vec_plus_base --host 0.0.0.0 --port 8080
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("model", metavar="MODEL", help="a model with a classification head (emotion2vec+ folder, its "
                   "`emotion2vec convert` output, a model from `emotion2vec finetune`); any other checkpoint serves "
                   "features only (/extract)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "0.0.0.0 = every interface, then set an API key)")
    p.add_argument("--port", type=int_at_least(1), default=8000, help="TCP port (default 8000)")
    p.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=(*DTYPE_NAMES, "auto"), default="float32", help="compute dtype (default "
                   "float32; auto = bfloat16 where the hardware accelerates it)")
    p.add_argument("--attention", choices=ATTENTION_IMPLEMENTATIONS, default="sdpa", help="attention (default sdpa)")
    p.add_argument("--max-upload-mb", type=positive_float, default=50.0, help="largest request body in MB (default 50); "
                   "larger: 413")
    p.add_argument("--max-seconds", type=positive_float, default=600.0, help="longest audio in seconds (default 600); "
                   "longer: 413")
    p.add_argument("--max-batch-seconds", type=positive_float, default=None, help="audio seconds one batch gathers (default: "
                   "10 on CPU, 62.5 on GPU, as emotion2vec extract's --max-tokens)")
    p.add_argument("--batch-wait-ms", type=non_negative_float, default=5.0, help="how long a request waits for others to share "
                   "its batch (default 5 ms)")
    p.add_argument("--batching", choices=("on", "off"), default="on", help="on (default): requests arriving "
                   "together share a forward; off: each runs alone (same results)")
    p.add_argument("--max-queue", type=positive_int, default=64, help="requests in progress at once (default 64); more get "
                   "503 with Retry-After")
    p.add_argument("--upload-timeout", type=positive_float, default=300.0, help="seconds a request body may take to arrive "
                   "(default 300); slower: 408")
    p.add_argument("--api-key", default=None, help=f"require this key (Authorization: Bearer KEY or X-API-Key) on "
                   f"/predict, /extract, /labels, /model; prefer ${KEY_ENV} or --api-key-file")
    p.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE (first line)")
    p.add_argument("--chunk-seconds", type=positive_float, default=30.0, help="longer inputs run in stitched windows "
                   "through the encoder (default 30)")
    p.add_argument("--shutdown-timeout", type=non_negative_float, default=120.0, help="on SIGTERM, wait at most this long for "
                   "the requests in flight (default 120 s)")
    p.add_argument("--root-path", default="", help="the URL prefix under which a reverse proxy mounts the service "
                   "(e.g. /emotion), for the links of /docs")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")


def _api_key(args: argparse.Namespace) -> str | None:
    from ..serve.errors import ServeError

    sources = [s for s in (args.api_key is not None and "--api-key", args.api_key_file and "--api-key-file",
                           os.environ.get(KEY_ENV) and f"${KEY_ENV}") if s]
    if len(sources) > 1:
        raise ServeError(f"the API key is given twice ({' and '.join(sources)}): give it once")
    if args.api_key_file:
        try:
            lines = open(args.api_key_file, encoding="utf-8").read().splitlines()
        except OSError as e:
            raise ServeError(f"--api-key-file {args.api_key_file}: {e.strerror}") from None
        if not lines or not lines[0].strip():
            raise ServeError(f"--api-key-file {args.api_key_file}: the first line is empty")
        return lines[0].strip()
    return args.api_key if args.api_key is not None else os.environ.get(KEY_ENV) or None


def run(args: argparse.Namespace) -> int:
    from ..serve.app import create_app
    from ..serve.config import ServeConfig
    from ..serve.errors import ServeError
    from ..serve.server import is_loopback, run_server
    from ..serve.service import Service

    if not 0 < args.port < 65536:
        raise ServeError(f"--port {args.port}: choose 1..65535")
    config = ServeConfig(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                         max_batch_seconds=args.max_batch_seconds, batch_wait_ms=args.batch_wait_ms,
                         batching=args.batching == "on", max_queue=args.max_queue,
                         upload_timeout=args.upload_timeout, api_key=_api_key(args))
    log = logging.getLogger("emotion2vec.serve")
    if not is_loopback(args.host) and config.api_key is None:
        log.warning("binding %s without an API key: anyone who reaches this port can use the model (set "
                    "$%s or --api-key-file)", args.host, KEY_ENV)
    service = Service.load(args.model, device=args.device, dtype=args.dtype, attention=args.attention,
                           trust=args.trust_checkpoint, max_batch_seconds=args.max_batch_seconds,
                           chunk_seconds=args.chunk_seconds)
    if service.recognizer is None:
        log.warning("%s has no classification head: /predict answers 409, /extract serves features", args.model)
    run_server(create_app(service, config), args.host, args.port, args.shutdown_timeout,
               "debug" if args.verbose else "info", args.root_path)
    return 0
