"""The feeds as a feed reader fetches them from the running app: private digest feeds and the
public profile feed, valid for feedparser and the node parser, with conditional GET."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import feedparser

from digest import pipeline, store
from tests.test_feeds import node_check
from tests.web_fixtures import LiveSite, csrf_of, in_thread

pytest_plugins = ["tests.web_fixtures"]


def reader_with_a_digest(site: LiveSite, email: str = "reader@example.org"):
    """An active reader who was sent today's digest (so their feed has entries)."""
    subscriber, _ = site.ctx.store.subscribers.add(
        email,
        store.Preferences(keywords="diffusion models, video generation", send_hour=0),
        confirmed=True,
        now=site.ctx.now(),
    )
    in_thread(pipeline.run, site.ctx, fetch_first=False)
    assert len(site.mails_to(email)) == 1, "the reader got today's digest"
    return subscriber


def test_a_reader_follows_their_digest_in_atom_and_rss(live_site: LiveSite, tmp_path: Path) -> None:
    reader = reader_with_a_digest(live_site)
    with live_site.client() as client:
        atom = client.get(f"/feeds/{reader.feed_token}.atom")
        rss = client.get(f"/feeds/{reader.feed_token}.rss")
    assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert rss.headers["content-type"] == "application/rss+xml; charset=utf-8"
    parsed_atom, parsed_rss = feedparser.parse(atom.content), feedparser.parse(rss.content)
    assert not parsed_atom.bozo and not parsed_rss.bozo
    titles = [e.title for e in parsed_atom.entries]
    assert titles and titles == [e.title for e in parsed_rss.entries]
    assert len(set(titles)) == len(titles), "one entry per paper"
    mail = live_site.mails_to("reader@example.org")[0]
    html = unescape(mail.get_body(preferencelist=("html",)).get_content())
    assert all(title in html for title in titles), "the feed lists what the mail did"
    # The feed points to itself at the configured base URL.
    assert parsed_atom.feed.links[0].href == f"{live_site.url}/feeds/{reader.feed_token}.atom"
    # A second, independent parser agrees.
    node_atom, node_rss = node_check(tmp_path, {"a.atom": atom.content, "a.rss": rss.content})
    assert [i["title"] for i in node_atom["items"]] == titles
    assert [i["id"] for i in node_rss["items"]] == [e.id for e in parsed_atom.entries]


def test_feed_readers_get_304_when_nothing_changed(live_site: LiveSite) -> None:
    reader = reader_with_a_digest(live_site)
    url = f"/feeds/{reader.feed_token}.atom"
    with live_site.client() as client:
        first = client.get(url)
        etag = first.headers["etag"]
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert client.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200
        # Stable across requests: the same digest gives the same bytes.
        assert client.get(url).content == first.content


def test_a_reader_rotates_their_feed_url(live_site: LiveSite) -> None:
    reader = reader_with_a_digest(live_site)
    assert reader.id is not None
    preferences = live_site.ctx.links(reader).preferences.removeprefix(live_site.url)
    with live_site.client() as client:
        page = client.get(preferences)
        assert f"/feeds/{reader.feed_token}.atom" in page.text
        moved = client.post(
            preferences, data={"csrf_token": csrf_of(page.text), "action": "rotate_feed"}
        )
        assert moved.status_code == 303
        after = client.get(moved.headers["location"])
        assert "Your feed has a new URL." in after.text
        new_token = live_site.ctx.store.subscribers.get(id=reader.id).feed_token
        assert new_token != reader.feed_token and f"/feeds/{new_token}.atom" in after.text
        old = client.get(f"/feeds/{reader.feed_token}.atom")
        assert old.status_code == 404 and "may have moved" in old.text
        assert client.get(f"/feeds/{new_token}.rss").status_code == 200


def test_unknown_and_unsubscribed_feeds_are_gone(live_site: LiveSite) -> None:
    reader = reader_with_a_digest(live_site)
    with live_site.client() as client:
        assert client.get("/feeds/not-a-token.atom").status_code == 404
        assert client.get(f"/feeds/{reader.feed_token}.json").status_code == 404
        live_site.ctx.store.subscribers.unsubscribe(id=reader.id, now=live_site.ctx.now())
        assert client.get(f"/feeds/{reader.feed_token}.atom").status_code == 404


def test_anyone_follows_a_profile_as_a_public_feed(live_site: LiveSite, tmp_path: Path) -> None:
    profile = '"federated learning", -medical'
    with live_site.client() as client:
        response = client.get("/feeds/search.atom", params={"q": "diffusion models, -video"})
        rss = client.get("/feeds/search.rss", params={"q": "diffusion models, -video"})
        assert "public" in response.headers["cache-control"]
        empty_or_not = client.get("/feeds/search.atom", params={"q": profile})
    feed = feedparser.parse(response.content)
    assert not feed.bozo and feed.entries
    assert feed.feed.title == "Paper Digest: diffusion models, -video"
    assert not any("video" in e.title.lower() for e in feed.entries)
    assert feed.feed.links[0].href.startswith(f"{live_site.url}/feeds/search.atom?q=")
    assert not feedparser.parse(empty_or_not.content).bozo
    node_atom, node_rss = node_check(tmp_path, {"s.atom": response.content, "s.rss": rss.content})
    assert [i["title"] for i in node_atom["items"]] == [e.title for e in feed.entries]
    assert len(node_rss["items"]) == len(feed.entries)


def test_a_broken_profile_feed_says_what_is_wrong(live_site: LiveSite) -> None:
    with live_site.client() as client:
        missing = client.get("/feeds/search.atom")
        broken = client.get("/feeds/search.atom", params={"q": '"unclosed'})
    assert missing.status_code == 400 and "/feeds/search.atom?q=" in missing.text
    assert broken.status_code == 400 and "This profile cannot be used" in broken.text
