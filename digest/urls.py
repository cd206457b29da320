"""Every URL a reader is given, and the web routes that answer them: the URL layout in one place.

Links are always built from the configured base URL, never from a request's Host header. The
path patterns below are the web app's routes too, so a link and its page cannot drift apart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import quote

CONFIRM = "/confirm/{token}"
PREFERENCES = "/preferences/{token}"
UNSUBSCRIBE = "/unsubscribe/{token}"
FEED = "/feeds/{name}"
DIGEST = "/digest/{token}/{day}"
"""One digest as a web page ("View in browser"); day is YYYY-MM-DD."""
ARCHIVE = "/digest/{token}"
"""The reader's digests of the last 30 days, newest first."""
STEER = "/steer/{token}/{paper}/{direction}"
"""More or fewer papers like one of a digest: GET asks to confirm, POST changes the profile."""
STEER_DIRECTIONS = ("more", "fewer")
SEARCH_FEED_STEM = "search"
"""`/feeds/search.atom?q=...`: the public feed for any profile (a feed token is never this word)."""
FEED_KINDS = ("atom", "rss")
SEARCH_EXAMPLE = '"federated learning", -medical'
"""The profile the home page and a bare search-feed URL show as an example."""


@dataclass(frozen=True, slots=True)
class ReaderUrls:
    """Absolute URLs under the site's base URL (no trailing slash), tokens quoted where needed."""

    base: str

    def home(self) -> str:
        """The home page (sign-up and preview)."""
        return self.base + "/"

    def confirm(self, token: str) -> str:
        """The double opt-in page for a signed confirm token."""
        return self.base + CONFIRM.format(token=_segment(token))

    def preferences(self, token: str) -> str:
        """The reader's preferences page for a signed preferences token."""
        return self.base + PREFERENCES.format(token=_segment(token))

    def unsubscribe(self, token: str) -> str:
        """The one-click unsubscribe page for a signed unsubscribe token."""
        return self.base + UNSUBSCRIBE.format(token=_segment(token))

    def digest(self, token: str, day: date) -> str:
        """One digest of the reader's, as a web page (signed with their preferences token)."""
        return self.base + DIGEST.format(token=_segment(token), day=day.isoformat())

    def archive(self, token: str) -> str:
        """The reader's recent digests."""
        return self.base + ARCHIVE.format(token=_segment(token))

    def steer(self, token: str, paper_id: int, direction: str) -> str:
        """The "more like this" or "fewer like this" page for one paper of a digest."""
        return self.base + STEER.format(token=_segment(token), paper=paper_id, direction=direction)

    def feed(self, feed_token: str, kind: str) -> str:
        """A reader's private Atom or RSS feed; empty when the reader has no feed token."""
        if not feed_token:
            return ""
        return self.base + FEED.format(name=f"{_segment(feed_token)}.{kind}")

    def search_feed(self, query: str, kind: str) -> str:
        """The public feed of any profile."""
        name = f"{SEARCH_FEED_STEM}.{kind}"
        return self.base + FEED.format(name=name) + "?q=" + quote(query)

    def reader_feed_id(self, subscriber_id: int) -> str:
        """A reader's Atom feed id: stable across feed-URL rotations (it names the reader)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.base}/subscribers/{subscriber_id}/feed").urn

    def search_feed_id(self, query: str) -> str:
        """The Atom feed id of a public profile feed."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.base}/feeds/search?q={query}").urn


@lru_cache(maxsize=1024)
def _segment(token: str) -> str:
    """A token as one path segment; cached, as a reader's token recurs in twenty links of a mail."""
    return quote(token, safe="")
