"""The daily work: `digest run`, `digest schedule` and `digest worker`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli.base import (
    FORMAT,
    handle_errors,
    info,
    plain,
    progress_bar,
    state,
    stdout,
    user_errors,
)
from digest.cli.content import exit_on_source_problems, print_fetch_table

if TYPE_CHECKING:
    from digest import pipeline

log = logging.getLogger("digest.worker")


@click.command()
@click.option(
    "--dry-run", is_flag=True, help="Show what would be sent; send nothing, mark nothing."
)
@click.option(
    "--date",
    "digest_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The digest date (default: today, UTC).",
)
@click.option("--no-fetch", is_flag=True, help="Use the papers already stored; fetch nothing.")
@FORMAT
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each digest as .html, .txt and .eml files into this folder.",
)
@handle_errors
def run(dry_run: bool, digest_date: object, no_fetch: bool, fmt: str, out: Path | None) -> None:
    """Fetch, rank, render and send today's digests (or preview them with --dry-run)."""
    from digest import pipeline

    ctx = state().context
    day: date | None = digest_date.date() if digest_date is not None else None  # type: ignore[attr-defined]
    stream = JsonStream() if fmt == "json" else None
    with progress_bar(fmt == "table") as progress:
        report = pipeline.run(
            ctx,
            digest_date=day,
            fetch_first=not no_fetch,
            dry_run=dry_run,
            out=out,
            progress=progress,
            listener=stream.item if stream else None,
            on_start=stream.start if stream else None,
        )
    if stream is not None:
        stream.end()
        exit_on_source_problems(ctx, report.fetched)
        return
    if report.fetched:
        print_fetch_table(report.fetched)
    if report.examples:
        info(
            "No subscribers yet: previewing the example profiles from the config "
            "(add readers with `digest subscribe EMAIL --keywords ...`)."
        )
    print_run_table(report)
    if out is not None:
        info(f"Wrote the rendered digests to {out}/ (.html, .txt and .eml for each).")
    exit_on_source_problems(ctx, report.fetched)


class JsonStream:
    """Prints the run's JSON object as it goes: the header, then each reader as it finishes."""

    def __init__(self) -> None:
        self.first = True

    def start(self, report: pipeline.RunReport) -> None:
        """Open the object and its digests list."""
        header = json.dumps(report.header_json(), ensure_ascii=False)
        sys.stdout.write(header[:-1] + ', "digests": [')
        sys.stdout.flush()

    def item(self, outcome: pipeline.ReaderOutcome) -> None:
        """One reader's digest, as soon as every channel of it has an outcome."""
        from digest import pipeline

        sys.stdout.write(
            ("\n  " if self.first else ",\n  ")
            + json.dumps(pipeline.outcome_json(outcome), ensure_ascii=False)
        )
        self.first = False

    def end(self) -> None:
        """Close the list and the object."""
        sys.stdout.write("\n]}\n")
        sys.stdout.flush()


def print_run_table(report: pipeline.RunReport) -> None:
    """The summary of a run: one row per reader (each channel's outcome), first rows only."""
    from rich.table import Table

    from digest import pipeline

    verb = "Would send" if report.dry_run else "Sent"
    title = f"Digests for {report.digest_date.isoformat()}" + (
        " (dry run)" if report.dry_run else ""
    )
    sent = report.sent
    table = Table(title=title, title_justify="left")
    table.add_column("Reader")
    table.add_column("Status")
    table.add_column("Papers", justify="right")
    table.add_column("Top paper (matched terms)", overflow="fold")
    for outcome in report.rows:
        matches = outcome.papers
        top = ""
        if matches:
            best = matches[0]
            top = best.title[:90]
            if best.matched:
                top += f"  [{', '.join(best.matched)}]"
        elif outcome.error:
            top = outcome.error
        channels = ", ".join(f"{c}: {s}" for c, s in sorted(outcome.channels.items()))
        table.add_row(*plain(outcome.email, channels, str(len(matches)), top))
    if report.rows:
        stdout.print(table)
    if sent.total > len(report.rows):
        stdout.print(
            f"... and {sent.total - len(report.rows)} more reader(s) "
            "(all of them with --format json)",
            markup=False,
        )
    done = sent.count(pipeline.Outcome.WOULD_SEND if report.dry_run else pipeline.Outcome.SENT)
    empty = sent.count(pipeline.Outcome.EMPTY)
    retry = sent.count(pipeline.Outcome.RETRY)
    failed = sent.count(pipeline.Outcome.FAILED)
    summary = (
        f"{verb}: {done} reader(s); empty: {empty}; {report.papers} new paper(s) in the window"
    )
    if retry:
        summary += f"; to retry in a later run: {retry}"
    if failed:
        summary += f"; failed: {failed} (see `digest subscribers list` and the log above)"
    stdout.print(summary, markup=False)
    mails_sent, mails_left = report.mails
    if mails_sent or mails_left:
        stdout.print(
            f"Single mails (confirmations, goodbyes): {mails_sent} sent"
            + (f", {mails_left} still queued" if mails_left else ""),
            markup=False,
        )


def metrics_options(func: Any) -> Any:
    """--metrics-port and --metrics-host, for the long-running commands."""
    func = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="Address the metrics endpoint listens on (0.0.0.0: every interface).",
    )(func)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve Prometheus metrics on this port (http://HOST:PORT/metrics).",
    )(func)


def serve_metrics(ctx: pipeline.Context, port: int | None, host: str) -> None:
    """Start the metrics endpoint in a background thread, when a port was given."""
    from digest import metrics, pipeline

    if port is None:
        return
    pipeline.watch_queue(ctx)
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve metrics on {host}:{port}: {exc.strerror}"
        ) from None
    info(f"metrics on http://{host}:{port}/metrics")


@click.command()
@click.option("--once", is_flag=True, help="Send what is pending now, then exit.")
@click.option("--poll", default=10.0, show_default=True, help="Seconds to wait when idle.")
@metrics_options
@handle_errors
def worker(once: bool, poll: float, metrics_port: int | None, metrics_host: str) -> None:
    """Send pending digests; run as many workers as you like against one PostgreSQL database
    (one per core on each machine).

    SIGTERM or SIGINT lets the messages in flight finish, gives the other claims back and exits 0.
    """
    from digest import pipeline
    from digest.scheduler import stop_on_signals

    ctx = state().context
    serve_metrics(ctx, metrics_port, metrics_host)
    owner = pipeline.worker_id()
    log.info("worker %s started", owner)
    with stop_on_signals() as stop:
        while not stop.is_set():
            pipeline.send_queued_mails(ctx)
            # One worker is one process: run one per core (prepare_process = "always" fans out).
            report = pipeline.send_pending(ctx, owner=owner, stop=stop, fan_out=False)
            if report.total:
                log.info(
                    "readers: sent %d, empty %d, failed %d, to retry %d",
                    report.count("sent"),
                    report.count("empty"),
                    report.count("failed"),
                    report.count("pending"),
                )
            if once:
                return
            if not report.total:
                stop.wait(poll)
    log.info("worker %s stopped", owner)


@click.command()
@click.option(
    "--no-send",
    is_flag=True,
    help="Only fetch and plan; leave sending to `digest worker` processes.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Run one pass (fetch if due, plan, send) and exit: for cron or a systemd timer.",
)
@click.option(
    "--reset-clock",
    is_flag=True,
    help="Believe the system clock as it is now, after it was set forward on purpose.",
)
@metrics_options
@handle_errors
def schedule(
    no_send: bool, once: bool, reset_clock: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """Fetch on schedule and send each reader's digest at their hour; until stopped, or --once."""
    from digest.scheduler import run_scheduler

    ctx = state().context
    if not once:
        serve_metrics(ctx, metrics_port, metrics_host)
    run_scheduler(
        ctx,
        send=not no_send,
        once=once,
        reset_clock=reset_clock,
        expected=tuple(kind for kind, _ in user_errors() if issubclass(kind, Exception)),
    )
