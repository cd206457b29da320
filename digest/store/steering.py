"""Profile changes made from a digest ("more / fewer like this"): applied with the new keywords in
one transaction, listed on the preferences page, undone one by one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from digest.store.engine import transaction
from digest.store.schema import PaperRow, ProfileChangeRow, SubscriberRow

Edit = tuple[str, float | None, float | None]
"""(term, weight before or None, weight after or None)."""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """One recorded change of a reader's profile."""

    id: int
    direction: str
    edits: tuple[Edit, ...]
    paper_title: str
    created_at: datetime
    undone_at: datetime | None


class ProfileMoved(Exception):
    """The profile changed between reading it and saving the change; read it again and retry."""


class ProfileChanges:
    """The steering history: each change a reader made to their profile, undoable."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        subscriber_id: int,
        *,
        before: str,
        after: str,
        paper_id: int | None,
        direction: str,
        edits: Sequence[Edit],
        now: datetime,
    ) -> int:
        """Save the new keywords and the change that made them; ProfileMoved if they moved meanwhile."""
        with transaction(self.engine) as session:
            row = session.get(SubscriberRow, subscriber_id, with_for_update=True)
            if row is None or row.keywords != before:
                raise ProfileMoved("the profile changed meanwhile")
            row.keywords = after
            change = ProfileChangeRow(
                subscriber_id=subscriber_id,
                paper_id=paper_id,
                direction=direction,
                edits=[list(edit) for edit in edits],
                created_at=now,
            )
            session.add(change)
            session.flush()
            return change.id

    def undo(
        self, subscriber_id: int, change_id: int, *, before: str, after: str, now: datetime
    ) -> bool:
        """Mark a change undone and save the keywords without it; False if it is not this reader's
        or already undone. ProfileMoved if the keywords moved meanwhile."""
        with transaction(self.engine) as session:
            change = session.get(ProfileChangeRow, change_id, with_for_update=True)
            if change is None or change.subscriber_id != subscriber_id or change.undone_at:
                return False
            row = session.get(SubscriberRow, subscriber_id, with_for_update=True)
            if row is None or row.keywords != before:
                raise ProfileMoved("the profile changed meanwhile")
            row.keywords = after
            change.undone_at = now
            return True

    def get(self, subscriber_id: int, change_id: int) -> ProfileChange | None:
        """One of the reader's changes, or None."""
        found = self._changes(subscriber_id, change_id=change_id, limit=1)
        return found[0] if found else None

    def recent(self, subscriber_id: int, *, limit: int = 20) -> list[ProfileChange]:
        """The reader's latest changes made from digests, newest first."""
        return self._changes(subscriber_id, limit=limit)

    def _changes(
        self, subscriber_id: int, *, change_id: int | None = None, limit: int
    ) -> list[ProfileChange]:
        query: Any = (
            select(ProfileChangeRow, PaperRow.title)
            .outerjoin(PaperRow, PaperRow.id == ProfileChangeRow.paper_id)
            .where(ProfileChangeRow.subscriber_id == subscriber_id)
            .order_by(ProfileChangeRow.id.desc())
            .limit(limit)
        )
        if change_id is not None:
            query = query.where(ProfileChangeRow.id == change_id)
        with transaction(self.engine) as session:
            return [
                ProfileChange(
                    id=row.id,
                    direction=row.direction,
                    edits=tuple((str(t), _num(b), _num(a)) for t, b, a in row.edits),
                    paper_title=title or "",
                    created_at=row.created_at,
                    undone_at=row.undone_at,
                )
                for row, title in session.execute(query)
            ]


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
