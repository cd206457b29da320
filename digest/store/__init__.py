"""The database: SQLAlchemy tables and verb-named queries; the only importer of SQLAlchemy.

One module per table family, the way miniflux's storage has one file per table.
"""

from sqlalchemy import Engine

from digest.store.copying import copy_database
from digest.store.deliveries import Claim, Deliveries, PlannedDelivery
from digest.store.digests import ComposedItem, Composition, Digests, FeedItem
from digest.store.engine import (
    StoreError,
    check_schema,
    describe,
    migrate,
    open_engine,
    schema_is_current,
)
from digest.store.locks import ScheduleLock
from digest.store.mails import MailClaim, MailKind, Mails
from digest.store.meta import Meta
from digest.store.overview import Overview
from digest.store.papers import (
    Papers,
    UpsertCounts,
)
from digest.store.queue import Outcome, Queue
from digest.store.ratelimit import RateLimits
from digest.store.retention import Retention
from digest.store.sources import (
    SourceRecord,
    Sources,
    UnknownSource,
)
from digest.store.steering import (
    ProfileChange,
    ProfileChanges,
    ProfileMoved,
)
from digest.store.subscribers import (
    InvalidSubscriber,
    Preferences,
    Saved,
    Subscribers,
    Timing,
    UnknownSubscriber,
    UnmailableAddress,
    normalize_email,
)


class Store:
    """The database as one object: an engine and one attribute per queue or table family.

    `deliveries` and `mails` are the two queues (store/queue.py's state machine), `digests` the
    composed digests; the others are the readers, papers, sources, profile changes, the meta
    values, rate limits, retention and the operator's overview. Engine-level work (opening,
    migrating, checking, copying a database) stays in module functions.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.deliveries = Deliveries(engine)
        self.mails = Mails(engine)
        self.digests = Digests(engine)
        self.subscribers = Subscribers(engine)
        self.papers = Papers(engine)
        self.sources = Sources(engine)
        self.profile_changes = ProfileChanges(engine)
        self.meta = Meta(engine)
        self.rate_limits = RateLimits(engine)
        self.retention = Retention(engine)
        self.overview = Overview(engine)
        self.meta = Meta(engine)


__all__ = [
    "Claim",
    "ComposedItem",
    "Composition",
    "Deliveries",
    "Digests",
    "Engine",
    "FeedItem",
    "InvalidSubscriber",
    "MailClaim",
    "MailKind",
    "Mails",
    "Meta",
    "Outcome",
    "Overview",
    "Papers",
    "PlannedDelivery",
    "Preferences",
    "ProfileChange",
    "ProfileChanges",
    "ProfileMoved",
    "Queue",
    "RateLimits",
    "Retention",
    "Saved",
    "ScheduleLock",
    "SourceRecord",
    "Sources",
    "Store",
    "StoreError",
    "Subscribers",
    "Timing",
    "UnknownSource",
    "UnknownSubscriber",
    "UnmailableAddress",
    "UpsertCounts",
    "check_schema",
    "copy_database",
    "describe",
    "migrate",
    "normalize_email",
    "open_engine",
    "schema_is_current",
]
