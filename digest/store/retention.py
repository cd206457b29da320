"""Retention: finished deliveries, composed digests and single mails that are no use any more."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, and_, delete, exists, func, select

from digest.store.engine import transaction
from digest.store.schema import DeliveryRow, DigestItemRow, DigestRow, MailRow

FINISHED = ("sent", "empty", "failed", "bounced")


class Retention:
    """Deletes what is no use any more: old finished deliveries, digests and single mails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def prune_digests(self, *, before: date) -> tuple[int, int]:
        """Delete finished deliveries and composed digests dated before `before`; returns (deliveries,
        digests) deleted.

        Each reader's newest digest, and newest delivery per channel, stay whatever their age: the
        next digest starts where the newest one stopped (its `until`), and a weekly reader's next
        date counts from it. A digest some channel still has to send stays too.
        """
        newest_delivery = (
            select(func.max(DeliveryRow.id))
            .group_by(DeliveryRow.subscriber_id, DeliveryRow.channel)
            .scalar_subquery()
        )
        newest_digest = (
            select(func.max(DigestRow.id)).group_by(DigestRow.subscriber_id).scalar_subquery()
        )
        unsent = exists().where(
            and_(
                DeliveryRow.subscriber_id == DigestRow.subscriber_id,
                DeliveryRow.digest_date == DigestRow.digest_date,
                DeliveryRow.status.not_in(FINISHED),
            )
        )
        doomed = select(DigestRow.id).where(
            DigestRow.digest_date < before, DigestRow.id.not_in(newest_digest), ~unsent
        )
        with transaction(self.engine) as session:
            deliveries = session.execute(
                delete(DeliveryRow).where(
                    DeliveryRow.digest_date < before,
                    DeliveryRow.status.in_(FINISHED),
                    DeliveryRow.id.not_in(newest_delivery),
                )
            )
            # items first: SQLite cascades only with foreign_keys on; saying it keeps the rule visible
            session.execute(delete(DigestItemRow).where(DigestItemRow.digest_id.in_(doomed)))
            digests = session.execute(delete(DigestRow).where(DigestRow.id.in_(doomed)))
            return _count(deliveries), _count(digests)

    def prune_mails(self, *, before: datetime) -> int:
        """Delete single mails (confirmations, goodbyes) finished before `before`; returns how many."""
        with transaction(self.engine) as session:
            result = session.execute(
                delete(MailRow).where(MailRow.status.in_(FINISHED), MailRow.created_at < before)
            )
            return _count(result)


def _count(result: Any) -> int:
    # A DELETE gives a CursorResult; Session.execute is typed as returning any Result.
    return cast(CursorResult[Any], result).rowcount or 0
