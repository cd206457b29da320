"""Records that sources hand to the pipeline: what one fetch produced, and why it failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from digest.models import Paper

FetchStatus = Literal["ok", "not_modified", "failed"]


class SourceError(Exception):
    """A source could not be fetched or parsed; the message is one line a user can act on."""


@dataclass(frozen=True, slots=True)
class FetchState:
    """What the store remembers between fetches of one source: its HTTP validators."""

    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    """Fingerprint of the last body read in full: an unchanged feed is not parsed again."""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """Papers read from one feed body, the kind it was read as, and what was odd about it."""

    papers: list[Paper]
    kind: str
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    """Entries left out on purpose (arXiv replacements, cross-lists when turned off)."""
    title: str = ""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of fetching one source.

    etag / last_modified are the validators to store for the next fetch: the new ones after a
    success, the previous ones (unchanged) after a failure or a 304.
    """

    source: str
    status: FetchStatus
    papers: list[Paper]
    kind: str
    etag: str | None
    last_modified: str | None
    error: str | None
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    url: str = ""
    """The address finally read (after redirects), for messages."""
    bytes_read: int = 0
    content_hash: str | None = None
    """Fingerprint of the body (with the settings that shape parsing), to store for next time."""

    @property
    def ok(self) -> bool:
        """True unless the source failed (a 304 is a success that cost nothing)."""
        return self.status != "failed"
