"""Benchmark the batch ranking: P papers x N profiles, seconds and peak memory, vs a per-subscriber loop.

    python bench/rank.py                       # P=2,000; N = 10k, 100k, 1M; loop on 300 profiles
    python bench/rank.py --papers 2000 --profiles 100000 --loop 0
    python bench/rank.py --profiles 20000 --batch 200   # as a worker ranks: 200 at a time

Papers are made from the sentences and titles of the real sample feed (so words have real
frequencies); profiles draw 3-10 terms from words, word pairs and phrases of real titles, with
quoted phrases, exclusions, weights and acronyms mixed in. Each N runs in a fresh process, so the
peak RSS it reports is that run's alone (interpreter, NumPy/SciPy, papers, profiles included).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import RankingSettings  # noqa: E402
from digest.models import Paper  # noqa: E402

SAMPLE = ROOT / "digest" / "data" / "hf-daily-papers-sample.atom"
ACRONYMS = ["LLM", "RL", "VLM", "GAN", "CNN", "NLP", "RLHF", "LoRA", "MoE", "RAG", "CoT", "DPO"]
STOP = {"a", "an", "and", "for", "of", "the", "to", "in", "on", "with", "via", "from", "by", "is"}


def load_sample() -> list[tuple[str, str, int]]:
    """(title, abstract, upvotes) of the sample feed."""
    import feedparser

    feed = feedparser.parse(str(SAMPLE))
    return [(e.title, e.summary, int(e.get("hf_upvotes") or 0)) for e in feed.entries]


def make_papers(n: int, seed: int = 1) -> list[Paper]:
    """n papers: a real title, and 5-9 real sentences drawn from all abstracts."""
    rng = random.Random(seed)
    sample = load_sample()
    sentences = [s for _, a, _ in sample for s in re.split(r"(?<=[.!?])\s+", a) if len(s) > 30]
    papers = []
    for i in range(n):
        title, _, upvotes = sample[i % len(sample)]
        abstract = " ".join(rng.sample(sentences, rng.randint(5, 9)))
        papers.append(
            Paper(
                key=f"bench:{i}",
                title=title,
                abstract=abstract,
                upvotes=rng.choice([0, 0, 0, 1, 2, 5, upvotes]),
                categories=(rng.choice(["cs.LG", "cs.CL", "cs.CV", "cs.AI"]),),
            )
        )
    return papers


def term_pool(seed: int = 2) -> list[str]:
    """Interests people might type: title words, adjacent word pairs and triples, acronyms.

    Single words found in more than 10% of the sample's papers ("training", "models") are left
    out: nobody subscribes to them, and they would make every profile match every paper.
    """
    sample = load_sample()
    doc_words = [set(re.findall(r"[a-z][a-z0-9-]+", (t + " " + a).lower())) for t, a, _ in sample]
    df = Counter(w for d in doc_words for w in d)
    words_seen: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    triples: Counter[str] = Counter()
    for title, _, _ in sample:
        ws = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9-]+", title)]
        words_seen.update(w for w in ws if w not in STOP and df[w] <= 0.1 * len(sample))
        pairs.update(f"{a} {b}" for a, b in itertools.pairwise(ws) if not {a, b} & STOP)
        triples.update(" ".join(ws[i : i + 3]) for i in range(len(ws) - 2))
    return [*words_seen, *pairs, *triples, *ACRONYMS]


def make_profiles(n: int, seed: int = 3) -> list[str]:
    """n profiles of 3-10 terms; a few share their text, as real subscribers do."""
    rng = random.Random(seed)
    pool = term_pool()
    weights = [1.0 / (1 + i) ** 0.6 for i in range(len(pool))]  # a few interests are popular
    rng.shuffle(pool)
    out = []
    for _ in range(n):
        terms = rng.choices(pool, weights, k=rng.randint(3, 10))
        for j, t in enumerate(terms):
            roll = rng.random()
            if roll < 0.12 and " " in t:
                terms[j] = f'"{t}"'
            elif roll < 0.20:
                terms[j] = f"-{t}"
            elif roll < 0.25:
                terms[j] = f"{t}^2"
        if all(t.startswith("-") for t in terms):
            terms[0] = terms[0][1:]
        out.append(", ".join(terms))
    return out


def naive_rank(papers: list[Paper], profiles: list[str], settings: RankingSettings) -> int:
    """The straightforward way: for each subscriber, parse, then score every paper in Python.

    Plain BM25F over stems (no phrases, proximity or acronyms), so it does less than the engine.
    """
    import math

    from digest.ranking.profile import parse_profile
    from digest.ranking.text import stems

    k1, b, tw = settings.k1, settings.b, settings.title_weight
    docs = [(Counter(stems(p.title)), Counter(stems(p.abstract))) for p in papers]
    n = len(docs)
    df: Counter[str] = Counter()
    for t, a in docs:
        df.update(set(t) | set(a))
    avg_t = sum(sum(t.values()) for t, _ in docs) / n
    avg_a = sum(sum(a.values()) for _, a in docs) / n
    norms = [
        (1 - b + b * sum(t.values()) / avg_t, 1 - b + b * sum(a.values()) / avg_a) for t, a in docs
    ]
    idf = {s: math.log(1 + (n - c + 0.5) / (c + 0.5)) for s, c in df.items()}
    found = 0
    for text in profiles:
        query = [
            (stems(" ".join(term.words)), term.weight, term.exclude)
            for term in parse_profile(text).terms
        ]
        scored = []
        for (t, a), (nt, na) in zip(docs, norms, strict=True):
            total = 0.0
            vetoed = False
            for term_stems, weight, exclude in query:
                s = 0.0
                for stem in term_stems:
                    tf = tw * t.get(stem, 0) / nt + a.get(stem, 0) / na
                    if tf:
                        s += idf[stem] * tf * (k1 + 1) / (tf + k1)
                if exclude and s > 0:
                    vetoed = True
                    break
                total += s * weight
            if not vetoed and total >= settings.min_score:
                scored.append(total)
        scored.sort(reverse=True)
        found += len(scored[:10])
    return found


def run_batches(n_papers: int, n_profiles: int, batch: int) -> dict[str, float]:
    """Rank the profiles `batch` at a time against the same papers, Match lists included, as a
    sending worker does with each claimed batch (the paper index is built once and kept)."""
    from digest.ranking import rank

    papers = make_papers(n_papers)
    profiles = make_profiles(n_profiles)
    settings = RankingSettings()
    start = time.perf_counter()
    for i in range(0, len(profiles), batch):
        rank(papers, profiles[i : i + batch], settings=settings, limit=10)
    seconds = time.perf_counter() - start
    return {"papers": n_papers, "profiles": n_profiles, "batch": batch, "seconds": seconds}


def run_one(n_papers: int, n_profiles: int, loop: int) -> dict[str, float]:
    """One measurement, in this process."""
    from digest.ranking import score_batch

    papers = make_papers(n_papers)
    profiles = make_profiles(n_profiles)
    settings = RankingSettings()
    start = time.perf_counter()
    ranking = score_batch(papers, profiles, settings=settings, limit=10)
    arrays_s = time.perf_counter() - start
    result: dict[str, float] = {
        "papers": n_papers,
        "profiles": n_profiles,
        "distinct": len(set(profiles)),
        "seconds": arrays_s,
        "results": len(ranking.paper_idx),
        "profiles_with_matches": int((ranking.row_ptr[1:] > ranking.row_ptr[:-1]).sum()),
        "phases": {k: round(v, 2) for k, v in ranking.timings.items()},
    }
    if n_profiles <= 100_000:  # Match objects for everyone: what rank() returns
        start = time.perf_counter()
        lists = list(ranking)
        result["match_lists_seconds"] = time.perf_counter() - start
        del lists
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if loop:
        sample = profiles[:loop]
        start = time.perf_counter()
        naive_rank(papers, sample, settings)
        per_1000 = (time.perf_counter() - start) / len(sample) * 1000
        result["loop_seconds_per_1000"] = per_1000
        result["loop_extrapolated_seconds"] = per_1000 * n_profiles / 1000
        result["speedup"] = result["loop_extrapolated_seconds"] / arrays_s
    return result


def main() -> None:
    """Run each size in a fresh process and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--profiles", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--loop", type=int, default=300, help="profiles timed in the naive loop")
    parser.add_argument("--batch", type=int, default=0, help="rank in batches of this size")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.papers, args.profiles[0], args.loop)))
        return
    if args.batch:
        for n in args.profiles:
            r = run_batches(args.papers, n, args.batch)
            print(
                f"P={r['papers']:,} N={r['profiles']:,} in batches of {r['batch']:,}: "
                f"{r['seconds']:.2f} s with Match lists "
                f"({r['seconds'] / r['profiles'] * 100_000:.1f} s per 100k profiles)"
            )
        return
    for i, n in enumerate(args.profiles):
        cmd = [sys.executable, __file__, "--child", "--papers", str(args.papers)]
        cmd += ["--profiles", str(n), "--loop", str(args.loop if i == 0 else 0)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        line = (
            f"P={r['papers']:,} N={r['profiles']:,} (distinct {r['distinct']:,}): "
            f"{r['seconds']:.2f} s to top-10 arrays, peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
        if "match_lists_seconds" in r:
            line += f"; + {r['match_lists_seconds']:.2f} s to build Match lists"
        line += f"; {r['profiles_with_matches']:,} profiles with matches"
        print(line)
        print(f"  phases (s): {r['phases']}")
        if "loop_seconds_per_1000" in r:
            print(
                f"  per-subscriber Python loop: {r['loop_seconds_per_1000']:.1f} s per 1,000 "
                f"profiles -> {r['loop_extrapolated_seconds']:.0f} s for N={r['profiles']:,} "
                f"({r['speedup']:.0f}x slower than the batch)"
            )


if __name__ == "__main__":
    main()
