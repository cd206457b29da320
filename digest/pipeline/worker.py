"""Deliver stage: claim pending rows with a lease, compose, render, send, record each result.

How a worker runs (one asyncio loop per `send_pending` call, one SMTP pool for all its batches):

- the next batches are claimed, composed and rendered while the current one is being sent, so
  the connections never wait for the database or the templates: in preparer processes (one per
  core) when the machine has the cores and the run the work for it (pipeline/preparer.py), else
  in a thread;
- the transport sends over `[smtp] connections` reused connections;
- every result goes to the recorder thread (pipeline/recorder.py), which commits in small groups.

Before claiming, rows held by a process that is provably dead (this host, process gone) are
taken back at once; on SQLite, the process holding the sender lock takes back every lease, since
no other process can be sending. A live worker elsewhere keeps its rows until its lease runs out.

The bound, for the docs: **a worker killed at any moment (kill -9, power loss) sends each digest at
most twice, and at most `connections + RECORD_AHEAD` digests twice (with the default 4
connections, 36): the messages the relay had accepted whose "sent" was not yet committed, plus one
being transmitted per connection. Every other digest is sent exactly once; none is lost.** The
only other way to a duplicate is a reply lost in transit: the relay took the message but the
connection dropped before its 250 reached us, so we try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from digest import owners, store
from digest.deliver.transport import RelayError, SendResult, Transport
from digest.pipeline.batch import Prepare, Prepared, prepare_batch
from digest.pipeline.context import Context, Progress, run_sync
from digest.pipeline.health import note_relay, observe_sending
from digest.pipeline.preparer import Claimer, Preparers, limit_malloc_arenas, preparer_count
from digest.pipeline.recorder import Recorder
from digest.pipeline.report import Listener, SendReport


def worker_id() -> str:
    """Names this process in leases: host, pid and start time (so its death can be proven)."""
    return owners.this_process()


@contextlib.contextmanager
def sender_lock(ctx: Context) -> Iterator[bool]:
    """On SQLite, the lock that makes this the only sending process; yields whether it is held.

    Where it is held, no other process can be sending, so every lease in the database belongs to
    a process that is gone. PostgreSQL has no such lock: many workers send at once.
    """
    path = _sqlite_path(ctx)
    if path is None:
        yield False
        return
    handle: IO[str] = open(path.with_name(path.name + ".send-lock"), "a")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = True
    except OSError:  # another process on this machine is sending
        held = False
    try:
        yield held
    finally:
        if held:
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _sqlite_path(ctx: Context) -> Path | None:
    url = ctx.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).expanduser()


def take_back_leases(ctx: Context, queue: store.Queue, *, every_lease: bool) -> int:
    """Rows of dead processes (or, holding the sender lock, every row in `sending`) go back."""
    dead = [owner for owner in queue.lease_owners() if owners.is_dead(owner)]
    return queue.release(
        now=ctx.now(),
        max_attempts=ctx.settings.delivery.max_attempts,
        owners=dead,
        every_lease=every_lease,
    )


def send_pending(
    ctx: Context,
    transport: Transport | None = None,
    *,
    owner: str | None = None,
    progress: Progress | None = None,
    stop_when_idle: bool = True,
    prepare: Prepare | None = None,
    listener: Listener | None = None,
    stop: threading.Event | None = None,
    whole_digests: bool = False,
    fan_out: bool = True,
) -> SendReport:
    """Claim, compose, render and send pending deliveries until none is left (one batch when False).

    `whole_digests`: the listener needs each whole Digest (`--out` renders files from it), so
    batches are prepared in this process, where the digests are.
    `fan_out`: with `prepare_process = "auto"`, prepare in one process per core (the one sender
    of `digest run` and `digest schedule`); False for `digest worker`, which runs one per core.

    Each row becomes sent once the relay answers 250 to its DATA, committed within a few
    milliseconds; see the module docstring for what a crash can cost. Once `stop` is set no
    further batch is taken: the batch being sent finishes, claimed unsent rows are given back.
    """
    owner = owner or worker_id()
    limit_malloc_arenas()
    report = SendReport(listener=listener)
    with sender_lock(ctx) as alone:
        report.released = take_back_leases(ctx, ctx.store.deliveries, every_lease=alone)
        _ = ctx.renderer  # compile templates before the first claim: a broken one sends nothing
        prepare = prepare or prepare_batch
        preparers = (
            0
            if whole_digests
            else preparer_count(ctx, prepare, default=prepare_batch, fan_out=fan_out)
        )
        sender = _Sender(
            ctx, transport or ctx.transport(), owner, prepare, progress, report, preparers
        )
        sender.stop = stop
        started = time.perf_counter()
        try:
            run_sync(sender.run(drain=stop_when_idle))
        except RelayError as exc:
            note_relay(ctx, str(exc))  # for `digest status`: the relay needs the operator
            raise
    # deliveries by outcome (each channel's row), for metrics; a pass that sent clears the alert
    outcomes: Counter[str] = Counter()
    for (_channel, status), count in report.channels.items():
        outcomes[status] += count
    observe_sending(ctx, outcomes, time.perf_counter() - started)
    return report


class _Sender:
    """One sending pass: batches prepared ahead (thread or process), one pool, one recorder."""

    def __init__(
        self,
        ctx: Context,
        transport: Transport,
        owner: str,
        prepare: Prepare,
        progress: Progress | None,
        report: SendReport,
        preparers: int,
    ) -> None:
        self.ctx, self.transport, self.owner = ctx, transport, owner
        self.progress, self.report = progress, report
        self.claimer = Claimer(ctx, owner, prepare)
        self.preparer = Preparers(ctx, owner, preparers) if preparers else None
        self.connections = getattr(getattr(transport, "settings", None), "connections", 1)
        self.progressed = asyncio.Event()
        self.stop: threading.Event | None = None

    async def run(self, *, drain: bool) -> SendReport:
        try:
            return await self._run(drain=drain)
        finally:
            if self.preparer is not None:
                untaken = await asyncio.to_thread(self.preparer.close)
                if untaken:
                    await asyncio.to_thread(
                        self.ctx.store.deliveries.give_back, untaken, owner=self.owner
                    )

    async def _run(self, *, drain: bool) -> SendReport:
        async with Recorder(self.ctx, self.owner, self.report) as recorder, self.transport:
            sends: list[asyncio.Task[None]] = []
            upcoming = asyncio.create_task(asyncio.to_thread(self._next, recorder))
            try:
                while True:
                    prepared = await upcoming
                    if prepared is None:
                        break
                    if self.stop is not None and self.stop.is_set():
                        break  # its rows are held: the recorder gives them back on closing
                    if drain:
                        upcoming = asyncio.create_task(asyncio.to_thread(self._next, recorder))
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

    def _next(self, recorder: Recorder) -> Prepared | None:
        """The next prepared batch, its rows held by the recorder and its events reported."""
        if self.stop is not None and self.stop.is_set():
            return None
        batch = self.preparer.next() if self.preparer is not None else self.claimer.next()
        if batch is None:
            return None
        recorder.hold(c.id for c in batch.claims)
        batch.events.replay(self.report)
        recorder.settled(c.id for c in batch.claims if c.id not in batch.prepared.pending)
        if self.progress:
            self.progress("sending", self.report.total, self.report.total)
        return batch.prepared

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

    async def _send(self, prepared: Prepared, recorder: Recorder) -> None:
        async def on_result(result: SendResult) -> None:
            self.progressed.set()
            await recorder.put(prepared.pending[result.key], result)
            if self.progress:
                self.progress("sending", self.report.total, self.report.total)

        await self.transport.send_many(prepared.envelopes, on_result)
