"""Run an application on uvicorn: one process, one model, requests batched inside it.

SIGTERM or Ctrl-C stops accepting connections, closes idle keep-alive connections, lets the requests in flight
finish (uploads still arriving included; at most ``shutdown_timeout`` seconds), then stops the queue. Several
processes behind a reverse proxy scale it out, each with its own model and port.
"""

from __future__ import annotations

import ipaddress

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
    uvicorn.Server(config).run()
