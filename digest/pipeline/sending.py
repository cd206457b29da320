"""Deliver stage: claim pending rows with a lease, rank, render, send, record each result.

How a worker runs (one asyncio loop per `send_pending` call, one SMTP pool for all its batches):

- a thread claims the next batch and ranks and renders it while the current one is being sent,
  so the connections never wait for the database or the templates;
- the transport sends over `[smtp] connections` reused connections;
- every result goes to a recorder thread that commits results in small groups (whatever arrived
  while the previous commit ran; one commit per message when the relay is slow), so the event
  loop never waits on the database;
- a connection whose result is handed over may start its next message only while fewer than
  `RECORD_AHEAD` accepted results wait for their commit.

The bound, for the docs: **a worker killed at any moment (kill -9, power loss) sends each digest at
most twice, and at most `connections + RECORD_AHEAD` digests twice (with the default 4
connections, 36): the messages the relay had accepted whose "sent" was not yet committed, plus one
being transmitted per connection. Every other digest is sent exactly once; none is lost, because
its row stays claimed until its lease runs out and then goes back to pending.** The only other way
to a duplicate is a reply lost in transit: the relay took the message but the connection dropped
before its 250 reached us, so we try again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from digest import store
from digest.deliver.message import MessageError, build_message
from digest.deliver.transport import Envelope, SendResult, Transport
from digest.models import (
    Channel,
    Digest,
    DigestLinks,
    Match,
    RenderedEmail,
    Subscriber,
    SubscriberStatus,
)
from digest.pipeline.composing import Window, compose, first_window
from digest.pipeline.context import Context, Progress, run_sync
from digest.pipeline.feeding import write_reader_feeds
from digest.store.deliveries import Failure, record_results, release_claims

log = logging.getLogger(__name__)

RECORD_AHEAD = 32
"""Accepted messages that may wait for their "sent" commit before connections pause (see above)."""

LINGER = 0.005
"""Seconds the recorder waits for more results before committing a group (bounded by RECORD_AHEAD)."""

RETRY_BASE = timedelta(minutes=5)
"""A delivery that failed temporarily in a run is tried again after 5, 10, 20... minutes (±50%)."""


@dataclass
class DeliveryOutcome:
    """What happened to one delivery in this run."""

    email: str
    channel: str
    status: str
    digest: Digest | None = None
    error: str | None = None


@dataclass
class SendReport:
    """What a sending pass did."""

    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    released: int = 0

    def count(self, status: str) -> int:
        """How many deliveries ended with this status."""
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass(frozen=True, slots=True)
class Pending:
    """A claimed email delivery with its message, waiting for the relay's answer."""

    claim: store.Claim
    email: str
    message_id: str
    digest: Digest | None = None


@dataclass
class Prepared:
    """A claimed batch turned into work: envelopes to send, and outcomes already recorded."""

    envelopes: list[Envelope] = field(default_factory=list)
    pending: dict[int, Pending] = field(default_factory=dict)
    outcomes: list[DeliveryOutcome] = field(default_factory=list)


Prepare = Callable[[Context, Sequence[store.Claim]], Prepared]
"""Turns claimed rows into envelopes (rank and render by default; the bench passes ready mail)."""


def worker_id() -> str:
    """Names this process in leases (host and pid), for operators reading the table."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}"  # fits the 100-character lease column


def send_pending(
    ctx: Context,
    transport: Transport | None = None,
    *,
    owner: str | None = None,
    progress: Progress | None = None,
    stop_when_idle: bool = True,
    prepare: Prepare | None = None,
) -> SendReport:
    """Claim, rank, render and send pending deliveries until none is left (one batch when False).

    Each row becomes sent once the relay answers 250 to its DATA, committed within a few
    milliseconds; see the module docstring for what a crash can cost.
    """
    owner = owner or worker_id()
    released = store.release_expired(
        ctx.engine, now=ctx.now(), max_attempts=ctx.settings.delivery.max_attempts
    )
    _ = ctx.renderer  # compile templates before the first claim: a broken template sends nothing
    sender = _Sender(ctx, transport or ctx.transport(), owner, prepare or prepare_batch, progress)
    report = run_sync(sender.run(drain=stop_when_idle))
    report.released = released
    return report


def process_claims(
    ctx: Context, claims: Sequence[store.Claim], transport: Transport, *, owner: str | None = None
) -> list[DeliveryOutcome]:
    """Rank, render and send one claimed batch, recording each row's result as it comes."""
    sender = _Sender(ctx, transport, owner, prepare_batch, None)
    return run_sync(sender.run_claims(claims))


class _Sender:
    """One sending pass: prepare batches ahead, send them on one pool, record through a thread."""

    def __init__(
        self,
        ctx: Context,
        transport: Transport,
        owner: str | None,
        prepare: Prepare,
        progress: Progress | None,
    ) -> None:
        self.ctx, self.transport, self.owner = ctx, transport, owner
        self.prepare, self.progress = prepare, progress
        self.report = SendReport()
        self.after = 0
        self.connections = getattr(getattr(transport, "settings", None), "connections", 1)
        self.progressed = asyncio.Event()

    async def run(self, *, drain: bool) -> SendReport:
        async with _Recorder(self.ctx, self.owner, self.report) as recorder, self.transport:
            sends: list[asyncio.Task[None]] = []
            upcoming = asyncio.create_task(asyncio.to_thread(self._claim_and_prepare, recorder))
            try:
                while True:
                    prepared = await upcoming
                    if prepared is None:
                        break
                    self.report.outcomes.extend(prepared.outcomes)
                    if drain:
                        upcoming = asyncio.create_task(
                            asyncio.to_thread(self._claim_and_prepare, recorder)
                        )
                    if prepared.envelopes:
                        sends.append(asyncio.create_task(self._send(prepared, recorder)))
                    if not drain:
                        break
                    await self._wait_for_room(sends)
                await asyncio.gather(*sends)
            except BaseException:
                if not upcoming.done():
                    # The thread cannot be interrupted; let it finish so its claims are released.
                    await asyncio.wait([upcoming])
                for task in sends:
                    task.cancel()
                await asyncio.gather(*sends, return_exceptions=True)
                raise
        return self.report

    async def run_claims(self, claims: Sequence[store.Claim]) -> list[DeliveryOutcome]:
        async with _Recorder(self.ctx, self.owner, self.report) as recorder:
            recorder.hold(c.id for c in claims)
            prepared = await asyncio.to_thread(self.prepare, self.ctx, claims)
            self.report.outcomes.extend(prepared.outcomes)
            recorder.settled(c.id for c in claims if c.id not in prepared.pending)
            async with self.transport:
                await self._send(prepared, recorder)
        return self.report.outcomes

    def _claim_and_prepare(self, recorder: _Recorder) -> Prepared | None:
        """Claim the next batch (keyset: continue after the last id) and prepare it."""
        settings = self.ctx.settings.delivery
        for _ in range(2):
            claims = store.claim_deliveries(
                self.ctx.engine,
                owner=self.owner or worker_id(),
                limit=settings.batch_size,
                now=self.ctx.now(),
                lease_seconds=settings.lease_seconds,
                after_id=self.after,
            )
            if claims:
                break
            if self.after == 0:
                return None
            self.after = 0  # wrap around: rows due for a retry may sit below the last id
        else:
            return None
        self.after = claims[-1].id
        recorder.hold(c.id for c in claims)
        prepared = self.prepare(self.ctx, claims)
        recorder.settled(c.id for c in claims if c.id not in prepared.pending)
        return prepared

    async def _wait_for_room(self, sends: list[asyncio.Task[None]]) -> None:
        """Hand the next batch over only when the pool is about to run dry (and surface errors)."""
        while True:
            for task in [t for t in sends if t.done()]:
                sends.remove(task)
                task.result()
            if self.transport.backlog <= self.connections or not sends:
                return
            # Woken by each result (no timers: this must work under a frozen test clock too).
            self.progressed.clear()
            await self.progressed.wait()

    async def _send(self, prepared: Prepared, recorder: _Recorder) -> None:
        async def on_result(result: SendResult) -> None:
            self.progressed.set()
            await recorder.put(prepared.pending[result.key], result)
            if self.progress:
                done = len(self.report.outcomes)
                self.progress("sending", done, done)

        await self.transport.send_many(prepared.envelopes, on_result)


class RecorderError(Exception):
    """The database refused to record send results; sending stopped (rows retry after the lease)."""


class _Recorder:
    """Commits send results from a thread in small groups and keeps the leases of held rows alive."""

    def __init__(self, ctx: Context, owner: str | None, report: SendReport) -> None:
        self.ctx, self.owner, self.report = ctx, owner, report
        self.limit = RECORD_AHEAD
        self._cond = threading.Condition()
        self._queue: list[tuple[Pending, SendResult]] = []
        self._unrecorded = 0
        self._held: set[int] = set()
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="digest-recorder", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None

    async def __aenter__(self) -> _Recorder:
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        untried = sorted(self._held)
        if untried and self._error is None and self.owner:
            # Claimed, never tried (the pass stopped early): back to pending, no attempt counted.
            await asyncio.to_thread(release_claims, self.ctx.engine, untried, owner=self.owner)
        if self._error is not None and exc_info[0] is None:
            raise RecorderError(f"could not record send results: {self._error}") from self._error

    def hold(self, ids: object) -> None:
        """Rows claimed by this pass: their leases are extended until their result is recorded."""
        with self._cond:
            self._held.update(ids)  # type: ignore[arg-type]

    def settled(self, ids: object) -> None:
        """Rows the preparation already recorded (empty, feed, gone)."""
        with self._cond:
            self._held.difference_update(ids)  # type: ignore[arg-type]

    async def put(self, pending: Pending, result: SendResult) -> None:
        """Hand one result over; waits while too many accepted results are not yet committed."""
        self.report.outcomes.append(self._outcome(pending, result))
        with self._cond:
            if self._error is not None:
                raise RecorderError(f"could not record send results: {self._error}")
            self._queue.append((pending, result))
            self._unrecorded += 1
            if len(self._queue) == 1 or self._unrecorded >= self.limit // 2:
                self._cond.notify()
        assert self._room is not None
        while True:
            with self._cond:
                full = self._unrecorded > self.limit and self._error is None
            if not full:
                return
            self._room.clear()
            await self._room.wait()

    def _outcome(self, pending: Pending, result: SendResult) -> DeliveryOutcome:
        if result.ok:
            return DeliveryOutcome(pending.email, Channel.EMAIL, "sent", pending.digest)
        retry = not result.permanent and pending.claim.attempts < self._max_attempts
        status = "pending" if retry else "failed"
        return DeliveryOutcome(pending.email, Channel.EMAIL, status, pending.digest, result.error)

    @property
    def _max_attempts(self) -> int:
        return self.ctx.settings.delivery.max_attempts

    def _run(self) -> None:
        every = max(self.ctx.settings.delivery.lease_seconds / 3, 1.0)
        next_extension = time.monotonic() + every
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    if not self._cond.wait(timeout=max(next_extension - time.monotonic(), 0)):
                        break
                if self._queue and not self._closing and len(self._queue) < self.limit // 2:
                    # Linger a moment to gather a group: fewer, larger commits leave the GIL
                    # to the event loop (each commit costs far more Python than one row).
                    self._cond.wait(timeout=LINGER)
                items, self._queue = self._queue, []
                closing = self._closing
            if items and self._error is None:
                self._commit(items)
            with self._cond:
                self._unrecorded -= len(items)
                self._held.difference_update(p.claim.id for p, _ in items)
                held = sorted(self._held)
            if self._loop is not None and self._room is not None:
                self._loop.call_soon_threadsafe(self._room.set)
            if time.monotonic() >= next_extension:
                next_extension = time.monotonic() + every
                self._extend(held)
            if closing and not items:
                return

    def _commit(self, items: list[tuple[Pending, SendResult]]) -> None:
        now = self.ctx.now()
        sent = [(p.claim.id, p.message_id) for p, r in items if r.ok]
        failed = [
            Failure(
                id=p.claim.id,
                subscriber_id=p.claim.subscriber_id,
                error=r.error or "failed",
                retry_at=None if r.permanent else now + _backoff(p.claim.attempts),
                bounce=r.recipient_refused,
            )
            for p, r in items
            if not r.ok
        ]
        settings = self.ctx.settings.delivery
        for delay in (0.2, 1.0, 3.0, None):
            try:
                record_results(
                    self.ctx.engine,
                    sent,
                    failed,
                    owner=self.owner,
                    now=now,
                    max_attempts=settings.max_attempts,
                    bounce_after=settings.bounce_after,
                )
                return
            except Exception as exc:  # a database hiccup: retry a little, then stop sending
                if delay is None:
                    log.error("could not record %d send results: %s", len(items), exc)
                    with self._cond:
                        self._error = exc
                    return
                log.warning("recording send results failed (%s); retrying", exc)
                time.sleep(delay)

    def _extend(self, held: list[int]) -> None:
        if not held or not self.owner:
            return
        until = self.ctx.now() + timedelta(seconds=self.ctx.settings.delivery.lease_seconds)
        try:
            store.extend_lease(self.ctx.engine, held, owner=self.owner, until=until)
        except Exception as exc:  # the next extension may work; the lease is three times longer
            log.warning("could not extend the leases of %d deliveries: %s", len(held), exc)


def _backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter between runs: 5, 10, 20... minutes, each ±50%."""
    return RETRY_BASE * (2 ** max(attempts - 1, 0)) * (0.5 + random.random())


def prepare_batch(ctx: Context, claims: Sequence[store.Claim]) -> Prepared:
    """Rank and render a claimed batch; records empty digests, feed digests and vanished readers."""
    engine = ctx.engine
    prepared = Prepared()
    subscribers = store.subscribers_by_ids(engine, [c.subscriber_id for c in claims])
    live: list[store.Claim] = []
    gone: list[Failure] = []
    for claim in claims:
        subscriber = subscribers.get(claim.subscriber_id)
        if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
            reason = (
                "subscriber is gone" if subscriber is None else f"subscriber is {subscriber.status}"
            )
            gone.append(Failure(claim.id, claim.subscriber_id, reason, retry_at=None))
            email = subscriber.email if subscriber else "?"
            prepared.outcomes.append(DeliveryOutcome(email, claim.channel, "failed", error=reason))
        else:
            live.append(claim)
    if gone:
        record_results(engine, [], gone, owner=None, now=ctx.now(), max_attempts=0, bounce_after=1)
    by_channel: dict[str, list[store.Claim]] = defaultdict(list)
    for claim in live:
        by_channel[claim.channel].append(claim)
    sent_before = store.sent_paper_ids(engine, [c.subscriber_id for c in live])
    for channel, group in by_channel.items():
        previous: dict[tuple[date, int], datetime] = {}
        for day in {c.digest_date for c in group}:
            ids = [c.subscriber_id for c in group if c.digest_date == day]
            for sid, cutoff in store.previous_cutoffs(
                engine, ids, channel=channel, before=day
            ).items():
                previous[(day, sid)] = cutoff
        members = [subscribers[c.subscriber_id] for c in group]
        windows = [
            Window(
                previous.get((c.digest_date, c.subscriber_id)) or first_window(ctx, c.cutoff),
                c.cutoff,
            )
            for c in group
        ]
        digests = _compose_by_day(ctx, group, members, windows, sent_before)
        _prepare_group(ctx, channel, group, members, digests, prepared)
    return prepared


def _compose_by_day(
    ctx: Context,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    windows: Sequence[Window],
    sent_before: dict[int, set[int]],
) -> list[Digest | None]:
    digests: list[Digest | None] = [None] * len(group)
    days: dict[date, list[int]] = defaultdict(list)
    for index, claim in enumerate(group):
        days[claim.digest_date].append(index)
    for day, indexes in days.items():
        composed = compose(
            ctx,
            [members[i] for i in indexes],
            [windows[i] for i in indexes],
            digest_date=day,
            exclude=[sent_before.get(group[i].subscriber_id, set()) for i in indexes],
        )
        for index, digest in zip(indexes, composed, strict=True):
            digests[index] = digest
    return digests


def _prepare_group(
    ctx: Context,
    channel: str,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    digests: Sequence[Digest | None],
    prepared: Prepared,
) -> None:
    engine, now = ctx.engine, ctx.now()
    to_send: list[tuple[store.Claim, Digest]] = []
    items: dict[int, Sequence[Match]] = {}
    for claim, subscriber, digest in zip(group, members, digests, strict=True):
        if digest is None:
            store.mark_empty(engine, claim.id, now=now, reason="nothing matched the profile")
            prepared.outcomes.append(DeliveryOutcome(subscriber.email, channel, "empty"))
            continue
        items[claim.id] = digest.matches
        to_send.append((claim, digest))
    store.save_many_items(engine, items)
    if channel == Channel.FEED:
        store.mark_many_sent(engine, [(claim.id, None) for claim, _ in to_send], now=now)
        if ctx.settings.delivery.feeds_dir:
            write_reader_feeds(
                ctx, [d.subscriber for _, d in to_send], Path(ctx.settings.delivery.feeds_dir)
            )
        prepared.outcomes.extend(
            DeliveryOutcome(d.subscriber.email, channel, "sent", d) for _, d in to_send
        )
        return
    unsendable: list[Failure] = []
    for claim, digest in to_send:
        try:
            envelope = render_envelope(ctx, claim.id, digest)
        except MessageError as exc:
            # One address the message cannot carry (say, a non-ASCII local part) fails alone.
            unsendable.append(Failure(claim.id, claim.subscriber_id, str(exc), retry_at=None))
            prepared.outcomes.append(
                DeliveryOutcome(digest.subscriber.email, channel, "failed", digest, str(exc))
            )
            continue
        prepared.envelopes.append(envelope)
        prepared.pending[claim.id] = Pending(
            claim, digest.subscriber.email, envelope.message_id, digest
        )
    if unsendable:
        record_results(engine, [], unsendable, owner=None, now=now, max_attempts=0, bounce_after=1)


def render_envelope(ctx: Context, key: int, digest: Digest) -> Envelope:
    """The digest as a ready-to-send message for its subscriber."""
    rendered = ctx.renderer.digest(digest)
    return envelope_for(ctx, key, digest.subscriber.email, rendered, digest.links)


def envelope_for(
    ctx: Context, key: int, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> Envelope:
    """The rendered mail as a ready-to-send envelope (MIME bytes, DKIM-signed when configured)."""
    message = build_message(
        rendered,
        to=to,
        email=ctx.settings.email,
        site=ctx.settings.site,
        unsubscribe_url=links.unsubscribe if links and links.unsubscribe else None,
        unsubscribe_mailto=links.unsubscribe_mailto if links and links.unsubscribe_mailto else None,
        dkim=ctx.dkim,
    )
    return Envelope(
        key=key, sender=ctx.sender, recipient=to, data=message.data, message_id=message.message_id
    )
