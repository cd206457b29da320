"""The web app over real HTTP: what a reader, a mail scanner and an attacker each get.

Every test talks to uvicorn on 127.0.0.1 with httpx; mails arrive at a real aiosmtpd server.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from freezegun import freeze_time

from digest import pipeline, store
from digest.models import Subscriber, SubscriberStatus
from digest.sources import parse_feed
from digest.tokens import Scope, Signer
from tests.web_fixtures import LiveSite, csrf_of, links_in, text_of

FEEDS = Path(__file__).parent / "data" / "feeds"

pytest_plugins = ["tests.web_fixtures"]


def subscribe(
    client: httpx.Client, email: str, keywords: str = "diffusion models", **fields: str
) -> httpx.Response:
    """Fill and send the home page's form, as a browser would."""
    token = csrf_of(client.get("/").text)
    data = {"csrf_token": token, "email": email, "keywords": keywords, "action": "subscribe"}
    return client.post("/subscribe", data={**data, **fields})


def add_reader(
    site: LiveSite, email: str, *, active: bool = True, keywords: str = "LLM agents"
) -> Subscriber:
    subscriber, _ = site.ctx.store.subscribers.add(
        email,
        store.Preferences(keywords=keywords, send_hour=0),
        confirmed=active,
        now=site.ctx.now(),
    )
    return subscriber


def status_of(site: LiveSite, email: str) -> str:
    return site.ctx.store.subscribers.get(email=email).status


def token(site: LiveSite, scope: Scope, subscriber: Subscriber) -> str:
    assert subscriber.id is not None
    version = (
        site.ctx.store.subscribers.token_version(subscriber.id) if scope is Scope.CONFIRM else 0
    )
    link = site.ctx.store.subscribers.get(id=subscriber.id).link_secret
    return site.ctx.signer.make(scope, subscriber.id, version, link=link)


def main_text(html: str) -> str:
    """The page's visible <main>, with the parts that legitimately differ per request removed."""
    main = html.split("<main>", 1)[1].split("</main>", 1)[0]
    return re.sub(r"<strong>[^<]*@[^<]*</strong>", "<strong>ADDRESS</strong>", main)


# ---------------------------------------------------------------- pages


def test_the_home_page_explains_the_service_and_offers_the_form(live_site: LiveSite) -> None:
    with live_site.client() as client:
        response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert 'name="email"' in html and 'name="keywords"' in html
    assert 'name="frequency"' in html and 'name="send_hour"' in html and 'name="timezone"' in html
    for example in live_site.ctx.settings.examples:
        assert example.keywords.replace('"', "&#34;") in html
    assert "<script" not in html, "no flow needs JavaScript"


def test_every_page_sends_secure_headers(live_site: LiveSite) -> None:
    with live_site.client() as client:
        for path in ("/", "/healthz", "/static/site.css", "/nope"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert "script-src" not in csp, "no script may run at all"
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"


def test_subscribing_sends_one_confirmation_and_activates_only_on_post(live_site: LiveSite) -> None:
    with live_site.client() as client:
        response = subscribe(client, "grace@example.org")
        assert response.status_code == 200
        assert "Check your inbox" in response.text
        assert status_of(live_site, "grace@example.org") == "pending"

        mail = live_site.wait_for_mail("grace@example.org")
        [confirm] = [url for url in links_in(mail) if "/confirm/" in url]
        page = client.get(confirm)
        assert page.status_code == 200 and "Confirm my subscription" in page.text
        assert status_of(live_site, "grace@example.org") == "pending"

        done = client.post(confirm, data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 200 and "You're subscribed" in done.text
        assert status_of(live_site, "grace@example.org") == "active"
        assert f"{live_site.url}/preferences/" in done.text
        assert f"{live_site.url}/feeds/" in done.text

        # The link is single-use: a second press says so and changes nothing.
        again = client.post(confirm, data={"csrf_token": csrf_of(page.text)})
        assert again.status_code == 410 and "already used" in again.text


def test_the_answer_is_the_same_whether_or_not_the_address_is_known(live_site: LiveSite) -> None:
    add_reader(live_site, "known@example.org", keywords="LLM agents")
    with live_site.client() as client:
        known = subscribe(client, "known@example.org", keywords="something else entirely")
        unknown = subscribe(client, "stranger@example.org", keywords="something else entirely")
    assert known.status_code == unknown.status_code == 200
    assert main_text(known.text) == main_text(unknown.text)
    # A stranger cannot rewrite an active reader's profile from the home page ...
    assert live_site.ctx.store.subscribers.get(email="known@example.org").keywords == "LLM agents"
    # ... and the known reader gets a mail pointing to their own preferences instead.
    note = live_site.wait_for_mail("known@example.org")
    assert any("/preferences/" in url for url in links_in(note))
    live_site.wait_for_mail("stranger@example.org")


def test_following_links_never_changes_anything(live_site: LiveSite) -> None:
    pending = add_reader(live_site, "pending@example.org", active=False)
    active = add_reader(live_site, "active@example.org")
    with live_site.client() as client:
        for method in ("GET", "HEAD"):
            assert (
                client.request(
                    method, f"/confirm/{token(live_site, Scope.CONFIRM, pending)}"
                ).status_code
                == 200
            )
            assert (
                client.request(
                    method, f"/unsubscribe/{token(live_site, Scope.UNSUBSCRIBE, active)}"
                ).status_code
                == 200
            )
            assert (
                client.request(
                    method, f"/preferences/{token(live_site, Scope.PREFERENCES, active)}"
                ).status_code
                == 200
            )
    assert status_of(live_site, "pending@example.org") == "pending"
    assert status_of(live_site, "active@example.org") == "active"


def test_forms_refuse_posts_that_did_not_come_from_their_page(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "victim@example.org", keywords="LLM agents")
    preferences = f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}"
    unsubscribe = f"/unsubscribe/{token(live_site, Scope.UNSUBSCRIBE, reader)}"
    form = {"keywords": "spam", "email": "x@example.org", "action": "subscribe"}
    with live_site.client() as attacker, live_site.client() as victim:
        victim_field = csrf_of(victim.get(preferences).text)
        attacker.get("/")
        # No field, another browser's field, or a cross-site POST from the victim's own browser.
        assert attacker.post("/subscribe", data=form).status_code == 403
        assert (
            attacker.post(preferences, data={**form, "csrf_token": victim_field}).status_code == 403
        )
        assert attacker.post(unsubscribe, data={"csrf_token": victim_field}).status_code == 403
        # a forged field with non-ASCII characters is refused like any other, not a server error
        forged = attacker.post("/subscribe", data={**form, "csrf_token": "é" + victim_field})
        assert forged.status_code == 403
        cross = victim.post(
            preferences,
            data={**form, "csrf_token": victim_field},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403 and "another site" in cross.text
    assert live_site.ctx.store.subscribers.get(id=reader.id).keywords == "LLM agents"
    assert status_of(live_site, "victim@example.org") == "active"


def test_token_pages_are_kept_out_of_search_engines_referrers_and_caches(
    live_site: LiveSite,
) -> None:
    reader = add_reader(live_site, "private@example.org")
    paths = [
        f"/confirm/{token(live_site, Scope.CONFIRM, reader)}",
        f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}",
        f"/unsubscribe/{token(live_site, Scope.UNSUBSCRIBE, reader)}",
        f"/feeds/{reader.feed_token}.atom",
    ]
    with live_site.client() as client:
        for path in paths:
            headers = client.get(path).headers
            assert "noindex" in headers["x-robots-tag"], path
            assert headers["referrer-policy"] == "no-referrer", path
            assert "no-store" in headers["cache-control"] or "private" in headers["cache-control"]


def test_broken_forged_and_expired_links_get_a_friendly_page(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "old@example.org", active=False)
    assert reader.id is not None
    forged = Signer("another-secret-entirely-0123456789").make(Scope.PREFERENCES, reader.id)
    with freeze_time(live_site.ctx.now() - timedelta(days=8)):
        expired = live_site.ctx.signer.make(Scope.CONFIRM, reader.id, 0)
    wrong_scope = token(live_site, Scope.UNSUBSCRIBE, reader)
    cases = {
        "/confirm/garbage": "not valid",
        f"/preferences/{forged}": "not valid",
        f"/confirm/{expired}": "expired",
        f"/preferences/{wrong_scope}": "not valid",
    }
    with live_site.client() as client:
        for path, words in cases.items():
            response = client.get(path)
            assert response.status_code == 400, path
            assert "This link cannot be used" in response.text and words in response.text
            assert "Traceback" not in response.text


def test_sign_ups_are_rate_limited_per_network_and_per_address(
    make_site: Any, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site(web={"subscribe_per_ip_per_hour": 3, "subscribe_per_address_per_day": 1})
    with site.client() as client:
        first = subscribe(client, "twice@example.org")
        with caplog.at_level("INFO", logger="digest.web"):
            second = subscribe(client, "twice@example.org")
        # The reader sees the same answer; no second mail is queued for that address today.
        assert first.status_code == second.status_code == 200
        assert main_text(first.text) == main_text(second.text)
        assert "per-address limit reached" in caplog.text
        assert subscribe(client, "other@example.org").status_code == 200
        blocked = subscribe(client, "fourth@example.org")
        assert blocked.status_code == 429 and "Too many sign-ups" in blocked.text
    site.wait_for_mail("other@example.org")
    site.wait_for_mail("twice@example.org")  # sent in the background: the order is not fixed
    assert len(site.mails_to("twice@example.org")) == 1
    assert site.mails_to("fourth@example.org") == []


def test_home_page_previews_are_rate_limited_per_network(make_site: Any) -> None:
    site = make_site(web={"previews_per_ip_per_hour": 2})
    with site.client() as client:
        answers = [
            subscribe(client, "", keywords="diffusion models", action="preview") for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "Today this profile would get" in answers[0].text
    assert "Too many previews" in answers[2].text


def test_links_are_built_from_the_base_url_never_the_host_header(live_site: LiveSite) -> None:
    evil = {"Host": "evil.example.com"}
    with live_site.client(headers=evil) as client:
        assert subscribe(client, "hosted@example.org").status_code == 200
        mail = live_site.wait_for_mail("hosted@example.org")
        [confirm] = [url for url in links_in(mail) if "/confirm/" in url]
        assert confirm.startswith(live_site.url + "/confirm/")
        page = client.get(confirm)
        done = client.post(confirm, data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 200
        reader = live_site.ctx.store.subscribers.get(email="hosted@example.org")
        prefs = client.get(f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}")
        feed = client.get(f"/feeds/{reader.feed_token}.atom")
    for body in (text_of(mail), done.text, prefs.text, feed.text):
        assert "evil.example.com" not in body
    assert f"{live_site.url}/feeds/{reader.feed_token}.atom" in prefs.text


def test_tokens_stay_out_of_the_access_log(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "logged@example.org")
    secrets = {
        "confirm": token(live_site, Scope.CONFIRM, reader),
        "preferences": token(live_site, Scope.PREFERENCES, reader),
        "unsubscribe": token(live_site, Scope.UNSUBSCRIBE, reader),
    }
    with live_site.client() as client:
        for path, secret in secrets.items():
            client.get(f"/{path}/{secret}")
        client.get(f"/feeds/{reader.feed_token}.rss")
        client.get("/feeds/search.atom", params={"q": "diffusion"})
        client.post(
            f"/unsubscribe/{secrets['unsubscribe']}", data={"List-Unsubscribe": "One-Click"}
        )
    log = "\n".join(live_site.access_log)
    assert "/preferences/redacted" in log and "/feeds/redacted.rss" in log
    assert "/feeds/search.atom?q=diffusion" in log, "public URLs are logged as they are"
    for secret in [*secrets.values(), reader.feed_token]:
        assert secret not in log


def test_what_readers_type_is_escaped_everywhere(live_site: LiveSite) -> None:
    attack = '<img src=x onerror=alert(1)>, "</textarea><script>alert(2)</script>'
    with live_site.client() as client:
        field = csrf_of(client.get("/").text)
        response = client.post(
            "/subscribe",
            data={
                "csrf_token": field,
                "email": "<b>x@y</b>",
                "keywords": attack,
                "action": "preview",
            },
        )
    assert "<img src=x" not in response.text and "<script>" not in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert "&lt;/textarea&gt;&lt;script&gt;" in response.text


def test_invalid_fields_are_named_next_to_the_field(live_site: LiveSite) -> None:
    with live_site.client() as client:
        response = subscribe(
            client, "not-an-address", keywords='"unclosed', timezone="Mars/Olympus"
        )
    assert response.status_code == 400
    for name in ("email", "keywords", "timezone"):
        assert f'id="{name}-error"' in response.text, name
    assert live_site.mails_to("not-an-address") == []


def test_a_control_character_pasted_into_the_keywords_is_named_not_stored(
    live_site: LiveSite,
) -> None:
    # PostgreSQL cannot store a NUL at all: this used to be a server error there
    with live_site.client() as client:
        response = subscribe(client, "paste@example.org", keywords="diffusion\x00 models")
    assert response.status_code == 400 and "invisible control character" in response.text
    with pytest.raises(store.UnknownSubscriber):
        live_site.ctx.store.subscribers.get(email="paste@example.org")


def test_one_click_unsubscribe_and_coming_back_later(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "leaver@example.org")
    url = f"/unsubscribe/{token(live_site, Scope.UNSUBSCRIBE, reader)}"
    with live_site.client() as mail_provider:
        # RFC 8058: a POST without cookies or form field, and a 200 straight away.
        response = mail_provider.post(url, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert status_of(live_site, "leaver@example.org") == SubscriberStatus.UNSUBSCRIBED
        assert mail_provider.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with live_site.client() as browser:
        assert subscribe(browser, "leaver@example.org").status_code == 200
        assert status_of(live_site, "leaver@example.org") == "pending"
        mail = live_site.wait_for_mail("leaver@example.org")
        [confirm] = [u for u in links_in(mail) if "/confirm/" in u]
        browser.post(confirm, data={"csrf_token": csrf_of(browser.get(confirm).text)})
    assert status_of(live_site, "leaver@example.org") == "active"


def test_unsubscribing_from_the_page_says_goodbye(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "bye@example.org")
    url = f"/unsubscribe/{token(live_site, Scope.UNSUBSCRIBE, reader)}"
    with live_site.client() as client:
        page = client.get(url)
        done = client.post(url, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert status_of(live_site, "bye@example.org") == "unsubscribed"
    live_site.wait_for_mail("bye@example.org")


def test_a_feed_only_reader_turns_email_off(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "feedonly@example.org")
    url = f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}"
    with live_site.client() as client:
        field = csrf_of(client.get(url).text)
        form = {
            "csrf_token": field,
            "keywords": "LLM agents",
            "frequency": "weekly",
            "send_hour": "9",
            "timezone": "Europe/Paris",
            "max_papers": "5",
            "channel_feed": "on",
            "action": "save",
        }
        saved = client.post(url, data=form)
        assert saved.status_code == 303
        page = client.get(saved.headers["location"])
        assert "Your preferences are saved." in page.text
        nothing = client.post(url, data={**form, "channel_feed": ""})
        assert nothing.status_code == 400 and 'id="channels-error"' in nothing.text
    stored = live_site.ctx.store.subscribers.get(id=reader.id)
    assert stored.channels == ("feed",)
    assert (stored.frequency, stored.send_hour, stored.timezone, stored.max_papers) == (
        "weekly",
        9,
        "Europe/Paris",
        5,
    )


def test_a_mistyped_number_of_papers_is_named_and_nothing_is_saved(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "typo@example.org")
    url = f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}"
    with live_site.client() as client:
        form = {
            "csrf_token": csrf_of(client.get(url).text),
            "keywords": "diffusion models",
            "max_papers": "ten",
            "channel_email": "on",
            "action": "save",
        }
        answer = client.post(url, data=form)
    # the page comes back with the error by the field (and today's preview), not a server error
    assert answer.status_code == 400 and 'id="max_papers-error"' in answer.text
    assert live_site.ctx.store.subscribers.get(id=reader.id).keywords == "LLM agents"


def test_monitors_get_a_health_answer(live_site: LiveSite) -> None:
    with live_site.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_preview_shows_a_titles_latex_as_unicode(live_site: LiveSite) -> None:
    arxiv = parse_feed((FEEDS / "arxiv-cs.LG.rss").read_bytes(), source_name="arxiv-cs.LG")
    live_site.ctx.store.papers.upsert(arxiv.papers, now=live_site.ctx.now())

    with live_site.client() as client:
        response = subscribe(client, "", keywords="regret", action="preview")

    assert "Heterogeneous Clients with 𝒪(√(T)) Regret" in response.text
    assert "\\mathcal" not in response.text


def test_a_sign_up_while_the_relay_is_down_is_confirmed_by_the_next_run(
    make_site: Any, make_settings: Any, smtp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port

    down = make_site(smtp={"port": free_port(), "retries": 0, "timeout": 2})
    with down.client() as client:
        answer = subscribe(client, "patient@uni.example", "graph neural networks")
    assert answer.status_code == 200 and "inbox" in answer.text.lower()

    # The page answered as usual; the mail could not go, and waits in the queue.
    deadline = time.monotonic() + 10
    while "stays queued for the next run" not in caplog.text:
        assert time.monotonic() < deadline, "the sign-up's mail was never tried"
        time.sleep(0.05)
    assert down.ctx.store.mails.counts() == {"pending": 1}
    assert smtp_server.to("patient@uni.example") == []

    # The relay is back: the next run sends the confirmation, and its link works.
    ctx = pipeline.build_context(make_settings(site={"base_url": down.url}))
    report = pipeline.run(ctx, fetch_first=False)
    assert report.mails == (1, 0)
    [message] = smtp_server.to("patient@uni.example")
    [confirm] = [link for link in links_in(message) if "/confirm/" in link]
    with down.client() as client:
        page = client.get(confirm)
        done = client.post(confirm, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200
    assert ctx.store.subscribers.get(email="patient@uni.example").status == "active"


def test_a_weekly_reader_picks_the_weekday_on_the_preferences_page(live_site: LiveSite) -> None:
    reader = add_reader(live_site, "weekly@example.org")
    url = f"/preferences/{token(live_site, Scope.PREFERENCES, reader)}"
    with live_site.client() as client:
        page = client.get(url)
        assert '<option value="0" selected>Monday</option>' in page.text  # the default
        form = {
            "csrf_token": csrf_of(page.text),
            "keywords": "LLM agents",
            "frequency": "weekly",
            "send_weekday": "4",
            "send_hour": "9",
            "timezone": "Europe/Paris",
            "max_papers": "5",
            "channel_email": "on",
            "action": "save",
        }
        assert client.post(url, data=form).status_code == 303
        assert '<option value="4" selected>Friday</option>' in client.get(url).text
        bad = client.post(url, data={**form, "send_weekday": "9"})
        assert bad.status_code == 400 and 'id="send_weekday-error"' in bad.text
    stored = live_site.ctx.store.subscribers.get(id=reader.id)
    assert (stored.frequency, stored.send_weekday) == ("weekly", 4)
