"""Plain records that cross layers: papers, subscribers, matches and digests.

They carry data only; the store turns rows into them, ranking and rendering consume them.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class DigestLinks:
    """The reader's personal links, built from the site's base URL and signed tokens."""

    preferences: str = ""
    unsubscribe: str = ""
    unsubscribe_mailto: str = ""
    feed_atom: str = ""
    feed_rss: str = ""
    home: str = ""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message body, ready to be wrapped in MIME."""

    subject: str
    html: str
    text: str
