"""Subscribers: sign-up, confirmation, preferences, unsubscribe and bounces."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import CursorResult, Engine, delete, func, select, update
from sqlalchemy.orm import Session

from digest.config import validate_timezone
from digest.models import Subscriber, SubscriberStatus
from digest.store.engine import transaction
from digest.store.mails import MailKind, enqueue
from digest.store.schema import DeliveryRow, SubscriberRow

FREQUENCIES = ("daily", "weekly")
CHANNELS = ("email", "feed")


class InvalidSubscriber(ValueError):
    """A subscriber field is not acceptable; the message names the field."""


class UnknownSubscriber(LookupError):
    """No subscriber with that address or id."""


class UnmailableAddress(InvalidSubscriber):
    """A well-formed address this site cannot mail (a non-ASCII local part needs SMTPUTF8)."""


def normalize_email(address: str) -> str:
    """The canonical form of an address (domain lower-cased and in its ASCII form, checked for
    syntax), or InvalidSubscriber; UnmailableAddress for non-ASCII characters before the @."""
    text = address.strip()
    local = text.rpartition("@")[0]
    if local and not local.isascii():
        raise UnmailableAddress(
            "email: addresses with letters like é or ü before the @ cannot be mailed from this "
            "site yet; please use an address with plain letters before the @"
        )
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidSubscriber(f"{address!r} is not a valid email address: {exc}") from None
    local = result.normalized.rpartition("@")[0]
    return f"{local.lower()}@{(result.ascii_domain or result.domain).lower()}"


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a subscriber can change about their digest."""

    keywords: str
    timezone: str = "UTC"
    send_hour: int = 7
    frequency: str = "daily"
    max_papers: int = 10
    channels: tuple[str, ...] = CHANNELS

    def checked(self) -> Preferences:
        """Self, or InvalidSubscriber naming the first bad field."""
        if not self.keywords.strip():
            raise InvalidSubscriber("keywords: give at least one term")
        try:
            validate_timezone(self.timezone)
        except ValueError as exc:
            raise InvalidSubscriber(f"timezone: {exc}") from None
        if not 0 <= self.send_hour <= 23:
            raise InvalidSubscriber("send_hour: must be an hour from 0 to 23")
        if self.frequency not in FREQUENCIES:
            raise InvalidSubscriber("frequency: must be daily or weekly")
        if not 1 <= self.max_papers <= 100:
            raise InvalidSubscriber("max_papers: must be between 1 and 100")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown or not self.channels:
            raise InvalidSubscriber("channels: choose email, feed or both")
        return self


def to_subscriber(row: SubscriberRow) -> Subscriber:
    """The record for a stored row."""
    return Subscriber(
        id=row.id,
        email=row.email,
        keywords=row.keywords,
        status=SubscriberStatus(row.status),
        timezone=row.timezone,
        send_hour=row.send_hour,
        frequency=row.frequency,
        max_papers=row.max_papers,
        channels=tuple(row.channels or ()),
        feed_token=row.feed_token,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        link_secret=row.link_secret,
    )


def add_subscriber(
    engine: Engine,
    email: str,
    preferences: Preferences,
    *,
    confirmed: bool,
    now: datetime,
    send_confirmation: bool = False,
) -> tuple[Subscriber, bool]:
    """Create a subscriber (pending unless confirmed); returns it and whether anything changed.

    An address already known keeps its row: an unsubscribed one comes back (pending again unless
    confirmed), an active one keeps its status, and its preferences are updated. With
    `send_confirmation`, the confirmation mail (or, for an active reader, a note with their
    preferences link) is queued in the same transaction.
    """
    address = normalize_email(email)
    preferences.checked()
    with transaction(engine) as session:
        subscriber, changed = _add(session, address, preferences, confirmed=confirmed, now=now)
        if send_confirmation and not confirmed:
            kind = (
                MailKind.ALREADY_SUBSCRIBED
                if subscriber.status == SubscriberStatus.ACTIVE
                else MailKind.CONFIRMATION
            )
            assert subscriber.id is not None
            enqueue(session.connection(), subscriber.id, kind, now=now)
        return subscriber, changed


def _add(
    session: Session, address: str, preferences: Preferences, *, confirmed: bool, now: datetime
) -> tuple[Subscriber, bool]:
    """Insert or update the row inside the caller's transaction.

    A sign-up for a pending or former reader never rewrites their stored profile: it waits in
    pending_profile until the confirmation link of that sign-up (the only one still valid: the
    token version moves on) is used, and the mail shows what would be confirmed.
    """
    row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == address))
    if row is None:
        row = SubscriberRow(
            email=address,
            status=SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
            feed_token=new_feed_token(),
            link_secret=new_link_secret(),
            created_at=now,
            confirmed_at=now if confirmed else None,
            token_version=0,
            bounce_count=0,
        )
        _apply(row, preferences)
        session.add(row)
        session.flush()
        return to_subscriber(row), True
    if confirmed:  # the operator adds them: take the profile as given
        changed = _apply(row, preferences)
        row.pending_profile = None
        if row.status != SubscriberStatus.ACTIVE:
            row.status, row.confirmed_at, row.bounce_count = SubscriberStatus.ACTIVE, now, 0
            row.link_secret = new_link_secret()
            changed = True
        return to_subscriber(row), changed
    if row.status == SubscriberStatus.ACTIVE:
        return to_subscriber(row), _apply(row, preferences)
    row.status = SubscriberStatus.PENDING
    row.pending_profile = _profile_of(preferences)
    row.token_version += 1  # earlier confirmation links would confirm another profile
    return to_subscriber(row), True


def _profile_of(preferences: Preferences) -> dict[str, Any]:
    return {
        "keywords": preferences.keywords.strip(),
        "timezone": preferences.timezone,
        "send_hour": preferences.send_hour,
        "frequency": preferences.frequency,
        "max_papers": preferences.max_papers,
        "channels": list(preferences.channels),
    }


def pending_preferences(engine: Engine, subscriber_id: int) -> Preferences | None:
    """The preferences a pending sign-up would confirm, when they differ from the stored ones."""
    with Session(engine) as session:
        profile = session.scalar(
            select(SubscriberRow.pending_profile).where(SubscriberRow.id == subscriber_id)
        )
    if not profile:
        return None
    return Preferences(**{**profile, "channels": tuple(profile.get("channels") or CHANNELS)})


def _apply(row: SubscriberRow, preferences: Preferences | dict[str, Any]) -> bool:
    values = preferences if isinstance(preferences, dict) else _profile_of(preferences)
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def new_feed_token() -> str:
    """An unguessable feed token (192 random bits)."""
    return secrets.token_urlsafe(24)


def new_link_secret() -> str:
    """A fresh link secret: 64 random bits, hex (the signature makes links unforgeable; this
    only has to differ from every earlier one)."""
    return secrets.token_hex(8)


def get_subscriber(
    engine: Engine, *, id: int | None = None, email: str | None = None
) -> Subscriber:
    """One subscriber by id or address, or UnknownSubscriber."""
    query = select(SubscriberRow)
    if id is not None:
        query = query.where(SubscriberRow.id == id)
    elif email is not None:
        query = query.where(SubscriberRow.email == normalize_email(email))
    else:
        raise TypeError("give id or email")
    with Session(engine) as session:
        row = session.scalar(query)
        if row is None:
            raise UnknownSubscriber(f"no subscriber {email or id}")
        return to_subscriber(row)


def token_version(engine: Engine, subscriber_id: int) -> int:
    """The subscriber's current token version (confirm links are single-use against it)."""
    with Session(engine) as session:
        version = session.scalar(
            select(SubscriberRow.token_version).where(SubscriberRow.id == subscriber_id)
        )
    if version is None:
        raise UnknownSubscriber(f"no subscriber {subscriber_id}")
    return version


def subscriber_by_feed_token(engine: Engine, token: str) -> Subscriber | None:
    """The subscriber whose private feed this token opens, if any (the caller checks their status)."""
    with Session(engine) as session:
        row = session.scalar(select(SubscriberRow).where(SubscriberRow.feed_token == token))
    if row is None or not secrets.compare_digest(row.feed_token, token):
        return None
    return to_subscriber(row)


def confirm_subscriber(
    engine: Engine, subscriber_id: int, version: int, *, link: str = "", now: datetime
) -> bool:
    """Activate a pending subscriber once for this token version and link secret, applying the
    profile their sign-up asked for; False if the link was used, stale or signed out.

    Every link sent before (preferences, unsubscribe) stops working: a new subscription, new links.
    """
    with transaction(engine) as session:
        row = session.scalar(
            select(SubscriberRow)
            .where(SubscriberRow.id == subscriber_id, SubscriberRow.token_version == version)
            .with_for_update()
        )
        if row is None or not secrets.compare_digest(row.link_secret, link):
            return False
        if row.pending_profile:
            _apply(row, row.pending_profile)
        row.pending_profile = None
        row.status, row.confirmed_at, row.bounce_count = SubscriberStatus.ACTIVE, now, 0
        row.unsubscribed_at = None
        row.token_version += 1
        row.link_secret = new_link_secret()
        return True


def update_preferences(engine: Engine, subscriber_id: int, preferences: Preferences) -> Subscriber:
    """Save new preferences for a subscriber."""
    preferences.checked()
    with transaction(engine) as session:
        row = session.get(SubscriberRow, subscriber_id)
        if row is None:
            raise UnknownSubscriber(f"no subscriber {subscriber_id}")
        _apply(row, preferences)
        return to_subscriber(row)


def unsubscribe(
    engine: Engine,
    *,
    now: datetime,
    id: int | None = None,
    email: str | None = None,
    goodbye: bool = False,
) -> bool:
    """Stop all mail to a subscriber and cancel their pending digests; False if already unsubscribed.

    With `goodbye`, the goodbye mail is queued in the same transaction.
    """
    subscriber = get_subscriber(engine, id=id, email=email)
    with transaction(engine) as session:
        row = session.get(SubscriberRow, subscriber.id)
        assert row is not None
        if row.status == SubscriberStatus.UNSUBSCRIBED:
            return False
        row.status, row.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now
        row.token_version += 1
        row.link_secret = new_link_secret()  # a forwarded digest no longer opens anything
        session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.subscriber_id == row.id, DeliveryRow.status == "pending")
            .values(status="failed", last_error="unsubscribed before sending")
        )
        if goodbye:
            enqueue(session.connection(), row.id, MailKind.GOODBYE, now=now)
        return True


def rotate_feed_token(engine: Engine, subscriber_id: int) -> str:
    """Give a subscriber a new private feed URL; the old one stops working."""
    token = new_feed_token()
    with transaction(engine) as session:
        session.execute(
            update(SubscriberRow).where(SubscriberRow.id == subscriber_id).values(feed_token=token)
        )
    return token


def sign_out_links(engine: Engine, subscriber_id: int) -> Subscriber:
    """Make every link and feed URL sent to a reader stop working; returns them with new ones."""
    with transaction(engine) as session:
        row = session.get(SubscriberRow, subscriber_id)
        if row is None:
            raise UnknownSubscriber(f"no subscriber {subscriber_id}")
        row.link_secret = new_link_secret()
        row.feed_token = new_feed_token()
        row.token_version += 1
        return to_subscriber(row)


def list_subscribers(engine: Engine, *, statuses: Sequence[str] | None = None) -> list[Subscriber]:
    """Subscribers in sign-up order, optionally only with the given statuses."""
    query = select(SubscriberRow).order_by(SubscriberRow.id)
    if statuses:
        query = query.where(SubscriberRow.status.in_(list(statuses)))
    with Session(engine) as session:
        return [to_subscriber(row) for row in session.scalars(query)]


def iter_active(engine: Engine, *, batch: int = 5000) -> Iterator[list[Subscriber]]:
    """Active subscribers in id order, a batch at a time (bounded memory at any scale)."""
    last = 0
    while True:
        query = (
            select(SubscriberRow)
            .where(SubscriberRow.status == SubscriberStatus.ACTIVE, SubscriberRow.id > last)
            .order_by(SubscriberRow.id)
            .limit(batch)
        )
        with Session(engine) as session:
            rows = [to_subscriber(row) for row in session.scalars(query)]
        if not rows:
            return
        yield rows
        last = rows[-1].id or last


def count_subscribers(engine: Engine) -> dict[str, int]:
    """Subscribers per status."""
    query = select(SubscriberRow.status, func.count()).group_by(SubscriberRow.status)
    with Session(engine) as session:
        return {status: count for status, count in session.execute(query)}


def subscribers_by_ids(engine: Engine, ids: Sequence[int]) -> dict[int, Subscriber]:
    """Subscribers by id (unknown ids are left out)."""
    wanted = list(set(ids))
    found: dict[int, Subscriber] = {}
    with Session(engine) as session:
        for start in range(0, len(wanted), 500):
            query = select(SubscriberRow).where(SubscriberRow.id.in_(wanted[start : start + 500]))
            for row in session.scalars(query):
                found[row.id] = to_subscriber(row)
    return found


def purge_unconfirmed(engine: Engine, *, before: datetime) -> int:
    """Delete sign-ups made before `before` that were never confirmed (their link has expired);
    returns how many. A reader who was once active keeps their row whatever their status."""
    with transaction(engine) as session:
        result = session.execute(
            delete(SubscriberRow).where(
                SubscriberRow.status == SubscriberStatus.PENDING,
                SubscriberRow.confirmed_at.is_(None),
                SubscriberRow.created_at < before,
            )
        )
        # A DELETE gives a CursorResult; Session.execute is typed as returning any Result.
        return cast(CursorResult[Any], result).rowcount or 0
