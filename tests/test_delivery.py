"""Sending digests through a real SMTP relay on 127.0.0.1 that refuses, stalls and hangs up.

Every reader gets their digest once; a refused address never disturbs the others; temporary
trouble is retried in the run and in later runs; a lost reply is the one way to a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from digest import pipeline
from digest.deliver.transport import Envelope, FileTransport, RelayError, SendResult, SmtpTransport
from digest.pipeline.worker import sender_lock
from digest.store import Preferences
from tests.smtp_fixtures import PASSWORD, USER, Certificate, Relay, Rule

pytest_plugins = ["tests.smtp_fixtures"]

DAY = date(2025, 11, 27)
START = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)


class Clock:
    """The time the program sees; tests move it forward to reach retries and expired leases."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def day_with_readers(make_settings: Any, clock: Clock) -> Callable[..., pipeline.Context]:
    """A database with the sample papers fetched and `n` readers interested in diffusion."""

    def build(relay: Relay, n: int = 6, **sections: dict[str, Any]) -> pipeline.Context:
        smtp = {"host": relay.host, "port": relay.port, **sections.pop("smtp", {})}
        settings = make_settings(smtp=smtp, **sections)
        ctx = pipeline.build_context(settings, now=clock)
        pipeline.fetch(ctx)
        for i in range(n):
            ctx.store.subscribers.add(
                f"reader{i}@uni.example",
                Preferences(keywords="diffusion models, video generation", channels=("email",)),
                confirmed=True,
                now=clock(),
            )
        pipeline.plan(ctx, digest_date=DAY)
        return ctx

    return build


def quick(ctx: pipeline.Context, **kwargs: Any) -> SmtpTransport:
    """The product's transport with short in-run backoff, so retries happen within the test."""
    return SmtpTransport(ctx.settings.smtp, backoff=0.01, **kwargs)


def statuses(ctx: pipeline.Context) -> dict[str, str]:
    return {row["email"]: row["status"] for row in ctx.store.deliveries.for_day(digest_date=DAY)}


def row_of(ctx: pipeline.Context, email: str) -> dict[str, Any]:
    [row] = [r for r in ctx.store.deliveries.for_day(digest_date=DAY) if r["email"] == email]
    return row


def test_every_reader_gets_one_digest_over_a_few_reused_connections(
    relay: Relay, day_with_readers: Any
) -> None:
    ctx = day_with_readers(relay, n=30, smtp={"connections": 3}, delivery={"batch_size": 7})

    report = pipeline.send_pending(ctx)

    assert report.count("sent") == 30
    assert relay.copies() == {f"reader{i}@uni.example": 1 for i in range(30)}
    assert len(relay.sessions) <= 3  # one pool for all five batches
    message = relay.message_to("reader7@uni.example")
    assert row_of(ctx, "reader7@uni.example")["message_id"] == message["Message-ID"]
    # Planning and sending again changes nothing: every row is sent, none is sent twice.
    assert pipeline.plan(ctx, digest_date=DAY) == 0
    assert pipeline.send_pending(ctx).total == 0
    assert sum(relay.copies().values()) == 30


def test_a_refused_address_fails_alone_and_is_bounced_after_enough_refusals(
    relay: Relay, day_with_readers: Any, clock: Clock
) -> None:
    ctx = day_with_readers(relay, n=5, smtp={"connections": 1}, delivery={"bounce_after": 2})
    relay.rules["reader2@uni.example"] = Rule("550 5.1.1 no such user")

    report = pipeline.send_pending(ctx, quick(ctx))

    # The others went through on the same single connection, before and after the refusal.
    assert set(relay.copies()) == {f"reader{i}@uni.example" for i in (0, 1, 3, 4)}
    assert len(relay.sessions) == 1
    assert relay.refusals["reader2@uni.example"] == 1  # permanent: not retried
    assert report.count("failed") == 1
    failed = row_of(ctx, "reader2@uni.example")
    assert failed["status"] == "failed"
    assert "550" in failed["last_error"]
    assert ctx.store.subscribers.get(email="reader2@uni.example").status == "active"

    # A second refusal the next day reaches bounce_after: no more mail to that address.
    clock.advance(days=1)
    pipeline.plan(ctx, digest_date=DAY + timedelta(days=1))
    pipeline.send_pending(ctx, quick(ctx))
    assert ctx.store.subscribers.get(email="reader2@uni.example").status == "bounced"
    assert pipeline.plan(ctx, digest_date=DAY + timedelta(days=2)) == 4


def test_temporary_trouble_is_retried_within_the_run(relay: Relay, day_with_readers: Any) -> None:
    ctx = day_with_readers(relay, n=6, smtp={"connections": 2})
    relay.rules["reader0@uni.example"] = Rule("451 4.3.0 try later", times=1)
    relay.rules["reader1@uni.example"] = Rule("421 4.7.0 too busy, closing", times=1)
    relay.rules["reader2@uni.example"] = Rule("drop", times=2)

    report = pipeline.send_pending(ctx, quick(ctx))

    assert report.count("sent") == 6
    assert relay.copies() == {f"reader{i}@uni.example": 1 for i in range(6)}
    assert set(statuses(ctx).values()) == {"sent"}


def test_trouble_that_lasts_is_retried_in_later_runs_up_to_max_attempts(
    relay: Relay, day_with_readers: Any, clock: Clock
) -> None:
    ctx = day_with_readers(relay, n=3, delivery={"max_attempts": 2})
    relay.rules["reader1@uni.example"] = Rule("451 4.3.0 mailbox busy")

    first = pipeline.send_pending(ctx, quick(ctx, retries=1))

    assert first.count("pending") == 1
    row = row_of(ctx, "reader1@uni.example")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert relay.refusals["reader1@uni.example"] == 2  # tried twice in the run
    # Not yet due: the cross-run backoff is minutes, with jitter.
    assert pipeline.send_pending(ctx, quick(ctx, retries=1)).total == 0

    clock.advance(minutes=8)
    relay.rules["reader1@uni.example"] = Rule("451 4.3.0 mailbox busy")
    second = pipeline.send_pending(ctx, quick(ctx, retries=1))

    assert second.count("failed") == 1
    row = row_of(ctx, "reader1@uni.example")
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert "451" in row["last_error"]
    assert relay.copies() == {"reader0@uni.example": 1, "reader2@uni.example": 1}
    # Temporary refusals never count towards bouncing the reader.
    assert ctx.store.subscribers.get(email="reader1@uni.example").status == "active"


def test_a_lost_reply_is_the_one_way_to_a_duplicate(relay: Relay, day_with_readers: Any) -> None:
    ctx = day_with_readers(relay, n=3, smtp={"connections": 1})
    relay.rules["reader1@uni.example"] = Rule("drop-after-data", times=1)

    pipeline.send_pending(ctx, quick(ctx))

    # The relay kept the message but hung up before its 250: we could not know, and sent again.
    assert relay.copies() == {
        "reader0@uni.example": 1,
        "reader1@uni.example": 2,
        "reader2@uni.example": 1,
    }
    assert set(statuses(ctx).values()) == {"sent"}


def test_starttls_with_login(
    tls_relay: Relay, day_with_readers: Any, certificate: Certificate
) -> None:
    smtp = {"security": "starttls", "username": USER, "password": PASSWORD}
    ctx = day_with_readers(tls_relay, n=3, smtp=smtp)
    transport = SmtpTransport(ctx.settings.smtp, tls_context=certificate.client_context())

    assert pipeline.send_pending(ctx, transport).count("sent") == 3
    assert len(tls_relay.copies()) == 3


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_with_login(
    implicit_tls_relay: Relay, day_with_readers: Any, certificate: Certificate
) -> None:
    smtp = {"security": "tls", "username": USER, "password": PASSWORD}
    ctx = day_with_readers(implicit_tls_relay, n=3, smtp=smtp)
    transport = SmtpTransport(ctx.settings.smtp, tls_context=certificate.client_context())

    assert pipeline.send_pending(ctx, transport).count("sent") == 3
    assert len(implicit_tls_relay.copies()) == 3


def test_a_wrong_password_stops_the_run_and_blames_no_reader(
    tls_relay: Relay, day_with_readers: Any, certificate: Certificate
) -> None:
    smtp = {"security": "starttls", "username": USER, "password": "wrong"}
    ctx = day_with_readers(tls_relay, n=4, smtp=smtp)
    transport = SmtpTransport(ctx.settings.smtp, tls_context=certificate.client_context())

    with pytest.raises(RelayError, match="refused the login"):
        pipeline.send_pending(ctx, transport)

    rows = ctx.store.deliveries.for_day(digest_date=DAY)
    assert {(r["status"], r["attempts"]) for r in rows} == {("pending", 0)}
    assert ctx.store.subscribers.counts().get("bounced", 0) == 0
    assert tls_relay.copies() == {}


def test_a_dead_workers_rows_are_sent_once_its_lease_runs_out(
    relay: Relay, day_with_readers: Any, clock: Clock
) -> None:
    ctx = day_with_readers(relay, n=4)
    lease = ctx.settings.delivery.lease_seconds
    # A worker on another machine holds two rows: nothing here can prove it dead.
    ctx.store.deliveries.claim_batch(
        owner="other-host:1:1.00", limit=2, now=clock(), lease_seconds=lease
    )

    with sender_lock(ctx):  # as if another process on this machine were sending too
        first = pipeline.send_pending(ctx)
    assert first.count("sent") == 2  # the other two wait for their lease to run out

    clock.advance(seconds=lease + 1)
    second = pipeline.send_pending(ctx)

    assert second.released == 2
    assert second.count("sent") == 2
    assert relay.copies() == {f"reader{i}@uni.example": 1 for i in range(4)}


def test_the_file_transport_writes_one_eml_per_digest(
    relay: Relay, day_with_readers: Any, tmp_path: Any
) -> None:
    ctx = day_with_readers(relay, n=3)
    outbox = tmp_path / "outbox"

    pipeline.send_pending(ctx, FileTransport(outbox))

    files = sorted(p.name for p in outbox.glob("*.eml"))
    assert len(files) == 3 and all(name.startswith("reader") for name in files)
    assert b"Message-ID: <" in (outbox / files[0]).read_bytes()
    # Each holds the reader's live links: readable by the operator only.
    assert {p.stat().st_mode & 0o777 for p in outbox.glob("*.eml")} == {0o600}
    assert set(statuses(ctx).values()) == {"sent"}
    assert relay.copies() == {}


def test_messages_reach_the_relay_byte_for_byte(relay: Relay, day_with_readers: Any) -> None:
    # Lines that start with a dot are dot-stuffed on the wire and unstuffed by the relay; a
    # message with bare LF line endings (not one this product builds) is normalised to CRLF.
    ctx = day_with_readers(relay, n=0)
    dotted = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\n. spaced\r\nend\r\n"
    bare_lf = b"Subject: lf\n\nplain\n.dot\nno final newline"
    results: list[SendResult] = []

    async def send() -> None:
        async with quick(ctx) as transport:
            await transport.send_many(
                [
                    Envelope(1, "digest@example.org", "dots@uni.example", dotted),
                    Envelope(2, "digest@example.org", "lf@uni.example", bare_lf),
                ],
                results.append,
            )

    asyncio.run(send())

    assert sorted((r.key, r.ok) for r in results) == [(1, True), (2, True)]
    received = dict(relay.accepted)
    assert received["dots@uni.example"] == dotted
    assert received["lf@uni.example"] == bare_lf.replace(b"\n", b"\r\n") + b"\r\n"
