"""Plain-text cleaning and identity for feed entries: HTML to text, arXiv ids, author lists."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from html.parser import HTMLParser

from digest.models import KEY_MAX_CHARS

# New-style ids (2007 on): YYMM.NNNN (to 1412) or YYMM.NNNNN (from 1501), optional version.
_NEW_ID = r"(?P<new>(?:0[7-9]|[1-9]\d)(?:0[1-9]|1[0-2])\.\d{4,5})(?:v\d+)?"
# Old-style ids: archive(.SUBJECT-CLASS)/YYMMNNN, e.g. hep-th/9901001, math.GT/0309136.
_OLD_ID = r"(?P<old>[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]{2})?/\d{7})(?:v\d+)?"
# An id only counts where arXiv put it: its URLs, its "arXiv:" prefix, its OAI identifiers,
# or Hugging Face's paper pages. A bare number elsewhere in a link is not an arXiv id.
_CONTEXT = (
    r"(?:arxiv\.org/(?:abs|pdf|html)/|arxiv:|oai:arxiv\.org:"
    r"|huggingface\.co/papers/|hf\.co/papers/)"
)
_IN_CONTEXT = re.compile(_CONTEXT + r"\s*(?:" + _NEW_ID + "|" + _OLD_ID + r")(?![\d.])", re.I)
_BARE = re.compile(r"\s*(?:" + _NEW_ID + "|" + _OLD_ID + r")\s*")


def paper_key(*candidates: str | None) -> str | None:
    """The arXiv id (no version) in the first candidate that has one (id, link, text), else None."""
    for candidate in candidates:
        if not candidate:
            continue
        bare = _BARE.fullmatch(candidate)
        match = bare or _IN_CONTEXT.search(candidate)
        if match:
            return match.group("new") or _old_style(match.group("old"))
    return None


def _old_style(value: str) -> str:
    # The archive is lower case but a subject class is upper case (math.GT/0309136).
    archive, _, number = value.partition("/")
    name, dot, subject = archive.partition(".")
    return f"{name.lower()}{dot}{subject.upper()}/{number}"


def arxiv_abs_url(key: str) -> str:
    """The abstract page of an arXiv paper (latest version)."""
    return f"https://arxiv.org/abs/{key}"


def arxiv_pdf_url(key: str) -> str:
    """The PDF of an arXiv paper (latest version)."""
    return f"https://arxiv.org/pdf/{key}"


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "td",
        "th",
        "tr",
        "ul",
    ]
)
_SKIP_TAGS = frozenset({"script", "style", "template", "head", "title"})
_SPACE = re.compile(r"\s+")
# XML 1.0 forbids these, yet arXiv abstracts have carried form feeds and escapes.
# control characters, and lone surrogates: JSON can escape half an emoji ("\ud83d") when a
# server cut a string short, and such text cannot be stored, mailed or put in a feed
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ud800-\udfff]")


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; block elements become spaces, scripts vanish."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def short_key(key: str) -> str:
    """The key itself, or for one over KEY_MAX_CHARS its start and a digest of the whole (stable)."""
    if len(key) <= KEY_MAX_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{key[: KEY_MAX_CHARS - 40]}#sha256:{digest}"


def strip_control(value: str) -> str:
    """The value without control characters (for ids and links, where a space would not do)."""
    return _CONTROL.sub("", value)


def clean_text(value: str | None) -> str:
    """Plain text for ranking: tags stripped, entities decoded, whitespace collapsed; LaTeX kept."""
    if not value:
        return ""
    if "<" in value:
        extractor = _TextExtractor()
        extractor.feed(value)
        extractor.close()
        value = "".join(extractor.parts)
    # Feeds sometimes escape twice ("&amp;amp;"); one more unescape is harmless on clean text
    # that has no "&" left, and LaTeX never uses "&name;".
    value = html.unescape(value)
    return _SPACE.sub(" ", _CONTROL.sub(" ", value)).strip()


_ANNOUNCE = re.compile(
    r"^\s*arXiv:\s*\S+\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?", re.I
)


def split_arxiv_description(text: str) -> tuple[str | None, str]:
    """Split arXiv's "arXiv:ID Announce Type: T Abstract: ..." into (announce type, abstract)."""
    match = _ANNOUNCE.match(text)
    if not match:
        return None, text
    return match.group("type").lower(), text[match.end() :].strip()


_AUTHOR_SPLIT = re.compile(r"\s*(?:,|;|\band\b|&)\s*")


def split_authors(value: str) -> tuple[str, ...]:
    """Split a "A, B and C" author line (arXiv's dc:creator) into names."""
    names = (author_name(part) for part in _AUTHOR_SPLIT.split(value))
    return tuple(name for name in names if name)


_TEX_ACCENT = re.compile(r"""\{?\\([`'^"~=.uvHc])\s*\{?([A-Za-z])\}?\}?""")
_COMBINING = {
    "`": "\u0300", "'": "\u0301", "^": "\u0302", "~": "\u0303", "=": "\u0304",
    "u": "\u0306", ".": "\u0307", '"': "\u0308", "H": "\u030b", "v": "\u030c", "c": "\u0327",
}  # fmt: skip


def author_name(value: str | None) -> str:
    """A person's name as text: TeX accents (L\\'opez, {\\"u}) become letters (López, ü)."""
    text = clean_text(value)
    if "\\" in text:
        text = _TEX_ACCENT.sub(lambda m: m.group(2) + _COMBINING[m.group(1)], text)
        text = unicodedata.normalize("NFC", text)
    return text


def dedupe(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Keep the first occurrence of each non-empty value, in order."""
    seen: dict[str, None] = {}
    for value in values:
        if value and value not in seen:
            seen[value] = None
    return tuple(seen)
