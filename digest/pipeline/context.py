"""The Context every stage call gets: settings, database, token signer, templates, transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from digest import ranking, store
from digest.config import Settings
from digest.deliver.message import DkimSigner
from digest.deliver.transport import (
    FileTransport,
    SmtpTransport,
    Transport,
)
from digest.models import (
    DigestLinks,
    Paper,
    Subscriber,
)
from digest.pipeline.previews import SharedWindow
from digest.render import EmailRenderer
from digest.tokens import Scope, Signer
from digest.urls import ReaderUrls

T = TypeVar("T")

Progress = Callable[[str, int, int], None]
"""Called as (stage, done, total) while long work runs; the CLI draws a progress bar from it."""


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even where an event loop is running.

    Entry points call the pipeline synchronously; when the caller's thread already runs a loop
    (an async web handler, a test driving a browser), the coroutine gets its own loop in a thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-async") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def utcnow() -> datetime:
    """The current time, aware and in UTC (freezegun-friendly)."""
    return datetime.now(UTC)


@dataclass
class Context:
    """What every stage needs, built once per process by an entry point."""

    settings: Settings
    engine: store.Engine
    signer: Signer
    now: Callable[[], datetime] = utcnow
    _corpus_cache: dict[tuple[date, int], ranking.Corpus] = field(default_factory=dict)
    _window_cache: dict[tuple[datetime, datetime, int], list[Paper]] = field(default_factory=dict)
    preview_window: SharedWindow = field(default_factory=SharedWindow)
    """What previews and search feeds rank against (web requests share it)."""

    @cached_property
    def store(self) -> store.Store:
        """The database as one object (its queues and composed digests)."""
        return store.Store(self.engine)

    @cached_property
    def renderer(self) -> EmailRenderer:
        """The email templates, compiled once (a broken template fails here, before any send)."""
        templates = (
            Path(self.settings.email.templates_dir) if self.settings.email.templates_dir else None
        )
        return EmailRenderer(templates, site=self.settings.site, email=self.settings.email)

    @cached_property
    def dkim(self) -> DkimSigner | None:
        """The DKIM signer, when the operator configured one."""
        return DkimSigner.from_settings(self.settings.email)

    @cached_property
    def sender(self) -> str:
        """The envelope sender (bounces go here); parsed once, it is on every message."""
        return parseaddr(self.settings.email.from_)[1]

    @cached_property
    def urls(self) -> ReaderUrls:
        """Every reader URL, built from the configured base URL (never a Host header)."""
        return ReaderUrls(self.settings.site.base_url)

    def links(
        self,
        subscriber: Subscriber,
        *,
        digest_date: date | None = None,
        papers: Sequence[Paper] = (),
    ) -> DigestLinks:
        """The reader's personal links, signed for this subscriber; with a digest's date and
        papers, also its web page and each paper's "more / fewer like this" page."""
        urls = self.urls
        if subscriber.id is None:
            return DigestLinks(home=urls.home())
        link = subscriber.link_secret
        unsubscribe = self.signer.make(Scope.UNSUBSCRIBE, subscriber.id, link=link)
        preferences = self.signer.make(Scope.PREFERENCES, subscriber.id, link=link)
        steerable = [p for p in papers if p.id is not None]
        mailto = ""
        if self.sender:
            mailto = f"mailto:{self.sender}?subject=unsubscribe%20{unsubscribe}"
        return DigestLinks(
            preferences=urls.preferences(preferences),
            unsubscribe=urls.unsubscribe(unsubscribe),
            unsubscribe_mailto=mailto,
            feed_atom=urls.feed(subscriber.feed_token, "atom"),
            feed_rss=urls.feed(subscriber.feed_token, "rss"),
            home=urls.home(),
            view=urls.digest(self.signer.make(Scope.DIGEST, subscriber.id, link=link), digest_date)
            if digest_date
            else "",
            more={p.key: urls.steer(preferences, p.id, "more") for p in steerable if p.id},
            fewer={p.key: urls.steer(preferences, p.id, "fewer") for p in steerable if p.id},
        )

    def window_papers(self, since: datetime, until: datetime) -> list[Paper]:
        """Papers first seen in (since, until], loaded once for all the batches that share it.

        A worker ranks a few hundred readers per batch, nearly all with the same window; the
        list is reloaded only when new papers arrive (the stored count changes).
        """
        key = (since, until, self.store.papers.count())
        papers = self._window_cache.get(key)
        if papers is None:
            papers = self.store.papers.seen_between(since, until)
            if len(self._window_cache) >= 4:
                self._window_cache.clear()
            self._window_cache[key] = papers
        return papers

    def corpus(self, papers_hint: Sequence[Paper] = ()) -> ranking.Corpus:
        """Ranking statistics over the rolling window of stored papers (cached per day)."""
        key = (self.now().date(), self.store.papers.count())
        cached = self._corpus_cache.get(key)
        if cached is None:
            since = self.now() - timedelta(days=self.settings.ranking.window_days)
            window = self.store.papers.seen_between(since, self.now() + timedelta(days=1))
            cached = ranking.build_corpus(
                window or papers_hint, acronyms=self.store.papers.load_acronyms()
            )
            self._corpus_cache.clear()
            self._corpus_cache[key] = cached
        return cached

    def transport(self) -> Transport:
        """The configured way out: SMTP, or a folder of .eml files."""
        delivery = self.settings.delivery
        if delivery.transport == "file":
            return FileTransport(Path(delivery.outbox_dir or "outbox"))
        return SmtpTransport(self.settings.smtp)


def build_context(settings: Settings, *, now: Callable[[], datetime] = utcnow) -> Context:
    """Open the database and the token signer; a missing or older database is refused, not made."""
    engine = store.open_engine(settings.database.url)
    store.check_schema(engine)
    secret = settings.site.secret_key or store.Store(engine).meta.secret()
    return Context(settings=settings, engine=engine, signer=Signer(secret), now=now)
