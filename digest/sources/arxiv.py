"""arXiv's own ways, on top of the RSS/Atom reader: the daily listing (announce types, the
"Abstract:" description, one-line author lists, error feeds) and the API (its error entries,
each author's affiliations).

arXiv abstracts are plain text: "<think>" in one is three characters of the abstract, not a tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from digest import text

from .authors import Author, author_name
from .records import SourceError

ARXIV_NS = "http://arxiv.org/schemas/atom"
_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{" + ARXIV_NS + "}"

_ANNOUNCE = re.compile(
    r"^\s*arXiv:\s*\S+\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?", re.I
)
_FEED_ERROR = re.compile(r"^\s*Feed error for query", re.I)


def is_listing(head: str) -> bool:
    """Whether the start of an XML body is an arXiv listing (rss.arxiv.org), even an empty one."""
    # An empty weekend listing has no announce_type, but still names arXiv's feed address.
    return ARXIV_NS in head and ("announce_type" in head or "rss.arxiv.org" in head)


def split_description(value: str) -> tuple[str | None, str]:
    """arXiv's "arXiv:ID Announce Type: T Abstract: ..." as (announce type, the abstract's text)."""
    match = _ANNOUNCE.match(value)
    if not match:
        return None, value
    return match.group("type").lower(), value[match.end() :]


def raise_listing_error(feed: Mapping[str, Any]) -> None:
    """A listing for a mistyped category answers 200 with "Feed error for query: ..." and the
    reason in its description: that is a failed source, not an empty day."""
    title = text.from_plain(feed.get("title"))
    if not _FEED_ERROR.match(title):
        return
    reason = text.from_plain(feed.get("subtitle") or feed.get("description")) or title
    raise SourceError(f"arXiv refused the listing: {reason}")


def raise_api_error(entries: list[Any]) -> None:
    """The arXiv API reports a bad query as a one-entry feed whose id is under /api/errors."""
    for entry in entries:
        if "arxiv.org/api/errors" in (entry.get("id") or ""):
            reason = text.from_plain(entry.get("summary")) or "unknown error"
            raise SourceError(f"the arXiv API refused the query: {reason}")


def api_authors(body: bytes) -> dict[str, list[Author]]:
    """Each API entry's authors with their <arxiv:affiliation>s, by entry id (feedparser keeps
    only the entry's last affiliation). Empty when the body is not well-formed XML."""
    try:
        root = SafeET.fromstring(body)
    except (ParseError, defusedxml.DefusedXmlException, ValueError):
        return {}
    found: dict[str, list[Author]] = {}
    for entry in root.iter(f"{_ATOM}entry"):
        authors: list[Author] = []
        for element in entry.findall(f"{_ATOM}author"):
            name = author_name(element.findtext(f"{_ATOM}name"))
            places = (text.from_plain(a.text) for a in element.findall(f"{_ARXIV}affiliation"))
            if name:
                authors.append(Author(name, "; ".join(place for place in places if place)))
        found[text.identifier(entry.findtext(f"{_ATOM}id"))] = authors
    return found
