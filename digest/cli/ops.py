"""The operator's view: `digest status` and `digest send-test`."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from digest.cli.base import FORMAT, error, handle_errors, info, plain, print_json, state, stdout

if TYPE_CHECKING:
    from digest import pipeline


@click.command()
@FORMAT
@handle_errors
def status(fmt: str) -> None:
    """The state of the service; exit 1 when something needs the operator (for monitors)."""
    from digest import pipeline

    report = pipeline.status(state().context)
    if fmt == "json":
        print_json(report.as_json())
    else:
        print_status(report)
    for problem in report.problems:
        error(problem)
    if not report.healthy:
        sys.exit(1)


def print_status(report: pipeline.Status) -> None:
    """Sources, deliveries, readers, the schedule and the relay, for people."""
    from rich.table import Table

    from digest.pipeline.health import DELIVERY_STATUSES

    sources = Table(title="Sources", title_justify="left")
    for column in ("Name", "Status", "Failures in a row", "Last success", "Last error"):
        sources.add_column(column, overflow="fold")
    for s in report.sources:
        sources.add_row(
            *plain(
                s.name, s.status, s.consecutive_failures, _when(s.last_ok_at), s.last_error or ""
            )
        )
    stdout.print(sources)
    deliveries = Table(title="Deliveries by digest date", title_justify="left")
    deliveries.add_column("Date")
    for name in DELIVERY_STATUSES:
        deliveries.add_column(name.capitalize(), justify="right")
    for day, counts in report.deliveries.items():
        deliveries.add_row(*plain(day.isoformat(), *(counts.get(n, 0) for n in DELIVERY_STATUSES)))
    stdout.print(deliveries)
    readers = ", ".join(f"{count} {name}" for name, count in report.subscribers.items())
    lines = [
        f"Oldest pending digest: planned {_when(report.oldest_pending_at)}"
        if report.oldest_pending_at
        else "Oldest pending digest: none waiting",
        f"Subscribers: {readers}",
        f"Scheduled passes: last {_when(report.last_run_at)}, next {_when(report.next_run_at)}",
        f"Mail relay: {report.relay_error or 'no error recorded'}",
        "Healthy: yes" if report.healthy else "Healthy: no (see the errors below)",
    ]
    for line in lines:
        stdout.print(line, markup=False)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"


@click.command("send-test")
@click.argument("email")
@handle_errors
def send_test(email: str) -> None:
    """Send a sample digest to EMAIL through the configured relay (check SMTP, DKIM, rendering)."""
    from digest import pipeline, store

    address = store.normalize_email(email)
    pipeline.send_sample(state().context, address)
    info(f"Sent a sample digest to {address}; check it arrived, and its DKIM and layout.")
