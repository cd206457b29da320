"""A digest researchers look forward to, through the real pipeline, SMTP server and Chromium.

Readers with real profiles get today's digest from the 148 sample papers; the stories check what
they see: why each paper is there (matched terms, a snippet that shows them, partial matches
labelled and kept out under their threshold), the masthead, the web copy of the mail, and the
"more / fewer like this" links (GET asks, POST changes, undo restores). Screenshots of the mail
and the pages at 375 and 1000 px, light and dark, go to test-artifacts/digest/.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import feedparser
import pytest

from digest import pipeline, ranking, store
from digest.models import Subscriber
from tests.web_fixtures import LiveSite, in_thread, links_in, text_of

pytest_plugins = ["tests.web_fixtures"]
pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "digest"
WIDTHS = (375, 1000)

CARDS = """() => [...document.querySelectorAll('.card')].filter(c => c.querySelector('h2 a'))
    .map(c => ({
        title: c.querySelector('h2').innerText.trim(),
        strength: (c.querySelector('.strength') || {innerText: ''}).innerText.trim(),
        bold: [...c.querySelectorAll('.snippet b')].map(b => b.innerText),
        snippet: (c.querySelector('.snippet') || {innerText: ''}).innerText.trim(),
        terms: [...c.querySelectorAll('.tag')].map(t => t.innerText.trim()),
    }))"""


def reader(site: LiveSite, email: str, keywords: str) -> Subscriber:
    """An active reader whose digest is due at today's run."""
    subscriber, _ = site.ctx.store.subscribers.add(
        email,
        store.Preferences(keywords=keywords, send_hour=0),
        confirmed=True,
        now=site.ctx.now(),
    )
    return subscriber


def digest_mail(site: LiveSite, email: str) -> EmailMessage:
    """The one digest the reader received."""
    mails = [m for m in site.mails_to(email) if m.get("List-Unsubscribe")]
    assert len(mails) == 1, f"{email} got {len(mails)} digests"
    return mails[0]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def open_mail(browser: Any, html: str, *, width: int = 1000, dark: bool = False) -> Any:
    """The mail's HTML in a tab of its own, offline as a mail client shows it."""
    context = browser.new_context(
        viewport={"width": width, "height": 900}, color_scheme="dark" if dark else "light"
    )
    context.route("**/*", lambda route: route.abort())
    tab = context.new_page()
    tab.set_content(html, wait_until="load")
    return tab


def follow(tab: Any, target: Any) -> None:
    """Click a link or a form button and wait for the page it leads to."""
    with tab.expect_navigation():
        target.click()


def shoot(tab: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_every_paper_says_why_and_partial_matches_wait_for_a_stronger_score(
    live_site: LiveSite, browser: Any
) -> None:
    reader(live_site, "fl@example.org", '"federated learning", distillation')
    reader(live_site, "gnn@example.org", "graph neural networks, molecules")

    in_thread(pipeline.run, live_site.ctx, fetch_first=False)

    tab = open_mail(browser, html_of(digest_mail(live_site, "fl@example.org")))
    cards = tab.evaluate(CARDS)
    assert len(cards) == 10
    for card in cards:
        # every paper names what matched, and its snippet shows it in bold
        assert card["terms"] and card["bold"], card
        assert card["strength"].endswith("match") and "Partial" not in card["strength"]
    first = cards[0]
    assert first["terms"] == ["federated learning", "distillation"]
    assert "Federated Learning" in first["bold"]
    assert any(word.lower().startswith("distill") for word in first["bold"])
    # "Matched: distillation" comes with the sentence that says it, wherever it is in the abstract
    for card in cards:
        if card["terms"] == ["distillation"]:
            assert any(word.lower().startswith("distil") for word in card["bold"]), card
    tab.context.close()

    # Nothing about graph neural networks or molecules today: the generic "neural network" papers
    # (a part of one interest) stay out; the one strong enough is sent, labelled partial.
    mail = digest_mail(live_site, "gnn@example.org")
    text = text_of(mail)
    assert "Partial match - partly matched: graph neural networks" in text
    assert "1 new paper matched your profile" in text
    assert "High-dimensional dynamics of generalization error in neural" not in text
    tab = open_mail(browser, html_of(mail))
    [card] = tab.evaluate(CARDS)
    assert card["strength"].endswith("Partial match") and card["terms"] == ["graph neural networks"]
    assert card["bold"], "a partial match shows the words it has"
    tab.context.close()
    # the reader's feed labels it too, with the same evidence
    gnn = live_site.ctx.store.subscribers.get(email="gnn@example.org")
    with live_site.client() as client:
        [entry] = feedparser.parse(client.get(f"/feeds/{gnn.feed_token}.atom").content).entries
    assert "<strong>Partial match:</strong> graph neural networks" in entry.content[0].value


def test_the_masthead_counts_the_day_and_names_the_top_paper(
    live_site: LiveSite, browser: Any
) -> None:
    reader(live_site, "video@example.org", "diffusion models, video generation")

    in_thread(pipeline.run, live_site.ctx, fetch_first=False)

    mail = digest_mail(live_site, "video@example.org")
    tab = open_mail(browser, html_of(mail))
    cards = tab.evaluate(CARDS)
    summary = tab.locator(".summary").inner_text()
    # 11 papers match; the digest holds 10 (the next story checks the count itself)
    assert summary.startswith("148 new papers read · 11 matched your profile · the top 10 here")
    assert len(cards) == 10 and summary.endswith(" · top: " + cards[0]["title"])
    assert tab.get_by_role("link", name="View in browser").is_visible()
    text = text_of(mail)
    assert "148 new papers read · 11 matched your profile" in text
    assert "Top: " + cards[0]["title"][:40] in " ".join(text.split())
    tab.context.close()


def test_the_masthead_counts_every_paper_that_matched_not_just_the_ten_sent(
    live_site: LiveSite, browser: Any, page: Any
) -> None:
    profile = "reinforcement learning, reasoning"
    rl = reader(live_site, "rl@example.org", profile)

    in_thread(pipeline.run, live_site.ctx, fetch_first=False)

    # what the ranking admits from the reader's window, with no digest size to cut it
    ctx = live_site.ctx
    [composition] = ctx.store.digests.get_many([(rl.id, ctx.now().date())]).values()
    papers = ctx.window_papers(composition.since, composition.until)
    [everything] = ranking.rank(
        papers, [profile], settings=ctx.settings.ranking, corpus=ctx.corpus(papers), limit=1000
    )
    matched = len(everything)
    assert matched > 10

    mail = digest_mail(live_site, "rl@example.org")
    tab = open_mail(browser, html_of(mail))
    assert len(tab.evaluate(CARDS)) == 10
    summary = tab.locator(".summary").inner_text()
    assert summary.startswith(
        f"148 new papers read · {matched} matched your profile · the top 10 here · top: "
    )
    assert tab.locator("h1").inner_text() == f"{matched} new papers matched your profile"
    tab.context.close()
    assert f"{matched} matched your profile · the top 10 here" in " ".join(text_of(mail).split())

    # the count was recorded with the composition: the web copy tells the same one, even after
    # the reader's profile changed and would match other papers now
    ctx.store.subscribers.update_preferences(rl.id, store.Preferences(keywords="segmentation"))
    view_url = next(url for url in links_in(mail) if "/digest/" in url)
    page.goto(view_url)
    assert page.locator(".summary").inner_text() == summary


def test_the_browser_view_is_the_mail_and_the_archive_lists_it(
    live_site: LiveSite, browser: Any, page: Any
) -> None:
    reader(live_site, "ada@example.org", '"federated learning", distillation')
    in_thread(pipeline.run, live_site.ctx, fetch_first=False)
    mail = digest_mail(live_site, "ada@example.org")
    view_url = next(url for url in links_in(mail) if "/digest/" in url)
    tab = open_mail(browser, html_of(mail))
    in_mail = tab.evaluate(CARDS)
    mail_text = tab.inner_text("body")
    mail_links = tab.eval_on_selector_all("a", "links => links.map(a => a.href)")
    tab.context.close()

    response = page.goto(view_url)
    assert response is not None and response.status == 200
    # the same words and the same links as the mail, trending block and masthead included
    assert page.inner_text("body") == mail_text
    assert page.eval_on_selector_all("a", "links => links.map(a => a.href)") == mail_links
    assert page.evaluate(CARDS) == in_mail
    assert "trending today" in page.inner_text("body").lower()
    # 14 papers match the profile today; the mail and its web copy hold the top 10
    assert page.locator("h1").inner_text() == "14 new papers matched your profile"
    # every link works from the web page as from the mail: steering links included
    assert page.get_by_role("link", name="More like this").count() == 10

    archive = view_url.rsplit("/", 1)[0]
    page.goto(archive)
    assert page.get_by_role("heading", name="Your past digests").is_visible()
    [entry] = page.locator(".archive li").all_inner_texts()
    assert "10 papers" in entry and in_mail[0]["title"][:30] in entry
    follow(page, page.locator(".archive a"))
    assert page.evaluate(CARDS) == in_mail

    # a forged or other reader's token opens nothing
    assert page.goto(view_url.replace("/digest/", "/digest/x")).status == 400


def test_more_and_fewer_like_this_ask_first_change_the_profile_and_undo(
    live_site: LiveSite, browser: Any, page: Any
) -> None:
    ada = reader(live_site, "ada@example.org", '"federated learning", distillation')
    in_thread(pipeline.run, live_site.ctx, fetch_first=False)
    mail = digest_mail(live_site, "ada@example.org")
    tab = open_mail(browser, html_of(mail))
    steering = tab.evaluate(
        """() => [...document.querySelectorAll('.card')].filter(c => c.querySelector('.steer'))
            .map(c => ({
                terms: [...c.querySelectorAll('.tag')].map(t => t.innerText.trim()),
                more: c.querySelector('.steer a[href$="/more"]').href,
                fewer: c.querySelector('.steer a[href$="/fewer"]').href,
            }))"""
    )
    tab.context.close()
    assert len(steering) == 10
    assert "More like this: " in text_of(mail) and "Fewer like this: " in text_of(mail)

    def keywords() -> str:
        return live_site.ctx.store.subscribers.get(id=ada.id).keywords

    # GET (what a mail scanner does) changes nothing: it shows the change and a button
    both = next(s for s in steering if s["terms"] == ["federated learning", "distillation"])
    page.goto(both["more"])
    assert page.get_by_role("heading", name="More papers like this one?").is_visible()
    assert "federated learning: weight 1 → 1.5" in page.locator(".changes").inner_text()
    assert keywords() == '"federated learning", distillation'
    follow(page, page.get_by_role("button", name="More like this"))

    # POST changes the profile; the preferences page says so and lists the change
    assert page.get_by_text("Your profile is changed").is_visible()
    assert keywords() == '"federated learning"^1.5, distillation^1.5'
    assert "federated learning: weight 1 → 1.5" in page.locator("#changes li").first.inner_text()
    assert page.locator('textarea[name="keywords"]').input_value() == keywords()

    # undo restores the profile exactly
    follow(page, page.locator("#changes").get_by_role("button", name="Undo"))
    assert page.get_by_text("The change is undone.").is_visible()
    assert keywords() == '"federated learning", distillation'
    assert "(undone)" in page.locator("#changes li").first.inner_text()

    # fewer like this, for a paper that matched "distillation" only, halves that term alone
    only = next(s for s in steering if s["terms"] == ["distillation"])
    page.goto(only["fewer"])
    assert page.locator(".changes").inner_text().strip() == "distillation: weight 1 → 0.5"
    follow(page, page.get_by_role("button", name="Fewer like this"))
    assert keywords() == '"federated learning", distillation^0.5'
    # the next digest follows the profile: the preview ranks with the new weight
    preview = page.locator(".preview .paper-title").all_inner_texts()
    assert preview, "the preferences page previews the changed profile"
    follow(page, page.locator("#changes").get_by_role("button", name="Undo").first)
    assert keywords() == '"federated learning", distillation'


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_screenshots_of_the_mail_and_the_pages(
    live_site: LiveSite, browser: Any, dark: bool
) -> None:
    reader(live_site, "ada@example.org", '"federated learning", distillation, LLM agents')
    in_thread(pipeline.run, live_site.ctx, fetch_first=False)
    mail = digest_mail(live_site, "ada@example.org")
    urls = links_in(mail)
    pages = {
        "view": next(url for url in urls if "/digest/" in url),
        "more": next(url for url in urls if url.endswith("/more")),
        "preferences": next(url for url in urls if "/preferences/" in url),
        "home": live_site.url + "/",
    }
    scheme = "dark" if dark else "light"
    for width in WIDTHS:
        tab = open_mail(browser, html_of(mail), width=width, dark=dark)
        shoot(tab, f"mail-{width}-{scheme}")
        tab.context.close()
        context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
        tab = context.new_page()
        for name, url in pages.items():
            tab.goto(url)
            shoot(tab, f"{name}-{width}-{scheme}")
        # the page background follows the reader's setting
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(20, 24, 29)") == dark, background
        # the home page preview opens where its results are
        tab.fill('textarea[name="keywords"]', "diffusion models")
        follow(tab, tab.locator('button[value="preview"]'))
        assert tab.url.endswith("#preview")
        top = tab.evaluate("document.getElementById('preview').getBoundingClientRect().top")
        assert -2 <= top < 900, top  # scrolled to it (sub-pixel)
        # each previewed paper says why, with the evidence in bold, as the mail does
        assert tab.locator(".preview .matched").count() == tab.locator(".preview .paper").count()
        assert tab.locator(".preview .snippet b").count() >= tab.locator(".preview .paper").count()
        shoot(tab, f"home-preview-{width}-{scheme}")
        context.close()
