"""Author lines as feeds write them, read into whole names in order (same-name co-authors kept).

arXiv writes one line "A (Affiliation, City), B and C"; bioRxiv writes "LAPALU, N., SIMON, A.";
most feeds give one name per element. Affiliations are read apart, never taken for people.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from digest import text

AUTHOR_MAX_CHARS = 200
"""A longer "name" is a sentence or an attack, not a person."""
AUTHORS_MAX = 1000
"""Collaborations sign with up to ~3,000 names; the first thousand are plenty to show and match."""


@dataclass(frozen=True, slots=True)
class Author:
    """One author as a feed gave them: the name, and the affiliation when the feed named one."""

    name: str
    affiliation: str = ""


# "N.", "J.-P.", "A. B.", "Ch.", or a lone capital: what the "Last, I." style puts after a comma.
_INITIALS = re.compile(r"(?:[^\W\d_][a-z]?\.[\s-]*)+|[A-Z]")
_SEPARATOR = re.compile(r"\s*(?:[,;&]\s*(?:and\s+)?|\band\s+)", re.I)
_AND = re.compile(r"\s+and\s+|\s*&\s*|\s*;\s*", re.I)


def split_author_line(line: str) -> list[Author]:
    """Names from one author line, in order: "A (Affil), B and C", or "Last, I., Last, I."."""
    parts = _top_level_split(line)
    people = _last_comma_initials(parts)
    if people is not None:
        return people
    authors: list[Author] = []
    for part in parts:
        name, affiliation = _name_and_affiliation(part)
        if name:
            authors.append(Author(name, affiliation))
    return authors


def one_author(value: str | None) -> Author | None:
    """A name given alone (one per element): kept whole, even "Last, First"."""
    name, affiliation = _name_and_affiliation(value or "")
    return Author(name, affiliation) if name else None


def author_name(value: str | None) -> str:
    """A person's name as text: TeX (L\\'opez, {\\"u}, {\\l}, \\o{}) becomes letters (López, ü,
    ł, ø), so `author:` terms match what readers type; capped."""
    name = _tex_text(value)
    return name if len(name) <= AUTHOR_MAX_CHARS else ""


def _tex_text(value: str | None) -> str:
    plain = text.from_plain(value)
    return unicodedata.normalize("NFC", text.readable_latex(plain)) if "\\" in plain else plain


def _top_level_split(line: str) -> list[str]:
    """Split on commas, ";", "&" and " and ", but never inside parentheses or brackets."""
    if "(" not in line and "[" not in line:  # most lines: one regex split
        return [part for part in _SEPARATOR.split(line) if part.strip()]
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(line):
        ch = line[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif depth == 0:
            if ch == ",":
                parts.append(line[start:i])
                start = i + 1
            else:
                match = _AND.match(line, i) if ch in " \t;&" else None
                if match and match.end() > i:
                    parts.append(line[start:i])
                    start = i = match.end()
                    continue
        i += 1
    parts.append(line[start:])
    if depth and "(" in line:
        # an unclosed parenthesis would swallow every later name: read it without them
        return _top_level_split(line.replace("(", " ").replace(")", " ").replace("[", " "))
    return [part.strip() for part in parts if part.strip()]


def _last_comma_initials(parts: list[str]) -> list[Author] | None:
    """bioRxiv's "LAPALU, N., SIMON, A." as ["N. LAPALU", "A. SIMON"]; None for another style."""
    if len(parts) < 2 or len(parts) % 2:
        return None
    pairs = list(zip(parts[::2], parts[1::2], strict=True))
    if not all(_INITIALS.fullmatch(given) and "(" not in last for last, given in pairs):
        return None
    authors = [author_name(f"{given} {last}") for last, given in pairs]
    return [Author(name) for name in authors if name]


def _name_and_affiliation(part: str) -> tuple[str, str]:
    """ "Tianliang Yan (University of Birmingham, ...)" as the name and the affiliation apart."""
    part = part.strip()
    affiliation = ""
    open_at = part.find("(")
    if open_at > 0 and part.endswith(")"):
        affiliation = _tex_text(part[open_at + 1 : -1])
        part = part[:open_at]
    return author_name(part), affiliation
