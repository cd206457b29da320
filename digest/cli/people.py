"""Readers: `digest subscribe`, `digest unsubscribe` and `digest subscribers ...`."""

from __future__ import annotations

import codecs
import csv
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.base import FORMAT, error, handle_errors, info, plain, print_json, state, stdout
from digest.models import WEEKDAYS, Subscriber, SubscriberStatus, parse_weekday

if TYPE_CHECKING:
    from digest import pipeline, store

CSV_COLUMNS = (
    "email",
    "keywords",
    "timezone",
    "send_hour",
    "frequency",
    "send_weekday",
    "max_papers",
    "channels",
)


def _preferences(
    keywords: str,
    timezone: str | None,
    send_hour: int | None,
    frequency: str | None,
    max_papers: int | None,
    channels: str | None = None,
    send_weekday: str | None = None,
) -> store.Preferences:
    from digest import ranking, store

    defaults = state().settings.digest
    ranking.validate_profile(keywords)
    return store.Preferences(
        keywords=keywords,
        timezone=timezone or defaults.timezone,
        send_hour=defaults.send_hour if send_hour is None else send_hour,
        frequency=frequency or "daily",
        send_weekday=_weekday(send_weekday),
        max_papers=max_papers or defaults.max_papers,
        channels=tuple(c.strip() for c in channels.split(",") if c.strip())
        if channels
        else ("email", "feed"),
    ).checked()


def _weekday(value: str | None) -> int:
    from digest import store

    if value is None or not value.strip():
        return 0
    try:
        return parse_weekday(value)
    except ValueError as exc:
        raise store.InvalidSubscriber(f"send_weekday: {exc}") from None


@click.command()
@click.argument("email")
@click.option("--keywords", required=True, help="Profile, e.g. '\"federated learning\", -medical'.")
@click.option("--confirmed", is_flag=True, help="Skip double opt-in (the reader already agreed).")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Paris (default from config).")
@click.option("--send-hour", type=click.IntRange(0, 23), help="Local hour to send the digest.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]))
@click.option(
    "--send-weekday",
    help="For weekly digests, the day they go out: monday ... sunday (default monday).",
)
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
    send_weekday: str | None,
    max_papers: int | None,
    channels: str | None,
) -> None:
    """Add a reader; without --confirmed they get a confirmation mail and stay pending."""
    from digest import pipeline

    ctx = state().context
    preferences = _preferences(
        keywords, timezone, send_hour, frequency, max_papers, channels, send_weekday
    )
    subscriber, changed = ctx.store.subscribers.add(
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
    from digest import pipeline

    ctx = state().context
    changed = ctx.store.subscribers.unsubscribe(email=email, now=ctx.now(), goodbye=goodbye)
    subscriber = ctx.store.subscribers.get(email=email)
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
        "send_weekday": WEEKDAYS[s.send_weekday],
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
    from rich.table import Table

    rows = [_as_row(s) for s in state().context.store.subscribers.all(statuses=statuses)]
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
                f"weekly ({row['send_weekday']})"
                if row["frequency"] == "weekly"
                else str(row["frequency"]),
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
    from digest import pipeline, ranking

    ctx = state().context
    counts: Counter[str] = Counter()
    problems: list[tuple[int, str]] = []
    # check the whole file first: one in another encoding is refused before any row is imported
    bad_line = _first_non_utf8_line(file)
    if bad_line is not None:
        error(
            f"{file}: line {bad_line} is not UTF-8 text, so nothing was imported. Save it as "
            f"'CSV UTF-8', or convert it: iconv -f cp1252 -t utf-8 {file} > readers.csv"
        )
        raise SystemExit(2)
    # then read it row by row: a million readers need no more memory than a thousand
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"email", "keywords"} - set(reader.fieldnames or ())
        if missing:
            error(
                f"{file}: the header must name the columns email and keywords (missing: {', '.join(sorted(missing))})"
            )
            raise SystemExit(2)
        batch: list[tuple[int, str, store.Preferences]] = []
        for row in reader:
            try:
                preferences = _preferences(
                    (row.get("keywords") or "").strip(),
                    (row.get("timezone") or "").strip() or None,
                    _int_or_none(row.get("send_hour"), "send_hour"),
                    (row.get("frequency") or "").strip() or None,
                    _int_or_none(row.get("max_papers"), "max_papers"),
                    (row.get("channels") or "").strip() or None,
                    row.get("send_weekday"),
                )
            except (ValueError, ranking.ProfileError) as exc:
                problems.append((reader.line_num, str(exc)))
                continue
            batch.append((reader.line_num, row.get("email") or "", preferences))
            if len(batch) == IMPORT_BATCH:
                _save_batch(ctx, batch, confirmed, counts, problems)
                batch = []
        _save_batch(ctx, batch, confirmed, counts, problems)
    problems.sort()
    messages = [f"line {line}: {problem}" for line, problem in problems]
    if counts["queued"]:
        try:
            pipeline.send_mails_now(ctx)
        except pipeline.MailError as exc:
            messages.append(
                f"{counts['queued']} confirmation mail(s) stay queued for the next run: {exc}"
            )
    for message in messages:
        error(message)
    info(
        f"Imported {file}: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {len(problems)} skipped."
    )
    if messages:
        raise SystemExit(1)


IMPORT_BATCH = 2000


def _save_batch(
    ctx: pipeline.Context,
    batch: list[tuple[int, str, store.Preferences]],
    confirmed: bool,
    counts: Counter[str],
    problems: list[tuple[int, str]],
) -> None:
    """Save checked rows in one go (with their confirmation mails queued) and count what happened."""
    from digest import store

    results = ctx.store.subscribers.save(
        [(email, p) for _, email, p in batch],
        confirmed=confirmed,
        now=ctx.now(),
        mail=_import_mail,
    )
    for (line, _, _), result in zip(batch, results, strict=True):
        if isinstance(result, store.InvalidSubscriber):
            problems.append((line, str(result)))
            continue
        counts["added" if result.added else "updated" if result.changed else "unchanged"] += 1
        counts["queued"] += _import_mail(result) is not None


def _import_mail(saved: store.Saved) -> store.MailKind | None:
    """An imported reader left pending by a change is asked to confirm; nobody else is mailed."""
    from digest import store

    if saved.changed and saved.subscriber.status == SubscriberStatus.PENDING:
        return store.MailKind.CONFIRMATION
    return None


def _first_non_utf8_line(file: Path) -> int | None:
    """The line number of the first bytes that are not UTF-8, or None when all of it is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.object is the chunk after any bytes held back from the last one (never "\n")
                return newlines + exc.object[: exc.start].count(b"\n") + 1
            newlines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return newlines + 1
    return None


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
    for subscriber in state().context.store.subscribers.all():
        writer.writerow(_as_row(subscriber))
