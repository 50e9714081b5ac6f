"""Errors of the service: a bad option (:class:`ServeError`, exit status 2 on the command line) and a refused
request (:class:`RequestError`: its HTTP status, a short code and a message naming the value at fault).

Every refused request gets the same JSON body, ``{"error": CODE, "message": TEXT, "status": N, ...}`` (plus
``limit`` where a limit was passed), and the service goes on serving.

=============  ======  ======================================================================================
code           status  when
=============  ======  ======================================================================================
bad_request    400     a missing ``file`` field, a malformed form, an unknown field, an invalid parameter
empty          400     an upload of 0 bytes, or audio with 0 samples
unauthorized   401     the API key is missing or wrong (``WWW-Authenticate: Bearer``)
not_found      404     no such route
timeout        408     the body took longer than ``--upload-timeout`` to arrive
no_classifier  409     /predict on a model without a classification head (it serves /extract)
too_large      413     the body is larger than ``--max-upload-mb`` (``limit`` in MB)
too_long       413     the audio is longer than ``--max-seconds`` (``limit`` in seconds)
not_audio      415     bytes that no decoder recognises as audio, or a body that is neither a form nor audio
truncated      422     audio that stops before its header says it ends, or raw PCM cut mid-sample
too_short      422     under 400 samples at 16 kHz (25 ms: one frame of the model)
invalid        422     NaN or infinite samples
busy           503     ``--max-queue`` requests are already admitted (``Retry-After`` in seconds)
internal       500     an unexpected error (logged with its traceback); the service goes on
=============  ======  ======================================================================================
"""

from __future__ import annotations

from ..errors import Emotion2VecError

__all__ = ["ServeError", "RequestError", "AUDIO_STATUS"]


class ServeError(Emotion2VecError, ValueError):
    """A bad ``emotion2vec serve`` option; the message names it."""


class RequestError(Exception):
    """A request the service refuses: ``status`` (HTTP), ``code`` (see the table above), ``message``; ``headers``
    to send (Retry-After, WWW-Authenticate) and ``extra`` fields of the JSON body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.extra = dict(headers or {}), extra

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, "status": self.status, **self.extra}


#: :attr:`emotion2vec.io.audio.AudioError.kind` -> (HTTP status, error code)
AUDIO_STATUS = {
    "unreadable": (415, "not_audio"),
    "not_found": (415, "not_audio"),
    "empty": (400, "empty"),
    "truncated": (422, "truncated"),
    "too_short": (422, "too_short"),
    "too_long": (413, "too_long"),
    "invalid": (422, "invalid"),
}
