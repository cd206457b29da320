"""The single mails: double opt-in confirmation, "already subscribed", goodbye."""

from __future__ import annotations

from typing import Any

from digest import pipeline
from digest.models import Subscriber
from digest.pipeline import Context
from digest.store import Preferences


def add_reader(ctx: Context, email: str, *, confirmed: bool) -> Subscriber:
    reader, _ = ctx.store.subscribers.add(
        email, Preferences(keywords="diffusion"), confirmed=confirmed, now=ctx.now()
    )
    return reader


def sign_up(ctx: Context, email: str) -> Subscriber:
    """What the web form and `digest subscribe` do: record the sign-up and queue its mail."""
    reader, _ = ctx.store.subscribers.add(
        email,
        Preferences(keywords="diffusion"),
        confirmed=False,
        now=ctx.now(),
        send_confirmation=True,
    )
    return reader


def test_a_pending_reader_gets_a_confirmation_link(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings())
    sign_up(ctx, "new@uni.example")

    pipeline.send_mails_now(ctx)

    [message] = smtp_server.to("new@uni.example")
    assert message["Subject"].startswith("Confirm your subscription")
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "https://papers.example.org/confirm/" in body


def test_an_active_reader_signing_up_again_gets_their_preferences_link(
    make_settings: Any, smtp_server: Any
) -> None:
    ctx = pipeline.build_context(make_settings())
    add_reader(ctx, "old@uni.example", confirmed=True)
    sign_up(ctx, "old@uni.example")

    pipeline.send_mails_now(ctx)

    [message] = smtp_server.to("old@uni.example")
    assert message["Subject"].startswith("You already get")
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "https://papers.example.org/preferences/" in body
    assert "/confirm/" not in body


def test_goodbye_offers_a_way_back(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings())
    reader = add_reader(ctx, "bye@uni.example", confirmed=True)
    ctx.store.subscribers.unsubscribe(id=reader.id, now=ctx.now(), goodbye=True)

    pipeline.send_mails_now(ctx)

    [message] = smtp_server.to("bye@uni.example")
    assert "unsubscribed" in message["Subject"]
    assert (
        "https://papers.example.org/" in message.get_body(preferencelist=("plain",)).get_content()
    )


def test_a_confirmation_queued_while_the_relay_is_down_goes_out_once_it_is_back(
    make_settings: Any, smtp_server: Any
) -> None:
    from conftest import free_port

    down = pipeline.build_context(
        make_settings(smtp={"port": free_port(), "timeout": 2, "retries": 0})
    )
    sign_up(down, "new@uni.example")

    try:
        pipeline.send_mails_now(down)
    except pipeline.MailError as exc:
        assert "relay" in str(exc)
    else:
        raise AssertionError("sending to a closed port must fail")
    assert down.store.mails.counts() == {"pending": 1}  # queued, no attempt burned

    up = pipeline.build_context(make_settings())
    report = pipeline.run(up, fetch_first=False)

    assert report.mails == (1, 0)
    [message] = smtp_server.to("new@uni.example")
    assert message["Subject"].startswith("Confirm your subscription")
    assert up.store.mails.counts() == {"sent": 1}


def test_a_relay_that_is_down_stops_the_run_and_keeps_every_digest_queued(
    make_settings: Any,
) -> None:
    from conftest import free_port

    from digest.deliver.transport import RelayError

    ctx = pipeline.build_context(
        make_settings(smtp={"port": free_port(), "retries": 1, "retry_backoff": 0.01})
    )
    for i in range(3):
        ctx.store.subscribers.add(
            f"r{i}@uni.example",
            Preferences(keywords="diffusion", channels=("email",)),
            confirmed=True,
            now=ctx.now(),
        )
    pipeline.fetch(ctx)
    pipeline.plan(ctx)

    try:
        pipeline.send_pending(ctx)
    except RelayError as exc:
        assert "nothing was sent" in str(exc)
    else:
        raise AssertionError("a relay nobody listens on must stop the run")

    counts = ctx.store.deliveries.counts()
    assert counts == {"pending": 3}  # no attempt burned: tomorrow's run sends them all
