"""Query units scored against the day's papers, each once.

A unit is what one profile term asks for (a word, a phrase, a bag of words, an author, a category),
scored against every candidate paper at once; identical terms across profiles share one unit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.ranking.corpus import Corpus, Form
from digest.ranking.index import PAIR_WINDOW, PaperIndex
from digest.ranking.profile import Field, Term
from digest.ranking.text import STOPWORDS, fold, stem_words

AUTHOR_SCORE = 5.0
"""An author the reader follows is a strong signal, on the scale of a rare word in a title."""
CAT_SCORE = 1.0
"""A category alone is a weak signal: it lifts papers of the category among otherwise equal ones."""

# Unquoted multi-word terms: the words adjacent in order score in full, scattered half, and near
# each other (see `nearness`) in between by how close they stand; a paper with only some of the
# words keeps (share of words)^2 of that.
PROX_PHRASE, PROX_APART = 1.0, 0.5
PRUNE = 0.1
"""Unit scores under PRUNE x min_score are dropped (impact pruning): such a score is a common
word or a stray word of a multi-word term, it cannot recommend a paper and barely reorders;
keeping it would make the score matrix nearly dense."""
UNITS_KEEP = 50_000
"""Scored units kept with a prepared index; past this the cache starts over (a long-lived web
process sees endless distinct terms from public search feeds and previews)."""
_COUNT_SHIFT = 1024.0  # above any single word score: sum + shift * count in one float

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
    full: (
        np.ndarray
    )  # bool: the term matched as written (all words near, the phrase, the author...)


_EMPTY = UnitScores(np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, bool))


class UnitScorer:
    """Scores units against one PaperIndex; each unit once, kept for the next batch of profiles."""

    def __init__(self, index: PaperIndex, settings: RankingSettings) -> None:
        self.index = index
        self.corpus = index.corpus
        self.n = index.n
        self.prune_below = PRUNE * settings.min_score
        self._cache: dict[UnitKey, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.parsed: dict[str, tuple | int] = {}
        """Term string -> parsed form, kept for the next batch against these papers."""

    def score_units(
        self, keys: Sequence[UnitKey]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Like score_all, but each unit is scored once per index: later batches reuse it."""
        cache = self._cache
        if len(cache) > UNITS_KEEP:
            cache.clear()
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            unit, paper, score, full = self.score_all(missing)
            order = np.argsort(unit, kind="stable")
            unit, paper, score, full = unit[order], paper[order], score[order], full[order]
            bounds = np.searchsorted(unit, np.arange(len(missing) + 1))
            for i, key in enumerate(missing):
                lo, hi = bounds[i], bounds[i + 1]
                cache[key] = (paper[lo:hi], score[lo:hi], full[lo:hi])
        parts = [cache[k] for k in keys]
        lengths = np.fromiter((len(p[0]) for p in parts), np.int64, len(parts))
        if not len(parts):
            return (np.empty(0, np.int64), _EMPTY.papers, _EMPTY.scores, _EMPTY.full)
        return (
            np.repeat(np.arange(len(parts), dtype=np.int64), lengths),
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def score_all(
        self, keys: Sequence[UnitKey]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Score every unit: flat (unit, paper, score, full) arrays, one entry per touched paper.

        Single words and plain multi-word terms, the bulk of any profile set, are scored for all
        units together with sparse products; phrases, acronyms, authors and categories one by one.
        """
        simple: dict[str, list[tuple[int, str]]] = {}
        bags: dict[str, list[tuple[int, Form, Form]]] = {}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        alt_units: list[tuple[int, UnitKey]] = []
        for uid, key in enumerate(keys):
            if key[0] == "forms" and len(key[2]) == 1 and len(key[2][0]) == 1:
                simple.setdefault(key[1], []).append((uid, key[2][0][0]))
            elif key[0] == "bag":
                bags.setdefault(key[1], []).append((uid, key[2], key[3]))
                if key[4]:
                    alt_units.append((uid, key))
            else:
                one = self.score(key)
                parts.append(
                    (np.full(len(one.papers), uid, np.int64), one.papers, one.scores, one.full)
                )
        for field, items in simple.items():
            parts.append(self._simple_many(field, items))
        for field, bag_items in bags.items():
            parts.append(self._bags_many(field, bag_items))
        if not parts:
            return (np.empty(0, np.int64), _EMPTY.papers, _EMPTY.scores, _EMPTY.full)
        unit, paper, score, full = (np.concatenate(x) for x in zip(*parts, strict=True))
        if alt_units:
            unit, paper, score, full = self._with_alternatives(unit, paper, score, full, alt_units)
        return unit, paper, score, full

    def _with_alternatives(
        self,
        unit: np.ndarray,
        paper: np.ndarray,
        score: np.ndarray,
        full: np.ndarray,
        alt_units: list[tuple[int, UnitKey]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """ "large language models" written as "LLMs" is as good as the words adjacent, and a
        paper writing both has their occurrences add up, as for any synonyms (see `_forms`)."""
        extra_unit, extra_paper, extra_score = [], [], []
        for uid, (_, field, stems, content, alternatives) in alt_units:
            forms = (stems, *alternatives)
            alt = self._forms(field, forms)
            ratio = self.corpus.form_idf(content) / max(
                min(self.corpus.form_idf(f) for f in forms), 1e-9
            )
            extra_unit.append(np.full(len(alt.papers), uid, np.int64))
            extra_paper.append(alt.papers)
            extra_score.append(alt.scores * np.float32(ratio))
        # merge only the entries of units that have alternatives; the rest pass through
        alt_ids = np.asarray([uid for uid, _ in alt_units], np.int64)
        has_alt = np.zeros(max(int(unit.max(initial=-1)), int(alt_ids.max())) + 1, bool)
        has_alt[alt_ids] = True
        mine = has_alt[unit]
        m_unit = np.concatenate([unit[mine], *extra_unit])
        m_paper = np.concatenate([paper[mine], *extra_paper]).astype(np.int64)
        m_score = np.concatenate([score[mine], *extra_score]).astype(np.float32)
        m_full = np.concatenate([full[mine], np.ones(len(m_unit) - int(mine.sum()), bool)])
        m = max(self.n, 1)
        keys, inverse = np.unique(m_unit * m + m_paper, return_inverse=True)
        best = np.zeros(len(keys), np.float32)
        np.maximum.at(best, inverse, m_score)
        any_full = np.zeros(len(keys), bool)
        np.logical_or.at(any_full, inverse, m_full)
        rest = ~mine
        return (
            np.concatenate([unit[rest], keys // m]),
            np.concatenate([paper[rest], (keys % m).astype(np.int32)]),
            np.concatenate([score[rest], best]),
            np.concatenate([full[rest], any_full]),
        )

    def _simple_many(
        self, field: str, items: list[tuple[int, str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        matrix = self.index.word_scores(field)
        uids = np.fromiter((u for u, _ in items), np.int64, len(items))
        sids = self.index.stem_ids([s for _, s in items])
        known = sids >= 0
        rows = matrix[sids[known]]
        unit = np.repeat(uids[known], np.diff(rows.indptr))
        return unit, rows.indices.astype(np.int32), rows.data, np.ones(len(unit), bool)

    def _bags_many(
        self, field: str, items: list[tuple[int, Form, Form]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        matrix = self.index.word_scores(field)
        n_bags = len(items)
        v = max(len(self.index.vocab), 1)
        uids = np.fromiter((u for u, _, _ in items), np.int64, n_bags)
        contents = [tuple(dict.fromkeys(c)) for _, _, c in items]
        n_words = np.fromiter((len(c) for c in contents), np.int64, n_bags)
        sids = self.index.stem_ids([s for c in contents for s in c])
        owner = np.repeat(np.arange(n_bags), n_words)
        known = sids >= 0
        w = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float64), (owner[known], sids[known])),
            shape=(n_bags, v),
        )
        # one product gives both the sum of word scores and how many words are present
        shifted = matrix.astype(np.float64)
        shifted.data += _COUNT_SHIFT
        product = (w @ shifted).tocsr()
        product.sort_indices()
        counts = np.diff(product.indptr)
        # in place where possible: these arrays have an entry per (bag, paper with any word),
        # and fresh memory costs more than the arithmetic
        total = product.data
        share = np.floor(total / _COUNT_SHIFT)  # words present
        total -= share * _COUNT_SHIFT  # sum of their scores
        words_in_bag = np.repeat(n_words.astype(np.float64), counts)
        full = share == words_in_bag
        share /= words_in_bag
        del words_in_bag
        np.multiply(share, share, out=share)
        total *= share  # the score before proximity
        # a stray word of a bag ("models" of "diffusion models") is most of the entries and
        # too weak to count: drop it now rather than carry it through every step below
        keep = np.flatnonzero(full | (total * PROX_APART >= self.prune_below))
        row = (np.searchsorted(product.indptr, keep, side="right") - 1).astype(np.int64)
        papers, scores, full = product.indices[keep], total[keep], full[keep]
        prox = np.full(len(row), PROX_APART)
        if full.any():
            keys = row * self.n + papers
            near_keys, close = self._pair_hits(contents, field, ordered=False)
            at, which = _lookup(keys, near_keys)
            near = np.zeros(len(row), bool)
            near[at] = True
            prox[at] = nearness(close[which])
            at = _lookup(keys, self._pair_hits(contents, field, ordered=True)[0])[0]
            prox[at] = PROX_PHRASE
            near[at] = True
            # every word, but scattered over the text, is not what the interest names
            full &= near
        return uids[row], papers.astype(np.int32), (scores * prox).astype(np.float32), full

    def _pair_hits(
        self, contents: list[Form], field: str, *, ordered: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keys bag * n + paper where every pair of the bag's words is close (or, ordered: each
        word follows the previous one within one token, as in "chain of thought"), and how close
        they stand: the mean over the bag's pairs of `closeness` at each pair's nearest."""
        v = max(len(self.index.vocab), 1)
        need_bag, need_key = [], []
        for b, content in enumerate(contents):
            ids = [self.index.vocab.get(s, -1) for s in content]
            if len(ids) < 2 or min(ids) < 0:
                continue
            if ordered:
                pairs = list(itertools.pairwise(ids))
            else:
                pairs = [(min(x, y), max(x, y)) for i, x in enumerate(ids) for y in ids[i + 1 :]]
            for x, y in pairs:
                need_bag.append(b)
                need_key.append(x * v + y)
        none = np.empty(0, np.int64), np.empty(0, np.float64)
        if not need_bag:
            return none
        bag = np.asarray(need_bag, np.int64)
        key = np.asarray(need_key, np.int64)
        pair_key, pair_seg, gap = self.index.pairs(
            ordered, np.unique([s for c in contents for s in c])
        )
        sel: np.ndarray | slice
        if field == "title":
            sel = pair_seg < self.n
        elif field == "abstract":
            sel = pair_seg >= self.n
        else:
            sel = slice(None)
        pk, paper, gap = pair_key[sel], pair_seg[sel] % max(self.n, 1), gap[sel]
        wanted = np.isin(pk, key)
        pk, paper, gap = pk[wanted], paper[wanted], gap[wanted]
        # (bag, pair) requirements x (pair, paper) presences: a bag's paper counts when all hold
        uniq, pair_id = np.unique(pk, return_inverse=True)
        if not len(uniq):
            return none  # no wanted pair stands close anywhere
        # each pair once per paper, at its nearest: pairs() lists them nearest first, and the
        # stable sort behind return_index keeps the first of equal keys
        found, first = np.unique(pair_id * self.n + paper, return_index=True)
        presence = sp.csr_matrix(
            (_COUNT_SHIFT + closeness(gap[first]), (found // self.n, found % self.n)),
            shape=(len(uniq), self.n),
        )
        at = np.searchsorted(uniq, key)
        ok = (at < len(uniq)) & (uniq[np.minimum(at, len(uniq) - 1)] == key)
        need = np.bincount(bag, minlength=len(contents))
        req = sp.csr_matrix(
            (np.ones(int(ok.sum())), (bag[ok], at[ok])), shape=(len(contents), presence.shape[0])
        )
        # one product gives how many of its pairs stand close and their summed closeness
        hits = (req @ presence).tocoo()
        count = np.floor(hits.data / _COUNT_SHIFT)
        done = count >= need[hits.row]
        row, need_done = hits.row[done], need[hits.row[done]]
        mean = (hits.data[done] - count[done] * _COUNT_SHIFT) / need_done
        return row.astype(np.int64) * self.n + hits.col[done], mean

    def score(self, key: UnitKey) -> UnitScores:
        """Score one unit against every candidate paper."""
        kind = key[0]
        if kind == "forms":
            return self._forms(key[1], key[2])
        if kind == "bag":
            _, papers, scores, full = self.score_all([key])
            return UnitScores(papers, scores, full)
        if kind == "author":
            return self._author(key[1])
        return self._cat(key[1])

    def _forms(self, field: str, forms: tuple[Form, ...]) -> UnitScores:
        parts = [self.index.form_tf(f) for f in forms]
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
        # synonyms weigh like the commonest of them: no bonus for the spelling a paper chose
        idf = min(self.corpus.form_idf(f) for f in forms)
        scores = idf * self.index.bm25(papers, tft, tfa)
        return UnitScores(papers, scores, np.ones(len(papers), bool))

    def _author(self, name: tuple[str, ...]) -> UnitScores:
        return _constant(self.index.author_papers(name), AUTHOR_SCORE)

    def _cat(self, name: str) -> UnitScores:
        return _constant(self.index.category_papers(name), CAT_SCORE)


def _constant(hits: list[int], score: float) -> UnitScores:
    papers = np.asarray(hits, np.int32)
    return UnitScores(papers, np.full(len(papers), score, np.float32), np.ones(len(papers), bool))


def closeness(gap: np.ndarray) -> np.ndarray:
    """How close two words of a term stand, `gap` tokens apart in one sentence: 1 for neighbours,
    down by the same step per word between them to 1 / PAIR_WINDOW at the window's edge."""
    return 1.0 - (gap.astype(np.float64) - 1.0) / PAIR_WINDOW


def nearness(mean_closeness: np.ndarray) -> np.ndarray:
    """The proximity factor of a term whose words all stand near, from its pairs' mean closeness:
    PROX_PHRASE for neighbours, falling in even steps toward PROX_APART, which is where one more
    word between them would leave it (past the window they are scattered). No step at the
    window's edge: ten words apart score about as eleven do, two words apart about as adjacent."""
    return PROX_APART + (PROX_PHRASE - PROX_APART) * mean_closeness


def _lookup(ascending: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the values sit in an ascending array, and which values those are (values it lacks
    are left out)."""
    at = np.searchsorted(ascending, values)
    inside = np.flatnonzero(at < len(ascending))
    at = at[inside]
    hit = ascending[at] == values[inside]
    return at[hit], inside[hit]
