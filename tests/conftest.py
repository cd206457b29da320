"""Shared fixtures: a real database (SQLite file or PostgreSQL), a real SMTP server, settings.

Set DIGEST_TEST_DATABASE=postgresql to run the whole suite against the PostgreSQL server on
127.0.0.1:5432 (user postgres, trust auth); each test gets a fresh database cloned from a migrated
template. Without it, each test gets its own SQLite file.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from digest.config import SAMPLE_FEED, Settings, parse_settings

for _plugin in (
    "tests.email_fixtures",
    "tests.ranking_fixtures",
    "tests.smtp_fixtures",
    "tests.sources_fixtures",
    "tests.web_fixtures",
):
    pytest.register_assert_rewrite(_plugin)

DATA = Path(__file__).parent / "data"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pytest_report_header(config: pytest.Config) -> str:
    return f"database under test: {os.environ.get('DIGEST_TEST_DATABASE', 'sqlite')}"


# ---------------------------------------------------------------- database


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _pg_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are cloned from."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432, and CI needs it")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    from digest import store

    name = f"digest_tpl_{uuid.uuid4().hex[:10]}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    engine = store.open_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    store.migrate(engine)
    engine.dispose()
    yield name
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    template = request.getfixturevalue("pg_template")
    name = f"digest_t_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file `digest init` would make (migrated once); each test gets a copy."""
    from digest import store

    path = tmp_path_factory.mktemp("template") / "digest.sqlite3"
    engine = store.open_engine(f"sqlite:///{path}", create=True)
    store.migrate(engine)
    engine.dispose()  # the last connection out folds the WAL into the file
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database a test runs on, initialised as `digest init` leaves it (no command creates one).

    SQLite file by default, PostgreSQL when DIGEST_TEST_DATABASE asks for it.
    """
    if os.environ.get("DIGEST_TEST_DATABASE", "sqlite").startswith("postgres"):
        return request.getfixturevalue("postgres_url")
    target = tmp_path / "digest.sqlite3"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
    return f"sqlite:///{target}"


# ---------------------------------------------------------------- SMTP


@dataclass
class Mailbox:
    """What a real SMTP server on 127.0.0.1 received."""

    host: str
    port: int
    raw: list[bytes] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(data, policy=policy.default) for data in self.raw]  # type: ignore[misc]

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope recipient was this address."""
        return [
            message_from_bytes(data, policy=policy.default)  # type: ignore[misc]
            for data, (_, rcpts) in zip(self.raw, self.envelopes, strict=True)
            if address in rcpts
        ]

    def clear(self) -> None:
        self.raw.clear()
        self.envelopes.clear()


class _Collector:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mailbox.raw.append(envelope.original_content or envelope.content)
        self.mailbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real aiosmtpd server on 127.0.0.1 that keeps every message it accepts."""
    # its per-connection info lines are not the program's: keep them out of captured stderr
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    mailbox = Mailbox(host="127.0.0.1", port=free_port())
    controller = Controller(_Collector(mailbox), hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


# ---------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # this machine's network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (skipped where absent, never in CI).

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread while
    it is open, which other modules' tests (asyncio.run) must not meet.
    """
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing, and CI needs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


# ---------------------------------------------------------------- settings


@pytest.fixture
def sample_feed(tmp_path: Path) -> Path:
    """A copy of the bundled Hugging Face Daily Papers sample (148 real papers)."""
    target = tmp_path / "hf-daily-papers-sample.atom"
    shutil.copy(SAMPLE_FEED, target)
    return target


@pytest.fixture
def make_settings(
    database_url: str, smtp_server: Mailbox, sample_feed: Path, tmp_path: Path
) -> Any:
    """Settings for a test: its database, the SMTP server above, the sample feed; overrides merge in."""

    def build(**sections: dict[str, Any]) -> Settings:
        data: dict[str, Any] = {
            "database": {"url": database_url},
            "sources": [{"name": "hf-sample", "url": str(sample_feed), "kind": "atom"}],
            "smtp": {"host": smtp_server.host, "port": smtp_server.port},
            "email": {"from": "Paper Digest <digest@papers.example.org>"},
            "site": {
                "base_url": "https://papers.example.org",
                "secret_key": "test-secret-key-0123456789",
            },
        }
        for name, values in sections.items():
            if isinstance(values, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **values}
            else:
                data[name] = values
        return parse_settings(data)

    return build


@pytest.fixture
def config_file(
    make_settings: Any, tmp_path: Path, database_url: str, smtp_server: Mailbox, sample_feed: Path
) -> Path:
    """The same settings as a digest.toml file, for driving the CLI."""
    path = tmp_path / "digest.toml"
    path.write_text(
        f"""
[database]
url = "{database_url}"

[[sources]]
name = "hf-sample"
url = "{sample_feed}"
kind = "atom"

[smtp]
host = "{smtp_server.host}"
port = {smtp_server.port}

[email]
from = "Paper Digest <digest@papers.example.org>"

[site]
base_url = "https://papers.example.org"
secret_key = "test-secret-key-0123456789"
""",
        encoding="utf-8",
    )
    return path
