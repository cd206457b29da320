"""Ranking quality on the judged set: nDCG@10 of the engine against plain BM25, and what it sends.

    python bench/rank_quality.py            # summary table
    python bench/rank_quality.py --details  # each profile's top 10 with grades

Next to nDCG@10, for the engine as configured: nDCG@5 and nDCG@20 (the head of a digest, and a
reader who asks for 20 papers), what a digest of the default size would send, the precision of
it (share of sent papers graded relevant, grade >= 1), and how many relevant papers it missed
(relevant papers left out while a slot went to an irrelevant paper or stayed empty:
min(relevant, size) - relevant sent).

The judged set (tests/data/ranking/judged.json) grades papers of the sample feed for a handful of
profiles. Plain BM25 is the textbook baseline: lowercase words without stemming, title and abstract
as one field, every quoted phrase taken as loose words, no acronyms, no trending, no threshold.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import DigestSettings, RankingSettings  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.ranking import rank  # noqa: E402
from tests.ranking_fixtures import load_judged, load_sample_papers  # noqa: E402

K = 10
DEPTHS = (5, 20)
"""Other cut-offs reported for the engine: a change that helps @10 should not hurt these."""
SIZE = DigestSettings().max_papers


def ndcg(ranked: list[str], grades: dict[str, int], k: int = K) -> float:
    """Normalized discounted cumulative gain at k, gains 2^grade - 1."""
    dcg = sum((2 ** grades.get(key, 0) - 1) / math.log2(i + 2) for i, key in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def sent_quality(sent: list[str], grades: dict[str, int], size: int = SIZE) -> tuple[float, int]:
    """Precision of what is sent (1.0 when nothing is) and the relevant papers missed."""
    relevant = {key for key, grade in grades.items() if grade >= 1}
    hits = sum(1 for key in sent[:size] if key in relevant)
    precision = hits / len(sent[:size]) if sent else 1.0
    return precision, min(len(relevant), size) - hits


def plain_bm25(papers: list[Paper], profile: str, k1: float = 1.2, b: float = 0.75) -> list[str]:
    """Okapi BM25 over unstemmed lowercase words of title + abstract; the profile as a bag of words."""
    tokenize = re.compile(r"[a-z0-9]+").findall
    docs = [Counter(tokenize(f"{p.title} {p.abstract}".lower())) for p in papers]
    lengths = [sum(d.values()) for d in docs]
    avg = sum(lengths) / len(docs)
    df = Counter(w for d in docs for w in d)
    n = len(docs)
    query = [w for w in tokenize(profile.lower())]
    scored = []
    for paper, doc, length in zip(papers, docs, lengths, strict=True):
        score = 0.0
        for w in query:
            tf = doc.get(w, 0)
            if tf:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))
        if score > 0:
            scored.append((-score, paper.key))
    return [key for _, key in sorted(scored)]


def main() -> None:
    """Print nDCG@10 per profile and on average for the engine, its ablations and plain BM25,
    the engine's nDCG@5 and @20, and what a default-size digest would send."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="show each top 10 with grades")
    args = parser.parse_args()
    papers = load_sample_papers()
    judged = load_judged()
    systems = {
        "engine": lambda prof: _engine(papers, prof, RankingSettings()),
        "engine, no trending": lambda prof: _engine(
            papers, prof, RankingSettings(trending_weight=0)
        ),
        "engine, no threshold": lambda prof: _engine(papers, prof, RankingSettings(min_score=0)),
        "plain BM25": lambda prof: plain_bm25(papers, prof),
    }
    results: dict[str, list[float]] = {name: [] for name in systems}
    depths: dict[int, list[float]] = {k: [] for k in DEPTHS}
    sent_stats: list[tuple[int, float, int]] = []
    print(
        f"{'profile':<36}"
        + "".join(f"{name:>22}" for name in systems)
        + "".join(f"{f'engine @{k}':>11}" for k in DEPTHS)
        + f"{'sent':>6}{f'P@sent({SIZE})':>14}{'missed':>8}"
    )
    for item in judged:
        grades = item["relevance"]
        row = f"{item['profile'][:35]:<36}"
        details = []
        sent = [m.paper.key for m in rank(papers, [item["profile"]], limit=SIZE)[0]]
        precision, missed = sent_quality(sent, grades)
        sent_stats.append((len(sent), precision, missed))
        for name, system in systems.items():
            ranked = system(item["profile"])
            value = ndcg(ranked, grades)
            results[name].append(value)
            row += f"{value:>22.3f}"
            if args.details and name in ("engine", "plain BM25"):
                shown = ", ".join(f"{k}:{grades.get(k, 0)}" for k in ranked[:K])
                details.append(f"    {name}: {shown}")
        for k in DEPTHS:
            value = ndcg(_engine(papers, item["profile"], RankingSettings(), k), grades, k)
            depths[k].append(value)
            row += f"{value:>11.3f}"
        row += f"{len(sent):>6}{precision:>14.3f}{missed:>8}"
        if args.details:
            shown = ", ".join(f"{k}:{grades.get(k, 0)}" for k in sent)
            details.append(f"    sent: {shown}")
        print(row, *details, sep="\n")
    n = len(sent_stats)
    print(
        f"{'mean nDCG | sent precision, missed':<36}"
        + "".join(f"{sum(v) / len(v):>22.3f}" for v in results.values())
        + "".join(f"{sum(v) / len(v):>11.3f}" for v in depths.values())
        + f"{sum(s for s, _, _ in sent_stats) / n:>6.1f}"
        + f"{sum(p for _, p, _ in sent_stats) / n:>14.3f}"
        + f"{sum(m for _, _, m in sent_stats):>8}"
    )


def _engine(papers: list[Paper], profile: str, settings: RankingSettings, k: int = K) -> list[str]:
    return [m.paper.key for m in rank(papers, [profile], settings=settings, limit=k)[0]]


if __name__ == "__main__":
    main()
