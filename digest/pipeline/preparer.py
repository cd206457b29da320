"""Where the sender's batches come from: claimed and prepared in a thread, or in other processes.

Sending (the SMTP conversation, committing results) keeps one core busy; composing and rendering
the next batches keeps another. With two cores, a preparer process claims and prepares batches
while the sending process sends: each batch crosses a pipe as ready MIME bytes, with the report
events its preparation produced (empty digests, feed copies) replayed in the sender. The
preparer claims under the sender's lease owner, so the sender's recorder extends and gives back
those rows as its own, and a rerun after a crash takes them over like the sender's.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from digest import store
from digest.config import Settings
from digest.deliver.transport import Envelope
from digest.models import Digest
from digest.pipeline.batch import Pending, Prepare, Prepared
from digest.pipeline.context import Context, build_context, utcnow
from digest.pipeline.report import Key, SentPaper, Tally, sent_papers

log = logging.getLogger(__name__)

AHEAD = 2
"""Batches the preparer may have ready before the sender takes one (bounds its memory)."""


@functools.cache
def _linux_libc() -> Any:
    """The C library on Linux (for prctl and mallopt); None elsewhere or where it cannot load."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (PR_SET_PDEATHSIG); elsewhere, a no-op."""
    libc = _linux_libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


M_ARENA_MAX = -8
"""glibc's mallopt() parameter for the number of malloc arenas."""


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (Linux only; elsewhere a no-op).

    glibc gives each thread that allocates under contention an arena of its own, up to eight per
    core, and never returns their free space: the sender's threads (recorder, batch hand-over,
    SMTP pool) made its resident memory grow to 370 MiB where two arenas keep it near 220 MiB.
    Forked preparers inherit the cap.
    """
    libc = _linux_libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):  # a C library other than glibc
            libc.mallopt(M_ARENA_MAX, arenas)


@dataclass
class EventLog:
    """A Tally that records report events, to replay them in the sending process."""

    events: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    whole: bool = True
    """Keep each whole Digest (in the sending process); a preparer process keeps `papers` only."""

    def expect(
        self,
        key: Key,
        email: str,
        channels: set[str],
        digest: Digest | None,
        papers: tuple[SentPaper, ...] | None = None,
    ) -> None:
        """Record an expect() call; across processes, the papers as the report lists them
        instead of the whole digest (pickling every Digest cost a tenth of a preparer's time)."""
        listed = sent_papers(digest) if papers is None else papers
        kept = digest if self.whole else None
        self.events.append(("expect", (key, email, channels, kept, listed), {}))

    def settle(self, *args: Any, **kwargs: Any) -> None:
        """Record a settle() call."""
        self.events.append(("settle", args, kwargs))

    def replay(self, tally: Tally) -> None:
        """Apply the recorded events to the real report, in order."""
        for name, args, kwargs in self.events:
            getattr(tally, name)(*args, **kwargs)


@dataclass
class Batch:
    """A claimed batch and what its preparation made of it."""

    claims: list[store.Claim]
    prepared: Prepared
    events: EventLog

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A batch crosses the pipe as plain tuples: pickling each row's dataclasses field by
        # field cost the preparer a tenth of its time and the sender as much again.
        claims = [
            (c.id, c.subscriber_id, c.digest_date, c.channel, c.attempts) for c in self.claims
        ]
        envelopes = [
            (e.key, e.sender, e.recipient, e.data, e.message_id) for e in self.prepared.envelopes
        ]
        pending = [(k, p.email, p.message_id) for k, p in self.prepared.pending.items()]
        return _unpack, (claims, envelopes, pending, self.events.events)


def _unpack(
    claims: list[tuple[Any, ...]],
    envelopes: list[tuple[Any, ...]],
    pending: list[tuple[int, str, str]],
    events: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
) -> Batch:
    """A batch as the preparer made it, from the tuples it crossed the pipe as."""
    rows = [store.Claim(*c) for c in claims]
    by_id = {c.id: c for c in rows}
    prepared = Prepared(
        envelopes=[Envelope(*e) for e in envelopes],
        pending={key: Pending(by_id[key], email, mid) for key, email, mid in pending},
    )
    return Batch(rows, prepared, EventLog(events, whole=False))


class Claimer:
    """Claims batch after batch with a keyset (continuing after the last id), and prepares each."""

    def __init__(self, ctx: Context, owner: str, prepare: Prepare, *, whole: bool = True) -> None:
        self.ctx, self.owner, self.prepare = ctx, owner, prepare
        self.whole = whole
        """Whether reports keep each whole Digest (False in a preparer process)."""
        self.after = 0

    def claim(self) -> list[store.Claim]:
        """The next batch (empty when nothing is due)."""
        settings = self.ctx.settings.delivery
        for _ in range(2):
            claims = self.ctx.store.deliveries.claim_batch(
                owner=self.owner,
                limit=settings.batch_size,
                now=self.ctx.now(),
                lease_seconds=settings.lease_seconds,
                after_id=self.after,
            )
            if claims:
                self.after = claims[-1].id
                return claims
            if self.after == 0:
                return []
            self.after = 0  # wrap around: rows due for a retry may sit below the last id
        return []

    def next(self) -> Batch | None:
        """Claim and prepare the next batch (None: nothing is due)."""
        claims = self.claim()
        if not claims:
            return None
        events = EventLog(whole=self.whole)
        try:
            prepared = self.prepare(self.ctx, claims, events)  # type: ignore[arg-type]
        except BaseException:
            self.ctx.store.deliveries.give_back([c.id for c in claims], owner=self.owner)
            raise
        return Batch(claims, prepared, events)


MAX_PREPARERS = 4


def preparer_count(
    ctx: Context, prepare: Prepare, *, default: Prepare, fan_out: bool = True
) -> int:
    """How many preparer processes to start: the setting, the cores, and enough work to share.

    Preparing a digest costs several times what sending it does, so on a machine with n cores
    n preparers keep the sender fed (the sender itself needs less than half a core). "auto"
    fans out only the one sender of a run (`fan_out`): workers scale by running one per core,
    and a worker that also started a preparer per core would share the cores k times over.
    """
    mode = ctx.settings.delivery.prepare_process
    if mode == "never" or prepare is not default or ctx.now is not utcnow:
        return 0  # a custom clock or preparation cannot cross into another process
    if mode == "auto" and not fan_out:
        return 0
    cores = min(os.cpu_count() or 1, MAX_PREPARERS)
    if mode == "always":
        return max(cores, 1)
    if cores < 2:
        return 0
    due = ctx.store.deliveries.counts().get("pending", 0)
    return min(cores, due // (2 * ctx.settings.delivery.batch_size))


class Preparers:
    """Several preparer processes; `next()` takes whichever batch is ready first."""

    def __init__(self, ctx: Context, owner: str, count: int) -> None:
        self._all = [PreparerProcess(ctx, owner) for _ in range(count)]
        self._active = list(self._all)

    def next(self) -> Batch | None:
        """The next ready batch from any preparer (None once every one has finished)."""
        while self._active:
            ready = wait([p.connection for p in self._active])
            for preparer in self._active:
                if preparer.connection in ready:
                    batch = preparer.next()
                    if batch is not None:
                        return batch
                    self._active.remove(preparer)
                    break
        return None

    def close(self) -> list[int]:
        """Stop every preparer; returns the claims of batches made and never taken."""
        return [claim for preparer in self._all for claim in preparer.close()]


class PreparerProcess:
    """A child process that claims and prepares batches; `next()` takes the next ready one."""

    def __init__(self, ctx: Context, owner: str) -> None:
        self.ctx, self.owner = ctx, owner
        context = _process_context()
        self._conn, child = context.Pipe()
        ctx.engine.dispose()  # a forked child must not share the parent's connections
        self._process = context.Process(
            target=_preparer_main,
            args=(ctx.settings, owner, child, self._conn),
            name="digest-preparer",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._done = False

    @property
    def connection(self) -> Connection:
        """The pipe this preparer's batches arrive on (for waiting on several)."""
        return self._conn

    def next(self) -> Batch | None:
        """The next prepared batch (None when the preparer found nothing more to claim)."""
        if self._done:
            return None
        try:
            message = self._conn.recv()
        except EOFError:
            self._done = True
            raise RuntimeError("the preparer process stopped unexpectedly") from None
        if message is None:
            self._done = True
            return None
        if isinstance(message, BaseException):
            self._done = True
            raise message
        # The preparer may have finished already: its None then waits in the pipe for next().
        with contextlib.suppress(OSError):
            self._conn.send("more")
        return message  # type: ignore[no-any-return]

    def close(self) -> list[int]:
        """Stop the preparer; returns the claims of batches it made that were never taken."""
        untaken: list[int] = []
        if not self._done:
            try:
                self._conn.send("stop")
                while self._conn.poll(30):
                    message = self._conn.recv()
                    if message is None or isinstance(message, BaseException):
                        break
                    untaken.extend(c.id for c in message.claims)
            except (EOFError, OSError):
                pass
        self._conn.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
        self._done = True
        return untaken


def _process_context() -> Any:
    """fork where the platform has it (a preparer starts with the sender's imports), else spawn."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def _preparer_main(settings: Settings, owner: str, conn: Connection, theirs: Connection) -> None:
    """The child: claim and prepare until nothing is due or the sender says stop."""
    from digest.pipeline.batch import prepare_batch

    # A forked child holds the sender's end of the pipe too: closed here, so the sender's death
    # reaches us as a closed pipe; and on Linux the kernel ends us with it (no orphan stays).
    theirs.close()
    _die_with_parent()

    # Ctrl-C and systemd signal the whole process group: the sender decides when to stop (it
    # finishes what is in flight, then says "stop"); a dead sender shows as a closed pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    credits = AHEAD
    try:
        ctx = build_context(settings)
        claimer = Claimer(ctx, owner, prepare_batch, whole=False)
        _ = ctx.renderer
        while True:
            while credits == 0 or conn.poll():
                message = conn.recv()
                if message == "stop":
                    conn.send(None)
                    return
                credits += 1
            batch = claimer.next()
            if batch is None:
                conn.send(None)
                return
            conn.send(batch)
            credits -= 1
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return  # the sender is gone: its rows go back when its death is noticed
    except BaseException as exc:  # hand the error to the sender, which reports it
        try:
            conn.send(exc)
        except Exception:
            conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
