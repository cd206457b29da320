"""Rank stage: each subscriber's window of new papers, ranked and assembled into a Digest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import PurePath
from urllib.parse import urlsplit

from digest import ranking, store
from digest.models import (
    Digest,
    Match,
    Paper,
    SourceStatus,
    Subscriber,
)
from digest.pipeline.context import Context


@dataclass(frozen=True, slots=True)
class Window:
    """The papers a digest may pick from: first seen after `since`, up to `until`."""

    since: datetime
    until: datetime


def compose(
    ctx: Context,
    subscribers: Sequence[Subscriber],
    windows: Sequence[Window],
    *,
    digest_date: date,
    exclude: Sequence[set[int]] | None = None,
) -> list[Digest | None]:
    """Rank each subscriber's window and assemble their digest; None where nothing is worth sending."""
    groups: dict[Window, list[int]] = defaultdict(list)
    for index, window in enumerate(windows):
        groups[window].append(index)
    failed = _failed_sources(ctx)
    digests: list[Digest | None] = [None] * len(subscribers)
    for window, indexes in groups.items():
        papers = ctx.window_papers(window.since, window.until)
        corpus = ctx.corpus(papers)
        members = [subscribers[i] for i in indexes]
        by_id = {p.id: p.key for p in papers}
        excluded = [
            {by_id[pid] for pid in (exclude[i] if exclude else ()) if pid in by_id} for i in indexes
        ]
        ranked = ranking.score_batch(
            papers,
            [s.keywords for s in members],
            settings=ctx.settings.ranking,
            corpus=corpus,
            limit=[s.max_papers for s in members],
            exclude=excluded,
        )
        hot = ranking.trending(papers, ctx.settings.digest.trending_count + 20)
        for index, subscriber, matches, total, skip in zip(
            indexes, members, ranked, ranked.totals.tolist(), excluded, strict=True
        ):
            digests[index] = _assemble(
                ctx, subscriber, digest_date, matches, total, hot, skip, failed
            )
    return digests


def _assemble(
    ctx: Context,
    subscriber: Subscriber,
    digest_date: date,
    matches: list[Match],
    total: int,
    hot: list[Match],
    skip: set[str],
    failed: tuple[SourceStatus, ...],
) -> Digest | None:
    picked = {m.paper.key for m in matches}
    fresh_hot = [m for m in hot if m.paper.key not in skip]
    trending_block = tuple(
        m for m in fresh_hot if m.paper.key not in picked and (m.paper.upvotes or 0) > 0
    )[: ctx.settings.digest.trending_count]
    fallback = False
    if not matches:
        if ctx.settings.digest.empty != "trending" or not fresh_hot:
            return None
        matches, trending_block, fallback = fresh_hot[: subscriber.max_papers], (), True
    return Digest(
        subscriber=subscriber,
        digest_date=digest_date,
        matches=tuple(matches),
        trending=trending_block,
        failed_sources=failed,
        fallback=fallback,
        matched_total=total,
    )


def _failed_sources(ctx: Context) -> tuple[SourceStatus, ...]:
    """Sources whose last fetch failed, under the names readers know (never the internal ones)."""
    titles = {s.name: s.title for s in ctx.settings.sources if s.title}
    return tuple(
        SourceStatus(name=titles.get(record.name) or _host(record.url), ok=False)
        for record in ctx.store.sources.all()
        if record.last_status == "failed"
    )


def _host(url: str) -> str:
    """A source without a configured title is named by its site (or, for a local file, its file)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return parts.hostname
    return PurePath(parts.path or url).name or "a local file"


Unit = tuple[int, date]
"""(subscriber id, digest date): one reader's digest for one day, whatever its channels."""


def compose_once(
    ctx: Context,
    units: Sequence[Unit],
    subscribers: dict[int, Subscriber],
    *,
    record: bool = True,
) -> dict[Unit, Digest | None]:
    """Each unit's digest as first composed: read where recorded, else ranked now (and recorded).

    The first time a reader's digest for a day is prepared, its papers, their order, scores and
    matched terms are recorded; every later attempt, channel, worker and rerun gets exactly that.
    `record=False` (the dry run) composes what is missing the same way but records nothing.
    None means nothing was worth sending (an empty digest).
    """
    wanted = sorted(set(units))
    recorded = ctx.store.digests.get_many(wanted)
    missing = [unit for unit in wanted if unit not in recorded]
    composed: dict[Unit, Digest | None] = {}
    fresh: list[tuple[store.Composition, Digest | None]] = []
    if missing:
        fresh = _compose_missing(ctx, missing, subscribers)
        saved = (
            ctx.store.digests.save([c for c, _ in fresh], now=ctx.now())
            if record
            else {(c.subscriber_id, c.digest_date): c for c, _ in fresh}
        )
        for composition, digest in fresh:
            unit = (composition.subscriber_id, composition.digest_date)
            if _same(saved[unit], composition):
                composed[unit] = digest  # ours was recorded: no need to read it back
            else:
                recorded[unit] = saved[unit]  # another process composed it first: use theirs
    papers = ctx.store.papers.by_ids({item.paper_id for c in recorded.values() for item in c.items})
    for unit, composition in recorded.items():
        composed[unit] = _digest_of(composition, subscribers[unit[0]], papers)
    windows = {
        (c.subscriber_id, c.digest_date): (c.since, c.until)
        for c in [*recorded.values(), *(c for c, _ in fresh)]
    }
    read = {w: ctx.store.papers.count_seen_between(*w) for w in set(windows.values())}
    return {unit: for_reader(ctx, composed[unit], read[windows[unit]]) for unit in wanted}


def _same(a: store.Composition, b: store.Composition) -> bool:
    """Whether two compositions of a unit hold the same content (ids aside)."""
    return (a.items, a.fallback, a.failed_sources, a.since, a.until, a.matched_total) == (
        b.items,
        b.fallback,
        b.failed_sources,
        b.since,
        b.until,
        b.matched_total,
    )


def for_reader(ctx: Context, digest: Digest | None, papers_read: int) -> Digest | None:
    """A composed digest as its reader gets it: each match with the snippet that shows its terms,
    the reader's links (this digest's web page, "more / fewer like this"), the papers read."""
    if digest is None:
        return None
    matches = ranking.with_snippets(digest.matches)
    return replace(
        digest,
        matches=tuple(matches),
        links=ctx.links(
            digest.subscriber, digest_date=digest.digest_date, papers=[m.paper for m in matches]
        ),
        papers_read=papers_read,
    )


def recorded_for_reader(
    ctx: Context, composition: store.Composition, subscriber: Subscriber
) -> Digest | None:
    """A recorded composition as its reader got it (the "View in browser" page)."""
    papers = ctx.store.papers.by_ids({item.paper_id for item in composition.items})
    read = ctx.store.papers.count_seen_between(composition.since, composition.until)
    return for_reader(ctx, _digest_of(composition, subscriber, papers), read)


def _compose_missing(
    ctx: Context, units: Sequence[Unit], subscribers: dict[int, Subscriber]
) -> list[tuple[store.Composition, Digest | None]]:
    """Rank the units not composed yet: each window starts where the reader's last digest stopped.

    A window ends at the newest stored paper (not the clock), so every reader composed after the
    same fetch shares one window end, and tomorrow's windows start together: the window's papers
    are loaded and indexed once for all of them.
    """
    until = ctx.store.papers.newest_seen_at(until=ctx.now()) or ctx.now()
    compositions: list[tuple[store.Composition, Digest | None]] = []
    for day in sorted({day for _, day in units}):
        ids = [sid for sid, d in units if d == day]
        previous = ctx.store.digests.previous_until(ids, before=day)
        windows = [
            Window(min(previous.get(sid) or first_window(ctx, until), until), until) for sid in ids
        ]
        since = min(w.since for w in windows)
        recommended = ctx.store.digests.recommended(ids, since=since)
        members = [subscribers[sid] for sid in ids]
        digests = compose(
            ctx,
            members,
            windows,
            digest_date=day,
            exclude=[recommended.get(sid, set()) for sid in ids],
        )
        for sid, window, digest in zip(ids, windows, digests, strict=True):
            compositions.append((_composition_of(sid, day, window, digest), digest))
    return compositions


def _composition_of(
    subscriber_id: int, day: date, window: Window, digest: Digest | None
) -> store.Composition:
    items: list[store.ComposedItem] = []
    if digest is not None:
        for section, matches in (("match", digest.matches), ("trending", digest.trending)):
            items.extend(
                store.ComposedItem(
                    m.paper.id, section, rank, float(m.score), tuple(m.matched), m.partial
                )
                for rank, m in enumerate(matches, start=1)
                if m.paper.id is not None
            )
    return store.Composition(
        subscriber_id=subscriber_id,
        digest_date=day,
        since=window.since,
        until=window.until,
        items=tuple(items),
        fallback=bool(digest and digest.fallback),
        failed_sources=tuple(
            (s.name, s.error or "") for s in (digest.failed_sources if digest else ())
        ),
        matched_total=digest.matched_total if digest else 0,
    )


def _digest_of(
    composition: store.Composition,
    subscriber: Subscriber,
    papers: dict[int, Paper],
) -> Digest | None:
    """The recorded composition as a Digest to render (None when it was empty)."""
    if composition.empty:
        return None
    sections: dict[str, list[Match]] = {"match": [], "trending": []}
    for item in composition.items:
        paper = papers.get(item.paper_id)
        if paper is not None:  # a paper deleted since is left out rather than invented
            sections[item.section].append(
                Match(paper, item.score, item.matched, partial=item.partial)
            )
    return Digest(
        subscriber=subscriber,
        digest_date=composition.digest_date,
        matches=tuple(sections["match"]),
        trending=tuple(sections["trending"]),
        failed_sources=tuple(
            SourceStatus(name=name, ok=False, error=error or None)
            for name, error in composition.failed_sources
        ),
        fallback=composition.fallback,
        matched_total=composition.matched_total,
    )


def first_window(ctx: Context, cutoff: datetime) -> datetime:
    """Where a subscriber's first digest starts looking."""
    return cutoff - timedelta(days=ctx.settings.digest.first_digest_days)


def preview(ctx: Context, keywords: str, *, limit: int = 10) -> list[Match]:
    """Today's papers for a profile (raises ranking.ProfileError on a bad profile)."""
    ranking.validate_profile(keywords)
    window = ctx.preview_window.get(ctx)
    [matches] = ranking.rank(
        window.papers, [keywords], settings=ctx.settings.ranking, corpus=window.corpus, limit=limit
    )
    return ranking.with_snippets(matches)


def explain(
    ctx: Context,
    keywords: str,
    *,
    limit: int = 10,
    keys: Sequence[str] | None = None,
    days: int | None = None,
) -> list[ranking.Explanation]:
    """A profile's best papers among the recent ones, or the given papers, each taken apart.

    Raises ranking.ProfileError on a bad profile and KeyError for a key not among the candidates.
    """
    ranking.validate_profile(keywords)
    papers = candidates(ctx, days=days)
    return ranking.explain(
        papers,
        keywords,
        settings=ctx.settings.ranking,
        corpus=ctx.corpus(papers),
        keys=keys,
        limit=limit,
    )


def candidates(ctx: Context, *, days: int | None = None) -> list[Paper]:
    """The papers a first digest would pick from now (or those of the last `days` days); when
    nothing is that recent, the 2,000 newest, so a quiet install still shows something."""
    now = ctx.now()
    start = now - timedelta(days=days) if days else first_window(ctx, now)
    papers = ctx.store.papers.seen_between(start, now)
    return papers or ctx.store.papers.newest(limit=2000)
