"""Shared fixtures for the email tests: settings, real papers, a hostile paper, SMTP server, DKIM keys.

Loaded with `pytest_plugins = ["tests.email_fixtures"]`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.config import EmailSettings, SiteSettings
from digest.models import Digest, DigestLinks, Match, Paper, SourceStatus, Subscriber
from digest.ranking import with_snippets
from digest.render import EmailRenderer

DATA = Path(__file__).parent / "data" / "email"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "email"
BASE = "https://digest.example.org"

HOSTILE_TITLE = (
    '<script>window.pwned=1</script>"><img src=x onerror="window.pwned=1">'
    "\r\nBcc: victim@example.com\r\n\r\nInjected body "
    "\u202eevil\u202c \u2066isolate\u2069 \x00\x07\x1b[31m 'quotes' & <b>bold</b> "
) + "A" * 5000
HOSTILE_ABSTRACT = (
    "<style>body{display:none}</style><a href='javascript:alert(1)'>click</a>\r\n"
    "Subject: free money\r\nX-Evil: 1\n" + "\u202e" + "word " * 1200
)


def load_papers() -> list[Paper]:
    """Thirty real papers (titles, abstracts, upvotes) from the Hugging Face sample feed."""
    rows = json.loads((DATA / "papers.json").read_text(encoding="utf-8"))
    return [
        Paper(
            key=row["key"],
            title=row["title"],
            abstract=row["abstract"],
            authors=tuple(row["authors"]),
            url=row["url"],
            pdf_url=row["pdf_url"],
            categories=tuple(row["categories"]),
            published_at=datetime.fromisoformat(row["published_at"].replace("Z", "+00:00")),
            upvotes=row["upvotes"],
        )
        for row in rows
    ]


def hostile_paper() -> Paper:
    """A paper whose every field tries to break HTML, text or headers."""
    return Paper(
        key="evil",
        title=HOSTILE_TITLE,
        abstract=HOSTILE_ABSTRACT,
        authors=(
            "<b>Mallory</b>\r\nBcc: x@example.com",
            "\u202eEve",
            *(f"Sybil {i}" for i in range(40)),
        ),
        url="javascript:window.pwned=1",
        pdf_url="https://example.org/pdf/evil.pdf\r\nX-Evil: 1",
        categories=("cs.CR\r\nX-Evil: 2",),
        upvotes=3,
    )


def links_for(email: str, papers: Sequence[Paper] = ()) -> DigestLinks:
    """The personal links a subscriber's digest carries (tokens kept short, as the web app makes them)."""
    token = base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    return DigestLinks(
        view=f"{BASE}/digest/{token}/2025-11-27",
        more={p.key: f"{BASE}/steer/{token}/{i + 1}/more" for i, p in enumerate(papers)},
        fewer={p.key: f"{BASE}/steer/{token}/{i + 1}/fewer" for i, p in enumerate(papers)},
        preferences=f"{BASE}/preferences/{token}",
        unsubscribe=f"{BASE}/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe+{token}@digest.example.org",
        feed_atom=f"{BASE}/feeds/{token}.atom",
        feed_rss=f"{BASE}/feeds/{token}.rss",
        home=f"{BASE}/",
    )


def make_digest(
    papers: list[Paper],
    *,
    email: str = "ada@example.org",
    keywords: str = '"federated learning", distillation, diffusion models',
    count: int = 10,
    trending: int = 3,
    failed: tuple[str, ...] = (),
    fallback: bool = False,
) -> Digest:
    """A digest as the pipeline hands it to the renderer."""
    matches = tuple(
        with_snippets(
            Match(p, 10.0 - i, ("federated learning", "distillation")[: 1 + i % 2])
            for i, p in enumerate(papers[:count])
        )
    )
    hot = tuple(Match(p, 0.0) for p in papers[count : count + trending])
    return Digest(
        subscriber=Subscriber(email=email, keywords=keywords),
        digest_date=date(2025, 11, 27),
        matches=() if fallback else matches,
        trending=hot,
        failed_sources=tuple(SourceStatus(name, False, "timed out") for name in failed),
        links=links_for(email, papers[:count]),
        fallback=fallback,
        papers_read=148,
    )


@pytest.fixture(scope="session")
def site() -> SiteSettings:
    """The operator's site."""
    return SiteSettings(base_url=BASE, title="Paper Digest")


@pytest.fixture(scope="session")
def email_settings() -> EmailSettings:
    """The operator's [email] section."""
    return EmailSettings.model_validate(
        {
            "from": "Paper Digest <digest@digest.example.org>",
            "reply_to": "help@digest.example.org",
            "list_id": "daily.digest.example.org",
            "postal_address": "Paper Digest, 12 rue des Chercheurs, 75005 Paris, France",
        }
    )


@pytest.fixture(scope="session")
def renderer(site: SiteSettings, email_settings: EmailSettings) -> EmailRenderer:
    """The built-in templates, compiled once for the session."""
    return EmailRenderer(site=site, email=email_settings)


@pytest.fixture(scope="session")
def papers() -> list[Paper]:
    """Real papers from the sample feed."""
    return load_papers()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and sample messages go for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class Inbox:
    """What the SMTP server on 127.0.0.1 received: (envelope recipients, raw bytes) per message."""

    host: str
    port: int
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls this hook by name
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtp_inbox() -> Iterator[Inbox]:
    """A real aiosmtpd server on 127.0.0.1 collecting raw messages."""
    with socket.socket() as probe:  # aiosmtpd's readiness check needs a concrete port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox("127.0.0.1", port)
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def send(inbox: Inbox, sender: str, recipient: str, data: bytes) -> bytes:
    """Send raw bytes with aiosmtplib and return what the server received."""
    import aiosmtplib

    before = len(inbox.messages)
    asyncio.run(
        aiosmtplib.send(
            data, sender=sender, recipients=[recipient], hostname=inbox.host, port=inbox.port
        )
    )
    assert len(inbox.messages) == before + 1
    return inbox.messages[-1][1]


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair on disk and the TXT record that publishes it."""

    key_file: Path
    txt_record: bytes


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    """A fresh 2048-bit RSA key made with openssl, and its DNS TXT record."""
    folder = tmp_path_factory.mktemp("dkim")
    key_file = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key_file), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return DkimKey(key_file, record)
