"""A reader's whole journey through the web app, in real headless Chromium.

Subscribe on the home page, confirm from the mail the SMTP server received, change keywords and
see the preview change, receive a digest, unsubscribe in one click, and receive nothing after.
Screenshots of every page go to test-artifacts/web/.
"""

from __future__ import annotations

from datetime import timedelta

import feedparser
import pytest

from digest import pipeline
from digest.models import SubscriberStatus
from tests.web_fixtures import LiveSite, in_thread, links_in, screenshot

pytest_plugins = ["tests.web_fixtures"]
pytestmark = pytest.mark.browser

READER = "ada@example.org"


def preview_titles(page) -> list[str]:
    return page.locator(".preview .paper-title").all_inner_texts()


def test_a_reader_subscribes_tunes_and_leaves_without_javascript(live_site: LiveSite, page) -> None:
    page.goto(live_site.url + "/")
    assert page.get_by_role("heading", level=1).inner_text().startswith("The day's new papers")
    assert page.locator('textarea[name="keywords"]').is_visible()
    assert page.locator('input[name="email"]').is_visible()
    # The profile language is explained beside the field, with examples.
    assert '"federated learning"' in page.locator("#keywords-help").inner_text()
    screenshot(page, "01-home")

    # A live "today this profile would get" preview, before giving any address.
    page.fill('textarea[name="keywords"]', "diffusion models, video generation")
    page.click('button[value="preview"]')
    first = preview_titles(page)
    assert first, "the preview lists today's matching papers"
    assert page.get_by_text("Today this profile would get").is_visible()
    screenshot(page, "02-home-preview")

    # Subscribe: the page only says to check the inbox.
    page.fill('input[name="email"]', READER)
    page.select_option('select[name="send_hour"]', "0")
    page.click('button[value="subscribe"]')
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    screenshot(page, "03-check-inbox")
    assert live_site.ctx.store.subscribers.get(email=READER).status == "pending"

    # The confirmation mail carries a link to the configured base URL.
    mail = live_site.wait_for_mail(READER)
    confirm_url = next(url for url in links_in(mail) if "/confirm/" in url)
    assert confirm_url.startswith(live_site.url + "/confirm/")

    # Following the link only shows a button (mail scanners follow links too) ...
    page.goto(confirm_url)
    assert page.get_by_role("button", name="Confirm my subscription").is_visible()
    screenshot(page, "04-confirm")
    assert live_site.ctx.store.subscribers.get(email=READER).status == "pending"

    # ... and pressing it activates the subscription and shows the reader's links.
    page.get_by_role("button", name="Confirm my subscription").click()
    assert page.get_by_role("heading", name="You're subscribed").is_visible()
    feed_url = page.locator("code.url").first.inner_text()
    assert feed_url.startswith(live_site.url + "/feeds/") and feed_url.endswith(".atom")
    screenshot(page, "05-confirmed")
    assert live_site.ctx.store.subscribers.get(email=READER).status == "active"

    # Preferences: the preview shows today's digest for the saved profile.
    page.get_by_role("link", name="Your preferences").click()
    assert page.get_by_role("heading", name="Your preferences").is_visible()
    assert preview_titles(page) == first[: len(preview_titles(page))]
    screenshot(page, "06-preferences")

    # A broken profile is shown next to the field, and nothing is saved.
    page.fill('textarea[name="keywords"]', '"unclosed phrase')
    page.get_by_role("button", name="Save").click()
    assert page.locator("#keywords-error").is_visible()
    screenshot(page, "07-preferences-error")
    assert live_site.ctx.store.subscribers.get(email=READER).keywords.startswith("diffusion")

    # Change the interests: saved, and the preview changes with them.
    page.fill('textarea[name="keywords"]', "reinforcement learning, LLM agents")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_text("Your preferences are saved.").is_visible()
    second = preview_titles(page)
    assert second and second != first
    screenshot(page, "08-preferences-saved")
    saved = live_site.ctx.store.subscribers.get(email=READER)
    assert saved.keywords == "reinforcement learning, LLM agents"

    # Today's run sends this reader a digest, and their private feed now lists those papers.
    report = in_thread(pipeline.run, live_site.ctx, fetch_first=False)
    digests = [
        m for m in live_site.mails_to(READER) if "unsubscribe" in m.get("List-Unsubscribe", "")
    ]
    assert len(digests) == 1, report
    with live_site.client() as client:
        feed = feedparser.parse(client.get(feed_url).content)
    assert not feed.bozo
    sent_titles = {entry.title for entry in feed.entries}
    assert sent_titles and sent_titles <= set(second) | sent_titles
    assert sent_titles & set(second), "the feed lists the papers the digest recommended"

    # The unsubscribe link: GET shows one button and changes nothing.
    unsubscribe_url = live_site.ctx.links(saved).unsubscribe
    page.goto(unsubscribe_url)
    assert page.get_by_role("button", name="Unsubscribe").is_visible()
    screenshot(page, "09-unsubscribe")
    assert live_site.ctx.store.subscribers.get(email=READER).status == "active"

    # The mail provider's one-click POST (RFC 8058) unsubscribes at once, with a 200.
    with live_site.client() as client:
        response = client.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert live_site.ctx.store.subscribers.get(email=READER).status == (
        SubscriberStatus.UNSUBSCRIBED
    )
    page.reload()
    assert page.get_by_text("You are already unsubscribed").is_visible()
    screenshot(page, "10-unsubscribed")

    # Tomorrow's run sends nothing to this reader, and the private feed is closed.
    received = len(live_site.mails_to(READER))
    tomorrow = live_site.ctx.now() + timedelta(days=1)
    later = pipeline.build_context(live_site.ctx.settings, now=lambda: tomorrow)
    in_thread(pipeline.run, later, fetch_first=False)
    assert len(live_site.mails_to(READER)) == received
    with live_site.client() as client:
        assert client.get(feed_url).status_code == 404


def test_a_reader_sees_a_friendly_page_for_a_broken_link(live_site: LiveSite, page) -> None:
    response = page.goto(live_site.url + "/confirm/not-a-real-token")
    assert response is not None and response.status == 400
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()
    assert "Traceback" not in page.content()
    screenshot(page, "11-bad-link")
    response = page.goto(live_site.url + "/no/such/page")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
