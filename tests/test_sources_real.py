"""Real feeds, read right: whole days of arXiv and Hugging Face, bioRxiv's author style, arXiv's
error feeds, plain text that looks like tags, wrong encodings and hostile sizes, fetched from a
real HTTP server on 127.0.0.1 and stored in a real database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest import store
from digest.config import FetchSettings, SourceSettings
from digest.sources import FetchResult, FetchState, fetch_source
from digest.store import open_engine

pytest.register_assert_rewrite("tests.sources_fixtures")
from tests.sources_fixtures import Reply  # noqa: E402 - after the rewrite registration

pytest_plugins = ["tests.sources_fixtures"]

SETTINGS = FetchSettings(contact="ops@example.org", timeout=2.0, retries=0)
NOW = datetime(2024, 11, 5, 6, 0, tzinfo=UTC)
RSS = "application/rss+xml"


def fetch(url: str, *, name: str = "feed", settings: FetchSettings = SETTINGS) -> FetchResult:
    source = SourceSettings(name=name, url=url, kind="auto")
    return fetch_source(source, FetchState(), settings, backoff=0.01)


@pytest.fixture
def stored(database_url: str):
    """Fetch a URL and store what it brought; returns the stored papers by key."""
    engine = open_engine(database_url)  # migrated as `digest init` leaves it

    def fetch_and_store(url: str, **kwargs: object) -> dict:
        result = fetch(url, **kwargs)  # type: ignore[arg-type]
        assert result.ok, result.error
        store.Store(engine).papers.upsert(result.papers, now=NOW)
        return {paper.key: paper for paper in store.Store(engine).papers.newest()}

    yield fetch_and_store
    engine.dispose()


def test_a_whole_arxiv_day_keeps_every_author_whole_and_in_order(feed_server, stored):
    url = feed_server.feed("/rss/cs.LG", "arxiv-day.rss", content_type=RSS)

    papers = stored(url, name="arxiv-cs.LG")

    # 420 entries: 300 new and 60 cross-lists come in; 60 replacements are not new papers
    assert len(papers) == 360
    affiliated = papers["2411.03003"]
    assert affiliated.authors == (
        "Tianliang Yan",
        "Ruth Okafor",
        "Hugo Lambert",  # "(Andrew and Peggy Cherng Department ...)" is an affiliation
        "Lei Zhang",
        "Lei Zhang",  # two people share the name: both stay
        "Mariam Haddad",
        "Jon Ek",
        "Sara Lind",
    )
    assert affiliated.affiliations[:3] == (
        "University of Birmingham, School of Physics and Astronomy, Birmingham, United Kingdom",
        "University of Birmingham, School of Physics and Astronomy, Birmingham, United Kingdom",
        "Andrew and Peggy Cherng Department of Medical Engineering, California Institute of "
        "Technology, Pasadena, USA",
    )
    assert affiliated.affiliations[3:] == (
        "Tsinghua University, Beijing, China",
        "Zhejiang University, Hangzhou, China",
        "",  # Mariam Haddad: none given
        "KTH Royal Institute of Technology, Stockholm, Sweden",
        "",
    )
    assert papers["2411.03000"].affiliations == ()  # no affiliation named: none stored
    assert not any(
        "(" in name
        or "University" in name
        or "Department" in name
        or name.lower().startswith("and ")
        for paper in papers.values()
        for name in paper.authors
    )
    tex = papers["2411.03005"]
    assert tex.authors == ("Bernt øksendal", "Łukasz Nowak", "Karl Gaß")
    assert tex.affiliations == ("Université Paris Cité", "", "")
    twice = papers["2411.03007"]
    assert twice.authors[0] == twice.authors[-1] and len(twice.authors) >= 2


def test_an_abstract_quoting_tags_keeps_them(feed_server, stored):
    url = feed_server.feed("/rss/cs.LG", "arxiv-day.rss", content_type=RSS)

    paper = stored(url)["2411.03001"]

    assert paper.abstract == (
        "Reasoning models emit <think> before answering; we ask when <think> helps & when it hurts."
    )


def test_replacements_and_cross_lists_come_in_when_the_operator_asks(feed_server):
    url = feed_server.feed("/rss/cs.LG", "arxiv-day.rss", content_type=RSS)

    result = fetch(url, settings=FetchSettings(include_replacements=True, retries=0))

    assert result.ok and result.skipped == 0
    assert len(result.papers) == 420


def test_a_mistyped_arxiv_category_is_a_failed_source_with_arxivs_reason(feed_server):
    url = feed_server.feed("/rss/astroph", "broken/arxiv-listing-error.rss", content_type=RSS)

    result = fetch(url, name="arxiv-astroph")

    assert result.status == "failed" and result.papers == []
    assert result.error is not None
    assert "Bad archive 'astroph'. Valid archive names are: astro-ph" in result.error


def test_the_atom_listing_of_a_mistyped_category_fails_the_same_way(feed_server):
    url = feed_server.feed(
        "/atom/cs.LGG", "broken/arxiv-listing-error.atom", content_type="application/atom+xml"
    )

    result = fetch(url, name="arxiv-cs.LGG")

    assert result.status == "failed"
    assert result.error is not None and "Bad category 'cs.LGG'" in result.error


def test_a_hugging_face_summary_is_plain_text(feed_server, stored):
    url = feed_server.feed("/api/daily_papers", "hf-day.json", content_type="application/json")

    papers = stored(url, name="hf-daily")

    assert len(papers) == 50
    assert papers["2411.03000"].abstract == (
        "The model emits <swi> to enter latent mode and </swi> to leave it; 3 < 4 & 5 > 2."
    )
    assert all(paper.upvotes is not None for paper in papers.values())


def test_atom_text_fields_keep_their_characters_and_html_fields_lose_their_tags(
    feed_server, stored
):
    url = feed_server.feed("/atom", "atom-text-and-html.xml", content_type="application/atom+xml")

    papers = stored(url)

    text_entry = papers["https://blog.example.org/posts/switch-tokens"]
    assert text_entry.title == "Switch tokens: <swi> and </swi>"
    assert text_entry.abstract == "The model emits <swi> to enter latent mode & leaves with </swi>."
    html_entry = papers["https://blog.example.org/posts/bold-claims"]
    assert html_entry.title == "Bold claims"
    assert html_entry.abstract == "A bold claim about <think> tokens."


def test_biorxiv_last_name_initials_are_ten_people(feed_server, stored):
    url = feed_server.feed("/biorxiv", "biorxiv.rdf", content_type="application/rdf+xml")

    (paper,) = stored(url, name="biorxiv-microbiology").values()

    assert paper.authors == (
        "N. LAPALU",
        "A. SIMON",
        "M.-H. LEBRUN",
        "J. AMSELEM",
        "M. VIAUD",
        "S. FILLINGER",
        "C. PLISSONNEAU",
        "D. CROLL",
        "S. DUPLESSIS",
        "G. H. J. KEMA",
    )


def test_a_latin1_feed_declared_utf8_is_kept_with_a_warning(feed_server, stored):
    url = feed_server.feed("/seminaires", "latin1-declared-utf8.rss", content_type=RSS)

    result = fetch(url)
    papers = stored(url)

    assert result.ok
    assert "Windows-1252" in result.warnings[0]
    titles = sorted(paper.title for paper in papers.values())
    assert titles == ["Apprentissage fédéré à grande échelle", "Modèles de diffusion pour la vidéo"]
    federe = papers["https://lab.example.fr/seminaires/2024/federe"]
    assert federe.abstract.endswith("façon « peu coûteuse ».")


def test_a_feed_in_another_encoding_than_declared_and_not_latin1_is_refused(feed_server):
    url = feed_server.feed("/seminar", "broken/sjis-declared-utf8.rss", content_type=RSS)

    result = fetch(url)

    assert result.status == "failed"
    assert result.error is not None and "not stored, to avoid garbled text" in result.error


def test_mojibake_is_repaired_before_it_is_stored(feed_server, stored):
    url = feed_server.feed("/seminaire", "mojibake.rss", content_type=RSS)

    (paper,) = stored(url).values()

    assert paper.title == "Apprentissage fédéré : théorie et pratique"
    assert paper.abstract == "Exposé de François Müller."


def test_a_hostile_field_is_capped_before_it_is_stored(feed_server, stored):
    huge = "word " * 1_000_000  # 5 MB of abstract
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>'
        f"<item><title>{'T' * 50_000}</title><link>https://h.example.org/1</link>"
        f"<description>{huge}</description>"
        f"<author>{'x' * 10_000}</author></item>"
        "</channel></rss>"
    ).encode()
    url = feed_server.route("/hostile", Reply(200, body, {"Content-Type": RSS}))

    (paper,) = stored(url, settings=FetchSettings(max_bytes=10_000_000, retries=0)).values()

    assert len(paper.abstract) <= 10_000 and paper.abstract.endswith("…")
    assert len(paper.title) <= 1_000
    assert paper.authors == ()


def test_entities_declared_after_a_long_prolog_are_still_refused(feed_server):
    padding = "<!-- " + "x" * 200_000 + " -->\n"
    body = (
        '<?xml version="1.0"?>\n' + padding + '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">]>\n'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>&a;&a;</title><link>https://e.example.org/1</link></item>"
        "</channel></rss>"
    ).encode()
    url = feed_server.route("/padded", Reply(200, body, {"Content-Type": RSS}))

    result = fetch(url)

    assert result.status == "failed"
    assert result.error is not None and "declares XML entities" in result.error


def test_the_apis_affiliations_join_the_authors_the_listing_brought(feed_server, stored):
    listing = feed_server.feed("/rss/cs.LG", "arxiv-cs.LG.rss", content_type=RSS)
    api = feed_server.feed("/api/query", "arxiv-api.atom", content_type="application/atom+xml")

    stored(listing, name="arxiv-cs.LG")
    paper = stored(api, name="arxiv-api")["2411.01234"]

    assert paper.authors == ("Ana López", "Wei Zhang", "Priya Raman")
    assert paper.affiliations == ("Universidad de Chile", "", "")


def test_a_utf8_feed_with_a_latin1_abstract_keeps_both_right(feed_server, stored):
    # assembled from two systems: UTF-8 titles, one description pasted in as Latin-1
    url = feed_server.feed("/seminaire", "mixed-utf8-latin1.rss", content_type=RSS)

    result = fetch(url)
    (paper,) = stored(url).values()

    assert paper.title == "Modèles de diffusion : théorie — pratique"
    assert paper.abstract == "Exposé de Müller ; salle 3, café à 10 h."
    assert "4 of its bytes are not" in result.warnings[0]  # é, ü, é, à
