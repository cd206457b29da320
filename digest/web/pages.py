"""The reader's pages: home and subscribe, confirm, preferences, unsubscribe.

GET only shows a page; every change of state is a POST (mail scanners follow every link).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from functools import partial
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from digest import pipeline, ranking, store
from digest.models import Match, Subscriber, SubscriberStatus
from digest.tokens import Scope, TokenData, TokenError, TokenExpired
from digest.web.forms import FormState, read_form, values_of
from digest.web.limits import Busy, inbox_of
from digest.web.site import Site, site_of

log = logging.getLogger("digest.web")

MAX_FORM_FIELDS = 20


class BadLink(Exception):
    """A token in a URL is forged, expired, used up, or names nobody; the message is for the reader."""


async def home(request: Request) -> Response:
    """The front page: what the service sends, and the subscribe form."""
    site = site_of(request)
    values = values_of(default_preferences(site))
    values.update(email="", keywords="")
    return site.page(request, "home.html", {"values": values, "errors": {}, "preview": None})


async def subscribe(request: Request) -> Response:
    """Preview a profile, or start a double opt-in; the answer never says if the address was known."""
    site = site_of(request)
    form = await read_post(request)
    refused = site.csrf.check(request, form)
    if refused:
        return site.message(request, "Please try again", refused, status_code=403)
    wants_preview = form.get("action") == "preview"
    state = read_form(
        form, defaults=default_preferences(site), with_email=not wants_preview, with_channels=False
    )
    network = site.network(request)
    if wants_preview or not state.ok:
        preview = None
        if "keywords" not in state.errors:
            if not site.limits.previews.allow(network):
                return site.too_many(request, "Too many previews", "previews")
            try:
                preview = await ranked_preview(
                    site, state.values["keywords"], site.ctx.settings.digest.max_papers
                )
            except Busy:
                return site.busy(request)
        status = 200 if wants_preview or state.ok else 400
        return site.page(
            request,
            "home.html",
            {"values": state.values, "errors": state.errors, "preview": preview},
            status_code=status,
        )
    outcome = await run_in_threadpool(start_subscription, site, state, network)
    if outcome == "ip-limit":
        return site.too_many(request, "Too many sign-ups", "sign-ups")
    if outcome == "domain-limit":
        domain = state.email.rpartition("@")[2]
        return site.message(
            request,
            "Too many sign-ups",
            f"Too many sign-ups for addresses at {domain} came in the last hour. "
            "Please try again later.",
            status_code=429,
        )
    days = site.ctx.settings.web.token_max_age_days
    response = site.page(request, "check_inbox.html", {"email": state.email, "days": days})
    if isinstance(outcome, Subscriber):
        response.background = BackgroundTask(deliver_queued_mail, site)
    return response


def start_subscription(
    site: Site, state: FormState, network: str | None
) -> Subscriber | str | None:
    """Record a sign-up and return whom to mail, "ip-limit", "domain-limit", or None (address
    limit: stay quiet). An unknown network is no bucket: the other limits still hold."""
    ctx, limits, now = site.ctx, site.ctx.settings.web, site.ctx.now()
    assert state.preferences is not None
    hour, day = timedelta(hours=1), timedelta(days=1)
    if network is not None and not ctx.store.rate_limits.hit(
        f"subscribe-ip:{network}",
        limit=limits.subscribe_per_ip_per_hour,
        window=hour,
        now=now,
    ):
        return "ip-limit"
    inbox = inbox_of(state.email)
    if not ctx.store.rate_limits.hit(
        f"subscribe-address:{hashed(inbox)}",
        limit=limits.subscribe_per_address_per_day,
        window=day,
        now=now,
    ):
        log.info("subscribe: per-address limit reached; no mail sent")
        return None
    if not ctx.store.rate_limits.hit(
        f"subscribe-domain:{hashed(inbox.rpartition('@')[2])}",
        limit=limits.subscribe_per_domain_per_hour,
        window=hour,
        now=now,
    ):
        log.info("subscribe: per-domain limit reached; no mail sent")
        return "domain-limit"
    try:
        existing: Subscriber | None = ctx.store.subscribers.get(email=state.email)
    except store.UnknownSubscriber:
        existing = None
    if existing is not None and existing.status == SubscriberStatus.ACTIVE:
        # A stranger must not change an active reader's profile: the mail sends them their link.
        assert existing.id is not None
        ctx.store.mails.queue(existing.id, store.MailKind.ALREADY_SUBSCRIBED, now=now)
        return existing
    subscriber, _ = ctx.store.subscribers.add(
        state.email, state.preferences, confirmed=False, now=now, send_confirmation=True
    )
    return subscriber


def hashed(value: str) -> str:
    """What a rate bucket holds instead of an address or domain (the table is no place for them)."""
    return hashlib.sha256(value.encode()).hexdigest()[:40]


def deliver_queued_mail(site: Site) -> None:
    """Send the queued mail after the response has gone (so timing tells nothing either).

    The mail was queued with the change; if the relay does not take it now, the next
    `digest run`, scheduler pass or worker sends it.
    """
    try:
        pipeline.send_mails_now(site.ctx)
    except pipeline.MailError as exc:
        log.warning("mail stays queued for the next run: %s", exc)
    except Exception as exc:  # the page has answered; the queue keeps the mail
        log.error("mail stays queued for the next run: %s: %s", type(exc).__name__, exc)


async def confirm(request: Request) -> Response:
    """GET shows a button; POST activates the subscription once, then shows the reader's links."""
    site = site_of(request)
    token = request.path_params["token"]
    try:
        data = read_token(site, Scope.CONFIRM, token)
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    if request.method in ("GET", "HEAD"):
        return site.page(request, "confirm.html", {})
    refused = site.csrf.check(request, await read_post(request))
    if refused:
        return site.message(request, "Please try again", refused, status_code=403)
    ctx = site.ctx
    done = await run_in_threadpool(
        partial(ctx.store.subscribers.confirm, link=data.link),
        data.subscriber_id,
        data.version,
        now=ctx.now(),
    )
    if not done:
        return site.message(
            request,
            "This link was already used",
            "Your subscription is already confirmed, or a newer link was sent. "
            "Every digest carries a link to your preferences.",
            status_code=410,
        )
    subscriber = await run_in_threadpool(ctx.store.subscribers.get, id=data.subscriber_id)
    return site.page(
        request, "confirmed.html", {"subscriber": subscriber, "links": ctx.links(subscriber)}
    )


async def preferences(request: Request) -> Response:
    """Edit keywords, schedule, size and channels; preview today's digest; rotate the feed URL."""
    site = site_of(request)
    try:
        data = read_token(site, Scope.PREFERENCES, request.path_params["token"])
        subscriber = await run_in_threadpool(find_subscriber, site, data, Scope.PREFERENCES)
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    if request.method in ("GET", "HEAD"):
        if not site.limits.preference_pages.allow(site.network(request)):
            return site.too_many(request, "Too many page views", "preference page views")
        notice = {
            "saved": "Your preferences are saved.",
            "rotated": "Your feed has a new URL.",
            "signed_out": "Every earlier link and feed URL is signed out. This page has a new "
            "address: bookmark it, or use the links in your next digest.",
            "steered": "Your profile is changed; the next digest follows it. Undo it below.",
            "undone": "The change is undone.",
        }
        shown = [text for key, text in notice.items() if key in request.query_params]
        return await preferences_page(request, site, subscriber, notice=" ".join(shown))
    form = await read_post(request)
    refused = site.csrf.check(request, form)
    if refused:
        return site.message(request, "Please try again", refused, status_code=403)
    action = form.get("action", "save")
    assert subscriber.id is not None
    if action == "rotate_feed":
        await run_in_threadpool(site.ctx.store.subscribers.rotate_feed_token, subscriber.id)
        return RedirectResponse(f"{request.url.path}?rotated=1", status_code=303)
    if action == "sign_out":
        # A forwarded digest or a shared link loses its power; the reader moves to the new page.
        renewed = await run_in_threadpool(site.ctx.store.subscribers.sign_out_links, subscriber.id)
        new_page = site.ctx.links(renewed).preferences
        return RedirectResponse(f"{new_page}?signed_out=1", status_code=303)
    if action == "undo":
        return await undo_change(request, site, subscriber, str(form.get("change", "")))
    state = read_form(
        form, defaults=stored_preferences(subscriber), with_email=False, with_channels=True
    )
    if action == "preview" or not state.ok:
        return await preferences_page(
            request,
            site,
            subscriber,
            state=state,
            notice="Preview only: nothing is saved until you press Save." if state.ok else "",
            status_code=200 if state.ok else 400,
        )
    assert state.preferences is not None
    await run_in_threadpool(
        site.ctx.store.subscribers.update_preferences, subscriber.id, state.preferences
    )
    return RedirectResponse(f"{request.url.path}?saved=1", status_code=303)


async def preferences_page(
    request: Request,
    site: Site,
    subscriber: Subscriber,
    *,
    state: FormState | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    """The preferences form, filled from a submitted form or the stored subscriber."""
    values = state.values if state else values_of(stored_preferences(subscriber))
    errors = state.errors if state else {}
    preview = None
    if "keywords" not in errors:
        limit = subscriber.max_papers
        raw = str(values.get("max_papers") or "").strip()
        if raw and "max_papers" not in errors:  # read_form accepted it: a number from 1 to 100
            limit = int(raw)
        try:
            preview = await ranked_preview(site, values["keywords"], limit)
        except Busy:
            return site.busy(request)
    assert subscriber.id is not None
    changes = await run_in_threadpool(site.ctx.store.profile_changes.recent, subscriber.id)
    context: dict[str, Any] = {
        "subscriber": subscriber,
        "values": values,
        "errors": errors,
        "preview": preview,
        "notice": notice,
        "links": site.ctx.links(subscriber),
        "changes": [(change, pipeline.describe(change)) for change in changes],
        "archive_url": site.ctx.urls.archive(
            site.ctx.signer.make(Scope.DIGEST, subscriber.id, link=subscriber.link_secret)
        ),
    }
    return site.page(request, "preferences.html", context, status_code=status_code)


async def undo_change(
    request: Request, site: Site, subscriber: Subscriber, change: str
) -> Response:
    """Undo one "more / fewer like this" change, then show the preferences again."""
    if not change.isdigit():
        return site.message(
            request, "Nothing to undo", "That change was not found.", status_code=400
        )
    try:
        done = await run_in_threadpool(pipeline.undo_steer, site.ctx, subscriber, int(change))
    except (pipeline.SteerError, store.ProfileMoved) as exc:
        return site.message(request, "Nothing was undone", str(exc), status_code=409)
    if not done:
        return site.message(
            request, "Nothing to undo", "That change was already undone.", status_code=409
        )
    return RedirectResponse(f"{request.url.path}?undone=1", status_code=303)


async def unsubscribe(request: Request) -> Response:
    """GET shows one button; POST unsubscribes at once (RFC 8058 one-click included)."""
    site = site_of(request)
    try:
        data = read_token(site, Scope.UNSUBSCRIBE, request.path_params["token"])
        subscriber = await run_in_threadpool(find_subscriber, site, data, Scope.UNSUBSCRIBE)
    except BadLink as exc:
        return bad_link(request, site, str(exc))
    if request.method in ("GET", "HEAD"):
        return site.page(request, "unsubscribe.html", {"subscriber": subscriber})
    form = await read_post(request)
    ctx = site.ctx
    if form.get("List-Unsubscribe") == "One-Click":
        # RFC 8058: the mail provider posts this without cookies; the signed URL is the proof.
        await run_in_threadpool(ctx.store.subscribers.unsubscribe, id=subscriber.id, now=ctx.now())
        return PlainTextResponse("You are unsubscribed.\n")
    refused = site.csrf.check(request, form)
    if refused:
        return site.message(request, "Please try again", refused, status_code=403)
    changed = await run_in_threadpool(
        partial(ctx.store.subscribers.unsubscribe, goodbye=True), id=subscriber.id, now=ctx.now()
    )
    response = site.page(request, "unsubscribed.html", {"subscriber": subscriber})
    if changed:
        # The goodbye (with a way back) was queued with the change; only when asked on the page.
        response.background = BackgroundTask(deliver_queued_mail, site)
    return response


# ---------------------------------------------------------------- helpers


async def read_post(request: Request) -> FormData:
    """The submitted form (no files, a bounded number of fields)."""
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def read_token(site: Site, scope: Scope, token: str) -> TokenData:
    """The verified token, or BadLink with a sentence for the reader."""
    max_age = None
    if scope is Scope.CONFIRM:
        max_age = site.ctx.settings.web.token_max_age_days * 86400
    try:
        return site.ctx.signer.read(scope, token, max_age=max_age)
    except TokenExpired:
        raise BadLink(
            "This link has expired. Subscribe again from the home page to get a fresh one."
        ) from None
    except TokenError:
        raise BadLink(
            "This link is not valid. Check that it was copied whole from the email."
        ) from None


def find_subscriber(site: Site, data: TokenData, scope: Scope) -> Subscriber:
    """The subscriber a genuine token names, or BadLink if they are gone or the link was signed
    out (their link secret changed since). An unsubscribe link keeps answering a reader who is
    unsubscribed, so a mail provider's repeated one-click POST still gets its 200."""
    try:
        subscriber = site.ctx.store.subscribers.get(id=data.subscriber_id)
    except store.UnknownSubscriber:
        raise BadLink("This link no longer leads anywhere.") from None
    if hmac.compare_digest(subscriber.link_secret.encode(), data.link.encode()):
        return subscriber
    if scope is Scope.UNSUBSCRIBE and subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return subscriber
    raise BadLink("This link was signed out. The newest digest in your inbox has links that work.")


def bad_link(request: Request, site: Site, text: str) -> Response:
    """The friendly page for a token that cannot be used."""
    return site.message(request, "This link cannot be used", text, status_code=400)


def default_preferences(site: Site) -> store.Preferences:
    """A new reader's preferences, from the operator's [digest] settings."""
    digest = site.ctx.settings.digest
    return store.Preferences(
        keywords="",
        timezone=digest.timezone,
        send_hour=digest.send_hour,
        max_papers=digest.max_papers,
    )


def stored_preferences(subscriber: Subscriber) -> store.Preferences:
    """A subscriber's current preferences."""
    return store.Preferences(
        keywords=subscriber.keywords,
        timezone=subscriber.timezone,
        send_hour=subscriber.send_hour,
        frequency=subscriber.frequency,
        send_weekday=subscriber.send_weekday,
        max_papers=subscriber.max_papers,
        channels=subscriber.channels,
    )


async def ranked_preview(site: Site, keywords: str, limit: int) -> list[Match] | None:
    """preview_for in a worker thread, within the bound on concurrent rankings (or Busy)."""
    async with site.limits.gate.slot():
        return await run_in_threadpool(preview_for, site, keywords, limit)


def preview_for(site: Site, keywords: str, limit: int) -> list[Match] | None:
    """Today's papers for a profile, or None when it cannot be ranked."""
    if not keywords.strip():
        return None
    try:
        return pipeline.preview(site.ctx, keywords, limit=limit)
    except ranking.ProfileError:
        return None
