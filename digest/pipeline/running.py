"""`digest run`: fetch, plan, send; or, dry, preview what would be sent without changing anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from digest import store
from digest.deliver.transport import (
    Transport,
)
from digest.models import (
    Channel,
    Subscriber,
)
from digest.pipeline.composing import Window, compose, first_window
from digest.pipeline.context import Context, Progress
from digest.pipeline.fetching import FetchReport, fetch
from digest.pipeline.planning import plan
from digest.pipeline.sending import DeliveryOutcome, envelope_for, send_pending


@dataclass
class RunReport:
    """What `digest run` did (or, dry, would do)."""

    digest_date: date
    dry_run: bool
    papers: int
    fetched: list[FetchReport] = field(default_factory=list)
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    planned: int = 0
    examples: bool = False

    def as_json(self) -> dict[str, Any]:
        """The `--format json` shape: date, dry_run, papers and one object per digest."""
        return {
            "date": self.digest_date.isoformat(),
            "dry_run": self.dry_run,
            "papers": self.papers,
            "examples": self.examples,
            "sources": [
                {"name": f.name, "status": f.status, "new": f.new, "error": f.error}
                for f in self.fetched
            ],
            "digests": [
                {
                    "email": o.email,
                    "channel": o.channel,
                    "status": o.status,
                    "error": o.error,
                    "papers": [
                        {
                            "key": m.paper.key,
                            "title": m.paper.title,
                            "url": m.paper.url,
                            "score": round(float(m.score), 4),
                            "matched": list(m.matched),
                        }
                        for m in (o.digest.matches if o.digest else ())
                    ],
                }
                for o in self.outcomes
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
) -> RunReport:
    """Fetch (optionally), then plan and send today's digests; dry, preview them instead."""
    day = digest_date or ctx.now().date()
    fetched = fetch(ctx, progress=progress) if fetch_first else []
    if dry_run:
        return _dry_run(ctx, day, fetched, out)
    planned = plan(ctx, digest_date=day)
    sent = send_pending(ctx, transport, progress=progress)
    report = RunReport(day, False, _window_size(ctx), fetched, sent.outcomes, planned)
    if out is not None:
        write_previews(ctx, report, out)
    return report


def _window_size(ctx: Context) -> int:
    now = ctx.now()
    return store.count_papers_seen_between(ctx.engine, first_window(ctx, now), now)


def _dry_run(ctx: Context, day: date, fetched: list[FetchReport], out: Path | None) -> RunReport:
    """What a run would send now, changing nothing: no delivery row, no paper marked sent."""
    now = ctx.now()
    subscribers = [s for batch in store.iter_active(ctx.engine) for s in batch]
    examples = not subscribers
    if examples:
        subscribers = [
            Subscriber(email=e.name, keywords=e.keywords, max_papers=ctx.settings.digest.max_papers)
            for e in ctx.settings.examples
        ]
    windows = _dry_windows(ctx, subscribers, day, now)
    sent_before = store.sent_paper_ids(ctx.engine, [s.id for s in subscribers if s.id])
    digests = compose(
        ctx,
        subscribers,
        windows,
        digest_date=day,
        exclude=[sent_before.get(s.id, set()) if s.id else set() for s in subscribers],
    )
    outcomes = []
    for subscriber, digest in zip(subscribers, digests, strict=True):
        status = "would send" if digest else "empty"
        if digest and "email" not in subscriber.channels:
            status = "feed only"
        outcomes.append(DeliveryOutcome(subscriber.email, Channel.EMAIL, status, digest))
    report = RunReport(day, True, _window_size(ctx), fetched, outcomes, 0, examples)
    if out is not None:
        write_previews(ctx, report, out)
    return report


def _dry_windows(
    ctx: Context, subscribers: Sequence[Subscriber], day: date, now: datetime
) -> list[Window]:
    ids = [s.id for s in subscribers if s.id is not None]
    previous = (
        store.previous_cutoffs(
            ctx.engine, ids, channel=Channel.EMAIL, before=day + timedelta(days=1)
        )
        if ids
        else {}
    )
    return [Window(previous.get(s.id) or first_window(ctx, now), now) for s in subscribers]  # type: ignore[arg-type]


def write_previews(ctx: Context, report: RunReport, out: Path) -> list[Path]:
    """Write each digest as .html, .txt and .eml into `out` (what the reader would get)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index, outcome in enumerate(report.outcomes, start=1):
        if outcome.digest is None:
            continue
        rendered = ctx.renderer.digest(outcome.digest)
        stem = f"{index:04d}-{_slug(outcome.email)}"
        envelope = envelope_for(ctx, index, outcome.email, rendered, outcome.digest.links)
        for suffix, content in ((".html", rendered.html), (".txt", rendered.text)):
            path = out / (stem + suffix)
            path.write_text(content, encoding="utf-8")
            written.append(path)
        eml = out / (stem + ".eml")
        eml.write_bytes(envelope.data)
        written.append(eml)
    return written


def _slug(value: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_" else "_" for c in value)[:80]
