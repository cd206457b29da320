"""Plain records that cross layers: papers, subscribers, matches and digests.

They carry data only; the store turns rows into them, ranking and rendering consume them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class SubscriberStatus(StrEnum):
    """Where a subscriber is in their life cycle."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class DeliveryStatus(StrEnum):
    """Where one delivery (subscriber, digest date, channel) is in its life cycle."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EMPTY = "empty"


class Channel(StrEnum):
    """How a digest reaches a subscriber."""

    EMAIL = "email"
    FEED = "feed"


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Weekday names in `date.weekday()` order: a weekly reader's `send_weekday` indexes this."""


def parse_weekday(value: str | int) -> int:
    """The weekday number (Monday 0) for a name ("monday", "Mon") or a number 0-6; ValueError else."""
    if isinstance(value, int) or value.strip().isdigit():
        number = int(value)
        if 0 <= number <= 6:
            return number
    else:
        text = value.strip().lower()
        for number, name in enumerate(WEEKDAYS):
            if len(text) >= 3 and name.startswith(text):
                return number
    raise ValueError(f"{value!r} is not a weekday (monday ... sunday, or 0-6 with Monday 0)")


KEY_MAX_CHARS = 500
"""The longest paper key stored as is; a longer one (a feed's tracking-laden link) is shortened
to a stable form by the sources, so every database takes it."""


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper, keyed by its canonical identity (arXiv id without version, else entry id or link)."""

    key: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    url: str = ""
    pdf_url: str | None = None
    categories: tuple[str, ...] = ()
    published_at: datetime | None = None
    first_seen_at: datetime | None = None
    upvotes: int | None = None
    sources: tuple[str, ...] = ()
    id: int | None = None
    affiliations: tuple[str, ...] = ()
    """One per author ("" where the feed named none), or empty when the feed named none at all."""

    def __hash__(self) -> int:
        # Papers key the render and snippet caches, hashed once per reader per paper: by key
        # alone (equal papers share it) instead of every field, abstract and author tuple included.
        return hash(self.key)


def merge_papers(old: Paper, new: Paper) -> Paper:
    """The better of two records of one paper, field by field (never empty over filled).

    The one merging rule: a feed listing a paper twice, and a fetch meeting a stored paper.
    """
    authors = new if len(new.authors) > len(old.authors) else old
    return Paper(
        key=old.key,
        title=_better_title(old, new),
        abstract=_longer(old.abstract, new.abstract),
        authors=authors.authors,
        affiliations=authors.affiliations or _same_people(authors, old, new),
        url=_better_url(old.url, new.url),
        pdf_url=old.pdf_url or new.pdf_url,
        categories=_union(old.categories, new.categories),
        published_at=_earliest(old.published_at, new.published_at),
        first_seen_at=_earliest(old.first_seen_at, new.first_seen_at),
        upvotes=_max_opt(old.upvotes, new.upvotes),
        sources=_union(old.sources, new.sources),
        id=old.id,
    )


def _same_people(chosen: Paper, old: Paper, new: Paper) -> tuple[str, ...]:
    """The other record's affiliations, when it lists the very same authors."""
    other = new if chosen is old else old
    return other.affiliations if other.authors == chosen.authors else ()


def _better_title(old: Paper, new: Paper) -> str:
    """Keep the stored title unless it is empty or the new one comes from arXiv itself.

    Aggregators rewrite titles (LaTeX flattened, say); letting the last fetch win would flip a
    paper's title with the order sources are fetched in.
    """
    if not old.title or (new.title and "arxiv.org/" in new.url and "arxiv.org/" not in old.url):
        return new.title or old.title
    return old.title


def _longer(old: str, new: str) -> str:
    return new if len(new.strip()) > len(old.strip()) else old


def _better_url(old: str, new: str) -> str:
    if not old:
        return new
    if new and "arxiv.org/abs/" in new and "arxiv.org/abs/" not in old:
        return new
    return old


def _union(old: Iterable[str], new: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*old, *new]))


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _max_opt(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A reader and what they asked for."""

    email: str
    keywords: str
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    timezone: str = "UTC"
    send_hour: int = 7
    frequency: str = "daily"
    max_papers: int = 10
    channels: tuple[str, ...] = ("email", "feed")
    send_weekday: int = 0
    """For weekly readers, the day of the week their digest goes out (Monday 0)."""
    feed_token: str = ""
    id: int | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    link_secret: str = ""
    """Mixed into the reader's signed links; rotating it signs every old link out."""


@dataclass(frozen=True, slots=True)
class Match:
    """A paper recommended for one profile: its score and the profile terms that matched it."""

    paper: Paper
    score: float
    matched: tuple[str, ...] = ()
    partial: bool = False
    """No interest matched in full, only part of a multi-word one (`matched` names it)."""
    snippet: Snippet | None = None
    """The abstract's sentences where the matched terms occur, with the terms marked."""


@dataclass(frozen=True, slots=True)
class Snippet:
    """A passage of a paper's abstract and the character ranges in it that matched the profile."""

    text: str
    marks: tuple[tuple[int, int], ...] = ()
    """(start, end) offsets into `text`, ascending and not overlapping."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A feed that was (or could not be) fetched for a digest, as the reader should hear of it."""

    name: str
    """The source's display title (its configured `title`, else its site), never the internal name."""
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything needed to render one subscriber's digest for one day."""

    subscriber: Subscriber
    digest_date: date
    matches: tuple[Match, ...]
    trending: tuple[Match, ...] = ()
    failed_sources: tuple[SourceStatus, ...] = ()
    links: DigestLinks = field(default_factory=lambda: DigestLinks())
    fallback: bool = False
    """True when nothing matched and the day's trending papers were sent instead."""
    papers_read: int = 0
    """How many new papers the digest picked from (the masthead's "read" count)."""
    matched_total: int | None = None
    """How many of them matched the profile over the thresholds (the masthead's "matched"
    count), often more than the digest holds; None when not known (the matches are all)."""


@dataclass(frozen=True, slots=True)
class DigestLinks:
    """The reader's personal links, built from the site's base URL and signed tokens."""

    preferences: str = ""
    unsubscribe: str = ""
    unsubscribe_mailto: str = ""
    feed_atom: str = ""
    feed_rss: str = ""
    home: str = ""
    view: str = ""
    """This digest as a web page (and the reader's archive of past ones)."""
    more: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Paper key -> its signed "more like this" page; "fewer" likewise."""
    fewer: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message body, ready to be wrapped in MIME."""

    subject: str
    html: str
    text: str
