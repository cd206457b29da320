"""The delivery queue itself: planned once, claimed within the limit, never by two workers,
and a reader's channels of one day always in one batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from digest import store
from digest.store import Preferences

NOW = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)
DAY = date(2025, 11, 27)


def queue_of(database_url: str, readers: int, channels: Any = lambda i: ("email",)) -> Any:
    engine = store.open_engine(database_url)
    store.migrate(engine)
    planned = []
    for i in range(readers):
        reader, _ = store.Store(engine).subscribers.add(
            f"r{i}@uni.example",
            Preferences(keywords="x", channels=channels(i)),
            confirmed=True,
            now=NOW,
        )
        planned += [store.PlannedDelivery(reader.id, DAY, c) for c in channels(i)]
    queue = store.Store(engine).deliveries
    assert queue.plan(planned, now=NOW) == len(planned)
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


def test_a_readers_email_and_feed_copies_are_claimed_in_one_batch(database_url: str) -> None:
    # Readers 0, 3, 6 and 9 follow by email only, the others by email and feed: row counts per
    # reader differ, so a claim of N rows would cut some reader's two copies apart.
    queue = queue_of(
        database_url, 10, channels=lambda i: ("email",) if i % 3 == 0 else ("email", "feed")
    )

    batches, after = [], 0
    while claimed := queue.claim_batch(
        owner="w", limit=3, now=NOW, lease_seconds=60, after_id=after
    ):
        batches.append(claimed)
        after = claimed[-1].id

    readers_per_batch = [{c.subscriber_id for c in batch} for batch in batches]
    assert [len(readers) for readers in readers_per_batch] == [3, 3, 3, 1]
    every = [sid for readers in readers_per_batch for sid in readers]
    assert len(every) == len(set(every)) == 10  # no reader in two batches
    assert sum(len(batch) for batch in batches) == 16
    assert queue.counts_for(digest_date=DAY) == {"sending": 16}


def test_concurrent_claimers_never_split_a_reader(database_url: str) -> None:
    queue = queue_of(database_url, 60, channels=lambda i: ("email", "feed"))

    def drain(owner: str) -> list[list[Any]]:
        batches = []
        while claimed := queue.claim_batch(owner=owner, limit=1, now=NOW, lease_seconds=60):
            batches.append(claimed)
        return batches

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(drain, ["a", "b", "c", "d"]))

    batches = [batch for result in results for batch in result]
    assert all(len({c.subscriber_id for c in batch}) == 1 for batch in batches)
    assert sorted(len(batch) for batch in batches) == [2] * 60
