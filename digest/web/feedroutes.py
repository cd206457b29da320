"""The feeds a reader subscribes to: their private digest feed, and a public feed for any profile."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest import pipeline, ranking, urls
from digest.models import SubscriberStatus
from digest.web.feedcache import SEARCH_CACHE_SECONDS, etag_of
from digest.web.limits import RETRY_AFTER_SECONDS, Busy
from digest.web.site import Site, site_of

SEARCH_CACHE_CONTROL = f"public, max-age={int(SEARCH_CACHE_SECONDS)}"
MEDIA_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
}


async def feed(request: Request) -> Response:
    """`/feeds/<token>.atom|.rss` (private digest feed) and `/feeds/search.atom|.rss?q=` (public)."""
    site = site_of(request)
    stem, _, kind = request.path_params["name"].rpartition(".")
    if kind not in MEDIA_TYPES or not stem:
        return not_found()
    if stem == urls.SEARCH_FEED_STEM:
        return await search_feed(request, site, kind)
    body = await run_in_threadpool(private_feed, site, stem, kind)
    if body is None:
        return not_found()
    return conditional(request, body, kind, cache="private, no-cache")


def private_feed(site: Site, token: str, kind: str) -> bytes | None:
    """A subscriber's private feed document, or None for an unknown, rotated or ended token."""
    subscriber = site.ctx.store.subscribers.by_feed_token(token)
    if subscriber is None or subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return None
    return pipeline.reader_feed(site.ctx, subscriber, kind)


async def search_feed(request: Request, site: Site, kind: str) -> Response:
    """Today's papers for any profile, no account needed; built once per query every few minutes."""
    query = normalize_query(request.query_params.get("q", ""))
    if not query:
        return PlainTextResponse(
            f"Add a profile to the URL: {site.ctx.urls.search_feed(urls.SEARCH_EXAMPLE, kind)}\n",
            status_code=400,
        )
    cached = site.searches.get((query, kind))
    if cached is None:
        if not site.limits.searches.allow(site.network(request)):
            return PlainTextResponse(
                "Too many search feeds came from your network in the last hour. "
                "Please try again later.\n",
                status_code=429,
                headers={"Retry-After": "600"},
            )
        try:
            async with site.limits.gate.slot():
                body = await run_in_threadpool(search_body, site, query, kind)
        except Busy:
            return PlainTextResponse(
                "Busy right now; please try again in a few seconds.\n",
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except ranking.ProfileError as exc:
            return PlainTextResponse(f"This profile cannot be used: {exc}\n", status_code=400)
        cached = site.searches.put((query, kind), body)
    return conditional(request, cached.body, kind, cache=SEARCH_CACHE_CONTROL, etag=cached.etag)


def normalize_query(raw: str) -> str:
    """One spelling per profile for the cache: spaces collapsed, one after each comma, none
    around line breaks (the ranking reads every spelling the same)."""
    text = re.sub(r"[ \t]+", " ", raw.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r" ?, ?", ", ", text)
    return re.sub(r" ?\n ?", "\n", text).strip()


def search_body(site: Site, query: str, kind: str) -> bytes:
    """The public feed document for one profile."""
    return pipeline.search_feed(site.ctx, query, kind)


def conditional(
    request: Request, body: bytes, kind: str, *, cache: str, etag: str | None = None
) -> Response:
    """The feed, or 304 Not Modified when the reader already has this version (ETag)."""
    etag = etag or etag_of(body)
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
