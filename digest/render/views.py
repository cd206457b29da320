"""What the templates see of a paper: every field cleaned and shortened once per run."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from digest.models import Match, Paper, Snippet
from digest.render.text import clean_piece, safe_url, snippet
from digest.text import display_short, display_text, paper_text

TITLE_LIMIT = 300
SHOWN_AUTHORS = 3
"""Authors named on a card; more become "et al."."""
SHOWN_CATEGORIES = 4
TEXT_MARK = "*"
"""Around a matched word in the plain-text part, as people write emphasis in mail."""
_ARXIV_NEW_ID = re.compile(r"\d{4}\.\d{4,5}")
# arXiv renders an HTML version of papers submitted since December 2023 (ids 2312.xxxxx on)
_ARXIV_HTML_SINCE = "2312"

STRENGTHS = (
    (8.0, 3, "Strong match"),
    (3.0, 2, "Good match"),
    (0.0, 1, "Fair match"),
)
"""(least score, bars, label): how a card shows the strength of a full match."""


def authors_line(paper: Paper) -> str:
    """The first three authors, then "et al."; empty when the feed names none."""
    authors = [a for a in (display_text(a, 80) for a in paper.authors) if a]
    if len(authors) > SHOWN_AUTHORS:
        return ", ".join(authors[:SHOWN_AUTHORS]) + " et al."
    return ", ".join(authors)


def meta_line(paper: Paper) -> str:
    """Date, categories and upvotes on one line."""
    parts = []
    if paper.published_at is not None:
        day = paper.published_at
        parts.append(f"{day.day} {day:%b %Y}")
    categories = [
        c for c in (display_text(c, 30) for c in paper.categories[:SHOWN_CATEGORIES]) if c
    ]
    if categories:
        parts.append(", ".join(categories))
    if paper.upvotes and paper.upvotes > 0:
        parts.append(f"{paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    return " · ".join(parts)


def arxiv_html_url(paper: Paper) -> str:
    """arXiv's HTML rendering of a recent arXiv paper, else an empty string."""
    key = paper.key
    if _ARXIV_NEW_ID.fullmatch(key) and key[:4] >= _ARXIV_HTML_SINCE:
        return f"https://arxiv.org/html/{key}"
    return ""


@dataclass(frozen=True, slots=True)
class SnippetView:
    """A snippet in both parts: HTML with <b> around matched words, text with *asterisks*."""

    html: Markup
    text: str


def snippet_view(value: Snippet) -> SnippetView:
    """Clean each piece of a snippet, then emphasise the marked ones (escaped once, here)."""
    html: list[str] = []
    text: list[str] = []
    last = 0
    for start, end in value.marks:
        if start < last or end <= start:
            continue  # overlapping or empty marks are not worth a crash
        plain = clean_piece(value.text[last:start])
        word = clean_piece(value.text[start:end])
        html += [str(escape(plain)), f"<b>{escape(word)}</b>"]
        text += [plain, f"{TEXT_MARK}{word}{TEXT_MARK}"]
        last = end
    rest = clean_piece(value.text[last:])
    html.append(str(escape(rest)))
    text.append(rest)
    return SnippetView(Markup("".join(html).strip()), "".join(text).strip())


@dataclass(frozen=True, slots=True)
class PaperView:
    """A paper as the templates see it: every field already cleaned and shortened."""

    key: str
    title: str
    url: str
    pdf_url: str
    html_url: str
    authors: str
    meta: str
    snippet: SnippetView
    upvotes: int | None
    matched: tuple[str, ...] = ()
    partial: bool = False
    strength: str = ""
    bars: int = 0


@lru_cache(maxsize=4096)
def _paper_view(paper: Paper) -> PaperView:
    # A day's papers are shared by thousands of subscribers: clean each one once.
    pdf = safe_url(paper.pdf_url)
    lead = snippet(paper_text(paper.abstract))
    return PaperView(
        key=paper.key,
        title=paper_text(paper.title, TITLE_LIMIT) or "(untitled)",
        url=safe_url(paper.url) or pdf,
        pdf_url=pdf,
        html_url=arxiv_html_url(paper),
        authors=authors_line(paper),
        meta=meta_line(paper),
        snippet=SnippetView(Markup(escape(lead)), lead),
        upvotes=paper.upvotes if paper.upvotes and paper.upvotes > 0 else None,
    )


def paper_view(match: Match) -> PaperView:
    """The template view of one recommended paper: why it matched, how well, and the evidence."""
    if not match.matched and match.snippet is None:
        return _paper_view(match.paper)
    bars, label = strength(match.score, match.partial) if match.matched else (0, "")
    return _with_match(match.paper, match.matched, match.snippet, bars, label, match.partial)


def strength(score: float, partial: bool) -> tuple[int, str]:
    """Bars (1-3) and a label for how well a paper matched."""
    if partial:
        return 1, "Partial match"
    for least, bars, label in STRENGTHS:
        if score >= least:
            return bars, label
    return 1, "Fair match"


@lru_cache(maxsize=16384)
def _with_match(
    paper: Paper,
    matched: tuple[str, ...],
    evidence: Snippet | None,
    bars: int,
    label: str,
    partial: bool,
) -> PaperView:
    view = _paper_view(paper)
    terms = tuple(t for t in (display_short(t, 60) for t in matched[:8]) if t)
    shown = snippet_view(evidence) if evidence is not None and evidence.text else view.snippet
    return PaperView(
        key=view.key,
        title=view.title,
        url=view.url,
        pdf_url=view.pdf_url,
        html_url=view.html_url,
        authors=view.authors,
        meta=view.meta,
        snippet=shown,
        upvotes=view.upvotes,
        matched=terms,
        partial=partial,
        strength=label,
        bars=bars,
    )


def escape_once(value: Any) -> Markup:
    """markupsafe.escape, except that Markup comes back as it is rather than copied.

    escape() rebuilds every Markup it is given: a memoized card is several KB, and each reader's
    mail outputs ten, so the copies were a tenth of rendering.
    """
    return value if type(value) is Markup else escape(value)


def keep_markup(template: Any) -> Any:
    """Make an autoescaping Jinja template output Markup uncopied (see escape_once).

    Compiled templates call the `escape` of the namespace they were compiled into; it is swapped
    for escape_once, which escapes everything else exactly as before.
    """
    template.root_render_func.__globals__["escape"] = escape_once
    return template


class Memo:
    """`memo(macro, *args)` in a template: a macro's output cached by its arguments.

    A paper's card is the same for every subscriber it matches, so it is rendered once per run.
    Only for macros whose output depends on their arguments alone.
    """

    def __init__(self, limit: int = 20_000, *, ascii_html: bool = False) -> None:
        self.limit = limit
        self.ascii_html = ascii_html
        self.cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def __call__(self, macro: Any, *args: Any) -> Any:
        key = (macro.name, *args)
        cache = self.cache
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)  # least recently used first out: popular cards stay
            return found
        if len(cache) >= self.limit:
            cache.popitem(last=False)
        found = macro(*args)
        if self.ascii_html and not found.isascii():
            # Character references once per card, not once per message (the part stays 7-bit).
            found = Markup(found.encode("ascii", "xmlcharrefreplace").decode("ascii"))
        cache[key] = found
        return found
