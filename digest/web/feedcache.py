"""Public search feeds kept in memory for a few minutes: one build serves every reader of a query."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

SEARCH_CACHE_SECONDS = 300.0
"""A search feed is built at most once per query in this many seconds (feed readers poll often)."""
SEARCH_CACHE_SIZE = 1000


def etag_of(body: bytes) -> str:
    """A strong ETag: the body's hash."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True, slots=True)
class CachedFeed:
    """A built search feed and its ETag."""

    body: bytes
    etag: str
    expires: float


class FeedCache:
    """Search feeds per (normalized query, kind) for `ttl` seconds; at most `size` of them."""

    def __init__(self, *, ttl: float = SEARCH_CACHE_SECONDS, size: int = SEARCH_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[tuple[str, str], CachedFeed] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> CachedFeed | None:
        """The cached feed, unless it is missing or too old."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item.expires <= time.monotonic():
                return None
            self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], body: bytes) -> CachedFeed:
        """Keep a freshly built feed; the least recently used go first when full."""
        item = CachedFeed(body, etag_of(body), time.monotonic() + self.ttl)
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item
