"""Feed bodies to papers: sniff the kind, parse with feedparser (or JSON), normalize each entry.

Nothing here touches the network or the disk: parse_feed works on bytes already fetched.
"""

from __future__ import annotations

import calendar
import dataclasses
import io
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.config import FetchSettings
from digest.models import Paper

from .records import ParsedFeed, SourceError
from .text import (
    arxiv_abs_url,
    arxiv_pdf_url,
    author_name,
    clean_text,
    dedupe,
    paper_key,
    short_key,
    split_arxiv_description,
    split_authors,
    strip_control,
)

KINDS = ("arxiv", "arxiv-api", "hf-daily", "rss", "atom")
_XML_KINDS = frozenset({"arxiv", "arxiv-api", "rss", "atom"})
_ARXIV_NS = "http://arxiv.org/schemas/atom"
_SNIFF_BYTES = 64 * 1024
_ROOT = re.compile(r"<([A-Za-z_][\w.:-]*)")
_PROLOG_JUNK = re.compile(
    r"^(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)", re.S | re.I
)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)
_ENTRY_END = re.compile(rb"</(?:[\w-]+:)?(?:item|entry)\s*>", re.I)


def detect_kind(body: bytes, *, headers: Mapping[str, str] | None = None) -> str:
    """Which kind of feed a body is (arxiv, arxiv-api, hf-daily, rss, atom); SourceError if none."""
    head = _sniff_text(body)
    stripped = head.lstrip()
    if not stripped:
        raise SourceError(f"the response was empty ({len(body)} bytes, no feed)")
    if stripped[0] in "[{":
        return "hf-daily"
    _refuse_entities(head)
    rest = stripped
    while True:
        junk = _PROLOG_JUNK.match(rest)
        if not junk or not junk.group(0):
            break
        rest = rest[junk.end() :]
    root_match = _ROOT.match(rest)
    if root_match is None:
        content_type = _header(headers, "content-type") or "no Content-Type"
        raise SourceError(f"the response is not a feed (not XML or JSON; {content_type})")
    root = root_match.group(1).lower()
    local = root.rsplit(":", 1)[-1]
    if local in ("html", "head", "body"):
        raise SourceError(f"the server sent an HTML page, not a feed{_html_title(head)}")
    if local in ("rss", "rdf", "channel"):
        return "arxiv" if _is_arxiv_listing(head) else "rss"
    if local == "feed":
        if "arxiv.org/api" in head:
            return "arxiv-api"
        if _is_arxiv_listing(head):
            return "arxiv"
        return "atom"
    raise SourceError(
        f"the response is XML but not a feed (its root element is <{root_match.group(1)}>)"
    )


def _is_arxiv_listing(head: str) -> bool:
    # An empty weekend listing has no announce_type, but still names arXiv's feed address.
    return _ARXIV_NS in head and ("announce_type" in head or "rss.arxiv.org" in head)


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
        return _parse_hf_daily(body, source_name=source_name, warnings=warnings)
    return _parse_xml(body, detected, source_name, headers, settings, warnings)


def _parse_xml(
    body: bytes,
    kind: str,
    source_name: str,
    headers: Mapping[str, str] | None,
    settings: FetchSettings,
    warnings: list[str],
) -> ParsedFeed:
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    # Never a URL or a path: feedparser would open it itself, without our limits.
    try:
        parsed = feedparser.parse(
            io.BytesIO(body),
            response_headers=response_headers,
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except UnicodeDecodeError:
        # feedparser reads the <?xml encoding="..."?> name as UTF-8 and fails on garbage there
        raise SourceError(
            "the feed's <?xml ... encoding=...?> line is garbled, so its text cannot be read "
            "(tell the feed's owner)"
        ) from None
    entries = list(parsed.entries)
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if isinstance(problem, feedparser.CharacterEncodingOverride):
        warnings.append(_encoding_note(problem, parsed.get("encoding")))
        problem = None
    elif isinstance(problem, feedparser.NonXMLContentType):
        problem = None
    if not entries:
        if problem is not None:
            raise SourceError(f"the feed could not be parsed: {_describe(problem)}")
        if not parsed.get("version") and not parsed.feed:
            raise SourceError("the response is not a feed (no channel or entries found)")
    elif problem is not None:
        complete = _complete_entries(body, parsed.get("encoding"))
        dropped = 0
        if complete is not None and complete < len(entries):
            dropped = len(entries) - complete
            entries = entries[:complete]
        note = (
            f"the feed is malformed ({_describe(problem)}); "
            f"kept the {len(entries)} entries that parsed"
        )
        if dropped:
            note += f" and dropped {dropped} cut-off entr{'y' if dropped == 1 else 'ies'}"
        warnings.append(note)
        if not entries:
            raise SourceError(f"the feed could not be parsed: {_describe(problem)}")
    if kind == "arxiv-api":
        _raise_api_error(entries)
    papers, skipped = _papers_from_entries(entries, kind, source_name, settings, warnings)
    title = clean_text(parsed.feed.get("title")) if parsed.feed else ""
    return ParsedFeed(papers=papers, kind=kind, warnings=warnings, skipped=skipped, title=title)


def _raise_api_error(entries: list[Any]) -> None:
    """The arXiv API reports a bad query as a one-entry feed whose id is under /api/errors."""
    for entry in entries:
        if "arxiv.org/api/errors" in (entry.get("id") or ""):
            reason = clean_text(entry.get("summary")) or "unknown error"
            raise SourceError(f"the arXiv API refused the query: {reason}")


def _papers_from_entries(
    entries: Iterable[Any],
    kind: str,
    source_name: str,
    settings: FetchSettings,
    warnings: list[str],
) -> tuple[list[Paper], int]:
    papers: dict[str, Paper] = {}
    skipped = 0
    anonymous = 0
    for entry in entries:
        announce, paper = _entry_to_paper(entry, kind, source_name)
        if paper is None:
            anonymous += 1
            continue
        if announce in ("replace", "replace-cross") and not settings.include_replacements:
            skipped += 1
            continue
        if announce == "cross" and not settings.include_cross_lists:
            skipped += 1
            continue
        _add(papers, paper)
    if anonymous:
        warnings.append(f"{anonymous} entries had no title or no id/link and were left out")
    return list(papers.values()), skipped


def _entry_to_paper(entry: Any, kind: str, source_name: str) -> tuple[str | None, Paper | None]:
    """(arXiv announce type, paper) for one feedparser entry; paper None when it has no identity."""
    raw_summary = entry.get("summary") or ""
    if not raw_summary and entry.get("content"):
        raw_summary = entry["content"][0].get("value", "")
    text = clean_text(raw_summary)
    described_type, abstract = split_arxiv_description(text)
    announce = (entry.get("arxiv_announce_type") or described_type or "").strip().lower() or None
    title = clean_text(entry.get("title"))
    links = [link.get("href", "") for link in entry.get("links", ()) if link.get("href")]
    entry_id = entry.get("id") or ""
    link = entry.get("link") or ""
    arxiv_id = paper_key(entry_id, link, *links, raw_summary[:400])
    key = arxiv_id or entry_id.strip() or link.strip()
    if not key or not title:
        return announce, None
    pdf_url: str | None
    if arxiv_id:
        url, pdf_url = arxiv_abs_url(arxiv_id), arxiv_pdf_url(arxiv_id)
    else:
        url = _web_url(link) or next((u for u in map(_web_url, links) if u), "")
        pdf_url = _pdf_link(entry.get("links", ()))
    return announce, Paper(
        key=key,
        title=title,
        abstract=abstract,
        authors=_authors(entry, kind),
        url=url,
        pdf_url=pdf_url,
        categories=_categories(entry),
        published_at=_entry_time(entry),
        upvotes=_upvotes(entry),
        sources=(source_name,),
    )


def _authors(entry: Any, kind: str) -> tuple[str, ...]:
    names = [author_name(a.get("name")) for a in entry.get("authors", ()) if a.get("name")]
    if not names and entry.get("author"):
        names = [author_name(entry["author"])]
    result: list[str] = []
    for name in names:
        # arXiv's dc:creator is one "A, B and C" line; other feeds list one author per element,
        # where a lone comma is more likely "Last, First" than two people.
        if kind in ("arxiv", "arxiv-api") or name.count(",") >= 2 or " and " in name:
            result.extend(split_authors(name))
        elif name:
            result.append(name)
    return dedupe(result)


_CATEGORY_LIKE = re.compile(r"^[a-z-]+(?:\.[A-Za-z-]+)?$")


def _categories(entry: Any) -> tuple[str, ...]:
    terms: list[str] = []
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping) and primary.get("term"):
        terms.append(primary["term"].strip())
    for tag in entry.get("tags", ()) or ():
        term = clean_text(tag.get("term") or tag.get("label"))
        scheme = tag.get("scheme") or ""
        # Scheme-qualified "name:value" tags (an author count) describe the entry, not its topic.
        if not term or (":" in term and scheme and "arxiv.org" not in scheme):
            continue
        terms.append(term)
    return dedupe(terms)


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
            return _int_or_none(value)
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    # a count past what a 32-bit column holds is not a real one (and PostgreSQL refuses it)
    return number if 0 <= number <= 2**31 - 1 else None


def _web_url(value: str | None) -> str:
    value = (value or "").strip()
    return value if value.lower().startswith(("http://", "https://")) else ""


def _pdf_link(links: Iterable[Any]) -> str | None:
    for link in links:
        if link.get("type") == "application/pdf" or (link.get("title") or "").lower() == "pdf":
            url = _web_url(link.get("href"))
            if url:
                return url
    return None


def _add(papers: dict[str, Paper], paper: Paper) -> None:
    """A feed may list a paper twice (categories joined with "+"): keep one, union the rest."""
    # an id or link with a control character in it ("&#0;") can be neither stored nor linked
    key, url = short_key(strip_control(paper.key)), strip_control(paper.url)
    pdf_url = strip_control(paper.pdf_url) if paper.pdf_url else paper.pdf_url
    if (key, url, pdf_url) != (paper.key, paper.url, paper.pdf_url):
        paper = dataclasses.replace(paper, key=key, url=url, pdf_url=pdf_url)
    if not paper.key:
        return
    seen = papers.get(paper.key)
    if seen is None:
        papers[paper.key] = paper
        return
    papers[paper.key] = Paper(
        key=seen.key,
        title=seen.title or paper.title,
        abstract=max(seen.abstract, paper.abstract, key=len),
        authors=seen.authors or paper.authors,
        url=seen.url or paper.url,
        pdf_url=seen.pdf_url or paper.pdf_url,
        categories=dedupe(seen.categories + paper.categories),
        published_at=min(filter(None, (seen.published_at, paper.published_at)), default=None),
        upvotes=max((v for v in (seen.upvotes, paper.upvotes) if v is not None), default=None),
        sources=seen.sources,
    )


def _parse_hf_daily(body: bytes, *, source_name: str, warnings: list[str]) -> ParsedFeed:
    """Hugging Face's /api/daily_papers: a list of {paper: {id, title, summary, authors}, ...}."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(
            f"the response looks like JSON but is not valid JSON ({_one_line(exc)})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        data = data["papers"]
    if not isinstance(data, list):
        keys = (
            ", ".join(sorted(map(str, data))[:5]) if isinstance(data, dict) else type(data).__name__
        )
        raise SourceError(
            f"the JSON is not a list of papers (Hugging Face daily papers format); got {{{keys}}}"
        )
    papers: dict[str, Paper] = {}
    bad = 0
    for item in data:
        paper = _hf_paper(item, source_name) if isinstance(item, dict) else None
        if paper is None:
            bad += 1
        else:
            _add(papers, paper)
    if data and not papers:
        raise SourceError(
            "the JSON list holds no papers (expected items like {paper: {id, title, ...}})"
        )
    if bad:
        warnings.append(f"{bad} items in the JSON had no paper id or title and were left out")
    return ParsedFeed(papers=list(papers.values()), kind="hf-daily", warnings=warnings)


def _hf_paper(item: Mapping[str, Any], source_name: str) -> Paper | None:
    nested = item.get("paper")
    # The API nests the paper; a flat item (or "paper": null) is read from its own fields.
    paper: Mapping[str, Any] = nested if isinstance(nested, dict) else item
    raw_id = str(paper.get("id") or item.get("id") or "").strip()
    title = clean_text(str(paper.get("title") or item.get("title") or ""))
    if not raw_id or not title:
        return None
    arxiv_id = paper_key(raw_id)
    key = arxiv_id or f"https://huggingface.co/papers/{raw_id}"
    raw_authors = paper.get("authors")
    # Anything but a list (null, a number, an object) means no authors, not a failed source.
    authors = [
        author_name(str(a.get("name")))
        for a in (raw_authors if isinstance(raw_authors, list) else ())
        if isinstance(a, dict) and a.get("name")
    ]
    return Paper(
        key=key,
        title=title,
        abstract=clean_text(str(paper.get("summary") or item.get("summary") or "")),
        authors=dedupe(authors),
        url=arxiv_abs_url(arxiv_id) if arxiv_id else key,
        pdf_url=arxiv_pdf_url(arxiv_id) if arxiv_id else None,
        categories=(),
        published_at=_iso_time(paper.get("publishedAt") or item.get("publishedAt")),
        upvotes=_int_or_none(paper.get("upvotes")),
        sources=(source_name,),
    )


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _sniff_text(body: bytes) -> str:
    """The start of the body as text, good enough to recognise what it is."""
    head = body[:_SNIFF_BYTES]
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


def _refuse_entities(head: str) -> None:
    # Entity declarations can expand exponentially ("billion laughs"); no real feed needs them.
    if re.search(r"<!ENTITY", head, re.I):
        raise SourceError(
            "the feed declares XML entities (<!ENTITY>), which can expand without limit; refused"
        )


def _complete_entries(body: bytes, encoding: str | None) -> int | None:
    """How many entries were closed before a feed broke off, when the bytes can be counted."""
    if encoding and encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return None
    return len(_ENTRY_END.findall(body))


def _encoding_note(problem: Any, encoding: str | None) -> str:
    """A warning when the bytes are Unicode in disguise; SourceError when decoding would be a guess."""
    name = (encoding or "").lower().replace("_", "-")
    if name.startswith(("utf-8", "utf8", "utf-16", "utf16", "utf-32", "utf32")):
        # Unicode encodings are recognised from the bytes themselves: the text is right.
        return f"the feed's declared character encoding is wrong; it was read as {encoding}"
    # A fallback to an 8-bit code page turns Shift_JIS or UTF-8 into mojibake that would
    # overwrite good titles; better to fail this source and say why.
    raise SourceError(
        f"the feed's bytes do not match its declared character encoding ({_one_line(problem)}); "
        "not stored, to avoid garbled text"
    )


def _describe(problem: Any) -> str:
    if isinstance(problem, feedparser.CharacterEncodingUnknown):
        return "its character encoding is unknown or the bytes do not match it"
    return _one_line(problem)


def _one_line(value: Any) -> str:
    text = " ".join(str(value).split())
    return text[:200] or type(value).__name__


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _html_title(head: str) -> str:
    match = _HTML_TITLE.search(head)
    title = clean_text(match.group(1)) if match else ""
    return f' ("{title[:80]}")' if title else ""
