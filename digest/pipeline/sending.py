"""Deliver stage: claim pending rows with a lease, render, send, record each result at once."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from digest import store
from digest.deliver.message import build_message
from digest.deliver.transport import (
    Envelope,
    SendResult,
    Transport,
)
from digest.models import (
    Channel,
    Digest,
    DigestLinks,
    Match,
    RenderedEmail,
    Subscriber,
)
from digest.pipeline.composing import Window, compose, first_window
from digest.pipeline.context import Context, Progress


@dataclass
class DeliveryOutcome:
    """What happened to one delivery in this run."""

    email: str
    channel: str
    status: str
    digest: Digest | None = None
    error: str | None = None


@dataclass
class SendReport:
    """What a sending pass did."""

    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    released: int = 0

    def count(self, status: str) -> int:
        """How many deliveries ended with this status."""
        return sum(1 for o in self.outcomes if o.status == status)


def worker_id() -> str:
    """Names this process in leases (host and pid), for operators reading the table."""
    return f"{socket.gethostname()}:{os.getpid()}"


def send_pending(
    ctx: Context,
    transport: Transport | None = None,
    *,
    owner: str | None = None,
    progress: Progress | None = None,
    stop_when_idle: bool = True,
) -> SendReport:
    """Claim, rank, render and send pending deliveries until none is left (or one pass when looping).

    Each row becomes sent the moment the relay accepts its message, committed at once.
    """
    transport = transport or ctx.transport()
    owner = owner or worker_id()
    report = SendReport(released=store.release_expired(ctx.engine, now=ctx.now()))
    _ = ctx.renderer  # compile templates before the first claim: a broken template sends nothing
    after = 0
    while True:
        claims = store.claim_deliveries(
            ctx.engine,
            owner=owner,
            limit=ctx.settings.delivery.batch_size,
            now=ctx.now(),
            lease_seconds=ctx.settings.delivery.lease_seconds,
            after_id=after,
        )
        if not claims:
            if after == 0:
                break
            after = 0
            continue
        after = claims[-1].id
        report.outcomes.extend(process_claims(ctx, claims, transport))
        if progress:
            progress("sending", len(report.outcomes), len(report.outcomes))
        if not stop_when_idle:
            break
    return report


def process_claims(
    ctx: Context, claims: Sequence[store.Claim], transport: Transport
) -> list[DeliveryOutcome]:
    """Rank, render and send one claimed batch, recording each row's result as it comes."""
    engine = ctx.engine
    subscribers = store.subscribers_by_ids(engine, [c.subscriber_id for c in claims])
    live = [c for c in claims if c.subscriber_id in subscribers]
    outcomes: list[DeliveryOutcome] = []
    for claim in claims:
        if claim.subscriber_id not in subscribers:
            store.mark_failed(
                engine, claim.id, error="subscriber is gone", retry_at=None, max_attempts=0
            )
    by_channel: dict[str, list[store.Claim]] = defaultdict(list)
    for claim in live:
        by_channel[claim.channel].append(claim)
    sent_before = store.sent_paper_ids(engine, [c.subscriber_id for c in live])
    for channel, group in by_channel.items():
        previous: dict[tuple[date, int], datetime] = {}
        for day in {c.digest_date for c in group}:
            ids = [c.subscriber_id for c in group if c.digest_date == day]
            for sid, cutoff in store.previous_cutoffs(
                engine, ids, channel=channel, before=day
            ).items():
                previous[(day, sid)] = cutoff
        members = [subscribers[c.subscriber_id] for c in group]
        windows = [
            Window(
                previous.get((c.digest_date, c.subscriber_id)) or first_window(ctx, c.cutoff),
                c.cutoff,
            )
            for c in group
        ]
        digests = _compose_by_day(ctx, group, members, windows, sent_before)
        outcomes.extend(_deliver_group(ctx, channel, group, members, digests, transport))
    return outcomes


def _compose_by_day(
    ctx: Context,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    windows: Sequence[Window],
    sent_before: dict[int, set[int]],
) -> list[Digest | None]:
    digests: list[Digest | None] = [None] * len(group)
    days: dict[date, list[int]] = defaultdict(list)
    for index, claim in enumerate(group):
        days[claim.digest_date].append(index)
    for day, indexes in days.items():
        composed = compose(
            ctx,
            [members[i] for i in indexes],
            [windows[i] for i in indexes],
            digest_date=day,
            exclude=[sent_before.get(group[i].subscriber_id, set()) for i in indexes],
        )
        for index, digest in zip(indexes, composed, strict=True):
            digests[index] = digest
    return digests


def _deliver_group(
    ctx: Context,
    channel: str,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    digests: Sequence[Digest | None],
    transport: Transport,
) -> list[DeliveryOutcome]:
    engine, now = ctx.engine, ctx.now()
    outcomes: list[DeliveryOutcome] = []
    to_send: list[tuple[store.Claim, Digest]] = []
    items: dict[int, Sequence[Match]] = {}
    for claim, subscriber, digest in zip(group, members, digests, strict=True):
        if digest is None:
            store.mark_empty(engine, claim.id, now=now, reason="nothing matched the profile")
            outcomes.append(DeliveryOutcome(subscriber.email, channel, "empty"))
            continue
        items[claim.id] = digest.matches
        to_send.append((claim, digest))
    store.save_many_items(engine, items)
    if channel == Channel.FEED:
        store.mark_many_sent(engine, [(claim.id, None) for claim, _ in to_send], now=now)
        outcomes.extend(DeliveryOutcome(d.subscriber.email, channel, "sent", d) for _, d in to_send)
        return outcomes
    return outcomes + _send_emails(ctx, to_send, transport)


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


def _send_emails(
    ctx: Context, to_send: Sequence[tuple[store.Claim, Digest]], transport: Transport
) -> list[DeliveryOutcome]:
    engine, settings = ctx.engine, ctx.settings.delivery
    envelopes = [render_envelope(ctx, claim.id, digest) for claim, digest in to_send]
    by_key = {claim.id: (claim, digest) for claim, digest in to_send}
    message_ids = {e.key: e.message_id for e in envelopes}
    outcomes: list[DeliveryOutcome] = []

    def record(result: SendResult) -> None:
        claim, digest = by_key[result.key]
        email = digest.subscriber.email
        if result.ok:
            store.mark_sent(engine, claim.id, now=ctx.now(), message_id=message_ids[result.key])
            outcomes.append(DeliveryOutcome(email, Channel.EMAIL, "sent", digest))
            return
        retry_at = None
        if not result.permanent:
            retry_at = ctx.now() + timedelta(minutes=5 * 2 ** max(claim.attempts - 1, 0))
        status = store.mark_failed(
            engine,
            claim.id,
            error=result.error or "failed",
            retry_at=retry_at,
            max_attempts=settings.max_attempts,
        )
        if result.permanent:
            store.record_bounce(engine, claim.subscriber_id, bounce_after=settings.bounce_after)
        outcomes.append(DeliveryOutcome(email, Channel.EMAIL, status, digest, result.error))

    asyncio.run(transport.send_many(envelopes, record))
    return outcomes
