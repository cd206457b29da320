"""Deliveries: the queue of digests to send, claimed with leases, each row sent at most once.

One row per (subscriber, digest date, channel), unique in the database, so planning twice creates
nothing. Workers claim pending rows with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
serialises writers), and a row marked sent is never claimed again: only `pending` rows are claimed,
and nothing moves a `sent` row back. A row whose lease ran out (its worker died) is pending again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    CursorResult,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.models import DeliveryStatus, Match, SubscriberStatus
from digest.store.engine import transaction
from digest.store.schema import (
    DeliveryItemRow,
    DeliveryRow,
    PaperRow,
    SubscriberRow,
    UTCDateTime,
)

CHUNK = 500


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A digest that should exist: who, which day, which channel."""

    subscriber_id: int
    digest_date: date
    channel: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery a worker holds the lease on."""

    id: int
    subscriber_id: int
    digest_date: date
    channel: str
    cutoff: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A paper recommended to a subscriber on a day (one entry of their private feed)."""

    digest_date: date
    sent_at: datetime
    paper_id: int
    score: float
    matched: tuple[str, ...]


def plan_deliveries(
    engine: Engine, planned: Sequence[PlannedDelivery], *, cutoff: datetime, now: datetime
) -> int:
    """Insert the rows that do not exist yet; returns how many were created."""
    if not planned:
        return 0
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    created = 0
    with transaction(engine) as session:
        for start in range(0, len(planned), CHUNK):
            values = [
                {
                    "subscriber_id": p.subscriber_id,
                    "digest_date": p.digest_date,
                    "channel": p.channel,
                    "status": DeliveryStatus.PENDING.value,
                    "cutoff": cutoff,
                    "attempts": 0,
                    "created_at": now,
                }
                for p in planned[start : start + CHUNK]
            ]
            statement = (
                insert(DeliveryRow)
                .values(values)
                .on_conflict_do_nothing(index_elements=["subscriber_id", "digest_date", "channel"])
                .returning(DeliveryRow.id)
            )
            # RETURNING, not rowcount: psycopg reports -1 for a multi-row INSERT ... ON CONFLICT.
            created += len(session.execute(statement).all())
    return created


def release_expired(engine: Engine, *, now: datetime, max_attempts: int | None = None) -> int:
    """Rows whose worker died (lease ran out) go back to pending; returns how many.

    With `max_attempts`, a row that has already used them all (it killed its worker every time)
    becomes failed instead, so one poisonous digest cannot stall the queue forever.
    """
    expired = and_(
        DeliveryRow.status == DeliveryStatus.SENDING.value, DeliveryRow.lease_until < now
    )
    status = DeliveryStatus.PENDING.value
    if max_attempts is not None:
        status = case(  # type: ignore[assignment]
            (DeliveryRow.attempts >= max_attempts, DeliveryStatus.FAILED.value),
            else_=DeliveryStatus.PENDING.value,
        )
    with transaction(engine) as session:
        result = session.execute(
            update(DeliveryRow)
            .where(expired)
            .values(
                status=status,
                lease_owner=None,
                lease_until=None,
                last_error="the worker sending it stopped before recording a result",
            )
            .execution_options(synchronize_session=False)
        )
        # An UPDATE gives a CursorResult; Session.execute is typed as returning any Result.
        return cast(CursorResult[Any], result).rowcount or 0


def release_claims(engine: Engine, ids: Sequence[int], *, owner: str) -> int:
    """Give back rows this worker claimed but did not try (not counted as an attempt)."""
    if not ids:
        return 0
    released = 0
    with transaction(engine) as session:
        for start in range(0, len(ids), CHUNK):
            result = session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id.in_(list(ids[start : start + CHUNK])),
                    DeliveryRow.status == DeliveryStatus.SENDING.value,
                    DeliveryRow.lease_owner == owner,
                )
                .values(
                    status=DeliveryStatus.PENDING.value,
                    lease_owner=None,
                    lease_until=None,
                    attempts=func.max(DeliveryRow.attempts - 1, 0)
                    if engine.dialect.name == "sqlite"
                    else func.greatest(DeliveryRow.attempts - 1, 0),
                )
                .execution_options(synchronize_session=False)
            )
            released += cast(CursorResult[Any], result).rowcount or 0
    return released


def claim_deliveries(
    engine: Engine,
    *,
    owner: str,
    limit: int,
    now: datetime,
    lease_seconds: int,
    after_id: int = 0,
) -> list[Claim]:
    """Lease up to `limit` due pending rows with id > after_id, lowest id first.

    Workers pass the last id they claimed as `after_id` (a keyset claim), so they do not rescan
    the rows already done; they start again from 0 when a pass comes back empty.
    """
    due = and_(
        DeliveryRow.status == DeliveryStatus.PENDING.value,
        DeliveryRow.id > after_id,
        or_(DeliveryRow.next_attempt_at.is_(None), DeliveryRow.next_attempt_at <= now),
    )
    candidates = select(DeliveryRow.id).where(due).order_by(DeliveryRow.id).limit(limit)
    if engine.dialect.name == "postgresql":
        # The locked picks go through a materialized CTE: as an IN (subquery), PostgreSQL may
        # evaluate the LIMIT ... SKIP LOCKED subquery more than once and lease more than `limit`.
        picked = (
            candidates.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        )
        statement = update(DeliveryRow).where(DeliveryRow.id == picked.c.id)
    else:
        statement = update(DeliveryRow).where(DeliveryRow.id.in_(candidates.scalar_subquery()), due)
    statement = (
        statement.values(
            status=DeliveryStatus.SENDING.value,
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=DeliveryRow.attempts + 1,
        )
        .returning(
            DeliveryRow.id,
            DeliveryRow.subscriber_id,
            DeliveryRow.digest_date,
            DeliveryRow.channel,
            DeliveryRow.cutoff,
            DeliveryRow.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    # One UPDATE ... RETURNING statement: on SQLite it takes the write lock for the whole claim, so
    # two processes never lease the same row; on PostgreSQL, SKIP LOCKED lets workers pass each other.
    with transaction(engine) as session:
        rows = session.execute(statement).all()
    claims = [Claim(*row) for row in rows]
    claims.sort(key=lambda claim: claim.id)
    return claims


def extend_lease(engine: Engine, ids: Sequence[int], *, owner: str, until: datetime) -> None:
    """Keep holding rows that take long to send (only those still ours and still sending)."""
    with transaction(engine) as session:
        for start in range(0, len(ids), CHUNK):
            session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id.in_(list(ids[start : start + CHUNK])),
                    DeliveryRow.lease_owner == owner,
                    DeliveryRow.status == DeliveryStatus.SENDING.value,
                )
                .values(lease_until=until)
                .execution_options(synchronize_session=False)
            )


def mark_sent(
    engine: Engine, delivery_id: int, *, now: datetime, message_id: str | None = None
) -> None:
    """Record that the relay accepted the digest (committed at once: it is never sent again)."""
    mark_many_sent(engine, [(delivery_id, message_id)], now=now)


def mark_many_sent(
    engine: Engine, sent: Sequence[tuple[int, str | None]], *, now: datetime
) -> None:
    """Record several accepted digests in one transaction."""
    if not sent:
        return
    with transaction(engine) as session:
        session.execute(
            update(DeliveryRow),
            [
                {
                    "id": delivery_id,
                    "status": DeliveryStatus.SENT.value,
                    "message_id": message_id,
                    "sent_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                    "last_error": None,
                }
                for delivery_id, message_id in sent
            ],
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A delivery the relay did not take: temporary (retry at `retry_at`) or permanent."""

    id: int
    subscriber_id: int
    error: str
    retry_at: datetime | None
    """None for a permanent failure."""
    bounce: bool = False
    """The relay refused the address itself: counts towards marking the subscriber bounced."""


# A mapped class's __table__ is typed as FromClause; for these declarative classes it is a Table.
_table = cast(Table, DeliveryRow.__table__)
_subscribers = cast(Table, SubscriberRow.__table__)


def record_results(
    engine: Engine,
    sent: Sequence[tuple[int, str | None]],
    failed: Sequence[Failure] = (),
    *,
    owner: str | None,
    now: datetime,
    max_attempts: int,
    bounce_after: int,
) -> None:
    """Record a group of send results in one transaction (sent rows, failures, bounce counts).

    A row already sent stays as it is; a failure only touches a row this worker still holds, so a
    row another worker took over after our lease ran out is left to it.
    """
    if not sent and not failed:
        return
    with engine.begin() as connection:
        if sent:
            connection.execute(
                update(_table)
                .where(
                    _table.c.id == bindparam("row_id"),
                    _table.c.status != DeliveryStatus.SENT.value,
                )
                .values(
                    status=DeliveryStatus.SENT.value,
                    message_id=bindparam("mid"),
                    sent_at=now,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                ),
                [{"row_id": row_id, "mid": message_id} for row_id, message_id in sent],
            )
        if failed:
            retry = and_(bindparam("retry", type_=Boolean()), _table.c.attempts < max_attempts)
            retry_at = bindparam("retry_at", type_=UTCDateTime())
            ours = [_table.c.lease_owner == owner] if owner is not None else []
            connection.execute(
                update(_table)
                .where(
                    _table.c.id == bindparam("row_id"),
                    _table.c.status == DeliveryStatus.SENDING.value,
                    *ours,
                )
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
                        "row_id": f.id,
                        "retry": f.retry_at is not None,
                        "retry_at": f.retry_at,
                        "error": f.error[:1000],
                    }
                    for f in failed
                ],
            )
        bounces = [f.subscriber_id for f in failed if f.bounce]
        if bounces:
            connection.execute(
                update(_subscribers)
                .where(_subscribers.c.id == bindparam("sid"))
                .values(
                    bounce_count=_subscribers.c.bounce_count + 1,
                    status=case(
                        (
                            and_(
                                _subscribers.c.bounce_count + 1 >= bounce_after,
                                _subscribers.c.status == SubscriberStatus.ACTIVE.value,
                            ),
                            SubscriberStatus.BOUNCED.value,
                        ),
                        else_=_subscribers.c.status,
                    ),
                ),
                [{"sid": sid} for sid in bounces],
            )


def mark_empty(engine: Engine, delivery_id: int, *, now: datetime, reason: str) -> None:
    """Nothing worth sending: the day is done for this row, and the next digest starts after it."""
    with transaction(engine) as session:
        session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id)
            .values(
                status=DeliveryStatus.EMPTY.value,
                sent_at=now,
                last_error=reason,
                lease_owner=None,
                lease_until=None,
            )
        )


def mark_failed(
    engine: Engine,
    delivery_id: int,
    *,
    error: str,
    retry_at: datetime | None,
    max_attempts: int,
) -> str:
    """A send that did not work: pending again for a later try (temporary) or failed; returns the status."""
    with transaction(engine) as session:
        row = session.get(DeliveryRow, delivery_id)
        if row is None or row.status == DeliveryStatus.SENT.value:
            return row.status if row else DeliveryStatus.FAILED.value
        retry = retry_at is not None and row.attempts < max_attempts
        row.status = DeliveryStatus.PENDING.value if retry else DeliveryStatus.FAILED.value
        row.next_attempt_at = retry_at if retry else None
        row.last_error = error[:1000]
        row.lease_owner = row.lease_until = None
        return row.status


def save_items(engine: Engine, delivery_id: int, matches: Sequence[Match]) -> None:
    """Record what a delivery recommends (replacing what an earlier, unsent attempt recorded)."""
    save_many_items(engine, {delivery_id: matches})


def save_many_items(engine: Engine, items: dict[int, Sequence[Match]]) -> None:
    """Record the recommendations of several deliveries in one transaction."""
    if not items:
        return
    rows = [
        {
            "delivery_id": delivery_id,
            "paper_id": match.paper.id,
            "rank": rank,
            "score": float(match.score),
            "matched": list(match.matched),
        }
        for delivery_id, matches in items.items()
        for rank, match in enumerate(matches, start=1)
        if match.paper.id is not None
    ]
    with transaction(engine) as session:
        ids = list(items)
        for start in range(0, len(ids), CHUNK):
            session.execute(
                delete(DeliveryItemRow).where(
                    DeliveryItemRow.delivery_id.in_(ids[start : start + CHUNK])
                )
            )
        if rows:
            session.execute(cast(Table, DeliveryItemRow.__table__).insert(), rows)


def sent_paper_ids(engine: Engine, subscriber_ids: Iterable[int]) -> dict[int, set[int]]:
    """For each subscriber, the papers any earlier digest of theirs already delivered."""
    found: dict[int, set[int]] = defaultdict(set)
    ids = list(set(subscriber_ids))
    with Session(engine) as session:
        for start in range(0, len(ids), CHUNK):
            query = (
                select(DeliveryRow.subscriber_id, DeliveryItemRow.paper_id)
                .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
                .where(
                    DeliveryRow.subscriber_id.in_(ids[start : start + CHUNK]),
                    DeliveryRow.status == DeliveryStatus.SENT.value,
                )
            )
            for subscriber_id, paper_id in session.execute(query):
                found[subscriber_id].add(paper_id)
    return found


def previous_cutoffs(
    engine: Engine, subscriber_ids: Iterable[int], *, channel: str, before: date
) -> dict[int, datetime]:
    """Where each subscriber's previous digest (sent or empty) on this channel stopped looking."""
    found: dict[int, datetime] = {}
    ids = list(set(subscriber_ids))
    with Session(engine) as session:
        for start in range(0, len(ids), CHUNK):
            query = (
                select(DeliveryRow.subscriber_id, func.max(DeliveryRow.cutoff))
                .where(
                    DeliveryRow.subscriber_id.in_(ids[start : start + CHUNK]),
                    DeliveryRow.channel == channel,
                    DeliveryRow.digest_date < before,
                    DeliveryRow.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.EMPTY.value]),
                )
                .group_by(DeliveryRow.subscriber_id)
            )
            for subscriber_id, cutoff in session.execute(query):
                if cutoff is not None:
                    found[subscriber_id] = _aware(cutoff)
    return found


def _aware(value: datetime) -> datetime:
    # func.max() bypasses the column type on SQLite, so the value may come back naive or as text.
    result = UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    assert result is not None
    return result


def feed_items(engine: Engine, subscriber_id: int, *, since: date) -> list[FeedItem]:
    """A subscriber's recommended papers since a day, newest digest first, one entry per paper."""
    query = (
        select(
            DeliveryRow.digest_date,
            DeliveryRow.sent_at,
            DeliveryItemRow.paper_id,
            DeliveryItemRow.score,
            DeliveryItemRow.matched,
        )
        .join(DeliveryItemRow, DeliveryItemRow.delivery_id == DeliveryRow.id)
        .where(
            DeliveryRow.subscriber_id == subscriber_id,
            DeliveryRow.status == DeliveryStatus.SENT.value,
            DeliveryRow.digest_date >= since,
        )
        .order_by(DeliveryRow.digest_date.desc(), DeliveryItemRow.rank)
    )
    seen: set[int] = set()
    items: list[FeedItem] = []
    with Session(engine) as session:
        for digest_date, sent_at, paper_id, score, matched in session.execute(query):
            if paper_id in seen:
                continue
            seen.add(paper_id)
            # Marking a row sent always sets sent_at; a row edited by hand may lack it, and
            # its digest day is then the best date the feed entry can carry.
            updated = sent_at or datetime.combine(digest_date, time(), UTC)
            items.append(FeedItem(digest_date, updated, paper_id, score, tuple(matched or ())))
    return items


def delivery_counts(engine: Engine, *, digest_date: date | None = None) -> dict[str, int]:
    """Deliveries per status (for one day, when given)."""
    query = select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
    if digest_date is not None:
        query = query.where(DeliveryRow.digest_date == digest_date)
    with Session(engine) as session:
        return {status: count for status, count in session.execute(query)}


def deliveries_for(engine: Engine, *, digest_date: date) -> list[dict[str, object]]:
    """Every delivery of a day with its subscriber's address (for reports)."""
    query = (
        select(
            DeliveryRow.id,
            SubscriberRow.email,
            DeliveryRow.channel,
            DeliveryRow.status,
            DeliveryRow.attempts,
            DeliveryRow.message_id,
            DeliveryRow.last_error,
        )
        .join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
        .where(DeliveryRow.digest_date == digest_date)
        .order_by(DeliveryRow.id)
    )
    with Session(engine) as session:
        return [dict(row._mapping) for row in session.execute(query)]


def item_papers(engine: Engine, delivery_ids: Sequence[int]) -> dict[int, list[int]]:
    """The paper ids recorded for each delivery, in rank order."""
    found: dict[int, list[int]] = defaultdict(list)
    with Session(engine) as session:
        query = (
            select(DeliveryItemRow.delivery_id, DeliveryItemRow.paper_id)
            .join(PaperRow, PaperRow.id == DeliveryItemRow.paper_id)
            .where(DeliveryItemRow.delivery_id.in_(list(delivery_ids)))
            .order_by(DeliveryItemRow.delivery_id, DeliveryItemRow.rank)
        )
        for delivery_id, paper_id in session.execute(query):
            found[delivery_id].append(paper_id)
    return found


def last_digest_dates(
    engine: Engine, subscriber_ids: Iterable[int], *, channel: str
) -> dict[int, date]:
    """The date of each subscriber's latest digest (sent or empty) on a channel."""
    ids = list(set(subscriber_ids))
    found: dict[int, date] = {}
    with Session(engine) as session:
        for start in range(0, len(ids), CHUNK):
            query = (
                select(DeliveryRow.subscriber_id, func.max(DeliveryRow.digest_date))
                .where(
                    DeliveryRow.subscriber_id.in_(ids[start : start + CHUNK]),
                    DeliveryRow.channel == channel,
                    DeliveryRow.status.in_(
                        [
                            DeliveryStatus.SENT.value,
                            DeliveryStatus.EMPTY.value,
                            DeliveryStatus.PENDING.value,
                            DeliveryStatus.SENDING.value,
                        ]
                    ),
                )
                .group_by(DeliveryRow.subscriber_id)
            )
            for subscriber_id, day in session.execute(query):
                if day is not None:
                    found[subscriber_id] = day if isinstance(day, date) else date.fromisoformat(day)
    return found
