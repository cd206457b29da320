"""How `digest serve` runs the app under uvicorn: timeouts, connection limits, no proxy trust.

uvicorn alone waits forever for a request that is sent a byte at a time, and keeps accepting
connections until the process runs out of file descriptors. Here a client gets `request_timeout`
seconds to send a whole request, at most `max_connections` are open at once (newcomers are
closed at once; requests get 503 when full), and headers are bounded in size. Production still
belongs behind a reverse proxy (docs/deployment.md), which buffers slow clients itself.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
from typing import IO, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.config import WebSettings
from digest.logs import MaskAddresses, TextFormatter

log = logging.getLogger("digest.web")

KEEP_ALIVE_SECONDS = 5
"""An idle keep-alive connection is closed after this long."""
MAX_HEADER_BYTES = 16 * 1024
"""Request line and headers together at most (h11's incomplete-event limit)."""
OPEN_FILES_WANTED = 4096


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request and a cap on open connections."""

    request_timeout = 15.0
    max_connections = 400

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            log.warning("connection limit (%d) reached: closing a new one", self.max_connections)
            self.transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Each request must arrive whole within the timeout, counted from its first byte."""
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            if self._deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            assert self._deadline is not None
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info("closed %s: no whole request within %.0f s", client, self.request_timeout)
            self.transport.abort()


def server_config(
    app: Any, web: WebSettings, *, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration `digest serve` uses (the tests serve with it too)."""
    protocol = type(
        "GuardedH11",
        (GuardedH11Protocol,),
        {"request_timeout": web.request_timeout, "max_connections": web.max_connections},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="off",
        server_header=False,
        # Forwarded headers are read by the app from [web] trusted_proxies only (web/clients.py).
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=web.max_connections,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        **options,
    )


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Lift the soft open-files limit toward `wanted` (within the hard limit); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def log_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing the app's log lines as `digest serve` does (for embedding and tests)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TextFormatter())
    handler.addFilter(MaskAddresses())
    return handler
