"""The reader steers from a digest: "more / fewer like this" planned, applied and undone.

GET pages only plan (show what would change); POST applies. Each change is recorded with the
term weights before and after, so the preferences page can undo it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from digest import ranking, store
from digest.models import Paper, Subscriber
from digest.pipeline.context import Context

LOOKBACK_DAYS = 60
"""How far back a paper's matched terms are looked up among the reader's digests."""


class SteerError(Exception):
    """A change cannot be made; the message says why, for the reader."""


@dataclass(frozen=True, slots=True)
class SteerPlan:
    """What pressing the button would do to the reader's profile."""

    paper: Paper
    direction: str
    edits: tuple[ranking.TermEdit, ...]
    before: str
    after: str


def plan_steer(ctx: Context, subscriber: Subscriber, paper_id: int, direction: str) -> SteerPlan:
    """The change "more" or "fewer like this" would make for one paper (changes nothing)."""
    assert subscriber.id is not None
    paper = ctx.store.papers.by_ids([paper_id]).get(paper_id)
    if paper is None:
        raise SteerError("That paper is no longer in our records.")
    since = (ctx.now() - timedelta(days=LOOKBACK_DAYS)).date()
    items = ctx.store.digests.feed_items(subscriber.id, since=since)
    matched = next((i.matched for i in items if i.paper_id == paper_id), ())
    try:
        edits = ranking.steer(subscriber.keywords, matched, direction, paper, ctx.corpus())
    except ranking.ProfileError as exc:
        raise SteerError(f"Your profile cannot be changed this way: {exc}") from None
    if not edits:
        raise SteerError("Your profile already says this; nothing would change.")
    after = ranking.apply_edits(subscriber.keywords, edits)
    _check(after)
    return SteerPlan(paper, direction, tuple(edits), subscriber.keywords, after)


def apply_steer(ctx: Context, subscriber: Subscriber, plan: SteerPlan) -> int:
    """Save the planned change (raises store.ProfileMoved if the profile changed meanwhile)."""
    assert subscriber.id is not None
    return ctx.store.profile_changes.record(
        subscriber.id,
        before=plan.before,
        after=plan.after,
        paper_id=plan.paper.id,
        direction=plan.direction,
        edits=[(e.term, e.before, e.after) for e in plan.edits],
        now=ctx.now(),
    )


def undo_steer(ctx: Context, subscriber: Subscriber, change_id: int) -> bool:
    """Undo one recorded change, term by term, on the profile as it is now."""
    assert subscriber.id is not None
    change = ctx.store.profile_changes.get(subscriber.id, change_id)
    if change is None or change.undone_at is not None:
        return False
    edits = [ranking.TermEdit(t, b, a).undone() for t, b, a in change.edits]
    after = ranking.apply_edits(subscriber.keywords, edits)
    _check(after)
    return ctx.store.profile_changes.undo(
        subscriber.id, change_id, before=subscriber.keywords, after=after, now=ctx.now()
    )


def describe(change: store.ProfileChange) -> str:
    """One line for the preferences page: what a change did."""
    return "; ".join(ranking.TermEdit(t, b, a).describe() for t, b, a in change.edits)


def _check(profile: str) -> None:
    try:
        ranking.validate_profile(profile)
    except ranking.ProfileError as exc:
        raise SteerError(f"The changed profile would not work: {exc}") from None
