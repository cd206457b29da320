"""The Starlette application: routes, secure headers, friendly error pages."""

from __future__ import annotations

import logging

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digest import metrics, pipeline, store, urls
from digest.config import Settings
from digest.web import digests, feedroutes, pages
from digest.web.clients import parse_networks
from digest.web.feedcache import FeedCache
from digest.web.limits import BodyLimit, Limits
from digest.web.security import Csrf, SecurityMiddleware, redacted_path
from digest.web.server import raise_open_files_limit, server_config
from digest.web.site import Site, make_environment, site_of, template_dir

log = logging.getLogger("digest.web")


def create_app(settings: Settings, *, ctx: pipeline.Context | None = None) -> Starlette:
    """The web app for these settings (opens the database, which must be initialised)."""
    ctx = ctx or pipeline.build_context(settings)
    pipeline.watch_queue(ctx)
    secret = settings.site.secret_key or ctx.store.meta.secret()
    https = settings.site.base_url.startswith("https://")
    directory = template_dir()
    site = Site(
        ctx=ctx,
        env=make_environment(directory),
        csrf=Csrf(secret, https=https),
        limits=Limits.from_settings(settings.web),
        searches=FeedCache(),
        trusted_proxies=parse_networks(settings.web.trusted_proxies),
    )
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route(urls.CONFIRM, pages.confirm, methods=["GET", "POST"]),
        Route(urls.PREFERENCES, pages.preferences, methods=["GET", "POST"]),
        Route(urls.UNSUBSCRIBE, pages.unsubscribe, methods=["GET", "POST"]),
        Route(urls.FEED, feedroutes.feed, methods=["GET"]),
        Route(urls.DIGEST, digests.digest_page, methods=["GET"]),
        Route(urls.ARCHIVE, digests.archive_page, methods=["GET"]),
        Route(urls.STEER, digests.steer, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=directory / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, https=https), Middleware(BodyLimit)],
        exception_handlers={
            HTTPException: http_error,
            ClientDisconnect: client_gone,
            Exception: server_error,
        },
    )
    # Starlette would redirect "/x/" to "/x" with a Location built from the Host header (an
    # open redirect); such paths get the 404 page instead.
    app.router.redirect_slashes = False
    app.state.site = site
    return app


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ctx: pipeline.Context | None = None,
) -> None:
    """Run the web app with uvicorn until interrupted (what `digest serve` calls).

    Log lines, uvicorn's too (log_config=None), go through the program's logging (digest/logs.py):
    time, level, text or JSON, readers' addresses masked.
    """
    raise_open_files_limit()
    app = create_app(settings, ctx=ctx)
    config = server_config(app, settings.web, host=host, port=port, log_config=None)
    uvicorn.Server(config).run()


async def healthz(request: Request) -> Response:
    """For monitors: 200 when the database answers and its schema is current."""
    site = site_of(request)
    try:
        current = await run_in_threadpool(store.schema_is_current, site.ctx.engine)
    except Exception as exc:
        log.warning("health check failed: %s", exc)
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    if not current:
        return JSONResponse({"status": "error", "database": "needs migration"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics_page(request: Request) -> Response:
    """Prometheus text format: papers fetched, fetch failures, deliveries, send time, queue depth.

    Counts nothing a reader could learn from: no address, no profile. Behind a public proxy,
    keep /metrics to the monitoring network (docs/operations.md shows how).
    """
    body = await run_in_threadpool(metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)


_TITLES = {
    400: "That request was not understood",
    404: "Page not found",
    405: "That is not how this page works",
    413: "That was too much",
}


async def http_error(request: Request, exc: Exception) -> Response:
    """A friendly page for 404, 405 and other client errors."""
    assert isinstance(exc, HTTPException)
    site = site_of(request)
    title = _TITLES.get(exc.status_code, "Something is not right")
    text = "The link may be old or mistyped. The home page has everything this site offers."
    if exc.status_code == 405:
        text = "This address only shows a page; use the buttons on it."
    response = site.message(request, title, text, status_code=exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def client_gone(request: Request, exc: Exception) -> Response:
    """A client that hangs up mid-request is routine on the internet: one line, no traceback."""
    client = request.client.host if request.client else "a client"
    path = redacted_path(request.url.path) or request.url.path
    log.info("%s %s: %s went away before sending the whole request", request.method, path, client)
    return Response(status_code=400)


async def server_error(request: Request, exc: Exception) -> Response:
    """Log the traceback for the operator; the reader gets a calm page, never the traceback."""
    log.error("error while serving %s", request.method, exc_info=exc)
    site = site_of(request)
    return site.message(
        request,
        "Something went wrong on our side",
        "Nothing was lost. Please try again in a few minutes.",
        status_code=500,
    )
