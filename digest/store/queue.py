"""The delivery state machine: one table of work items, six named transitions.

Both queues, digests (`deliveries`) and single mails (`mails`), are rows that move between the
same statuses through these transitions and no others:

    pending --claim--> sending --mark_sent--> sent
                               --defer-------> pending (retry after a backoff, or failed when
                                               the attempts are used up)
                               --fail--------> failed
                               --give_back---> pending (not counted as an attempt)
                               --mark_empty--> empty
    sending, lease ran out or owner dead --release--> pending (failed after max_attempts)

A row is claimed with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
writers); a row marked sent is never claimed again, and nothing moves it back. Where rows belong
together (a reader's email and feed copies of one day's digest), a queue names the columns of that
unit and a claim takes whole units: the rows of one unit are never split between two batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Connection,
    CursorResult,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)

from digest.models import DeliveryStatus, SubscriberStatus
from digest.store.schema import SubscriberRow, UTCDateTime

CHUNK = 500

_subscribers = cast(Table, SubscriberRow.__table__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one try at a claimed row, as the queue records it."""

    id: int
    subscriber_id: int
    error: str | None = None
    """None: the relay took it."""
    retry_at: datetime | None = None
    """For a failure: when to try again (None: a permanent failure)."""
    message_id: str | None = None
    bounce: bool = False
    """The relay refused the mailbox itself: counts towards marking the subscriber bounced."""

    @property
    def ok(self) -> bool:
        """Whether the relay took it."""
        return self.error is None


class Queue:
    """One table of work items (deliveries or mails) and its transitions."""

    def __init__(
        self, engine: Engine, table: Table, *, columns: Sequence[str], unit: Sequence[str] = ()
    ) -> None:
        self.engine, self.table = engine, table
        self._returning = [table.c[name] for name in ("id", "subscriber_id", *columns, "attempts")]
        self._unit = [table.c[name] for name in unit]

    def claim(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: int, after_id: int = 0
    ) -> list[tuple[Any, ...]]:
        """pending -> sending: lease up to `limit` due rows (or units) after after_id, lowest first.

        Workers pass the last id they claimed as `after_id` (a keyset claim), so they do not
        rescan the rows already done; they start again from 0 when a pass comes back empty.
        Returns (id, subscriber_id, *columns, attempts) tuples.
        """
        t = self.table
        due = self._due(t, now)
        picked = select(t.c.id, *self._unit).where(due, t.c.id > after_id)
        if self._unit:
            # Pick the head (lowest pending id) of each unit, then take its whole unit: two
            # claimers can only contend for heads, so no unit is split between two batches.
            sibling = t.alias("sibling")
            earlier = select(sibling.c.id).where(
                self._due(sibling, now),
                sibling.c.id < t.c.id,
                *(sibling.c[c.name] == c for c in self._unit),
            )
            picked = picked.where(~earlier.exists())
        picked = picked.order_by(t.c.id).limit(limit)
        heads = picked.cte("picked")
        if self.engine.dialect.name == "postgresql":
            # Through a materialized CTE: as an IN (subquery), PostgreSQL may evaluate the
            # LIMIT ... SKIP LOCKED subquery more than once and lease more than `limit`.
            heads = picked.with_for_update(skip_locked=True, of=t).cte("picked")
            heads = heads.prefix_with("MATERIALIZED")
        joined = [heads.c[c.name] == c for c in self._unit] or [heads.c.id == t.c.id]
        statement = update(t).where(due, *joined)
        statement = statement.values(
            status=DeliveryStatus.SENDING.value,
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=t.c.attempts + 1,
        ).returning(*self._returning)
        # One UPDATE ... RETURNING: on SQLite it holds the write lock for the whole claim, so two
        # processes never lease the same row; on PostgreSQL, SKIP LOCKED lets workers pass.
        with self.engine.begin() as connection:
            rows = [tuple(row) for row in connection.execute(statement)]
        rows.sort(key=lambda row: row[0])
        return rows

    @staticmethod
    def _due(t: Any, now: datetime) -> Any:
        """Pending, and not waiting for a retry."""
        return and_(
            t.c.status == DeliveryStatus.PENDING.value,
            or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
        )

    def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        owner: str | None,
        now: datetime,
        max_attempts: int,
        bounce_after: int,
    ) -> None:
        """sending -> sent | pending (defer) | failed, for a group of tries, in one transaction.

        A row already sent stays as it is; a failure only touches a row this owner still holds,
        so a row another worker took over after our lease ran out is left to it.
        """
        if not outcomes:
            return
        with self.engine.begin() as connection:
            self._mark_sent(connection, [o for o in outcomes if o.ok], now=now)
            self._mark_failed(
                connection, [o for o in outcomes if not o.ok], owner, max_attempts=max_attempts
            )
            self._count_bounces(
                connection, [o.subscriber_id for o in outcomes if o.bounce], bounce_after
            )

    def mark_sent(self, ids: Sequence[int], *, now: datetime) -> None:
        """sending -> sent for rows that need no relay (the feed copy of a digest)."""
        with self.engine.begin() as connection:
            self._mark_sent(connection, [Outcome(i, 0) for i in ids], now=now)

    def fail(self, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """sending -> failed at once, whatever the attempts (a reader gone, an unsendable address)."""
        permanent = [Outcome(o.id, o.subscriber_id, o.error or "failed") for o in outcomes]
        with self.engine.begin() as connection:
            self._mark_failed(connection, permanent, None, max_attempts=0)

    def mark_empty(self, ids: Sequence[int], *, now: datetime, reason: str) -> None:
        """sending -> empty: nothing worth sending; the day is done for these rows."""
        t = self.table
        with self.engine.begin() as connection:
            for start in range(0, len(ids), CHUNK):
                connection.execute(
                    update(t)
                    .where(t.c.id.in_(list(ids[start : start + CHUNK])))
                    .values(
                        status=DeliveryStatus.EMPTY.value,
                        sent_at=now,
                        last_error=reason,
                        lease_owner=None,
                        lease_until=None,
                    )
                )

    def give_back(self, ids: Sequence[int], *, owner: str) -> int:
        """sending -> pending for rows this owner claimed but never tried (no attempt counted)."""
        t = self.table
        greatest = func.max if self.engine.dialect.name == "sqlite" else func.greatest
        released = 0
        with self.engine.begin() as connection:
            for start in range(0, len(ids), CHUNK):
                result = connection.execute(
                    update(t)
                    .where(
                        t.c.id.in_(list(ids[start : start + CHUNK])),
                        t.c.status == DeliveryStatus.SENDING.value,
                        t.c.lease_owner == owner,
                    )
                    .values(
                        status=DeliveryStatus.PENDING.value,
                        lease_owner=None,
                        lease_until=None,
                        attempts=greatest(t.c.attempts - 1, 0),
                    )
                )
                released += cast(CursorResult[Any], result).rowcount or 0
        return released

    def lease_owners(self) -> set[str]:
        """The owners holding rows in `sending` now (to tell the dead from the living)."""
        t = self.table
        with self.engine.connect() as connection:
            query = (
                select(t.c.lease_owner)
                .where(t.c.status == DeliveryStatus.SENDING.value, t.c.lease_owner.is_not(None))
                .distinct()
            )
            return {owner for (owner,) in connection.execute(query)}

    def release(
        self,
        *,
        now: datetime,
        max_attempts: int | None = None,
        owners: Iterable[str] = (),
        every_lease: bool = False,
    ) -> int:
        """sending -> pending for rows whose worker is gone; returns how many.

        Gone means: the lease ran out, or the owner is one of `owners` (proven dead by the
        caller), or `every_lease` (the caller holds the only sender lock there is). A row that
        already used all its attempts (it killed its worker every time) becomes failed instead,
        so one poisonous digest cannot stall the queue forever.
        """
        t = self.table
        gone = [t.c.lease_until < now]
        dead = list(owners)
        if dead:
            gone.append(t.c.lease_owner.in_(dead))
        where = t.c.status == DeliveryStatus.SENDING.value
        if not every_lease:
            where = and_(where, or_(*gone))
        status: Any = DeliveryStatus.PENDING.value
        if max_attempts is not None:
            status = case(
                (t.c.attempts >= max_attempts, DeliveryStatus.FAILED.value),
                else_=DeliveryStatus.PENDING.value,
            )
        with self.engine.begin() as connection:
            result = connection.execute(
                update(t)
                .where(where)
                .values(
                    status=status,
                    lease_owner=None,
                    lease_until=None,
                    last_error="the process sending it stopped before recording a result",
                )
            )
            return cast(CursorResult[Any], result).rowcount or 0

    def extend(self, ids: Sequence[int], *, owner: str, until: datetime) -> None:
        """Keep holding rows that take long to send (only those still ours and still sending)."""
        t = self.table
        with self.engine.begin() as connection:
            for start in range(0, len(ids), CHUNK):
                connection.execute(
                    update(t)
                    .where(
                        t.c.id.in_(list(ids[start : start + CHUNK])),
                        t.c.lease_owner == owner,
                        t.c.status == DeliveryStatus.SENDING.value,
                    )
                    .values(lease_until=until)
                )

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        t = self.table
        with self.engine.connect() as connection:
            query = select(t.c.status, func.count()).group_by(t.c.status)
            return {status: count for status, count in connection.execute(query)}

    def _mark_sent(self, connection: Connection, sent: Sequence[Outcome], *, now: datetime) -> None:
        if not sent:
            return
        t = self.table
        connection.execute(
            update(t)
            .where(t.c.id == bindparam("row_id"), t.c.status != DeliveryStatus.SENT.value)
            .values(
                status=DeliveryStatus.SENT.value,
                message_id=bindparam("mid"),
                sent_at=now,
                lease_owner=None,
                lease_until=None,
                last_error=None,
            ),
            [{"row_id": o.id, "mid": o.message_id} for o in sent],
        )

    def _mark_failed(
        self,
        connection: Connection,
        failed: Sequence[Outcome],
        owner: str | None,
        *,
        max_attempts: int,
    ) -> None:
        if not failed:
            return
        t = self.table
        retry = and_(bindparam("retry", type_=Boolean()), t.c.attempts < max_attempts)
        retry_at = bindparam("retry_at", type_=UTCDateTime())
        ours = [t.c.lease_owner == owner] if owner is not None else []
        connection.execute(
            update(t)
            .where(t.c.id == bindparam("row_id"), t.c.status == DeliveryStatus.SENDING.value, *ours)
            .values(
                status=case(
                    (retry, DeliveryStatus.PENDING.value), else_=DeliveryStatus.FAILED.value
                ),
                next_attempt_at=case((retry, retry_at), else_=None),
                last_error=bindparam("error"),
                lease_owner=None,
                lease_until=None,
            ),
            [
                {
                    "row_id": o.id,
                    "retry": o.retry_at is not None,
                    "retry_at": o.retry_at,
                    "error": (o.error or "failed")[:1000],
                }
                for o in failed
            ],
        )

    def _count_bounces(
        self, connection: Connection, subscriber_ids: Sequence[int], bounce_after: int
    ) -> None:
        if not subscriber_ids:
            return
        s = _subscribers
        connection.execute(
            update(s)
            .where(s.c.id == bindparam("sid"))
            .values(
                bounce_count=s.c.bounce_count + 1,
                status=case(
                    (
                        and_(
                            s.c.bounce_count + 1 >= bounce_after,
                            s.c.status == SubscriberStatus.ACTIVE.value,
                        ),
                        SubscriberStatus.BOUNCED.value,
                    ),
                    else_=s.c.status,
                ),
            ),
            [{"sid": sid} for sid in subscriber_ids],
        )
