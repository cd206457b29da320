"""Pure: Atom (RFC 4287) and RSS 2.0 documents for a list of recommended papers.

The pipeline writes them as files and the web app serves them; neither does I/O here. Entry ids
are tag: URIs built from the paper key, so a reader never sees the same paper twice across runs.
Titles and abstracts show their LaTeX as Unicode ("$\\sqrt{T}$" as "√(T)").
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from urllib.parse import quote, urlsplit

from digest.models import Paper, Snippet
from digest.text import html_text, paper_text, xml_text

ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
GENERATOR = "paper-digest"
TAG_DATE = "2024"
"""The date part of every tag: URI; fixed forever so ids never change."""

# Prefixes readers expect in RSS; registering them is global but these two are universal.
ET.register_namespace("atom", ATOM_NS)
ET.register_namespace("dc", DC_NS)


@dataclass(frozen=True)
class FeedEntry:
    """One paper in a feed: the paper, the digest it was recommended in, and why."""

    paper: Paper
    digest_date: date
    updated: datetime
    matched: tuple[str, ...] = ()
    snippet: Snippet | None = None
    """The abstract's sentences that show the matched terms (marked), shown before the rest."""
    partial: bool = False


def entry_id(paper_key: str, *, site_url: str) -> str:
    """A stable tag: URI (RFC 4151) for a paper, owned by the site's host name."""
    authority = urlsplit(site_url).hostname or "localhost"
    return f"tag:{authority},{TAG_DATE}:paper/{quote(paper_key, safe=':/.-_~@')}"


def atom_feed(
    entries: Sequence[FeedEntry],
    *,
    feed_id: str,
    title: str,
    self_url: str,
    site_url: str,
    updated: datetime,
) -> bytes:
    """An Atom 1.0 document, UTF-8, one <entry> per paper in the order given."""
    # Unqualified names plus a literal xmlns give the usual prefix-free Atom document.
    feed = ET.Element("feed", xmlns=ATOM_NS)
    _text(feed, "id", feed_id)
    _text(feed, "title", title)
    _text(feed, "updated", _rfc3339(updated))
    ET.SubElement(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    ET.SubElement(feed, "link", rel="alternate", type="text/html", href=site_url)
    # A feed-level author makes every entry valid, even papers that list no authors.
    author = ET.SubElement(feed, "author")
    _text(author, "name", title)
    _text(author, "uri", site_url)
    _text(feed, "generator", GENERATOR)
    for item in entries:
        feed.append(_atom_entry(item, site_url))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _atom_entry(item: FeedEntry, site_url: str) -> ET.Element:
    paper = item.paper
    entry = ET.Element("entry")
    _text(entry, "id", entry_id(paper.key, site_url=site_url))
    _text(entry, "title", paper_text(paper.title) or paper.key)
    _text(entry, "updated", _rfc3339(item.updated))
    if paper.published_at is not None:
        _text(entry, "published", _rfc3339(paper.published_at))
    ET.SubElement(
        entry, "link", rel="alternate", type="text/html", href=xml_text(paper.url or site_url)
    )
    if paper.pdf_url:
        ET.SubElement(
            entry, "link", rel="related", type="application/pdf", href=xml_text(paper.pdf_url)
        )
    for name in paper.authors:
        author = ET.SubElement(entry, "author")
        _text(author, "name", name)
    for category in paper.categories:
        ET.SubElement(entry, "category", term=xml_text(category))
    if paper.abstract:
        summary = _text(entry, "summary", paper_text(paper.abstract))
        summary.set("type", "text")
    content = _text(entry, "content", _content_html(item))
    content.set("type", "html")
    return entry


def rss_feed(
    entries: Sequence[FeedEntry],
    *,
    title: str,
    self_url: str,
    site_url: str,
    description: str,
) -> bytes:
    """An RSS 2.0 document, UTF-8, one <item> per paper in the order given."""
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    _text(channel, "title", title)
    _text(channel, "link", site_url)
    _text(channel, "description", description)
    ET.SubElement(
        channel, f"{{{ATOM_NS}}}link", rel="self", type="application/rss+xml", href=self_url
    )
    _text(channel, "generator", GENERATOR)
    _text(channel, "docs", "https://www.rssboard.org/rss-specification")
    if entries:
        _text(channel, "lastBuildDate", _rfc822(max(item.updated for item in entries)))
    for item in entries:
        channel.append(_rss_item(item, site_url))
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)


def _rss_item(item: FeedEntry, site_url: str) -> ET.Element:
    paper = item.paper
    element = ET.Element("item")
    _text(element, "title", paper_text(paper.title) or paper.key)
    _text(element, "link", paper.url or site_url)
    guid = _text(element, "guid", entry_id(paper.key, site_url=site_url))
    guid.set("isPermaLink", "false")
    _text(element, "pubDate", _rfc822(item.updated))
    # RSS <author> must be an email address; Dublin Core carries plain names.
    for name in paper.authors:
        _text(element, f"{{{DC_NS}}}creator", name)
    for category in paper.categories:
        _text(element, "category", category)
    _text(element, "description", _content_html(item))
    return element


def _content_html(item: FeedEntry) -> str:
    """The entry body as an HTML string (the serializer escapes it once more, as both specs want)."""
    paper = item.paper
    parts: list[str] = []
    if item.matched:
        label = "Partial match:" if item.partial else "Matched:"
        parts.append(f"<p><strong>{label}</strong> {html_text(', '.join(item.matched))}</p>")
    if paper.authors:
        parts.append(f"<p>{html_text(', '.join(paper.authors))}</p>")
    if item.snippet is not None and item.snippet.marks:
        parts.append(f"<blockquote>{_marked(item.snippet)}</blockquote>")
    if paper.abstract:
        parts.append(f"<p>{html_text(paper_text(paper.abstract))}</p>")
    links = []
    if paper.url:
        links.append(f'<a href="{html_text(paper.url)}">Abstract</a>')
    if paper.pdf_url:
        links.append(f'<a href="{html_text(paper.pdf_url)}">PDF</a>')
    if links:
        parts.append(f"<p>{' · '.join(links)}</p>")
    return "\n".join(parts) or html_text(paper_text(paper.title))


def _marked(snippet: Snippet) -> str:
    """A snippet as HTML: each marked range in <strong>, everything escaped."""
    out, last = [], 0
    for start, end in snippet.marks:
        if start < last:
            continue
        out += [
            html_text(snippet.text[last:start]),
            f"<strong>{html_text(snippet.text[start:end])}</strong>",
        ]
        last = end
    out.append(html_text(snippet.text[last:]))
    return "".join(out)


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = xml_text(value)
    return child


def _utc(value: datetime) -> datetime:
    # Naive datetimes in this program are UTC by convention (the store hands out aware ones).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    return _utc(value).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _rfc822(value: datetime) -> str:
    return format_datetime(_utc(value).replace(microsecond=0), usegmt=True)
