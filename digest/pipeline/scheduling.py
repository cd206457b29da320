"""One scheduler pass, in order: fetch (when due), then plan, then send.

`digest schedule` runs one pass per tick and `digest schedule --once` runs exactly one; both call
`schedule_pass`, so digests are never planned ahead of a fetch that is due: the fetch finishes
(its papers stored) before anything is planned.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.deliver.transport import RelayError
from digest.pipeline.clock import Reading, read_clock
from digest.pipeline.context import Context
from digest.pipeline.fetching import FetchReport, fetch, fetch_due
from digest.pipeline.health import note_pass
from digest.pipeline.mails import send_queued_mails
from digest.pipeline.planning import plan
from digest.pipeline.report import SendReport
from digest.pipeline.upkeep import housekeeping
from digest.pipeline.worker import send_pending

log = logging.getLogger("digest.scheduler")


@dataclass
class PassReport:
    """What one pass did: the fetch (empty when none was due), the rows planned, the sends."""

    started_at: datetime
    fetched: list[FetchReport] = field(default_factory=list)
    planned: int = 0
    sent: SendReport | None = None
    clock_ahead: timedelta = timedelta(0)
    stopped: bool = False

    def summary(self) -> str:
        """One log line with the pass's counts."""
        parts = []
        if self.fetched:
            failed = sum(1 for f in self.fetched if f.status == "failed")
            new = sum(f.new for f in self.fetched)
            parts.append(f"fetched {len(self.fetched)} source(s), {new} new paper(s)")
            if failed:
                parts.append(f"{failed} source(s) failed")
        else:
            parts.append("no fetch due")
        parts.append(f"planned {self.planned} deliveries")
        if self.sent is not None:
            s = self.sent
            parts.append(
                f"sent {s.count('sent')}, empty {s.count('empty')}, "
                f"failed {s.count('failed')}, to retry {s.count('pending')}"
            )
        if self.stopped:
            parts.append("stopped early")
        return "pass: " + "; ".join(parts)


def schedule_pass(
    ctx: Context,
    *,
    send: bool = True,
    stop: threading.Event | None = None,
) -> PassReport:
    """Fetch when the last fetch is older than `fetch_minutes`, plan what is due, send it.

    The caller holds the schedule lock. `stop` ends the pass early and cleanly: between sources,
    before planning, and between send batches (messages in flight finish, unsent claims are
    released). The pass is noted for `digest status` before its work, so a failed one counts.
    """
    wall = ctx.now
    reading = read_clock(ctx.engine, wall())
    ctx.now = reading.clock(wall)
    try:
        return _run_pass(ctx, reading, send, stop)
    finally:
        ctx.now = wall


def _run_pass(
    ctx: Context,
    reading: Reading,
    send: bool,
    stop: threading.Event | None,
) -> PassReport:
    report = PassReport(started_at=reading.now, clock_ahead=reading.ahead)
    note_pass(ctx)
    if fetch_due(ctx):
        report.fetched = fetch(ctx, stop=stop)
        for fetched in report.fetched:
            if fetched.status == "failed":
                log.warning("source %s failed: %s", fetched.name, fetched.error)
        housekeeping(ctx)
    if not _stopped(stop):
        report.planned = plan(ctx, due_only=True)
    if send and not _stopped(stop):
        try:
            send_queued_mails(ctx)
        except RelayError as exc:
            log.warning("queued mails stay queued: %s", exc)
        report.sent = send_pending(ctx, stop=stop)
    report.stopped = _stopped(stop)
    return report


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()
