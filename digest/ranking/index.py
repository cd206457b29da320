"""The day's candidate papers, tokenized once: postings, positions and BM25F scores per query unit.

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
PAIR_WINDOW = 5
"""Batched multi-word terms count as near when every pair of their words is this close."""
PRUNE = 0.1
"""Unit scores under PRUNE x min_score are dropped (impact pruning): such a score is a common
word or a stray word of a multi-word term, it cannot recommend a paper and barely reorders;
keeping it would make the score matrix nearly dense."""
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
    full: np.ndarray  # bool: the term matched as written (all words, the phrase, the author...)


_EMPTY = UnitScores(np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, bool))
_NO_POSITIONS = np.empty(0, np.int64)


class PaperIndex:
    """Postings (stem -> papers with title/abstract term frequencies) and token positions.

    Positions are global: every title, then every abstract, laid end to end with a gap wider
    than any proximity window, so phrase and nearness checks are array operations, not loops.
    """

    GAP = 64

    def __init__(
        self,
        papers: Sequence[Paper],
        docs: Sequence[tuple[list[str], list[str]]],
        corpus: Corpus,
        settings: RankingSettings,
    ) -> None:
        self.papers = papers
        self.corpus = corpus
        self.k1 = settings.k1
        self.title_weight = settings.title_weight
        self.prune_below = PRUNE * settings.min_score
        n = len(papers)
        self.n = n
        vocab: dict[str, int] = {}
        self.vocab = vocab
        ids, owners, lengths = [], [], []
        for field in (0, 1):
            field_lengths = np.fromiter((len(d[field]) for d in docs), np.int64, n)
            flat = [vocab.setdefault(s, len(vocab)) for d in docs for s in d[field]]
            ids.append(np.asarray(flat, np.int64))
            owners.append(np.repeat(np.arange(n, dtype=np.int64), field_lengths))
            lengths.append(field_lengths)
        v = max(len(vocab), 1)
        m = max(n, 1)
        # one (stem, paper) key per posting; title and abstract counts side by side
        keys, inverse = np.unique(
            np.concatenate([ids[0] * m + owners[0], ids[1] * m + owners[1]]), return_inverse=True
        )
        split = len(ids[0])
        self.tf_title = np.bincount(inverse[:split], minlength=len(keys)).astype(np.float32)
        self.tf_abstract = np.bincount(inverse[split:], minlength=len(keys)).astype(np.float32)
        self.post_paper = (keys % m).astype(np.int32)
        self.ptr = np.searchsorted(keys // m, np.arange(v + 1))
        b = settings.b
        avg_t = max(corpus.avg_title_len, 1e-9)
        avg_a = max(corpus.avg_abstract_len, 1e-9)
        self.norm_title = (1 - b + b * lengths[0] / avg_t).astype(np.float32)
        self.norm_abstract = (1 - b + b * lengths[1] / avg_a).astype(np.float32)

        # segment k < n: title of paper k; segment n + k: abstract of paper k
        seg_len = np.concatenate(lengths) + self.GAP
        self.seg_start = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
        self.total_positions = int(seg_len.sum())
        local = [
            np.arange(len(ids[f])) - np.repeat(np.cumsum(lengths[f]) - lengths[f], lengths[f])
            for f in (0, 1)
        ]
        g = np.concatenate(
            [self.seg_start[owners[0]] + local[0], self.seg_start[n + owners[1]] + local[1]]
        )
        order = np.argsort(np.concatenate(ids), kind="stable")
        self.pos = g[order]  # sorted by stem, then position
        self.pos_ptr = np.searchsorted(np.concatenate(ids)[order], np.arange(v + 1))
        self._matrices: dict[str, sp.csr_matrix] = {}
        self._unit_cache: dict[UnitKey, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.parsed: dict[str, tuple | int] = {}
        """Term string -> parsed form, kept for the next batch against these papers."""
        self._authors: dict[str, set[int]] | None = None
        self._token_table: np.ndarray | None = None
        self._cats: dict[str, set[int]] | None = None

    # -- term frequencies ----------------------------------------------------------------------

    def _postings(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sid = self.vocab.get(stem)
        if sid is None:
            return _EMPTY.papers, _EMPTY.scores, _EMPTY.scores
        lo, hi = self.ptr[sid], self.ptr[sid + 1]
        return self.post_paper[lo:hi], self.tf_title[lo:hi], self.tf_abstract[lo:hi]

    def _positions(self, stem: str) -> np.ndarray:
        sid = self.vocab.get(stem)
        if sid is None:
            return _NO_POSITIONS
        return self.pos[self.pos_ptr[sid] : self.pos_ptr[sid + 1]]

    def _segments(self, g: np.ndarray) -> np.ndarray:
        """Global positions -> segment (paper k's title is k, its abstract n + k)."""
        return np.searchsorted(self.seg_start, g, side="right") - 1

    def phrase_positions(self, form: Form) -> np.ndarray:
        """Global positions where the phrase starts (its words adjacent, in order)."""
        # start from the rarest word: "large language models" checks few "larg" positions
        lists = sorted(
            ((self._positions(stem), j) for j, stem in enumerate(form)), key=lambda x: len(x[0])
        )
        first, at = lists[0]
        g = first - at
        for positions, j in lists[1:]:
            if not len(g):
                break
            g = g[_contains_sorted(positions, g + j)]
        return g

    def near_positions(self, content: Form, window: int) -> np.ndarray:
        """Positions of the rarest word where every other word occurs within `window` tokens."""
        lists = [self._positions(s) for s in content]
        rarest = min(range(len(lists)), key=lambda k: len(lists[k]))
        g = lists[rarest]
        for k, other in enumerate(lists):
            if k == rarest or not len(g):
                continue
            if not len(other):
                return _NO_POSITIONS
            at = np.searchsorted(other, g)
            after = other[np.minimum(at, len(other) - 1)] - g
            before = g - other[np.maximum(at - 1, 0)]
            dist = np.minimum(
                np.where(after >= 0, after, window + 1), np.where(before >= 0, before, window + 1)
            )
            g = g[dist <= window]
        return g

    def _papers_of(self, g: np.ndarray, field: str) -> np.ndarray:
        """The papers (ascending, unique) whose allowed field holds these positions."""
        seg = self._segments(g)
        if field == "title":
            seg = seg[seg < self.n]
        elif field == "abstract":
            seg = seg[seg >= self.n]
        return np.unique(seg % max(self.n, 1))

    def form_tf(self, form: Form) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Occurrences of a word or an exact phrase per paper: (papers, title tf, abstract tf)."""
        if len(form) == 1:
            return self._postings(form[0])
        seg = self._segments(self.phrase_positions(form))
        if not len(seg):
            return _EMPTY.papers, _EMPTY.scores, _EMPTY.scores
        counts = np.bincount(seg, minlength=2 * self.n).astype(np.float32)
        tft, tfa = counts[: self.n], counts[self.n :]
        papers = np.flatnonzero(tft + tfa).astype(np.int32)
        return papers, tft[papers], tfa[papers]

    def bm25(self, papers: np.ndarray, tft: np.ndarray, tfa: np.ndarray) -> np.ndarray:
        """BM25F saturation of title-weighted, length-normalized term frequencies (without IDF)."""
        tf = self.title_weight * tft / self.norm_title[papers] + tfa / self.norm_abstract[papers]
        return (tf * (self.k1 + 1) / (tf + self.k1)).astype(np.float32)

    # -- many units at once ----------------------------------------------------------------------

    def score_units(
        self, keys: Sequence[UnitKey]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Like score_all, but each unit is scored once per index: later batches reuse it."""
        cache = self._unit_cache
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
        """ "large language models" written as "LLMs" is as good as the words adjacent."""
        extra_unit, extra_paper, extra_score = [], [], []
        for uid, (_, field, _, content, alternatives) in alt_units:
            alt = self._forms(field, alternatives)
            ratio = self.corpus.form_idf(content) / max(
                min(self.corpus.form_idf(f) for f in alternatives), 1e-9
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

    def _field_matrix(self, field: str) -> sp.csr_matrix:
        """Stems x papers: each word's BM25F score (with IDF) in each paper, for one field."""
        cached = self._matrices.get(field)
        if cached is None:
            tft, tfa = self.tf_title, self.tf_abstract
            if field == "title":
                tfa = np.zeros_like(tfa)
            elif field == "abstract":
                tft = np.zeros_like(tft)
            idf = np.asarray([self.corpus.idf(s) for s in self.vocab], np.float32)
            stem_of = np.repeat(np.arange(len(self.vocab)), np.diff(self.ptr))
            data = idf[stem_of] * self.bm25(self.post_paper, tft, tfa)
            # copies: eliminate_zeros works in place and the postings are shared
            cached = sp.csr_matrix(
                (data, self.post_paper.copy(), self.ptr.copy()),
                shape=(max(len(self.vocab), 1), self.n),
            )
            cached.eliminate_zeros()
            self._matrices[field] = cached
        return cached

    def _stem_ids(self, stems: Sequence[str]) -> np.ndarray:
        """Vocabulary ids; -1 for a stem no candidate paper contains."""
        get = self.vocab.get
        return np.fromiter((get(s, -1) for s in stems), np.int64, len(stems))

    def _simple_many(
        self, field: str, items: list[tuple[int, str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        matrix = self._field_matrix(field)
        uids = np.fromiter((u for u, _ in items), np.int64, len(items))
        sids = self._stem_ids([s for _, s in items])
        known = sids >= 0
        rows = matrix[sids[known]]
        unit = np.repeat(uids[known], np.diff(rows.indptr))
        return unit, rows.indices.astype(np.int32), rows.data, np.ones(len(unit), bool)

    def _bags_many(
        self, field: str, items: list[tuple[int, Form, Form]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        matrix = self._field_matrix(field)
        n_bags = len(items)
        v = max(len(self.vocab), 1)
        uids = np.fromiter((u for u, _, _ in items), np.int64, n_bags)
        contents = [tuple(dict.fromkeys(c)) for _, _, c in items]
        n_words = np.fromiter((len(c) for c in contents), np.int64, n_bags)
        sids = self._stem_ids([s for c in contents for s in c])
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
            prox[_positions_in(keys, self._pair_hits(contents, field, ordered=False))] = PROX_NEAR
            prox[_positions_in(keys, self._pair_hits(contents, field, ordered=True))] = PROX_PHRASE
        return uids[row], papers.astype(np.int32), (scores * prox).astype(np.float32), full

    def _pair_hits(self, contents: list[Form], field: str, *, ordered: bool) -> np.ndarray:
        """Keys bag * n + paper where every pair of the bag's words is close (or, ordered: each
        word follows the previous one within one token, as in "chain of thought")."""
        v = max(len(self.vocab), 1)
        need_bag, need_key = [], []
        for b, content in enumerate(contents):
            ids = [self.vocab.get(s, -1) for s in content]
            if len(ids) < 2 or min(ids) < 0:
                continue
            if ordered:
                pairs = list(itertools.pairwise(ids))
            else:
                pairs = [(min(x, y), max(x, y)) for i, x in enumerate(ids) for y in ids[i + 1 :]]
            for x, y in pairs:
                need_bag.append(b)
                need_key.append(x * v + y)
        if not need_bag:
            return np.empty(0, np.int64)
        bag = np.asarray(need_bag, np.int64)
        key = np.asarray(need_key, np.int64)
        pair_key, pair_seg = self._pairs(ordered, np.unique([s for c in contents for s in c]))
        sel: np.ndarray | slice
        if field == "title":
            sel = pair_seg < self.n
        elif field == "abstract":
            sel = pair_seg >= self.n
        else:
            sel = slice(None)
        pk, paper = pair_key[sel], pair_seg[sel] % max(self.n, 1)
        wanted = np.isin(pk, key)
        pk, paper = pk[wanted], paper[wanted]
        # (bag, pair) requirements x (pair, paper) presences: a bag's paper counts when all hold
        uniq, pair_id = np.unique(pk, return_inverse=True)
        presence = sp.csr_matrix(
            (np.ones(len(pk)), (pair_id, paper)), shape=(max(len(uniq), 1), self.n)
        )
        presence.data[:] = 1.0  # duplicates (two fields) count once
        at = np.searchsorted(uniq, key)
        ok = (at < len(uniq)) & (uniq[np.minimum(at, max(len(uniq) - 1, 0))] == key)
        need = np.bincount(bag, minlength=len(contents))
        req = sp.csr_matrix(
            (np.ones(int(ok.sum())), (bag[ok], at[ok])), shape=(len(contents), presence.shape[0])
        )
        hits = (req @ presence).tocoo()
        done = hits.data >= need[hits.row]
        return hits.row[done].astype(np.int64) * self.n + hits.col[done]

    def _pairs(self, ordered: bool, stems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pair key, segment) for pairs of the given stems within the near window (ordered:
        the second 1-2 tokens after the first); duplicates are left in, callers ignore them."""
        v = max(len(self.vocab), 1)
        ids = self._stem_ids(list(stems))
        ids = np.unique(ids[ids >= 0])
        wanted = np.zeros(v + 1, bool)  # slot v: no token there (gaps, ends)
        wanted[ids] = True
        # only the positions of the wanted stems are visited, not the whole text
        lo, hi = self.pos_ptr[ids], self.pos_ptr[ids + 1]
        counts = hi - lo
        at = self.pos[
            np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        ]
        first = np.repeat(ids, counts)
        seg = self._segments(at)
        token_at = self._token_at()
        keys, segs = [], []
        for d in (1, 2) if ordered else range(1, PAIR_WINDOW + 1):
            second = token_at[at + d]
            ok = wanted[second]
            a, b = first[ok], second[ok].astype(np.int64)
            keys.append(a * v + b if ordered else np.minimum(a, b) * v + np.maximum(a, b))
            segs.append(seg[ok])
        return np.concatenate(keys), np.concatenate(segs)

    def _token_at(self) -> np.ndarray:
        """The stem id at every global position (the vocabulary size where there is none)."""
        if self._token_table is None:
            v = max(len(self.vocab), 1)
            table = np.full(self.total_positions + PAIR_WINDOW + 1, v, np.int32)
            table[self.pos] = np.repeat(
                np.arange(len(self.vocab), dtype=np.int32), np.diff(self.pos_ptr)
            )
            self._token_table = table
        return self._token_table

    # -- units ---------------------------------------------------------------------------------

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
        # synonyms weigh like the commonest of them: no bonus for the spelling a paper chose
        idf = min(self.corpus.form_idf(f) for f in forms)
        scores = idf * self.bm25(papers, tft, tfa)
        return UnitScores(papers, scores, np.ones(len(papers), bool))

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


def _contains_sorted(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """For each needle, whether the sorted haystack holds it."""
    if not len(haystack):
        return np.zeros(len(needles), bool)
    at = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
    return haystack[at] == needles


def _positions_in(ascending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where the values sit in an ascending array (values it lacks are left out)."""
    at = np.searchsorted(ascending, values)
    inside = at < len(ascending)
    at = at[inside]
    return at[ascending[at] == values[inside]]


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))
