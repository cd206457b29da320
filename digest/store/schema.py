"""The tables, as SQLAlchemy 2.0 typed models. Alembic migrations in migrations/ create them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from digest.models import KEY_MAX_CHARS

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SourceRow(Base):
    """A feed: where it is, and how its last fetch went."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20), default="auto")
    origin: Mapped[str] = mapped_column(String(10), default="config")
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(String(100))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_new: Mapped[int] = mapped_column(Integer, default=0)
    last_updated: Mapped[int] = mapped_column(Integer, default=0)
    last_warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Failed fetches since the last success; `[fetch] alert_after` of them need the operator."""


class PaperRow(Base):
    """One paper, however many feeds carried it."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX_CHARS), unique=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    affiliations: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    """One per author ("" where the feed named none); empty when the feed named none at all."""
    url: Mapped[str] = mapped_column(Text, default="")
    pdf_url: Mapped[str | None] = mapped_column(Text)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    upvotes: Mapped[int | None] = mapped_column(Integer)


class PaperSourceRow(Base):
    """Which feeds carried a paper (a paper can come from several)."""

    __tablename__ = "paper_sources"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class SubscriberRow(Base):
    """A reader, their profile and their preferences."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    keywords: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_hour: Mapped[int] = mapped_column(Integer, default=7)
    frequency: Mapped[str] = mapped_column(String(10), default="daily")
    send_weekday: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_papers: Mapped[int] = mapped_column(Integer, default=10)
    channels: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["email", "feed"])
    feed_token: Mapped[str] = mapped_column(String(64), unique=True)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    link_secret: Mapped[str] = mapped_column(String(32), default="", server_default="")
    """Carried by every link to this reader's pages; a new one signs all old links out."""
    pending_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A sign-up's preferences for a reader who is not active, applied only when confirmed."""
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DigestRow(Base):
    """One reader's digest for one day, composed once: its window and whether it had anything.

    Every channel and every attempt of that day sends exactly these papers (`digest_items`).
    """

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("subscriber_id", "digest_date", name="uq_digests_unit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    digest_date: Mapped[date] = mapped_column(Date)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    """Papers first seen up to this moment belong to this digest; the next one starts here."""
    empty: Mapped[bool] = mapped_column(Boolean, default=False)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_sources: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    composed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    matched_total: Mapped[int | None] = mapped_column(Integer)
    """How many papers of the window matched the profile when composed (the digest holds the
    first max_papers of them); NULL for digests composed before it was recorded."""


class DigestItemRow(Base):
    """A paper of a composed digest, in order: its score and the terms that matched."""

    __tablename__ = "digest_items"
    __table_args__ = (UniqueConstraint("digest_id", "paper_id", name="uq_digest_items_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    section: Mapped[str] = mapped_column(String(10))
    """"match" (recommended: never recommended again) or "trending" (the day's popular papers)."""
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    matched: Mapped[list[str]] = mapped_column(JSON, default=list)
    partial: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The paper matched only part of a multi-word interest (shown as a partial match)."""


class QueuedWork:
    """The columns the queue state machine (store/queue.py) moves a row through, in one place."""

    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryRow(QueuedWork, Base):
    """One digest for one subscriber, day and channel: the unit of work and of idempotency."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "digest_date", "channel", name="uq_deliveries_unit"),
        Index("ix_deliveries_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    digest_date: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(10))


class MailRow(QueuedWork, Base):
    """A single mail to one reader (confirmation, already subscribed, goodbye), queued durably.

    Queued in the same transaction as the change that asks for it, then claimed, retried and
    recorded by the same state machine as deliveries (store/queue.py).
    """

    __tablename__ = "mails"
    __table_args__ = (Index("ix_mails_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))


class AcronymRow(Base):
    """An acronym and its expansion, learned from the papers' own definitions."""

    __tablename__ = "acronyms"

    acronym: Mapped[str] = mapped_column(String(40), primary_key=True)
    expansion: Mapped[str] = mapped_column(String(300), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=1)


class MetaRow(Base):
    """Small named values the program keeps for itself (the generated secret key)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RateRow(Base):
    """Counters for rate limits that must hold across processes (subscribe per IP / address)."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProfileChangeRow(Base):
    """A change a reader made from a digest ("more / fewer like this"), kept so it can be undone."""

    __tablename__ = "profile_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    paper_id: Mapped[int | None] = mapped_column(ForeignKey("papers.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(10))
    edits: Mapped[list[list[Any]]] = mapped_column(JSON)
    """[term, weight before or null, weight after or null] per edited term."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
