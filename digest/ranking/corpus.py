"""Corpus statistics for BM25: document frequencies, average field lengths, acronym pairs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from digest.models import Paper
from digest.ranking.text import (
    BUILTIN_ACRONYMS,
    Doc,
    learn_acronyms,
    paper_doc,
    stem_words,
    words,
)

Form = tuple[str, ...]
"""A stem sequence: one word ("llm",) or a phrase ("larg", "languag", "model")."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """What the recent papers say about words: how rare each stem is, how long fields run.

    Built from the stored papers of a rolling window (not just today's), so that IDF is stable.
    """

    n_docs: int
    df: Mapping[str, int]
    """Stem -> number of papers whose title or abstract contains it."""
    avg_title_len: float
    avg_abstract_len: float
    acronyms: Mapping[str, str] = field(default_factory=dict)
    """Acronym -> expansion, as text ("llm" -> "large language model")."""
    alternatives: Mapping[Form, tuple[Form, ...]] = field(default_factory=dict)
    """Stemmed form -> the forms that mean the same (acronym <-> expansion), derived from acronyms."""

    def idf(self, stem: str) -> float:
        """BM25 inverse document frequency of a stem (always positive)."""
        n = self.n_docs
        df = min(self.df.get(stem, 0), n)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def form_idf(self, form: Form) -> float:
        """A phrase is as rare as the sum of its words' IDF (Lucene's PhraseQuery does the same)."""
        return sum(self.idf(s) for s in form)


def _alternatives(acronyms: Iterable[tuple[str, str]]) -> dict[Form, tuple[Form, ...]]:
    pairs: dict[Form, set[Form]] = {}
    for short, long_form in acronyms:
        a = tuple(stem_words(words(short)))
        b = tuple(stem_words(words(long_form)))
        if len(a) != 1 or len(b) < 2 or a == b:
            continue
        pairs.setdefault(a, set()).add(b)
        pairs.setdefault(b, set()).add(a)
    return {k: tuple(sorted(v)) for k, v in pairs.items()}


def corpus_from_stems(
    docs: Iterable[Doc],
    acronyms: Mapping[str, str],
) -> Corpus:
    """Corpus from already-stemmed (title, abstract) pairs; the engine uses it to stem only once."""
    df: Counter[str] = Counter()
    n = 0
    title_total = 0
    abstract_total = 0
    for title, abstract, _ in docs:
        n += 1
        title_total += len(title)
        abstract_total += len(abstract)
        df.update(set(title) | set(abstract))
    return Corpus(
        n_docs=n,
        df=dict(df),
        avg_title_len=title_total / n if n else 1.0,
        avg_abstract_len=abstract_total / n if n else 1.0,
        acronyms=dict(acronyms),
        # the built-in spelling stays valid when a paper defines the acronym another way
        alternatives=_alternatives([*BUILTIN_ACRONYMS.items(), *acronyms.items()]),
    )


def merged_acronyms(papers: Iterable[Paper], stored: Mapping[str, str] | None) -> dict[str, str]:
    """Built-in pairs, then pairs stored earlier, then pairs these papers define (latest wins)."""
    merged = dict(BUILTIN_ACRONYMS)
    merged.update(stored or {})
    merged.update(learn_acronyms(papers))
    return merged


def build_corpus(papers: Iterable[Paper], *, acronyms: Mapping[str, str] | None = None) -> Corpus:
    """Statistics of the stored recent papers; `acronyms` are pairs stored earlier (acronym -> expansion)."""
    papers = list(papers)
    docs = [paper_doc(p) for p in papers]
    return corpus_from_stems(docs, merged_acronyms(papers, acronyms))
