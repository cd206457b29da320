"""Upkeep that keeps tables from growing without bound; `digest schedule` runs it with each fetch."""

from __future__ import annotations

from datetime import timedelta

from digest import store
from digest.pipeline.context import Context

RATE_EVENTS_KEPT = timedelta(days=2)


def housekeeping(ctx: Context) -> int:
    """Forget rate-limit events older than any limit looks at; returns how many rows went."""
    return store.prune_rate_events(ctx.engine, before=ctx.now() - RATE_EVENTS_KEPT)
