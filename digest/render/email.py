"""Pure rendering of emails: digest data in, subject + HTML + plain text out.

The MJML layouts are compiled to HTML once (cached by content hash) and become Jinja2 templates with
autoescaping on; each message then costs one Jinja fill of views whose text is already clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2

from digest.config import EmailSettings, SiteSettings, resource_dir
from digest.models import (
    WEEKDAYS,
    Digest,
    DigestLinks,
    Match,
    Paper,
    RenderedEmail,
    Snippet,
    SourceStatus,
    Subscriber,
)
from digest.render.mjml import check_html, compile_mjml, lint_mjml
from digest.render.text import safe_link, safe_url, wrap
from digest.render.views import Memo, keep_markup, paper_view
from digest.text import display_text, shorten
from digest.urls import ReaderUrls

TEMPLATE_NAMES = ("digest", "confirmation", "already_subscribed", "goodbye")
HTML_SIZE_LIMIT = 100_000
"""Gmail clips messages whose HTML passes about 102 KB; stay under it."""

SUBJECT_LIMIT = 100
_INCLUDE = re.compile(r"<mj-include\s+path=\"([^\"]+)\"\s*(?:/>|>\s*</mj-include>)")


class TemplateError(Exception):
    """An email template failed to compile or render; the message names the file and the error."""

    def __init__(self, template: str, error: str) -> None:
        super().__init__(f"email template {template}: {error}")
        self.template = template
        self.error = error


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
            template = self._html_env.from_string(html, globals={"memo": memo})
            return str(path), keep_markup(template)
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
        urls = ReaderUrls(self.site.base_url)
        self.confirmation("reader@example.org", urls.confirm("sample"))
        self.already_subscribed("reader@example.org", urls.preferences("sample"))
        self.goodbye("reader@example.org", urls.home())

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
        # what matched in all (recorded when composed), of which the digest holds `count`
        matched = max(count, digest.matched_total or 0)
        day = digest.digest_date
        short = f"{day.day} {day:%b}"
        date_long = f"{day:%A}, {day.day} {day:%B %Y}"
        top = papers[0].title if papers else ""
        if digest.fallback:
            headline = "No new papers matched your profile today"
            prefix = f"No matches for {short}, trending instead: "
        elif count:
            headline = f"{matched} new paper{'s' if matched != 1 else ''} matched your profile"
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
            else (papers[0].snippet.text[:150] if papers else headline)
        )
        summary = _summary(digest, matched, count)
        top_title = shorten(papers[0].title, 120) if papers and not digest.fallback else ""
        links = digest.links
        # (number, paper, more, fewer) per card: the loop unpacks a tuple, where a lookup per
        # paper (a dict's get, str.ljust) went through Jinja's call machinery for every reader.
        cards = [
            (f"{i}.".ljust(4), p, safe_url(links.more.get(p.key)), safe_url(links.fewer.get(p.key)))
            for i, p in enumerate(papers, start=1)
        ]
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
            "summary": summary,
            "top_title": top_title,
            "view_url": safe_url(links.view),
            "papers": papers,
            "cards": cards,
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
            every = (
                "Every day"
                if subscriber.frequency == "daily"
                else f"Every {WEEKDAYS[subscriber.send_weekday].capitalize()}"
            )
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
        url = safe_url(resubscribe_url) or ReaderUrls(self.site.base_url).home()
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


def _summary(digest: Digest, matched: int, count: int) -> str:
    """The masthead's line (the top paper follows it): papers read, papers matched, and how many
    of those this digest holds when not all ("42 matched your profile · the top 10 here")."""
    parts = []
    if digest.papers_read:
        read = digest.papers_read
        parts.append(f"{read:,} new paper{'s' if read != 1 else ''} read")
    if not digest.fallback:
        partial = sum(1 for m in digest.matches if m.partial)
        in_part = f" ({partial} in part)" if partial else ""
        if matched > count:
            parts += [f"{matched:,} matched your profile", f"the top {count} here{in_part}"]
        else:
            parts.append(f"{matched:,} matched your profile{in_part}")
    return " · ".join(parts)


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
        matches=(
            Match(paper, 3.2, ("diffusion",), snippet=Snippet("A <diffusion> model.", ((4, 15),))),
            Match(paper, 2.0, ("agents",), partial=True),
        ),
        papers_read=148,
        trending=(Match(paper, 0.0),),
        failed_sources=(SourceStatus("arXiv", False, "timeout"),),
        links=DigestLinks(
            preferences="https://example.org/p",
            unsubscribe="https://example.org/u",
            unsubscribe_mailto="mailto:unsubscribe@example.org",
            feed_atom="https://example.org/f.atom",
            feed_rss="https://example.org/f.rss",
            home="https://example.org/",
            view="https://example.org/d",
            more={paper.key: "https://example.org/more"},
            fewer={paper.key: "https://example.org/fewer"},
        ),
    )


def _replace_digest(digest: Digest, **changes: Any) -> Digest:
    return replace(digest, **changes)
