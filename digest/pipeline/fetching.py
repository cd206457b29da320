"""Fetch stage: pull every source, store its papers, remember how each fetch went."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest import ranking, sources, store
from digest.config import SourceSettings
from digest.pipeline.context import Context, Progress
from digest.pipeline.health import observe_fetch


@dataclass(frozen=True, slots=True)
class FetchReport:
    """How one source's fetch went."""

    name: str
    status: str
    kind: str = ""
    new: int = 0
    updated: int = 0
    seen: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()


BACKFILL_AFTER = timedelta(days=1)
"""A source that can be asked for a date range, not fetched well for this long, is backfilled."""
BACKFILL_MARGIN = timedelta(days=2)
"""How far before the last good fetch a backfill starts: arXiv announces papers a day or more
after their submission date, so some submitted before it had not been listed yet."""


def fetch_due(ctx: Context) -> bool:
    """True when a source was never fetched, or its last fetch is `fetch_minutes` old (or, the
    clock having gone back, in the future)."""
    ctx.store.sources.sync_config([s for s in ctx.settings.sources if s.enabled])
    now = ctx.now()
    every = timedelta(minutes=ctx.settings.schedule.fetch_minutes)
    return any(
        r.last_fetched_at is None or not now - every < r.last_fetched_at <= now
        for r in ctx.store.sources.all()
    )


def fetch(
    ctx: Context,
    *,
    only: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[FetchReport]:
    """Fetch every enabled source (or one), store the papers, remember how each fetch went.

    One source failing never stops the others; `stop` ends the run between two sources.
    """
    ctx.store.sources.sync_config([s for s in ctx.settings.sources if s.enabled])
    records = ctx.store.sources.all()
    if only is not None:
        records = [r for r in records if r.name == only]
        if not records:
            raise store.UnknownSource(f"no source named {only!r} (see `digest sources list`)")
    reports = []
    for done, record in enumerate(records):
        if stop is not None and stop.is_set():
            break
        if progress:
            progress(f"fetching {record.name}", done, len(records))
        reports.append(_fetch_one(ctx, record))
    if progress:
        progress("fetched", len(records), len(records))
    return reports


def _fetch_one(ctx: Context, record: store.SourceRecord) -> FetchReport:
    source = SourceSettings(name=record.name, url=record.url, kind=record.kind)  # type: ignore[arg-type]
    backfilled = _backfill(ctx, source, record.last_ok_at)
    state = sources.FetchState(
        etag=record.etag, last_modified=record.last_modified, content_hash=record.content_hash
    )
    result = sources.fetch_source(source, state, ctx.settings.fetch)
    now = ctx.now()
    counts = store.UpsertCounts()
    if result.status == "ok" and result.papers:
        try:
            counts = ctx.store.papers.upsert(result.papers, now=now)
        except store.StoreError as exc:
            # this source fails, the others go on; its validators are not kept, so the next
            # fetch reads the feed again
            result = dataclasses.replace(result, status="failed", papers=[], error=str(exc))
        else:
            ctx.store.papers.save_acronyms(ranking.learn_acronyms(result.papers))
    ctx.store.sources.record_fetch(
        record.name,
        now=now,
        status=result.status,
        error=result.error,
        etag=result.etag,
        last_modified=result.last_modified,
        content_hash=result.content_hash,
        new=counts.new,
        updated=counts.updated,
        warnings=result.warnings,
    )
    observe_fetch(record.name, result.status, counts.new)
    return FetchReport(
        name=record.name,
        status=result.status,
        kind=result.kind,
        new=counts.new + backfilled.new,
        updated=counts.updated + backfilled.updated,
        seen=len(result.papers),
        error=result.error,
        warnings=tuple(result.warnings),
    )


def _backfill(
    ctx: Context, source: SourceSettings, last_ok_at: datetime | None
) -> store.UpsertCounts:
    """After downtime, the papers a date-range source listed on the days missed."""
    now = ctx.now()
    if last_ok_at is None or now - last_ok_at < BACKFILL_AFTER or not sources.can_backfill(source):
        return store.UpsertCounts()
    result = sources.backfill_source(source, last_ok_at - BACKFILL_MARGIN, now, ctx.settings.fetch)
    if result is None or not result.papers:
        return store.UpsertCounts()
    try:
        counts = ctx.store.papers.upsert(result.papers, now=now)
    except store.StoreError:
        return store.UpsertCounts()  # the regular fetch that follows reports the database
    ctx.store.papers.save_acronyms(ranking.learn_acronyms(result.papers))
    return counts
