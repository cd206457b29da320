"""Hugging Face's daily papers JSON (/api/daily_papers) to papers.

Its titles and summaries are plain text: "The model emits <swi>" keeps its "<swi>".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from digest import text
from digest.models import Paper

from .authors import one_author
from .fields import (
    abstract_text,
    add_paper,
    authors_and_affiliations,
    int_or_none,
    iso_time,
    one_line,
    title_text,
)
from .ids import arxiv_abs_url, arxiv_pdf_url, paper_key
from .records import ParsedFeed, SourceError


def read_hf_daily(body: bytes, *, source_name: str, warnings: list[str]) -> ParsedFeed:
    """A list of {paper: {id, title, summary, authors, upvotes}, ...} as papers."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(
            f"the response looks like JSON but is not valid JSON ({one_line(exc)})"
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
        paper = _paper(item, source_name) if isinstance(item, dict) else None
        if paper is None:
            bad += 1
        else:
            add_paper(papers, paper)
    if data and not papers:
        raise SourceError(
            "the JSON list holds no papers (expected items like {paper: {id, title, ...}})"
        )
    if bad:
        warnings.append(f"{bad} items in the JSON had no paper id or title and were left out")
    return ParsedFeed(papers=list(papers.values()), kind="hf-daily", warnings=warnings)


def _paper(item: Mapping[str, Any], source_name: str) -> Paper | None:
    nested = item.get("paper")
    # The API nests the paper; a flat item (or "paper": null) is read from its own fields.
    paper: Mapping[str, Any] = nested if isinstance(nested, dict) else item
    raw_id = text.identifier(str(paper.get("id") or item.get("id") or ""))
    title = title_text(text.from_plain(_string(paper.get("title") or item.get("title"))))
    if not raw_id or not title:
        return None
    arxiv_id = paper_key(raw_id)
    key = arxiv_id or f"https://huggingface.co/papers/{raw_id}"
    raw_authors = paper.get("authors")
    # Anything but a list (null, a number, an object) means no authors, not a failed source.
    authors, affiliations = authors_and_affiliations(
        author
        for author in (
            one_author(_string(a.get("name")))
            for a in (raw_authors if isinstance(raw_authors, list) else ())
            if isinstance(a, dict)
        )
        if author is not None
    )
    summary = _string(paper.get("summary") or item.get("summary"))
    return Paper(
        key=key,
        title=title,
        abstract=abstract_text(text.from_plain(summary)),
        authors=authors,
        affiliations=affiliations,
        url=arxiv_abs_url(arxiv_id) if arxiv_id else key,
        pdf_url=arxiv_pdf_url(arxiv_id) if arxiv_id else None,
        categories=(),
        published_at=iso_time(paper.get("publishedAt") or item.get("publishedAt")),
        upvotes=int_or_none(paper.get("upvotes")),
        sources=(source_name,),
    )


def _string(value: Any) -> str:
    # A number or an object where text belongs is no text at all, not its repr.
    return value if isinstance(value, str) else ""
