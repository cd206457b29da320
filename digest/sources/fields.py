"""What every format's reader shares: the caps on each field, mojibake repair, and the step that
turns read fields into a Paper fit to store (ids cleaned, duplicates within a feed merged)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import ftfy

from digest import text
from digest.models import Paper, merge_papers

from .authors import AUTHORS_MAX, Author
from .ids import short_key

TITLE_MAX_CHARS = 1_000
ABSTRACT_MAX_CHARS = 10_000
"""arXiv allows 1,920 characters; journals' abstracts run longer, but not 5 MB."""
URL_MAX_CHARS = 2_000
"""Browsers and mail clients stop following links past about this; a longer one is dropped."""
AFFILIATION_MAX_CHARS = 300
CATEGORY_MAX_CHARS = 100
CATEGORIES_MAX = 50


def repaired(value: str) -> str:
    """Text without mojibake: UTF-8 that someone read as Latin-1 ("FranÃ§ois") is read again."""
    # ftfy only changes text its badness heuristics call garbled; ASCII cannot be.
    return value if value.isascii() else ftfy.fix_encoding(value)


def title_text(value: str) -> str:
    """A title as stored: one line, repaired, capped."""
    return _capped(value, TITLE_MAX_CHARS)


def abstract_text(value: str) -> str:
    """An abstract as stored: one line, repaired, capped."""
    return _capped(value, ABSTRACT_MAX_CHARS)


def _capped(value: str, limit: int) -> str:
    # Cut a hostile megabyte before the repair reads it; a few times the cap leaves room for
    # the whitespace that collapsing removes.
    return text.stored_text(repaired(value[: limit * 4]), limit)


def web_url(value: str | None) -> str:
    """An absolute http(s) link as stored, or "" for anything else (or one too long to follow)."""
    url = text.identifier(value)
    if not url.lower().startswith(("http://", "https://")) or len(url) > URL_MAX_CHARS:
        return ""
    return url


def authors_and_affiliations(
    authors: Iterable[Author],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names in order, same-name co-authors kept (two people may share a name), capped;
    and their affiliations, one per name, or none when the feed named no affiliation."""
    names: list[str] = []
    affiliations: list[str] = []
    for author in authors:
        name = repaired(author.name)
        if not name:
            continue
        names.append(name)
        affiliations.append(text.stored_text(repaired(author.affiliation), AFFILIATION_MAX_CHARS))
        if len(names) == AUTHORS_MAX:
            break
    return tuple(names), (tuple(affiliations) if any(affiliations) else ())


def categories(terms: Iterable[str]) -> tuple[str, ...]:
    """Category terms, cleaned, each once, in order, capped in length and number."""
    seen: dict[str, None] = {}
    for term in terms:
        cleaned = text.stored_text(term)
        if cleaned and len(cleaned) <= CATEGORY_MAX_CHARS:
            seen.setdefault(cleaned, None)
        if len(seen) == CATEGORIES_MAX:
            break
    return tuple(seen)


def add_paper(papers: dict[str, Paper], paper: Paper) -> None:
    """Add a paper read from a feed, merged with an earlier record of it in the same feed."""
    key = short_key(text.identifier(paper.key))
    if not key:
        return
    pdf_url = web_url(paper.pdf_url) or None
    if (key, pdf_url) != (paper.key, paper.pdf_url):
        paper = dataclasses.replace(paper, key=key, pdf_url=pdf_url)
    seen = papers.get(key)
    papers[key] = paper if seen is None else merge_papers(seen, paper)


def int_or_none(value: Any) -> int | None:
    """A count as a feed wrote it, or None when it is not a count a 32-bit column holds."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    # a count past what a 32-bit column holds is not a real one (and PostgreSQL refuses it)
    return number if 0 <= number <= 2**31 - 1 else None


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time (as JSON APIs write them) in UTC, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def one_line(value: Any) -> str:
    """An exception or value as one short line for a reason or a warning."""
    line = " ".join(str(value).split())
    return line[:200] or type(value).__name__
