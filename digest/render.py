"""Pure rendering of emails: digest data in, subject + HTML + plain text out.

The MJML layouts are compiled to HTML once (cached by content hash) and become Jinja2 templates with
autoescaping on; each message then costs one Jinja fill. Feed text is untrusted: digest.text cleans it
of control and bidi characters, collapses it to one line, shortens it and shows titles' and abstracts'
LaTeX as Unicode before it reaches any template.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from mjml import mjml2html

from digest.config import EmailSettings, SiteSettings, resource_dir
from digest.models import (
    Digest,
    DigestLinks,
    Match,
    Paper,
    RenderedEmail,
    SourceStatus,
    Subscriber,
)
from digest.text import URL_UNSAFE, display_short, display_text, paper_text, shorten

__all__ = [
    "HTML_SIZE_LIMIT",
    "TEMPLATE_NAMES",
    "EmailRenderer",
    "TemplateError",
    "compile_mjml",
]

TEMPLATE_NAMES = ("digest", "confirmation", "already_subscribed", "goodbye")
HTML_SIZE_LIMIT = 100_000
"""Gmail clips messages whose HTML passes about 102 KB; stay under it."""

TITLE_LIMIT = 300
SNIPPET_LIMIT = 420
SUBJECT_LIMIT = 100
TEXT_WIDTH = 72
MAX_AUTHORS = 4

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


class TemplateError(Exception):
    """An email template failed to compile or render; the message names the file and the error."""

    def __init__(self, template: str, error: str) -> None:
        super().__init__(f"email template {template}: {error}")
        self.template = template
        self.error = error


# --- cleaning untrusted text -------------------------------------------------------------------


_URL_BAD = re.compile(f"[{URL_UNSAFE}]")
_URL_START = re.compile(r"(?i)https?://[^/?#@\s\\]")


def safe_url(value: object) -> str:
    """The URL when it is an absolute http(s) link without whitespace, else an empty string."""
    url = "" if value is None else str(value).strip()
    if not url or len(url) > 2000 or not _URL_START.match(url) or _URL_BAD.search(url):
        return ""
    return url


def safe_link(value: object) -> str:
    """An http(s) URL or a mailto: address for the footer; anything else becomes empty."""
    url = "" if value is None else str(value).strip()
    if url.lower().startswith("mailto:"):
        return "" if _URL_BAD.search(url) or len(url) > 500 else url
    return safe_url(url)


def snippet(abstract: str, limit: int = SNIPPET_LIMIT) -> str:
    """The first two or three sentences of an abstract, within `limit` characters."""
    text = display_text(abstract)
    if len(text) <= limit:
        sentences = _SENTENCE_END.split(text)
        return " ".join(sentences[:3]) if len(sentences) > 3 else text
    sentences = _SENTENCE_END.split(text)
    chosen: list[str] = []
    size = 0
    for sentence in sentences[:3]:
        if chosen and size + len(sentence) + 1 > limit:
            break
        chosen.append(sentence)
        size += len(sentence) + 1
    result = " ".join(chosen)
    return shorten(result, limit) if len(result) > limit else result


def byline(paper: Paper) -> str:
    """Authors (shortened past a few), categories and upvotes on one line."""
    authors = [a for a in (display_text(a, 80) for a in paper.authors) if a]
    if len(authors) > MAX_AUTHORS:
        names = ", ".join(authors[:3]) + f" and {len(authors) - 3} others"
    else:
        names = ", ".join(authors)
    parts = [names] if names else []
    categories = [c for c in (display_text(c, 30) for c in paper.categories[:4]) if c]
    if categories:
        parts.append(", ".join(categories))
    if paper.upvotes:
        parts.append(f"{paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class PaperView:
    """A paper as the templates see it: every field already cleaned and shortened."""

    title: str
    url: str
    pdf_url: str
    byline: str
    snippet: str
    upvotes: int | None
    matched: tuple[str, ...] = ()


@lru_cache(maxsize=4096)
def _paper_view(paper: Paper) -> PaperView:
    # A day's papers are shared by thousands of subscribers: clean each one once.
    pdf = safe_url(paper.pdf_url)
    return PaperView(
        title=paper_text(paper.title, TITLE_LIMIT) or "(untitled)",
        url=safe_url(paper.url) or pdf,
        pdf_url=pdf,
        byline=byline(paper),
        snippet=snippet(paper_text(paper.abstract)),
        upvotes=paper.upvotes if paper.upvotes and paper.upvotes > 0 else None,
    )


def paper_view(match: Match) -> PaperView:
    """The template view of one recommended paper, with the profile terms that matched it."""
    return (
        _paper_view(match.paper) if not match.matched else _with_terms(match.paper, match.matched)
    )


@lru_cache(maxsize=16384)
def _with_terms(paper: Paper, matched: tuple[str, ...]) -> PaperView:
    view = _paper_view(paper)
    terms = tuple(t for t in (display_short(t, 60) for t in matched[:8]) if t)
    return PaperView(
        view.title, view.url, view.pdf_url, view.byline, view.snippet, view.upvotes, terms
    )


class Memo:
    """`memo(macro, *args)` in a template: a macro's output cached by its arguments.

    A paper's card is the same for every subscriber it matches, so it is rendered once per run.
    Only for macros whose output depends on their arguments alone.
    """

    def __init__(self, limit: int = 20_000, *, ascii_html: bool = False) -> None:
        self.limit = limit
        self.ascii_html = ascii_html
        self.cache: dict[tuple[Any, ...], Any] = {}

    def __call__(self, macro: Any, *args: Any) -> Any:
        key = (macro.name, *args)
        found = self.cache.get(key)
        if found is None:
            if len(self.cache) >= self.limit:
                self.cache.clear()
            found = macro(*args)
            if self.ascii_html and not found.isascii():
                # Character references once per card, not once per message (the part stays 7-bit).
                found = Markup(found.encode("ascii", "xmlcharrefreplace").decode("ascii"))
            self.cache[key] = found
        return found


@lru_cache(maxsize=16384)
def wrap(text: str, indent: str = "", first: str = "") -> str:
    """Fill `text` to the plain-text width; cached because the same paper text recurs per subscriber."""
    return textwrap.fill(
        str(text),
        width=TEXT_WIDTH,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    )


# --- MJML compilation and linting --------------------------------------------------------------

_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>")
_ATTR = re.compile(r"([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>/=`]+))?")
_INCLUDE = re.compile(r"<mj-include\s+path=\"([^\"]+)\"\s*(?:/>|>\s*</mj-include>)")
_RAW_CONTENT = {
    "mj-text",
    "mj-button",
    "mj-raw",
    "mj-style",
    "mj-title",
    "mj-preview",
    "mj-table",
    "mj-navbar-link",
    "mj-social-element",
    "mj-accordion-title",
    "mj-accordion-text",
}
_CONTENT = {
    "mj-accordion",
    "mj-button",
    "mj-carousel",
    "mj-divider",
    "mj-image",
    "mj-raw",
    "mj-social",
    "mj-spacer",
    "mj-table",
    "mj-text",
    "mj-navbar",
}
_CHILDREN: dict[str, set[str]] = {
    "mjml": {"mj-head", "mj-body"},
    "mj-head": {
        "mj-attributes",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
    },
    "mj-body": {"mj-raw", "mj-section", "mj-wrapper", "mj-hero"},
    "mj-wrapper": {"mj-hero", "mj-raw", "mj-section"},
    "mj-section": {"mj-column", "mj-group", "mj-raw"},
    "mj-group": {"mj-column", "mj-raw"},
    "mj-column": _CONTENT,
    "mj-hero": _CONTENT,
    "mj-social": {"mj-social-element", "mj-raw"},
    "mj-navbar": {"mj-navbar-link", "mj-raw"},
    "mj-accordion": {"mj-accordion-element", "mj-raw"},
    "mj-accordion-element": {"mj-accordion-title", "mj-accordion-text", "mj-raw"},
    "mj-carousel": {"mj-carousel-image"},
    "mj-html-attributes": {"mj-selector"},
    "mj-selector": {"mj-html-attribute"},
}
_PAD = {"padding", "padding-top", "padding-bottom", "padding-left", "padding-right"}
_BORDER = {"border", "border-top", "border-bottom", "border-left", "border-right", "border-radius"}
_COMMON = {"css-class", "mj-class"}
_FONT = {
    "color",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "letter-spacing",
    "text-decoration",
    "text-transform",
    "align",
    "container-background-color",
}
_ATTRIBUTES: dict[str, set[str]] = {
    "mjml": {"lang", "dir", "owa"},
    "mj-head": set(),
    "mj-body": {"width", "background-color"} | _COMMON,
    "mj-section": {
        "background-color",
        "background-url",
        "background-repeat",
        "background-size",
        "background-position",
        "background-position-x",
        "background-position-y",
        "direction",
        "full-width",
        "text-align",
        "text-padding",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-column": {
        "background-color",
        "inner-background-color",
        "inner-border",
        "inner-border-radius",
        "vertical-align",
        "width",
        "direction",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-text": _FONT | {"height"} | _PAD | _COMMON,
    "mj-button": _FONT
    | {
        "background-color",
        "height",
        "href",
        "inner-padding",
        "rel",
        "target",
        "text-align",
        "title",
        "vertical-align",
        "width",
        "name",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-image": {
        "align",
        "alt",
        "container-background-color",
        "fluid-on-mobile",
        "height",
        "href",
        "name",
        "rel",
        "sizes",
        "src",
        "srcset",
        "target",
        "title",
        "usemap",
        "width",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-divider": {"border-color", "border-style", "border-width", "container-background-color"}
    | {"width", "align"}
    | _PAD
    | _COMMON,
    "mj-spacer": {"container-background-color", "height"} | _PAD | _COMMON,
    "mj-raw": {"position"},
    "mj-include": {"path", "type", "css-inline"},
    "mj-style": {"inline"},
    "mj-breakpoint": {"width"},
    "mj-font": {"name", "href"},
    "mj-title": set(),
    "mj-preview": set(),
    "mj-attributes": set(),
}
_KNOWN_TAGS = (
    set(_ATTRIBUTES)
    | set(_CHILDREN)
    | {
        "mj-all",
        "mj-class",
        "mj-social-element",
        "mj-navbar-link",
        "mj-carousel-image",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-html-attribute",
        "mj-table",
    }
)
_LINE_BREAK = re.compile(
    r">(?=<(?:/?(?:table|tbody|tr|td|div|p|h[1-6]|meta|style|title|head|body)\b|!--))"
)
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_COLOR_SCHEME = (
    '<meta name="color-scheme" content="light dark">\n'
    '<meta name="supported-color-schemes" content="light dark">\n'
)

_PREVIEW_STYLE = (
    '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;">'
)

_PREVIEW_HIDDEN = (
    '<div style="display:none;max-height:0px;max-width:0px;opacity:0;overflow:hidden;'
    'mso-hide:all;">'
)

_COMPILED: dict[str, str] = {}


def lint_mjml(source: str) -> list[str]:
    """What mjml's validator would warn about: unknown tags or attributes, misplaced elements, bare images."""
    problems: list[str] = []
    stack: list[str] = []
    raw_until: str | None = None
    for found in _TAG.finditer(source):
        closing, name, attrs, selfclose = found.groups()
        line = source.count("\n", 0, found.start()) + 1
        if raw_until is not None:
            if closing and name == raw_until:
                raw_until = None
                stack.pop()
            continue
        if closing:
            if not stack or stack[-1] != name:
                problems.append(f"line {line}: </{name}> closes nothing open")
            else:
                stack.pop()
            continue
        if name not in _KNOWN_TAGS:
            problems.append(f"line {line}: unknown element <{name}>")
        parent = stack[-1] if stack else None
        in_attributes = parent in ("mj-attributes", "mj-class", "mj-all")
        if parent is None and name != "mjml":
            problems.append(f"line {line}: <{name}> outside <mjml>")
        elif parent is not None and not in_attributes:
            allowed = _CHILDREN.get(parent)
            if allowed is not None and name not in allowed:
                problems.append(f"line {line}: <{name}> cannot be used inside <{parent}>")
        seen = {m.group(1): (m.group(2) or "").strip("\"'") for m in _ATTR.finditer(attrs)}
        known = _ATTRIBUTES.get(name)
        if known is not None and name not in ("mj-all", "mj-class"):
            for attr in seen:
                if attr not in known:
                    problems.append(f"line {line}: <{name}> has unknown attribute {attr!r}")
        if name == "mj-image" and not in_attributes:
            for required in ("alt", "width", "height"):
                if required not in seen:
                    problems.append(f"line {line}: <mj-image> needs {required}")
        if not selfclose:
            stack.append(name)
            if name in _RAW_CONTENT:
                raw_until = name
    if stack:
        problems.append(f"<{stack[-1]}> is never closed")
    return problems


def compile_mjml(source: str) -> str:
    """MJML to HTML, cached by content hash; also adds dark-mode meta tags and safe line breaks."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    cached = _COMPILED.get(digest)
    if cached is not None:
        return cached
    html = mjml2html(source, disable_comments=True, fonts={})
    html = html.replace("<head>", "<head>\n" + _COLOR_SCHEME, 1)
    # MJML hides the preview text with a 1px white font; spam filters score that as invisible
    # text. display:none with zero height hides it just as well.
    html = html.replace(_PREVIEW_STYLE, _PREVIEW_HIDDEN, 1)
    # Whitespace between block and table tags renders as nothing; it keeps lines short for SMTP.
    html = _LINE_BREAK.sub(">\n", html)
    _COMPILED[digest] = html
    return html


def check_html(html: str) -> list[str]:
    """Problems in compiled HTML: images without alt or size, non-ASCII inside <style>."""
    problems = []
    for img in _IMG.findall(html):
        for attr in ("alt=", "width=", "height="):
            if attr not in img:
                problems.append(f"{img[:60]}… has no {attr[:-1]}")
    for style in _STYLE_BLOCK.findall(html):
        if not style.isascii():
            problems.append("a <style> block holds non-ASCII characters")
    return problems


# --- the renderer --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FooterLink:
    label: str
    url: str


class EmailRenderer:
    """Compiles the email templates once and renders digests, confirmations and goodbyes."""

    def __init__(
        self,
        templates_dir: Path | None = None,
        *,
        site: SiteSettings,
        email: EmailSettings,
    ) -> None:
        builtin = Path(templates_dir) if templates_dir else resource_dir("templates") / "email"
        self.dirs: tuple[Path, ...] = (
            (Path(email.templates_dir).expanduser(), builtin) if email.templates_dir else (builtin,)
        )
        self.site = site
        self.email = email
        self._site_title = display_text(site.title, 80) or "Paper Digest"
        self._postal = display_text(email.postal_address, 300)
        self._html_env = jinja2.Environment(
            autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False
        )
        self._text_env = jinja2.Environment(
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self._text_env.filters["wrap"] = _wrap_filter
        self._html: dict[str, tuple[str, jinja2.Template]] = {}
        self._text: dict[str, tuple[str, jinja2.Template]] = {}
        for name in TEMPLATE_NAMES:
            self._html[name] = self._load_html(name)
            self._text[name] = self._load_text(name)
        self._rehearse()

    # loading ------------------------------------------------------------------------------------

    def _find(self, filename: str) -> Path:
        for folder in self.dirs:
            path = folder / filename
            if path.is_file():
                return path
        searched = ", ".join(str(d) for d in self.dirs)
        raise TemplateError(filename, f"not found in {searched}")

    def _read(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(str(path), f"cannot be read: {exc}") from None

    def _expand_includes(self, source: str, path: Path, depth: int = 0) -> str:
        if depth > 5:
            raise TemplateError(str(path), "mj-include nests deeper than 5 levels")

        def include(found: re.Match[str]) -> str:
            part = self._find(found.group(1))
            return self._expand_includes(self._read(part), part, depth + 1)

        return _INCLUDE.sub(include, source)

    def _load_html(self, name: str) -> tuple[str, jinja2.Template]:
        path = self._find(f"{name}.mjml")
        source = self._expand_includes(self._read(path), path)
        try:
            self._html_env.parse(source)  # Jinja syntax errors with the MJML file's line numbers
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(str(path), f"line {exc.lineno}: {exc.message}") from None
        problems = lint_mjml(source)
        if problems:
            raise TemplateError(str(path), "; ".join(problems))
        try:
            html = compile_mjml(source)
        except Exception as exc:  # mrml raises ValueError; any failure must name the file
            raise TemplateError(str(path), f"MJML does not compile: {exc}") from None
        problems = check_html(html)
        if problems:
            raise TemplateError(str(path), "; ".join(problems))
        try:
            memo = Memo(ascii_html=True)
            return str(path), self._html_env.from_string(html, globals={"memo": memo})
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(str(path), f"after MJML compilation: {exc.message}") from None

    def _load_text(self, name: str) -> tuple[str, jinja2.Template]:
        path = self._find(f"{name}.txt")
        try:
            return str(path), self._text_env.from_string(self._read(path), globals={"memo": Memo()})
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(str(path), f"line {exc.lineno}: {exc.message}") from None

    def _rehearse(self) -> None:
        """Render every template once with sample data so a broken one stops the run before any send."""
        sample = _sample_digest()
        self.digest(sample)
        self.digest(_replace_digest(sample, fallback=True, matches=()))
        self.confirmation("reader@example.org", self.site.base_url + "/confirm/sample")
        self.already_subscribed("reader@example.org", self.site.base_url + "/preferences/sample")
        self.goodbye("reader@example.org", self.site.base_url + "/")

    # rendering ----------------------------------------------------------------------------------

    def _fill(self, name: str, context: dict[str, Any]) -> tuple[str, str]:
        html_path, html_template = self._html[name]
        text_path, text_template = self._text[name]
        try:
            html = html_template.render(context)
        except Exception as exc:
            raise TemplateError(html_path, f"cannot render: {exc}") from exc
        try:
            text = text_template.render(context)
        except Exception as exc:
            raise TemplateError(text_path, f"cannot render: {exc}") from exc
        # Non-ASCII as character references keeps the HTML part 7-bit; <style> is checked ASCII.
        if not html.isascii():
            html = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
        while (
            "\n\n\n\n" in text
        ):  # at most two blank lines in a row (str.replace beats a regex here)
            text = text.replace("\n\n\n\n", "\n\n\n")
        text = text.strip("\n") + "\n"
        return html, text

    def digest(self, digest: Digest) -> RenderedEmail:
        """Subject, HTML and text of one subscriber's digest."""
        matches = digest.matches
        trending = digest.trending
        if digest.fallback and not matches:
            matches, trending = trending, ()
        context = self._digest_context(digest, matches, trending)
        html, text = self._fill("digest", context)
        if len(html) > HTML_SIZE_LIMIT and len(matches) > 1:
            html, text = self._fit(digest, matches, trending)
        return RenderedEmail(subject=context["subject"], html=html, text=text)

    def _fit(
        self, digest: Digest, matches: tuple[Match, ...], trending: tuple[Match, ...]
    ) -> tuple[str, str]:
        """Drop papers from the end until the HTML fits under Gmail's clipping size."""
        keep = len(matches)
        while True:
            keep = max(1, keep * 3 // 4)
            context = self._digest_context(digest, matches[:keep], trending, total=len(matches))
            html, text = self._fill("digest", context)
            if len(html) <= HTML_SIZE_LIMIT or keep == 1:
                return html, text

    def _digest_context(
        self,
        digest: Digest,
        matches: tuple[Match, ...],
        trending: tuple[Match, ...],
        total: int | None = None,
    ) -> dict[str, Any]:
        papers = [paper_view(m) for m in matches]
        count = len(papers) if total is None else total
        day = digest.digest_date
        short = f"{day.day} {day:%b}"
        date_long = f"{day:%A}, {day.day} {day:%B %Y}"
        top = papers[0].title if papers else ""
        if digest.fallback:
            headline = "No new papers matched your profile today"
            prefix = f"No matches for {short}, trending instead: "
        elif count:
            headline = f"{count} new paper{'s' if count != 1 else ''} matched your profile"
            prefix = f"{count} new paper{'s' if count != 1 else ''} for {short}: "
        else:
            headline = "No new papers matched your profile today"
            prefix = f"No new papers matched on {short}"
        subject = prefix + shorten(top, max(30, SUBJECT_LIMIT - len(prefix))) if top else prefix
        notes = [
            f"{display_text(s.name, 60)} could not be reached when this digest was put together, "
            "so some of its papers may be missing here."
            for s in digest.failed_sources
            if not s.ok
        ]
        if total is not None and total > len(papers):
            notes.append(
                f"{total - len(papers)} more matching papers did not fit in this email; "
                "your feed lists them all."
            )
        preview_titles = [p.title for p in papers[1:4]]
        preview = (
            shorten("Also: " + " · ".join(preview_titles), 150)
            if preview_titles
            else (papers[0].snippet[:150] if papers else headline)
        )
        return {
            "subject": subject,
            "preview": preview,
            "site_title": self._site_title,
            "date_long": date_long,
            "date_short": short,
            "headline": headline,
            "count": count,
            "fallback": digest.fallback,
            "fallback_note": "Here are the papers readers upvoted most today instead.",
            "source_notes": notes,
            "papers": papers,
            "trending": [paper_view(m) for m in trending],
            "email": display_text(digest.subscriber.email, 254),
            "keywords": display_text(digest.subscriber.keywords, 300),
            "footer_links": _footer_links(digest.links),
            "postal_address": self._postal,
        }

    def confirmation(
        self, email: str, confirm_url: str, *, subscriber: Subscriber | None = None
    ) -> RenderedEmail:
        """The double opt-in mail: one button that confirms the address, and the profile and
        schedule it would confirm (a sign-up by someone else shows as such before it applies)."""
        url = _required_url(confirm_url, "confirm_url")
        subject = f"Confirm your subscription to {self._site_title}"
        profile = schedule = ""
        if subscriber is not None:
            profile = display_text(subscriber.keywords, 500)
            every = "Every day" if subscriber.frequency == "daily" else "Once a week"
            schedule = (
                f"{every} at {subscriber.send_hour:02d}:00 ({subscriber.timezone}), "
                f"up to {subscriber.max_papers} papers"
            )
        return self._single(
            "confirmation", subject, email, confirm_url=url, profile=profile, schedule=schedule
        )

    def already_subscribed(self, email: str, preferences_url: str) -> RenderedEmail:
        """Answer to a sign-up for an address that already gets the digest: its preferences link.

        The sign-up form says the same thing either way, so this mail is how the owner of the
        address (and only they) learns it was already subscribed.
        """
        url = _required_url(preferences_url, "preferences_url")
        subject = f"You already get {self._site_title}"
        return self._single("already_subscribed", subject, email, preferences_url=url)

    def goodbye(self, email: str, resubscribe_url: str) -> RenderedEmail:
        """The last mail after an unsubscribe, with a way back."""
        url = safe_url(resubscribe_url) or self.site.base_url + "/"
        subject = f"You are unsubscribed from {self._site_title}"
        return self._single("goodbye", subject, email, resubscribe_url=url)

    def _single(self, name: str, subject: str, email: str, **links: str) -> RenderedEmail:
        """A one-purpose mail (no papers): the shared context plus its own links."""
        context = {
            "subject": subject,
            "site_title": self._site_title,
            "email": display_text(email, 254),
            "postal_address": self._postal,
            **links,
        }
        html, text = self._fill(name, context)
        return RenderedEmail(subject=subject, html=html, text=text)


def _required_url(value: str, name: str) -> str:
    url = safe_url(value)
    if not url:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return url


def _wrap_filter(value: object, indent: str = "", first: str = "") -> str:
    return wrap(str(value), indent, first)


def _footer_links(links: DigestLinks) -> list[_FooterLink]:
    candidates = [
        ("Manage preferences", safe_url(links.preferences)),
        ("Your RSS feed", safe_url(links.feed_rss) or safe_url(links.feed_atom)),
        ("Unsubscribe", safe_url(links.unsubscribe) or safe_link(links.unsubscribe_mailto)),
    ]
    return [_FooterLink(label, url) for label, url in candidates if url]


def _sample_digest() -> Digest:
    paper = Paper(
        key="2401.00001",
        title='A sample paper about <diffusion> & "quotes"',
        abstract="First sentence. Second sentence! Third sentence? Fourth sentence.",
        authors=(
            "Ada Lovelace",
            "Alan Turing",
            "Grace Hopper",
            "Edsger Dijkstra",
            "Barbara Liskov",
        ),
        url="https://example.org/abs/2401.00001",
        pdf_url="https://example.org/pdf/2401.00001",
        categories=("cs.LG", "cs.CL"),
        published_at=datetime(2024, 1, 1),
        upvotes=12,
    )
    return Digest(
        subscriber=Subscriber(email="reader@example.org", keywords="diffusion, agents"),
        digest_date=date(2024, 1, 2),
        matches=(Match(paper, 3.2, ("diffusion",)),),
        trending=(Match(paper, 0.0),),
        failed_sources=(SourceStatus("arXiv", False, "timeout"),),
        links=DigestLinks(
            preferences="https://example.org/p",
            unsubscribe="https://example.org/u",
            unsubscribe_mailto="mailto:unsubscribe@example.org",
            feed_atom="https://example.org/f.atom",
            feed_rss="https://example.org/f.rss",
            home="https://example.org/",
        ),
    )


def _replace_digest(digest: Digest, **changes: Any) -> Digest:
    from dataclasses import replace

    return replace(digest, **changes)
