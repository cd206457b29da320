"""The feeds a reader subscribes to: their private digest feed, and a public feed for any profile."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest import feeds, pipeline, ranking, store
from digest.feeds import FeedEntry
from digest.models import SubscriberStatus
from digest.web.site import Site, site_of

FEED_DAYS = 30
SEARCH_LIMIT = 50
MEDIA_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
}
EXAMPLE_QUERY = '"federated learning", -medical'


async def feed(request: Request) -> Response:
    """`/feeds/<token>.atom|.rss` (private digest feed) and `/feeds/search.atom|.rss?q=` (public)."""
    site = site_of(request)
    stem, _, kind = request.path_params["name"].rpartition(".")
    if kind not in MEDIA_TYPES or not stem:
        return not_found()
    if stem == "search":
        return await search_feed(request, site, kind)
    body = await run_in_threadpool(private_feed, site, stem, kind)
    if body is None:
        return not_found()
    return conditional(request, body, kind, cache="private, no-cache")


def private_feed(site: Site, token: str, kind: str) -> bytes | None:
    """A subscriber's recommended papers of the last 30 days, newest digest first."""
    ctx = site.ctx
    subscriber = store.subscriber_by_feed_token(ctx.engine, token)
    if subscriber is None or subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return None
    assert subscriber.id is not None
    since = (ctx.now() - timedelta(days=FEED_DAYS)).date()
    items = store.feed_items(ctx.engine, subscriber.id, since=since)
    papers = store.papers_by_ids(ctx.engine, [item.paper_id for item in items])
    entries = [
        FeedEntry(papers[i.paper_id], i.digest_date, i.sent_at, i.matched)
        for i in items
        if i.paper_id in papers
    ]
    base = site.base_url
    # Stable across feed-URL rotations (the id names the reader, not the URL).
    feed_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/subscribers/{subscriber.id}/feed").urn
    fallback = subscriber.confirmed_at or subscriber.created_at or ctx.now()
    return render(
        kind,
        entries,
        feed_id=feed_id,
        title=f"{site.title}: your papers",
        description=f"Papers {site.title} recommended to you in the last {FEED_DAYS} days.",
        self_url=f"{base}/feeds/{quote(token)}.{kind}",
        site_url=base + "/",
        fallback_updated=fallback,
    )


async def search_feed(request: Request, site: Site, kind: str) -> Response:
    """Today's papers for any profile, no account needed."""
    query = request.query_params.get("q", "").strip()
    if not query:
        return PlainTextResponse(
            f"Add a profile to the URL: /feeds/search.{kind}?q={quote(EXAMPLE_QUERY)}\n",
            status_code=400,
        )
    try:
        body = await run_in_threadpool(search_body, site, query, kind)
    except ranking.ProfileError as exc:
        return PlainTextResponse(f"This profile cannot be used: {exc}\n", status_code=400)
    return conditional(request, body, kind, cache="public, max-age=900")


def search_body(site: Site, query: str, kind: str) -> bytes:
    """The public feed document for one profile."""
    ctx = site.ctx
    matches = pipeline.preview(ctx, query, limit=SEARCH_LIMIT)
    now = ctx.now()
    entries = []
    for match in matches:
        seen = match.paper.first_seen_at or match.paper.published_at or now
        entries.append(FeedEntry(match.paper, seen.date(), seen, match.matched))
    base = site.base_url
    return render(
        kind,
        entries,
        feed_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/feeds/search?q={query}").urn,
        title=f"{site.title}: {query}",
        description=f"New papers matching {query}, from {site.title}.",
        self_url=f"{base}/feeds/search.{kind}?q={quote(query)}",
        site_url=base + "/",
        # An empty feed keeps one `updated` per day, so its ETag holds until something changes.
        fallback_updated=datetime.combine(now.date(), time(), tzinfo=UTC),
    )


def render(
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
    """The document in the asked format."""
    if kind == "rss":
        return feeds.rss_feed(
            entries, title=title, self_url=self_url, site_url=site_url, description=description
        )
    updated = max((e.updated for e in entries), default=fallback_updated)
    return feeds.atom_feed(
        entries,
        feed_id=feed_id,
        title=title,
        self_url=self_url,
        site_url=site_url,
        updated=updated,
    )


def conditional(request: Request, body: bytes, kind: str, *, cache: str) -> Response:
    """The feed, or 304 Not Modified when the reader already has this version (ETag)."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": cache, "X-Robots-Tag": "noindex"}
    wanted = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=MEDIA_TYPES[kind], headers=headers)


def not_found() -> Response:
    """Unknown, rotated or unsubscribed feed token: say so plainly (feed readers show it)."""
    return PlainTextResponse(
        "No feed here. It may have moved: your preferences page shows its current URL.\n",
        status_code=404,
    )
