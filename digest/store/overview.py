"""What an operator asks of the database at a glance: deliveries per day and status, and the
oldest one still waiting."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from digest.store.schema import DeliveryRow, UTCDateTime


class Overview:
    """What an operator asks of the deliveries at a glance."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def deliveries_by_day(self, *, since: date) -> dict[date, dict[str, int]]:
        """Deliveries per digest date (from `since` on) and status."""
        query = (
            select(DeliveryRow.digest_date, DeliveryRow.status, func.count())
            .where(DeliveryRow.digest_date >= since)
            .group_by(DeliveryRow.digest_date, DeliveryRow.status)
        )
        days: dict[date, dict[str, int]] = defaultdict(dict)
        with Session(self.engine) as session:
            for day, status, count in session.execute(query):
                days[day][status] = count
        return dict(days)

    def oldest_pending(self) -> datetime | None:
        """When the oldest delivery still waiting to go out was planned (None when none waits)."""
        query = select(func.min(DeliveryRow.created_at)).where(
            DeliveryRow.status.in_(("pending", "sending"))
        )
        with Session(self.engine) as session:
            value = session.scalar(query)
        return UTCDateTime().process_result_value(value, self.engine.dialect) if value else None
