"""One claimed batch turned into work: each digest composed once, then rendered per channel.

The real run and the dry run both come through here; the dry run records nothing (its rows
may not even exist yet) and its envelopes go to a preview transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digest import store
from digest.deliver.message import MessageError, build_message
from digest.deliver.transport import Envelope
from digest.models import Channel, Digest, DigestLinks, RenderedEmail, Subscriber, SubscriberStatus
from digest.pipeline.composing import compose_once
from digest.pipeline.context import Context
from digest.pipeline.feeding import write_reader_feeds
from digest.pipeline.report import Key, Outcome, Tally


@dataclass(frozen=True, slots=True)
class Pending:
    """A claimed email delivery with its message, waiting for the relay's answer."""

    claim: store.Claim
    email: str
    message_id: str

    @property
    def key(self) -> Key:
        """The reader and day this message belongs to."""
        return (self.claim.subscriber_id, self.claim.digest_date)


@dataclass
class Prepared:
    """A claimed batch turned into work: envelopes to send (rows without one are settled)."""

    envelopes: list[Envelope] = field(default_factory=list)
    pending: dict[int, Pending] = field(default_factory=dict)


Prepare = Callable[[Context, Sequence[store.Claim], Tally], Prepared]
"""Turns claimed rows into envelopes (compose and render by default; the bench passes ready mail)."""


def prepare_batch(
    ctx: Context,
    claims: Sequence[store.Claim],
    report: Tally,
    *,
    dry: bool = False,
    subscribers: dict[int, Subscriber] | None = None,
) -> Prepared:
    """Compose (once) and render a claimed batch; settles empty digests, feed copies and the gone.

    Dry (`digest run --dry-run`), nothing is recorded; `subscribers` stand in for stored readers
    (the config's examples).
    """
    prepared = Prepared()
    now = ctx.now()
    if subscribers is None:
        subscribers = ctx.store.subscribers.by_ids([c.subscriber_id for c in claims])
    live = [c for c in claims if _is_active(subscribers.get(c.subscriber_id))]
    _settle_gone(ctx, [c for c in claims if c not in live], subscribers, report, dry=dry)
    digests = compose_once(
        ctx, [(c.subscriber_id, c.digest_date) for c in live], subscribers, record=not dry
    )
    by_key: dict[Key, list[store.Claim]] = {}
    for claim in live:
        by_key.setdefault((claim.subscriber_id, claim.digest_date), []).append(claim)
    empty: list[int] = []
    feeds: list[store.Claim] = []
    fed: list[Subscriber] = []
    unsendable: list[store.Outcome] = []
    for key, group in by_key.items():
        digest = digests[key]
        subscriber = subscribers[key[0]]
        report.expect(key, subscriber.email, {c.channel for c in group}, digest)
        for claim in group:
            if digest is None:
                empty.append(claim.id)
                report.settle(key, claim.channel, Outcome.EMPTY)
            elif claim.channel == Channel.FEED:
                feeds.append(claim)
                report.settle(key, claim.channel, Outcome.WOULD_SEND if dry else Outcome.SENT)
                fed.append(subscriber)
            else:
                try:
                    envelope = render_envelope(ctx, claim.id, digest)
                except MessageError as exc:
                    # One address the message cannot carry fails alone.
                    unsendable.append(store.Outcome(claim.id, claim.subscriber_id, str(exc)))
                    report.settle(key, claim.channel, Outcome.FAILED, str(exc))
                    continue
                prepared.envelopes.append(envelope)
                prepared.pending[claim.id] = Pending(claim, subscriber.email, envelope.message_id)
    if not dry:
        deliveries = ctx.store.deliveries
        deliveries.mark_empty(empty, now=now, reason="nothing matched the profile")
        deliveries.mark_sent([c.id for c in feeds], now=now)
        deliveries.fail(unsendable, now=now)
        if fed and ctx.settings.delivery.feeds_dir:
            write_reader_feeds(ctx, fed, Path(ctx.settings.delivery.feeds_dir))
    return prepared


def _is_active(subscriber: Subscriber | None) -> bool:
    return subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE


def _settle_gone(
    ctx: Context,
    gone: Sequence[store.Claim],
    subscribers: dict[int, Subscriber],
    report: Tally,
    *,
    dry: bool,
) -> None:
    """Rows whose reader left (or was deleted) since planning fail, blaming nobody."""
    failures = []
    by_key: dict[Key, list[store.Claim]] = {}
    for claim in gone:
        by_key.setdefault((claim.subscriber_id, claim.digest_date), []).append(claim)
    for key, group in by_key.items():
        subscriber = subscribers.get(key[0])
        reason = (
            "subscriber is gone" if subscriber is None else f"subscriber is {subscriber.status}"
        )
        report.expect(
            key, subscriber.email if subscriber else "?", {c.channel for c in group}, None
        )
        for claim in group:
            failures.append(store.Outcome(claim.id, claim.subscriber_id, reason))
            report.settle(key, claim.channel, Outcome.FAILED, reason)
    if failures and not dry:
        ctx.store.deliveries.fail(failures, now=ctx.now())


def render_envelope(ctx: Context, key: int, digest: Digest) -> Envelope:
    """The digest as a ready-to-send message for its subscriber."""
    rendered = ctx.renderer.digest(digest)
    return envelope_for(ctx, key, digest.subscriber.email, rendered, digest.links)


def envelope_for(
    ctx: Context, key: int, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> Envelope:
    """The rendered mail as a ready-to-send envelope (MIME bytes, DKIM-signed when configured)."""
    message = build_message(
        rendered,
        to=to,
        email=ctx.settings.email,
        site=ctx.settings.site,
        unsubscribe_url=links.unsubscribe if links and links.unsubscribe else None,
        unsubscribe_mailto=links.unsubscribe_mailto if links and links.unsubscribe_mailto else None,
        dkim=ctx.dkim,
    )
    return Envelope(
        key=key, sender=ctx.sender, recipient=to, data=message.data, message_id=message.message_id
    )
