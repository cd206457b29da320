"""RSS 0.9x/1.0/2.0 and Atom bodies to papers, with feedparser behind defusedxml's guards.

Each field is read as what its feed declares: plain text keeps every character ("<swi>"), HTML
loses its tags. arXiv's listing and API are read here too, with their quirks from arxiv.py.
"""

from __future__ import annotations

import calendar
import io
import re
import xml.sax
import xml.sax.handler
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import defusedxml
import defusedxml.expatreader
import feedparser
import feedparser.api

from digest import text
from digest.config import FetchSettings
from digest.models import Paper

from . import arxiv
from .authors import Author, one_author, split_author_line
from .encoding import mend_utf8, reads_cleanly
from .fields import (
    TITLE_MAX_CHARS,
    abstract_text,
    add_paper,
    authors_and_affiliations,
    categories,
    int_or_none,
    one_line,
    title_text,
    web_url,
)
from .ids import arxiv_abs_url, arxiv_pdf_url, paper_key
from .records import ParsedFeed, SourceError

# Every strict XML parse feedparser makes goes through defusedxml's expat reader, which refuses
# entity declarations (billion laughs) and external references at any depth of the document.
feedparser.api.PREFERRED_XML_PARSERS = ["defusedxml.expatreader"]

_ENTRY_END = re.compile(rb"</(?:[\w-]+:)?(?:item|entry)\s*>", re.I)
_CHUNK = 64 * 1024
_MISMATCH = (
    "the feed's bytes do not match its declared character encoding, and no other encoding "
    "reads them cleanly; not stored, to avoid garbled text"
)
_UNICODE = ("utf-8", "utf8", "utf-16", "utf16", "utf-32", "utf32")
_FALLBACKS = ("windows-1252", "cp1252", "iso-8859-1", "latin-1", "latin1")


def read_feed(
    body: bytes,
    kind: str,
    source_name: str,
    headers: Mapping[str, str] | None,
    settings: FetchSettings,
    warnings: list[str],
) -> ParsedFeed:
    """Papers from an RSS/Atom body of the given kind (arxiv, arxiv-api, rss, atom)."""
    try:
        body, strays = mend_utf8(body, headers)
    except ValueError:
        raise SourceError(_MISMATCH) from None
    if strays:
        warnings.append(
            f"the feed declares UTF-8 but {strays} of its bytes are not; they were read as "
            "Windows-1252 (Latin-1), which reads them cleanly (tell the feed's owner)"
        )
    parsed = _parse(body, headers)
    entries = list(parsed.entries)
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if isinstance(problem, feedparser.CharacterEncodingOverride):
        warnings.append(_encoding_note(body, parsed.get("encoding")))
        problem = None
    elif isinstance(problem, feedparser.NonXMLContentType):
        problem = None
    if kind == "arxiv" or "arxiv.org" in str(parsed.feed.get("link") or ""):
        arxiv.raise_listing_error(parsed.feed)
    if not entries:
        if problem is not None:
            raise SourceError(f"the feed could not be parsed: {_describe(problem)}")
        if not parsed.get("version") and not parsed.feed:
            raise SourceError("the response is not a feed (no channel or entries found)")
    elif problem is not None:
        entries = _complete(entries, body, parsed.get("encoding"), problem, warnings)
    if kind == "arxiv-api":
        arxiv.raise_api_error(entries)
    # The API names each author's affiliations, which feedparser merges into one per entry.
    affiliated = arxiv.api_authors(body) if kind == "arxiv-api" else {}
    papers, skipped = _papers(entries, kind, source_name, settings, warnings, affiliated)
    title = text.from_plain(parsed.feed.get("title"), TITLE_MAX_CHARS) if parsed.feed else ""
    return ParsedFeed(papers=papers, kind=kind, warnings=warnings, skipped=skipped, title=title)


def _parse(body: bytes, headers: Mapping[str, str] | None) -> Any:
    _refuse_declarations(body)
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        # Never a URL or a path: feedparser would open it itself, without our limits.
        return feedparser.parse(
            io.BytesIO(body),
            response_headers=response_headers,
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except defusedxml.DefusedXmlException as exc:
        raise _refused(exc) from None
    except UnicodeDecodeError:
        # feedparser reads the <?xml encoding="..."?> name as UTF-8 and fails on garbage there
        raise SourceError(
            "the feed's <?xml ... encoding=...?> line is garbled, so its text cannot be read "
            "(tell the feed's owner)"
        ) from None


class _RootReached(Exception):
    """The prolog is over: no declaration can come after the root element starts."""


class _StopAtRoot(xml.sax.handler.ContentHandler):
    def startElement(self, name: str, attrs: Any) -> None:
        raise _RootReached


def _refuse_declarations(body: bytes) -> None:
    """Read the prolog, however long, with defusedxml: entity declarations and external
    references are refused there before feedparser (which would quietly drop them) sees it."""
    parser = defusedxml.expatreader.create_parser()
    parser.setContentHandler(_StopAtRoot())
    try:
        for start in range(0, len(body), _CHUNK):
            parser.feed(body[start : start + _CHUNK])
    except _RootReached:
        return
    except defusedxml.DefusedXmlException as exc:
        raise _refused(exc) from None
    except (xml.sax.SAXException, ValueError):
        return  # not well-formed before its root: feedparser reads what it can and says so


def _refused(exc: Exception) -> SourceError:
    return SourceError(
        "the feed declares XML entities or external references "
        f"({type(exc).__name__}), which can expand without limit or read local files; refused"
    )


def _encoding_note(body: bytes, encoding: str | None) -> str:
    """The warning for a feed whose bytes are not in its declared encoding, when the encoding
    feedparser fell back to reads them cleanly; SourceError when that would be a guess."""
    name = (encoding or "").lower().replace("_", "-")
    if name.startswith(_UNICODE):
        # Unicode encodings are recognised from the bytes themselves: the text is right.
        return f"the feed's declared character encoding is wrong; it was read as {encoding}"
    if name in _FALLBACKS:
        decoded = body.decode("cp1252", errors="replace")
        if "\ufffd" not in decoded and reads_cleanly(decoded):
            return (
                "the feed's bytes are not in its declared character encoding; "
                "they read cleanly as Windows-1252 (Latin-1), so they were read that way "
                "(tell the feed's owner)"
            )
    raise SourceError(_MISMATCH)


def _complete(
    entries: list[Any], body: bytes, encoding: str | None, problem: Any, warnings: list[str]
) -> list[Any]:
    """The entries of a damaged feed that were closed before it broke off, with a warning."""
    complete = _complete_entries(body, encoding)
    dropped = 0
    if complete is not None and complete < len(entries):
        dropped = len(entries) - complete
        entries = entries[:complete]
    note = (
        f"the feed is malformed ({_describe(problem)}); kept the {len(entries)} entries that parsed"
    )
    if dropped:
        note += f" and dropped {dropped} cut-off entr{'y' if dropped == 1 else 'ies'}"
    warnings.append(note)
    if not entries:
        raise SourceError(f"the feed could not be parsed: {_describe(problem)}")
    return entries


def _complete_entries(body: bytes, encoding: str | None) -> int | None:
    """How many entries were closed before a feed broke off, when the bytes can be counted."""
    if encoding and encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return None
    return len(_ENTRY_END.findall(body))


def _describe(problem: Any) -> str:
    if isinstance(problem, feedparser.CharacterEncodingUnknown):
        return "its character encoding is unknown or the bytes do not match it"
    return one_line(problem)


def _papers(
    entries: Iterable[Any],
    kind: str,
    source_name: str,
    settings: FetchSettings,
    warnings: list[str],
    affiliated: Mapping[str, list[Author]],
) -> tuple[list[Paper], int]:
    papers: dict[str, Paper] = {}
    skipped = 0
    anonymous = 0
    for entry in entries:
        announce, paper = _entry_to_paper(entry, kind, source_name, affiliated)
        if paper is None:
            anonymous += 1
            continue
        if announce in ("replace", "replace-cross") and not settings.include_replacements:
            skipped += 1
            continue
        if announce == "cross" and not settings.include_cross_lists:
            skipped += 1
            continue
        add_paper(papers, paper)
    if anonymous:
        warnings.append(f"{anonymous} entries had no title or no id/link and were left out")
    return list(papers.values()), skipped


def _entry_to_paper(
    entry: Any, kind: str, source_name: str, affiliated: Mapping[str, list[Author]]
) -> tuple[str | None, Paper | None]:
    """(arXiv announce type, paper) for one feedparser entry; paper None when it has no identity."""
    raw_summary, summary_type = _summary(entry)
    described_type: str | None = None
    if kind == "arxiv":
        # arXiv's description is plain text after its "Announce Type ... Abstract:" preamble.
        described_type, plain = arxiv.split_description(raw_summary)
        abstract = abstract_text(text.from_plain(plain))
    else:
        abstract = abstract_text(_as_text(raw_summary, summary_type))
    announce = (entry.get("arxiv_announce_type") or described_type or "").strip().lower() or None
    title = title_text(_as_text(entry.get("title"), _type(entry, "title_detail")))
    links = [link.get("href", "") for link in entry.get("links", ()) if link.get("href")]
    entry_id = text.identifier(entry.get("id"))
    link = text.identifier(entry.get("link"))
    arxiv_id = paper_key(entry_id, link, *links, raw_summary[:400])
    key = arxiv_id or entry_id or link
    if not key or not title:
        return announce, None
    pdf_url: str | None
    if arxiv_id:
        url, pdf_url = arxiv_abs_url(arxiv_id), arxiv_pdf_url(arxiv_id)
    else:
        url = web_url(link) or next((u for u in map(web_url, links) if u), "")
        pdf_url = _pdf_link(entry.get("links", ()))
    listed = affiliated.get(entry_id)
    authors, affiliations = authors_and_affiliations(
        listed if listed is not None else _authors(entry, kind)
    )
    return announce, Paper(
        key=key,
        title=title,
        abstract=abstract,
        authors=authors,
        affiliations=affiliations,
        url=url,
        pdf_url=pdf_url,
        categories=_categories(entry),
        published_at=_entry_time(entry),
        upvotes=_upvotes(entry),
        sources=(source_name,),
    )


def _summary(entry: Any) -> tuple[str, str]:
    """The entry's summary (or its first content) and the type the feed declared for it."""
    if entry.get("summary"):
        return str(entry["summary"]), _type(entry, "summary_detail")
    for content in entry.get("content") or ():
        if content.get("value"):
            return str(content["value"]), str(content.get("type") or "text/html")
    return "", "text/plain"


def _type(entry: Any, detail: str) -> str:
    value = entry.get(detail)
    return str(value.get("type") or "text/html") if isinstance(value, Mapping) else "text/html"


def _as_text(value: Any, content_type: str) -> str:
    """A field as text: HTML loses its tags, plain text keeps every character."""
    if "html" in content_type.lower():
        return text.from_html(value)
    return text.from_plain(value)


def _authors(entry: Any, kind: str) -> list[Author]:
    names = [a.get("name") for a in entry.get("authors", ()) if a.get("name")]
    if not names and entry.get("author"):
        names = [entry["author"]]
    result: list[Author] = []
    for name in names:
        line = str(name)
        # arXiv's dc:creator is one "A (Affil), B and C" line; bioRxiv's is "LAST, I., LAST, I.".
        # Elsewhere a name per element, where a lone comma is "Last, First", not two people.
        if kind == "arxiv" or line.count(",") >= 2 or " and " in line:
            result.extend(split_author_line(line))
        else:
            author = one_author(line)
            if author is not None:
                result.append(author)
    return result


def _categories(entry: Any) -> tuple[str, ...]:
    terms: list[str] = []
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping) and primary.get("term"):
        terms.append(str(primary["term"]))
    for tag in entry.get("tags", ()) or ():
        term = text.from_plain(tag.get("term") or tag.get("label"))
        scheme = tag.get("scheme") or ""
        # Scheme-qualified "name:value" tags (an author count) describe the entry, not its topic.
        if not term or (":" in term and scheme and "arxiv.org" not in scheme):
            continue
        terms.append(term)
    return categories(terms)


def _entry_time(entry: Any) -> datetime | None:
    for field in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(entry, field)  # not entry.get: it maps updated to published with a warning
        if value:
            # feedparser has already converted the feed's offset to UTC.
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _upvotes(entry: Any) -> int | None:
    for name, value in entry.items():
        if name == "upvotes" or name.endswith("_upvotes"):
            return int_or_none(value)
    return None


def _pdf_link(links: Iterable[Any]) -> str | None:
    for link in links:
        if link.get("type") == "application/pdf" or (link.get("title") or "").lower() == "pdf":
            url = web_url(link.get("href"))
            if url:
                return url
    return None
