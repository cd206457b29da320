"""A reader's digest email: what it says, in HTML and plain text, whatever the feeds send."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from html import unescape
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import EmailSettings, SiteSettings, resource_dir
from digest.models import Match, Paper
from digest.render import (
    HTML_SIZE_LIMIT,
    TEMPLATE_NAMES,
    EmailRenderer,
    TemplateError,
    check_html,
    compile_mjml,
    lint_mjml,
)
from tests.email_fixtures import HOSTILE_TITLE, hostile_paper, make_digest

pytest_plugins = ["tests.email_fixtures"]

BUILTIN = resource_dir("templates") / "email"
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def visible_text(html: str) -> str:
    """Roughly what a reader sees: tags and the head dropped, entities decoded."""
    body = html.split("<body", 1)[1]
    return unescape(re.sub(r"<[^>]+>", " ", body))


def test_digest_tells_the_date_the_count_and_the_top_paper(renderer, papers):
    rendered = renderer.digest(make_digest(papers, count=7))
    top = papers[0].title

    assert rendered.subject.startswith("7 new papers for 27 Nov: ")
    assert rendered.subject.endswith(top) or "…" in rendered.subject
    assert len(rendered.subject) <= 100
    seen = visible_text(rendered.html)
    assert "Thursday, 27 November 2025" in seen
    assert "7 new papers matched your profile" in seen
    assert "Thursday, 27 November 2025" in rendered.text
    assert "7 new papers matched your profile" in rendered.text


def test_each_paper_shows_title_link_authors_snippet_terms_and_pdf(renderer, papers):
    rendered = renderer.digest(make_digest(papers, count=10))
    html, text = rendered.html, rendered.text

    for paper in papers[:10]:
        assert f'href="{paper.url}"' in html
        assert paper.url in text
        if paper.pdf_url:
            assert f'href="{paper.pdf_url}"' in html
            assert paper.pdf_url in text
    many = next(p for p in papers[:10] if len(p.authors) > 4)
    assert f"{', '.join(many.authors[:3])} et al." in unescape(html)
    assert f"{', '.join(many.authors[:3])} et al." in text
    assert "Matched:" in html and "federated learning" in html
    assert "matched: federated learning" in text
    # The snippet is the sentence where the terms matched, the terms emphasised; not the abstract.
    assert "While <b>Federated Learning</b> (<b>FL</b>) is gaining" in html
    assert "training machine learning models" in html  # "learning" alone is no evidence
    assert "While *Federated Learning* (*FL*) is gaining" in text
    assert papers[0].abstract[-80:] not in unescape(html)


def test_plain_text_is_readable_in_a_terminal(renderer, papers):
    text = renderer.digest(make_digest(papers)).text
    for line in text.splitlines():
        if "http" not in line:
            assert len(line) <= 72, line
    assert "\r" not in text and "<" not in text.replace("<diffusion>", "")
    assert "Unsubscribe: https://digest.example.org/unsubscribe/" in text
    assert "Your RSS feed: https://digest.example.org/feeds/" in text
    assert "12 rue des Chercheurs" in text


def test_footer_says_why_and_offers_preferences_feed_and_unsubscribe(renderer, papers):
    digest = make_digest(papers)
    seen = visible_text(renderer.digest(digest).html)
    assert "ada@example.org" in seen
    assert '"federated learning", distillation, diffusion models' in seen
    for label in ("Manage preferences", "Your RSS feed", "Unsubscribe"):
        assert label in seen
    assert "12 rue des Chercheurs, 75005 Paris" in seen


def test_trending_block_and_fallback_are_explained(renderer, papers):
    normal = renderer.digest(make_digest(papers, count=3, trending=2))
    assert "Trending today" in normal.html and "Trending today" in normal.text
    assert papers[3].title in unescape(normal.html)

    fallback = renderer.digest(make_digest(papers, count=3, trending=3, fallback=True))
    assert fallback.subject.startswith("No matches for 27 Nov, trending instead: ")
    for part in (visible_text(fallback.html), " ".join(fallback.text.split())):
        assert "No new papers matched your profile today" in part
        assert "upvoted most today instead" in part
        assert papers[3].title in part


def test_an_unreachable_source_is_mentioned_in_both_parts(renderer, papers):
    rendered = renderer.digest(make_digest(papers, failed=("arXiv cs.LG",)))
    note = (
        "arXiv cs.LG could not be reached when this digest was put together, "
        "so some of its papers may be missing here."
    )
    assert note in visible_text(rendered.html)
    assert note in rendered.text.replace("\n", " ")


def test_hostile_paper_renders_inert(renderer, papers):
    evil = hostile_paper()
    digest = make_digest([evil, *papers], count=3)
    rendered = renderer.digest(digest)
    html, text = rendered.html, rendered.text

    assert "<script" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "<img src=x" not in html and 'href="javascript:' not in html
    assert "<style>body" not in html
    assert not BIDI.search(html) and not BIDI.search(text) and not BIDI.search(rendered.subject)
    assert "\x00" not in html + text and "\x1b" not in html + text
    # Header-like text stays in the middle of a line: it can never become a header or a body break.
    assert "\r" not in rendered.subject + text and "\n" not in rendered.subject
    for line in text.splitlines():
        assert not line.startswith(("Bcc:", "Subject:", "X-Evil:"))
    # 5,000 characters are cut to something a reader can take in.
    assert "A" * 400 not in html and "A" * 400 not in text
    assert len(html) < HTML_SIZE_LIMIT
    assert "Sybil 1" not in html and "Sybil 0 et al." in html  # 42 authors: the first three


def test_hostile_title_keeps_the_pdf_link_out_when_it_is_not_a_clean_url(renderer):
    rendered = renderer.digest(make_digest([hostile_paper()], count=1, trending=0))
    assert "evil.pdf" not in rendered.html and "X-Evil" not in rendered.html.split("<body")[0]


def test_many_long_papers_stay_under_gmails_clipping_size(renderer, papers):
    long_papers = [
        replace(p, key=f"{p.key}-{i}", title=p.title + " " + "x" * 250, abstract=p.abstract * 3)
        for i, p in enumerate(papers * 4)
    ]
    rendered = renderer.digest(make_digest(long_papers, count=100, trending=3))
    assert len(rendered.html.encode()) < HTML_SIZE_LIMIT
    assert "more matching papers did not fit in this email" in rendered.html
    assert rendered.subject.startswith("100 new papers")


def test_confirmation_and_goodbye_use_the_same_machinery(renderer):
    confirm = renderer.confirmation("new@example.org", "https://digest.example.org/confirm/abc")
    assert "Confirm your subscription" in confirm.subject
    assert 'href="https://digest.example.org/confirm/abc"' in confirm.html
    assert "https://digest.example.org/confirm/abc" in confirm.text
    assert "new@example.org" in confirm.text

    bye = renderer.goodbye("old@example.org", "https://digest.example.org/")
    assert "unsubscribed" in bye.subject
    assert "old@example.org will get no more digests" in visible_text(bye.html)
    assert "Subscribe again: https://digest.example.org/" in bye.text


def test_confirmation_refuses_a_link_that_is_not_absolute(renderer):
    with pytest.raises(ValueError, match="absolute http"):
        renderer.confirmation("new@example.org", "/confirm/abc")


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_builtin_templates_compile_without_warnings(name):
    source = (BUILTIN / f"{name}.mjml").read_text()
    source = source.replace(
        '<mj-include path="_head.mjml" />', (BUILTIN / "_head.mjml").read_text()
    )
    assert lint_mjml(source) == []
    html = compile_mjml(source)
    assert check_html(html) == []
    assert "fonts.googleapis" not in html  # no remote fonts to load or track
    assert '<meta name="color-scheme" content="light dark">' in html
    assert max(len(line) for line in html.splitlines()) < 998


def test_lint_catches_what_mjml_would_warn_about():
    source = """<mjml><mj-body><mj-section><mj-text>x</mj-text><mj-column colour="red">
    <mj-image src="https://example.org/a.png" /><mj-foo></mj-foo></mj-column></mj-section></mj-body></mjml>"""
    problems = "\n".join(lint_mjml(source))
    assert "<mj-text> cannot be used inside <mj-section>" in problems
    assert "unknown attribute 'colour'" in problems
    assert "<mj-image> needs alt" in problems and "<mj-image> needs height" in problems
    assert "unknown element <mj-foo>" in problems


def test_operator_templates_override_and_fall_back(tmp_path, site, email_settings, papers):
    (tmp_path / "digest.txt").write_text("Hello from the operator: {{ headline }}\n")
    settings = email_settings.model_copy(update={"templates_dir": str(tmp_path)})
    renderer = EmailRenderer(site=site, email=settings)

    rendered = renderer.digest(make_digest(papers, count=2))
    assert rendered.text == "Hello from the operator: 2 new papers matched your profile\n"
    assert "Manage preferences" in rendered.html  # the built-in MJML still serves the HTML


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("digest.mjml", "<mjml><mj-body><mj-section>", "<mj-section> is never closed"),
        (
            "digest.mjml",
            "<mjml><mj-body><mj-section><mj-column><mj-text>{% if x %}</mj-text>"
            "</mj-column></mj-section></mj-body></mjml>",
            "line 1",
        ),
        (
            "digest.mjml",
            "<mjml><mj-body><mj-section><mj-column><mj-textt>x</mj-textt>"
            "</mj-column></mj-section></mj-body></mjml>",
            "unknown element <mj-textt>",
        ),
        ("confirmation.txt", "Confirm at {{ confirm_link }}\n", "'confirm_link' is undefined"),
        ("goodbye.txt", "{% for x in %}\n", "goodbye.txt: line 1"),
    ],
)
def test_a_broken_template_stops_before_any_send_and_names_itself(
    tmp_path, site, email_settings, filename, content, expected
):
    (tmp_path / filename).write_text(content)
    settings = email_settings.model_copy(update={"templates_dir": str(tmp_path)})
    with pytest.raises(TemplateError) as caught:
        EmailRenderer(site=site, email=settings)
    message = str(caught.value)
    assert str(tmp_path / filename) in message
    assert expected in message


def test_a_missing_templates_folder_is_named(tmp_path):
    with pytest.raises(TemplateError, match=r"digest\.mjml: not found in"):
        EmailRenderer(tmp_path / "nowhere", site=SiteSettings(), email=EmailSettings())


def test_html_is_seven_bit_and_small(renderer, papers):
    unicode_paper = Paper(
        key="u",
        title="Gödel, Escher, Bach — 再び ∑ 🤖",
        abstract="Ça marche.",
        url="https://e.org/u",
    )
    rendered = renderer.digest(make_digest([unicode_paper, *papers], count=10))
    assert rendered.html.isascii()
    assert "Gödel, Escher, Bach — 再び ∑ 🤖" in unescape(rendered.html)
    assert "Gödel, Escher, Bach — 再び ∑ 🤖" in rendered.text
    assert len(rendered.html) < 60_000


def test_subject_never_carries_a_line_break(renderer):
    paper = Paper(key="t", title=HOSTILE_TITLE, url="https://e.org/t")
    rendered = renderer.digest(make_digest([paper], count=1))
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert len(rendered.subject) <= 100


def test_matches_with_no_terms_still_render(renderer, papers):
    digest = make_digest(papers, count=2)
    digest = replace(digest, matches=tuple(Match(m.paper, m.score) for m in digest.matches))
    rendered = renderer.digest(digest)
    assert "Matched:" not in rendered.html


def test_builtin_template_folder_exists():
    assert Path(BUILTIN, "digest.mjml").is_file()


UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    title=st.text(alphabet=st.characters(codec=None), max_size=120),
    abstract=st.text(alphabet=st.characters(codec=None), max_size=300),
    author=st.text(alphabet=st.characters(codec=None), max_size=40),
)
def test_any_text_a_feed_brought_renders_to_inert_mail(renderer, papers, title, abstract, author):
    paper = replace(papers[0], title=title, abstract=abstract, authors=(author,))

    rendered = renderer.digest(make_digest([paper, *papers[1:]], count=3))

    for part in (rendered.subject, rendered.html, rendered.text):
        part.encode("utf-8")
        assert not UNSAFE.search(part)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert "<script" not in rendered.html.lower()


GOLDEN = Path(__file__).parent / "data" / "email" / "golden"


@pytest.mark.parametrize("part", ["html", "text"])
def test_the_digest_matches_its_golden_copy(renderer, papers, part):
    """A golden copy of one digest: any change to the layout shows up as a reviewable diff.

    After an intended change, regenerate with DIGEST_UPDATE_GOLDEN=1 and review the diff.
    """
    digest = make_digest(papers, count=4, trending=2, failed=("arXiv cs.LG",))
    *full, last = digest.matches
    rendered = renderer.digest(replace(digest, matches=(*full, replace(last, partial=True))))
    body = rendered.html if part == "html" else rendered.text
    golden = GOLDEN / f"digest.{'html' if part == 'html' else 'txt'}"
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(body, encoding="utf-8")
    assert body == golden.read_text(encoding="utf-8"), f"differs from {golden}"
