"""Batch ranking: many profiles against the day's papers with sparse matrices, top-k per profile.

Scores = Q @ U, where Q (profiles x units) holds term weights and U (units x papers) each unit's
BM25F score per paper. Identical profiles are scored once, identical terms once, and profiles are
processed in chunks so memory stays bounded whatever the number of subscribers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.models import Match, Paper
from digest.ranking.corpus import Corpus, corpus_from_stems, merged_acronyms
from digest.ranking.index import PaperIndex, UnitKey, unit_key
from digest.ranking.profile import (
    MAX_TERMS,
    ProfileError,
    _segments,
    parse_profile,
    parse_term,
)
from digest.ranking.text import stems

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = RankingSettings()

CHUNK_ROWS = 20_000
"""Distinct profiles scored per sparse product: bounds the memory of one score block."""
BUCKETS = 128
"""Histogram resolution used to cut long score rows down to about their top k before sorting."""
PRUNE = 0.1
"""Unit scores under PRUNE x min_score are dropped before the product (impact pruning): such a
score is a common word or a stray word of a multi-word term, it cannot recommend a paper and
barely reorders; keeping it would make the score matrix nearly dense."""
VETO = -1e9
"""Weight of an exclusion term: one full match sinks the paper below any min_score."""
TRENDING_SCALE = math.log1p(100.0)
"""Upvotes at which the trending boost reaches its full weight."""
_BLANK, _INVALID = -1, -2  # segment cache values besides entry ids


@dataclass(frozen=True, slots=True)
class Ranking:
    """Ranked results of one batch as flat arrays; `matches(i)` builds profile i's list."""

    papers: Sequence[Paper]
    profile_row: np.ndarray  # subscriber i -> distinct profile row
    row_ptr: np.ndarray  # distinct row r -> its results in [row_ptr[r], row_ptr[r + 1])
    paper_idx: np.ndarray
    score: np.ndarray
    matched_mask: np.ndarray  # bit t set: term t of the row's profile matched the paper
    term_ptr: np.ndarray  # distinct row r -> its terms in [term_ptr[r], term_ptr[r + 1])
    term_entry: np.ndarray  # -> index into entry_text
    entry_text: Sequence[str]
    limits: np.ndarray
    excluded: Sequence[frozenset[int]]

    def __len__(self) -> int:
        return len(self.profile_row)

    def matches(self, i: int) -> list[Match]:
        """Profile i's matches, best first, within its limit and without its excluded papers."""
        r = int(self.profile_row[i])
        lo, hi = int(self.row_ptr[r]), int(self.row_ptr[r + 1])
        excluded = self.excluded[i]
        limit = int(self.limits[i])
        terms = [
            self.entry_text[e] for e in self.term_entry[self.term_ptr[r] : self.term_ptr[r + 1]]
        ]
        out: list[Match] = []
        for j in range(lo, hi):
            if len(out) >= limit:
                break
            p = int(self.paper_idx[j])
            if p in excluded:
                continue
            mask = int(self.matched_mask[j])
            matched = tuple(dict.fromkeys(t for k, t in enumerate(terms) if mask >> k & 1))
            out.append(Match(self.papers[p], float(self.score[j]), matched))
        return out

    def __iter__(self) -> Iterator[list[Match]]:
        return (self.matches(i) for i in range(len(self)))


class _Compiler:
    """Turns profile strings into term entry ids, parsing each distinct term string once."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.units: dict[UnitKey, int] = {}
        self.segments: dict[str, int] = {}
        self.entry_unit: list[int] = []
        self.entry_weight: list[float] = []
        self.entry_exclude: list[bool] = []
        self.entry_text: list[str] = []

    def _add(self, segment: str) -> int:
        try:
            term = parse_term(segment)
        except ProfileError:
            eid = _INVALID
        else:
            if term is None:
                eid = _BLANK
            else:
                key = unit_key(term, self.corpus)
                eid = len(self.entry_unit)
                self.entry_unit.append(self.units.setdefault(key, len(self.units)))
                self.entry_weight.append(term.weight)
                self.entry_exclude.append(term.exclude)
                self.entry_text.append(term.text)
        self.segments[segment] = eid
        return eid

    def compile(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Entry ids of every profile, flat, with the number per profile (blank ones included)."""
        cache = self.segments
        flat: list[int] = []
        lengths: list[int] = []
        for text in texts:
            if '"' in text:
                try:
                    segments = [segment for _, segment in _segments(text)]  # commas in quotes
                except ProfileError:
                    segments = ['"']  # parses as invalid
            elif "\n" in text:
                segments = text.replace("\n", ",").split(",")
            else:
                segments = text.split(",")
            try:
                ids = [cache[s] for s in segments]
            except KeyError:
                ids = [cache[s] if s in cache else self._add(s) for s in segments]
            flat.extend(ids)
            lengths.append(len(ids))
        return np.asarray(flat, np.int64), np.asarray(lengths, np.int64)


def _docs(papers: Sequence[Paper]) -> list[tuple[list[str], list[str]]]:
    return [(stems(p.title), stems(p.abstract)) for p in papers]


def _boost(papers: Sequence[Paper], weight: float) -> np.ndarray:
    upvotes = np.fromiter((max(p.upvotes or 0, 0) for p in papers), np.float64, len(papers))
    return (1.0 + weight * np.minimum(np.log1p(upvotes) / TRENDING_SCALE, 1.0)).astype(np.float32)


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
    flat, lengths = compiler.compile(rows)
    owner = np.repeat(np.arange(len(rows)), lengths)
    entry_unit = np.asarray(compiler.entry_unit, np.int64)
    entry_weight = np.asarray(compiler.entry_weight, np.float32)
    entry_exclude = np.asarray(compiler.entry_exclude, bool)
    real = flat >= 0
    invalid = np.zeros(len(rows), bool)
    invalid[owner[flat == _INVALID]] = True
    terms = np.bincount(owner[real], minlength=len(rows))
    positive = np.bincount(owner[real], ~entry_exclude[flat[real]], minlength=len(rows))
    invalid |= (terms > MAX_TERMS) | (positive == 0)
    _warn_invalid([text for text, bad in zip(rows, invalid.tolist(), strict=True) if bad])
    keep = real & ~invalid[owner]
    term_entry = flat[keep]
    term_ptr = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=len(rows)))])

    index = PaperIndex(papers, docs, corpus, settings)
    unit, paper, score, is_full = index.score_all(list(compiler.units))
    n_units = len(compiler.units)
    kept = score >= PRUNE * settings.min_score
    # stacked: rows [0, n_units) score a paper, rows [n_units, 2 n_units) say it fully matched
    u = sp.csr_matrix(
        (
            np.concatenate([score[kept], np.ones(int(is_full.sum()), np.float32)]),
            (
                np.concatenate([unit[kept], unit[is_full] + n_units]),
                np.concatenate([paper[kept], paper[is_full]]),
            ),
        ),
        shape=(2 * n_units, n_papers),
        dtype=np.float32,
    )
    full_keys = np.sort(unit[is_full] * n_papers + paper[is_full])

    term_unit = entry_unit[term_entry]
    term_exclude = entry_exclude[term_entry]
    q = sp.csr_matrix(
        (
            np.where(term_exclude, np.float32(VETO), entry_weight[term_entry]).astype(np.float32),
            np.where(term_exclude, term_unit + n_units, term_unit),
            term_ptr,
        ),
        shape=(len(rows), 2 * n_units),
    )

    boost = _boost(papers, settings.trending_weight)
    out_rows, out_papers, out_scores = [], [], []
    for start in range(0, len(rows), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(rows))
        r, c, v = _top(q[start:stop], u, boost, need[start:stop], settings.min_score)
        out_rows.append(r + start)
        out_papers.append(c)
        out_scores.append(v)
    res_rows = np.concatenate(out_rows) if out_rows else np.empty(0, np.int64)
    res_papers = np.concatenate(out_papers) if out_papers else np.empty(0, np.int32)
    res_scores = np.concatenate(out_scores) if out_scores else np.empty(0, np.float32)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(res_rows, minlength=len(rows)))])
    masks = _matched_masks(res_rows, res_papers, term_ptr, term_unit, full_keys, n_papers)
    return Ranking(
        papers=papers,
        profile_row=profile_row,
        row_ptr=row_ptr,
        paper_idx=res_papers,
        score=res_scores,
        matched_mask=masks,
        term_ptr=term_ptr,
        term_entry=term_entry,
        entry_text=compiler.entry_text,
        limits=limits,
        excluded=excluded,
    )


def _warn_invalid(texts: list[str]) -> None:
    """Profiles are validated when saved; one that fails now (rules changed) is skipped, loudly."""
    for text in texts[:5]:
        try:
            parse_profile(text)
        except ProfileError as exc:
            log.warning("skipping an invalid profile: %s", exc)
    if len(texts) > 5:
        log.warning("skipping %d more invalid profiles", len(texts) - 5)


def _top(
    q: sp.csr_matrix, u: sp.csr_matrix, boost: np.ndarray, need: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of one chunk over the non-zero scores only (a dense argpartition per row is slow)."""
    s = q @ u
    n_rows = s.shape[0]
    keep = s.data >= min_score  # relevance decides; trending only reorders what passed
    row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(s.indptr))[keep]
    col = s.indices[keep]
    val = s.data[keep] * boost[col]
    del s, keep
    counts = np.bincount(row, minlength=n_rows)
    if (counts > need).any():
        # shrink each long row to about its top k before sorting: a histogram of log scores
        # per row gives the bucket where the k-th best falls; everything below it goes
        logv = np.log(val)
        lo, hi = float(logv.min()), float(logv.max())
        bucket = ((logv - lo) * ((BUCKETS - 1) / max(hi - lo, 1e-9))).astype(np.int64)
        hist = np.bincount(row * BUCKETS + bucket, minlength=n_rows * BUCKETS)
        at_least = np.cumsum(hist.reshape(n_rows, BUCKETS)[:, ::-1], axis=1)[:, ::-1]
        threshold = (at_least >= need[:, None]).sum(axis=1) - 1  # -1: keep the whole row
        keep = bucket >= threshold[row]
        row, col, val = row[keep], col[keep], val[keep]
    order = np.lexsort((col, -val, row))
    row, col, val = row[order], col[order], val[order]
    counts = np.bincount(row, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    keep = np.arange(len(row)) - starts[row] < need[row]
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
