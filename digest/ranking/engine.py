"""Batch ranking: many profiles against the day's papers with sparse matrices, top-k per profile.

Scores = Q @ U, where Q (profiles x units) holds term weights and U (units x papers) each unit's
BM25F score per paper. Identical profiles are scored once, identical terms once, and profiles are
processed in chunks so memory stays bounded whatever the number of subscribers.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.models import Match, Paper
from digest.ranking.compile import BLANK, INVALID, Compiler
from digest.ranking.corpus import Corpus, corpus_from_stems, merged_acronyms
from digest.ranking.index import PaperIndex
from digest.ranking.profile import MAX_PROFILE_CHARS, MAX_TERMS, ProfileError, parse_profile
from digest.ranking.text import Doc, paper_doc
from digest.ranking.topk import Scorer, full_papers, matched_masks, touched_masks
from digest.ranking.units import UnitScorer

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = RankingSettings()

THREADS = max(1, min(4, os.cpu_count() or 1))
"""Chunks scored at once (each holds one score block of topk.BLOCK_BYTES)."""

VETO = -1e9
"""Weight of an exclusion term: one full match sinks the paper below any min_score."""
TRENDING_SCALE = math.log1p(100.0)
"""Upvotes at which the trending boost reaches its full weight."""
PARTIAL_DEPTH = 2
"""Results fetched per profile, as a multiple of its limit: full matches rank above partial
ones whatever their scores, so a few full matches may sit under the first `limit` scores."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """Ranked results of one batch as flat arrays; `matches(i)` builds profile i's list."""

    papers: Sequence[Paper]
    profile_row: np.ndarray  # subscriber i -> distinct profile row
    row_ptr: np.ndarray  # distinct row r -> its results in [row_ptr[r], row_ptr[r + 1])
    paper_idx: np.ndarray
    score: np.ndarray
    matched_mask: np.ndarray  # bit t set: term t of the row's profile matched the paper
    touched_mask: (
        np.ndarray
    )  # bit t set: term t (an interest) counted for the paper, in part or full
    term_ptr: np.ndarray  # distinct row r -> its terms in [term_ptr[r], term_ptr[r + 1])
    term_entry: np.ndarray  # -> index into entry_text
    entry_text: Sequence[str]
    limits: np.ndarray
    excluded: Sequence[frozenset[int]]
    partial_floor: float
    """The score (relevance x trending) a partial match must reach (see `thresholds`)."""
    totals: np.ndarray
    """Per subscriber: how many papers their profile admits in all (full matches over min_score,
    partial ones over partial_min_score, papers already sent to them left out); their list
    holds the first `limit` of them."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds per phase (papers, profiles, terms, matrices, top-k), for benchmarks and logs."""

    def __len__(self) -> int:
        return len(self.profile_row)

    def matches(self, i: int) -> list[Match]:
        """Profile i's matches, best first, within its limit and without its excluded papers."""
        r = int(self.profile_row[i])
        lo, hi = int(self.row_ptr[r]), int(self.row_ptr[r + 1])
        entries = self.term_entry[self.term_ptr[r] : self.term_ptr[r + 1]].tolist()
        return _matches(
            self.papers,
            self.paper_idx[lo:hi].tolist(),
            self.score[lo:hi].tolist(),
            self.matched_mask[lo:hi].tolist(),
            self.touched_mask[lo:hi].tolist(),
            [self.entry_text[e] for e in entries],
            self.excluded[i],
            int(self.limits[i]),
            self.partial_floor,
        )

    def __iter__(self) -> Iterator[list[Match]]:
        # the arrays become Python lists once, not once per profile: 100k profiles in 1 s, not 2
        row_ptr, term_ptr = self.row_ptr.tolist(), self.term_ptr.tolist()
        term_entry, text = self.term_entry.tolist(), self.entry_text
        paper_idx, score = self.paper_idx.tolist(), self.score.tolist()
        mask, limits = self.matched_mask.tolist(), self.limits.tolist()
        touched, floor = self.touched_mask.tolist(), self.partial_floor
        for i, r in enumerate(self.profile_row.tolist()):
            lo, hi = row_ptr[r], row_ptr[r + 1]
            yield _matches(
                self.papers,
                paper_idx[lo:hi],
                score[lo:hi],
                mask[lo:hi],
                touched[lo:hi],
                [text[e] for e in term_entry[term_ptr[r] : term_ptr[r + 1]]],
                self.excluded[i],
                limits[i],
                floor,
            )


def _matches(
    papers: Sequence[Paper],
    paper_idx: list[int],
    scores: list[float],
    masks: list[int],
    touched: list[int],
    terms: list[str],
    excluded: frozenset[int],
    limit: int,
    partial_floor: float,
) -> list[Match]:
    """One profile's Match list from its slice of the results: full matches best first, then the
    partial ones that reach the stricter threshold (see `thresholds`)."""
    full: list[Match] = []
    partial: list[Match] = []
    if limit <= 0:
        return full
    shown: dict[int, tuple[str, ...]] = {}
    for p, score, mask, touch in zip(paper_idx, scores, masks, touched, strict=True):
        if p in excluded:
            continue
        if mask:
            matched = shown.get(mask)
            if matched is None:
                matched = shown[mask] = _terms_of(mask, terms)
            full.append(Match(papers[p], score, matched))
            if len(full) >= limit:
                break
        elif len(partial) < limit and touch and score >= partial_floor:
            partial.append(Match(papers[p], score, _terms_of(touch, terms), partial=True))
    return (full + partial)[:limit]


def thresholds(settings: RankingSettings) -> tuple[float, float]:
    """What a paper must reach to be sent, the one threshold rule: (relevance, partial score).

    Every paper's relevance (before trending) must reach min_score: upvotes never lift a paper
    that is not relevant. A paper that matches only part of a multi-word interest must also
    reach partial_min_score with the score the digest is ordered by (relevance x trending), so
    stray words of an interest do not fill a digest, while a partial match that readers upvote
    weighs as it does in the order.
    """
    return max(settings.min_score, 1e-30), max(
        settings.partial_min_score, settings.min_score, 1e-30
    )


def _terms_of(mask: int, terms: list[str]) -> tuple[str, ...]:
    """The terms whose bit is set, in profile order, each text once."""
    found = []
    while mask:
        low = mask & -mask
        found.append(terms[low.bit_length() - 1])
        mask ^= low
    return tuple(dict.fromkeys(found)) if len(found) > 1 else tuple(found)


class _Clock:
    """Phase timings: cheap enough to keep on in production."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


_PREPARED: list[tuple[tuple[Paper, ...], RankingSettings, Corpus | None, UnitScorer]] = []
PREPARED_KEEP = 2
"""Paper sets whose index (tokens, postings, scored terms) stays ready for the next batch."""


def prepared(
    papers: Sequence[Paper], corpus: Corpus | None, settings: RankingSettings
) -> UnitScorer:
    """The index of these papers and its scored terms, built once and reused while the same
    papers are ranked in batches (the pipeline ranks a few hundred subscribers at a time)."""
    # a short list, not a dict: hashing 2,000 papers per batch would cost more than the lookup
    for _, given_settings, given, units in reversed(_PREPARED):
        if units.index.papers is papers and given is corpus and given_settings == settings:
            return units  # the same list object again: no need to compare 2,000 papers
    frozen = tuple(papers)
    for i, (same, given_settings, given, units) in enumerate(_PREPARED):
        if given is corpus and given_settings == settings and same == frozen:
            _PREPARED.append(_PREPARED.pop(i))
            return units
    docs = _docs(papers)
    built = corpus or corpus_from_stems(docs, merged_acronyms(papers, None))
    units = UnitScorer(PaperIndex(papers, docs, built, settings), settings)
    _PREPARED.append((frozen, settings, corpus, units))
    del _PREPARED[:-PREPARED_KEEP]
    return units


def _docs(papers: Sequence[Paper]) -> list[Doc]:
    return [paper_doc(p) for p in papers]


def trending_boost(papers: Sequence[Paper], weight: float) -> np.ndarray:
    """Per-paper trending factor: 1 + weight x (log upvotes, full at 100 upvotes)."""
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
    clock = _Clock()
    n_papers = len(papers)
    units = prepared(papers, corpus, settings)
    corpus = units.corpus
    clock.lap("papers")
    if isinstance(limit, int):
        limits = np.full(len(profiles), limit, np.int64)
    else:
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
    texts = list(rows)
    compiler = Compiler(corpus, units.parsed)
    flat, owner = compiler.compile(texts)
    entry_unit = np.asarray(compiler.entry_unit, np.int64)
    entry_weight = np.asarray(compiler.entry_weight, np.float32)
    entry_exclude = np.asarray(compiler.entry_exclude, bool)
    invalid = _invalid_rows(texts, flat, owner, entry_exclude)
    _warn_invalid([text for text, bad in zip(texts, invalid.tolist(), strict=True) if bad])
    keep = (flat >= 0) & ~invalid[owner]
    term_entry = flat[keep]
    term_ptr = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=len(rows)))])
    can_be_partial = compiler.unit_can_be_partial()[entry_unit[term_entry]]
    row_partial = _rows_with(term_ptr, can_be_partial & ~entry_exclude[term_entry])
    need = _depths(profile_row, limits, excluded, row_partial)
    keep_per_row = _depths(profile_row, limits, excluded, np.zeros(len(rows), bool))

    clock.lap("profiles")
    unit, paper, score, is_full = units.score_units(list(compiler.units))
    clock.lap("terms")
    n_units = len(compiler.units)
    kept = score >= units.prune_below
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
    # which unit fully matched which paper, one bit each (answers "matched: ..." per result)
    full_bits = np.zeros((n_units, (n_papers + 7) // 8), np.uint8)
    np.bitwise_or.at(
        full_bits,
        (unit[is_full], paper[is_full] >> 3),
        (np.uint8(128) >> (paper[is_full] & 7).astype(np.uint8)),
    )

    term_unit = entry_unit[term_entry]
    term_exclude = entry_exclude[term_entry]
    term_row = np.repeat(np.arange(len(rows)), np.diff(term_ptr))
    ordinal = np.arange(len(term_entry)) - term_ptr[term_row]
    include_mask = np.bincount(
        term_row,
        np.where(term_exclude, 0, np.left_shift(np.int64(1), ordinal)).astype(np.float64),
        minlength=len(rows),
    ).astype(np.int64)
    q = sp.csr_matrix(
        (
            np.where(term_exclude, np.float32(VETO), entry_weight[term_entry]).astype(np.float32),
            np.where(term_exclude, term_unit + n_units, term_unit),
            term_ptr,
        ),
        shape=(len(rows), 2 * n_units),
    )

    boost = trending_boost(papers, settings.trending_weight)
    floor, partial_floor = thresholds(settings)
    scorer = Scorer(u, q, boost, floor, int(need.max(initial=0)), partial_floor)

    def full_of(rows_: np.ndarray) -> np.ndarray:
        return full_papers(rows_, term_ptr, term_unit, ~term_exclude, full_bits, n_papers)

    clock.lap("matrices")
    out_counts, out_papers, out_scores, out_masks, out_touched = [], [], [], [], []
    out_admitted = []

    def chunk(start: int) -> tuple[np.ndarray, ...]:
        stop = min(start + scorer.chunk_rows, len(rows))
        r, c, v, admitted = scorer.top(
            start, stop, need[start:stop], row_partial[start:stop], full_of
        )
        mask = matched_masks(r + start, c, term_ptr, term_unit, full_bits)
        # full matches first, partial ones only above their floor, then each row cut back to
        # what its subscribers can use: the extra depth never leaves the chunk
        ok = (mask != 0) | (v >= partial_floor)
        r, c, v, mask = r[ok], c[ok], v[ok], mask[ok]
        order = np.lexsort((mask == 0, r))  # stable: scores stay in order within each group
        r, c, v, mask = r[order], c[order], v[order], mask[order]
        counts = np.bincount(r, minlength=stop - start)
        rank_in_row = np.arange(len(r)) - (np.cumsum(counts) - counts)[r]
        fits = rank_in_row < keep_per_row[start:stop][r]
        r, c, v, mask = r[fits], c[fits], v[fits], mask[fits]
        # which interests a partial match touched: only results without a full match need it
        touched = np.zeros(len(mask), np.int64)
        part = np.flatnonzero(mask == 0)
        if len(part):
            rows_ = r[part] + start
            touched[part] = touched_masks(rows_, c[part], term_ptr, term_unit, u)
            touched[part] &= include_mask[rows_]
        return np.bincount(r, minlength=stop - start), c, v, mask, touched, admitted

    starts = range(0, len(rows), scorer.chunk_rows)
    if len(starts) > 1 and THREADS > 1:
        # NumPy and SciPy release the GIL in the heavy loops, so chunks use every core.
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(chunk, starts))
    else:
        results = [chunk(start) for start in starts]
    for counts, c, v, mask, touched, admitted in results:
        out_admitted.append(admitted)
        out_counts.append(counts)
        out_papers.append(c)
        out_scores.append(v)
        out_masks.append(mask)
        out_touched.append(touched)
    clock.lap("top-k")
    row_ptr = np.concatenate([[0], np.cumsum(np.concatenate([[], *out_counts]))]).astype(np.int64)
    res_papers = np.concatenate([np.empty(0, np.int32), *out_papers])
    res_scores = np.concatenate([np.empty(0, np.float32), *out_scores])
    masks = np.concatenate([np.empty(0, np.int64), *out_masks])
    touched_all = np.concatenate([np.empty(0, np.int64), *out_touched])
    row_admitted = np.concatenate([np.empty(0, np.int64), *out_admitted])
    totals = _totals(
        scorer, row_admitted, profile_row, excluded, term_ptr, term_unit, full_bits, partial_floor
    )
    return Ranking(
        papers=papers,
        profile_row=profile_row,
        row_ptr=row_ptr,
        paper_idx=res_papers,
        score=res_scores,
        matched_mask=masks,
        touched_mask=touched_all,
        term_ptr=term_ptr,
        term_entry=term_entry,
        entry_text=compiler.entry_text,
        limits=limits,
        excluded=excluded,
        partial_floor=partial_floor,
        totals=totals,
        timings=clock.laps,
    )


def _rows_with(term_ptr: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per distinct profile row: whether any of its terms is flagged."""
    rows = len(term_ptr) - 1
    found = np.zeros(rows, bool)
    found[np.repeat(np.arange(rows), np.diff(term_ptr))[flags]] = True
    return found


def _depths(
    profile_row: np.ndarray,
    limits: np.ndarray,
    excluded: Sequence[frozenset[int]],
    row_partial: np.ndarray,
) -> np.ndarray:
    """How many results each distinct profile row needs: the deepest any subscriber of it asks.

    A row with a multi-word interest asks PARTIAL_DEPTH times its limit, since its full matches
    rank above its partial ones whatever the scores (the rest need no more than their limit).
    """
    depth = np.where(row_partial[profile_row], PARTIAL_DEPTH, 1)
    wanted = np.fromiter((len(e) for e in excluded), np.int64, len(excluded)) + depth * limits
    need = np.zeros(len(row_partial), np.int64)
    np.maximum.at(need, profile_row, wanted)
    return need


def _totals(
    scorer: Scorer,
    row_admitted: np.ndarray,
    profile_row: np.ndarray,
    excluded: Sequence[frozenset[int]],
    term_ptr: np.ndarray,
    term_unit: np.ndarray,
    full_bits: np.ndarray,
    partial_floor: float,
) -> np.ndarray:
    """Per subscriber: the papers their profile admits, less those already sent to them (few:
    each is scored alone, by the rule the top-k applies)."""
    totals = row_admitted[profile_row].copy()
    owner = np.repeat(np.arange(len(excluded)), [len(e) for e in excluded])
    if not len(owner):
        return totals
    rows = profile_row[owner]
    papers = np.fromiter((p for e in excluded for p in e), np.int64, len(owner))
    scores = scorer.pair_scores(rows, papers)
    full = matched_masks(rows, papers, term_ptr, term_unit, full_bits) != 0
    counted = (scores >= scorer.min_boosted[papers]) & (full | (scores >= partial_floor))
    totals -= np.bincount(owner[counted], minlength=len(totals))
    return totals


def _invalid_rows(
    texts: list[str], flat: np.ndarray, owner: np.ndarray, entry_exclude: np.ndarray
) -> np.ndarray:
    """Which compiled profiles the parser would refuse (saving refuses them; a batch skips them)."""
    real = flat >= 0
    invalid = np.zeros(len(texts), bool)
    invalid[owner[flat == INVALID]] = True
    terms = np.bincount(owner[real], minlength=len(texts))
    positive = np.bincount(owner[real], ~entry_exclude[flat[real]], minlength=len(texts))
    invalid |= (terms > MAX_TERMS) | (positive == 0)
    invalid |= np.fromiter(map(len, texts), np.int64, len(texts)) > MAX_PROFILE_CHARS
    # a blank piece is a trailing comma or a blank line (fine) or ",," (refused when saved):
    # only the full parser tells them apart, and such profiles are few
    suspect = np.zeros(len(texts), bool)
    suspect[owner[flat == BLANK]] = True
    for r in np.flatnonzero(suspect & ~invalid).tolist():
        try:
            parse_profile(texts[r])
        except ProfileError:
            invalid[r] = True
    return invalid


def _warn_invalid(texts: list[str]) -> None:
    """Profiles are validated when saved; one that fails now (rules changed) is skipped, loudly."""
    for text in texts[:5]:
        try:
            parse_profile(text)
        except ProfileError as exc:
            log.warning("skipping an invalid profile: %s", exc)
    if len(texts) > 5:
        log.warning("skipping %d more invalid profiles", len(texts) - 5)


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
