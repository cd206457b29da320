"""Plan stage: one delivery row per (subscriber, digest date, channel), created once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from digest import store
from digest.models import (
    Subscriber,
)
from digest.pipeline.context import Context


def local_date(subscriber: Subscriber | store.Timing, now: datetime) -> date:
    """The subscriber's calendar date at `now`."""
    return _local(now, subscriber.timezone).date()


def is_due(subscriber: Subscriber | store.Timing, now: datetime) -> bool:
    """True once the subscriber's send hour has come in their own time zone."""
    return _local(now, subscriber.timezone).hour >= subscriber.send_hour


@lru_cache(maxsize=1024)
def _local(now: datetime, timezone: str) -> datetime:
    # A million readers share a few hundred zones: convert `now` once per zone, not per reader.
    return now.astimezone(ZoneInfo(timezone))


def plan(
    ctx: Context,
    *,
    digest_date: date | None = None,
    due_only: bool = False,
) -> int:
    """Create the day's delivery rows (idempotent); returns how many are new.

    With `digest_date`, every active subscriber gets a row for that date (`digest run`); with
    `due_only`, a subscriber gets one for their local date once their send hour has come
    (`digest schedule`). Weekly readers get at most one digest in seven days.
    """
    now = ctx.now()
    return sum(
        ctx.store.deliveries.plan(planned, now=now)
        for planned in planned_batches(ctx, digest_date=digest_date, due_only=due_only)
    )


def planned_batches(
    ctx: Context, *, digest_date: date | None = None, due_only: bool = False
) -> Iterator[list[store.PlannedDelivery]]:
    """The rows `plan` would create, a batch of readers at a time (the dry run reads them too)."""
    now = ctx.now()
    for batch in store.iter_timings(ctx.engine):
        planned: list[store.PlannedDelivery] = []
        for subscriber in batch:
            if due_only and not is_due(subscriber, now):
                continue
            day = digest_date or local_date(subscriber, now)
            planned.extend(
                store.PlannedDelivery(subscriber.id, day, channel)
                for channel in subscriber.channels
            )
        yield _drop_weekly_not_due(ctx, batch, planned)


def _drop_weekly_not_due(
    ctx: Context, batch: Sequence[store.Timing], planned: list[store.PlannedDelivery]
) -> list[store.PlannedDelivery]:
    weekly = {s.id for s in batch if s.frequency == "weekly"}
    if not weekly:
        return planned
    last: dict[str, dict[int, date]] = {}  # per channel, one query for the whole batch
    kept = []
    for item in planned:
        if item.subscriber_id in weekly:
            if item.channel not in last:
                last[item.channel] = ctx.store.deliveries.last_digest_dates(
                    weekly, channel=item.channel
                )
            previous = last[item.channel].get(item.subscriber_id)
            if previous is not None and item.digest_date - previous < timedelta(days=7):
                continue
        kept.append(item)
    return kept
