"""Composed digests: the papers a reader's digest for a day holds, recorded once.

The first process that prepares a (reader, day) records its composition here; every channel,
retry, worker and rerun after it reads the same rows, so a relay hiccup never changes what a
digest contains. A paper recommended in one composition is never recommended in another.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.models import Channel, DeliveryStatus
from digest.store.engine import Statistics
from digest.store.schema import DeliveryRow, DigestItemRow, DigestRow, PaperRow, UTCDateTime

CHUNK = 400

_digests = cast(Table, DigestRow.__table__)
_items = cast(Table, DigestItemRow.__table__)
_deliveries = cast(Table, DeliveryRow.__table__)


@dataclass(frozen=True, slots=True)
class ComposedItem:
    """One paper of a composition: where it stands and why it is there."""

    paper_id: int
    section: str
    """"match" or "trending"."""
    rank: int
    score: float
    matched: tuple[str, ...] = ()
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Composition:
    """A reader's digest for a day, as recorded: its window and its papers in order."""

    subscriber_id: int
    digest_date: date
    since: datetime
    until: datetime
    items: tuple[ComposedItem, ...] = ()
    fallback: bool = False
    failed_sources: tuple[tuple[str, str], ...] = ()
    """(source name, its error) for each source that could not be fetched when composed."""
    matched_total: int | None = None
    """How many papers matched the profile over the thresholds (None: composed before this was
    recorded); the items hold the first max_papers of them."""
    id: int | None = None

    @property
    def empty(self) -> bool:
        """Nothing worth sending was found."""
        return not any(item.section == "match" for item in self.items)


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A paper recommended to a subscriber on a day (one entry of their private feed)."""

    digest_date: date
    sent_at: datetime
    paper_id: int
    score: float
    matched: tuple[str, ...]
    partial: bool = False


Unit = tuple[int, date]
"""(subscriber id, digest date): what a composition is recorded for."""


class Digests:
    """The table family of composed digests (`digests`, `digest_items`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._statistics = Statistics(engine, "digests", "digest_items")

    def get_many(self, units: Iterable[Unit]) -> dict[Unit, Composition]:
        """The recorded compositions among these (subscriber, day) units."""
        wanted = sorted(set(units))
        found: dict[Unit, Composition] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                rows = connection.execute(
                    select(_digests).where(
                        tuple_(_digests.c.subscriber_id, _digests.c.digest_date).in_(chunk)
                    )
                ).all()
                if not rows:
                    continue
                items: dict[int, list[ComposedItem]] = defaultdict(list)
                query = (
                    select(
                        _items.c.digest_id,
                        _items.c.paper_id,
                        _items.c.section,
                        _items.c.rank,
                        _items.c.score,
                        _items.c.matched,
                        _items.c.partial,
                    )
                    .where(_items.c.digest_id.in_([row.id for row in rows]))
                    .order_by(_items.c.digest_id, _items.c.section, _items.c.rank)
                )
                for (
                    digest_id,
                    paper_id,
                    section,
                    rank,
                    score,
                    matched,
                    partial,
                ) in connection.execute(query):
                    items[digest_id].append(
                        ComposedItem(
                            paper_id, section, rank, score, tuple(matched or ()), bool(partial)
                        )
                    )
                for row in rows:
                    composition = Composition(
                        subscriber_id=row.subscriber_id,
                        digest_date=_day(row.digest_date),
                        since=_aware(row.since),
                        until=_aware(row.until),
                        items=tuple(items.get(row.id, ())),
                        fallback=bool(row.fallback),
                        failed_sources=tuple(
                            (str(s.get("name", "")), str(s.get("error", "")))
                            for s in (row.failed_sources or ())
                        ),
                        matched_total=row.matched_total,
                        id=row.id,
                    )
                    found[(composition.subscriber_id, composition.digest_date)] = composition
        return found

    def save(
        self, compositions: Sequence[Composition], *, now: datetime
    ) -> dict[Unit, Composition]:
        """Record compositions that do not exist yet; returns what is recorded for each unit.

        Where another process recorded the same unit first, its composition wins and is returned:
        a digest is composed once, whoever gets there first.
        """
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        by_unit = {(c.subscriber_id, c.digest_date): c for c in compositions}
        kept: dict[Unit, Composition] = {}
        # One statement for every batch: executed with a list of rows, SQLAlchemy batches them
        # into multi-row INSERT ... RETURNING ("insertmanyvalues") from one cached compilation.
        statement = (
            insert(_digests)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "digest_date"])
            .returning(_digests.c.id, _digests.c.subscriber_id, _digests.c.digest_date)
        )
        rows = [
            {
                "subscriber_id": c.subscriber_id,
                "digest_date": c.digest_date,
                "since": c.since,
                "until": c.until,
                "empty": c.empty,
                "fallback": c.fallback,
                "failed_sources": [
                    {"name": name, "error": error} for name, error in c.failed_sources
                ],
                "composed_at": now,
                "matched_total": c.matched_total,
            }
            for c in compositions
        ]
        with self.engine.begin() as connection:
            if rows:
                for digest_id, subscriber_id, day in connection.execute(statement, rows):
                    unit = (subscriber_id, _day(day))
                    kept[unit] = _with_id(by_unit[unit], digest_id)
            _insert_items(connection, list(kept.values()))
        self._statistics.wrote(len(kept))
        lost = [unit for unit in by_unit if unit not in kept]
        if lost:
            kept.update(self.get_many(lost))
        return kept

    def previous_until(self, subscriber_ids: Iterable[int], *, before: date) -> dict[int, datetime]:
        """Where each subscriber's latest digest before a day stopped looking (its `until`)."""
        ids = sorted(set(subscriber_ids))
        found: dict[int, datetime] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), CHUNK):
                query = (
                    select(_digests.c.subscriber_id, func.max(_digests.c.until))
                    .where(
                        _digests.c.subscriber_id.in_(ids[start : start + CHUNK]),
                        _digests.c.digest_date < before,
                        _still_counts(),
                    )
                    .group_by(_digests.c.subscriber_id)
                )
                for subscriber_id, until in connection.execute(query):
                    if until is not None:
                        found[subscriber_id] = _aware(until)
        return found

    def recommended(self, subscriber_ids: Iterable[int], *, since: datetime) -> dict[int, set[int]]:
        """For each subscriber, the papers (first seen after `since`) any digest recommended."""
        ids = sorted(set(subscriber_ids))
        found: dict[int, set[int]] = defaultdict(set)
        with self.engine.connect() as connection:
            for start in range(0, len(ids), CHUNK):
                query = (
                    select(_digests.c.subscriber_id, _items.c.paper_id)
                    .join(_items, _items.c.digest_id == _digests.c.id)
                    .join(PaperRow, PaperRow.id == _items.c.paper_id)
                    .where(
                        _digests.c.subscriber_id.in_(ids[start : start + CHUNK]),
                        _items.c.section == "match",
                        PaperRow.first_seen_at > since,
                        _still_counts(),
                    )
                )
                for subscriber_id, paper_id in connection.execute(query):
                    found[subscriber_id].add(paper_id)
        return found

    def feed_items(self, subscriber_id: int, *, since: date) -> list[FeedItem]:
        """A reader's recommended papers since a day, newest digest first, once per paper.

        A digest counts once its feed copy is sent (or, for a reader without the feed channel,
        its email copy): the feed shows what the reader was actually given.
        """
        # one row per day, its first sending: PostgreSQL cannot group by the JSON terms below
        delivered = (
            select(
                _deliveries.c.subscriber_id,
                _deliveries.c.digest_date,
                func.min(_deliveries.c.sent_at).label("sent_at"),
            )
            .where(
                _deliveries.c.subscriber_id == subscriber_id,
                _deliveries.c.status == DeliveryStatus.SENT.value,
                _deliveries.c.digest_date >= since,
                _deliveries.c.channel.in_([Channel.FEED.value, Channel.EMAIL.value]),
            )
            .group_by(_deliveries.c.subscriber_id, _deliveries.c.digest_date)
            .subquery()
        )
        query = (
            select(
                _digests.c.digest_date,
                delivered.c.sent_at,
                _items.c.paper_id,
                _items.c.score,
                _items.c.matched,
                _items.c.rank,
                _items.c.partial,
            )
            .join(
                delivered,
                and_(
                    delivered.c.subscriber_id == _digests.c.subscriber_id,
                    delivered.c.digest_date == _digests.c.digest_date,
                ),
            )
            .join(_items, _items.c.digest_id == _digests.c.id)
            .where(_digests.c.subscriber_id == subscriber_id, _items.c.section == "match")
            .order_by(_digests.c.digest_date.desc(), _items.c.rank)
        )
        seen: set[int] = set()
        items: list[FeedItem] = []
        with self.engine.connect() as connection:
            for day, sent_at, paper_id, score, matched, _rank, partial in connection.execute(query):
                if paper_id in seen:
                    continue
                seen.add(paper_id)
                digest_day = _day(day)
                # A row edited by hand may lack sent_at; its digest day is the best date then.
                updated = _aware(sent_at) if sent_at else datetime.combine(digest_day, time(), UTC)
                items.append(
                    FeedItem(
                        digest_day, updated, paper_id, score, tuple(matched or ()), bool(partial)
                    )
                )
        return items


@lru_cache(maxsize=4096)
def _terms_json(matched: tuple[str, ...]) -> str:
    """A paper's matched terms as stored; cached, as readers share a few term sets."""
    return json.dumps(list(matched))


def _insert_items(connection: Connection, compositions: Sequence[Composition]) -> None:
    """Every paper of these compositions, in one driver-level executemany.

    About ten rows per reader: through the ORM's per-row processing this was a fifth of the time
    it takes to prepare a batch; the values here are plain, so they go to the driver as they are.
    """
    rows = [
        (
            c.id,
            i.paper_id,
            i.section,
            i.rank,
            float(i.score),
            _terms_json(i.matched),
            i.partial,
        )
        for c in compositions
        for i in c.items
    ]
    if not rows:
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        "INSERT INTO digest_items (digest_id, paper_id, section, rank, score, matched, partial) "
        f"VALUES ({', '.join([mark] * 7)})",
        rows,
    )


def _still_counts() -> Any:
    """A digest counts for the window chain and the never-twice rule unless every copy failed.

    A digest that never reached the reader (each channel failed for good) gives its papers back
    to the next one; one still queued or retrying keeps them, so they are never sent twice.
    """
    return (
        select(_deliveries.c.id)
        .where(
            _deliveries.c.subscriber_id == _digests.c.subscriber_id,
            _deliveries.c.digest_date == _digests.c.digest_date,
            _deliveries.c.status != DeliveryStatus.FAILED.value,
        )
        .exists()
    )


def _with_id(composition: Composition, digest_id: int) -> Composition:
    return Composition(
        composition.subscriber_id,
        composition.digest_date,
        composition.since,
        composition.until,
        composition.items,
        composition.fallback,
        composition.failed_sources,
        composition.matched_total,
        digest_id,
    )


def _day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _aware(value: object) -> datetime:
    # Aggregates bypass the column type on SQLite, so a value may come back naive or as text.
    result = UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    assert result is not None
    return result
