"""Fetching real feeds over HTTP from a server on 127.0.0.1, and what reaches the store.

Every source either brings papers or fails alone with a one-line reason; the day goes on.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest

from digest import store
from digest.config import FetchSettings, SourceSettings
from digest.models import Paper
from digest.sources import FetchResult, FetchState, fetch_source
from digest.store import StoreError, open_engine

pytest.register_assert_rewrite("tests.sources_fixtures")
from tests.sources_fixtures import FEEDS, Reply  # noqa: E402 - after the rewrite registration

pytest_plugins = ["tests.sources_fixtures"]

SETTINGS = FetchSettings(contact="ops@example.org", timeout=1.0, retries=2)
NOW = datetime(2024, 11, 5, 6, 0, tzinfo=UTC)


FRESH = FetchState()


def fetch(
    url: str,
    *,
    name: str = "feed",
    kind: str = "auto",
    state: FetchState = FRESH,
    settings: FetchSettings = SETTINGS,
) -> FetchResult:
    """Fetch one source the way `digest fetch` does, with short pauses between retries."""
    source = SourceSettings(name=name, url=url, kind=kind)  # type: ignore[arg-type]
    return fetch_source(source, state, settings, backoff=0.01)


@pytest.fixture
def engine(database_url: str):
    engine = open_engine(database_url)
    yield engine
    engine.dispose()


def assert_failed(result: FetchResult, reason: str) -> None:
    assert result.status == "failed", result
    assert result.papers == []
    assert result.error is not None and reason in result.error, result.error
    assert "\n" not in result.error


def test_one_paper_from_three_sources_is_one_row_with_the_best_of_each(feed_server, engine):
    arxiv = feed_server.feed("/rss/cs.LG", "arxiv-cs.LG.rss", content_type="application/rss+xml")
    api = feed_server.feed("/api/query", "arxiv-api.atom", content_type="application/atom+xml")
    hf = feed_server.feed("/api/daily_papers", "hf-daily.json", content_type="application/json")

    results = [
        fetch(arxiv, name="arxiv-cs.LG"),
        fetch(api, name="arxiv-api"),
        fetch(hf, name="hf-daily"),
    ]
    for hours, result in enumerate(results):
        assert result.status == "ok", result.error
        store.Store(engine).papers.upsert(result.papers, now=NOW + timedelta(hours=hours))

    stored = {paper.key: paper for paper in store.Store(engine).papers.newest()}
    paper = stored["2411.01234"]
    assert set(paper.sources) == {"arxiv-cs.LG", "arxiv-api", "hf-daily"}
    assert set(paper.categories) == {"cs.LG", "cs.DC", "I.2.6"}
    assert paper.upvotes == 57
    assert paper.first_seen_at == NOW  # a later version (v2 from the API) is not new again
    assert paper.authors == ("Ana López", "Wei Zhang", "Priya Raman")
    assert paper.url == "https://arxiv.org/abs/2411.01234"
    assert [r.kind for r in results] == ["arxiv", "arxiv-api", "hf-daily"]
    assert "2306.05555" not in stored  # a replacement is not a new paper


def test_an_unchanged_feed_costs_one_304_and_the_right_headers_are_sent(feed_server):
    url = feed_server.feed(
        "/rss/cs.LG",
        "arxiv-cs.LG.rss",
        etag='"v1"',
        last_modified="Tue, 05 Nov 2024 05:00:04 GMT",
    )

    first = fetch(url)
    second = fetch(url, state=FetchState(first.etag, first.last_modified))

    assert first.status == "ok" and len(first.papers) == 3
    assert (first.etag, first.last_modified) == ('"v1"', "Tue, 05 Nov 2024 05:00:04 GMT")
    assert second.status == "not_modified" and second.papers == []
    assert second.etag == '"v1"'
    sent = feed_server.hits("/rss/cs.LG")[1].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Tue, 05 Nov 2024 05:00:04 GMT"
    assert sent["user-agent"] == "paper-digest/0.1.0 (+mailto:ops@example.org)"


def test_a_server_without_validators_sending_the_same_feed_is_not_parsed_again(feed_server):
    url = feed_server.feed("/plain.rss", "arxiv-cs.LG.rss")  # no ETag, no Last-Modified

    first = fetch(url)
    second = fetch(url, state=FetchState(content_hash=first.content_hash))
    other_rules = FetchSettings(contact="ops@example.org", timeout=1.0, include_replacements=True)
    third = fetch(url, state=FetchState(content_hash=first.content_hash), settings=other_rules)

    assert first.status == "ok" and first.papers and first.content_hash
    assert second.status == "not_modified" and second.papers == []
    # Settings that change what the body parses into make it worth reading again.
    assert third.status == "ok" and len(third.papers) >= len(first.papers)


def test_redirects_are_followed_but_a_loop_fails_the_source(feed_server):
    feed_server.feed("/new/cs.LG", "arxiv-cs.LG.rss")
    moved = feed_server.route("/old/cs.LG", Reply(301, headers={"Location": "/new/cs.LG"}))
    loop = feed_server.route("/loop", Reply(302, headers={"Location": "/loop"}))

    followed = fetch(moved)
    looping = fetch(loop)

    assert followed.status == "ok" and followed.url.endswith("/new/cs.LG")
    assert_failed(looping, "more than 5 redirects")
    assert len(feed_server.hits("/loop")) == 6


def test_a_redirect_to_a_local_file_is_refused(feed_server):
    url = feed_server.route("/sneaky", Reply(302, headers={"Location": "file:///etc/passwd"}))

    assert_failed(fetch(url), "not http(s)")


def test_429_with_a_short_retry_after_is_waited_out(feed_server):
    body = (FEEDS / "arxiv-cs.LG.rss").read_bytes()
    url = feed_server.sequence(
        "/busy", Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, body)
    )

    result = fetch(url)

    assert result.status == "ok" and len(result.papers) == 3
    assert len(feed_server.hits("/busy")) == 2


def test_429_asking_for_an_hour_fails_now_and_says_so(feed_server):
    url = feed_server.route("/busy", Reply(429, b"slow down", {"Retry-After": "3600"}))

    result = fetch(url)

    assert_failed(result, "HTTP 429 Too Many Requests")
    assert "retry after 3600 s" in result.error
    assert len(feed_server.hits("/busy")) == 1


def test_a_passing_5xx_is_retried(feed_server):
    body = (FEEDS / "hf-daily.json").read_bytes()
    url = feed_server.sequence("/flaky", Reply(503, b"oops"), Reply(502), Reply(200, body))

    result = fetch(url)

    assert result.status == "ok" and len(result.papers) == 2
    assert len(feed_server.hits("/flaky")) == 3


def test_a_server_that_keeps_failing_fails_the_source_after_the_retries(feed_server):
    url = feed_server.route("/down", Reply(500, b"Internal Server Error"))

    result = fetch(url)

    assert_failed(result, "HTTP 500 Internal Server Error")
    assert "tried 3 times" in result.error
    assert len(feed_server.hits("/down")) == 3


def test_a_missing_feed_is_not_retried(feed_server):
    result = fetch(feed_server.url("/rss/cs.NOPE"))

    assert_failed(result, "HTTP 404 Not Found")
    assert len(feed_server.hits("/rss/cs.NOPE")) == 1


def test_a_hung_server_times_out(feed_server):
    url = feed_server.route("/hang", Reply(hang=True))

    result = fetch(url, settings=FetchSettings(timeout=0.3, retries=1))

    assert_failed(result, "did not answer within 0.3 s (fetch.timeout)")
    assert len(feed_server.hits("/hang")) == 2


def test_a_server_nobody_listens_on_fails_the_source(feed_server):
    result = fetch("http://127.0.0.1:9/feed", settings=FetchSettings(timeout=0.5, retries=0))

    assert_failed(result, "could not connect to 127.0.0.1:9")


def test_a_body_over_the_size_cap_is_not_read(feed_server):
    big = b"<rss>" + b" " * 5000 + b"</rss>"
    declared = feed_server.route("/big", Reply(200, big))
    bomb = feed_server.route("/gzip-bomb", Reply(200, b"<rss>" + b" " * 200_000, gzip=True))
    small = FetchSettings(max_bytes=4096, timeout=1.0, retries=0)

    assert_failed(fetch(declared, settings=small), "larger than 4,096 bytes (fetch.max_bytes)")
    assert_failed(fetch(bomb, settings=FetchSettings(max_bytes=100_000)), "larger than 100,000")


@pytest.mark.parametrize(
    ("fixture", "content_type", "reason"),
    [
        ("broken/html-error.html", "text/html; charset=utf-8", "HTML page, not a feed"),
        ("broken/empty.xml", "application/rss+xml", "the response was empty"),
        ("broken/entity-bomb.xml", "application/rss+xml", "declares XML entities"),
        ("broken/external-entity.xml", "application/rss+xml", "declares XML entities"),
        ("broken/not-papers.json", "application/json", "not a list of papers"),
        ("broken/invalid.json", "application/json", "not valid JSON"),
        ("broken/garbage.bin", "image/png", "not a feed (not XML or JSON; image/png)"),
        ("broken/sitemap.xml", "application/xml", "not a feed"),
        ("broken/arxiv-api-error.atom", "application/atom+xml", "arXiv API refused the query"),
        ("broken/sjis-declared-utf8.rss", "application/rss+xml", "character encoding"),
        ("broken/arxiv-listing-error.rss", "application/rss+xml", "Bad archive 'astroph'"),
        (
            "broken/garbled-encoding-name.rss",
            "application/rss+xml",
            "encoding=...?> line is garbled",
        ),
    ],
)
def test_a_bad_body_fails_only_that_source(feed_server, fixture, content_type, reason):
    url = feed_server.feed("/feed", fixture, content_type=content_type, etag='"bad"')

    result = fetch(url, state=FetchState(etag='"good-before"'))

    assert_failed(result, reason)
    assert result.etag == '"good-before"'  # the next fetch must read the feed in full again


def test_a_cut_off_feed_keeps_its_complete_entries_with_a_warning(feed_server):
    url = feed_server.feed("/truncated", "broken/truncated.rss")

    result = fetch(url)

    assert result.status == "ok"
    assert [p.key for p in result.papers] == ["2411.01234", "2411.01301"]
    assert "malformed" in result.warnings[0]


def test_the_day_goes_on_when_most_sources_are_broken(feed_server, engine):
    good = feed_server.feed("/good", "arxiv-cs.DC.atom")
    sources = {
        "good": good,
        "html": feed_server.feed("/html", "broken/html-error.html", content_type="text/html"),
        "bomb": feed_server.feed("/bomb", "broken/entity-bomb.xml"),
        "down": feed_server.route("/down", Reply(500)),
        "loop": feed_server.route("/loop", Reply(302, headers={"Location": "/loop"})),
        "gone": feed_server.url("/gone"),
        "hf": feed_server.feed("/hf", "hf-daily.json"),
    }

    results = {name: fetch(url, name=name) for name, url in sources.items()}
    for result in results.values():
        store.Store(engine).papers.upsert(result.papers, now=NOW)

    assert {n for n, r in results.items() if r.ok} == {"good", "hf"}
    assert all(r.error for n, r in results.items() if n not in ("good", "hf"))
    assert {p.key for p in store.Store(engine).papers.newest()} == {
        "2411.01500",
        "2411.01234",
        "2412.00042",
    }


def test_an_id_with_a_forbidden_character_reference_is_cleaned_not_fatal(feed_server, database_url):
    # "&#0;" is not XML; feedparser's lenient parse turns it into NUL, which PostgreSQL refuses
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Sloppy</title>'
        b"<item><title>First</title><guid>paper&#0;1</guid><link>https://example.org/a&#0;b</link></item>"
        b"<item><title>Second</title><guid>paper-2</guid><link>https://example.org/2</link></item>"
        b"</channel></rss>"
    )
    url = feed_server.route("/sloppy", Reply(200, body, {"Content-Type": "application/rss+xml"}))
    engine = open_engine(database_url)

    result = fetch(url, name="sloppy")
    store.Store(engine).papers.upsert(result.papers, now=NOW)

    assert result.ok and "malformed" in result.warnings[0]
    stored = {p.key: p.url for p in store.Store(engine).papers.newest()}
    engine.dispose()
    assert stored == {"paper1": "https://example.org/ab", "paper-2": "https://example.org/2"}


def test_a_link_too_long_for_a_key_is_shortened_the_same_way_every_time(feed_server, database_url):
    # no guid, and a 700-character link: the key column holds 500
    link = "https://news.example.org/r/" + "a" * 700 + "?utm_source=feed"
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Aggregator</title>'
        f"<item><title>Long</title><link>{link}</link></item>"
        "</channel></rss>"
    ).encode()
    url = feed_server.route("/long", Reply(200, body, {"Content-Type": "application/rss+xml"}))
    engine = open_engine(database_url)

    first = fetch(url, name="agg")
    store.Store(engine).papers.upsert(first.papers, now=NOW)
    again = store.Store(engine).papers.upsert(
        fetch(url, name="agg").papers, now=NOW + timedelta(hours=1)
    )

    [paper] = store.Store(engine).papers.newest()
    engine.dispose()
    assert len(paper.key) == 500 and paper.key.startswith("https://news.example.org/r/")
    assert paper.url == link  # the link itself is kept whole
    assert again.new == 0  # the same key the second time: no duplicate


def test_a_paper_the_database_refuses_fails_its_feed_with_a_reason_and_stores_none_of_it(
    database_url,
):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite stores any string; PostgreSQL refuses a NUL")
    engine = open_engine(database_url)
    good = Paper(key="2411.01234", title="Fine")
    refused = Paper(key="odd\x00key", title="Not storable")

    with pytest.raises(StoreError, match="the database refused a paper of this feed"):
        store.Store(engine).papers.upsert([good, refused], now=NOW)

    stored = store.Store(engine).papers.newest()
    engine.dispose()
    assert stored == []  # all or nothing: the next fetch of that feed tries again


def test_a_broken_refetch_leaves_the_stored_papers_as_they_were(feed_server, engine):
    body = (FEEDS / "arxiv-cs.LG.rss").read_bytes()
    url = feed_server.sequence("/rss", Reply(200, body), Reply(200, b"<html><title>Oops</title>"))
    store.Store(engine).papers.upsert(fetch(url, name="arxiv").papers, now=NOW)
    before = store.Store(engine).papers.newest()

    again = fetch(url, name="arxiv")
    store.Store(engine).papers.upsert(again.papers, now=NOW + timedelta(hours=1))

    assert_failed(again, 'HTML page, not a feed ("Oops")')
    assert store.Store(engine).papers.newest() == before


def test_a_local_feed_file_named_in_the_config_is_read_and_then_not_modified(tmp_path):
    feed = tmp_path / "papers.atom"
    feed.write_bytes((FEEDS / "generic-atom.xml").read_bytes())

    first = fetch(str(feed))
    by_uri = fetch(feed.as_uri())
    second = fetch(str(feed), state=FetchState(first.etag, first.last_modified))

    assert first.status == "ok" and len(first.papers) == 2
    assert by_uri.status == "ok" and len(by_uri.papers) == 2
    assert second.status == "not_modified"


def test_local_files_that_are_missing_or_too_big_fail_the_source(tmp_path):
    big = tmp_path / "big.xml"
    big.write_bytes(b"<rss>" + b" " * 10_000 + b"</rss>")

    assert_failed(fetch(str(tmp_path / "nope.xml")), "does not exist")
    assert_failed(fetch(str(big), settings=FetchSettings(max_bytes=1000)), "fetch.max_bytes")
    assert_failed(fetch(str(tmp_path)), "is not a file")


def test_only_http_https_and_files_are_fetched():
    assert_failed(fetch("ftp://ftp.example.org/feed.xml"), "unsupported address")
    assert_failed(fetch("gopher://example.org/1"), "unsupported address")


def test_a_gzip_encoded_feed_is_read(feed_server):
    body = (FEEDS / "arxiv-cs.LG.rss").read_bytes()
    url = feed_server.route(
        "/gz", Reply(200, body, {"Content-Type": "application/rss+xml"}, gzip=True)
    )

    result = fetch(url)

    assert result.status == "ok" and len(result.papers) == 3
    assert len(gzip.compress(body)) < result.bytes_read
