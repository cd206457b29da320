"""Benchmark: parse the whole-day fixtures (no network, no database), best of N runs.

Run: python bench/parse.py [--runs 5]
Reads tests/data/feeds/arxiv-day.rss (420 arXiv entries with affiliations, LaTeX, cross-lists
and replacements) and hf-day.json (50 Hugging Face papers) the way `digest fetch` parses them:
defusedxml's prolog check, feedparser, author lines, mojibake repair, caps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from digest.sources import parse_feed

FEEDS = Path(__file__).resolve().parent.parent / "tests" / "data" / "feeds"


def best_of(runs: int, body: bytes) -> tuple[float, int]:
    """The fastest of `runs` parses of one body, in seconds, and how many papers it gave."""
    best = float("inf")
    count = 0
    for _ in range(runs):
        start = time.perf_counter()
        parsed = parse_feed(body, source_name="bench")
        best = min(best, time.perf_counter() - start)
        count = len(parsed.papers)
    return best, count


def main() -> None:
    """Print one line per fixture: size, papers, best parse time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name in ("arxiv-day.rss", "hf-day.json"):
        body = (FEEDS / name).read_bytes()
        seconds, count = best_of(args.runs, body)
        print(
            f"{name:15} {len(body) / 1024:6.0f} KB  papers={count:4}  parse={seconds * 1000:6.1f} ms"
        )


if __name__ == "__main__":
    main()
