"""`digest schedule`: an APScheduler process that fetches and sends at the configured times.

Two jobs: fetch every `[schedule] fetch_minutes`, and every `run_minutes` plan the digests whose
send hour has come (in each reader's time zone) and, unless workers do it, send them. Each job runs
alone (no overlap) and a missed run is done once, not many times.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digest import pipeline
from digest.deliver.transport import RelayError

log = logging.getLogger("digest.scheduler")


def fetch_job(ctx: pipeline.Context) -> None:
    """Fetch every source; failures are logged per source and the job goes on."""
    pipeline.housekeeping(ctx)
    for report in pipeline.fetch(ctx):
        if report.status == "failed":
            log.warning("source %s failed: %s", report.name, report.error)
        else:
            log.info("source %s: %s, %d new", report.name, report.status, report.new)


def deliver_job(ctx: pipeline.Context, *, send: bool) -> None:
    """Plan the digests that are due and, when this process sends, send them."""
    pipeline.note_pass(ctx)  # for `digest status`: the last scheduled pass
    planned = pipeline.plan(ctx, due_only=True)
    if planned:
        log.info("planned %d deliveries", planned)
    if send:
        try:
            pipeline.send_queued_mails(ctx)
        except RelayError as exc:
            log.warning("queued mails stay queued: %s", exc)
        report = pipeline.send_pending(ctx)
        if report.total:
            log.info(
                "sent %d, empty %d, failed %d, to retry %d",
                report.count("sent"),
                report.count("empty"),
                report.count("failed"),
                report.count("pending"),
            )


def build_scheduler(ctx: pipeline.Context, *, send: bool = True) -> BlockingScheduler:
    """The scheduler with its two jobs; both start right away, then repeat."""
    settings = ctx.settings.schedule
    scheduler = BlockingScheduler(timezone=UTC)
    now = datetime.now(UTC)
    scheduler.add_job(
        fetch_job,
        IntervalTrigger(minutes=settings.fetch_minutes),
        args=[ctx],
        id="fetch",
        next_run_time=now,
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        deliver_job,
        IntervalTrigger(minutes=settings.run_minutes),
        args=[ctx],
        kwargs={"send": send},
        id="deliver",
        next_run_time=now,
        max_instances=1,
        coalesce=True,
    )
    return scheduler


def run_scheduler(ctx: pipeline.Context, *, send: bool = True) -> None:
    """Run the jobs until interrupted."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if send and ctx.engine.dialect.name != "sqlite":
        log.info("sending here too; with PostgreSQL you can also run `digest worker` processes")
    scheduler = build_scheduler(ctx, send=send)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)
