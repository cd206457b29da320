"""LaTeX in a title or abstract reaches readers as Unicode (email, feeds), while ranking keeps
reading the words as arXiv wrote them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from html import unescape
from pathlib import Path

import feedparser

from digest import ranking
from digest.models import Match
from digest.render.feeds import FeedEntry, atom_feed, rss_feed
from digest.sources import parse_feed
from tests.email_fixtures import make_digest

pytest_plugins = ["tests.email_fixtures"]

FEEDS = Path(__file__).parent / "data" / "feeds"
NOW = datetime(2024, 11, 5, 7, 0, tzinfo=UTC)
RAW = r"$\mathcal{O}(\sqrt{T})$"
SHOWN = "𝒪(√(T))"


def arxiv_papers():
    return parse_feed((FEEDS / "arxiv-cs.LG.rss").read_bytes(), source_name="arxiv").papers


def test_an_email_shows_latex_as_unicode(renderer):
    papers = arxiv_papers()
    latex = next(p for p in papers if RAW in p.title)

    rendered = renderer.digest(make_digest([latex, *papers], count=2))

    assert f"Heterogeneous Clients with {SHOWN} Regret" in unescape(rendered.html)
    assert f"Heterogeneous Clients with {SHOWN} Regret" in rendered.text
    assert "\\mathcal" not in rendered.html and "\\mathcal" not in rendered.text
    assert SHOWN in rendered.subject
    assert "ϵ < 0.05" in unescape(rendered.html)  # the snippet too


def test_a_feed_reader_gets_latex_as_unicode():
    latex = next(p for p in arxiv_papers() if RAW in p.title)
    entry = FeedEntry(latex, date(2024, 11, 5), NOW, ("regret",))

    atom = feedparser.parse(
        atom_feed(
            [entry],
            feed_id="urn:x",
            title="t",
            self_url="https://d.example.org/f.atom",
            site_url="https://d.example.org/",
            updated=NOW,
        )
    )
    rss = feedparser.parse(
        rss_feed(
            [entry],
            title="t",
            self_url="https://d.example.org/f.rss",
            site_url="https://d.example.org/",
            description="d",
        )
    )

    for parsed in (atom, rss):
        (item,) = parsed.entries
        assert item.title.endswith(f"with {SHOWN} Regret")
        assert "ϵ < 0.05" in unescape(item.summary)


def test_ranking_still_reads_the_words_arxiv_wrote():
    papers = arxiv_papers()

    (matches,) = ranking.rank(papers, ["regret"], limit=3)

    assert [m.paper.key for m in matches][:1] == ["2411.01234"]
    assert isinstance(matches[0], Match) and RAW in matches[0].paper.title  # stored as written
