"""Sources: the feeds to fetch (from config, or added with `digest sources add`) and their fetch state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from digest.config import SourceSettings
from digest.store.engine import transaction
from digest.store.schema import SourceRow


class UnknownSource(LookupError):
    """No source by that name."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A source as stored: where it is and how its last fetch went."""

    name: str
    url: str
    kind: str
    origin: str
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    last_fetched_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_new: int = 0
    last_updated: int = 0
    last_warnings: tuple[str, ...] = ()
    consecutive_failures: int = 0


def _record(row: SourceRow) -> SourceRecord:
    return SourceRecord(
        name=row.name,
        url=row.url,
        kind=row.kind,
        origin=row.origin,
        etag=row.etag,
        last_modified=row.last_modified,
        content_hash=row.content_hash,
        last_fetched_at=row.last_fetched_at,
        last_ok_at=row.last_ok_at,
        last_status=row.last_status,
        last_error=row.last_error,
        last_new=row.last_new,
        last_updated=row.last_updated,
        last_warnings=tuple(row.last_warnings or ()),
        consecutive_failures=row.consecutive_failures or 0,
    )


class Sources:
    """The feeds and APIs papers come from, with how each fetch went."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sync_config(self, configured: Sequence[SourceSettings]) -> None:
        """Make the stored list match the config: config entries win over CLI-added ones of the same name.

        A source that was in the config and no longer is disappears; sources added with
        `digest sources add` stay.
        """
        wanted = {source.name: source for source in configured}
        with transaction(self.engine) as session:
            rows = {row.name: row for row in session.scalars(select(SourceRow))}
            for name, source in wanted.items():
                row = rows.get(name)
                if row is None:
                    session.add(
                        SourceRow(
                            name=name,
                            url=source.url,
                            kind=source.kind,
                            origin="config",
                            last_new=0,
                            last_updated=0,
                            last_warnings=[],
                            consecutive_failures=0,
                        )
                    )
                    continue
                if (row.url, row.kind, row.origin) != (source.url, source.kind, "config"):
                    if row.url != source.url:
                        # a new address starts a new record: the old one's failures say nothing of it
                        row.etag = row.last_modified = row.content_hash = None
                        row.consecutive_failures = 0
                    row.url, row.kind, row.origin = source.url, source.kind, "config"
            for name, row in rows.items():
                if row.origin == "config" and name not in wanted:
                    session.delete(row)

    def add(self, name: str, url: str, *, kind: str = "auto") -> SourceRecord:
        """Add a source outside the config (`digest sources add`)."""
        if len(name) > 200:
            raise ValueError(f"a source name has at most 200 characters (this one has {len(name)})")
        with transaction(self.engine) as session:
            if session.scalar(select(SourceRow).where(SourceRow.name == name)) is not None:
                raise ValueError(f"a source named {name!r} already exists")
            row = SourceRow(
                name=name,
                url=url,
                kind=kind,
                origin="cli",
                last_new=0,
                last_updated=0,
                last_warnings=[],
                consecutive_failures=0,
            )
            session.add(row)
            session.flush()
            return _record(row)

    def remove(self, name: str) -> SourceRecord:
        """Remove a source (its papers stay)."""
        with transaction(self.engine) as session:
            row = session.scalar(select(SourceRow).where(SourceRow.name == name))
            if row is None:
                raise UnknownSource(f"no source named {name!r}")
            record = _record(row)
            session.execute(delete(SourceRow).where(SourceRow.id == row.id))
            return record

    def all(self) -> list[SourceRecord]:
        """Every stored source, config ones first, then by name."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(SourceRow).order_by(SourceRow.origin.desc(), SourceRow.name)
            )
            return [_record(row) for row in rows]

    def record_fetch(
        self,
        name: str,
        *,
        now: datetime,
        status: str,
        error: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        content_hash: str | None = None,
        new: int = 0,
        updated: int = 0,
        warnings: Sequence[str] = (),
    ) -> None:
        """Remember how a fetch went; validators are kept only from successful fetches."""
        with transaction(self.engine) as session:
            row = session.scalar(select(SourceRow).where(SourceRow.name == name))
            if row is None:
                return
            row.last_fetched_at, row.last_status = now, status
            row.last_error = error
            row.last_warnings = list(warnings)[:20]
            if status in ("ok", "not_modified"):
                row.consecutive_failures = 0
                row.last_ok_at = now
                row.last_new, row.last_updated = new, updated
                # an HTTP date is 29 characters; anything past the column is not one worth sending back
                row.etag = etag
                row.last_modified = (
                    last_modified if last_modified and len(last_modified) <= 100 else None
                )
                row.content_hash = content_hash or row.content_hash
            else:
                row.consecutive_failures = (row.consecutive_failures or 0) + 1
                row.last_new = row.last_updated = 0
