"""Rate limits that hold across processes and machines: timestamped events per bucket in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select

from digest.store.engine import transaction
from digest.store.schema import RateRow


class RateLimits:
    """Rate-limit buckets shared by every process: one timestamped row per attempt."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        """Count one attempt in a bucket; True while the bucket holds at most `limit` attempts in `window`.

        The attempt is recorded before counting, so two processes racing at the edge both refuse
        rather than both allow; refused attempts count too, which keeps a flood blocked.
        """
        start = now - window
        with transaction(self.engine) as session:
            # Old events of this bucket are no use to anyone; dropping them here keeps the table small.
            session.execute(delete(RateRow).where(RateRow.bucket == bucket, RateRow.at < start))
            session.add(RateRow(bucket=bucket, at=now))
            session.flush()
            count = session.scalar(
                select(func.count()).where(RateRow.bucket == bucket, RateRow.at >= start)
            )
        return (count or 0) <= limit

    def prune(self, *, before: datetime) -> int:
        """Delete every rate-limit event older than `before` (all buckets); returns how many."""
        with transaction(self.engine) as session:
            result = session.execute(delete(RateRow).where(RateRow.at < before))
            # A DELETE gives a CursorResult; Session.execute is typed as returning any Result.
            return cast(CursorResult[Any], result).rowcount or 0
