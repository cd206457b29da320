"""More or fewer papers like one: a profile edited term by term, each edit reversible.

"More like this" raises the weight of the terms that matched the paper (or adds the paper's most
distinctive title phrase as an interest); "fewer like this" halves them (or excludes that phrase).
An edit records a term's weight before and after, so undoing it touches that term alone, whatever
else the reader changed since.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from digest.models import Paper
from digest.ranking.corpus import Corpus
from digest.ranking.profile import MAX_WEIGHT, ProfileError, Term, _segments, parse_term
from digest.ranking.text import STOPWORDS, stem_words, words

MORE_STEP = 0.5
"""What "more like this" adds to a matched term's weight (1 -> 1.5 -> 2 ...)."""
FEWER_FACTOR = 0.5
"""What "fewer like this" multiplies a matched term's weight by (1 -> 0.5 -> 0.25 ...)."""
MIN_WEIGHT = 0.1
DIRECTIONS = ("more", "fewer")


@dataclass(frozen=True, slots=True)
class TermEdit:
    """One term's weight before and after a change; None: the term is not in the profile."""

    term: str
    """As the profile shows it, minus sign included for an exclusion ("-camera")."""
    before: float | None
    after: float | None

    def undone(self) -> TermEdit:
        """The edit that reverses this one."""
        return TermEdit(self.term, self.after, self.before)

    def describe(self) -> str:
        """One line for the reader: what changed."""
        if self.before is None:
            return f"added {self.term}" + (
                f"^{self.after:g}" if self.after not in (None, 1) else ""
            )
        if self.after is None:
            return f"removed {self.term}"
        return f"{self.term}: weight {self.before:g} → {self.after:g}"


def steer(
    profile: str, matched: Sequence[str], direction: str, paper: Paper, corpus: Corpus | None
) -> list[TermEdit]:
    """The edits "more" or "fewer like this" make to a profile for a paper it was sent.

    Raises ProfileError for an unusable profile and ValueError for an unknown direction.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    current = _weights(profile)
    edits = []
    for term in matched:
        weight = current.get(term)
        if weight is None:
            continue  # the reader changed the profile since: nothing to adjust for this term
        new = _more(weight) if direction == "more" else _fewer(weight)
        if new != weight:
            edits.append(TermEdit(term, weight, new))
    if edits:
        return edits
    phrase = distinctive_phrase(paper, corpus)
    if not phrase:
        return []
    term = phrase if direction == "more" else f"-{phrase}"
    if term in current:
        return []
    return [TermEdit(term, None, 1.0)]


def apply_edits(profile: str, edits: Sequence[TermEdit]) -> str:
    """The profile with each edit applied; the reader's other terms and their order are kept."""
    pieces = [segment.strip() for _, segment in _segments(profile) if segment.strip()]
    for edit in edits:
        at = next((i for i, p in enumerate(pieces) if _shown(p) == edit.term), None)
        if edit.after is None:
            if at is not None:
                del pieces[at]
        elif at is None:
            pieces.append(_written(edit.term, edit.after))
        else:
            pieces[at] = _written(_body(pieces[at]), edit.after)
    return ", ".join(pieces)


def distinctive_phrase(paper: Paper, corpus: Corpus | None) -> str:
    """The paper's rarest title word or word pair (by IDF): what sets it apart from the others."""
    title = words(paper.title)
    content = [w for w in title if w not in STOPWORDS and len(w) > 2 and not w.isdigit()]
    if not content:
        return ""
    candidates: list[tuple[str, ...]] = [(w,) for w in content]
    candidates += [(a, b) for a, b in itertools.pairwise(title) if a in content and b in content]

    def rarity(words_: tuple[str, ...]) -> float:
        stems = tuple(stem_words(list(words_)))
        if corpus is None:
            return float(sum(len(w) for w in words_))
        # a pair must be worth more than its rarer word to be chosen: it names a topic
        return corpus.form_idf(stems) * (0.75 if len(stems) > 1 else 1.0)

    best = max(candidates, key=lambda c: (rarity(c), -title.index(c[0])))
    hyphenated = "-".join(best)
    # written as the title writes it: "camera-lidar" stays one hyphenated word (a phrase)
    return hyphenated if hyphenated in paper.title.lower() else " ".join(best)


def _weights(profile: str) -> dict[str, float]:
    """Each term as shown ("-x" for exclusions) and its weight."""
    found = {}
    for _, segment in _segments(profile):
        term = _parse(segment)
        if term is not None:
            found[_key(term)] = term.weight
    return found


def _parse(segment: str) -> Term | None:
    try:
        return parse_term(segment)
    except ProfileError:
        return None


def _key(term: Term) -> str:
    return f"-{term.text}" if term.exclude else term.text


def _shown(piece: str) -> str:
    term = _parse(piece)
    return _key(term) if term is not None else piece


def _body(piece: str) -> str:
    """A piece of the profile without its weight, as the reader wrote it (quotes, fields kept)."""
    caret = piece.rfind("^")
    return piece[:caret].rstrip() if caret >= 0 else piece


def _written(body: str, weight: float) -> str:
    return body if weight == 1 else f"{body}^{weight:g}"


def _more(weight: float) -> float:
    return min(MAX_WEIGHT, round(weight + MORE_STEP, 2))


def _fewer(weight: float) -> float:
    return max(MIN_WEIGHT, round(weight * FEWER_FACTOR, 2))
