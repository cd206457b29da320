"""Readers: `digest subscribe`, `digest unsubscribe` and `digest subscribers ...`."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click
from rich.table import Table

from digest import pipeline, ranking, store
from digest.cli.base import FORMAT, error, handle_errors, info, plain, print_json, state, stdout
from digest.models import Subscriber, SubscriberStatus

CSV_COLUMNS = ("email", "keywords", "timezone", "send_hour", "frequency", "max_papers", "channels")


def _preferences(
    keywords: str,
    timezone: str | None,
    send_hour: int | None,
    frequency: str | None,
    max_papers: int | None,
    channels: str | None = None,
) -> store.Preferences:
    defaults = state().settings.digest
    ranking.validate_profile(keywords)
    return store.Preferences(
        keywords=keywords,
        timezone=timezone or defaults.timezone,
        send_hour=defaults.send_hour if send_hour is None else send_hour,
        frequency=frequency or "daily",
        max_papers=max_papers or defaults.max_papers,
        channels=tuple(c.strip() for c in channels.split(",") if c.strip())
        if channels
        else ("email", "feed"),
    ).checked()


@click.command()
@click.argument("email")
@click.option("--keywords", required=True, help="Profile, e.g. '\"federated learning\", -medical'.")
@click.option("--confirmed", is_flag=True, help="Skip double opt-in (the reader already agreed).")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Paris (default from config).")
@click.option("--send-hour", type=click.IntRange(0, 23), help="Local hour to send the digest.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]))
@click.option("--max-papers", type=click.IntRange(1, 100))
@click.option("--channels", help="email, feed or email,feed (default both).")
@handle_errors
def subscribe(
    email: str,
    keywords: str,
    confirmed: bool,
    timezone: str | None,
    send_hour: int | None,
    frequency: str | None,
    max_papers: int | None,
    channels: str | None,
) -> None:
    """Add a reader; without --confirmed they get a confirmation mail and stay pending."""
    ctx = state().context
    preferences = _preferences(keywords, timezone, send_hour, frequency, max_papers, channels)
    subscriber, changed = store.add_subscriber(
        ctx.engine,
        email,
        preferences,
        confirmed=confirmed,
        now=ctx.now(),
        send_confirmation=not confirmed,
    )
    if subscriber.status == SubscriberStatus.PENDING:
        try:
            pipeline.send_mails_now(ctx)
        except pipeline.MailError as exc:
            raise pipeline.MailError(
                f"{subscriber.email} is pending, and its confirmation mail is queued: {exc}"
            ) from None
        info(f"{subscriber.email} is pending: a confirmation mail was sent.")
    else:
        info(
            f"{subscriber.email} is {subscriber.status}" + ("" if changed else " (unchanged)") + "."
        )


@click.command()
@click.argument("email")
@click.option("--goodbye/--no-goodbye", default=False, help="Also send a goodbye mail.")
@handle_errors
def unsubscribe(email: str, goodbye: bool) -> None:
    """Stop all mail to a reader (pending digests are cancelled)."""
    ctx = state().context
    changed = store.unsubscribe(ctx.engine, email=email, now=ctx.now(), goodbye=goodbye)
    subscriber = store.get_subscriber(ctx.engine, email=email)
    if changed and goodbye:
        pipeline.send_mails_now(ctx)
    info(f"{subscriber.email} is unsubscribed" + ("." if changed else " (already was)."))


@click.group()
def subscribers() -> None:
    """List, import and export readers."""


def _as_row(s: Subscriber) -> dict[str, object]:
    return {
        "email": s.email,
        "status": str(s.status),
        "keywords": s.keywords,
        "timezone": s.timezone,
        "send_hour": s.send_hour,
        "frequency": s.frequency,
        "max_papers": s.max_papers,
        "channels": ",".join(s.channels),
        "created_at": s.created_at.isoformat() if s.created_at else None,
        "confirmed_at": s.confirmed_at.isoformat() if s.confirmed_at else None,
    }


@subscribers.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in SubscriberStatus]),
    help="Only these statuses (repeatable).",
)
@FORMAT
@handle_errors
def subscribers_list(statuses: tuple[str, ...], fmt: str) -> None:
    """Every reader with their status and profile."""
    rows = [_as_row(s) for s in store.list_subscribers(state().context.engine, statuses=statuses)]
    if fmt == "json":
        print_json(rows)
        return
    table = Table(title=f"Subscribers ({len(rows)})", title_justify="left")
    for column in ("Email", "Status", "Keywords", "Frequency", "Hour", "Time zone"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *plain(
                str(row["email"]),
                str(row["status"]),
                str(row["keywords"]),
                str(row["frequency"]),
                str(row["send_hour"]),
                str(row["timezone"]),
            )
        )
    stdout.print(table)


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Readers already agreed: no confirmation mails.")
@handle_errors
def subscribers_import(file: Path, confirmed: bool) -> None:
    """Add readers from a CSV (columns email, keywords; optional timezone, send_hour, ...).

    Bad rows are reported with their line number and skipped; importing twice changes nothing.
    """
    ctx = state().context
    added = updated = unchanged = queued = 0
    problems: list[str] = []
    # decode it whole first: a file in another encoding is refused before any row is imported
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        error(
            f"{file}: line {line} is not UTF-8 text, so nothing was imported. Save it as "
            f"'CSV UTF-8', or convert it: iconv -f cp1252 -t utf-8 {file} > readers.csv"
        )
        raise SystemExit(2) from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"email", "keywords"} - set(reader.fieldnames or ())
        if missing:
            error(
                f"{file}: the header must name the columns email and keywords (missing: {', '.join(sorted(missing))})"
            )
            raise SystemExit(2)
        for row in reader:
            line = reader.line_num
            try:
                preferences = _preferences(
                    (row.get("keywords") or "").strip(),
                    (row.get("timezone") or "").strip() or None,
                    _int_or_none(row.get("send_hour"), "send_hour"),
                    (row.get("frequency") or "").strip() or None,
                    _int_or_none(row.get("max_papers"), "max_papers"),
                    (row.get("channels") or "").strip() or None,
                )
                existed = _exists(ctx.engine, row.get("email") or "")
                subscriber, changed = store.add_subscriber(
                    ctx.engine,
                    row.get("email") or "",
                    preferences,
                    confirmed=confirmed,
                    now=ctx.now(),
                )
            except (ValueError, ranking.ProfileError) as exc:
                problems.append(f"line {line}: {exc}")
                continue
            if not changed:
                unchanged += 1
                continue
            if existed:
                updated += 1
            else:
                added += 1
            if subscriber.status == SubscriberStatus.PENDING:
                assert subscriber.id is not None
                ctx.store.mails.queue(subscriber.id, store.MailKind.CONFIRMATION, now=ctx.now())
                queued += 1
    if queued:
        try:
            pipeline.send_mails_now(ctx)
        except pipeline.MailError as exc:
            problems.append(f"{queued} confirmation mail(s) stay queued for the next run: {exc}")
    for problem in problems:
        error(problem)
    info(
        f"Imported {file}: {added} added, {updated} updated, {unchanged} unchanged, {len(problems)} skipped."
    )
    if problems:
        raise SystemExit(1)


def _exists(engine: object, email: str) -> bool:
    try:
        store.get_subscriber(engine, email=email)  # type: ignore[arg-type]
    except store.UnknownSubscriber:
        return False
    return True


def _int_or_none(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a whole number") from None


@subscribers.command("export")
@handle_errors
def subscribers_export() -> None:
    """Write every reader as CSV to stdout (the import format, plus status)."""
    writer = csv.DictWriter(
        sys.stdout, fieldnames=[*CSV_COLUMNS, "status"], extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for subscriber in store.list_subscribers(state().context.engine):
        writer.writerow(_as_row(subscriber))
