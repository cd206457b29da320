"""Records send results from a thread in small groups and keeps the leases of held rows alive.

The event loop hands each relay answer over and goes on sending; this thread commits whatever
arrived while the previous commit ran (one commit per message when the relay is slow). A
connection may start its next message only while fewer than `RECORD_AHEAD` accepted results
wait for their commit: that is the duplicate bound of a crash (see pipeline/worker.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from digest import store
from digest.deliver.transport import RelayError, SendResult
from digest.pipeline.batch import Pending
from digest.pipeline.context import Context
from digest.pipeline.report import Outcome, SendReport

log = logging.getLogger(__name__)

RECORD_AHEAD = 32
"""Accepted messages that may wait for their "sent" commit before connections pause."""

LINGER = 0.005
"""Seconds the recorder waits for more results before committing a group (bounded by RECORD_AHEAD)."""

REFUSALS_TO_JUDGE = 3
"""Permanent refusals of recipients in a pass before "most recipients refused" is judged at its
end (and three times as many to stop it early)."""

RETRY_BASE = timedelta(minutes=5)
"""A delivery that failed temporarily in a run is tried again after 5, 10, 20... minutes (±50%)."""


class RecorderError(Exception):
    """The database refused to record send results; sending stopped (rows retry after the lease)."""


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter between runs: 5, 10, 20... minutes, each ±50%."""
    return RETRY_BASE * (2 ** max(attempts - 1, 0)) * (0.5 + random.random())


class Recorder:
    """Commits results through the deliveries queue; gives back what was claimed and never tried.

    A relay that refuses most recipients of a pass is refusing us, not their mailboxes (a relay
    that needs a login, a sender it does not relay for): the refusals of a pass are held back,
    and when they are most of what the relay answered, the pass stops with RelayError and gives
    them back untouched. Only otherwise are they recorded as failures that count towards bounced.
    """

    def __init__(self, ctx: Context, owner: str, report: SendReport) -> None:
        self.ctx, self.owner, self.report = ctx, owner, report
        self.queue = ctx.store.deliveries
        self.limit = RECORD_AHEAD
        self._cond = threading.Condition()
        self._items: list[tuple[Pending, SendResult]] = []
        self._unrecorded = 0
        self._held: set[int] = set()
        self._refused: list[tuple[Pending, SendResult]] = []
        self._accepted = 0
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="digest-recorder", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None

    async def __aenter__(self) -> Recorder:
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        relay_error = None
        if self._refused and self._error is None:
            if exc_info[0] is None and self._most_refused(final=True):
                relay_error = self._refusal_error()
            elif exc_info[0] is None:
                await asyncio.to_thread(self._commit, self._refused)
                self._held.difference_update(p.claim.id for p, _ in self._refused)
        untried = sorted(self._held)
        if untried and self._error is None:
            # Claimed, never tried or refused by a relay refusing us (the pass stopped early):
            # back to pending, no attempt counted.
            await asyncio.to_thread(self.queue.give_back, untried, owner=self.owner)
        if self._error is not None and exc_info[0] is None:
            raise RecorderError(f"could not record send results: {self._error}") from self._error
        if relay_error is not None:
            raise relay_error

    def hold(self, ids: Iterable[int]) -> None:
        """Rows claimed by this pass: their leases are extended until their result is recorded."""
        with self._cond:
            self._held.update(ids)

    def settled(self, ids: Iterable[int]) -> None:
        """Rows the preparation already recorded (empty, feed, gone)."""
        with self._cond:
            self._held.difference_update(ids)

    async def put(self, pending: Pending, result: SendResult) -> None:
        """Hand one result over; waits while too many accepted results are not yet committed."""
        self.report.settle(
            pending.key,
            pending.claim.channel,
            self._status(pending, result),
            result.error,
            email=pending.email,
        )
        if result.recipient_refused:
            # Held back until we know whether the relay refuses this reader or refuses us.
            self._refused.append((pending, result))
            if self._most_refused(final=False):
                raise self._refusal_error()
            return
        if result.ok:
            self._accepted += 1
        with self._cond:
            if self._error is not None:
                raise RecorderError(f"could not record send results: {self._error}")
            self._items.append((pending, result))
            self._unrecorded += 1
            if len(self._items) == 1 or self._unrecorded >= self.limit // 2:
                self._cond.notify()
        assert self._room is not None
        while True:
            with self._cond:
                full = self._unrecorded > self.limit and self._error is None
            if not full:
                return
            self._room.clear()
            await self._room.wait()

    def _most_refused(self, *, final: bool) -> bool:
        """Whether the refusals so far are most of what the relay answered (too many to be theirs)."""
        refused = len(self._refused)
        if refused < REFUSALS_TO_JUDGE * (1 if final else 3):
            return False
        return refused > self._accepted

    def _refusal_error(self) -> RelayError:
        _, result = self._refused[-1]
        return RelayError(
            f"the relay refused {len(self._refused)} of {len(self._refused) + self._accepted} "
            f"recipients in this run (the last: {result.error}); a relay that refuses most "
            "recipients is refusing us, not their mailboxes, so no reader was blamed (check "
            "[smtp] host, username and password, and [email] from)"
        )

    def _status(self, pending: Pending, result: SendResult) -> str:
        if result.ok:
            return Outcome.SENT
        retry = not result.permanent and pending.claim.attempts < self._max_attempts
        return Outcome.RETRY if retry else Outcome.FAILED

    @property
    def _max_attempts(self) -> int:
        return self.ctx.settings.delivery.max_attempts

    def _run(self) -> None:
        every = max(self.ctx.settings.delivery.lease_seconds / 3, 1.0)
        next_extension = time.monotonic() + every
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    if not self._cond.wait(timeout=max(next_extension - time.monotonic(), 0)):
                        break
                if self._items and not self._closing and len(self._items) < self.limit // 2:
                    # Linger a moment to gather a group: fewer, larger commits leave the GIL
                    # to the event loop (each commit costs far more Python than one row).
                    self._cond.wait(timeout=LINGER)
                items, self._items = self._items, []
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
        outcomes = [
            store.Outcome(
                id=p.claim.id,
                subscriber_id=p.claim.subscriber_id,
                error=None if r.ok else (r.error or "failed"),
                retry_at=None if r.ok or r.permanent else now + backoff(p.claim.attempts),
                message_id=p.message_id if r.ok else None,
                bounce=r.recipient_refused,
            )
            for p, r in items
        ]
        settings = self.ctx.settings.delivery
        for delay in (0.2, 1.0, 3.0, None):
            try:
                self.queue.record(
                    outcomes,
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
        if not held:
            return
        until = self.ctx.now() + timedelta(seconds=self.ctx.settings.delivery.lease_seconds)
        try:
            self.queue.extend(held, owner=self.owner, until=until)
        except Exception as exc:  # the next extension may work; the lease is three times longer
            log.warning("could not extend the leases of %d deliveries: %s", len(held), exc)
