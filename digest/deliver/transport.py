"""Transports: hand finished messages to an SMTP relay (pooled, retried) or to a folder of .eml files.

The only importer of aiosmtplib. A transport reports each message's outcome through a callback as
soon as it is known; when the callback returns an awaitable, the connection that produced the
result waits for it before starting its next message, which is how the caller bounds the number
of accepted-but-not-yet-recorded messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiosmtplib

from digest.config import SmtpSettings


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, whose DATA sends a message already in wire form as it is.

    aiosmtplib rewrites every message's line endings and dot-stuffs it with two regular
    expressions before DATA: in a run at scale that was a third of the sending process's time.
    The messages built here have CRLF line endings by construction (deliver/message.py), in the
    preparer processes; this checks that with byte counts and dot-stuffs with one replace (a
    quarter of aiosmtplib's cost), and hands any other message to aiosmtplib unchanged.
    """

    async def data(self, message: str | bytes, /, *, timeout: object = None) -> Any:
        wire = _wire_form(message)
        if wire is None or self.protocol is None:
            return await super().data(message, timeout=timeout)  # type: ignore[arg-type]
        wait = timeout if isinstance(timeout, (int, float)) else self.timeout
        start = await self.execute_command(b"DATA", timeout=wait)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        try:
            self.protocol.write(wire)
            self.protocol.write(b".\r\n")
            response = await self.protocol.read_response(timeout=wait)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()  # as aiosmtplib does: a connection that lost its place is not reused
            raise
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response


def _wire_form(message: str | bytes) -> bytes | None:
    """The message as DATA carries it (CRLF lines, dot-stuffed, ending in CRLF), or None when its
    line endings are not all CRLF (then aiosmtplib normalises it)."""
    if not isinstance(message, bytes):
        return None
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        return None
    # Every line but the first starts after a CRLF: stuffing is one C-speed replace, not a regex.
    message = message.replace(b"\r\n.", b"\r\n..")
    if message.startswith(b"."):
        message = b"." + message
    return message if message.endswith(b"\r\n") else message + b"\r\n"


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
    recipient_refused: bool = False
    """The relay refused the recipient itself (5xx to RCPT): counts towards marking it bounced."""
    attempts: int = 1
    """How many times this run tried the envelope."""


ResultCallback = Callable[[SendResult], Awaitable[None] | None]


class RelayError(Exception):
    """The relay refuses this sender as a whole (login, TLS, sender address): no message can go.

    Not any recipient's fault, so no delivery is failed or bounced for it; fix [smtp] or [email].
    """


class Transport(Protocol):
    """Something that delivers envelopes and reports each result.

    `async with transport:` keeps connections open across several send_many calls.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def backlog(self) -> int:
        """Envelopes handed over and not yet being sent (lets a caller feed it just in time)."""
        ...

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Deliver every envelope, calling on_result once per envelope."""
        ...


async def _report(on_result: ResultCallback, result: SendResult) -> None:
    outcome = on_result(result)
    if outcome is not None:
        await outcome


class _NoSession:
    """Transports without connections: entering and leaving is free."""

    backlog = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class FileTransport(_NoSession):
    """Writes each message to DIR as an .eml file (dry runs, or handing mail to another system)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Write every envelope; a file per message, named after its recipient and key."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for envelope in envelopes:
            # The message id is unique per message: recipients never overwrite each other.
            unique = _safe_name(envelope.message_id.strip("<>")) or str(envelope.key)
            write_private(
                self.directory / f"{_safe_name(envelope.recipient)}-{unique}.eml", envelope.data
            )
            await _report(on_result, SendResult(key=envelope.key, ok=True))


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (mails carry readers' live links), atomically:
    written aside then renamed, so a system picking up *.eml never sees half a message."""
    temporary = path.with_name(path.name + ".part")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a leftover .part may have been created wider
        handle.write(data)
    temporary.replace(path)


def _safe_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]", "_", address)[:120]


class _RateLimiter:
    """At most `rate` messages per second across all connections (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        # Single-threaded event loop: reserving the slot needs no lock.
        now = time.monotonic()
        delay = self.next_slot - now
        self.next_slot = max(now, self.next_slot) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(eq=False)
class _Batch:
    """One send_many call: where its results go and how many are still owed."""

    on_result: ResultCallback
    remaining: int
    done: asyncio.Future[None]


@dataclass
class _Job:
    envelope: Envelope
    batch: _Batch
    attempt: int = 0
    errors: list[str] = field(default_factory=list)


class SmtpTransport:
    """A pool of reused SMTP connections with bounded concurrency, retries and an optional rate limit.

    One recipient per message. Temporary failures (4xx, dropped connection, timeout) are retried
    on another or a fresh connection with exponential backoff and jitter, up to `retries` times;
    what still fails is reported as temporary so the caller can try again in a later run. A
    permanent refusal (5xx) is reported at once. A refused recipient resets only its own
    transaction (aiosmtplib sends RSET), so the connection goes on serving the others. Login, TLS
    or sender refusals raise RelayError: they are nobody's bounce.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        retries: int | None = None,
        backoff: float | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.retries = settings.retries if retries is None else retries
        self.backoff = settings.retry_backoff if backoff is None else backoff
        if tls_context is None and settings.ca_file:
            # A private relay's own CA; otherwise the system's trust store verifies the relay.
            tls_context = ssl.create_default_context(cafile=settings.ca_file)
        self.tls_context = tls_context
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._stopping = False
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._batches: set[_Batch] = set()
        self._limiter = _RateLimiter(settings.rate_limit)
        self._fatal: RelayError | None = None
        self.connections_opened = 0
        self.connected_once = False
        """Whether any connection of this pool reached the relay (a relay down from the start is a RelayError)."""
        """How many SMTP connections this transport has opened (reuse shows here)."""

    @property
    def backlog(self) -> int:
        """Envelopes queued and not yet picked up by a connection."""
        return self._queue.qsize() if self._queue is not None else 0

    async def __aenter__(self) -> Self:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._fatal = None
            self.connected_once = False
            self._workers = [
                asyncio.create_task(self._worker(self._queue))
                for _ in range(self.settings.connections)
            ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Stop gracefully: a connection finishes (and reports) the message it is sending, so when
        # this returns no message is in flight; queued and backed-off ones are simply not tried.
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        queue = self._queue
        if queue is not None:
            for _ in self._workers:
                queue.put_nowait(None)
        if self._workers:
            _done, late = await asyncio.wait(self._workers, timeout=self.settings.timeout * 2 + 5)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._queue = None
        self._stopping = False

    async def send_many(self, envelopes: Sequence[Envelope], on_result: ResultCallback) -> None:
        """Send every envelope over the pool (opened just for this call when not entered)."""
        if not envelopes:
            return
        if self._queue is None:
            async with self:
                await self.send_many(envelopes, on_result)
            return
        if self._fatal is not None:
            raise self._fatal
        batch = _Batch(on_result, len(envelopes), asyncio.get_running_loop().create_future())
        self._batches.add(batch)
        for envelope in envelopes:
            self._queue.put_nowait(_Job(envelope, batch))
        try:
            await batch.done
        finally:
            self._batches.discard(batch)

    async def _worker(self, queue: asyncio.Queue[_Job | None]) -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            while True:
                job = await queue.get()
                if job is None or self._stopping or self._fatal is not None:
                    return
                await self._limiter.wait()
                if client is None or not client.is_connected:
                    client = self._client()
                    failure = await self._connect(client, job.envelope)
                    if failure is not None:
                        client = None
                        if not self.connected_once and job.attempt >= self.retries:
                            # The relay never answered this run: that is the relay's outage,
                            # not this reader's failure; stop and leave every digest queued.
                            raise RelayError(
                                f"{failure.error} (nothing was sent: check [smtp] host and port, "
                                "and that the relay is up)"
                            )
                        await self._settle(job, failure)
                        continue
                    self.connected_once = True
                result, usable = await self._send_one(client, job.envelope)
                if not usable:
                    _close(client)
                    client = None
                await self._settle(job, result)
        except RelayError as exc:
            self._fail_all(exc)
        finally:
            if client is not None:
                await _quit(client)

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        self.connections_opened += 1
        return _Client(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self.tls_context,
        )

    async def _connect(self, client: aiosmtplib.SMTP, envelope: Envelope) -> SendResult | None:
        """Open, greet, STARTTLS and log in; a temporary failure comes back as a result."""
        s = self.settings
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RelayError(
                f"the SMTP server {s.host}:{s.port} refused the login for {s.username!r}: "
                f"{exc.code} {exc.message} (check [smtp] username and password)"
            ) from None
        except ssl.SSLError as exc:
            raise RelayError(
                f"TLS with the SMTP server {s.host}:{s.port} failed: {exc} "
                "(check [smtp] security and port: 465 is usually tls, 587 starttls)"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise RelayError(
                    f"the SMTP server {s.host}:{s.port} refused the session: "
                    f"{exc.code} {exc.message}"
                ) from None
            return _failure(envelope, exc.code, exc.message)
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            OSError,
            TimeoutError,
        ) as exc:
            return SendResult(envelope.key, False, error=f"cannot reach {s.host}:{s.port}: {exc}")
        except aiosmtplib.SMTPException as exc:
            # No AUTH or no STARTTLS on offer: the configuration and the relay disagree.
            raise RelayError(
                f"the SMTP server {s.host}:{s.port} cannot do what [smtp] asks: {exc}"
            ) from None
        return None

    async def _send_one(
        self, client: aiosmtplib.SMTP, envelope: Envelope
    ) -> tuple[SendResult, bool]:
        """One mail transaction; returns the result and whether the connection is still usable."""
        try:
            refused, _reply = await client.sendmail(
                envelope.sender, [envelope.recipient], envelope.data
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # aiosmtplib already sent RSET: the connection serves the next recipient.
            first = exc.recipients[0]
            return _failure(envelope, first.code, first.message, rcpt=True), client.is_connected
        except aiosmtplib.SMTPServerDisconnected as exc:
            return SendResult(envelope.key, False, error=f"connection dropped: {exc}"), False
        except aiosmtplib.SMTPSenderRefused as exc:
            if 500 <= exc.code < 600:
                raise RelayError(
                    f"the SMTP server refused the sender {exc.sender!r}: {exc.code} "
                    f"{exc.message} (check [email] from)"
                ) from None
            return _failure(envelope, exc.code, exc.message), exc.code != 421
        except aiosmtplib.SMTPResponseException as exc:
            # 421 means the server is closing this connection; anything else was RSET already.
            return _failure(envelope, exc.code, exc.message), exc.code != 421
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(envelope.key, False, error=f"send failed: {exc!r}"), False
        if envelope.recipient in refused:
            # aiosmtplib returns (not raises) refused recipients when another one was accepted.
            response = refused[envelope.recipient]
            return _failure(envelope, response.code, response.message, rcpt=True), True
        return SendResult(envelope.key, True), True

    async def _settle(self, job: _Job, result: SendResult) -> None:
        if not result.ok and not result.permanent and job.attempt < self.retries:
            job.attempt += 1
            delay = self.backoff * (2 ** (job.attempt - 1)) * (0.5 + random.random())
            loop = asyncio.get_running_loop()
            queue = self._queue
            assert queue is not None

            def requeue() -> None:
                self._timers.discard(handle)
                queue.put_nowait(job)

            handle = loop.call_later(delay, requeue)
            self._timers.add(handle)
            return
        if job.attempt:
            result = SendResult(
                result.key,
                result.ok,
                result.permanent,
                result.code,
                result.error,
                result.recipient_refused,
                job.attempt + 1,
            )
        batch = job.batch
        try:
            await _report(batch.on_result, result)
        except Exception as exc:  # the caller's recorder failed: stop this batch, loudly
            if not batch.done.done():
                batch.done.set_exception(exc)
            return
        batch.remaining -= 1
        if batch.remaining == 0 and not batch.done.done():
            batch.done.set_result(None)

    def _fail_all(self, exc: RelayError) -> None:
        self._fatal = exc
        for batch in self._batches:
            if not batch.done.done():
                batch.done.set_exception(exc)


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(message: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code a reply starts with ("5.7.1 Relay access denied")."""
    found = _ENHANCED.match(message or "")
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def is_policy_refusal(code: int | None, message: str) -> bool:
    """A refusal about us, not the mailbox: 5.7.x (policy, authentication, relay access)."""
    enhanced = enhanced_status(message)
    if enhanced is not None:
        return enhanced[0] == 5 and enhanced[1] == 7
    return code == 530  # "authentication required" without an enhanced code


def _failure(
    envelope: Envelope, code: int | None, message: str, *, rcpt: bool = False
) -> SendResult:
    permanent = code is not None and 500 <= code < 600
    if rcpt and permanent and is_policy_refusal(code, message):
        # The relay refuses us (relay access, authentication, policy), not this reader's
        # mailbox: nobody's bounce, and no other recipient will fare better this run.
        raise RelayError(
            f"the SMTP relay refused to deliver for us: {code} {message} (check [smtp] host, "
            "username and password, and that the relay lets this host send to outside domains)"
        )
    return SendResult(
        envelope.key,
        False,
        permanent,
        code,
        f"{code} {message}".strip(),
        recipient_refused=rcpt and permanent,
    )


def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, asyncio.CancelledError):
        _close(client)
