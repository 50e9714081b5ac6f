"""Run an application on uvicorn: one process, one model, requests batched inside it.

SIGTERM or Ctrl-C stops accepting connections, closes idle keep-alive connections, lets the requests in flight
finish (uploads still arriving included; at most ``shutdown_timeout`` seconds), then stops the queue. Several
processes behind a reverse proxy scale it out, each with its own model and port. A stop by signal is a normal
end: the command exits 0 once the requests in flight are answered.
"""

from __future__ import annotations

import ipaddress
import logging
import signal

__all__ = ["run_server", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(app, host: str = "127.0.0.1", port: int = 8000, shutdown_timeout: float = 120.0,
               log_level: str = "info", root_path: str = "") -> None:
    """Serve ``app`` until SIGTERM / SIGINT (blocking)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=shutdown_timeout, server_header=False, root_path=root_path)
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGTERM / SIGINT, then raises the signal again to the handlers it found; these
    # take it as the normal end it is (instead of a death by signal, or a KeyboardInterrupt).
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        logging.getLogger(__name__).info("stopped by %s after answering the requests in flight",
                                         signal.Signals(received[0]).name)
