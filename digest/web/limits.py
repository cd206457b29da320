"""Limits on the expensive requests: per-network rate limits in memory, a bound on how many rank
at once (the rest wait briefly, then get 503 with Retry-After), and on request body size.

These guard reads (previews, search feeds, preference pages), which are many and cheap to send;
their counters live in this process's memory so a flood costs no database writes. Sign-ups, which
send mail, keep their counters in the database (store.rate_limits.hit) so they hold across processes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.config import WebSettings

MAX_TRACKED = 50_000
"""Networks remembered per limit; the least recently seen are forgotten first (bounded memory)."""
RETRY_AFTER_SECONDS = 5


DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
"""Providers that deliver a.da@ to ada@, mapped to one name (googlemail.com is gmail.com)."""


def inbox_of(address: str) -> str:
    """The inbox an address reaches, for counting mails per inbox: the +tag dropped, and the
    dots too where the provider ignores them (ada+x@ and a.da@gmail.com are ada@gmail.com)."""
    local, _, domain = address.lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", "") or local, DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


class Busy(Exception):
    """Too many expensive requests are running; the client should retry in a few seconds."""


class RateLimiter:
    """A token bucket per network: `limit` requests per `window_seconds`, refilled continuously."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.rate = limit / window_seconds
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, network: str | None) -> bool:
        """Take one request from the network's bucket; False when it is empty.

        A request whose network is unknown is not counted here (it would put strangers in one
        bucket); the concurrency bound still holds for it.
        """
        if network is None:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(network, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[network] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        return allowed


class Gate:
    """At most `running` expensive requests at once; up to `waiting` more wait `wait_seconds`."""

    def __init__(self, running: int, waiting: int, wait_seconds: float) -> None:
        self.running = running
        self.waiting = waiting
        self.wait_seconds = wait_seconds
        self._queued = 0
        self._semaphore: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while the body runs, or raise Busy."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.running)
        semaphore = self._semaphore
        if semaphore.locked() and self._queued >= self.waiting:
            raise Busy
        self._queued += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), self.wait_seconds)
        except TimeoutError:
            raise Busy from None
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            semaphore.release()


@dataclass
class Limits:
    """The web app's limits on expensive reads, built from `[web]`."""

    previews: RateLimiter
    searches: RateLimiter
    preference_pages: RateLimiter
    gate: Gate

    @classmethod
    def from_settings(cls, web: WebSettings) -> Limits:
        """Per-network hourly limits as configured; as many rankings at once as there are cores."""
        running = web.concurrent_rankings or max(2, os.cpu_count() or 2)
        return cls(
            previews=RateLimiter(web.previews_per_ip_per_hour, 3600),
            searches=RateLimiter(web.searches_per_ip_per_hour, 3600),
            preference_pages=RateLimiter(web.preference_pages_per_ip_per_hour, 3600),
            gate=Gate(running=running, waiting=16 * running, wait_seconds=5.0),
        )


MAX_BODY_BYTES = 64 * 1024
"""The largest request body any form of this site sends (4,000-character fields, a few of them)."""


class BodyLimit:
    """Refuses request bodies over MAX_BODY_BYTES with 413, before they are read into memory."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await PlainTextResponse("That was too much.\n", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # a chunked body that never said how long it was
                raise HTTPException(413)
            return message

        await self.app(scope, counted, send)
