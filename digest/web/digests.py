"""The reader's digests on the web: one digest as a page ("View in browser"), the archive of the
last 30 days, and "more / fewer like this" (GET asks to confirm, POST changes the profile)."""

from __future__ import annotations

from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from digest import pipeline, store, urls
from digest.models import Subscriber
from digest.tokens import Scope
from digest.web.pages import BadLink, bad_link, find_subscriber, read_post, read_token
from digest.web.site import Site, site_of

MAIL_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
"""The mail's HTML styles itself inline (mail clients allow nothing else); it runs no script."""


async def digest_page(request: Request) -> Response:
    """One past digest, the same content as the mail (its HTML part), readable in any browser."""
    site = site_of(request)
    try:
        subscriber = await _reader(site, Scope.DIGEST, request.path_params["token"])
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    try:
        day = date.fromisoformat(request.path_params["day"])
    except ValueError:
        return site.message(
            request, "No such day", "The date in this link is not valid.", status_code=404
        )
    digest = await run_in_threadpool(pipeline.recorded_digest, site.ctx, subscriber, day)
    if digest is None:
        return site.message(
            request,
            "No digest that day",
            f"There is no digest of {day.isoformat()} in the last {pipeline.ARCHIVE_DAYS} days. "
            "Your archive lists the ones there are.",
            status_code=404,
        )
    rendered = await run_in_threadpool(site.ctx.renderer.digest, digest)
    return HTMLResponse(rendered.html, headers={"content-security-policy": MAIL_PAGE_POLICY})


async def archive_page(request: Request) -> Response:
    """The reader's digests of the last 30 days, newest first."""
    site = site_of(request)
    token = request.path_params["token"]
    try:
        subscriber = await _reader(site, Scope.DIGEST, token)
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    digests = await run_in_threadpool(pipeline.archive, site.ctx, subscriber, token)
    context = {"subscriber": subscriber, "digests": digests, "days": pipeline.ARCHIVE_DAYS}
    return site.page(request, "archive.html", context)


async def steer(request: Request) -> Response:
    """GET shows what "more / fewer like this" would change and a button; POST makes the change."""
    site = site_of(request)
    token = request.path_params["token"]
    direction = request.path_params["direction"]
    try:
        subscriber = await _reader(site, Scope.PREFERENCES, token)
        paper_id = int(request.path_params["paper"])
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    except ValueError:
        return bad_link(request, site, "This link is not valid. Check that it was copied whole.")
    if direction not in urls.STEER_DIRECTIONS:
        return bad_link(request, site, "This link is not valid. Check that it was copied whole.")
    try:
        plan = await run_in_threadpool(
            pipeline.plan_steer, site.ctx, subscriber, paper_id, direction
        )
    except pipeline.SteerError as exc:
        return site.message(request, "Nothing to change", str(exc))
    if request.method in ("GET", "HEAD"):
        return site.page(request, "steer.html", {"plan": plan})
    form = await read_post(request)
    refused = site.csrf.check(request, form)
    if refused:
        return site.message(request, "Please try again", refused, status_code=403)
    try:
        await run_in_threadpool(pipeline.apply_steer, site.ctx, subscriber, plan)
    except store.ProfileMoved:
        return site.message(
            request, "Please try again", "Your profile changed meanwhile; nothing was changed."
        )
    return RedirectResponse(site.ctx.urls.preferences(token) + "?steered=1", status_code=303)


async def _reader(site: Site, scope: Scope, token: str) -> Subscriber:
    data = read_token(site, scope, token)
    return await run_in_threadpool(find_subscriber, site, data, scope)
