"""Upkeep that keeps tables from growing without bound; every run and scheduler pass calls it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from digest.pipeline.context import Context

RATE_EVENTS_KEPT = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows of each kind the upkeep deleted."""

    rate_events: int = 0
    deliveries: int = 0
    digests: int = 0
    mails: int = 0
    signups: int = 0


def housekeeping(ctx: Context) -> Pruned:
    """Forget what no rule looks at any more (the retention documented in docs/operations.md).

    Rate-limit events after any limit's window; finished deliveries, composed digests and single
    mails after `[delivery] keep_days` (each reader's newest stays); sign-ups never confirmed
    once their confirmation link (`[web] token_max_age_days`) has expired.
    """
    now = ctx.now()
    settings = ctx.settings
    kept_since = now - timedelta(days=settings.delivery.keep_days)
    deliveries, digests = ctx.store.retention.prune_digests(before=kept_since.date())
    return Pruned(
        rate_events=ctx.store.rate_limits.prune(before=now - RATE_EVENTS_KEPT),
        deliveries=deliveries,
        digests=digests,
        mails=ctx.store.retention.prune_mails(before=kept_since),
        signups=ctx.store.subscribers.purge_unconfirmed(
            before=now - timedelta(days=settings.web.token_max_age_days)
        ),
    )
