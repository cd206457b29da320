"""Batch ranking: many profiles against the day's papers with sparse matrices, top-k per profile.

Scores = Q @ U, where Q (profiles x units) holds term weights and U (units x papers) each unit's
BM25F score per paper. Identical profiles are scored once, identical terms once, and profiles are
processed in chunks so memory stays bounded whatever the number of subscribers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.models import Match, Paper
from digest.ranking.corpus import Corpus, corpus_from_stems, merged_acronyms
from digest.ranking.index import PaperIndex, UnitKey, unit_key
from digest.ranking.profile import MAX_TERMS, ProfileError, Term, parse_profile, parse_term
from digest.ranking.text import stem_words, words

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = RankingSettings()

CHUNK_ROWS = 20_000
"""Distinct profiles scored per sparse product: bounds the memory of one score block."""
TRENDING_SCALE = math.log1p(100.0)
"""Upvotes at which the trending boost reaches its full weight."""

# A parsed term as the batch needs it: (unit id, weight, exclude, text shown as matched)
_Entry = tuple[int, float, bool, str]


@dataclass(frozen=True, slots=True)
class Ranking:
    """Ranked results of one batch as flat arrays; `matches(i)` builds profile i's list."""

    papers: Sequence[Paper]
    profile_row: np.ndarray  # subscriber i -> distinct profile row
    row_ptr: np.ndarray  # distinct row r -> its results in [row_ptr[r], row_ptr[r + 1])
    paper_idx: np.ndarray
    score: np.ndarray
    matched_mask: np.ndarray  # bit t set: positive term t of the row's profile matched
    shown: Sequence[tuple[str, ...]]  # distinct row -> texts of its positive terms
    limits: np.ndarray
    excluded: Sequence[frozenset[int]]

    def __len__(self) -> int:
        return len(self.profile_row)

    def matches(self, i: int) -> list[Match]:
        """Profile i's matches, best first, within its limit and without its excluded papers."""
        r = int(self.profile_row[i])
        lo, hi = int(self.row_ptr[r]), int(self.row_ptr[r + 1])
        excluded = self.excluded[i]
        shown = self.shown[r]
        out: list[Match] = []
        limit = int(self.limits[i])
        for j in range(lo, hi):
            if len(out) >= limit:
                break
            p = int(self.paper_idx[j])
            if p in excluded:
                continue
            mask = int(self.matched_mask[j])
            matched = tuple(t for k, t in enumerate(shown) if mask >> k & 1)
            out.append(Match(self.papers[p], float(self.score[j]), matched))
        return out

    def __iter__(self) -> Iterator[list[Match]]:
        return (self.matches(i) for i in range(len(self)))


class _Compiler:
    """Turns profile strings into rows of term entries, caching per term string and per unit."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.units: dict[UnitKey, int] = {}
        self.segments: dict[str, _Entry | ProfileError | None] = {}

    def entry(self, term: Term) -> _Entry:
        key = unit_key(term, self.corpus)
        uid = self.units.setdefault(key, len(self.units))
        return (uid, term.weight, term.exclude, term.text)

    def compile(self, text: str) -> list[_Entry]:
        """Entries of one profile; raises ProfileError when it is invalid."""
        if '"' in text:
            return [self.entry(t) for t in parse_profile(text).terms]
        # the common case, fast: split, then one dict lookup per term string
        segments = text.split(",") if "\n" not in text else text.replace("\n", ",").split(",")
        cache = self.segments
        out = []
        for segment in segments:
            entry = cache.get(segment, cache)
            if entry is cache:
                try:
                    term = parse_term(segment)
                    entry = None if term is None else self.entry(term)
                except ProfileError as exc:
                    entry = exc
                cache[segment] = entry
            if entry is None:
                continue
            if isinstance(entry, ProfileError):
                raise entry
            out.append(entry)
        if len(out) > MAX_TERMS or all(e[2] for e in out):
            parse_profile(text)  # raises the precise error
        return out


def _docs(papers: Sequence[Paper]) -> list[tuple[list[str], list[str]]]:
    return [(stem_words(words(p.title)), stem_words(words(p.abstract))) for p in papers]


def _boost(papers: Sequence[Paper], weight: float) -> np.ndarray:
    upvotes = np.fromiter((max(p.upvotes or 0, 0) for p in papers), np.float64, len(papers))
    return (1.0 + weight * np.minimum(np.log1p(upvotes) / TRENDING_SCALE, 1.0)).astype(np.float32)


def _csr(rows: list[np.ndarray], n_cols: int, values: list[np.ndarray]) -> sp.csr_matrix:
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(rows) if rows else np.empty(0, np.int32)
    data = np.concatenate(values) if values else np.empty(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def score_batch(
    papers: Sequence[Paper],
    profiles: Sequence[str],
    *,
    settings: RankingSettings,
    corpus: Corpus | None = None,
    limit: int | Sequence[int] = 10,
    exclude: Sequence[Collection[str]] | None = None,
) -> Ranking:
    """Rank every profile against the papers; results as arrays (see `rank` for Match lists)."""
    n_papers = len(papers)
    docs = _docs(papers)
    if corpus is None:
        corpus = corpus_from_stems(docs, merged_acronyms(papers, None))
    limits = np.full(len(profiles), limit, np.int64) if isinstance(limit, int) else None
    if limits is None:
        limits = np.asarray(list(limit), np.int64)
        if len(limits) != len(profiles):
            raise ValueError(f"{len(limits)} limits for {len(profiles)} profiles")
    key_index = {p.key: i for i, p in enumerate(papers)}
    excluded: list[frozenset[int]] = [frozenset()] * len(profiles)
    if exclude is not None:
        if len(exclude) != len(profiles):
            raise ValueError(f"{len(exclude)} exclude sets for {len(profiles)} profiles")
        excluded = [
            frozenset(key_index[k] for k in keys if k in key_index) if keys else frozenset()
            for keys in exclude
        ]

    # identical profile strings are computed once
    rows: dict[str, int] = {}
    profile_row = np.fromiter(
        (rows.setdefault(p, len(rows)) for p in profiles), np.int64, len(profiles)
    )
    need = np.zeros(len(rows), np.int64)  # the deepest top-k any subscriber of a row needs
    extra = np.fromiter((len(e) for e in excluded), np.int64, len(profiles)) + limits
    np.maximum.at(need, profile_row, extra)

    compiler = _Compiler(corpus)
    include_rows: list[list[int]] = []
    include_w: list[list[float]] = []
    exclude_rows: list[list[int]] = []
    shown: list[tuple[str, ...]] = []
    for text in rows:
        try:
            entries = compiler.compile(text)
        except ProfileError as exc:
            log.warning("skipping an invalid profile: %s", exc)
            entries = []
        include_rows.append([e[0] for e in entries if not e[2]])
        include_w.append([e[1] for e in entries if not e[2]])
        exclude_rows.append([e[0] for e in entries if e[2]])
        shown.append(tuple(e[3] for e in entries if not e[2]))

    index = PaperIndex(papers, docs, corpus, settings)
    unit_scores = [index.score(key) for key in compiler.units]
    n_units = len(unit_scores)
    u = _csr([s.papers for s in unit_scores], n_papers, [s.scores for s in unit_scores])
    full = _csr(
        [s.papers[s.full] for s in unit_scores],
        n_papers,
        [np.ones(int(s.full.sum()), np.float32) for s in unit_scores],
    )
    full_keys = _keys(full, n_papers)

    q_lengths = np.fromiter((len(r) for r in include_rows), np.int64, len(include_rows))
    q_ptr = np.concatenate([[0], np.cumsum(q_lengths)])
    q_units = np.fromiter((x for r in include_rows for x in r), np.int64, int(q_ptr[-1]))
    q_weights = np.fromiter((x for r in include_w for x in r), np.float32, int(q_ptr[-1]))
    # copies: scipy sorts and merges in place, and the typed order is needed for `matched`
    q = sp.csr_matrix((q_weights.copy(), q_units.copy(), q_ptr.copy()), shape=(len(rows), n_units))
    q.sum_duplicates()
    e_lengths = np.fromiter((len(r) for r in exclude_rows), np.int64, len(exclude_rows))
    e_ptr = np.concatenate([[0], np.cumsum(e_lengths)])
    e_units = np.fromiter((x for r in exclude_rows for x in r), np.int64, int(e_ptr[-1]))
    e = sp.csr_matrix(
        (np.ones(len(e_units), np.float32), e_units, e_ptr), shape=(len(rows), n_units)
    )

    boost = _boost(papers, settings.trending_weight)
    out_rows, out_papers, out_scores = [], [], []
    for start in range(0, len(rows), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(rows))
        r, c, v = _top(q[start:stop], e[start:stop], u, full, boost, need[start:stop], settings)
        out_rows.append(r + start)
        out_papers.append(c)
        out_scores.append(v)
    res_rows = np.concatenate(out_rows) if out_rows else np.empty(0, np.int64)
    res_papers = np.concatenate(out_papers) if out_papers else np.empty(0, np.int32)
    res_scores = np.concatenate(out_scores) if out_scores else np.empty(0, np.float32)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(res_rows, minlength=len(rows)))])
    masks = _matched_masks(res_rows, res_papers, q_ptr, q_units, full_keys, n_papers)
    return Ranking(
        papers=papers,
        profile_row=profile_row,
        row_ptr=row_ptr,
        paper_idx=res_papers,
        score=res_scores,
        matched_mask=masks,
        shown=shown,
        limits=limits,
        excluded=excluded,
    )


def _keys(m: sp.csr_matrix, n_cols: int) -> np.ndarray:
    """Sorted row * n_cols + col keys of a CSR matrix's entries."""
    m.sort_indices()
    row = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return row * n_cols + m.indices.astype(np.int64)


def _top(
    q: sp.csr_matrix,
    e: sp.csr_matrix,
    u: sp.csr_matrix,
    full: sp.csr_matrix,
    boost: np.ndarray,
    need: np.ndarray,
    settings: RankingSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of one chunk over the non-zero scores only (a dense argpartition per row is slow)."""
    s = (q @ u).tocsr()
    row = np.repeat(np.arange(s.shape[0], dtype=np.int64), np.diff(s.indptr))
    col = s.indices
    val = s.data
    keep = val >= settings.min_score  # relevance decides; trending only reorders what passed
    row, col, val = row[keep], col[keep], val[keep]
    if e.nnz:
        vetoed = _keys((e @ full).tocsr(), u.shape[1])
        ok = ~np.isin(row * u.shape[1] + col, vetoed, assume_unique=False)
        row, col, val = row[ok], col[ok], val[ok]
    val = val * boost[col]
    order = np.lexsort((col, -val, row))
    row, col, val = row[order], col[order], val[order]
    counts = np.bincount(row, minlength=s.shape[0])
    starts = np.cumsum(counts) - counts
    rank_in_row = np.arange(len(row)) - starts[row]
    keep = rank_in_row < need[row]
    return row[keep], col[keep].astype(np.int32), val[keep].astype(np.float32)


def _matched_masks(
    rows: np.ndarray,
    papers: np.ndarray,
    q_ptr: np.ndarray,
    q_units: np.ndarray,
    full_keys: np.ndarray,
    n_papers: int,
) -> np.ndarray:
    """Per result, a bit per positive term of its profile: did that term fully match the paper."""
    if not len(rows):
        return np.empty(0, np.int64)
    counts = q_ptr[rows + 1] - q_ptr[rows]
    pair = np.repeat(np.arange(len(rows)), counts)
    first = np.repeat(q_ptr[rows], counts)
    ordinal = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    unit = q_units[first + ordinal]
    keys = unit * n_papers + papers[pair].astype(np.int64)
    at = np.searchsorted(full_keys, keys)
    hit = (at < len(full_keys)) & (full_keys[np.minimum(at, len(full_keys) - 1)] == keys)
    bits = np.where(hit, np.left_shift(np.int64(1), ordinal), 0)
    return np.add.reduceat(bits, np.cumsum(counts) - counts)


def rank(
    papers: Sequence[Paper],
    profiles: Sequence[str],
    *,
    settings: RankingSettings = DEFAULT_SETTINGS,
    corpus: Corpus | None = None,
    limit: int | Sequence[int] = 10,
    exclude: Sequence[Collection[str]] | None = None,
) -> list[list[Match]]:
    """One list per profile, best first: papers scoring at least min_score, at most `limit`.

    exclude[i] holds the paper keys profile i must not get (already sent to that subscriber).
    corpus None: statistics from `papers` themselves. An invalid profile gets an empty list.
    """
    return list(
        score_batch(
            papers, profiles, settings=settings, corpus=corpus, limit=limit, exclude=exclude
        )
    )


def trending(papers: Sequence[Paper], n: int) -> list[Match]:
    """The n most upvoted papers (those with at least one upvote): the fallback digest."""
    voted = [p for p in papers if (p.upvotes or 0) > 0]
    voted.sort(key=lambda p: (-(p.upvotes or 0), p.key))
    return [Match(p, float(p.upvotes or 0), ()) for p in voted[:n]]
