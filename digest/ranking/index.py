"""The day's candidate papers, tokenized once: postings, token positions and per-word BM25F scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.models import Paper
from digest.ranking.corpus import Corpus, Form
from digest.ranking.text import Doc, fold, words

PAIR_WINDOW = 10
"""Words of a multi-word term count as near when every pair of them is this close, within one
sentence (each sentence of an abstract starts this many positions past the last one's end)."""

_NO_PAPERS = np.empty(0, np.int32)
_NO_TF = np.empty(0, np.float32)
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
        docs: Sequence[Doc],
        corpus: Corpus,
        settings: RankingSettings,
    ) -> None:
        self.papers = papers
        self.corpus = corpus
        self.k1 = settings.k1
        self.title_weight = settings.title_weight
        n = len(papers)
        self.n = n
        vocab: dict[str, int] = {}
        self.vocab = vocab
        ids, owners, lengths = [], [], []
        for column in ([d[0] for d in docs], [d[1] for d in docs]):  # titles, abstracts
            field_lengths = np.fromiter(map(len, column), np.int64, n)
            flat = [vocab.setdefault(s, len(vocab)) for words_ in column for s in words_]
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
        local = [
            np.arange(len(ids[f])) - np.repeat(np.cumsum(lengths[f]) - lengths[f], lengths[f])
            for f in (0, 1)
        ]
        # each sentence of an abstract starts PAIR_WINDOW positions past the previous one's end,
        # so no near pair or phrase spans two sentences ("... frontier LLMs. Agents ..." is not
        # "LLM agents")
        n_breaks = np.fromiter((len(d[2]) for d in docs), np.int64, n)
        jump = np.zeros(len(ids[1]), np.int64)
        if n_breaks.any():
            first = np.cumsum(lengths[1]) - lengths[1]  # each abstract's first token, flat
            at = np.concatenate([np.asarray(d[2], np.int64) for d in docs])
            jump[at + np.repeat(first, n_breaks)] = PAIR_WINDOW
        earlier = np.cumsum(n_breaks) - n_breaks  # breaks of the abstracts before each one
        local[1] = local[1] + np.cumsum(jump) - np.repeat(PAIR_WINDOW * earlier, lengths[1])
        seg_len = np.concatenate([lengths[0], lengths[1] + PAIR_WINDOW * n_breaks]) + self.GAP
        self.seg_start = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
        self.total_positions = int(seg_len.sum())
        g = np.concatenate(
            [self.seg_start[owners[0]] + local[0], self.seg_start[n + owners[1]] + local[1]]
        )
        order = np.argsort(np.concatenate(ids), kind="stable")
        self.pos = g[order]  # sorted by stem, then position
        self.pos_ptr = np.searchsorted(np.concatenate(ids)[order], np.arange(v + 1))
        self._word_scores: dict[str, sp.csr_matrix] = {}
        self._authors: dict[str, set[int]] | None = None
        self._token_table: np.ndarray | None = None
        self._cats: dict[str, set[int]] | None = None

    def postings(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Papers holding the stem, with its title and abstract term frequencies."""
        sid = self.vocab.get(stem)
        if sid is None:
            return _NO_PAPERS, _NO_TF, _NO_TF
        lo, hi = self.ptr[sid], self.ptr[sid + 1]
        return self.post_paper[lo:hi], self.tf_title[lo:hi], self.tf_abstract[lo:hi]

    def positions(self, stem: str) -> np.ndarray:
        """Global positions of the stem, ascending."""
        sid = self.vocab.get(stem)
        if sid is None:
            return _NO_POSITIONS
        return self.pos[self.pos_ptr[sid] : self.pos_ptr[sid + 1]]

    def segments(self, g: np.ndarray) -> np.ndarray:
        """Global positions -> segment (paper k's title is k, its abstract n + k)."""
        return np.searchsorted(self.seg_start, g, side="right") - 1

    def phrase_positions(self, form: Form) -> np.ndarray:
        """Global positions where the phrase starts (its words adjacent, in order)."""
        # start from the rarest word: "large language models" checks few "larg" positions
        lists = sorted(
            ((self.positions(stem), j) for j, stem in enumerate(form)), key=lambda x: len(x[0])
        )
        first, at = lists[0]
        g = first - at
        for positions, j in lists[1:]:
            if not len(g):
                break
            g = g[_contains_sorted(positions, g + j)]
        return g

    def form_tf(self, form: Form) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Occurrences of a word or an exact phrase per paper: (papers, title tf, abstract tf)."""
        if len(form) == 1:
            return self.postings(form[0])
        seg = self.segments(self.phrase_positions(form))
        if not len(seg):
            return _NO_PAPERS, _NO_TF, _NO_TF
        counts = np.bincount(seg, minlength=2 * self.n).astype(np.float32)
        tft, tfa = counts[: self.n], counts[self.n :]
        papers = np.flatnonzero(tft + tfa).astype(np.int32)
        return papers, tft[papers], tfa[papers]

    def bm25(self, papers: np.ndarray, tft: np.ndarray, tfa: np.ndarray) -> np.ndarray:
        """BM25F saturation of title-weighted, length-normalized term frequencies (without IDF)."""
        tf = self.title_weight * tft / self.norm_title[papers] + tfa / self.norm_abstract[papers]
        return (tf * (self.k1 + 1) / (tf + self.k1)).astype(np.float32)

    def word_scores(self, field: str) -> sp.csr_matrix:
        """Stems x papers: each word's BM25F score (with IDF) in each paper, for one field."""
        cached = self._word_scores.get(field)
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
            self._word_scores[field] = cached
        return cached

    def stem_ids(self, stems: Sequence[str]) -> np.ndarray:
        """Vocabulary ids; -1 for a stem no candidate paper contains."""
        get = self.vocab.get
        return np.fromiter((get(s, -1) for s in stems), np.int64, len(stems))

    def pairs(self, ordered: bool, stems: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair key, segment, distance in tokens) for pairs of the given stems within the near
        window (ordered: the second 1-2 tokens after the first), nearest first; duplicates are
        left in."""
        v = max(len(self.vocab), 1)
        ids = self.stem_ids(list(stems))
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
        seg = self.segments(at)
        token_at = self._token_at()
        keys, segs, gaps = [], [], []
        for d in (1, 2) if ordered else range(1, PAIR_WINDOW + 1):
            second = token_at[at + d]
            ok = wanted[second]
            a, b = first[ok], second[ok].astype(np.int64)
            keys.append(a * v + b if ordered else np.minimum(a, b) * v + np.maximum(a, b))
            segs.append(seg[ok])
            gaps.append(np.full(len(a), d, np.int8))
        return np.concatenate(keys), np.concatenate(segs), np.concatenate(gaps)

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

    def author_papers(self, name: tuple[str, ...]) -> list[int]:
        """Papers with an author whose name holds these folded words in order ("yoshua bengio")."""
        if self._authors is None:
            index: dict[str, set[int]] = {}
            for i, paper in enumerate(self.papers):
                for author in paper.authors:
                    for w in words(fold(author)):
                        index.setdefault(w, set()).add(i)
            self._authors = index
        candidates = set.intersection(*(self._authors.get(w, set()) for w in name))
        return sorted(
            i
            for i in candidates
            if any(_contains(words(fold(a)), name) for a in self.papers[i].authors)
        )

    def category_papers(self, name: str) -> list[int]:
        """Papers in a category; "cs" takes every cs.* category, "cs.lg" just that one."""
        if self._cats is None:
            cats: dict[str, set[int]] = {}
            for i, paper in enumerate(self.papers):
                for c in paper.categories:
                    cats.setdefault(fold(c), set()).add(i)
            self._cats = cats
        hits: set[int] = set()
        for c, papers in self._cats.items():
            if c == name or c.startswith(name + "."):
                hits |= papers
        return sorted(hits)


def _contains_sorted(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """For each needle, whether the sorted haystack holds it."""
    if not len(haystack):
        return np.zeros(len(needles), bool)
    at = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
    return haystack[at] == needles


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))
