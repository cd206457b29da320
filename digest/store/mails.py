"""Single mails (confirmation, already subscribed, goodbye): a durable queue like the digests'.

A mail is queued in the same transaction as the change that asks for it (a sign-up, an
unsubscribe), so a relay that is down loses nothing: the next run, pass or worker sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Connection, Engine, Table

from digest.models import DeliveryStatus
from digest.store.queue import Queue
from digest.store.schema import MailRow

_table = cast(Table, MailRow.__table__)


class MailKind(StrEnum):
    """What a single mail says."""

    CONFIRMATION = "confirmation"
    ALREADY_SUBSCRIBED = "already_subscribed"
    GOODBYE = "goodbye"


@dataclass(frozen=True, slots=True)
class MailClaim:
    """A queued mail held by one process."""

    id: int
    subscriber_id: int
    kind: MailKind
    created_at: datetime
    attempts: int


def enqueue(connection: Connection, subscriber_id: int, kind: MailKind, *, now: datetime) -> None:
    """Queue a mail inside the caller's transaction (so it exists exactly when the change does)."""
    connection.execute(
        _table.insert().values(
            subscriber_id=subscriber_id,
            kind=kind.value,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            created_at=now,
        )
    )


class Mails(Queue):
    """The queue of single mails."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, _table, columns=("kind", "created_at"))

    def queue(self, subscriber_id: int, kind: MailKind, *, now: datetime) -> None:
        """Queue one mail on its own (when no other change goes with it)."""
        with self.engine.begin() as connection:
            enqueue(connection, subscriber_id, kind, now=now)

    def claim_batch(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: int
    ) -> list[MailClaim]:
        """pending -> sending for up to `limit` due mails (see Queue.claim)."""
        rows = self.claim(owner=owner, limit=limit, now=now, lease_seconds=lease_seconds)
        return [MailClaim(row[0], row[1], MailKind(row[2]), _aware(row[3]), row[4]) for row in rows]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
