"""`digest run`: fetch, queued mails, plan, send; or, dry, the same path with a preview transport.

The dry run plans in memory (the rows a run would create, plus the rows already due), composes
each digest exactly as the run would (reading what is already composed, composing the rest
without recording it) and renders it; its envelopes go to previews instead of the relay. What it
lists is what the run then sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from digest import store
from digest.deliver.transport import RelayError, Transport, write_private
from digest.models import Channel, Subscriber
from digest.pipeline.batch import envelope_for, prepare_batch
from digest.pipeline.composing import first_window
from digest.pipeline.context import Context, Progress
from digest.pipeline.fetching import FetchReport, fetch
from digest.pipeline.mails import send_queued_mails
from digest.pipeline.planning import plan, planned_batches
from digest.pipeline.report import Listener, Outcome, ReaderOutcome, SendReport
from digest.pipeline.upkeep import housekeeping
from digest.pipeline.worker import send_pending

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What `digest run` did (or, dry, would do)."""

    digest_date: date
    dry_run: bool
    papers: int
    fetched: list[FetchReport] = field(default_factory=list)
    sent: SendReport = field(default_factory=SendReport)
    planned: int = 0
    examples: bool = False
    mails: tuple[int, int] = (0, 0)
    """Single mails (confirmations, goodbyes) sent, and not taken by the relay."""

    @property
    def rows(self) -> list[ReaderOutcome]:
        """The first readers' outcomes (all are counted in `sent`)."""
        return self.sent.rows

    def header_json(self) -> dict[str, Any]:
        """The `--format json` object without its digests (streamed after it)."""
        return {
            "date": self.digest_date.isoformat(),
            "dry_run": self.dry_run,
            "papers": self.papers,
            "examples": self.examples,
            "sources": [
                {"name": f.name, "status": f.status, "new": f.new, "error": f.error}
                for f in self.fetched
            ],
        }

    def as_json(self) -> dict[str, Any]:
        """The whole `--format json` shape (the kept rows only)."""
        return {**self.header_json(), "digests": [outcome_json(o) for o in self.rows]}


def outcome_json(outcome: ReaderOutcome) -> dict[str, Any]:
    """One reader's digest as `--format json` lists it, best paper first."""
    return {
        "email": outcome.email,
        "date": outcome.digest_date.isoformat(),
        "status": outcome.status,
        "channels": dict(sorted(outcome.channels.items())),
        "error": outcome.error,
        "papers": [
            {
                "key": p.key,
                "title": p.title,
                "url": p.url,
                "score": round(p.score, 4),
                "matched": list(p.matched),
            }
            for p in outcome.papers
        ],
    }


def run(
    ctx: Context,
    *,
    digest_date: date | None = None,
    fetch_first: bool = True,
    dry_run: bool = False,
    out: Path | None = None,
    transport: Transport | None = None,
    progress: Progress | None = None,
    listener: Listener | None = None,
    on_start: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """Fetch (optionally), then plan and send the day's digests; dry, preview them instead.

    `listener` is called with each reader's outcome as it finishes; `on_start` with the report
    before the first one (the CLI streams JSON from both).
    """
    day = digest_date or ctx.now().date()
    fetched = fetch(ctx, progress=progress) if fetch_first else []
    report = RunReport(day, dry_run, _window_size(ctx), fetched)
    if on_start is not None:
        on_start(report)
    listeners = [f for f in (listener, _preview_writer(ctx, out)) if f is not None]
    each = _fan_out(listeners)
    if dry_run:
        report.sent = SendReport(listener=each)
        _dry_run(ctx, day, report)
        log_run(report)
        return report
    housekeeping(ctx)
    try:
        report.mails = send_queued_mails(ctx, transport)
    except RelayError as exc:
        log.warning("queued mails stay queued: %s", exc)
    report.planned = plan(ctx, digest_date=day)
    report.sent = send_pending(
        ctx, transport, progress=progress, listener=each, whole_digests=out is not None
    )
    log_run(report)
    return report


def log_run(report: RunReport) -> None:
    """The one log line of a run: what was fetched, planned and sent (counts, never addresses)."""
    readers = report.sent.readers
    log.info(
        "%s for %s: %d sources fetched (%d failed), %d new papers, %d planned; readers: "
        "%d %s, %d empty, %d failed, %d to retry; single mails: %d sent, %d not taken",
        "dry run" if report.dry_run else "run",
        report.digest_date.isoformat(),
        len(report.fetched),
        sum(1 for f in report.fetched if f.status == "failed"),
        sum(f.new for f in report.fetched),
        report.planned,
        readers[Outcome.WOULD_SEND if report.dry_run else Outcome.SENT],
        "would get mail" if report.dry_run else "sent",
        readers[Outcome.EMPTY],
        readers[Outcome.FAILED],
        readers[Outcome.RETRY],
        *report.mails,
    )


def _window_size(ctx: Context) -> int:
    now = ctx.now()
    return ctx.store.papers.count_seen_between(first_window(ctx, now), now)


def _dry_run(ctx: Context, day: date, report: RunReport) -> None:
    """What a run would send now, changing nothing: no row planned, composed or marked."""
    examples = _example_readers(ctx)
    report.examples = bool(examples)
    batch = ctx.settings.delivery.batch_size
    if examples:
        claims = [
            store.Claim(-i, sid, day, Channel.EMAIL, 0) for i, sid in enumerate(examples, start=1)
        ]
        for start in range(0, len(claims), batch):
            _preview(ctx, claims[start : start + batch], report.sent, examples)
        return
    for claims in _chunks(_dry_claims(ctx, day), batch):
        _preview(ctx, claims, report.sent, None)


def _dry_claims(ctx: Context, day: date) -> Iterator[store.Claim]:
    """The rows a run would claim: those already due, then those planning would create."""
    deliveries = ctx.store.deliveries
    due = deliveries.due(now=ctx.now())
    yield from due
    taken = {(c.subscriber_id, c.digest_date, c.channel) for c in due}
    fake = 0
    for planned in planned_batches(ctx, digest_date=day):
        existing = deliveries.existing(planned)
        for p in planned:
            unit = (p.subscriber_id, p.digest_date, p.channel)
            if unit in existing or unit in taken:
                continue
            fake -= 1
            yield store.Claim(fake, p.subscriber_id, p.digest_date, p.channel, 0)


def _chunks(claims: Iterator[store.Claim], size: int) -> Iterator[list[store.Claim]]:
    """Batches of claims that keep a reader's channels together."""
    chunk: list[store.Claim] = []
    for claim in claims:
        if len(chunk) >= size and chunk[-1].subscriber_id != claim.subscriber_id:
            yield chunk
            chunk = []
        chunk.append(claim)
    if chunk:
        yield chunk


def _preview(
    ctx: Context,
    claims: Sequence[store.Claim],
    report: SendReport,
    subscribers: dict[int, Subscriber] | None,
) -> None:
    prepared = prepare_batch(ctx, claims, report, dry=True, subscribers=subscribers)
    for pending in prepared.pending.values():
        report.settle(pending.key, pending.claim.channel, Outcome.WOULD_SEND)


def _example_readers(ctx: Context) -> dict[int, Subscriber]:
    """With no reader yet, the config's example profiles stand in (under made-up ids)."""
    if ctx.store.subscribers.counts():
        return {}
    return {
        -i: Subscriber(
            email=e.name,
            keywords=e.keywords,
            max_papers=ctx.settings.digest.max_papers,
            channels=(Channel.EMAIL,),
            id=-i,
        )
        for i, e in enumerate(ctx.settings.examples, start=1)
    }


def _fan_out(listeners: list[Listener]) -> Listener | None:
    if not listeners:
        return None

    def call(outcome: ReaderOutcome) -> None:
        for listener in listeners:
            listener(outcome)

    return call


def _preview_writer(ctx: Context, out: Path | None) -> Listener | None:
    """Writes each reader's digest as .html, .txt and .eml into `out` as it finishes."""
    if out is None:
        return None
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    count = 0

    def write(outcome: ReaderOutcome) -> None:
        nonlocal count
        if outcome.digest is None:
            return
        count += 1
        rendered = ctx.renderer.digest(outcome.digest)
        stem = f"{count:04d}-{_slug(outcome.email)}"
        envelope = envelope_for(ctx, count, outcome.email, rendered, outcome.digest.links)
        # Readable by the operator only: each file holds the reader's live links.
        write_private(out / (stem + ".html"), rendered.html.encode("utf-8"))
        write_private(out / (stem + ".txt"), rendered.text.encode("utf-8"))
        write_private(out / (stem + ".eml"), envelope.data)

    return write


def _slug(value: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_" else "_" for c in value)[:80]
