"""Backfill: asking a source that takes a date range (an arXiv API query) for the missed days.

A daily listing only shows today's papers; after downtime the papers announced meanwhile have left
it. An arXiv API query can be narrowed to a submission-date range and paged through, so the days
missed are fetched after all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.config import FetchSettings, SourceSettings

from .fetch import fetch_source
from .records import FetchResult, FetchState

PAGE = 200
MAX_PAGES = 25
PAUSE = 3.0
"""Seconds between two API calls, as arXiv asks of robots."""


def range_url(
    source: SourceSettings, since: datetime, until: datetime, *, start: int = 0, page: int = PAGE
) -> str | None:
    """The source's query narrowed to papers submitted in [since, until] (UTC), or None when the
    source cannot be asked for a date range (anything but an arXiv API search query)."""
    parts = urlsplit(source.url)
    if source.kind not in ("arxiv-api", "auto") or not parts.path.endswith("/api/query"):
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    search = query.get("search_query", "").strip()
    if not search:
        return None
    window = f"submittedDate:[{since:%Y%m%d%H%M} TO {until:%Y%m%d%H%M}]"
    query.update(
        search_query=f"({search}) AND {window}",
        sortBy="submittedDate",
        sortOrder="ascending",
        start=str(start),
        max_results=str(page),
    )
    return urlunsplit(parts._replace(query=urlencode(query)))


def can_backfill(source: SourceSettings) -> bool:
    """True when the source can be asked for a date range."""
    moment = datetime(2000, 1, 1)
    return range_url(source, moment, moment) is not None


def backfill_source(
    source: SourceSettings,
    since: datetime,
    until: datetime,
    settings: FetchSettings,
    *,
    page: int = PAGE,
    pause: float = PAUSE,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult | None:
    """Every paper the source lists as submitted in [since, until], page by page; None when the
    source cannot be asked for a range. A failing page ends the backfill with what was read."""
    papers = []
    warnings: list[str] = []
    result: FetchResult | None = None
    for number in range(MAX_PAGES):
        url = range_url(source, since, until, start=number * page, page=page)
        if url is None:
            return None
        if number:
            sleep(pause)
        result = fetch_source(source.model_copy(update={"url": url}), FetchState(), settings)
        if result.status == "failed":
            break
        papers.extend(result.papers)
        warnings.extend(result.warnings)
        if len(result.papers) + result.skipped < page:
            break
    else:
        warnings.append(f"backfill stopped after {MAX_PAGES * page} entries")
    assert result is not None
    if result.status == "failed" and not papers:
        return result
    return FetchResult(
        source=source.name,
        status="ok",
        papers=papers,
        kind=result.kind,
        etag=None,
        last_modified=None,
        error=None,
        warnings=warnings,
    )
