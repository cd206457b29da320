"""A reader's past digests on the web: one digest re-rendered from what it recommended, and the
list of the last 30 days ("View in browser", the reader's archive)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from digest.models import Digest, Subscriber
from digest.pipeline.composing import recorded_for_reader
from digest.pipeline.context import Context

ARCHIVE_DAYS = 30
"""How far back the archive lists digests (the reader's feed keeps the same span)."""


@dataclass(frozen=True, slots=True)
class ArchivedDigest:
    """One past digest in the archive list."""

    day: date
    papers: int
    top_title: str
    url: str


def recorded_digest(ctx: Context, subscriber: Subscriber, day: date) -> Digest | None:
    """The digest sent on `day`, exactly as composed for the mail (papers, order, matched terms,
    snippets, trending block, links), or None when none reached the reader that day or it is
    older than the archive keeps."""
    assert subscriber.id is not None
    if day < _oldest(ctx):
        return None
    sent = ctx.store.digests.feed_items(subscriber.id, since=day)
    if not any(item.digest_date == day for item in sent):
        return None
    composition = ctx.store.digests.get_many([(subscriber.id, day)]).get((subscriber.id, day))
    if composition is None:
        return None
    return recorded_for_reader(ctx, composition, subscriber)


def archive(ctx: Context, subscriber: Subscriber, token: str) -> list[ArchivedDigest]:
    """The reader's digests of the last ARCHIVE_DAYS days, newest first."""
    assert subscriber.id is not None
    by_day: dict[date, list[int]] = defaultdict(list)
    for item in ctx.store.digests.feed_items(subscriber.id, since=_oldest(ctx)):
        by_day[item.digest_date].append(item.paper_id)
    firsts = ctx.store.papers.by_ids([ids[0] for ids in by_day.values()])
    return [
        ArchivedDigest(
            day=day,
            papers=len(ids),
            top_title=firsts[ids[0]].title if ids[0] in firsts else "",
            url=ctx.urls.digest(token, day),
        )
        for day, ids in sorted(by_day.items(), reverse=True)
    ]


def _oldest(ctx: Context) -> date:
    return (ctx.now() - timedelta(days=ARCHIVE_DAYS)).date()
