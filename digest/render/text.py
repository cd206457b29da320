"""Text for templates beyond what digest.text cleans: safe links, an abstract's opening
sentences, plain-text wrapping, and pieces of a marked snippet cleaned without losing their spaces.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache

from digest.text import URL_UNSAFE, display_text, shorten

SNIPPET_LIMIT = 420
TEXT_WIDTH = 72

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


def clean_piece(value: str) -> str:
    """`display_text` for a piece of a longer line (a snippet between marks): the same cleaning,
    but a space at either edge is kept, so the pieces join back into one readable line."""
    core = display_text(value)
    if not core:
        return " " if value[:1].isspace() else ""
    lead = " " if value[:1].isspace() else ""
    tail = " " if value[-1:].isspace() else ""
    return lead + core + tail


_URL_BAD = re.compile(f"[{URL_UNSAFE}]")
_URL_START = re.compile(r"(?i)https?://[^/?#@\s\\]")


def safe_url(value: object) -> str:
    """The URL when it is an absolute http(s) link without whitespace, else an empty string."""
    url = "" if value is None else str(value).strip()
    if not url or len(url) > 2000 or not _URL_START.match(url) or _URL_BAD.search(url):
        return ""
    return url


def safe_link(value: object) -> str:
    """An http(s) URL or a mailto: address for the footer; anything else becomes empty."""
    url = "" if value is None else str(value).strip()
    if url.lower().startswith("mailto:"):
        return "" if _URL_BAD.search(url) or len(url) > 500 else url
    return safe_url(url)


def snippet(abstract: str, limit: int = SNIPPET_LIMIT) -> str:
    """The first two or three sentences of an abstract, within `limit` characters."""
    text = display_text(abstract)
    if len(text) <= limit:
        sentences = _SENTENCE_END.split(text)
        return " ".join(sentences[:3]) if len(sentences) > 3 else text
    sentences = _SENTENCE_END.split(text)
    chosen: list[str] = []
    size = 0
    for sentence in sentences[:3]:
        if chosen and size + len(sentence) + 1 > limit:
            break
        chosen.append(sentence)
        size += len(sentence) + 1
    result = " ".join(chosen)
    return shorten(result, limit) if len(result) > limit else result


@lru_cache(maxsize=16384)
def wrap(text: str, indent: str = "", first: str = "") -> str:
    """Fill `text` to the plain-text width; cached because the same paper text recurs per subscriber."""
    text = str(text)
    filled = _fill_words(text, indent, first)
    if filled is not None:
        return filled
    return textwrap.fill(
        text,
        width=TEXT_WIDTH,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    )


def _fill_words(text: str, indent: str, first: str) -> str | None:
    """textwrap.fill's result for the common case, greedily and several times faster: words
    separated by single spaces, none too long for a line. None for anything else (textwrap then).

    Every reader's mail has lines no cache can hold (the footer names the reader's address).
    """
    words = text.split(" ")
    longest = TEXT_WIDTH - max(len(first), len(indent))
    if any(not w or len(w) > longest or not w.isprintable() for w in words):
        return None
    lines: list[str] = []
    line, room = first + words[0], TEXT_WIDTH
    for word in words[1:]:
        if len(line) + 1 + len(word) <= room:
            line += " " + word
        else:
            lines.append(line)
            line = indent + word
    lines.append(line)
    return "\n".join(lines)
