"""The request body: streamed in with its size bounded, a multipart form parsed in memory.

Two ways to send audio: a ``multipart/form-data`` form whose field ``file`` holds the bytes (``curl -F
file=@talk.wav``; the browser page), or the bytes as the body itself with ``Content-Type: application/octet-stream``
(or ``audio/*``, ``video/*``). Parameters go in the query string, so a form holds nothing but ``file``: another
field is refused by name rather than ignored.

Nothing is written to disk: the parts are collected in memory as they arrive, at most ``max_bytes`` of them (a
``Content-Length`` over the limit is refused before any of the body is read). A client that goes away mid-upload
raises Starlette's ``ClientDisconnect`` and what it had sent is dropped with the request. The service never opens a
path a client names: a ``file`` field is always the audio's bytes, its file name only labels the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import RequestError

__all__ = ["Upload", "read_upload", "upload_key"]

RAW_TYPES = ("application/octet-stream",)
RAW_PREFIXES = ("audio/", "video/")
_FORM_HINT = ("send the audio as multipart/form-data in the field 'file' (curl -F file=@talk.wav URL) or as the "
              "body with Content-Type application/octet-stream or audio/*")


@dataclass
class Upload:
    """The audio's bytes and the name the client gave them (its last path component; "" when none)."""

    data: bytes
    filename: str = ""


def upload_key(filename: str) -> str:
    """The key of a result: the file name without its extension (``upload`` when there is none)."""
    stem = PurePosixPath(filename).stem if filename else ""
    return stem or "upload"


def _basename(name: str) -> str:
    return PureWindowsPath(PurePosixPath(name).name).name.strip()


def _too_large(max_bytes: int) -> RequestError:
    mb = max_bytes / 1_000_000
    return RequestError(413, "too_large", f"the upload is larger than this server's limit of {mb:g} MB "
                        f"(--max-upload-mb)", limit=mb)


class _Form:
    """python-multipart callbacks collecting the one ``file`` part in memory."""

    def __init__(self) -> None:
        self.file: bytearray | None = None
        self.filename = ""
        self.done = False
        self._headers: dict[str, bytes] = {}
        self._field, self._value = b"", b""
        self._current: bytearray | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_end": self._end}

    def _part_begin(self) -> None:
        self._headers, self._field, self._value, self._current = {}, b"", b"", None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise RequestError(400, "bad_request", "a form part without a name (Content-Disposition: form-data; "
                               "name=...)")
        if name != "file":
            raise RequestError(400, "bad_request", f"unknown form field {name!r}: the form holds only 'file' (the "
                               f"audio); parameters go in the query string, e.g. /predict?window=3")
        if self.file is not None:
            raise RequestError(400, "bad_request", "more than one 'file' in the form: send one recording per request")
        self.file = self._current = bytearray()
        self.filename = _basename(options.get(b"filename", b"").decode("utf-8", "replace"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._current += data[start:end]

    def _end(self) -> None:
        self.done = True


async def read_upload(request, max_bytes: int) -> Upload:
    """The audio of ``request`` (a Starlette Request), at most ``max_bytes`` of body; refused with a
    :class:`RequestError` (413 too large, 415 not a form nor audio, 400 a malformed form or no ``file``)."""
    from python_multipart.exceptions import MultipartParseError

    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    ctype = ctype.decode("latin-1").lower()
    form: _Form | None = None
    if ctype == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise RequestError(400, "bad_request", "multipart/form-data without a boundary")
        form = _Form()
        parser = MultipartParser(boundary, form.callbacks())
    elif not (ctype in RAW_TYPES or ctype.startswith(RAW_PREFIXES)):
        raise RequestError(415, "not_audio", f"Content-Type {ctype or '(none)'!r}: {_FORM_HINT}")
    body = bytearray()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            if form is None:
                body += chunk
            elif chunk:
                parser.write(chunk)
        if form is not None:
            parser.finalize()
    except MultipartParseError as e:
        raise RequestError(400, "bad_request", f"malformed multipart form: {e}") from None
    if form is None:
        return Upload(bytes(body))
    if not form.done:
        raise RequestError(400, "bad_request", "the multipart form ends before its closing boundary")
    if form.file is None:
        raise RequestError(400, "bad_request", f"no field 'file' in the form: {_FORM_HINT}")
    return Upload(bytes(form.file), form.filename)
