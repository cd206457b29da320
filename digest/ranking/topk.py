"""Top-k per profile: scores in chunks, dense for common terms and sparse for the rest, in bounded memory."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

CHUNK_ROWS = 20_000
"""At most this many distinct profiles per chunk (fewer when there are many papers)."""
DENSE_BYTES = 256 * 2**20
"""Budget for the dense part of the unit matrix (units touching many papers)."""
DENSE_MIN_FILL = 0.02
"""A unit touching at least this share of the papers is cheaper dense than sparse."""
BLOCK_BYTES = 8 * 2**20
"""Budget for one chunk's score block (profiles x papers, float32), read several times: small
enough to stay in the CPU cache, which makes top-k twice as fast as one big block."""


class Scorer:
    """Scores chunks of profiles and keeps each one's top k, in bounded memory.

    Units that touch many papers (common words) go into a dense matrix, the rest stay sparse:
    Q @ U_dense is a fast sparse-times-dense product and the long tail costs only its non-zeros.
    Trending is folded into U (a per-paper factor), so the product gives the final scores.
    """

    def __init__(
        self,
        u: sp.csr_matrix,
        q: sp.csr_matrix,
        boost: np.ndarray,
        min_score: float,
        k: int,
        partial_floor: float = 0.0,
    ) -> None:
        n_papers = u.shape[1]
        self.n_papers = n_papers
        # blocks per score row: the k-th best block maximum bounds the k-th best score
        self.n_blocks = int(min(max(2 * k, 16), max(n_papers, 1)))
        self.block = -(-max(n_papers, 1) // self.n_blocks)
        self.width = self.n_blocks * self.block
        fill = np.diff(u.indptr)
        cap = DENSE_BYTES // (4 * self.width)
        by_fill = np.argsort(-fill, kind="stable")[:cap]
        heavy = np.zeros(u.shape[0], bool)
        heavy[by_fill[fill[by_fill] >= DENSE_MIN_FILL * n_papers]] = True
        position = np.empty(u.shape[0], np.int64)
        position[heavy] = np.arange(int(heavy.sum()))
        position[~heavy] = np.arange(int((~heavy).sum()))
        dense = np.zeros((int(heavy.sum()), self.width), np.float32)
        part = u[np.flatnonzero(heavy)]
        rows = np.repeat(np.arange(part.shape[0]), np.diff(part.indptr))
        dense[rows, part.indices] = part.data * boost[part.indices]
        self.dense = dense
        self.sparse = sp.csr_matrix(u[np.flatnonzero(~heavy)].multiply(boost[None, :]))
        self.q_dense = _columns(q, heavy, position, dense.shape[0])
        self.q_sparse = _columns(q, ~heavy, position, self.sparse.shape[0])
        floor = max(min_score, 1e-30)  # min_score 0 still means "some score"
        self.min_boosted = np.full(self.width, np.inf, np.float32)
        self.min_boosted[:n_papers] = floor * boost
        self.trust = floor * float(boost.max(initial=1.0))
        self.floor = np.float32(floor * 0.999)
        self.partial_floor = np.float32(partial_floor)
        self.chunk_rows = max(1, min(CHUNK_ROWS, BLOCK_BYTES // (4 * self.width)))

    def top(
        self,
        start: int,
        stop: int,
        need: np.ndarray,
        partial_rows: np.ndarray | None = None,
        full_of: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """(row, paper, score) of the best `need[r]` papers of each profile row in the chunk, and
        how many papers each row admits in all (see `_admitted`)."""
        n = stop - start
        s = self.q_dense[start:stop] @ self.dense if self.dense.shape[0] else None
        if s is None:
            s = np.zeros((n, self.width), np.float32)
        s = np.asarray(s, np.float32)
        if self.sparse.nnz:
            light = (self.q_sparse[start:stop] @ self.sparse).tocsr()
            light_rows = np.repeat(np.arange(n), np.diff(light.indptr))
            s[light_rows, light.indices] += light.data
        admitted = self._admitted(s, start, partial_rows, full_of)
        maxima = s.reshape(n, self.n_blocks, self.block).max(axis=2)
        maxima.sort(axis=1)
        k = np.clip(need, 1, self.n_blocks)  # need 0 (limit 0) is handled just below
        threshold = maxima[np.arange(n), self.n_blocks - k]
        threshold[need == 0] = np.inf
        # a block maximum under the (boosted) minimum may be a score that does not count;
        # such rows have few relevant papers anyway: take all that pass the minimum
        low = ((threshold < self.trust) & (need > 0)) | (need > self.n_blocks)
        threshold[low] = self.floor  # under every boosted minimum: checked per paper below
        flat = np.flatnonzero(s >= threshold[:, None])
        row = flat // self.width
        col = flat % self.width
        val = s.ravel()[flat]
        ok = val >= self.min_boosted[col]
        row, col, val = row[ok], col[ok], val[ok]
        # rows come ascending and each row's papers ascending, so a stable sort on (row, -score)
        # keeps ties in paper order; positive float32 bits sort like the floats themselves
        key = (row.astype(np.int64) << 32) | (np.int64(0x7FFFFFFF) - val.view(np.int32))
        order = np.argsort(key, kind="stable")
        row, col, val = row[order], col[order], val[order]
        counts = np.bincount(row, minlength=n)
        starts = np.cumsum(counts) - counts
        keep = np.arange(len(row)) - starts[row] < need[row]
        return (
            row[keep],
            col[keep].astype(np.int32),
            val[keep].astype(np.float32),
            admitted,
        )

    def _admitted(
        self,
        s: np.ndarray,
        start: int,
        partial_rows: np.ndarray | None,
        full_of: Callable[[np.ndarray], np.ndarray] | None,
    ) -> np.ndarray:
        """Per row, how many papers it admits in all, not only its top (the masthead's "42
        matched"): over the minimum and, for a paper no interest matches in full, over
        partial_floor. Only rows with a multi-word interest can have such papers; `full_of`
        says, for some rows, which papers an interest of theirs matches in full."""
        counted = s >= self.min_boosted
        admitted = np.count_nonzero(counted, axis=1).astype(np.int64)
        if partial_rows is None or full_of is None or not partial_rows.any():
            return admitted
        weak = counted  # reused in place: counted papers under partial_floor, in partial rows
        weak &= s < self.partial_floor
        weak &= partial_rows[:, None]
        some = np.flatnonzero(weak.any(axis=1))
        if len(some):
            weak = weak[some, : self.n_papers]
            weak &= ~full_of(some + start)
            admitted[some] -= np.count_nonzero(weak, axis=1)
        return admitted

    def pair_scores(self, rows: np.ndarray, papers: np.ndarray) -> np.ndarray:
        """The (boosted) scores of a few (profile row, paper) pairs, as `top` computes them."""
        if not len(rows):
            return np.empty(0, np.float32)
        total = np.zeros(len(rows), np.float64)
        if self.dense.shape[0]:
            total += np.asarray(
                self.q_dense[rows].multiply(self.dense[:, papers].T).sum(axis=1)
            ).ravel()
        if self.sparse.nnz:
            columns = self.sparse.tocsc()[:, papers].T.tocsr()
            total += np.asarray(self.q_sparse[rows].multiply(columns).sum(axis=1)).ravel()
        return total.astype(np.float32)


def _columns(q: sp.csr_matrix, take: np.ndarray, position: np.ndarray, width: int) -> sp.csr_matrix:
    """The entries of q whose column is in `take`, renumbered: one half of the dense/sparse split."""
    keep = take[q.indices]
    rows = np.repeat(np.arange(q.shape[0]), np.diff(q.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=q.shape[0]))])
    return sp.csr_matrix(
        (q.data[keep], position[q.indices[keep]], indptr), shape=(q.shape[0], width)
    )


def full_papers(
    rows: np.ndarray,
    term_ptr: np.ndarray,
    term_unit: np.ndarray,
    term_include: np.ndarray,
    full_bits: np.ndarray,
    n_papers: int,
) -> np.ndarray:
    """Per profile row, which papers one of its interests matches in full (rows x papers, bool):
    the OR of its terms' bit rows, a few bytes per paper, not a score product."""
    counts = term_ptr[rows + 1] - term_ptr[rows]
    first = np.repeat(term_ptr[rows] - (np.cumsum(counts) - counts), counts)
    terms = first + np.arange(int(counts.sum()))
    bits = full_bits[term_unit[terms]]
    bits[~term_include[terms]] = 0  # an exclusion's match is no match
    out = np.zeros((len(rows), full_bits.shape[1]), np.uint8)
    some = counts > 0
    if some.any():
        out[some] = np.bitwise_or.reduceat(bits, (np.cumsum(counts) - counts)[some], axis=0)
    return np.unpackbits(out, axis=1, count=n_papers).astype(bool)


def matched_masks(
    rows: np.ndarray,
    papers: np.ndarray,
    term_ptr: np.ndarray,
    term_unit: np.ndarray,
    full_bits: np.ndarray,
) -> np.ndarray:
    """Per result, a bit per term of its profile: did that term fully match the paper."""
    pair, ordinal, unit, counts = _result_terms(rows, term_ptr, term_unit)
    paper = papers[pair].astype(np.int64)
    hit = (full_bits[unit, paper >> 3] >> (7 - (paper & 7)).astype(np.uint8)) & 1
    return _masks(hit.astype(bool), ordinal, counts)


def touched_masks(
    rows: np.ndarray,
    papers: np.ndarray,
    term_ptr: np.ndarray,
    term_unit: np.ndarray,
    u: sp.csr_matrix,
) -> np.ndarray:
    """Per result, a bit per term of its profile: did that term count for the paper at all (in
    part too). Looked up in the unit matrix itself; meant for the few partial results."""
    pair, ordinal, unit, counts = _result_terms(rows, term_ptr, term_unit)
    hit = np.asarray(u[unit, papers[pair].astype(np.int64)]).ravel() > 0
    return _masks(hit, ordinal, counts)


def _result_terms(
    rows: np.ndarray, term_ptr: np.ndarray, term_unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each (result, term of its profile) pair, flat: the result's index, the term's ordinal in
    its profile, the term's unit, and how many terms each result has."""
    counts = term_ptr[rows + 1] - term_ptr[rows]
    pair = np.repeat(np.arange(len(rows)), counts)
    first = np.repeat(term_ptr[rows], counts)
    ordinal = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pair, ordinal, term_unit[first + ordinal], counts


def _masks(hit: np.ndarray, ordinal: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The flat hits folded into one bit mask per result (0 for a result without terms)."""
    bits = np.where(hit, np.left_shift(np.int64(1), ordinal), 0)
    out = np.zeros(len(counts), np.int64)
    nonempty = counts > 0
    out[nonempty] = np.add.reduceat(bits, (np.cumsum(counts) - counts)[nonempty])
    return out
