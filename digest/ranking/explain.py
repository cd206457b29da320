"""Why a paper is (or is not) recommended to a profile: each term's share of the score, trending,
the threshold and exclusions, computed the way the batch engine computes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from digest.config import RankingSettings
from digest.models import Paper
from digest.ranking.corpus import Corpus
from digest.ranking.engine import DEFAULT_SETTINGS, prepared, rank, thresholds, trending_boost
from digest.ranking.profile import parse_profile
from digest.ranking.units import unit_key


@dataclass(frozen=True, slots=True)
class TermScore:
    """One profile term against one paper."""

    term: str
    """As typed, minus sign included for an exclusion (`-medical`)."""
    weight: float
    score: float
    """What the term adds to the relevance: weight x BM25F (0 when absent or too weak to count)."""
    matched: bool
    """Matched as written: every word of the term close together, the exact phrase, the author,
    the category."""
    exclude: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """A paper's score for one profile, taken apart."""

    paper: Paper
    relevance: float
    """Sum of the term scores; must reach min_score for the paper to be recommended."""
    trending: float
    """Factor from upvotes applied to a relevant paper (1.0 without upvotes or trending off)."""
    score: float
    """relevance x trending: what orders the digest."""
    recommended: bool
    reason: str
    """One line a person can act on: what made or kept the paper out of the digest."""
    terms: tuple[TermScore, ...]


def explain(
    papers: Sequence[Paper],
    profile: str,
    *,
    settings: RankingSettings = DEFAULT_SETTINGS,
    corpus: Corpus | None = None,
    keys: Sequence[str] | None = None,
    limit: int = 10,
) -> list[Explanation]:
    """Explain the profile's top `limit` papers, or the papers with the given keys (in that order).

    Raises ProfileError for a bad profile and KeyError naming a key that is not among the papers.
    """
    query = parse_profile(profile)
    units = prepared(papers, corpus, settings)
    position = {p.key: i for i, p in enumerate(papers)}
    if keys is None:
        [top] = rank(papers, [profile], settings=settings, corpus=corpus, limit=limit)
        wanted = [position[m.paper.key] for m in top]
    else:
        missing = [k for k in keys if k not in position]
        if missing:
            raise KeyError(f"no paper {missing[0]!r} among the {len(papers)} candidates")
        wanted = [position[k] for k in keys]
    boost = trending_boost(papers, settings.trending_weight)
    floor = units.prune_below
    per_term: list[dict[int, tuple[float, bool]]] = []
    for term in query.terms:
        _, touched, scores, full = units.score_units([unit_key(term, units.corpus)])
        per_term.append(
            {
                int(p): (float(s), bool(f))
                for p, s, f in zip(touched.tolist(), scores.tolist(), full.tolist(), strict=True)
            }
        )
    out = []
    for i in wanted:
        parts = []
        for term, hits in zip(query.terms, per_term, strict=True):
            raw, matched = hits.get(i, (0.0, False))
            counted = raw if raw >= floor and not term.exclude else 0.0
            parts.append(
                TermScore(
                    term=f"-{term.text}" if term.exclude else term.text,
                    weight=term.weight,
                    score=counted * term.weight,
                    matched=matched,
                    exclude=term.exclude,
                )
            )
        out.append(_verdict(papers[i], tuple(parts), float(boost[i]), settings))
    return out


def _verdict(
    paper: Paper, parts: tuple[TermScore, ...], boost: float, settings: RankingSettings
) -> Explanation:
    relevance = sum(p.score for p in parts)
    vetoes = [p.term for p in parts if p.exclude and p.matched]
    partial = not any(p.matched and not p.exclude for p in parts)
    floor, partial_floor = thresholds(settings)
    kind = "a partial match (part of a multi-word interest), " if partial else ""
    score = relevance * boost
    if vetoes:
        reason = f"excluded by {', '.join(vetoes)}"
    elif relevance <= 0:
        reason = "no term of the profile is in it"
    elif relevance < floor:
        reason = f"{kind}relevance {relevance:.2f} is under min_score {floor:g}"
    elif partial and score < partial_floor:
        reason = f"{kind}score {score:.2f} is under partial_min_score {partial_floor:g}"
    elif partial:
        reason = f"{kind}score {score:.2f} reaches partial_min_score {partial_floor:g}"
    else:
        reason = f"relevance {relevance:.2f} reaches min_score {floor:g}"
    recommended = not vetoes and relevance >= floor and (not partial or score >= partial_floor)
    return Explanation(
        paper=paper,
        relevance=relevance,
        trending=boost,
        score=score,
        recommended=recommended,
        reason=reason,
        terms=parts,
    )
