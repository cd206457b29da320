"""Papers: merge what the feeds bring into one row per paper, and read them back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from digest.models import Paper, merge_papers
from digest.store.engine import StoreError, transaction
from digest.store.schema import AcronymRow, PaperRow, PaperSourceRow, UTCDateTime

CHUNK = 500


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """How many papers a fetch added, changed, or saw again unchanged."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0


class Papers:
    """The stored papers (merged across sources) and the acronyms learned from them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upsert(self, papers: Sequence[Paper], *, now: datetime) -> UpsertCounts:
        """Insert new papers and merge known ones: union of categories and sources, best of each field."""
        merged = _dedupe(papers)
        try:
            return self._upsert(merged, now)
        except DataError as exc:
            # a value this database cannot hold (the sources clean the known ones): nothing of the
            # batch is stored, and the caller fails that one source rather than the whole run
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise StoreError(f"the database refused a paper of this feed ({reason})") from exc

    def _upsert(self, merged: Sequence[Paper], now: datetime) -> UpsertCounts:
        new = updated = unchanged = 0
        with transaction(self.engine) as session:
            for start in range(0, len(merged), CHUNK):
                chunk = merged[start : start + CHUNK]
                existing = _rows_by_key(session, [p.key for p in chunk])
                known_sources = _sources_of(session, [row.id for row in existing.values()])
                fresh = [
                    (_new_row(paper, now), paper) for paper in chunk if paper.key not in existing
                ]
                session.add_all(row for row, _ in fresh)
                session.flush()
                new += len(fresh)
                links = [(row, paper, set[str]()) for row, paper in fresh]
                for paper in chunk:
                    row = existing.get(paper.key)
                    if row is None:
                        continue
                    if _merge_into(row, paper, now):
                        updated += 1
                    else:
                        unchanged += 1
                    links.append((row, paper, known_sources.get(row.id, set())))
                session.add_all(
                    PaperSourceRow(paper_id=row.id, source=source)
                    for row, paper, have in links
                    for source in paper.sources
                    if source not in have
                )
        return UpsertCounts(new=new, updated=updated, unchanged=unchanged)

    def seen_between(self, start: datetime, end: datetime) -> list[Paper]:
        """Papers first seen after `start` and up to `end`, oldest first."""
        query = (
            select(PaperRow)
            .where(PaperRow.first_seen_at > start, PaperRow.first_seen_at <= end)
            .order_by(PaperRow.first_seen_at, PaperRow.id)
        )
        with Session(self.engine) as session:
            return _with_sources(session, list(session.scalars(query)))

    def newest_seen_at(self, *, until: datetime) -> datetime | None:
        """When the newest paper stored up to `until` was first seen (None: no paper yet)."""
        query = select(func.max(PaperRow.first_seen_at)).where(PaperRow.first_seen_at <= until)
        with Session(self.engine) as session:
            value = session.scalar(query)
        return UTCDateTime().process_result_value(value, None) if value is not None else None  # type: ignore[arg-type]

    def count_seen_between(self, start: datetime, end: datetime) -> int:
        """How many papers were first seen after `start` and up to `end`."""
        query = select(func.count()).where(
            PaperRow.first_seen_at > start, PaperRow.first_seen_at <= end
        )
        with Session(self.engine) as session:
            return session.scalar(query) or 0

    def newest(
        self,
        *,
        since: datetime | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> list[Paper]:
        """Stored papers, newest first seen first, optionally since a time and from one source."""
        query = select(PaperRow).order_by(PaperRow.first_seen_at.desc(), PaperRow.id.desc())
        if since is not None:
            query = query.where(PaperRow.first_seen_at >= since)
        if source is not None:
            query = query.join(PaperSourceRow, PaperSourceRow.paper_id == PaperRow.id).where(
                PaperSourceRow.source == source
            )
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            return _with_sources(session, list(session.scalars(query)))

    def by_ids(self, ids: Iterable[int]) -> dict[int, Paper]:
        """Stored papers by database id."""
        wanted = list(set(ids))
        found: list[PaperRow] = []
        with Session(self.engine) as session:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                found.extend(session.scalars(select(PaperRow).where(PaperRow.id.in_(chunk))))
            return {
                paper.id: paper for paper in _with_sources(session, found) if paper.id is not None
            }

    def count(self, *, source: str | None = None) -> int:
        """How many papers are stored (from one source, when named)."""
        with Session(self.engine) as session:
            if source is None:
                return session.scalar(select(func.count()).select_from(PaperRow)) or 0
            query = select(func.count()).where(PaperSourceRow.source == source)
            return session.scalar(query) or 0

    def counts_by_source(self) -> dict[str, int]:
        """Papers per source name."""
        query = select(PaperSourceRow.source, func.count()).group_by(PaperSourceRow.source)
        with Session(self.engine) as session:
            return {source: count for source, count in session.execute(query)}

    def save_acronyms(self, pairs: Mapping[str, str]) -> None:
        """Remember acronym definitions learned from papers, counting how often each was seen."""
        # the columns' widths; a longer "definition" is a misread sentence, not an acronym
        values = [
            {"acronym": a, "expansion": e, "count": 1}
            for a, e in pairs.items()
            if len(a) <= 40 and len(e) <= 300
        ]
        if not values:
            return
        with transaction(self.engine) as session:
            insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
            statement = insert(AcronymRow).values(values)
            statement = statement.on_conflict_do_update(
                index_elements=["acronym", "expansion"],
                set_={"count": AcronymRow.count + 1},
            )
            session.execute(statement)

    def load_acronyms(self, *, min_count: int = 1) -> dict[str, str]:
        """The learned acronyms, each with its most often seen expansion."""
        query = select(AcronymRow).where(AcronymRow.count >= min_count).order_by(AcronymRow.count)
        with Session(self.engine) as session:
            return {row.acronym: row.expansion for row in session.scalars(query)}


def _dedupe(papers: Sequence[Paper]) -> list[Paper]:
    """One paper per key within a batch (a feed may list the same paper twice)."""
    by_key: dict[str, Paper] = {}
    for paper in papers:
        if paper.key in by_key:
            by_key[paper.key] = merge_papers(by_key[paper.key], paper)
        else:
            by_key[paper.key] = paper
    return list(by_key.values())


def _rows_by_key(session: Session, keys: list[str]) -> dict[str, PaperRow]:
    rows = session.scalars(select(PaperRow).where(PaperRow.key.in_(keys)))
    return {row.key: row for row in rows}


def _sources_of(session: Session, ids: list[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    if ids:
        query = select(PaperSourceRow.paper_id, PaperSourceRow.source).where(
            PaperSourceRow.paper_id.in_(ids)
        )
        for paper_id, source in session.execute(query):
            found[paper_id].add(source)
    return found


def _new_row(paper: Paper, now: datetime) -> PaperRow:
    return PaperRow(
        key=paper.key,
        title=paper.title,
        abstract=paper.abstract,
        authors=list(paper.authors),
        affiliations=list(paper.affiliations),
        url=paper.url,
        pdf_url=paper.pdf_url,
        categories=list(paper.categories),
        published_at=paper.published_at,
        first_seen_at=paper.first_seen_at or now,
        updated_at=now,
        upvotes=paper.upvotes,
    )


def _merge_into(row: PaperRow, paper: Paper, now: datetime) -> bool:
    """Apply the merge rules to a stored row; True when anything changed."""
    stored = row_to_paper(row, ())
    merged = merge_papers(stored, paper)
    changes = {
        "title": merged.title,
        "abstract": merged.abstract,
        "authors": list(merged.authors),
        "affiliations": list(merged.affiliations),
        "url": merged.url,
        "pdf_url": merged.pdf_url,
        "categories": list(merged.categories),
        "published_at": merged.published_at,
        "upvotes": merged.upvotes,
    }
    changed = False
    for name, value in changes.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        row.updated_at = now
    return changed


def row_to_paper(row: PaperRow, sources: Iterable[str]) -> Paper:
    """The record for a stored row."""
    return Paper(
        key=row.key,
        title=row.title,
        abstract=row.abstract,
        authors=tuple(row.authors or ()),
        affiliations=tuple(row.affiliations or ()),
        url=row.url,
        pdf_url=row.pdf_url,
        categories=tuple(row.categories or ()),
        published_at=row.published_at,
        first_seen_at=row.first_seen_at,
        upvotes=row.upvotes,
        sources=tuple(sorted(sources)),
        id=row.id,
    )


def _with_sources(session: Session, rows: Sequence[PaperRow]) -> list[Paper]:
    sources: dict[int, set[str]] = defaultdict(set)
    ids = [row.id for row in rows]
    for start in range(0, len(ids), CHUNK):
        sources.update(_sources_of(session, ids[start : start + CHUNK]))
    return [row_to_paper(row, sources.get(row.id, ())) for row in rows]
