"""The profile language a subscriber types: terms, phrases, exclusions, fields and weights.

Terms are separated by commas or new lines:
    diffusion, diffusion models, "federated learning", -medical, -"medical imaging",
    author:"Yoshua Bengio", cat:cs.LG, title:transformer, distillation^2
A hyphenated word (text-to-image) is taken as a phrase of its parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from digest import text as text_rules
from digest.ranking.text import STOPWORDS, words

MAX_TERMS = 30
MAX_WORDS_PER_TERM = 10
MAX_PROFILE_CHARS = 2000
MAX_WEIGHT = 10.0
FIELDS = ("author", "cat", "title", "abstract")

_FIELD = re.compile(r"([A-Za-z]+):")
_WEIGHT = re.compile(r"\^\s*([0-9]*\.?[0-9]+)\s*$")


class ProfileError(ValueError):
    """A profile that cannot be used; the message says where and what to change."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position
        """0-based character offset of the problem in the profile text, when there is one."""


class Field(StrEnum):
    """Where a term looks."""

    ANY = "any"
    TITLE = "title"
    ABSTRACT = "abstract"
    AUTHOR = "author"
    CAT = "cat"


@dataclass(frozen=True, slots=True)
class Term:
    """One interest of a profile."""

    text: str
    """As the subscriber typed it, without quotes, minus sign or weight: shown as "matched"."""
    words: tuple[str, ...]
    """Normalized words (lowercase, unstemmed)."""
    phrase: bool = False
    """Quoted: the words must be adjacent and in order."""
    field: Field = Field.ANY
    weight: float = 1.0
    exclude: bool = False
    position: int = 0


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed, valid profile."""

    terms: tuple[Term, ...]

    @property
    def include(self) -> tuple[Term, ...]:
        """The terms that recommend papers."""
        return tuple(t for t in self.terms if not t.exclude)

    @property
    def exclude(self) -> tuple[Term, ...]:
        """The terms that veto papers."""
        return tuple(t for t in self.terms if t.exclude)


def _where(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}" if "\n" in text else f"column {column}"


def _segments(text: str) -> list[tuple[int, str]]:
    """Split on commas and new lines outside quotes; (offset, segment) pairs."""
    parts = text.split('"')
    if len(parts) % 2 == 0 or any("\n" in p for p in parts[1::2]):
        # an odd quote, or a phrase running over a line end: find the quote that opened it
        offset = 0
        for i, part in enumerate(parts[:-1]):
            offset += len(part)
            if i % 2 == 0 and ("\n" in parts[i + 1] or i + 2 >= len(parts)):
                end = text.find("\n", offset)
                fragment = text[offset : end if end >= 0 else len(text)].rstrip()
                raise ProfileError(
                    f"unbalanced quote at {_where(text, offset)}: {fragment} "
                    '(close the phrase with ")',
                    offset,
                )
            offset += 1
    # separators outside quotes become NUL, then one split (C speed, no per-character loop)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace(",", "\0").replace("\n", "\0")
    out = []
    offset = 0
    for segment in '"'.join(parts).split("\0"):
        out.append((offset, segment))
        offset += len(segment) + 1
    return out


def _refuse_control(text: str, at: int) -> NoReturn:
    raise ProfileError(
        f"invisible control character at {_where(text, at)}: delete it and type the term "
        "again (it came from a copy and paste or a program)",
        at,
    )


def parse_term(segment: str, offset: int = 0, text: str | None = None) -> Term | None:
    """Parse one comma-separated segment; None when it is blank. Raises ProfileError."""
    full = segment if text is None else text
    control = text_rules.first_untypable(segment)
    if control is not None:
        _refuse_control(full, offset + control)
    body = segment.strip()
    if not body:
        return None
    pos = offset + segment.index(body[0])
    exclude = body.startswith("-")
    if exclude:
        body = body[1:].lstrip()
    weight = 1.0
    if "^" in body:
        m = _WEIGHT.search(body)
        caret = offset + segment.index("^")
        if not m or body.count("^") > 1:
            raise ProfileError(
                f"bad weight at {_where(full, caret)}: write a number after ^, like distillation^2",
                caret,
            )
        weight = float(m.group(1))
        if not 0 < weight <= MAX_WEIGHT:
            raise ProfileError(
                f"weight {m.group(1)} at {_where(full, caret)} must be above 0 and at most "
                f"{MAX_WEIGHT:g}",
                caret,
            )
        body = body[: m.start()].rstrip()
    field = Field.ANY
    m = _FIELD.match(body)
    if m:
        name = m.group(1).lower()
        if name not in FIELDS:
            raise ProfileError(
                f"unknown field {m.group(1)!r} at {_where(full, pos)}: use one of "
                + ", ".join(f"{f}:" for f in FIELDS),
                pos,
            )
        field = Field(name)
        body = body[m.end() :].strip()
    phrase = False
    if '"' in body:
        quote = offset + segment.index('"')
        if not (body.startswith('"') and body.endswith('"') and body.count('"') == 2):
            raise ProfileError(
                f"stray quote at {_where(full, quote)}: quote a whole term, like "
                '"federated learning", and separate terms with commas',
                quote,
            )
        body = body[1:-1].strip()
        phrase = True
    found = words(body)
    if field is Field.CAT:
        if len(body.split()) > 1:
            raise ProfileError(
                f"one category per term at {_where(full, pos)}: {segment.strip()!r} "
                "(write cat:cs.LG, cat:cs.AI)",
                pos,
            )
        found = [body.lower()] if body else []
    if not found:
        raise ProfileError(f"empty term at {_where(full, pos)}: {segment.strip()!r}", pos)
    if field in (Field.ANY, Field.TITLE, Field.ABSTRACT) and all(w in STOPWORDS for w in found):
        raise ProfileError(
            f"term {segment.strip()!r} at {_where(full, pos)} has only common words such as "
            "'the' or 'of': nearly every paper has them",
            pos,
        )
    if len(found) > MAX_WORDS_PER_TERM:
        raise ProfileError(
            f"term at {_where(full, pos)} has {len(found)} words; at most {MAX_WORDS_PER_TERM} "
            "(separate interests with commas)",
            pos,
        )
    if field is Field.AUTHOR:
        phrase = True
    elif len(found) > 1 and "-" in body and not any(c.isspace() for c in body):
        # one hyphenated word ("text-to-image", "GPT-4") is one thing: its parts adjacent, as
        # in a phrase, whether a paper writes it with hyphens or spaces
        phrase = True
    shown = f"{field.value}:{body}" if field is not Field.ANY else body
    return Term(
        text=shown,
        words=tuple(found),
        phrase=phrase,
        field=field,
        weight=weight,
        exclude=exclude,
        position=pos,
    )


def parse_profile(text: str) -> Query:
    """Parse and validate a profile; raise ProfileError pointing at the first problem."""
    if len(text) > MAX_PROFILE_CHARS:
        raise ProfileError(
            f"the profile is {len(text)} characters long; at most {MAX_PROFILE_CHARS}", None
        )
    control = text_rules.first_untypable(text)
    if control is not None:  # before splitting: the splitter uses NUL itself
        _refuse_control(text, control)
    terms: list[Term] = []
    for offset, segment in _segments(text):
        if not segment.strip():
            # "a,,b" is a typo worth pointing at; a trailing comma or a blank line is not
            end = offset + len(segment)
            if offset > 0 and text[offset - 1] == "," and text[end : end + 1] == ",":
                raise ProfileError(f"empty term at {_where(text, end)}: two commas in a row", end)
            continue
        term = parse_term(segment, offset, text)
        if term is not None:
            terms.append(term)
    if len(terms) > MAX_TERMS:
        raise ProfileError(
            f"too many terms ({len(terms)}); at most {MAX_TERMS}: keep the interests that matter",
            terms[MAX_TERMS].position,
        )
    if not any(not t.exclude for t in terms):
        raise ProfileError(
            "the profile has no interest to look for: add at least one term without a minus sign"
            if terms
            else "the profile is empty: add at least one term, like diffusion models",
            None,
        )
    return Query(tuple(terms))


def validate_profile(text: str) -> None:
    """Raise ProfileError if the profile cannot be used; return None when it is fine."""
    parse_profile(text)
