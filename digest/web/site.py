"""What every request handler shares: the pipeline context, the templates and the CSRF keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from digest import text
from digest.config import resource_dir
from digest.pipeline import Context
from digest.render.views import authors_line, snippet_view
from digest.urls import SEARCH_EXAMPLE
from digest.web.clients import IPNetwork, client_address, network_of
from digest.web.feedcache import FeedCache
from digest.web.forms import FREQUENCIES, WEEKDAY_CHOICES, timezones
from digest.web.limits import RETRY_AFTER_SECONDS, Limits
from digest.web.security import CSRF_FIELD, Csrf


def template_dir() -> Path:
    """templates/web in a checkout, or its copy inside the installed package."""
    return resource_dir("templates") / "web"


def make_environment(directory: Path) -> Environment:
    """Jinja2 with autoescaping on for every template (all of them are HTML)."""
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        frequencies=FREQUENCIES,
        weekdays=WEEKDAY_CHOICES,
        timezones=timezones,
        csrf_field=CSRF_FIELD,
    )
    # Feed text in a page: `paper_text` for titles (LaTeX as Unicode), `shown` for the rest.
    env.filters.update(paper_text=text.paper_text, shown=text.display_text)
    # the same presentation as the mail: authors shortened, snippet marks in bold
    env.filters["authors_line"] = authors_line
    env.filters["snippet_html"] = lambda snippet: snippet_view(snippet).html
    return env


@dataclass
class Site:
    """The web app's shared state, kept on `app.state.site`."""

    ctx: Context
    env: Environment
    csrf: Csrf
    limits: Limits
    searches: FeedCache
    trusted_proxies: tuple[IPNetwork, ...] = ()

    def network(self, request: Request) -> str | None:
        """The client's rate-limit bucket (IPv4 address or IPv6 /64), None when unknown."""
        return network_of(client_address(request, self.trusted_proxies))

    @property
    def title(self) -> str:
        """The site's name, as configured."""
        return self.ctx.settings.site.title

    @property
    def base_url(self) -> str:
        """The configured public base URL (never derived from the Host header)."""
        return self.ctx.settings.site.base_url

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """Render a page; pages with forms get the reader's CSRF field (and cookie when new)."""
        cookie, new = self.csrf.cookie_value(request)
        values: dict[str, Any] = {
            "site_title": self.title,
            "base_url": self.base_url,
            "csrf_token": self.csrf.field_for(cookie),
            "examples": self.ctx.settings.examples,
            "search_feed_example": self.ctx.urls.search_feed(SEARCH_EXAMPLE, "atom"),
        }
        values.update(context or {})
        body = self.env.get_template(name).render(values)
        response = HTMLResponse(body, status_code=status_code, headers=headers)
        if new:
            self.csrf.set_cookie(response, cookie)
        return response

    def message(
        self, request: Request, title: str, text: str, *, status_code: int = 200
    ) -> HTMLResponse:
        """A short page with a heading and a sentence (errors, confirmations)."""
        return self.page(
            request, "message.html", {"title": title, "text": text}, status_code=status_code
        )

    def busy(self, request: Request) -> HTMLResponse:
        """503 with Retry-After: too many expensive requests are running."""
        response = self.message(
            request,
            "Busy right now",
            "Many people are asking at once. Please try again in a few seconds.",
            status_code=503,
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def too_many(self, request: Request, title: str, what: str) -> HTMLResponse:
        """429: this network used up an hourly limit."""
        return self.message(
            request,
            title,
            f"Too many {what} came from your network in the last hour. Please try again later.",
            status_code=429,
        )


def site_of(request: Request) -> Site:
    """The Site the app was built with."""
    site: Site = request.app.state.site
    return site
