"""The service's limits and switches: one dataclass, checked once (``emotion2vec serve``'s options)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import errors

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """What a running service accepts and how it batches.

    max_upload_mb: largest request body (MB = 10^6 bytes); a larger one gets 413 before it is read to the end.
    max_seconds: longest audio (after decoding); longer gets 413. Per-window predictions cover up to this length.
    max_batch_seconds: audio seconds one batch gathers (the engine's padded budget); None = the extraction engine's
        default for the device (10 s on a CPU, 62.5 s on a GPU).
    batch_wait_ms: how long the first request of a batch waits for others to join it.
    batching: True (default) = requests arriving together share a forward; False = every request runs alone (the
        results are the same; ``benchmarks/serve_load.py`` measures both).
    max_queue: requests admitted at once (being received, waiting or computed); more get 503 with Retry-After.
    upload_timeout: seconds a request body may take to arrive; slower gets 408 (a client that trickles its upload
        would otherwise hold its place in max_queue for ever).
    api_key: when set, /predict, /extract, /labels and /model need it (``Authorization: Bearer KEY`` or
        ``X-API-Key: KEY``); the page and /health stay open.
    """

    max_upload_mb: float = 50.0
    max_seconds: float = 600.0
    max_batch_seconds: float | None = None
    batch_wait_ms: float = 5.0
    batching: bool = True
    max_queue: int = 64
    upload_timeout: float = 300.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise errors.ServeError(f"--max-upload-mb {self.max_upload_mb}: must be positive")
        if not self.max_seconds > 0:
            raise errors.ServeError(f"--max-seconds {self.max_seconds}: must be positive")
        if self.max_batch_seconds is not None and not self.max_batch_seconds > 0:
            raise errors.ServeError(f"--max-batch-seconds {self.max_batch_seconds}: must be positive")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise errors.ServeError(f"--batch-wait-ms {self.batch_wait_ms}: must be between 0 and 1000")
        if not self.upload_timeout > 0:
            raise errors.ServeError(f"--upload-timeout {self.upload_timeout}: must be positive")
        if self.max_queue < 1:
            raise errors.ServeError(f"--max-queue {self.max_queue}: must be at least 1")
        if self.api_key is not None and (len(self.api_key) < 8 or any(c.isspace() for c in self.api_key)):
            raise errors.ServeError("the API key must be at least 8 characters without spaces")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    def public(self) -> dict:
        """The limits as /model reports them (never the key itself)."""
        out = asdict(self)
        out["api_key"] = self.api_key is not None
        return out
