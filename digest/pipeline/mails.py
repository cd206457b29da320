"""Single mails outside the daily run: confirmation, goodbye, and a profile's preview."""

from __future__ import annotations

from digest import ranking, store
from digest.deliver.transport import (
    SendResult,
)
from digest.models import (
    DigestLinks,
    Match,
    RenderedEmail,
    Subscriber,
    SubscriberStatus,
)
from digest.pipeline.composing import first_window
from digest.pipeline.context import Context, run_sync
from digest.pipeline.sending import envelope_for
from digest.tokens import Scope


def preview(ctx: Context, keywords: str, *, limit: int = 10) -> list[Match]:
    """Today's papers for a profile (raises ranking.ProfileError on a bad profile)."""
    ranking.validate_profile(keywords)
    now = ctx.now()
    papers = store.papers_seen_between(ctx.engine, first_window(ctx, now), now)
    if not papers:
        papers = store.list_papers(ctx.engine, limit=2000)
    [matches] = ranking.rank(
        papers, [keywords], settings=ctx.settings.ranking, corpus=ctx.corpus(papers), limit=limit
    )
    return matches


def _send_one(
    ctx: Context, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> SendResult:
    results: list[SendResult] = []
    envelope = envelope_for(ctx, 0, to, rendered, links)
    run_sync(ctx.transport().send_many([envelope], results.append))
    return results[0]


class MailError(Exception):
    """A single mail (confirmation, goodbye) could not be handed to the relay."""


def send_confirmation(ctx: Context, subscriber: Subscriber) -> None:
    """Send the double opt-in mail (or, for an active address, a note with its preferences link).

    Synchronous; from async code, call it in a worker thread.
    """
    assert subscriber.id is not None
    links = ctx.links(subscriber)
    if subscriber.status == SubscriberStatus.ACTIVE:
        rendered = ctx.renderer.already_subscribed(subscriber.email, links.preferences)
    else:
        version = store.token_version(ctx.engine, subscriber.id)
        token = ctx.signer.make(Scope.CONFIRM, subscriber.id, version)
        rendered = ctx.renderer.confirmation(
            subscriber.email, f"{ctx.settings.site.base_url}/confirm/{token}"
        )
    result = _send_one(ctx, subscriber.email, rendered, None)
    if not result.ok:
        raise MailError(f"could not send the confirmation to {subscriber.email}: {result.error}")


def send_goodbye(ctx: Context, subscriber: Subscriber) -> None:
    """Tell a reader they are unsubscribed, with a way back."""
    rendered = ctx.renderer.goodbye(subscriber.email, ctx.settings.site.base_url + "/")
    result = _send_one(ctx, subscriber.email, rendered, None)
    if not result.ok:
        raise MailError(f"could not send the goodbye mail to {subscriber.email}: {result.error}")
