"""`digest schedule`: the jobs that fetch and send at each reader's hour."""

from __future__ import annotations

from typing import Any

from freezegun import freeze_time

from digest import pipeline, store
from digest.scheduler import build_scheduler, deliver_job, fetch_job
from digest.store import Preferences


def test_the_scheduler_fetches_and_delivers_on_its_intervals(make_settings: Any) -> None:
    ctx = pipeline.build_context(make_settings(schedule={"fetch_minutes": 30, "run_minutes": 5}))
    scheduler = build_scheduler(ctx)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"fetch", "deliver"}
    assert jobs["fetch"].trigger.interval.total_seconds() == 30 * 60
    assert jobs["deliver"].trigger.interval.total_seconds() == 5 * 60


def test_jobs_send_each_reader_one_digest_once_their_hour_comes(
    make_settings: Any, smtp_server: Any
) -> None:
    with freeze_time("2025-11-27 05:00:00"):
        ctx = pipeline.build_context(make_settings())
        store.add_subscriber(
            ctx.engine,
            "early@lab.example",
            Preferences(keywords='"federated learning"', send_hour=6),
            confirmed=True,
            now=ctx.now(),
        )
        fetch_job(ctx)
        deliver_job(ctx, send=True)
        assert smtp_server.raw == []  # 05:00 UTC: not yet

    for moment in ("2025-11-27 06:00:00", "2025-11-27 06:15:00", "2025-11-27 23:45:00"):
        with freeze_time(moment):
            deliver_job(ctx, send=True)

    assert len(smtp_server.to("early@lab.example")) == 1


def test_weekly_readers_get_one_digest_in_seven_days_and_daily_ones_every_day(
    make_settings: Any, smtp_server: Any
) -> None:
    with freeze_time("2025-11-20 08:00:00"):
        ctx = pipeline.build_context(make_settings())
        for email, frequency in (("weekly@lab.example", "weekly"), ("daily@lab.example", "daily")):
            store.add_subscriber(
                ctx.engine,
                email,
                Preferences(
                    keywords="agents", send_hour=7, frequency=frequency, channels=("email",)
                ),
                confirmed=True,
                now=ctx.now(),
            )
        assert pipeline.plan(ctx, due_only=True) == 2

    planned = {}
    for day in ("2025-11-23", "2025-11-26", "2025-11-27"):
        with freeze_time(f"{day} 08:00:00"):
            planned[day] = pipeline.plan(ctx, due_only=True)

    # 3 and 6 days on: only the daily reader; a week on: both again
    assert planned == {"2025-11-23": 1, "2025-11-26": 1, "2025-11-27": 2}
