"""Plan stage: one delivery row per (subscriber, digest date, channel), created once.

When a digest is due is decided here and only here:

- a daily reader's digest for their local date is due once their send hour has come in their
  own time zone (the hour after a DST gap counts: 02:00 that never happens is 03:00);
- a weekly reader's is due from their send hour on the weekday they chose, and stays due (a
  catch-up, dated that weekday) until it exists, so downtime never moves their weekday;
- nothing is planned for a date on or before one a reader already has on that channel: a clock
  that jumps back plans nothing again, and after downtime one digest covers everything missed
  (its window runs from the previous digest's cutoff).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from digest import store
from digest.models import Subscriber
from digest.pipeline.context import Context


def local_date(subscriber: Subscriber | store.Timing, now: datetime) -> date:
    """The subscriber's calendar date at `now`."""
    return _local(now, subscriber.timezone).date()


@lru_cache(maxsize=1024)
def _local(now: datetime, timezone: str) -> datetime:
    # A million readers share a few hundred zones: convert `now` once per zone, not per reader.
    return now.astimezone(ZoneInfo(timezone))


def due_date(subscriber: Subscriber | store.Timing, now: datetime) -> date | None:
    """The date of the digest the subscriber is owed at `now` (the latest slot that has come), or None."""
    local = _local(now, subscriber.timezone)
    reached = local.hour >= subscriber.send_hour
    if subscriber.frequency != "weekly":
        return local.date() if reached else None
    back = (local.weekday() - subscriber.send_weekday) % 7
    if back == 0 and not reached:
        back = 7
    slot = local.date() - timedelta(days=back)
    start = subscriber.confirmed_at or subscriber.created_at
    if start is not None and slot < local_date(subscriber, start):
        return None  # a new weekly reader starts on their first chosen weekday, not a past one
    return slot


def plan(
    ctx: Context,
    *,
    digest_date: date | None = None,
    due_only: bool = False,
) -> int:
    """Create the delivery rows that are owed (idempotent); returns how many are new."""
    now = ctx.now()
    return sum(
        ctx.store.deliveries.plan(planned, now=now)
        for planned in planned_batches(ctx, digest_date=digest_date, due_only=due_only)
    )


def planned_batches(
    ctx: Context, *, digest_date: date | None = None, due_only: bool = False
) -> Iterator[list[store.PlannedDelivery]]:
    """The rows `plan` would create, a batch of readers at a time (the dry run reads them too).

    With `digest_date`, every active daily reader gets a row for that date, and a weekly reader
    when their week's digest is owed (`digest run`); with `due_only`, each gets the one
    `due_date` names unless they already have it or a later one (`digest schedule`).
    """
    now = ctx.now()
    for batch in ctx.store.subscribers.iter_timings():
        latest = ctx.store.deliveries.last_digest_dates([s.id for s in batch])
        planned: list[store.PlannedDelivery] = []
        for subscriber in batch:
            owed = due_date(subscriber, now)
            if due_only:
                day = owed
            elif subscriber.frequency == "weekly":
                day = (digest_date or now.date()) if owed is not None else None
            else:
                day = digest_date or now.date()
            if day is None:
                continue
            for channel in subscriber.channels:
                previous = latest.get((subscriber.id, channel))
                # `digest run` may date a daily digest as it likes; the weekly rhythm holds anyway
                already = owed if due_only or subscriber.frequency == "weekly" else None
                if already is not None and previous is not None and previous >= already:
                    continue
                planned.append(store.PlannedDelivery(subscriber.id, day, channel))
        yield planned
