"""A digest as the receiving mail server sees it: raw bytes over real SMTP, header by header."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.deliver.message import (
    DkimError,
    DkimSigner,
    MessageError,
    OutgoingMessage,
    build_message,
)
from digest.models import RenderedEmail
from tests.email_fixtures import hostile_paper, make_digest, send

pytest_plugins = ["tests.email_fixtures"]

UNSUBSCRIBE = "https://digest.example.org/unsubscribe/YWRhQGV4YW1wbGUub3Jn"
MAILTO = "mailto:unsubscribe+YWRhQGV4YW1wbGUub3Jn@digest.example.org"
WHEN = datetime(2025, 11, 27, 7, 0, tzinfo=UTC)


def raw_headers(data: bytes) -> list[bytes]:
    """The header block as received, one unfolded-as-sent line per element."""
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def header_line(data: bytes, name: bytes) -> bytes:
    found = [line for line in raw_headers(data) if line.lower().startswith(name.lower() + b":")]
    assert len(found) == 1, (name, found)
    return found[0]


def build(rendered, email_settings, site, **kwargs) -> OutgoingMessage:
    kwargs.setdefault("unsubscribe_url", UNSUBSCRIBE)
    kwargs.setdefault("unsubscribe_mailto", MAILTO)
    kwargs.setdefault("date", WHEN)
    return build_message(rendered, to="ada@example.org", email=email_settings, site=site, **kwargs)


def assert_wire_safe(data: bytes) -> None:
    """Every line CRLF-terminated, within 998 octets, 7-bit."""
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_a_digest_arrives_over_smtp_with_every_header_right(
    smtp_inbox, renderer, papers, email_settings, site
):
    rendered = renderer.digest(make_digest(papers))
    message = build(rendered, email_settings, site)
    received = send(smtp_inbox, "bounces@digest.example.org", "ada@example.org", message.data)
    assert smtp_inbox.messages[-1][0] == ["ada@example.org"]
    assert_wire_safe(received)

    assert header_line(received, b"From") == b"From: Paper Digest <digest@digest.example.org>"
    assert header_line(received, b"To") == b"To: ada@example.org"
    assert header_line(received, b"Reply-To") == b"Reply-To: help@digest.example.org"
    assert header_line(received, b"List-Id") == b"List-Id: Paper Digest <daily.digest.example.org>"
    # RFC 8058: the URLs exactly as sent, never an encoded-word, one-click offered.
    assert header_line(received, b"List-Unsubscribe") == (
        f"List-Unsubscribe: <{UNSUBSCRIBE}>, <{MAILTO}>".encode()
    )
    assert header_line(received, b"List-Unsubscribe-Post") == (
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    )
    assert b"=?" not in header_line(received, b"List-Unsubscribe")
    assert header_line(received, b"MIME-Version") == b"MIME-Version: 1.0"

    parsed = email.message_from_bytes(received, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject
    assert parsedate_to_datetime(parsed["Date"]) == WHEN
    assert re.fullmatch(r"<[0-9a-f]{24}@digest\.example\.org>", parsed["Message-ID"])
    assert parsed["Message-ID"] == message.message_id
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content_charset() == "utf-8"
    assert html.get_content_type() == "text/html" and html.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html.replace("\r\n", "\n")
    assert not parsed.defects and not text.defects and not html.defects


def test_non_ascii_subject_and_body_travel_encoded(
    smtp_inbox, renderer, papers, email_settings, site
):
    paper = replace(papers[0], title="Gödel’s théorème — 再び, with a long tail " + "mot " * 20)
    rendered = renderer.digest(make_digest([paper, *papers[1:]]))
    received = send(
        smtp_inbox,
        "bounces@digest.example.org",
        "ada@example.org",
        build(rendered, email_settings, site).data,
    )
    assert_wire_safe(received)
    subject_lines = [
        line for line in raw_headers(received) if line.startswith((b"Subject:", b" =?"))
    ]
    assert subject_lines[0].startswith(b"Subject: =?utf-8?b?")
    assert all(len(line) <= 78 for line in subject_lines)
    parsed = email.message_from_bytes(received, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject
    assert "Gödel’s théorème — 再び" in parsed["Subject"]
    text, _ = parsed.iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Gödel’s théorème — 再び" in text.get_content()


def test_hostile_text_cannot_add_or_split_a_header(renderer, email_settings, site):
    evil = hostile_paper()
    rendered = renderer.digest(make_digest([evil], count=1, trending=0))
    forged = RenderedEmail(
        subject="Hi\r\nBcc: victim@example.com\r\n\r\nbody\u202e\x00", html="<p>x</p>", text="x"
    )
    clean = build(RenderedEmail("Hi", "<p>x</p>", "x"), email_settings, site)
    for candidate in (rendered, forged):
        data = build(candidate, email_settings, site).data
        assert_wire_safe(data)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Bcc"] is None and parsed["X-Evil"] is None
        names = [n.lower() for n in parsed]
        assert names == [n.lower() for n in email.message_from_bytes(clean.data)]
        assert "\u202e" not in parsed["Subject"]
    assert (
        email.message_from_bytes(
            build(forged, email_settings, site).data, policy=email.policy.default
        )["Subject"]
        == "Hi Bcc: victim@example.com body"
    )


def test_a_long_unsubscribe_url_stays_one_readable_token(renderer, papers, email_settings, site):
    long_url = "https://digest.example.org/unsubscribe/" + "a1B2-_" * 60
    data = build(
        renderer.digest(make_digest(papers)), email_settings, site, unsubscribe_url=long_url
    ).data
    assert_wire_safe(data)
    assert header_line(data, b"List-Unsubscribe") == (
        f"List-Unsubscribe: <{long_url}>, <{MAILTO}>".encode()
    )


def test_unsafe_unsubscribe_urls_are_refused(renderer, papers, email_settings, site):
    rendered = renderer.digest(make_digest(papers))
    for url in ("https://x.org/u\r\nBcc: a@b.c", "javascript:alert(1)", "https://x.org/a b"):
        with pytest.raises(MessageError, match="unsubscribe_url"):
            build(rendered, email_settings, site, unsubscribe_url=url)


def test_without_https_there_is_no_one_click_claim(renderer, papers, email_settings, site):
    data = build(
        renderer.digest(make_digest(papers)), email_settings, site, unsubscribe_url=None
    ).data
    assert header_line(data, b"List-Unsubscribe") == f"List-Unsubscribe: <{MAILTO}>".encode()
    assert b"List-Unsubscribe-Post" not in data


def test_a_non_ascii_sender_name_is_encoded(renderer, email_settings, site):
    settings = email_settings.model_copy(update={"from_": "Revue d’Articles <revue@exemple.fr>"})
    data = build(RenderedEmail("Salut", "<p>x</p>", "x"), settings, site).data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert str(parsed["From"]) == "Revue d’Articles <revue@exemple.fr>"
    assert header_line(data, b"From").startswith(b"From: =?utf-8?b?")
    assert parsed["Message-ID"].endswith("@exemple.fr>")


def test_a_bad_recipient_is_refused_with_its_address(email_settings, site):
    with pytest.raises(MessageError, match="not a plain email address"):
        build_message(
            RenderedEmail("s", "h", "t"),
            to="ada@example.org>\r\nBcc: x@y.z",
            email=email_settings,
            site=site,
        )


def test_a_dkim_signed_digest_verifies_against_the_published_key(
    smtp_inbox, renderer, papers, email_settings, site, dkim_key
):
    settings = email_settings.model_copy(
        update={
            "dkim_selector": "pd2025",
            "dkim_domain": "digest.example.org",
            "dkim_key_file": str(dkim_key.key_file),
        }
    )
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    message = build(renderer.digest(make_digest(papers)), settings, site, dkim=signer)
    received = send(smtp_inbox, "bounces@digest.example.org", "ada@example.org", message.data)
    assert_wire_safe(received)

    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return dkim_key.txt_record if name == b"pd2025._domainkey.digest.example.org." else b""

    assert dkim.verify(received, dnsfunc=dns)
    assert looked_up == [b"pd2025._domainkey.digest.example.org."]
    signature = b" ".join(
        line.strip() for line in received.split(b"\r\n\r\n")[0].split(b"\r\n")[:8]
    )
    signed = re.search(rb"h=([^;]+);", signature).group(1).replace(b" ", b"").split(b":")
    for name in (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post", b"list-id"):
        assert name in signed
    # A relay that rewrites the unsubscribe target breaks the signature.
    tampered = received.replace(UNSUBSCRIBE.encode(), b"https://evil.example/unsubscribe/x")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_is_off_unless_configured_and_explains_a_half_setup(email_settings, tmp_path):
    assert DkimSigner.from_settings(email_settings) is None
    half = email_settings.model_copy(update={"dkim_selector": "s1"})
    with pytest.raises(DkimError, match=r"dkim_domain.*dkim_key_file"):
        DkimSigner.from_settings(half)
    missing = email_settings.model_copy(
        update={
            "dkim_selector": "s1",
            "dkim_domain": "example.org",
            "dkim_key_file": str(tmp_path / "absent.pem"),
        }
    )
    with pytest.raises(DkimError, match=r"absent\.pem"):
        DkimSigner.from_settings(missing)
    (tmp_path / "garbage.pem").write_text("not a key")
    garbage = missing.model_copy(update={"dkim_key_file": str(tmp_path / "garbage.pem")})
    with pytest.raises(DkimError, match="cannot sign"):
        DkimSigner.from_settings(garbage)


def test_confirmation_mail_is_a_proper_message_too(renderer, email_settings, site):
    rendered = renderer.confirmation("new@example.org", "https://digest.example.org/confirm/t0k")
    message = build_message(rendered, to="new@example.org", email=email_settings, site=site)
    assert_wire_safe(message.data)
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["Subject"] == "Confirm your subscription to Paper Digest"
    assert parsed["List-Unsubscribe"] is None
    assert "https://digest.example.org/confirm/t0k" in parsed.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII digest.\n",
        "E = mc² · Gödel  \n-- \nsignature line keeps its trailing space\n",
        "A URL longer than a QP line: https://example.org/" + "segment/" * 40 + "\n",
        "é" * 300,
        "tab at end\t\n\x0c form feed é\n",
    ],
)
def test_any_text_body_arrives_unchanged(smtp_inbox, email_settings, site, text):
    rendered = RenderedEmail("Body check", "<p>x</p>", text)
    received = send(
        smtp_inbox,
        "bounces@digest.example.org",
        "ada@example.org",
        build_message(rendered, to="ada@example.org", email=email_settings, site=site).data,
    )
    assert_wire_safe(received)
    parsed = email.message_from_bytes(received, policy=email.policy.default)
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == text


@pytest.mark.skipif(not shutil.which("spamassassin"), reason="Debian's spamassassin not installed")
def test_spamassassin_scores_a_typical_digest_well_under_two(
    renderer, papers, email_settings, site
):
    data = build(renderer.digest(make_digest(papers)), email_settings, site).data
    report = subprocess.run(
        ["spamassassin", "-L", "-t"], input=data, capture_output=True, check=True, timeout=120
    ).stdout.decode()
    score = float(re.search(r"Content analysis details:\s+\((-?[\d.]+) points", report).group(1))
    assert score < 2.0, report


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=st.text(alphabet=st.characters(codec=None), max_size=300))
def test_any_subject_a_feed_could_cause_is_one_header_on_the_wire(subject, email_settings, site):
    rendered = RenderedEmail(subject=subject, html="<p>hi</p>", text="hi")

    data = build(rendered, email_settings, site).data

    assert_wire_safe(data)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["To"] == "ada@example.org"
    assert len(parsed.get_all("Subject") or []) == 1
    assert not [line for line in raw_headers(data) if line.lower().startswith(b"bcc")]
