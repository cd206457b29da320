"""The delivery queue itself: planned once, claimed within the limit, never by two workers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from digest import store
from digest.store import Preferences

NOW = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)
DAY = date(2025, 11, 27)


def queue_of(database_url: str, readers: int) -> Any:
    engine = store.open_engine(database_url)
    store.migrate(engine)
    planned = []
    for i in range(readers):
        reader, _ = store.Store(engine).subscribers.add(
            f"r{i}@uni.example",
            Preferences(keywords="x", channels=("email",)),
            confirmed=True,
            now=NOW,
        )
        planned.append(store.PlannedDelivery(reader.id, DAY, "email"))
    queue = store.Store(engine).deliveries
    assert queue.plan(planned, now=NOW) == readers
    assert queue.plan(planned, now=NOW) == 0  # planning twice adds nothing
    return queue


def test_a_claim_takes_at_most_its_limit_in_id_order(database_url: str) -> None:
    queue = queue_of(database_url, 5)

    first = queue.claim_batch(owner="a", limit=2, now=NOW, lease_seconds=60)
    second = queue.claim_batch(owner="b", limit=2, now=NOW, lease_seconds=60, after_id=first[-1].id)
    rest = queue.claim_batch(owner="c", limit=10, now=NOW, lease_seconds=60)

    assert [c.id for c in first] == [1, 2]
    assert [c.id for c in second] == [3, 4]
    assert [c.id for c in rest] == [5]
    assert queue.claim_batch(owner="d", limit=10, now=NOW, lease_seconds=60) == []


def test_a_dead_workers_lease_runs_out_and_a_sent_row_stays_sent(database_url: str) -> None:
    queue = queue_of(database_url, 2)
    one, two = queue.claim_batch(owner="dead", limit=2, now=NOW, lease_seconds=60)
    queue.record(
        [store.Outcome(one.id, one.subscriber_id, message_id="<1@x>")],
        owner="dead",
        now=NOW,
        max_attempts=5,
        bounce_after=3,
    )

    assert queue.release(now=NOW + timedelta(seconds=30)) == 0
    assert queue.release(now=NOW + timedelta(seconds=61)) == 1
    again = queue.claim_batch(
        owner="alive", limit=10, now=NOW + timedelta(seconds=61), lease_seconds=60
    )

    assert [c.id for c in again] == [two.id]
    assert again[0].attempts == 2
    assert queue.counts_for(digest_date=DAY) == {"sent": 1, "sending": 1}
