"""Why a paper is in a digest, in its own words: the abstract sentence(s) where the matched terms
occur, with each occurrence marked (stems compared, so "distilled" shows for "distillation")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from digest.models import Match, Paper, Snippet
from digest.ranking.profile import Field, ProfileError, parse_term
from digest.ranking.text import BUILTIN_ACRONYMS, STOPWORDS, sentences, stem_words, stems, visible
from digest.text import paper_text

SNIPPET_CHARS = 420
"""About three lines of a card; a longer passage is cut around its first mark."""
NEAR_CHARS = 40
"""Words of a multi-word term are marked when they stand this close (about five words)."""
NO_EVIDENCE = Snippet("")
"""When the abstract does not show the match (a title, author or category match)."""

_TOKEN = re.compile(r"[^\W_]+")
# "large language model" -> "llm", so a profile's expansion also finds the paper's acronym
_ACRONYM_OF = {tuple(stem_words(long.split())): short for short, long in BUILTIN_ACRONYMS.items()}


def with_snippets(matches: Iterable[Match]) -> list[Match]:
    """The matches, each with the snippet chosen for its matched terms."""
    # The terms in one order: readers list the same interests in other orders, and the passage
    # shows a set of terms; sorted, a third fewer snippets are worked out per run.
    # Built directly: dataclasses.replace() costs several times more, ten times per reader.
    return [
        Match(m.paper, m.score, m.matched, m.partial, snippet(m.paper, tuple(sorted(m.matched))))
        for m in matches
    ]


@lru_cache(maxsize=32768)
def snippet(paper: Paper, matched: tuple[str, ...]) -> Snippet:
    """The sentence (or two) of the abstract where the matched terms occur, occurrences marked;
    an empty snippet when no sentence shows them.

    Cached: a day's papers recur across thousands of readers with the same few term sets.
    """
    text, spans, words = _analysed(paper.abstract)
    wanted, sizes = _wanted_stems(matched)
    hits = [_hits(sentence, wanted) for sentence in words]
    covers = [_cover(h, sizes) for h in hits]
    best = max(range(len(spans)), key=lambda i: (covers[i], -i), default=None)
    # one stray word of a multi-word term ("learning" of "federated learning") is no evidence
    if best is None or covers[best][:2] == (0, 0):
        return NO_EVIDENCE  # the renderer shows the abstract's opening instead
    chosen = [best]
    missing = set(range(len(sizes))) - _whole_terms(hits[best], sizes)
    # a second sentence when it shows a term the first does not
    extra = [i for i in range(len(spans)) if _whole_terms(hits[i], sizes) & missing]
    if extra:
        chosen.append(max(extra, key=lambda i: (len(_whole_terms(hits[i], sizes) & missing), -i)))
    chosen.sort()
    shown = set().union(*(_whole_terms(hits[i], sizes) for i in chosen))
    # mark the terms the passage shows whole (a partial match has none: its words are marked),
    # and of a multi-word term only the words that stand near another of its words
    marked = [_marks(hits[i], _whole_terms(hits[i], sizes), bool(shown), sizes) for i in chosen]
    found = _passage(text, [spans[i] for i in chosen], marked)
    return Snippet(found.text, _joined(found.text, found.marks))


def _joined(text: str, marks: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Neighbouring marks as one ("Federated Learning", not "Federated" "Learning")."""
    out: list[tuple[int, int]] = []
    for start, end in marks:
        if out and not text[out[-1][1] : start].strip(" -"):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


def _marks(hits: list[Hit], shown: set[int], any_whole: bool, sizes: list[int]) -> list[Hit]:
    """The words to mark in a sentence: all of a partial match (no term whole anywhere); of each
    term the sentence shows whole, the words near another of its words, or all of them when they
    stand apart; nothing else (a stray "learning" is no evidence of "federated learning")."""
    if not shown:
        return [] if any_whole else hits
    keep = []
    for term in shown:
        mine = [h for h in hits if h[2] == term]
        near = [h for h in mine if _near_its_term(h, mine, sizes)]
        keep += near or mine
    return sorted(keep)


def _near_its_term(hit: Hit, hits: list[Hit], sizes: list[int]) -> bool:
    """A word of a one-word term, or one within NEAR_CHARS of another word of its term."""
    start, _, term, stem = hit
    if sizes[term] < 2:
        return True
    return any(t == term and s != stem and abs(a - start) <= NEAR_CHARS for a, _, t, s in hits)


Hit = tuple[int, int, int, str]
"""(start, end, term index, stem) of one marked word."""


Word = tuple[int, int, str]
"""(start, end, stem) of one word of an abstract."""


@lru_cache(maxsize=8192)
def _analysed(abstract: str) -> tuple[str, list[tuple[int, int]], list[list[Word]]]:
    """An abstract as readers see it (LaTeX as Unicode, one clean line: marks index into it), its
    sentences, and each sentence's words with their stems.

    Cached per abstract: a paper recurs in thousands of digests, each with other matched terms,
    and stemming its words once instead of per digest was most of the cost of a snippet.
    """
    text = paper_text(abstract)
    spans = sentences(text)
    # the words the ranking reads: a model name's variant label ("Distill" of
    # "DeepSeek-R1-Distill-Qwen-7B") is blanked there too, so it is never marked as evidence
    readable = visible(text)
    words = []
    for start, end in spans:
        found = []
        for token in _TOKEN.finditer(readable, start, end):
            token_stems = stems(token.group())
            found.append(
                (token.start(), token.end(), token_stems[0] if len(token_stems) == 1 else "")
            )
        words.append(found)
    return text, spans, words


@lru_cache(maxsize=8192)
def _wanted_stems(matched: Sequence[str]) -> tuple[dict[str, int], list[int]]:
    """Stem -> index of the matched term it shows (stopwords of loose terms left unmarked), and
    how many distinct stems each term has. A term's acronym ("llm") maps to its size-1 twin."""
    wanted: dict[str, int] = {}
    sizes: list[int] = []
    for shown in matched:
        try:
            term = parse_term(shown)
        except ProfileError:
            term = None
        if term is None or term.field in (Field.AUTHOR, Field.CAT):
            sizes.append(0)  # nothing to show in an abstract
            continue
        index = len(sizes)
        words = [w for w in term.words if w not in STOPWORDS] or list(term.words)
        word_stems = stem_words(words)
        sizes.append(len(set(word_stems)))
        for stem in word_stems:
            wanted.setdefault(stem, index)
        acronym = _ACRONYM_OF.get(tuple(stem_words(list(term.words))))
        if acronym:
            # the acronym shows the whole term: it stands for a term of one word
            sizes.append(1)
            wanted.setdefault(stem_words([acronym])[0], len(sizes) - 1)
    return wanted, sizes


def _hits(words: list[Word], wanted: dict[str, int]) -> list[Hit]:
    """Every word of a sentence whose stem a term wants."""
    if not wanted:
        return []
    return [(start, end, wanted[stem], stem) for start, end, stem in words if stem in wanted]


def _stems_per_term(hits: list[Hit]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for _, _, term, stem in hits:
        found.setdefault(term, set()).add(stem)
    return found


def _whole_terms(hits: list[Hit], sizes: list[int]) -> set[int]:
    """The terms a sentence shows whole: every distinct stem of each."""
    return {t for t, found in _stems_per_term(hits).items() if len(found) >= sizes[t]}


def _cover(hits: list[Hit], sizes: list[int]) -> tuple[int, int, int]:
    """How well a sentence shows the match: whole terms, then terms with two or more of their
    words (a partial match), then marked words."""
    per_term = _stems_per_term(hits)
    whole = sum(1 for t, found in per_term.items() if len(found) >= sizes[t])
    several = sum(1 for t, found in per_term.items() if sizes[t] > len(found) >= 2)
    return whole, several, len(hits)


def _passage(text: str, spans: list[tuple[int, int]], hits: list[list[Hit]]) -> Snippet:
    """The chosen sentences joined (an ellipsis between ones that are not neighbours), marked."""
    if len(spans) == 2 and sum(e - s for s, e in spans) + 3 > SNIPPET_CHARS:
        spans, hits = spans[:1], hits[:1]  # the best sentence alone when both do not fit
    if len(spans) == 1:
        return _fit(text, spans[0][0], spans[0][1], hits[0])
    (s1, e1), (s2, e2) = spans
    adjacent = not text[e1:s2].strip()
    gap = " " if adjacent else " … "
    joined = text[s1:e1] + gap + text[s2:e2]
    shift = s2 - (e1 - s1 + len(gap))
    marks = [(a - s1, b - s1) for a, b, _, _ in hits[0]] + [
        (a - shift, b - shift) for a, b, _, _ in hits[1]
    ]
    return Snippet(joined, tuple(marks))


def _fit(text: str, start: int, end: int, hits: list[Hit]) -> Snippet:
    """text[start:end] with its marks, cut to SNIPPET_CHARS around the first mark if longer."""
    if end - start > SNIPPET_CHARS:
        first = hits[0][0] if hits else start
        # keep some words before the first mark, then cut at word boundaries with an ellipsis
        lo = max(start, min(first - 80, end - SNIPPET_CHARS + 2))
        if lo > start:
            space = text.find(" ", lo)
            lo = space + 1 if 0 <= space < first else lo
        hi = min(end, lo + SNIPPET_CHARS - 2)
        if hi < end:
            space = text.rfind(" ", lo, hi)
            hi = space if space > lo else hi
        prefix = "…" if lo > start else ""
        suffix = "…" if hi < end else ""
        body = prefix + text[lo:hi].rstrip(" ,;:-") + suffix
        shift = lo - len(prefix)
        marks = tuple((a - shift, b - shift) for a, b, _, _ in hits if a >= lo and b <= hi)
        return Snippet(body, marks)
    return Snippet(text[start:end], tuple((a - start, b - start) for a, b, _, _ in hits))
