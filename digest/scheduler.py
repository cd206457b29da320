"""`digest schedule`: one pass (fetch when due, plan, send) every `[schedule] run_minutes`.

Ticks are timed by the monotonic clock, so a wall clock stepped back or forward never stalls the
loop or makes it spin; what the wall clock is believed for is `pipeline.clock`'s business. Only
the process holding the schedule lock runs passes: a second one on the same database says why it
is idle, fetches nothing and takes over if the first goes away. SIGTERM or SIGINT ends the pass
cleanly (messages in flight finish, claims are released) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType

from digest import pipeline, store

log = logging.getLogger("digest.scheduler")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (the default handlers come back after)."""
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "%s received: finishing the messages in flight (send it again to stop at once)",
            signal.Signals(signum).name,
        )
        signal.signal(signum, signal.SIG_DFL)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_scheduler(
    ctx: pipeline.Context,
    *,
    send: bool = True,
    once: bool = False,
    reset_clock: bool = False,
    expected: tuple[type[Exception], ...] = (),
) -> None:
    """Run passes every `run_minutes` (or one, `once`) until SIGTERM or SIGINT.

    A pass that fails is logged and the next one tries again: in one line for the `expected`
    errors (a relay refusing, a database away), with the traceback for any other. With `once`
    the error is raised for the caller to turn into an exit code.
    """
    settings = ctx.settings.schedule
    interval = timedelta(minutes=settings.run_minutes)
    if reset_clock:
        # whoever holds the lock runs the next pass, and believes the clock from then on
        pipeline.reset_clock(ctx.engine)
        log.info("the system clock is believed as it is from the next pass on")
    with stop_on_signals() as stop, store.ScheduleLock(ctx.engine) as lock:
        idle_said = False
        if not once:
            log.info(
                "scheduler started: a pass every %d min, fetching every %d min, %s",
                settings.run_minutes,
                settings.fetch_minutes,
                "sending" if send else "leaving sending to `digest worker`",
            )
        while not stop.is_set():
            if lock.acquire():
                if idle_said:
                    log.info("took over the schedule lock (%s)", lock.where)
                    idle_said = False
                try:
                    report = pipeline.schedule_pass(ctx, send=send, stop=stop)
                except expected as exc:
                    if once:
                        raise
                    log.error("the pass failed: %s; the next pass tries again", exc)
                except Exception:
                    if once:
                        raise
                    log.exception("the pass failed unexpectedly; the next pass tries again")
                else:
                    log.info(report.summary())
            elif not idle_said or once:
                log.warning(
                    "another `digest schedule` holds the schedule lock (%s): this one %s",
                    lock.where,
                    "does nothing"
                    if once
                    else "stays idle (no fetch, no sending) and takes over if it stops",
                )
                idle_said = True
            if once:
                break
            stop.wait(interval.total_seconds())
        if not once or stop.is_set():
            log.info("scheduler stopped")
