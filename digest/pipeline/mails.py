"""Single mails outside the daily run: confirmation, already subscribed, goodbye."""

from __future__ import annotations

from digest import store
from digest.deliver.transport import RelayError, SendResult
from digest.models import (
    DigestLinks,
    RenderedEmail,
    Subscriber,
    SubscriberStatus,
)
from digest.pipeline.context import Context, run_sync
from digest.pipeline.sending import envelope_for
from digest.tokens import Scope


def _send_one(
    ctx: Context, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> SendResult:
    results: list[SendResult] = []
    envelope = envelope_for(ctx, 0, to, rendered, links)
    try:
        run_sync(ctx.transport().send_many([envelope], results.append))
    except RelayError as exc:
        return SendResult(envelope.key, False, error=str(exc))
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
