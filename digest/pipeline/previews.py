"""The papers previews and public search feeds rank against: one shared, prepared window per process.

Every preview used to reload the window's papers and index them again (300 ms of CPU and a fresh
copy of every paper per request at 5,000 papers). Now one process-wide window is loaded and
indexed once, and rebuilt only when new papers arrive or the window moves on (hourly); a request
just scores its profile against it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from digest import ranking
from digest.models import Paper

if TYPE_CHECKING:  # the Context holds a SharedWindow, so this module cannot import it at run time
    from digest.pipeline.context import Context

FALLBACK_PAPERS = 2000
"""When nothing is recent (a quiet install), previews rank the newest papers of all."""


@dataclass(frozen=True, slots=True)
class PreviewWindow:
    """The candidate papers and their corpus statistics, indexed for ranking."""

    papers: list[Paper]
    corpus: ranking.Corpus
    key: tuple[datetime, int]
    """(window start to the hour, stored papers): a new key means a new window."""


class SharedWindow:
    """The current PreviewWindow, shared by every request of a process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: PreviewWindow | None = None

    def get(self, ctx: Context) -> PreviewWindow:
        """The window for now: the cached one, or a new one when papers arrived or an hour passed."""
        key = window_key(ctx)
        current = self._current
        if current is not None and current.key == key:
            return current
        # One request builds it; the others wait for it rather than each building their own copy.
        with self._lock:
            current = self._current
            if current is None or current.key != key:
                current = self._current = load_window(ctx, key)
        return current


def window_key(ctx: Context) -> tuple[datetime, int]:
    """Where the window starts (to the hour, so it is not rebuilt every second) and how many
    papers are stored (a fetch that adds papers changes it)."""
    start = ctx.now() - timedelta(days=ctx.settings.digest.first_digest_days)
    return start.replace(minute=0, second=0, microsecond=0), ctx.store.papers.count()


def load_window(ctx: Context, key: tuple[datetime, int]) -> PreviewWindow:
    """Load the papers first seen since the key's start and build their ranking index."""
    papers = ctx.store.papers.seen_between(key[0], ctx.now() + timedelta(days=1))
    papers = papers or ctx.store.papers.newest(limit=FALLBACK_PAPERS)
    corpus = ctx.corpus(papers)
    ranking.prepared(papers, corpus, ctx.settings.ranking)  # indexed now, under the lock
    return PreviewWindow(papers=papers, corpus=corpus, key=key)
