"""What a sending pass did, one reader at a time, in bounded memory.

Each reader's digest for a day may go out on several channels; the report waits until every
channel of that reader in the batch has an outcome, then counts it, keeps it if it is among the
first rows, and hands it to a listener (the CLI streams JSON from it). Nothing keeps every Digest.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import NamedTuple, Protocol

from digest.models import Channel, Digest


class Outcome(StrEnum):
    """What became of one channel of a reader's digest in a pass (its JSON and table word)."""

    SENT = "sent"
    RETRY = "pending"
    """Not taken this time; a later run tries again."""
    FAILED = "failed"
    EMPTY = "empty"
    WOULD_SEND = "would send"
    """The dry run's word for what a run would send."""


Key = tuple[int, date]
"""(subscriber id, digest date)."""


class SentPaper(NamedTuple):
    """A paper of a digest as the run's table and JSON list it (small: it crosses processes)."""

    key: str
    title: str
    url: str
    score: float
    matched: tuple[str, ...]


def sent_papers(digest: Digest | None) -> tuple[SentPaper, ...]:
    """The digest's recommended papers, best first, as the run reports them."""
    if digest is None:
        return ()
    return tuple(
        SentPaper(m.paper.key, m.paper.title, m.paper.url, float(m.score), tuple(m.matched))
        for m in digest.matches
    )


@dataclass
class ReaderOutcome:
    """What became of one reader's digest for one day, on each of its channels."""

    email: str
    digest_date: date
    channels: dict[str, str] = field(default_factory=dict)
    """channel -> status ("sent", "pending" to retry, "failed", "empty"; dry: "would send")."""
    papers: tuple[SentPaper, ...] = ()
    digest: Digest | None = None
    """The whole digest, when this process prepared it (a preparer process sends `papers` only)."""
    error: str | None = None

    @property
    def status(self) -> str:
        """The reader's status: the email copy's when there is one, else the feed copy's."""
        if Channel.EMAIL in self.channels:
            return self.channels[Channel.EMAIL]
        return next(iter(self.channels.values()), Outcome.EMPTY)


Listener = Callable[[ReaderOutcome], None]


class Tally(Protocol):
    """What preparing a batch tells the report: the readers to expect, each channel's outcome."""

    def expect(
        self,
        key: Key,
        email: str,
        channels: set[str],
        digest: Digest | None,
        papers: tuple[SentPaper, ...] | None = None,
    ) -> None: ...

    def settle(
        self, key: Key, channel: str, status: str, error: str | None = None, *, email: str = "?"
    ) -> None: ...


class SendReport:
    """Counts of a pass, its first rows, and a listener called as each reader finishes."""

    def __init__(self, *, keep: int = 50, listener: Listener | None = None) -> None:
        self.keep, self.listener = keep, listener
        self.rows: list[ReaderOutcome] = []
        self.readers: Counter[str] = Counter()
        """Readers by status."""
        self.channels: Counter[tuple[str, str]] = Counter()
        """(channel, status) -> deliveries."""
        self.released = 0
        self.relay_error: str | None = None
        self._open: dict[Key, tuple[ReaderOutcome, set[str]]] = {}
        self._lock = threading.Lock()

    def expect(
        self,
        key: Key,
        email: str,
        channels: set[str],
        digest: Digest | None,
        papers: tuple[SentPaper, ...] | None = None,
    ) -> None:
        """A reader whose channels in this batch will each get an outcome; `papers` stands in
        for a digest prepared in another process."""
        with self._lock:
            if key in self._open:
                self._open[key][1].update(channels)
                return
            listed = sent_papers(digest) if papers is None else papers
            outcome = ReaderOutcome(email, key[1], papers=listed, digest=digest)
            self._open[key] = (outcome, set(channels))

    def settle(
        self, key: Key, channel: str, status: str, error: str | None = None, *, email: str = "?"
    ) -> None:
        """One channel's outcome; the reader is reported once all its channels have one."""
        with self._lock:
            if key not in self._open:  # a batch prepared without expect(): one channel per row
                self._open[key] = (ReaderOutcome(email, key[1]), {channel})
            outcome, waiting = self._open[key]
            outcome.channels[channel] = status
            if error and not outcome.error:
                outcome.error = error
            self.channels[(channel, status)] += 1
            waiting.discard(channel)
            if waiting:
                return
            del self._open[key]
            self.readers[outcome.status] += 1
            if len(self.rows) < self.keep:
                self.rows.append(outcome)
        if self.listener is not None:
            self.listener(outcome)

    def count(self, status: str) -> int:
        """How many readers ended with this status."""
        return self.readers[status]

    @property
    def total(self) -> int:
        """How many readers were reported."""
        return sum(self.readers.values())
