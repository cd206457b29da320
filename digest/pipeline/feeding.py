"""The Atom/RSS documents of a reader's digest (their private feed) and of any profile (public)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from digest import ranking
from digest.models import Subscriber
from digest.pipeline.composing import preview
from digest.pipeline.context import Context
from digest.render import feeds
from digest.render.feeds import FeedEntry

FEED_DAYS = 30
"""A private feed lists what was recommended in this many days."""
SEARCH_LIMIT = 50


def reader_feed(ctx: Context, subscriber: Subscriber, kind: str) -> bytes:
    """A subscriber's recommended papers of the last 30 days, newest digest first."""
    assert subscriber.id is not None
    since = (ctx.now() - timedelta(days=FEED_DAYS)).date()
    items = ctx.store.digests.feed_items(subscriber.id, since=since)
    papers = ctx.store.papers.by_ids([item.paper_id for item in items])
    entries = [
        FeedEntry(
            papers[i.paper_id],
            i.digest_date,
            i.sent_at,
            i.matched,
            ranking.snippet(papers[i.paper_id], i.matched),
            i.partial,
        )
        for i in items
        if i.paper_id in papers
    ]
    urls, title = ctx.urls, ctx.settings.site.title
    return _document(
        kind,
        entries,
        feed_id=urls.reader_feed_id(subscriber.id),
        title=f"{title}: your papers",
        description=f"Papers {title} recommended to you in the last {FEED_DAYS} days.",
        self_url=urls.feed(subscriber.feed_token, kind),
        site_url=urls.home(),
        fallback_updated=subscriber.confirmed_at or subscriber.created_at or ctx.now(),
    )


def search_feed(ctx: Context, query: str, kind: str) -> bytes:
    """Today's papers for any profile, no account needed (raises ProfileError on a bad profile)."""
    matches = preview(ctx, query, limit=SEARCH_LIMIT)
    now = ctx.now()
    entries = []
    for match in matches:
        seen = match.paper.first_seen_at or match.paper.published_at or now
        entries.append(
            FeedEntry(match.paper, seen.date(), seen, match.matched, match.snippet, match.partial)
        )
    urls, title = ctx.urls, ctx.settings.site.title
    return _document(
        kind,
        entries,
        feed_id=urls.search_feed_id(query),
        title=f"{title}: {query}",
        description=f"New papers matching {query}, from {title}.",
        self_url=urls.search_feed(query, kind),
        site_url=urls.home(),
        # An empty feed keeps one `updated` per day, so its ETag holds until something changes.
        fallback_updated=datetime.combine(now.date(), time(), tzinfo=UTC),
    )


def write_reader_feeds(ctx: Context, subscribers: Sequence[Subscriber], directory: Path) -> None:
    """Write each reader's Atom and RSS digest as files (for operators who serve them statically)."""
    directory.mkdir(parents=True, exist_ok=True)
    for subscriber in subscribers:
        for kind in ("atom", "rss"):
            target = directory / f"{subscriber.feed_token}.{kind}"
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(reader_feed(ctx, subscriber, kind))
            partial.replace(target)  # readers never see half a file


def _document(
    kind: str,
    entries: Sequence[FeedEntry],
    *,
    feed_id: str,
    title: str,
    description: str,
    self_url: str,
    site_url: str,
    fallback_updated: datetime,
) -> bytes:
    if kind == "rss":
        return feeds.rss_feed(
            entries, title=title, self_url=self_url, site_url=site_url, description=description
        )
    updated = max((e.updated for e in entries), default=fallback_updated)
    return feeds.atom_feed(
        entries, feed_id=feed_id, title=title, self_url=self_url, site_url=site_url, updated=updated
    )
