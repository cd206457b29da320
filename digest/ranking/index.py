"""The day's candidate papers, tokenized once: postings, positions and BM25F scores per query unit.

A unit is what one profile term asks for (a word, a phrase, a bag of words, an author, a category),
scored against every candidate paper at once; identical terms across profiles share one unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from digest.config import RankingSettings
from digest.models import Paper
from digest.ranking.corpus import Corpus, Form
from digest.ranking.profile import Field, Term
from digest.ranking.text import STOPWORDS, fold, stem_words, words

AUTHOR_SCORE = 5.0
"""An author the reader follows is a strong signal, on the scale of a rare word in a title."""
CAT_SCORE = 1.0
"""A category alone is a weak signal: it lifts papers of the category among otherwise equal ones."""

# Unquoted multi-word terms: the words adjacent in order score in full, nearby a little less,
# scattered half; a paper with only some of the words keeps (share of words)^2 of that.
PROX_PHRASE, PROX_NEAR, PROX_APART = 1.0, 0.8, 0.5
NEAR_SLACK = 3

UnitKey = tuple
"""("forms", field, forms) | ("bag", field, stems, content, alternatives) | ("author", words) | ("cat", name)."""


def unit_key(term: Term, corpus: Corpus) -> UnitKey:
    """What a term asks of a paper, as a hashable key (equal terms share their scores)."""
    if term.field is Field.AUTHOR:
        return ("author", tuple(fold(w) for w in term.words))
    if term.field is Field.CAT:
        return ("cat", fold(term.words[0]))
    field = term.field.value
    stems: Form = tuple(stem_words(list(term.words)))
    alternatives = corpus.alternatives.get(stems, ())
    if term.phrase or len(stems) == 1:
        return ("forms", field, (stems, *alternatives))
    content = tuple(s for s, w in zip(stems, term.words, strict=True) if w not in STOPWORDS)
    content = content or stems
    if len(content) == 1 and not alternatives:
        return ("forms", field, (content,))
    return ("bag", field, stems, content, alternatives)


@dataclass(frozen=True, slots=True)
class UnitScores:
    """One unit against the candidates: the papers it touches, their scores, and full matches."""

    papers: np.ndarray  # int32, ascending
    scores: np.ndarray  # float32
    full: np.ndarray  # bool: the term matched as written (all words, the phrase, the author...)


_EMPTY = UnitScores(np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, bool))


class PaperIndex:
    """Postings (stem -> papers with title/abstract term frequencies) and lazy positions."""

    def __init__(
        self,
        papers: Sequence[Paper],
        docs: Sequence[tuple[list[str], list[str]]],
        corpus: Corpus,
        settings: RankingSettings,
    ) -> None:
        self.papers = papers
        self.docs = docs
        self.corpus = corpus
        self.k1 = settings.k1
        self.title_weight = settings.title_weight
        n = len(papers)
        self.n = n
        vocab: dict[str, int] = {}
        self.vocab = vocab
        counts = []
        for field in (0, 1):
            lengths = np.fromiter((len(d[field]) for d in docs), np.int64, n)
            flat = [vocab.setdefault(s, len(vocab)) for d in docs for s in d[field]]
            ids = np.asarray(flat, np.int64)
            owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
            counts.append((ids, owner, lengths))
        v = max(len(vocab), 1)
        # one (stem, paper) key per posting; title and abstract counts side by side
        keys_t = counts[0][0] * n + counts[0][1]
        keys_a = counts[1][0] * n + counts[1][1]
        keys, inverse = np.unique(np.concatenate([keys_t, keys_a]), return_inverse=True)
        split = len(keys_t)
        self.tf_title = np.bincount(inverse[:split], minlength=len(keys)).astype(np.float32)
        self.tf_abstract = np.bincount(inverse[split:], minlength=len(keys)).astype(np.float32)
        self.post_paper = (keys % max(n, 1)).astype(np.int32)
        post_stem = keys // max(n, 1)
        self.ptr = np.searchsorted(post_stem, np.arange(v + 1))
        b = settings.b
        self.norm_title = (1 - b + b * counts[0][2] / max(corpus.avg_title_len, 1e-9)).astype(
            np.float32
        )
        self.norm_abstract = (1 - b + b * counts[1][2] / max(corpus.avg_abstract_len, 1e-9)).astype(
            np.float32
        )
        self._positions: list[tuple[dict[str, list[int]], dict[str, list[int]]] | None] = [None] * n
        self._authors: dict[str, set[int]] | None = None
        self._cats: dict[str, set[int]] | None = None

    # -- term frequencies ----------------------------------------------------------------------

    def _postings(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sid = self.vocab.get(stem)
        if sid is None:
            return _EMPTY.papers, _EMPTY.scores, _EMPTY.scores
        lo, hi = self.ptr[sid], self.ptr[sid + 1]
        return self.post_paper[lo:hi], self.tf_title[lo:hi], self.tf_abstract[lo:hi]

    def positions(self, i: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Stem -> positions in paper i's title and abstract (built on first use)."""
        cached = self._positions[i]
        if cached is None:
            cached = (_positions(self.docs[i][0]), _positions(self.docs[i][1]))
            self._positions[i] = cached
        return cached

    def form_tf(self, form: Form) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Occurrences of a word or an exact phrase per paper: (papers, title tf, abstract tf)."""
        if len(form) == 1:
            return self._postings(form[0])
        candidates = None
        for stem in set(form):
            papers = self._postings(stem)[0]
            candidates = papers if candidates is None else np.intersect1d(candidates, papers)
            if not len(candidates):
                return _EMPTY.papers, _EMPTY.scores, _EMPTY.scores
        assert candidates is not None
        tft = np.zeros(len(candidates), np.float32)
        tfa = np.zeros(len(candidates), np.float32)
        for j, i in enumerate(candidates.tolist()):
            title, abstract = self.positions(i)
            tft[j] = _phrase_count(title, form)
            tfa[j] = _phrase_count(abstract, form)
        hit = (tft + tfa) > 0
        return candidates[hit], tft[hit], tfa[hit]

    def bm25(self, papers: np.ndarray, tft: np.ndarray, tfa: np.ndarray) -> np.ndarray:
        """BM25F saturation of title-weighted, length-normalized term frequencies (without IDF)."""
        tf = self.title_weight * tft / self.norm_title[papers] + tfa / self.norm_abstract[papers]
        return (tf * (self.k1 + 1) / (tf + self.k1)).astype(np.float32)

    # -- units ---------------------------------------------------------------------------------

    def score(self, key: UnitKey) -> UnitScores:
        """Score one unit against every candidate paper."""
        kind = key[0]
        if kind == "forms":
            return self._forms(key[1], key[2])
        if kind == "bag":
            return self._bag(*key[1:])
        if kind == "author":
            return self._author(key[1])
        return self._cat(key[1])

    def _forms(self, field: str, forms: tuple[Form, ...]) -> UnitScores:
        parts = [self.form_tf(f) for f in forms]
        papers = np.concatenate([p[0] for p in parts])
        tft = np.concatenate([p[1] for p in parts])
        tfa = np.concatenate([p[2] for p in parts])
        if field == "title":
            tfa = np.zeros_like(tfa)
        elif field == "abstract":
            tft = np.zeros_like(tft)
        if len(forms) > 1:  # synonyms: their occurrences add up, as if one word
            papers, inverse = np.unique(papers, return_inverse=True)
            tft = np.bincount(inverse, tft, len(papers)).astype(np.float32)
            tfa = np.bincount(inverse, tfa, len(papers)).astype(np.float32)
        hit = (tft + tfa) > 0
        papers, tft, tfa = papers[hit].astype(np.int32), tft[hit], tfa[hit]
        if not len(papers):
            return _EMPTY
        # synonyms are as rare as the rarer-looking... commonest of them: no bonus for spelling
        idf = min(self.corpus.form_idf(f) for f in forms)
        scores = idf * self.bm25(papers, tft, tfa)
        return UnitScores(papers, scores, np.ones(len(papers), bool))

    def _bag(
        self, field: str, stems: Form, content: Form, alternatives: tuple[Form, ...]
    ) -> UnitScores:
        parts = [self._forms(field, ((s,),)) for s in content]
        papers = np.concatenate([p.papers for p in parts])
        scores = np.concatenate([p.scores for p in parts])
        if not len(papers) and not alternatives:
            return _EMPTY
        papers, inverse = np.unique(papers, return_inverse=True)
        total = np.bincount(inverse, scores, len(papers))
        present = np.bincount(inverse, minlength=len(papers))
        coverage = present / len(content)
        prox = np.full(len(papers), PROX_APART)
        full = present == len(content)
        for j in np.flatnonzero(full).tolist():
            prox[j] = self._proximity(int(papers[j]), field, stems, content)
        result = (total * coverage**2 * prox).astype(np.float32)
        if alternatives:
            # "large language models" written as "LLMs": as good as the words adjacent
            alt = self._forms(field, alternatives)
            if len(alt.papers):
                idf_ratio = self.corpus.form_idf(content) / max(
                    min(self.corpus.form_idf(f) for f in alternatives), 1e-9
                )
                papers = np.concatenate([papers, alt.papers]).astype(np.int32)
                result = np.concatenate([result, alt.scores * np.float32(idf_ratio)])
                full = np.concatenate([full, alt.full])
                papers, inverse = np.unique(papers, return_inverse=True)
                best = np.zeros(len(papers), np.float32)
                np.maximum.at(best, inverse, result)
                any_full = np.zeros(len(papers), bool)
                np.logical_or.at(any_full, inverse, full)
                result, full = best, any_full
        return UnitScores(papers.astype(np.int32), result.astype(np.float32), full)

    def _proximity(self, i: int, field: str, stems: Form, content: Form) -> float:
        title, abstract = self.positions(i)
        fields = {"title": (title,), "abstract": (abstract,)}.get(field, (title, abstract))
        if any(_phrase_count(pos, stems) or _phrase_count(pos, content) for pos in fields):
            return PROX_PHRASE
        window = len(content) + NEAR_SLACK
        for pos in fields:
            if all(s in pos for s in content):
                rarest = min(content, key=lambda s: len(pos[s]))
                others = [pos[s] for s in content if s != rarest]
                for p in pos[rarest]:
                    if all(any(abs(q - p) <= window for q in qs) for qs in others):
                        return PROX_NEAR
        return PROX_APART

    def _author(self, name: tuple[str, ...]) -> UnitScores:
        if self._authors is None:
            index: dict[str, set[int]] = {}
            for i, paper in enumerate(self.papers):
                for author in paper.authors:
                    for w in words(fold(author)):
                        index.setdefault(w, set()).add(i)
            self._authors = index
        candidates = set.intersection(*(self._authors.get(w, set()) for w in name))
        hits = sorted(
            i
            for i in candidates
            if any(_contains(words(fold(a)), name) for a in self.papers[i].authors)
        )
        return _constant(hits, AUTHOR_SCORE)

    def _cat(self, name: str) -> UnitScores:
        if self._cats is None:
            cats: dict[str, set[int]] = {}
            for i, paper in enumerate(self.papers):
                for c in paper.categories:
                    cats.setdefault(fold(c), set()).add(i)
            self._cats = cats
        # "cat:cs" takes every cs.* category; "cat:cs.LG" just that one
        hits: set[int] = set()
        for c, papers in self._cats.items():
            if c == name or c.startswith(name + "."):
                hits |= papers
        return _constant(sorted(hits), CAT_SCORE)


def _constant(hits: list[int], score: float) -> UnitScores:
    papers = np.asarray(hits, np.int32)
    return UnitScores(papers, np.full(len(papers), score, np.float32), np.ones(len(papers), bool))


def _positions(tokens: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p, s in enumerate(tokens):
        out.setdefault(s, []).append(p)
    return out


def _phrase_count(pos: dict[str, list[int]], form: Form) -> int:
    first = pos.get(form[0])
    if not first:
        return 0
    rest = []
    for s in form[1:]:
        ps = pos.get(s)
        if not ps:
            return 0
        rest.append(set(ps))
    return sum(1 for p in first if all(p + k + 1 in r for k, r in enumerate(rest)))


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))
