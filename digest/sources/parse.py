"""Feed bodies to papers: recognise what a body is, and hand it to the reader for its format.

Formats have one module each: feed.py (RSS/Atom via feedparser, arXiv's quirks from arxiv.py)
and hf.py (Hugging Face's JSON). Nothing here touches the network or the disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from digest import text
from digest.config import FetchSettings

from . import arxiv
from .feed import read_feed
from .hf import read_hf_daily
from .records import ParsedFeed, SourceError

KINDS = ("arxiv", "arxiv-api", "hf-daily", "rss", "atom")
_XML_KINDS = frozenset({"arxiv", "arxiv-api", "rss", "atom"})
_SNIFF_BYTES = 64 * 1024
"""Enough of the start of a body to tell what it is (never to judge whether it is safe)."""
_ROOT = re.compile(r"<([A-Za-z_][\w.:-]*)")
_PROLOG_JUNK = re.compile(
    r"^(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)", re.S | re.I
)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)


def detect_kind(body: bytes, *, headers: Mapping[str, str] | None = None) -> str:
    """Which kind of feed a body is (arxiv, arxiv-api, hf-daily, rss, atom); SourceError if none."""
    head = _sniff_text(body, _SNIFF_BYTES)
    stripped = head.lstrip()
    if not stripped:
        raise SourceError(f"the response was empty ({len(body)} bytes, no feed)")
    if stripped[0] in "[{":
        return "hf-daily"
    root_match = _root(stripped)
    if root_match is None and len(body) > _SNIFF_BYTES:
        # comments or a DOCTYPE longer than the window: look at the whole prolog
        head = _sniff_text(body, len(body))
        root_match = _root(head.lstrip())
    if root_match is None:
        content_type = _header(headers, "content-type") or "no Content-Type"
        raise SourceError(f"the response is not a feed (not XML or JSON; {content_type})")
    root = root_match.group(1).lower()
    local = root.rsplit(":", 1)[-1]
    if local in ("html", "head", "body"):
        raise SourceError(f"the server sent an HTML page, not a feed{_html_title(head)}")
    if local in ("rss", "rdf", "channel"):
        return "arxiv" if arxiv.is_listing(head) else "rss"
    if local == "feed":
        if "arxiv.org/api" in head:
            return "arxiv-api"
        if arxiv.is_listing(head):
            return "arxiv"
        return "atom"
    raise SourceError(
        f"the response is XML but not a feed (its root element is <{root_match.group(1)}>)"
    )


def parse_feed(
    body: bytes,
    *,
    source_name: str,
    kind: str = "auto",
    headers: Mapping[str, str] | None = None,
    settings: FetchSettings = FetchSettings(),  # noqa: B008 - frozen settings, safe as a default
) -> ParsedFeed:
    """Papers from one feed body; SourceError (one line) when nothing usable can be read."""
    detected = detect_kind(body, headers=headers)
    warnings: list[str] = []
    if kind not in ("auto", detected) and not {kind, detected} <= _XML_KINDS:
        warnings.append(
            f"configured as kind {kind!r} but the body is {detected!r}; read it as {detected!r}"
        )
    if detected == "hf-daily":
        return read_hf_daily(body, source_name=source_name, warnings=warnings)
    return read_feed(body, detected, source_name, headers, settings, warnings)


def _root(text: str) -> re.Match[str] | None:
    """The root element's start tag, after the XML declaration, comments and DOCTYPE."""
    rest = text
    while True:
        junk = _PROLOG_JUNK.match(rest)
        if not junk or not junk.group(0):
            break
        rest = rest[junk.end() :]
    return _ROOT.match(rest)


def _sniff_text(body: bytes, size: int) -> str:
    """The start of the body as text, good enough to recognise what it is."""
    head = body[:size]
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="replace")
    if head[:2] in (b"<\x00", b"\x00<"):
        return head.decode("utf-16-le" if head[0] == 0x3C else "utf-16-be", errors="replace")
    return head.decode("latin-1")


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _html_title(head: str) -> str:
    match = _HTML_TITLE.search(head)
    title = text.from_html(match.group(1)) if match else ""
    return f' ("{title[:80]}")' if title else ""
