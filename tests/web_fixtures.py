"""Shared fixtures for the web tests: the app on a real uvicorn server on 127.0.0.1, with the real
SMTP server from conftest, a SQLite (or PostgreSQL) database holding the 148 sample papers, and
headless Chromium.

Loaded with `pytest_plugins = ["tests.web_fixtures"]`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from digest.config import SAMPLE_FEED
from digest.pipeline import Context
from digest.sources import parse_feed
from digest.web import create_app
from digest.web.server import server_config
from tests.conftest import Mailbox, free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "web"
DATA = Path(__file__).parent / "data" / "web"
WAIT_SECONDS = 20.0
"""How long to wait for a mail to arrive before failing (never a speed assertion)."""

T = TypeVar("T")
_URL = re.compile(r"https?://[^\s<>\"']+")


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class LiveSite:
    """The web app served by uvicorn on 127.0.0.1, and what it sent and logged."""

    url: str
    ctx: Context
    mailbox: Mailbox
    access_log: list[str] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this site (its own cookie jar, redirects not followed)."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def mails_to(self, address: str) -> list[EmailMessage]:
        """Every message the SMTP server accepted for this address so far."""
        return self.mailbox.to(address)

    def wait_for_mail(self, address: str, count: int = 1) -> EmailMessage:
        """The `count`-th mail to an address, waiting for the app's background send."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = self.mails_to(address)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {address} within {WAIT_SECONDS}s")


def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking code that starts its own event loop (a pipeline run) beside Playwright's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a mail."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the mail has no text part"
    return str(part.get_content())


def links_in(message: EmailMessage) -> list[str]:
    """Every URL in a mail's text part, in order."""
    return [url.rstrip(".,)") for url in _URL.findall(text_of(message))]


def csrf_of(html: str) -> str:
    """The CSRF field of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def load_sample_papers(ctx: Context) -> int:
    """Store the 148 papers of the bundled Hugging Face sample feed as first seen now."""
    parsed = parse_feed(SAMPLE_FEED.read_bytes(), source_name="hf-sample", kind="atom")
    return ctx.store.papers.upsert(parsed.papers, now=ctx.now()).new


@pytest.fixture
def make_site(make_settings: Any, smtp_server: Mailbox) -> Iterator[Callable[..., LiveSite]]:
    """Start the app with settings overrides (e.g. web={...}); every site is stopped afterwards."""
    running: list[tuple[uvicorn.Server, threading.Thread, logging.Handler]] = []

    def start(**sections: dict[str, Any]) -> LiveSite:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        site_section = {"base_url": base, **sections.pop("site", {})}
        settings = make_settings(site=site_section, **sections)
        app = create_app(settings)
        site = LiveSite(url=base, ctx=app.state.site.ctx, mailbox=smtp_server)
        load_sample_papers(site.ctx)
        config = server_config(
            app, settings.web, host="127.0.0.1", port=port, log_level="info", access_log=True
        )
        # uvicorn sets up its loggers in Config(); listen to the access log after that.
        handler = _Collect(site.access_log)
        logging.getLogger("uvicorn.access").addHandler(handler)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {base}")
            time.sleep(0.02)
        running.append((server, thread, handler))
        return site

    yield start
    for server, thread, handler in running:
        server.should_exit = True
        thread.join(timeout=WAIT_SECONDS)
        logging.getLogger("uvicorn.access").removeHandler(handler)


@pytest.fixture
def live_site(make_site: Callable[..., LiveSite]) -> LiveSite:
    """The app with default web settings."""
    return make_site()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (its own cookies) that fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/web/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
