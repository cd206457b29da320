"""Single mails outside the digests (confirmation, already subscribed, goodbye), from their queue.

The web sign-up and the CLI queue them in the same transaction as the change (store/mails.py);
this module sends what is queued: right away from the web and the CLI, and again from every
`digest run`, scheduler pass and worker, so a relay that was down loses none of them. A
confirmation older than the link lifetime is not sent: its link would no longer work.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime, timedelta

from digest import store
from digest.deliver.transport import Envelope, RelayError, SendResult, Transport
from digest.models import RenderedEmail, Subscriber, SubscriberStatus
from digest.pipeline.batch import envelope_for
from digest.pipeline.context import Context, run_sync
from digest.pipeline.recorder import backoff
from digest.pipeline.worker import take_back_leases, worker_id
from digest.tokens import Scope

log = logging.getLogger(__name__)

BATCH = 100


class MailError(Exception):
    """A single mail (confirmation, goodbye) could not be handed to the relay yet; it stays queued."""


def send_queued_mails(ctx: Context, transport: Transport | None = None) -> tuple[int, int]:
    """Send every due single mail; returns (sent, still queued or failed).

    Raises RelayError when the relay cannot be used at all (the mails stay queued).
    """
    mails = ctx.store.mails
    take_back_leases(ctx, mails, every_lease=False)
    owner = worker_id()
    sent = not_sent = 0
    while True:
        claims = mails.claim_batch(
            owner=owner,
            limit=BATCH,
            now=ctx.now(),
            lease_seconds=ctx.settings.delivery.lease_seconds,
        )
        if not claims:
            return sent, not_sent
        done, failed = _send_claims(ctx, claims, transport or ctx.transport(), owner)
        sent, not_sent = sent + done, not_sent + failed
        if failed:
            return sent, not_sent  # the relay is unhappy: leave the rest for the next pass


def _send_claims(
    ctx: Context, claims: list[store.MailClaim], transport: Transport, owner: str
) -> tuple[int, int]:
    now = ctx.now()
    lifetime = timedelta(days=ctx.settings.web.token_max_age_days)
    subscribers = ctx.store.subscribers.by_ids([c.subscriber_id for c in claims])
    envelopes: list[Envelope] = []
    by_id = {claim.id: claim for claim in claims}
    outcomes: list[store.Outcome] = []
    for claim in claims:
        subscriber = subscribers.get(claim.subscriber_id)
        reason = _stale(claim, subscriber, now - lifetime)
        if reason or subscriber is None:
            outcomes.append(store.Outcome(claim.id, claim.subscriber_id, reason or "reader gone"))
            continue
        envelopes.append(
            envelope_for(ctx, claim.id, subscriber.email, _render(ctx, claim, subscriber), None)
        )
    if outcomes:
        ctx.store.mails.fail(outcomes, now=now)
    results: list[SendResult] = []
    try:
        run_sync(transport.send_many(envelopes, results.append))
    finally:
        answered = {r.key for r in results}
        untried = [e.key for e in envelopes if e.key not in answered]
        if untried:
            ctx.store.mails.give_back(untried, owner=owner)
        ctx.store.mails.record(
            [
                store.Outcome(
                    id=r.key,
                    subscriber_id=by_id[r.key].subscriber_id,
                    error=None if r.ok else (r.error or "failed"),
                    retry_at=None if r.ok or r.permanent else now + backoff(by_id[r.key].attempts),
                )
                for r in results
            ],
            owner=owner,
            now=ctx.now(),
            max_attempts=ctx.settings.delivery.max_attempts,
            bounce_after=ctx.settings.delivery.bounce_after,
        )
    sent = sum(1 for r in results if r.ok)
    return sent, len(results) - sent


def _stale(claim: store.MailClaim, subscriber: Subscriber | None, oldest: datetime) -> str | None:
    """Why a queued mail should no longer go out (None: send it)."""
    if subscriber is None:
        return "the reader is gone"
    if claim.kind == store.MailKind.CONFIRMATION:
        if subscriber.status != SubscriberStatus.PENDING:
            return f"no longer needed: the reader is {subscriber.status}"
        if claim.created_at < oldest:
            return "the confirmation link would have expired; the reader can sign up again"
    if claim.kind == store.MailKind.GOODBYE and subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return "no longer needed: the reader subscribed again"
    return None


def _render(ctx: Context, claim: store.MailClaim, subscriber: Subscriber) -> RenderedEmail:
    assert subscriber.id is not None
    if claim.kind == store.MailKind.GOODBYE:
        return ctx.renderer.goodbye(subscriber.email, ctx.urls.home())
    if claim.kind == store.MailKind.ALREADY_SUBSCRIBED:
        return ctx.renderer.already_subscribed(subscriber.email, ctx.links(subscriber).preferences)
    version = ctx.store.subscribers.token_version(subscriber.id)
    token = ctx.signer.make(Scope.CONFIRM, subscriber.id, version, link=subscriber.link_secret)
    # The mail shows what confirming applies: the sign-up's profile, not the stored one.
    pending = ctx.store.subscribers.pending_preferences(subscriber.id)
    shown = subscriber if pending is None else replace(subscriber, **asdict(pending))
    return ctx.renderer.confirmation(subscriber.email, ctx.urls.confirm(token), subscriber=shown)


def send_mails_now(ctx: Context) -> None:
    """Try the queue at once (after a sign-up); raises MailError when the relay did not take them."""
    try:
        _sent, not_sent = send_queued_mails(ctx)
    except RelayError as exc:
        raise MailError(f"the relay is not taking mail: {exc}") from None
    if not_sent:
        raise MailError(f"{not_sent} mail(s) were not taken by the relay")
