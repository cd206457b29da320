"""Paper sources: fetch feeds (arXiv RSS/Atom, arXiv API, Hugging Face daily papers, any RSS/Atom)
and turn them into Paper records. The only importer of httpx and feedparser; no database access.

    result = fetch_source(source_settings, FetchState(etag, last_modified), fetch_settings)
    result.status in ("ok", "not_modified", "failed"); result.papers; result.error (one line)
"""

from __future__ import annotations

from .backfill import backfill_source, can_backfill
from .fetch import fetch_source, make_client, user_agent
from .ids import paper_key
from .parse import KINDS, detect_kind, parse_feed
from .records import FetchResult, FetchState, FetchStatus, ParsedFeed, SourceError

__all__ = [
    "KINDS",
    "FetchResult",
    "FetchState",
    "FetchStatus",
    "ParsedFeed",
    "SourceError",
    "backfill_source",
    "can_backfill",
    "detect_kind",
    "fetch_source",
    "make_client",
    "paper_key",
    "parse_feed",
    "user_agent",
]
