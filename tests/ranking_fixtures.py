"""Fixtures for the ranking tests: the real sample feed as Paper records (pytest plugin)."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import pytest

from digest.models import Paper

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FEED = ROOT / "digest" / "data" / "hf-daily-papers-sample.atom"
JUDGED = Path(__file__).resolve().parent / "data" / "ranking" / "judged.json"


def load_sample_papers(path: Path = SAMPLE_FEED) -> list[Paper]:
    """The 148 papers of the sample Hugging Face Daily Papers feed, keyed p001..p148."""
    feed = feedparser.parse(str(path))
    return [
        Paper(
            key=entry.id.rsplit(":", 1)[-1],
            title=entry.title,
            abstract=entry.summary,
            url=entry.link,
            upvotes=int(entry.get("hf_upvotes") or 0),
        )
        for entry in feed.entries
    ]


def load_judged(path: Path = JUDGED) -> list[dict]:
    """The judged profiles: text and graded relevance (paper key -> 0..3)."""
    return json.loads(path.read_text(encoding="utf-8"))["profiles"]


@pytest.fixture(scope="session")
def sample_papers() -> list[Paper]:
    """The sample feed's papers."""
    return load_sample_papers()


@pytest.fixture(scope="session")
def paper(sample_papers: list[Paper]):
    """Look a sample paper up by key ("p001")."""
    by_key = {p.key: p for p in sample_papers}
    return by_key.__getitem__
