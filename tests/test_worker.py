"""Sending workers as real processes: killed mid-batch, and three of them sharing PostgreSQL.

The relay is an aiosmtpd server in its own process that writes down every recipient, so what it
received survives the worker's death.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest
from sqlalchemy import insert, select

from digest import pipeline
from digest.config import Settings
from digest.pipeline.recorder import RECORD_AHEAD
from digest.store.schema import SubscriberRow
from tests.smtp_fixtures import SinkProcess

pytest_plugins = ["tests.smtp_fixtures"]

READERS = int(os.environ.get("DIGEST_TEST_READERS", "10000"))

WORKER = r"""
import json, sys
from digest import pipeline, store
from digest.config import parse_settings
from digest.deliver.transport import Envelope
from digest.pipeline.batch import Pending, Prepared

def short_note(ctx, claims, report):
    # Same queue, leases, pool and recorder; a one-line message instead of a ranked digest.
    readers = ctx.store.subscribers.by_ids([c.subscriber_id for c in claims])
    prepared = Prepared()
    for claim in claims:
        to, mid = readers[claim.subscriber_id].email, f"<{claim.id}@digest.test>"
        data = f"To: {to}\r\nMessage-ID: {mid}\r\nSubject: digest\r\n\r\nhi\r\n".encode()
        prepared.envelopes.append(Envelope(claim.id, ctx.sender, to, data, mid))
        prepared.pending[claim.id] = Pending(claim, to, mid)
    return prepared

ctx = pipeline.build_context(parse_settings(json.loads(sys.argv[1])))
prepare = short_note if sys.argv[2] == "short" else None
report = pipeline.send_pending(ctx, prepare=prepare)
print(report.count("sent"), flush=True)
"""


def readers(ctx: pipeline.Context, count: int) -> list[str]:
    """`count` confirmed readers interested in diffusion (bulk insert: a big list, quickly)."""
    now = ctx.now()
    emails = [f"reader{i:05d}@uni.example" for i in range(count)]
    with ctx.engine.begin() as connection:
        connection.execute(
            insert(SubscriberRow),
            [
                {
                    "email": email,
                    "status": "active",
                    "keywords": "diffusion models, video generation",
                    "channels": ["email"],
                    "feed_token": f"feed-{i}",
                    "created_at": now,
                    "confirmed_at": now,
                    "token_version": 0,
                    "bounce_count": 0,
                    "max_papers": 5,
                }
                for i, email in enumerate(emails)
            ],
        )
    return emails


def start_worker(settings: Settings, messages: str = "digest") -> subprocess.Popen[str]:
    """`send_pending` in its own process; "short" messages skip ranking and rendering."""
    config = json.dumps(settings.model_dump(mode="json", by_alias=True, exclude={"path"}))
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, config, messages], stdout=subprocess.PIPE, text=True
    )


def wait_for(condition: Any, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_at_most_the_bound(
    make_settings: Any, sink: SinkProcess
) -> None:
    settings = make_settings(
        smtp={"host": "127.0.0.1", "port": sink.port, "connections": 4},
        delivery={"batch_size": 40, "lease_seconds": 60},
    )
    ctx = pipeline.build_context(settings)
    pipeline.fetch(ctx)
    emails = readers(ctx, 400)
    assert pipeline.plan(ctx) == 400

    worker = start_worker(settings)
    wait_for(lambda: sum(sink.copies().values()) >= 120, "the worker to send 120 digests")
    preparers = psutil.Process(worker.pid).children()
    assert preparers, "a worker with 400 digests due composes them in preparer processes"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    # Its preparer processes die with it: none is left composing for a dead sender.
    wait_for(
        lambda: not any(p.is_running() and p.status() != "zombie" for p in preparers),
        "the killed worker's preparers to exit",
        limit=10,
    )
    received_before_rerun = sum(sink.copies().values())
    assert received_before_rerun < 400, "the worker finished before it could be killed"

    # The rerun, at once: the dead worker's rows are taken over without waiting for the lease.
    report = pipeline.send_pending(pipeline.build_context(settings))

    copies = sink.copies()
    assert set(copies) == set(emails), "every reader got their digest"
    repeated = sum(n - 1 for n in copies.values())
    assert repeated <= settings.smtp.connections + RECORD_AHEAD
    assert max(copies.values()) <= 2
    assert report.released > 0
    assert ctx.store.deliveries.counts() == {"sent": 400}


def test_three_workers_share_postgresql_without_duplicate_or_gap(
    make_settings: Any, postgres_url: str, sink: SinkProcess
) -> None:
    if os.environ.get("CI") and not os.environ.get("DIGEST_TEST_DATABASE", "").startswith(
        "postgres"
    ):
        pytest.skip("CI runs this once, in its PostgreSQL pass (DIGEST_TEST_DATABASE=postgresql)")
    settings = make_settings(
        database={"url": postgres_url},
        smtp={"host": "127.0.0.1", "port": sink.port, "connections": 4},
        delivery={"batch_size": 250},
    )
    ctx = pipeline.build_context(settings)
    emails = readers(ctx, READERS)
    assert pipeline.plan(ctx) == READERS

    # Ranking and rendering 10,000 digests takes minutes on 2 cores and is tested elsewhere;
    # here the workers send short notes through the same claims, leases, pool and recorder.
    workers = [start_worker(settings, "short") for _ in range(3)]
    sent_by = [int(w.communicate(timeout=300)[0].split()[-1]) for w in workers]

    assert all(w.returncode == 0 for w in workers)
    assert sum(sent_by) == READERS
    assert all(n > 0 for n in sent_by), f"every worker took a share: {sent_by}"
    copies = sink.copies()
    assert len(copies) == READERS and set(copies.values()) == {1}
    assert set(copies) == set(emails)
    assert ctx.store.deliveries.counts() == {"sent": READERS}
    with ctx.engine.connect() as connection:
        bounced = connection.scalar(
            select(SubscriberRow.id).where(SubscriberRow.status != "active").limit(1)
        )
    assert bounced is None


def test_planning_a_big_day_on_postgresql_keeps_the_planner_statistics_current(
    make_settings: Any, postgres_url: str
) -> None:
    """A fresh day of 12,000 readers: planning refreshes what PostgreSQL believes `deliveries`
    holds, so its per-batch lookups use the index instead of scanning a table it thinks empty
    (a million readers planned in 92 s instead of 40 on a server without autovacuum)."""
    if os.environ.get("CI") and not os.environ.get("DIGEST_TEST_DATABASE", "").startswith(
        "postgres"
    ):
        pytest.skip("CI runs this once, in its PostgreSQL pass (DIGEST_TEST_DATABASE=postgresql)")
    ctx = pipeline.build_context(make_settings(database={"url": postgres_url}))
    readers(ctx, 12_000)

    assert pipeline.plan(ctx) == 12_000

    with ctx.engine.connect() as connection:
        believed = connection.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
        ).scalar()
    assert believed is not None and believed >= 10_000
