"""``emotion2vec serve``: a recognition service over HTTP, with a web page, for a model with a classification head
(emotion2vec+, or one fine-tuned here); a model without one serves features only.

The data flow of a request, one module per step:

- :mod:`.upload`: the request body streamed in with its size bounded, a multipart form parsed in memory (no file
  is ever written; the service never opens a path a client names);
- :mod:`.decode`: those bytes (any format soundfile or PyAV decodes, or raw PCM with its rate) -> a 16 kHz
  waveform, every bad input refused with its HTTP status and reason (:mod:`.errors`);
- :mod:`.batching`: requests that arrive together wait a few milliseconds and share a forward, up to a budget of
  audio seconds; the model runs in one thread beside the event loop;
- :mod:`.service`: the loaded model and what each endpoint computes (prediction rows as ``emotion2vec predict``
  writes them, features as ``emotion2vec extract``);
- :mod:`.app`: the FastAPI application (routes, API key, admission limit, JSON errors) and the page in ``page/``;
- :mod:`.server`: uvicorn on a host and port, finishing the requests in flight on SIGTERM.

Limits and switches live in :class:`.config.ServeConfig`. Importing this package imports neither torch nor
FastAPI.
"""
