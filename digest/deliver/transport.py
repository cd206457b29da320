"""Transports: hand finished messages to an SMTP relay (pooled, retried) or to a folder of .eml files.

The only importer of aiosmtplib. A transport reports each message's outcome through a callback as
soon as it is known, so the caller can record "sent" before the next message goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from digest.config import SmtpSettings


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient; `key` lets the caller match results to its own rows."""

    key: int
    sender: str
    recipient: str
    data: bytes
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one envelope."""

    key: int
    ok: bool
    permanent: bool = False
    """A permanent refusal (5xx): retrying will not help."""
    code: int | None = None
    error: str | None = None


ResultCallback = Callable[[SendResult], Awaitable[None] | None]


class Transport(Protocol):
    """Something that delivers envelopes and reports each result."""

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Deliver every envelope, calling on_result once per envelope."""
        ...


async def _report(on_result: ResultCallback, result: SendResult) -> None:
    outcome = on_result(result)
    if outcome is not None:
        await outcome


class FileTransport:
    """Writes each message to DIR as an .eml file (dry runs, or handing mail to another system)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Write every envelope; a file per message, named after its recipient."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for envelope in envelopes:
            path = self.directory / f"{_safe_name(envelope.recipient)}-{envelope.key}.eml"
            path.write_bytes(envelope.data)
            await _report(on_result, SendResult(key=envelope.key, ok=True))


def _safe_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]", "_", address)[:120]


class NullTransport:
    """Accepts everything and sends nothing (previews that only render)."""

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Report every envelope as delivered without sending it."""
        for envelope in envelopes:
            await _report(on_result, SendResult(key=envelope.key, ok=True))


class _RateLimiter:
    """At most `rate` messages per second across all connections (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next_slot - now
            self.next_slot = max(now, self.next_slot) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class SmtpTransport:
    """A pool of reused SMTP connections with bounded concurrency, retries and an optional rate limit.

    Temporary failures (4xx, dropped connection, timeout) are retried here with exponential backoff
    and jitter up to `retries` times; what still fails is reported as temporary so the caller can
    try again in a later run. A permanent refusal (5xx) is reported at once.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        retries: int = 2,
        backoff: float = 1.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.retries = retries
        self.backoff = backoff
        self.tls_context = tls_context

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self.tls_context,
        )

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Send every envelope over up to `connections` reused connections."""
        if not envelopes:
            return
        queue: asyncio.Queue[tuple[Envelope, int]] = asyncio.Queue()
        for envelope in envelopes:
            queue.put_nowait((envelope, 0))
        limiter = _RateLimiter(self.settings.rate_limit)
        pending = {"count": len(envelopes)}
        workers = min(self.settings.connections, len(envelopes))
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(self._worker(queue, limiter, on_result, pending, done))
            for _ in range(workers)
        ]
        await done.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(
        self,
        queue: asyncio.Queue[tuple[Envelope, int]],
        limiter: _RateLimiter,
        on_result: ResultCallback,
        pending: dict[str, int],
        done: asyncio.Event,
    ) -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            while True:
                envelope, attempt = await queue.get()
                await limiter.wait()
                if client is None or not client.is_connected:
                    client = self._client()
                    result = await self._connect(client, envelope)
                    if result is not None:
                        client = None
                        await self._settle(
                            queue, envelope, attempt, result, on_result, pending, done
                        )
                        continue
                result, keep = await self._send_one(client, envelope)
                if not keep:
                    await _close(client)
                    client = None
                await self._settle(queue, envelope, attempt, result, on_result, pending, done)
        finally:
            if client is not None:
                await _quit(client)

    async def _connect(self, client: aiosmtplib.SMTP, envelope: Envelope) -> SendResult | None:
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            return SendResult(
                envelope.key, False, True, exc.code, f"SMTP login refused: {exc.message}"
            )
        except aiosmtplib.SMTPResponseException as exc:
            return _response_failure(envelope, exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(
                envelope.key, False, False, None, f"cannot reach the SMTP server: {exc}"
            )
        return None

    async def _send_one(
        self, client: aiosmtplib.SMTP, envelope: Envelope
    ) -> tuple[SendResult, bool]:
        """Send on an open connection; returns the result and whether the connection is still usable."""
        try:
            refused, _reply = await client.sendmail(
                envelope.sender, [envelope.recipient], envelope.data
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            await _reset(client)
            return _response_failure(envelope, first.code, first.message), client.is_connected
        except aiosmtplib.SMTPServerDisconnected as exc:
            return SendResult(envelope.key, False, False, None, f"connection dropped: {exc}"), False
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                return _response_failure(envelope, exc.code, exc.message), False
            await _reset(client)
            return _response_failure(envelope, exc.code, exc.message), client.is_connected
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(envelope.key, False, False, None, f"send failed: {exc}"), False
        if envelope.recipient in refused:
            # aiosmtplib returns (not raises) a refused recipient when others were accepted.
            response = refused[envelope.recipient]
            return _response_failure(envelope, response.code, response.message), True
        return SendResult(envelope.key, True), True

    async def _settle(
        self,
        queue: asyncio.Queue[tuple[Envelope, int]],
        envelope: Envelope,
        attempt: int,
        result: SendResult,
        on_result: ResultCallback,
        pending: dict[str, int],
        done: asyncio.Event,
    ) -> None:
        if not result.ok and not result.permanent and attempt < self.retries:
            delay = self.backoff * (2**attempt) * (0.5 + random.random())
            asyncio.get_running_loop().call_later(delay, queue.put_nowait, (envelope, attempt + 1))
            return
        await _report(on_result, result)
        pending["count"] -= 1
        if pending["count"] == 0:
            done.set()


def _response_failure(envelope: Envelope, code: int | None, message: str) -> SendResult:
    permanent = code is not None and 500 <= code < 600
    return SendResult(envelope.key, False, permanent, code, f"{code} {message}".strip())


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        await _close(client)


async def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        await _close(client)
