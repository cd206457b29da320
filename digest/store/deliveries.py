"""Deliveries: the queue of digests to send, one row per (subscriber, digest date, channel).

The row is unique in the database, so planning twice creates nothing. Its life cycle is the
state machine of store/queue.py; what it sends is the day's composed digest (store/digests.py),
shared by its channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Executable, Table, bindparam, func, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.models import DeliveryStatus
from digest.store.engine import Statistics
from digest.store.queue import Queue
from digest.store.schema import DeliveryRow, SubscriberRow, UTCDateTime

CHUNK = 500

_table = cast(Table, DeliveryRow.__table__)

# Three arrays in, one INSERT ... SELECT out: PostgreSQL plans a whole batch in one statement,
# where a many-row VALUES list costs the driver a parse per row (1M readers: seconds, not minutes).
_PLAN_POSTGRESQL = text(
    """
    INSERT INTO deliveries (subscriber_id, digest_date, channel, status, attempts, created_at)
    SELECT planned.subscriber_id, planned.digest_date, planned.channel, :status, 0, :now
    FROM unnest(CAST(:subscriber_ids AS integer[]), CAST(:digest_dates AS date[]),
                CAST(:channels AS varchar[])) AS planned(subscriber_id, digest_date, channel)
    ON CONFLICT (subscriber_id, digest_date, channel) DO NOTHING
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def _plan_sqlite(now: datetime) -> Executable:
    return (
        sqlite_insert(_table)
        .values(
            subscriber_id=bindparam("subscriber_id"),
            digest_date=bindparam("digest_date"),
            channel=bindparam("channel"),
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["subscriber_id", "digest_date", "channel"])
    )


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A digest that should exist: who, which day, which channel."""

    subscriber_id: int
    digest_date: date
    channel: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery held by one process (or, in a dry run, one it would hold)."""

    id: int
    subscriber_id: int
    digest_date: date
    channel: str
    attempts: int


class Deliveries(Queue):
    """The digest queue: planning, claiming and the reports read from it."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            engine,
            _table,
            columns=("digest_date", "channel"),
            unit=("subscriber_id", "digest_date"),
        )
        self._statistics = Statistics(engine, "deliveries")

    def plan(self, planned: Sequence[PlannedDelivery], *, now: datetime) -> int:
        """Insert the rows that do not exist yet; returns how many were created."""
        if not planned:
            return 0
        columns = {
            "subscriber_ids": [p.subscriber_id for p in planned],
            "digest_dates": [p.digest_date for p in planned],
            "channels": [p.channel for p in planned],
        }
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                result = connection.execute(
                    _PLAN_POSTGRESQL,
                    {**columns, "status": DeliveryStatus.PENDING.value, "now": now},
                )
            else:
                # One statement run for every row (executemany): SQLite sums what each inserted.
                result = connection.execute(
                    _plan_sqlite(now),
                    [
                        {"subscriber_id": s, "digest_date": d, "channel": c}
                        for s, d, c in zip(*columns.values(), strict=True)
                    ],
                )
            created = max(cast(CursorResult[Any], result).rowcount, 0)
        self._statistics.wrote(created)
        return created

    def claim_batch(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: int, after_id: int = 0
    ) -> list[Claim]:
        """pending -> sending for up to `limit` readers' due digests after `after_id` (Queue.claim).

        A reader's channels of one day are claimed together, so one batch composes and reports them.
        """
        rows = self.claim(
            owner=owner, limit=limit, now=now, lease_seconds=lease_seconds, after_id=after_id
        )
        return [Claim(*row) for row in rows]

    def due(self, *, now: datetime) -> list[Claim]:
        """The pending rows a run would claim now, without claiming them (for the dry run)."""
        t = self.table
        query = (
            select(t.c.id, t.c.subscriber_id, t.c.digest_date, t.c.channel, t.c.attempts)
            .where(
                t.c.status == DeliveryStatus.PENDING.value,
                (t.c.next_attempt_at.is_(None)) | (t.c.next_attempt_at <= now),
            )
            .order_by(t.c.id)
        )
        with self.engine.connect() as connection:
            return [Claim(*row) for row in connection.execute(query)]

    def existing(self, planned: Sequence[PlannedDelivery]) -> set[tuple[int, date, str]]:
        """Which of these (subscriber, day, channel) rows exist already, in any status."""
        found: set[tuple[int, date, str]] = set()
        ids = sorted({p.subscriber_id for p in planned})
        days = sorted({p.digest_date for p in planned})
        t = self.table
        with self.engine.connect() as connection:
            for start in range(0, len(ids), CHUNK):
                query = select(t.c.subscriber_id, t.c.digest_date, t.c.channel).where(
                    t.c.subscriber_id.in_(ids[start : start + CHUNK]), t.c.digest_date.in_(days)
                )
                found.update(
                    (sid, _day(day), channel) for sid, day, channel in connection.execute(query)
                )
        return found

    def last_digest_dates(self, subscriber_ids: Iterable[int]) -> dict[tuple[int, str], date]:
        """The date of each subscriber's latest digest per channel, whatever became of it."""
        ids = list(set(subscriber_ids))
        found: dict[tuple[int, str], date] = {}
        t = self.table
        with self.engine.connect() as connection:
            for start in range(0, len(ids), CHUNK):
                query = (
                    select(t.c.subscriber_id, t.c.channel, func.max(t.c.digest_date))
                    .where(t.c.subscriber_id.in_(ids[start : start + CHUNK]))
                    .group_by(t.c.subscriber_id, t.c.channel)
                )
                for subscriber_id, channel, day in connection.execute(query):
                    if day is not None:
                        found[(subscriber_id, channel)] = _day(day)
        return found

    def counts_for(self, *, digest_date: date | None = None) -> dict[str, int]:
        """Deliveries per status (for one day, when given)."""
        t = self.table
        query = select(t.c.status, func.count()).group_by(t.c.status)
        if digest_date is not None:
            query = query.where(t.c.digest_date == digest_date)
        with self.engine.connect() as connection:
            return {status: count for status, count in connection.execute(query)}

    def for_day(self, *, digest_date: date) -> list[dict[str, Any]]:
        """Every delivery of a day with its subscriber's address (for reports and tests)."""
        t, s = self.table, cast(Table, SubscriberRow.__table__)
        query = (
            select(
                t.c.id,
                s.c.email,
                t.c.channel,
                t.c.status,
                t.c.attempts,
                t.c.message_id,
                t.c.last_error,
            )
            .join(s, s.c.id == t.c.subscriber_id)
            .where(t.c.digest_date == digest_date)
            .order_by(t.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


def _day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
