"""Subscribers: sign-up, confirmation, preferences, unsubscribe and bounces."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Engine,
    Row,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
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
    send_weekday: int = 0

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
        if not 0 <= self.send_weekday <= 6:
            raise InvalidSubscriber("send_weekday: must be a weekday, monday to sunday")
        if not 1 <= self.max_papers <= 100:
            raise InvalidSubscriber("max_papers: must be between 1 and 100")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown or not self.channels:
            raise InvalidSubscriber("channels: choose email, feed or both")
        return self


def to_subscriber(row: SubscriberRow | SimpleNamespace | Row[Any]) -> Subscriber:
    """The record for a stored row (an ORM row, or a row's column values as attributes)."""
    return Subscriber(
        id=row.id,
        email=row.email,
        keywords=row.keywords,
        status=SubscriberStatus(row.status),
        timezone=row.timezone,
        send_hour=row.send_hour,
        frequency=row.frequency,
        send_weekday=row.send_weekday,
        max_papers=row.max_papers,
        channels=tuple(row.channels or ()),
        feed_token=row.feed_token,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        link_secret=row.link_secret,
    )


@dataclass(frozen=True, slots=True)
class Saved:
    """What saving one reader did: the reader as stored now, whether it is new, whether it changed."""

    subscriber: Subscriber
    added: bool
    changed: bool


MailPolicy = Callable[[Saved], MailKind | None]
"""Which mail (if any) a saved reader gets, queued in the same transaction as the change."""


def signup_mail(saved: Saved) -> MailKind | None:
    """A sign-up's mail: a confirmation for a pending reader, a note for an active one."""
    if saved.subscriber.status == SubscriberStatus.ACTIVE:
        return MailKind.ALREADY_SUBSCRIBED
    return MailKind.CONFIRMATION


class Subscribers:
    """The readers: sign-up, confirmation, preferences, links and unsubscribing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
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
        mail = signup_mail if send_confirmation and not confirmed else None
        (result,) = self.save([(email, preferences)], confirmed=confirmed, now=now, mail=mail)
        if isinstance(result, InvalidSubscriber):
            raise result
        return result.subscriber, result.changed

    def save(
        self,
        entries: Sequence[tuple[str, Preferences]],
        *,
        confirmed: bool,
        now: datetime,
        mail: MailPolicy | None = None,
    ) -> list[Saved | InvalidSubscriber]:
        """Add or update many readers as `add` would one by one, in a few statements.

        Returns one result per entry, in order: what was saved, or why that entry was refused (the
        others are saved all the same). A later entry for the same address sees the earlier one.
        With `mail`, the mail it chooses for each saved reader is queued in the same transaction.
        """
        results: list[Saved | InvalidSubscriber] = []
        for start in range(0, len(entries), SAVE_CHUNK):
            chunk = entries[start : start + SAVE_CHUNK]
            try:
                results.extend(self._save_chunk(chunk, confirmed=confirmed, now=now, mail=mail))
            except IntegrityError:
                # Someone signed up with one of these addresses meanwhile: read the chunk again.
                results.extend(self._save_chunk(chunk, confirmed=confirmed, now=now, mail=mail))
        return results

    def _save_chunk(
        self,
        entries: Sequence[tuple[str, Preferences]],
        *,
        confirmed: bool,
        now: datetime,
        mail: MailPolicy | None,
    ) -> list[Saved | InvalidSubscriber]:
        checked: list[tuple[str, dict[str, Any]] | InvalidSubscriber] = []
        for email, preferences in entries:
            try:
                checked.append((normalize_email(email), _profile_of(preferences.checked())))
            except InvalidSubscriber as exc:
                checked.append(exc)
        table = _TABLE
        addresses = {item[0] for item in checked if not isinstance(item, InvalidSubscriber)}
        with self.engine.begin() as connection:
            # Every row of the chunk as it stands, updated in memory entry by entry, then written once.
            current: dict[str, dict[str, Any]] = {
                row.email: dict(row._mapping)
                for row in connection.execute(select(table).where(table.c.email.in_(addresses)))
            }
            new: dict[str, None] = {}  # in file order: ids follow the order readers were listed
            changed_rows: dict[str, None] = {}
            outcomes: list[tuple[str, bool, bool] | InvalidSubscriber] = []
            for item in checked:
                if isinstance(item, InvalidSubscriber):
                    outcomes.append(item)
                    continue
                address, profile = item
                row = current.get(address)
                if row is None:
                    current[address] = _new_row(address, profile, confirmed=confirmed, now=now)
                    new[address] = None
                    outcomes.append((address, True, True))
                    continue
                changed = _merge(row, profile, confirmed=confirmed, now=now)
                if changed and address not in new:
                    changed_rows[address] = None
                outcomes.append((address, False, changed))
            if new:
                # A plain executemany, not INSERT ... RETURNING: psycopg parses one many-row VALUES
                # statement slower than it sends the rows; the ids come back in one SELECT.
                connection.execute(table.insert(), [current[address] for address in new])
                query = select(table.c.id, table.c.email).where(table.c.email.in_(list(new)))
                for id_, address in connection.execute(query):
                    current[address]["id"] = id_
            if changed_rows:
                connection.execute(
                    update(table)
                    .where(table.c.id == bindparam("row_id"))
                    .values({name: bindparam(name) for name in _CHANGING}),
                    [
                        {"row_id": current[a]["id"], **{n: current[a][n] for n in _CHANGING}}
                        for a in changed_rows
                    ],
                )
            subscribers = {a: to_subscriber(SimpleNamespace(**current[a])) for a in addresses}
            results = [
                o if isinstance(o, InvalidSubscriber) else Saved(subscribers[o[0]], o[1], o[2])
                for o in outcomes
            ]
            for result in results:
                if isinstance(result, Saved) and mail and (kind := mail(result)) is not None:
                    assert result.subscriber.id is not None
                    enqueue(connection, result.subscriber.id, kind, now=now)
        return results

    def pending_preferences(self, subscriber_id: int) -> Preferences | None:
        """The preferences a pending sign-up would confirm, when they differ from the stored ones."""
        with Session(self.engine) as session:
            profile = session.scalar(
                select(SubscriberRow.pending_profile).where(SubscriberRow.id == subscriber_id)
            )
        if not profile:
            return None
        return Preferences(**{**profile, "channels": tuple(profile.get("channels") or CHANNELS)})

    def get(self, *, id: int | None = None, email: str | None = None) -> Subscriber:
        """One subscriber by id or address, or UnknownSubscriber."""
        query = select(SubscriberRow)
        if id is not None:
            query = query.where(SubscriberRow.id == id)
        elif email is not None:
            query = query.where(SubscriberRow.email == normalize_email(email))
        else:
            raise TypeError("give id or email")
        with Session(self.engine) as session:
            row = session.scalar(query)
            if row is None:
                raise UnknownSubscriber(f"no subscriber {email or id}")
            return to_subscriber(row)

    def token_version(self, subscriber_id: int) -> int:
        """The subscriber's current token version (confirm links are single-use against it)."""
        with Session(self.engine) as session:
            version = session.scalar(
                select(SubscriberRow.token_version).where(SubscriberRow.id == subscriber_id)
            )
        if version is None:
            raise UnknownSubscriber(f"no subscriber {subscriber_id}")
        return version

    def by_feed_token(self, token: str) -> Subscriber | None:
        """The subscriber whose private feed this token opens, if any (the caller checks their status)."""
        with Session(self.engine) as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.feed_token == token))
        if row is None or not secrets.compare_digest(row.feed_token, token):
            return None
        return to_subscriber(row)

    def confirm(self, subscriber_id: int, version: int, *, link: str = "", now: datetime) -> bool:
        """Activate a pending subscriber once for this token version and link secret, applying the
        profile their sign-up asked for; False if the link was used, stale or signed out.

        Every link sent before (preferences, unsubscribe) stops working: a new subscription, new links.
        """
        with transaction(self.engine) as session:
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

    def update_preferences(self, subscriber_id: int, preferences: Preferences) -> Subscriber:
        """Save new preferences for a subscriber."""
        preferences.checked()
        with transaction(self.engine) as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None:
                raise UnknownSubscriber(f"no subscriber {subscriber_id}")
            _apply(row, _profile_of(preferences))
            return to_subscriber(row)

    def unsubscribe(
        self,
        *,
        now: datetime,
        id: int | None = None,
        email: str | None = None,
        goodbye: bool = False,
    ) -> bool:
        """Stop all mail to a subscriber and cancel their pending digests; False if already unsubscribed.

        With `goodbye`, the goodbye mail is queued in the same transaction.
        """
        subscriber = self.get(id=id, email=email)
        with transaction(self.engine) as session:
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

    def rotate_feed_token(self, subscriber_id: int) -> str:
        """Give a subscriber a new private feed URL; the old one stops working."""
        token = new_feed_token()
        with transaction(self.engine) as session:
            session.execute(
                update(SubscriberRow)
                .where(SubscriberRow.id == subscriber_id)
                .values(feed_token=token)
            )
        return token

    def sign_out_links(self, subscriber_id: int) -> Subscriber:
        """Make every link and feed URL sent to a reader stop working; returns them with new ones."""
        with transaction(self.engine) as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None:
                raise UnknownSubscriber(f"no subscriber {subscriber_id}")
            row.link_secret = new_link_secret()
            row.feed_token = new_feed_token()
            row.token_version += 1
            return to_subscriber(row)

    def all(self, *, statuses: Sequence[str] | None = None) -> list[Subscriber]:
        """Subscribers in sign-up order, optionally only with the given statuses."""
        query = select(SubscriberRow).order_by(SubscriberRow.id)
        if statuses:
            query = query.where(SubscriberRow.status.in_(list(statuses)))
        with Session(self.engine) as session:
            return [to_subscriber(row) for row in session.scalars(query)]

    def _active_rows(
        self, columns: Sequence[ColumnElement[Any]], batch: int
    ) -> Iterator[list[Row[Any]]]:
        """The active readers' rows (these columns and status), plain rows rather than ORM objects.

        Walks the primary key and leaves the others out in Python: a status filter in SQL lets
        PostgreSQL pick the status index when its statistics are stale (right after a big import),
        and then every batch reads the whole table (1M readers: minutes instead of seconds).
        """
        table, last = _TABLE, 0
        query = (
            select(*columns, table.c.status.label("_status"))
            .where(table.c.id > bindparam("last"))
            .order_by(table.c.id)
            .limit(batch)
        )
        while True:
            with self.engine.connect() as connection:
                rows = cast(Sequence[Row[Any]], connection.execute(query, {"last": last}).all())
            if not rows:
                return
            last = rows[-1].id
            active = [row for row in rows if row._status == SubscriberStatus.ACTIVE]
            if active:
                yield active

    def iter_timings(self, *, batch: int = 5000) -> Iterator[list[Timing]]:
        """The timing of every active reader in id order, a batch at a time (what planning needs)."""
        table = _TABLE
        columns = (
            table.c.id,
            table.c.timezone,
            table.c.send_hour,
            table.c.frequency,
            table.c.channels,
            table.c.send_weekday,
            table.c.created_at,
            table.c.confirmed_at,
        )
        for rows in self._active_rows(columns, batch):
            yield [
                Timing(
                    row.id,
                    row.timezone,
                    row.send_hour,
                    row.frequency,
                    tuple(row.channels or ()),
                    row.send_weekday,
                    row.created_at,
                    row.confirmed_at,
                )
                for row in rows
            ]

    def counts(self) -> dict[str, int]:
        """Subscribers per status."""
        query = select(SubscriberRow.status, func.count()).group_by(SubscriberRow.status)
        with Session(self.engine) as session:
            return {status: count for status, count in session.execute(query)}

    def by_ids(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        """Subscribers by id (unknown ids are left out)."""
        wanted = list(set(ids))
        found: dict[int, Subscriber] = {}
        with Session(self.engine) as session:
            for start in range(0, len(wanted), 500):
                query = select(SubscriberRow).where(
                    SubscriberRow.id.in_(wanted[start : start + 500])
                )
                for row in session.scalars(query):
                    found[row.id] = to_subscriber(row)
        return found

    def purge_unconfirmed(self, *, before: datetime) -> int:
        """Delete sign-ups made before `before` that were never confirmed (their link has expired);
        returns how many. A reader who was once active keeps their row whatever their status."""
        with transaction(self.engine) as session:
            result = session.execute(
                delete(SubscriberRow).where(
                    SubscriberRow.status == SubscriberStatus.PENDING,
                    SubscriberRow.confirmed_at.is_(None),
                    SubscriberRow.created_at < before,
                )
            )
            # A DELETE gives a CursorResult; Session.execute is typed as returning any Result.
            return cast(CursorResult[Any], result).rowcount or 0


SAVE_CHUNK = 2000
# A mapped class's __table__ is typed as FromClause; for this declarative class it is a Table.
_TABLE = cast(Table, SubscriberRow.__table__)
_CHANGING = (
    "keywords",
    "timezone",
    "send_hour",
    "frequency",
    "max_papers",
    "channels",
    "status",
    "confirmed_at",
    "bounce_count",
    "link_secret",
    "pending_profile",
    "token_version",
)


def _new_row(
    address: str, profile: dict[str, Any], *, confirmed: bool, now: datetime
) -> dict[str, Any]:
    return {
        "email": address,
        "status": SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
        "feed_token": new_feed_token(),
        "link_secret": new_link_secret(),
        "pending_profile": None,
        "created_at": now,
        "confirmed_at": now if confirmed else None,
        "unsubscribed_at": None,
        "token_version": 0,
        "bounce_count": 0,
        **profile,
    }


def _merge(row: dict[str, Any], profile: dict[str, Any], *, confirmed: bool, now: datetime) -> bool:
    """Apply a sign-up or an operator's add to a known reader's row; True if anything changed.

    A sign-up for a pending or former reader never rewrites their stored profile: it waits in
    pending_profile until the confirmation link of that sign-up (the only one still valid: the
    token version moves on) is used, and the mail shows what would be confirmed.
    """
    if confirmed:  # the operator adds them: take the profile as given
        changed = _apply(row, profile)
        row["pending_profile"] = None
        if row["status"] != SubscriberStatus.ACTIVE:
            row.update(status=SubscriberStatus.ACTIVE, confirmed_at=now, bounce_count=0)
            row["link_secret"] = new_link_secret()
            changed = True
        return changed
    if row["status"] == SubscriberStatus.ACTIVE:
        return _apply(row, profile)
    row.update(status=SubscriberStatus.PENDING, pending_profile=profile)
    row["token_version"] += 1  # earlier confirmation links would confirm another profile
    return True


def _profile_of(preferences: Preferences) -> dict[str, Any]:
    return {
        "keywords": preferences.keywords.strip(),
        "timezone": preferences.timezone,
        "send_hour": preferences.send_hour,
        "frequency": preferences.frequency,
        "send_weekday": preferences.send_weekday,
        "max_papers": preferences.max_papers,
        "channels": list(preferences.channels),
    }


def _apply(row: SubscriberRow | dict[str, Any], profile: dict[str, Any]) -> bool:
    """Set the profile's values on a row (an ORM row, or a row's values); True if any differed."""
    changed = False
    for name, value in profile.items():
        if isinstance(row, dict):
            changed = changed or row[name] != value
            row[name] = value
        elif getattr(row, name) != value:
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


@dataclass(frozen=True, slots=True)
class Timing:
    """When an active reader wants their digest: all that planning reads of them."""

    id: int
    timezone: str
    send_hour: int
    frequency: str
    channels: tuple[str, ...]
    send_weekday: int = 0
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
