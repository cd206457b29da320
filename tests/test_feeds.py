"""The Atom and RSS documents a reader's feed reader gets: valid for feedparser and for an
independent node parser, stable ids, dates in each format's own syntax, every string escaped."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import SAMPLE_FEED
from digest.models import Paper
from digest.render.feeds import FeedEntry, atom_feed, entry_id, rss_feed
from digest.sources import parse_feed

NODE_DIR = Path(__file__).parent / "node"
SITE = "https://papers.example.org/"
NOW = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)

NASTY_TITLE = 'Attention <b>is</b> "all" you & I need\x0b \u2014 <script>alert(1)</script> ]]>'


def sample_entries() -> list[FeedEntry]:
    """The 148 papers of the bundled sample, as if recommended over the last days."""
    papers = parse_feed(SAMPLE_FEED.read_bytes(), source_name="hf-sample", kind="atom").papers
    return [
        FeedEntry(
            paper,
            (NOW - timedelta(days=i % 5)).date(),
            NOW - timedelta(days=i % 5),
            ("diffusion models",) if i % 2 else (),
        )
        for i, paper in enumerate(papers)
    ]


def nasty_entry() -> FeedEntry:
    paper = Paper(
        key="arxiv:2603.01234",
        title=NASTY_TITLE,
        abstract="We show x < y && y > z; see <a href='javascript:alert(1)'>here</a>.",
        authors=("Ada <Lovelace>", "O'Brien & Sons"),
        url="https://arxiv.org/abs/2603.01234?a=1&b=2",
        pdf_url="https://arxiv.org/pdf/2603.01234",
        categories=("cs.LG", "stat.ML"),
        published_at=datetime(2026, 3, 1, 18, 0, tzinfo=UTC),
    )
    return FeedEntry(paper, date(2026, 3, 2), NOW, ("attention", '"all" you'))


def build_atom(entries: list[FeedEntry]) -> bytes:
    return atom_feed(
        entries,
        feed_id="urn:uuid:8d5f6c36-3f0e-5c0d-9a1f-0b1c2d3e4f50",
        title="Paper Digest: your papers",
        self_url="https://papers.example.org/feeds/abc.atom",
        site_url=SITE,
        updated=NOW,
    )


def build_rss(entries: list[FeedEntry]) -> bytes:
    return rss_feed(
        entries,
        title="Paper Digest: your papers",
        self_url="https://papers.example.org/feeds/abc.rss",
        site_url=SITE,
        description="Papers recommended to you & nobody else.",
    )


def test_an_atom_reader_gets_every_paper_with_its_title_authors_and_links() -> None:
    entries = sample_entries()
    feed = feedparser.parse(build_atom(entries))
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Paper Digest: your papers"
    assert len(feed.entries) == 148
    for entry, item in zip(feed.entries, entries, strict=True):
        assert entry.title == item.paper.title
        assert entry.link == item.paper.url
        assert entry.id == entry_id(item.paper.key, site_url=SITE)
        assert [a.name for a in entry.get("authors", [])] == list(item.paper.authors)


def test_an_rss_reader_gets_every_paper_too() -> None:
    entries = sample_entries()
    feed = feedparser.parse(build_rss(entries))
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert len(feed.entries) == 148
    assert [e.title for e in feed.entries] == [i.paper.title for i in entries]
    assert all(e.guidislink is False for e in feed.entries)


def test_ids_are_stable_across_runs_and_tag_uris() -> None:
    first, again = build_atom(sample_entries()), build_atom(sample_entries())
    assert first == again
    ids = [e.id for e in feedparser.parse(first).entries]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("tag:papers.example.org,2024:paper/") for i in ids)
    # An id depends on the paper alone, not on the day it was recommended or the feed's URL.
    entry = nasty_entry()
    moved = FeedEntry(entry.paper, date(2026, 4, 1), NOW + timedelta(days=30), ())
    assert (
        feedparser.parse(build_rss([moved])).entries[0].id
        == feedparser.parse(build_atom([entry])).entries[0].id
    )


def test_dates_use_rfc_3339_in_atom_and_rfc_822_in_rss() -> None:
    atom = ET.fromstring(build_atom([nasty_entry()]))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert atom.findtext("a:updated", namespaces=ns) == "2026-03-02T07:30:00Z"
    assert atom.findtext("a:entry/a:updated", namespaces=ns) == "2026-03-02T07:30:00Z"
    assert atom.findtext("a:entry/a:published", namespaces=ns) == "2026-03-01T18:00:00Z"

    rss = ET.fromstring(build_rss([nasty_entry()]))
    pub = rss.findtext("channel/item/pubDate")
    assert pub == "Mon, 02 Mar 2026 07:30:00 GMT"
    assert parsedate_to_datetime(pub) == NOW
    assert rss.findtext("channel/lastBuildDate") == pub


def test_hostile_text_is_escaped_and_comes_back_exactly() -> None:
    entry = nasty_entry()
    for document in (build_atom([entry]), build_rss([entry])):
        assert b"<script>" not in document
        assert b"\x0b" not in document, "characters XML forbids are dropped"
        parsed = feedparser.parse(document)
        assert not parsed.bozo, parsed.get("bozo_exception")
        [item] = parsed.entries
        # feedparser sanitizes HTML in titles, so compare the raw element text instead.
        assert item.link == "https://arxiv.org/abs/2603.01234?a=1&b=2"
    atom = ET.fromstring(build_atom([entry]))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert atom.findtext("a:entry/a:title", namespaces=ns) == NASTY_TITLE.replace("\x0b", "")
    content = atom.findtext("a:entry/a:content", namespaces=ns) or ""
    # The HTML body escapes the paper's own text once more: no live tags from a title or abstract.
    assert "<a href='javascript" not in content and "&lt;a href=" in content
    assert "Ada &lt;Lovelace&gt;" in content


def test_a_link_holding_a_character_xml_forbids_still_gives_a_valid_feed() -> None:
    paper = Paper(
        key="k1",
        title="T",
        url="https://example.org/a\uffffb\x01",
        pdf_url="https://example.org/p\ufffe",
    )
    for document in (
        build_atom([FeedEntry(paper, date(2026, 3, 2), NOW)]),
        build_rss([FeedEntry(paper, date(2026, 3, 2), NOW)]),
    ):
        parsed = feedparser.parse(document)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.entries[0].link == "https://example.org/ab"


def test_an_empty_feed_is_still_valid() -> None:
    for document in (build_atom([]), build_rss([])):
        parsed = feedparser.parse(document)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.entries == []


def node_check(tmp_path: Path, documents: dict[str, bytes]) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the second feed parser cannot run")
    if not (NODE_DIR / "node_modules" / "@rowanmanning" / "feed-parser").is_dir():
        if __import__("os").environ.get("CI"):
            pytest.fail("run `npm ci --prefix tests/node` before the tests")
        pytest.skip("the node feed parser is not installed: npm ci --prefix tests/node")
    paths = []
    for name, body in documents.items():
        path = tmp_path / name
        path.write_bytes(body)
        paths.append(str(path))
    result = subprocess.run(
        [node, str(NODE_DIR / "check-feed.mjs"), *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_independent_node_parser_reads_the_same_feeds(tmp_path: Path) -> None:
    entries = [nasty_entry(), *sample_entries()]
    atom, rss = node_check(
        tmp_path, {"feed.atom": build_atom(entries), "feed.rss": build_rss(entries)}
    )
    for summary in (atom, rss):
        assert summary["title"] == "Paper Digest: your papers"
        assert len(summary["items"]) == 149
        assert [i["title"] for i in summary["items"]] == [
            e.paper.title.replace("\x0b", "") for e in entries
        ]
        assert [i["id"] for i in summary["items"]] == [
            entry_id(e.paper.key, site_url=SITE) for e in entries
        ]
        assert summary["items"][0]["url"] == "https://arxiv.org/abs/2603.01234?a=1&b=2"
    assert atom["self"] == "https://papers.example.org/feeds/abc.atom"
    assert atom["items"][0]["updated"] == "2026-03-02T07:30:00.000Z"
    assert atom["items"][0]["published"] == "2026-03-01T18:00:00.000Z"
    assert rss["items"][0]["published"] == "2026-03-02T07:30:00.000Z"
    assert atom["items"][0]["authors"] == ["Ada <Lovelace>", "O'Brien & Sons"]


@settings(max_examples=120, deadline=None)
@given(
    title=st.text(alphabet=st.characters(codec=None), max_size=80),
    abstract=st.text(alphabet=st.characters(codec=None), max_size=200),
    author=st.text(alphabet=st.characters(codec=None), max_size=40),
    category=st.text(alphabet=st.characters(codec=None), max_size=20),
    url_tail=st.text(alphabet=st.characters(codec=None), max_size=20),
)
def test_any_text_a_feed_brought_gives_feeds_that_parse(
    title, abstract, author, category, url_tail
):
    paper = Paper(
        key="k" + url_tail,
        title=title,
        abstract=abstract,
        authors=(author,),
        url="https://example.org/" + url_tail,
        categories=(category,),
    )
    entry = FeedEntry(paper, date(2026, 3, 2), NOW, (author,))

    for document in (build_atom([entry]), build_rss([entry])):
        ET.fromstring(document)  # well-formed XML whatever the paper held
        assert len(feedparser.parse(document).entries) == 1
