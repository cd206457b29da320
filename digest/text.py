"""Untrusted text made safe for each place it goes: the one home of the character classes and of
the cleaning for stored text, email headers, HTML and XML (and of LaTeX made readable).

Feeds are written by strangers: every string from one passes through here before it is stored,
mailed, put in a page or in a feed. Each context has one function; none raises on any input.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from html.parser import HTMLParser

from pylatexenc.latex2text import LatexNodes2Text

__all__ = [
    "BIDI",
    "C0",
    "CONTROLS",
    "LINE_BREAKS",
    "NOT_XML",
    "UNENCODABLE",
    "URL_UNSAFE",
    "display_short",
    "display_text",
    "first_untypable",
    "from_html",
    "from_plain",
    "header_text",
    "html_text",
    "identifier",
    "paper_text",
    "readable_latex",
    "shorten",
    "stored_text",
    "xml_text",
]

# --- the character classes (contents of a regex [...]) -------------------------------------------

C0 = "\x00-\x08\x0b\x0c\x0e-\x1f"
"""The C0 controls but tab, LF and CR: no one types them, XML forbids them, PostgreSQL no NUL."""
CONTROLS = C0 + "\x7f-\x9f"
"""C0, DEL and the C1 controls (where cp1252 bytes read as Latin-1 land)."""
LINE_BREAKS = "\t\n\r\u2028\u2029"
"""What ends a line somewhere: a header, a log line, a JavaScript string (U+2028/2029)."""
BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
"""Bidi marks, embeddings, overrides and isolates, and the BOM: they can reorder what a reader sees."""
UNENCODABLE = "\ud800-\udfff\ufffe\uffff"
"""Lone surrogates (half an emoji cut by a server) no UTF-8 codec takes; the two non-characters."""
NOT_XML = C0 + UNENCODABLE
"""What XML 1.0 forbids even escaped (its Char production), so a document with it is not XML."""
URL_UNSAFE = f'\\s<>"{CONTROLS}{BIDI}{UNENCODABLE}'
"""What never belongs in a URL we print or link: spaces, quotes, angle brackets, the invisible."""

_UNSTORABLE = re.compile(f"[{CONTROLS}{LINE_BREAKS}{UNENCODABLE}]")
_INVISIBLE = re.compile(f"[{CONTROLS}{LINE_BREAKS}{BIDI}{UNENCODABLE}]")
_NOT_XML = re.compile(f"[{NOT_XML}]")
_BIDI = re.compile(f"[{BIDI}]")
_UNTYPABLE = re.compile(f"[{C0}\x7f{UNENCODABLE}]")
_SPACE = re.compile(r"\s+")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


# --- stored text ---------------------------------------------------------------------------------


def stored_text(value: object, limit: int | None = None) -> str:
    """One line of text fit for any database: controls and unencodable characters become spaces,
    whitespace is collapsed, and the result is cut near `limit` characters (with an ellipsis)."""
    text = "" if value is None else str(value)
    text = _SPACE.sub(" ", _UNSTORABLE.sub(" ", text)).strip()
    return shorten(text, limit) if limit is not None else text


def identifier(value: object) -> str:
    """An id or link as stored: invisible characters removed outright (a space would change it)."""
    text = "" if value is None else str(value)
    return _UNSTORABLE.sub("", text).strip()


def from_plain(value: object, limit: int | None = None) -> str:
    """A field a feed declares plain text: entities decoded, every character kept, one line.

    Feeds often escape twice ("&amp;lt;"); one decoding more is harmless on text that names no
    entity, and "<swi>" stays "<swi>".
    """
    text = "" if value is None else str(value)
    if "&" in text:
        # Only complete references: html.unescape alone would read "&notation" as "¬ation".
        text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    return stored_text(text, limit)


def from_html(value: object, limit: int | None = None) -> str:
    """A field a feed declares HTML: HTML's tags stripped (blocks become spaces, scripts vanish)
    but "<think>", which is no HTML element, kept as the text it is; entities decoded, one line."""
    text = "" if value is None else str(value)
    if "<" in text:
        extractor = _TextExtractor()
        extractor.feed(text)
        extractor.close()
        text = "".join(extractor.parts)
    return from_plain(text, limit)


_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
    "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
})  # fmt: skip
_SKIP_TAGS = frozenset({"script", "style", "template", "head", "title"})
_INLINE_TAGS = frozenset({
    "a", "abbr", "area", "audio", "b", "base", "bdi", "bdo", "big", "body", "button", "canvas",
    "caption", "center", "cite", "code", "col", "colgroup", "data", "del", "details", "dfn",
    "dialog", "em", "embed", "fieldset", "font", "form", "html", "i", "iframe", "img", "input",
    "ins", "kbd", "label", "legend", "link", "map", "mark", "math", "menu", "meta", "meter",
    "noscript", "object", "optgroup", "option", "output", "param", "picture", "progress", "q",
    "rp", "rt", "ruby", "s", "samp", "select", "small", "source", "span", "strike", "strong",
    "sub", "summary", "sup", "svg", "tbody", "textarea", "tfoot", "thead", "time", "tt", "u",
    "var", "video", "wbr",
    # MathML, which journals put in abstracts
    "annotation", "menclose", "mfrac", "mi", "mn", "mo", "mover", "mpadded", "mphantom", "mroot",
    "mrow", "ms", "mspace", "msqrt", "mstyle", "msub", "msubsup", "msup", "mtable", "mtd",
    "mtext", "mtr", "munder", "munderover", "semantics",
})  # fmt: skip
"""With the block and skipped ones, the HTML elements: "<swi>" or "<think>" is text, not a tag.
Namespaced tags ("<jats:p>" from journals, "<o:p>" from Word) are markup too."""


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; block elements become spaces, scripts vanish."""

    def __init__(self) -> None:
        # Entities are decoded once, by from_plain, so "&amp;lt;" is read the same in both.
        super().__init__(convert_charrefs=False)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")
        elif tag not in _INLINE_TAGS and ":" not in tag:
            self.handle_data(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")
        elif tag not in _INLINE_TAGS and ":" not in tag:
            self.handle_data(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.handle_data(f"&#{name};")


def first_untypable(text: str) -> int | None:
    """Where the first character no one types is (a control other than tab or a line end, DEL,
    half a surrogate pair), or None: what a form refuses rather than silently changes."""
    match = _UNTYPABLE.search(text)
    return match.start() if match else None


# --- what readers see: email bodies, web pages, email headers -----------------------------------


def display_text(value: object, limit: int | None = None) -> str:
    """One line of inert text for a page or an email body: no controls, bidi marks or unencodable
    characters, whitespace collapsed, cut near `limit` characters with an ellipsis. The template
    engine escapes it for HTML."""
    text = "" if value is None else str(value)
    text = _SPACE.sub(" ", _INVISIBLE.sub(" ", _BIDI.sub("", text))).strip()
    return shorten(text, limit) if limit is not None else text


@lru_cache(maxsize=65536)
def display_short(value: str, limit: int) -> str:
    """`display_text` for short strings that recur across readers (matched terms, author names)."""
    return display_text(value, limit)


def paper_text(value: object, limit: int | None = None) -> str:
    """A paper's title or abstract as readers see it (email, feeds, pages): LaTeX as Unicode,
    then `display_text`. Ranking reads the stored words, never this."""
    return display_text(readable_latex(stored_text(value)), limit)


def header_text(value: object) -> str:
    """A header value made inert: no CR, LF or other controls (no header injection), no bidi
    marks, nothing UTF-8 cannot encode; whitespace collapsed."""
    return display_text(value)


def shorten(text: str, limit: int) -> str:
    """The text, or for a longer one its start cut at a word boundary near `limit`, with "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


# --- XML and HTML documents we write ourselves ---------------------------------------------------


def xml_text(value: object) -> str:
    """Text an XML 1.0 document can hold (the serializer escapes it): forbidden characters removed."""
    text = "" if value is None else str(value)
    return _NOT_XML.sub("", text)


def html_text(value: object) -> str:
    """Text escaped for HTML written by hand (an Atom/RSS entry's HTML content), XML-safe too."""
    return html.escape(xml_text(value), quote=True)


# --- LaTeX ---------------------------------------------------------------------------------------

# A math span: "$" then no space, up to a "$" after no space and before no digit, so that
# "costs $5 and $10" is money, not math.
_MATH = re.compile(r"(?<!\\)\$(?=[^\s$])[^$]*?(?<=[^\s\\])\$(?!\d)")
_MACRO = re.compile(r"\\(?:[A-Za-z]+|[`'^\"~=.])")
# What plain abstracts mean literally but LaTeX reads as markup: a percentage, "&", "~10%".
_LITERAL = re.compile(r"(?<!\\)[%&~$]")
LATEX_MAX_CHARS = 20_000
"""Past this, a field is shown as it is: pylatexenc's time grows with the input."""


def readable_latex(value: str) -> str:
    """LaTeX in a title or abstract as Unicode a reader can follow ("$\\sqrt{T}$" -> "√(T)");
    text without LaTeX, or LaTeX that cannot be read, comes back unchanged."""
    if not value or len(value) > LATEX_MAX_CHARS:
        return value
    if not _MACRO.search(value) and not _MATH.search(value):
        return value
    return _latex_to_text(value)


def _escape_literals(value: str) -> str:
    """Escape what the author meant literally, outside math spans (where "%" never occurs)."""
    parts: list[str] = []
    last = 0
    for span in _MATH.finditer(value):
        parts.append(_LITERAL.sub(_literal, value[last : span.start()]))
        parts.append(span.group(0))
        last = span.end()
    parts.append(_LITERAL.sub(_literal, value[last:]))
    return "".join(parts)


def _literal(match: re.Match[str]) -> str:
    return "\\textasciitilde{}" if match.group(0) == "~" else "\\" + match.group(0)


@lru_cache(maxsize=8192)
def _latex_to_text(value: str) -> str:
    try:
        converted = _converter().latex_to_text(_escape_literals(value))
    except (
        Exception
    ):  # pylatexenc raises many kinds on broken input; the raw text is still readable
        return value
    return _SPACE.sub(" ", _INVISIBLE.sub(" ", converted)).strip() or value


@lru_cache(maxsize=1)
def _converter() -> LatexNodes2Text:
    # keep_comments: a "%" that reaches the parser unescaped still shows, not hides the rest.
    return LatexNodes2Text(math_mode="text", keep_comments=True, strict_latex_spaces=False)
