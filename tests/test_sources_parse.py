"""Reading real feed formats into clean paper records: arXiv, its API, Hugging Face, any RSS/Atom."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import SAMPLE_FEED, FetchSettings
from digest.sources import SourceError, detect_kind, paper_key, parse_feed

FEEDS = Path(__file__).parent / "data" / "feeds"


def read(name: str, **kwargs: object):
    return parse_feed((FEEDS / name).read_bytes(), source_name="test", **kwargs)  # type: ignore[arg-type]


def by_key(parsed) -> dict:
    return {paper.key: paper for paper in parsed.papers}


def test_arxiv_listing_gives_new_papers_and_cross_lists_but_not_replacements():
    parsed = read("arxiv-cs.LG.rss")

    assert parsed.kind == "arxiv"
    assert [p.key for p in parsed.papers] == ["2411.01234", "2411.01301", "2411.00777"]
    assert parsed.skipped == 2  # 2306.05555 (replace) and 2310.01111 (replace-cross)
    assert parsed.warnings == []


def test_arxiv_listing_fields_are_clean_text_for_ranking():
    paper = by_key(read("arxiv-cs.LG.rss"))["2411.01234"]

    assert paper.title == (
        r"Federated Distillation for Heterogeneous Clients with $\mathcal{O}(\sqrt{T})$ Regret"
    )
    assert paper.abstract.startswith("Federated learning (FL) trains a shared model")
    assert "Announce Type" not in paper.abstract and "arXiv:" not in paper.abstract
    assert r"$\epsilon < 0.05$" in paper.abstract
    assert '"client drift"' in paper.abstract and "40% & more" in paper.abstract
    assert paper.authors == ("Ana López", "Wei Zhang", "Priya Raman")
    assert paper.categories == ("cs.LG", "cs.DC")
    assert paper.url == "https://arxiv.org/abs/2411.01234"
    assert paper.pdf_url == "https://arxiv.org/pdf/2411.01234"
    assert paper.published_at == datetime(2024, 11, 5, 5, 0, tzinfo=UTC)
    assert paper.sources == ("test",)
    assert paper.first_seen_at is None  # the store sets it


def test_titles_spread_over_lines_are_one_line_and_and_separates_authors():
    paper = by_key(read("arxiv-cs.LG.rss"))["2411.01301"]

    assert paper.title == "Sparse Mixture-of-Experts Routing Without Load-Balancing Losses"
    assert paper.authors == ("Jonas Berg", "Mei Tanaka")


def test_operators_choose_whether_replacements_and_cross_lists_come_in():
    everything = read("arxiv-cs.LG.rss", settings=FetchSettings(include_replacements=True))
    no_cross = read("arxiv-cs.LG.rss", settings=FetchSettings(include_cross_lists=False))

    assert {p.key for p in everything.papers} == {
        "2411.01234",
        "2411.01301",
        "2411.00777",
        "2306.05555",
        "2310.01111",
    }
    assert [p.key for p in no_cross.papers] == ["2411.01234", "2411.01301"]


def test_arxiv_atom_listing_reads_like_the_rss_one():
    parsed = read("arxiv-cs.DC.atom")

    assert parsed.kind == "arxiv"
    assert [p.key for p in parsed.papers] == ["2411.01500", "2411.01234"]
    assert by_key(parsed)["2411.01234"].categories == ("cs.LG", "cs.DC", "stat.ML")
    assert parsed.skipped == 1


def test_arxiv_api_results_are_keyed_without_version_old_and_new_style():
    parsed = read("arxiv-api.atom")
    papers = by_key(parsed)

    assert parsed.kind == "arxiv-api"
    assert list(papers) == ["2411.01234", "hep-th/9901001", "2205.09999"]
    later = papers["2411.01234"]
    assert later.title.startswith("Federated Distillation") and "\n" not in later.title
    assert later.categories[0] == "cs.LG"  # the primary category first
    assert later.published_at == datetime(2024, 11, 4, 16, 3, 11, tzinfo=UTC)
    assert later.abstract.endswith("Version 2 adds experiments on 1,000 clients.")
    assert papers["hep-th/9901001"].url == "https://arxiv.org/abs/hep-th/9901001"
    assert papers["hep-th/9901001"].pdf_url == "https://arxiv.org/pdf/hep-th/9901001"


def test_hugging_face_daily_papers_bring_upvotes_the_trending_signal():
    parsed = read("hf-daily.json")
    papers = by_key(parsed)

    assert parsed.kind == "hf-daily"
    assert papers["2411.01234"].upvotes == 57
    assert papers["2412.00042"].upvotes == 12
    assert papers["2412.00042"].authors == ("Lea Fischer", "Marco Bianchi")
    assert papers["2412.00042"].published_at == datetime(2024, 11, 29, 18, 59, 59, tzinfo=UTC)
    assert papers["2412.00042"].url == "https://arxiv.org/abs/2412.00042"
    assert parsed.warnings == ["1 items in the JSON had no paper id or title and were left out"]


def test_a_malformed_hugging_face_item_is_left_out_and_the_rest_are_kept():
    items = [
        {"paper": {"id": "2411.01234", "title": "Kept", "authors": [{"name": "Ana López"}]}},
        {"paper": None, "title": "No paper and no id of its own"},
        {"title": "No paper field at all"},
        {"paper": ["not", "an", "object"]},
        {"paper": {"id": "2411.05555", "title": "Authors not a list", "authors": 5}},
        {"paper": None, "id": "2411.06666", "title": "A flat item is read from its own fields"},
    ]
    parsed = parse_feed(json.dumps(items).encode(), source_name="test")
    papers = by_key(parsed)

    assert sorted(papers) == ["2411.01234", "2411.05555", "2411.06666"]
    assert papers["2411.01234"].authors == ("Ana López",)
    assert papers["2411.05555"].authors == ()  # used to raise TypeError and fail the source
    assert parsed.warnings == ["3 items in the JSON had no paper id or title and were left out"]


def test_half_an_emoji_cut_off_by_the_server_is_dropped_not_stored():
    # the JSON escapes a lone surrogate, which no database, mail or feed can encode
    body = (
        b'[{"paper": {"id": "2411.01234", "title": "Agents \\ud83e", "summary": "Fast \\ud83d"}}]'
    )
    [paper] = parse_feed(body, source_name="test").papers

    assert (paper.title, paper.abstract) == ("Agents", "Fast")
    paper.title.encode("utf-8")


def test_an_impossible_upvote_count_is_dropped_not_stored():
    items = [
        {"paper": {"id": "2411.01234", "title": "Viral", "upvotes": 10**12}},
        {"paper": {"id": "2411.01301", "title": "Liked", "upvotes": "57"}},
    ]
    papers = by_key(parse_feed(json.dumps(items).encode(), source_name="test"))

    assert (papers["2411.01234"].upvotes, papers["2411.01301"].upvotes) == (None, 57)


def test_a_blog_post_about_an_arxiv_paper_is_that_paper():
    papers = read("generic-rss20.xml").papers

    post = papers[0]
    assert post.key == "2411.01301"
    assert post.title == "This week: Sparse MoE routing"
    assert post.abstract == (
        "We read Sparse Mixture-of-Experts Routing — no more load-balancing losses. Slides: soon."
    )
    assert post.authors == ("Jonas Berg", "Mei Tanaka")


def test_any_rss_feed_is_keyed_by_its_entry_id_or_link():
    papers = read("generic-rss20.xml").papers

    essay, undated = papers[1], papers[2]
    assert essay.key == "https://reading-group.example.org/2024/tokenizers"
    assert essay.abstract == "A short essay, no paper link & no arXiv id."
    assert essay.authors == ("Sam Doe",)
    assert undated.published_at is None  # an unreadable date is left empty, not invented


def test_rss_1_0_and_atom_feeds_are_read():
    rdf = read("generic-rss10.rdf")
    atom = read("generic-atom.xml")

    assert rdf.kind == "rss"
    assert [p.title for p in rdf.papers] == [
        "Calibration of Deep Ensembles Under Distribution Shift",
        "A Survey of Retrieval-Augmented Generation",
    ]
    assert rdf.papers[0].authors == ("Ines Duarte", "Kofi Mensah")
    assert rdf.papers[0].published_at == datetime(2024, 10, 30, 6, 0, tzinfo=UTC)

    post, preprint = atom.papers
    assert atom.kind == "atom"
    assert post.key == "tag:lab.example.org,2024:post-17"
    assert post.title == "Robust reward models for RLHF"
    assert post.abstract == "Reward models overfit to length. We fix it with a simple penalty."
    assert post.pdf_url == "https://lab.example.org/papers/reward-models.pdf"
    assert post.categories == ("reinforcement learning", "alignment")
    assert preprint.key == "2410.20001"  # found in a related link to the PDF


def test_the_bundled_sample_feed_has_148_papers_with_upvotes():
    parsed = parse_feed(SAMPLE_FEED.read_bytes(), source_name="hf-sample", kind="atom")

    assert len(parsed.papers) == 148
    assert all(p.upvotes is not None for p in parsed.papers)
    first = parsed.papers[0]
    assert first.key == "urn:paper:p001"
    assert first.url == "https://example.org/papers/p001"
    assert first.categories == ()  # "authors:5" is a count, not a topic


def test_an_empty_weekend_listing_is_fine_and_says_nothing():
    parsed = read("arxiv-empty.rss")

    assert parsed.papers == [] and parsed.warnings == [] and parsed.kind == "arxiv"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("oai:arXiv.org:2203.01250v3", "2203.01250"),
        ("https://arxiv.org/abs/2411.01234v2", "2411.01234"),
        ("http://arxiv.org/pdf/hep-th/9901001v1", "hep-th/9901001"),
        ("arXiv:math.GT/0309136", "math.GT/0309136"),
        ("https://huggingface.co/papers/2501.12948", "2501.12948"),
        ("0704.0001", "0704.0001"),
        ("See arXiv:1501.00001v1 for details", "1501.00001"),
        ("https://example.org/papers/p001", None),
        ("release 2023.12345 of our tool", None),
        ("", None),
    ],
)
def test_paper_key_finds_arxiv_ids_only_where_arxiv_put_them(text, key):
    assert paper_key(text) == key


def test_paper_key_takes_the_first_candidate_that_has_an_id():
    assert paper_key(None, "urn:x", "https://arxiv.org/abs/2411.00777") == "2411.00777"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.xml", "the response was empty"),
        ("html-error.html", 'HTML page, not a feed ("503 Service Temporarily Unavailable")'),
        ("entity-bomb.xml", "declares XML entities"),
        ("external-entity.xml", "declares XML entities"),
        ("not-papers.json", "not a list of papers"),
        ("invalid.json", "not valid JSON"),
        ("strings.json", "holds no papers"),
        ("garbage.bin", "not a feed"),
        ("sitemap.xml", "root element is <urlset>"),
        ("arxiv-api-error.atom", "arXiv API refused the query: incorrect id format"),
        ("sjis-declared-utf8.rss", "do not match its declared character encoding"),
    ],
)
def test_unusable_bodies_fail_with_a_one_line_reason(name, reason):
    with pytest.raises(SourceError) as failure:
        read(f"broken/{name}")

    assert reason in str(failure.value)
    assert "\n" not in str(failure.value)


def test_a_cut_off_feed_keeps_its_complete_entries_and_warns():
    parsed = read("broken/truncated.rss")

    assert [p.key for p in parsed.papers] == ["2411.01234", "2411.01301"]
    assert len(parsed.warnings) == 1
    assert "malformed" in parsed.warnings[0] and "dropped 1 cut-off entry" in parsed.warnings[0]


@pytest.mark.parametrize(
    ("name", "titles", "warning"),
    [
        ("mismatched-tags.rss", ["First post bold", "Second post"], "malformed"),
        ("missing-fields.rss", ["The one good entry"], "2 entries had no title or no id/link"),
        ("utf16-declared-utf8.rss", ["Modèles de diffusion – café et théorie"], "read as utf-16"),
    ],
)
def test_damaged_feeds_keep_what_parses_with_a_warning(name, titles, warning):
    parsed = read(f"broken/{name}")

    assert [p.title for p in parsed.papers] == titles
    assert any(warning in note for note in parsed.warnings)


def test_control_characters_in_an_abstract_do_not_lose_the_feed():
    parsed = read("broken/control-chars.rss")

    assert [p.key for p in parsed.papers] == ["2411.01234", "2411.01301", "2411.00777"]
    assert by_key(parsed)["2411.01301"].abstract.startswith("We revisit token routing")


def test_detect_kind_reads_the_body_not_the_name():
    assert detect_kind((FEEDS / "arxiv-api.atom").read_bytes()) == "arxiv-api"
    assert detect_kind((FEEDS / "generic-rss10.rdf").read_bytes()) == "rss"
    assert (
        detect_kind(b"\xef\xbb\xbf<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'/>")
        == "atom"
    )


def test_a_kind_that_does_not_match_the_body_is_read_as_what_it_is_with_a_warning():
    parsed = read("hf-daily.json", kind="rss")

    assert parsed.kind == "hf-daily" and len(parsed.papers) == 2
    assert "configured as kind 'rss'" in parsed.warnings[0]


def test_windows_1252_bytes_in_a_feed_declared_utf8_are_read_as_windows_1252():
    parsed = read("broken/cp1252-declared-utf8.rss")

    assert [p.title for p in parsed.papers] == ["Modèles de diffusion – café et théorie"]
    assert "Windows-1252" in parsed.warnings[0]


BASES = [(FEEDS / name).read_bytes() for name in ("arxiv-cs.LG.rss", "generic-atom.xml")]
NOT_STORABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


@settings(max_examples=150, deadline=None)
@given(
    base=st.sampled_from(BASES),
    cuts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=4000), st.binary(max_size=6)), max_size=4
    ),
)
def test_any_mangled_feed_gives_clean_papers_or_one_line_reason(base, cuts):
    body = bytearray(base)
    for at, junk in cuts:  # overwrite a few bytes anywhere with anything
        at %= len(body)
        body[at : at + len(junk)] = junk
    try:
        parsed = parse_feed(bytes(body), source_name="fuzz")
    except SourceError as failure:
        assert "\n" not in str(failure)
        return
    for paper in parsed.papers:
        for value in (paper.key, paper.title, paper.abstract, paper.url, *paper.authors):
            value.encode("utf-8")
            assert value == value.strip() and not NOT_STORABLE.search(value)
