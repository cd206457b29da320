"""Untrusted text stays well-formed in every place it goes, whatever a feed or a form sends."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from email import message_from_bytes
from email.policy import default as default_policy
from html.parser import HTMLParser

from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest import text

# Any code point, lone surrogates included (JSON can carry them), weighted towards the nasty ones.
NASTY = st.sampled_from(
    [
        *"\x00\x01\x08\x0b\x0c\x1b\x7f\x85\x96\x9f\u2028\u2029\u202e\u2066\u200f\ufeff\ufffe",
        "\ud83d",
        "\udc00",
        "\uffff",
        "\r\n",
        "&amp;lt;",
        "<swi>",
        "<b>",
        "</p>",
        "&#0;",
        "$x$",
    ]
)
ANY_TEXT = st.lists(st.one_of(st.characters(codec=None), NASTY), max_size=60).map("".join)
XML_CHARS = set("\t\n\r")


def is_xml_char(ch: str) -> bool:
    code = ord(ch)
    return (
        ch in XML_CHARS
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def invisible(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or ch in "\u2028\u2029\ufffe\uffff"
    )


@given(ANY_TEXT, st.one_of(st.none(), st.integers(min_value=1, max_value=80)))
@example("a\x00b\ud83dc\u2028d  e", 3)
def test_stored_text_is_one_line_that_any_database_and_codec_takes(value, limit):
    stored = text.stored_text(value, limit)

    stored.encode("utf-8")  # no lone surrogate
    assert not any(invisible(ch) for ch in stored)
    assert all(is_xml_char(ch) for ch in stored)
    assert stored == stored.strip() and "  " not in stored
    if limit is not None:
        assert len(stored) <= limit


@given(ANY_TEXT)
def test_plain_text_keeps_every_visible_character(value):
    # What a reader could see survives: a plain-text field is never read as markup.
    cleaned = text.from_plain(value.replace("&", ""))
    visible = [ch for ch in value.replace("&", "") if not invisible(ch) and not ch.isspace()]
    assert [ch for ch in cleaned if not ch.isspace()] == visible


def test_plain_text_decodes_entities_and_keeps_what_looks_like_tags():
    assert text.from_plain("The model emits &lt;swi&gt; to enter latent mode") == (
        "The model emits <swi> to enter latent mode"
    )
    assert text.from_plain("emits <think> first") == "emits <think> first"
    assert text.from_plain("P&L &notation &amp R&D") == "P&L &notation &amp R&D"
    assert text.from_html("<p>emits &lt;think&gt; <b>first</b></p>") == "emits <think> first"
    # an RSS description is HTML, but "<swi>" in it (escaped once by the feed) is no HTML element
    assert text.from_html("<p>The model emits <swi> then </swi>.</p>") == (
        "The model emits <swi> then </swi>."
    )
    assert text.from_html("<jats:p>We <jats:italic>show</jats:italic> x</jats:p>") == "We show x"


@given(ANY_TEXT)
def test_html_fields_lose_their_tags_but_never_raise(value):
    cleaned = text.from_html(value)
    assert "\n" not in cleaned and all(is_xml_char(ch) for ch in cleaned)


@given(ANY_TEXT)
def test_ids_and_links_hold_nothing_invisible(value):
    cleaned = text.identifier(value)
    cleaned.encode("utf-8")
    assert not any(invisible(ch) for ch in cleaned)


@given(ANY_TEXT, st.one_of(st.none(), st.integers(min_value=1, max_value=80)))
def test_display_text_has_no_controls_or_bidi_marks(value, limit):
    shown = text.display_text(value, limit)

    shown.encode("utf-8")
    assert not any(invisible(ch) or ch in "\u202e\u2066\u200f\ufeff\u061c" for ch in shown)
    if limit is not None:
        assert len(shown) <= limit


@settings(max_examples=200)
@given(ANY_TEXT)
def test_a_header_value_is_one_header_whatever_it_holds(value):
    cleaned = text.header_text(value)
    raw = (
        "Subject: " + cleaned.encode("utf-8").decode("latin-1") + "\r\nX-Next: kept\r\n\r\nbody"
    ).encode("latin-1")

    message = message_from_bytes(raw, policy=default_policy)
    assert message["X-Next"] == "kept"  # nothing in the value started a header of its own
    assert list(message.keys()) == ["Subject", "X-Next"]


@given(ANY_TEXT, ANY_TEXT)
def test_xml_text_always_makes_a_document_that_parses_back(value, attribute):
    root = ET.Element("entry", href=text.xml_text(attribute))
    ET.SubElement(root, "title").text = text.xml_text(value)

    parsed = ET.fromstring(ET.tostring(root, encoding="utf-8"))
    title = parsed.find("title")
    assert title is not None
    # The parser normalizes CR and CRLF to LF: everything else comes back as written.
    assert (title.text or "") == text.xml_text(value).replace("\r\n", "\n").replace("\r", "\n")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.data.append(data)


@given(ANY_TEXT)
def test_html_text_is_only_ever_text_inside_a_page_or_a_feed(value):
    escaped = text.html_text(value)
    collector = _Collector()
    collector.feed(f"<p>{escaped}</p>")
    collector.close()

    assert collector.tags == ["p"]
    ET.fromstring(f"<p>{escaped}</p>".encode())  # and well-formed XML inside an Atom entry


@given(ANY_TEXT)
def test_untypable_characters_are_found_where_they_are(value):
    at = text.first_untypable(value)
    if at is None:
        value.encode("utf-8")
    else:
        assert text.first_untypable(value[:at]) is None


@given(ANY_TEXT)
def test_readable_latex_never_raises_and_stays_one_clean_line(value):
    shown = text.readable_latex(text.stored_text(value))
    shown.encode("utf-8")
    assert not any(invisible(ch) for ch in shown)


def test_latex_becomes_unicode_and_plain_text_is_left_alone():
    assert text.readable_latex(r"Clients with $\mathcal{O}(\sqrt{T})$ Regret") == (
        "Clients with 𝒪(√(T)) Regret"
    )
    assert text.readable_latex(r"error below $\epsilon < 0.05$") == "error below ϵ < 0.05"
    assert text.readable_latex("40% of C++ users & more") == "40% of C++ users & more"
    # what plain abstracts mean literally stays so around the math
    assert text.readable_latex(r"5% better on $\mathcal{D}$, ~10% faster, A&B") == (
        "5% better on 𝒟, ~10% faster, A&B"
    )
    assert text.readable_latex(r"costs $5 and $10 for \alpha") == "costs $5 and $10 for α"
    assert text.readable_latex("The model emits <swi> first") == "The model emits <swi> first"


def test_shorten_cuts_at_a_word_with_an_ellipsis():
    assert text.shorten("federated learning of models", 20) == "federated learning…"
    assert text.shorten("short", 20) == "short"


@given(
    words=st.lists(
        st.one_of(
            st.text("abcdefghijklmnopqrstuvwxyzé·-.,:/", min_size=1, max_size=78),
            st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80),
        ),
        max_size=30,
    ),
    separator=st.sampled_from([" ", " ", " ", "  ", "\t", "\n"]),
    indent=st.sampled_from(["", "  ", "    "]),
    first=st.sampled_from(["", "    ", "12. "]),
)
@settings(max_examples=400)
def test_plain_text_lines_wrap_exactly_as_textwrap_does(
    words: list[str], separator: str, indent: str, first: str
) -> None:
    # The plain-text part's fast word wrap must give textwrap's lines for any text, whether it
    # takes the fast path (single spaces, short words) or falls back.
    from digest.render.text import TEXT_WIDTH, wrap

    line = separator.join(words)
    expected = textwrap.fill(
        line,
        width=TEXT_WIDTH,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    )
    assert wrap(line, indent, first) == expected
