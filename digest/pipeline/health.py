"""The operator's view: how each source, the queue, the readers and the relay are doing, and
whether anything needs the operator (`digest status`, exit codes of fetch and run, metrics).

The alert rules live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from digest import metrics, store
from digest.pipeline.context import Context

DELIVERY_STATUSES = ("sent", "pending", "failed", "empty", "bounced")
STUCK_AFTER = timedelta(hours=2)
"""A digest still waiting this long after it was planned means nothing is sending."""
FAILING_SHARE = 0.1
"""More than this share of a day's finished deliveries failing means the relay or the mail is wrong."""

LAST_RUN_KEY = "schedule.last_run_at"
NEXT_RUN_KEY = "schedule.next_run_at"
"""Written by each scheduler pass (the keys `digest schedule` records its runs under)."""
RELAY_ERROR_KEY = "relay.last_error"
"""The relay's last refusal; empty once a pass sent mail again."""


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """One source as `digest status` shows it."""

    name: str
    status: str
    """ok | failing | alert (failing `[fetch] alert_after` times in a row) | never_fetched"""
    consecutive_failures: int
    last_ok_at: datetime | None
    last_error: str | None


@dataclass
class Status:
    """Everything `digest status` reports; `problems` says what needs the operator."""

    sources: list[SourceHealth]
    deliveries: dict[date, dict[str, int]]
    oldest_pending_at: datetime | None
    subscribers: dict[str, int]
    last_run_at: datetime | None
    next_run_at: datetime | None
    relay_error: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing needs the operator."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The `digest status --format json` document (its keys are a contract)."""
        return {
            "sources": [
                {
                    "name": s.name,
                    "status": s.status,
                    "consecutive_failures": s.consecutive_failures,
                    "last_ok_at": _iso(s.last_ok_at),
                    "last_error": s.last_error,
                }
                for s in self.sources
            ],
            "deliveries": {day.isoformat(): counts for day, counts in self.deliveries.items()},
            "subscribers": self.subscribers,
            "schedule": {
                "last_run_at": _iso(self.last_run_at),
                "next_run_at": _iso(self.next_run_at),
            },
            "healthy": self.healthy,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def source_health(ctx: Context, record: store.SourceRecord) -> SourceHealth:
    """A stored source's state in the operator's words."""
    if record.last_status is None:
        status = "never_fetched"
    elif record.last_status != "failed":
        status = "ok"
    elif record.consecutive_failures >= ctx.settings.fetch.alert_after:
        status = "alert"
    else:
        status = "failing"
    return SourceHealth(
        record.name,
        status,
        record.consecutive_failures,
        record.last_ok_at,
        record.last_error,
    )


def source_problems(ctx: Context, records: Sequence[store.SourceRecord]) -> list[str]:
    """What needs the operator among these sources: all failing, or one failing too long."""
    alert_after = ctx.settings.fetch.alert_after
    failed = [r for r in records if r.last_status == "failed"]
    problems = []
    if records and len(failed) == len(records):
        problems.append(
            f"every source failed its last fetch ({len(records)}): check the network, "
            "or each source's last error with `digest sources list`"
        )
    for r in failed:
        if r.consecutive_failures >= alert_after:
            problems.append(
                f"source {r.name} failed {r.consecutive_failures} fetches in a row "
                f"(alert_after is {alert_after}): {r.last_error or 'no reason recorded'}"
            )
    return problems


def fetched_problems(ctx: Context, names: Sequence[str]) -> list[str]:
    """The source problems among the sources just fetched (what `digest fetch` and `run` exit 1 on)."""
    wanted = set(names)
    return source_problems(ctx, [r for r in ctx.store.sources.all() if r.name in wanted])


def status(ctx: Context) -> Status:
    """The state of the service, read from the database."""
    now = ctx.now()
    ctx.store.sources.sync_config([s for s in ctx.settings.sources if s.enabled])
    records = ctx.store.sources.all()
    today = now.date()
    days: dict[date, dict[str, int]] = {
        today - timedelta(days=n): dict.fromkeys(DELIVERY_STATUSES, 0) for n in range(6, -1, -1)
    }
    for day, counts in sorted(
        ctx.store.overview.deliveries_by_day(since=today - timedelta(days=6)).items()
    ):
        days.setdefault(day, dict.fromkeys(DELIVERY_STATUSES, 0)).update(counts)
    last_run = _when(ctx.store.meta.read(LAST_RUN_KEY))
    next_run = _when(ctx.store.meta.read(NEXT_RUN_KEY))
    report = Status(
        sources=[source_health(ctx, r) for r in records],
        deliveries=days,
        oldest_pending_at=ctx.store.overview.oldest_pending(),
        subscribers={
            **dict.fromkeys(("active", "pending", "unsubscribed", "bounced"), 0),
            **ctx.store.subscribers.counts(),
        },
        last_run_at=last_run,
        next_run_at=next_run,
        relay_error=ctx.store.meta.read(RELAY_ERROR_KEY) or None,
    )
    report.problems = source_problems(ctx, records) + _delivery_problems(report, now)
    return report


def _delivery_problems(report: Status, now: datetime) -> list[str]:
    problems = []
    if report.relay_error:
        problems.append(f"the mail relay refused the last sending pass: {report.relay_error}")
    if report.oldest_pending_at and now - report.oldest_pending_at > STUCK_AFTER:
        waited = int((now - report.oldest_pending_at).total_seconds() // 3600)
        problems.append(
            f"a digest has waited {waited} hours to be sent: is `digest schedule` "
            "(or a `digest worker`) running?"
        )
    for day in sorted(report.deliveries)[-2:]:
        counts = report.deliveries[day]
        finished = counts["sent"] + counts["failed"] + counts["bounced"]
        if counts["failed"] and counts["failed"] > FAILING_SHARE * finished:
            problems.append(
                f"{counts['failed']} of {finished} digests for {day.isoformat()} failed: "
                "the log names each relay answer"
            )
    return problems


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def note_pass(ctx: Context) -> None:
    """Remember that a scheduled pass ran now, and when the next one comes (for `digest status`)."""
    now = ctx.now()
    following = now + timedelta(minutes=ctx.settings.schedule.run_minutes)
    ctx.store.meta.write({LAST_RUN_KEY: now.isoformat(), NEXT_RUN_KEY: following.isoformat()})


def note_relay(ctx: Context, error: str | None) -> None:
    """Remember the relay's refusal (None: it accepted mail again)."""
    if error is None and not ctx.store.meta.read(RELAY_ERROR_KEY):
        return  # nothing to clear: no write on every pass
    stamped = f"{error} (at {ctx.now():%Y-%m-%d %H:%M} UTC)" if error else ""
    ctx.store.meta.write({RELAY_ERROR_KEY: stamped})


def observe_sending(ctx: Context, outcomes: Mapping[str, int], seconds: float) -> None:
    """Count a sending pass's deliveries by outcome (metrics); a pass that sent clears a relay alert."""
    finished = sum(outcomes.values())
    for outcome, count in outcomes.items():
        metrics.DELIVERIES.labels(outcome).inc(count)
    if finished:
        metrics.SEND_SECONDS.observe(seconds / finished)
    if outcomes.get("sent"):
        note_relay(ctx, None)


def observe_fetch(name: str, status: str, new: int) -> None:
    """Count one source's fetch (metrics)."""
    if status == "failed":
        metrics.FETCH_FAILURES.labels(name).inc()
    metrics.PAPERS_FETCHED.labels(name).inc(new)


def watch_queue(ctx: Context) -> None:
    """Report this database's queue depth at every metrics scrape."""
    metrics.watch_queue(ctx.store.deliveries.counts)
