"""The digest HTML in a real browser: phone and desktop widths, dark mode, hostile titles."""

from __future__ import annotations

import pytest

from tests.email_fixtures import hostile_paper, make_digest

pytest_plugins = ["tests.email_fixtures"]
pytestmark = pytest.mark.browser


def open_email(browser, html: str, width: int, *, dark: bool = False):
    """A page at a phone or desktop width, offline (an email must not need the network)."""
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        color_scheme="dark" if dark else "light",
        java_script_enabled=True,
    )
    context.route("**/*", lambda route: route.abort())
    page = context.new_page()
    page.set_content(html, wait_until="load")
    return context, page


@pytest.mark.parametrize("width", [375, 800])
def test_digest_fits_the_screen_and_every_link_is_absolute(
    browser, renderer, papers, artifacts, width
):
    digest = make_digest([papers[0], hostile_paper(), *papers[1:]], count=10, trending=3)
    html = renderer.digest(digest).html
    context, page = open_email(browser, html, width)
    try:
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth, document.body.scrollWidth]"
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
        hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
        assert len(hrefs) >= 20
        for href in hrefs:
            assert href.startswith(("https://", "http://", "mailto:")), href
        # The hostile title is text on the page, not markup that ran.
        assert page.evaluate("window.pwned") is None
        assert page.locator("script").count() == 0
        assert "<script>window.pwned=1</script>" in page.inner_text("body")
        assert page.locator("img").count() == 0  # nothing to understand hides in an image
        # The top of the mail says the date and the count.
        assert "Thursday, 27 November 2025" in page.inner_text("body")
        page.screenshot(path=str(artifacts / f"digest-{width}.png"), full_page=True)
    finally:
        context.close()


def test_no_element_sticks_out_on_the_narrowest_phone(browser, renderer, papers):
    html = renderer.digest(make_digest([hostile_paper(), *papers], count=5)).html
    context, page = open_email(browser, html, 320)
    try:
        overflow = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                 .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                 .map(e => e.tagName + '.' + e.className)"""
        )
        assert overflow == []
    finally:
        context.close()


def test_dark_mode_turns_the_cards_dark_and_the_text_light(browser, renderer, papers, artifacts):
    html = renderer.digest(make_digest(papers, count=3)).html
    context, page = open_email(browser, html, 375, dark=True)
    try:
        card, text = page.evaluate(
            """() => {
                // What is painted behind the snippet, and the snippet's own colour.
                const snippet = document.querySelector('.card p');
                let box = snippet, paint = 'rgba(0, 0, 0, 0)';
                while (box && paint === 'rgba(0, 0, 0, 0)') {
                    paint = getComputedStyle(box).backgroundColor;
                    box = box.parentElement;
                }
                return [paint, getComputedStyle(snippet).color];
            }"""
        )
        assert card == "rgb(31, 41, 55)"
        assert text == "rgb(229, 231, 235)"
        page.screenshot(path=str(artifacts / "digest-375-dark.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("kind", ["confirmation", "goodbye"])
def test_confirmation_and_goodbye_fit_a_phone(browser, renderer, artifacts, kind):
    if kind == "confirmation":
        html = renderer.confirmation("new@example.org", "https://digest.example.org/c/" + "t" * 90)
    else:
        html = renderer.goodbye("old@example.org", "https://digest.example.org/")
    context, page = open_email(browser, html.html, 375)
    try:
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
        assert hrefs and all(h.startswith("https://") for h in hrefs)
        page.screenshot(path=str(artifacts / f"{kind}-375.png"), full_page=True)
    finally:
        context.close()
