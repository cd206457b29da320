"""One path from plan to inbox: a digest is composed once, whatever the relay does.

Stories against a real SMTP relay on 127.0.0.1 (aiosmtpd) that answers what each test tells it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest import pipeline
from digest.cli import cli as main
from digest.deliver.transport import RelayError, SmtpTransport
from digest.store import Preferences
from tests.smtp_fixtures import Relay, Rule

pytest_plugins = ["tests.smtp_fixtures"]

DAY = date(2025, 11, 27)
START = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)

INTERESTS = [
    "diffusion models, video generation",
    '"reinforcement learning", reasoning',
    "large language models, -medical",
    "agents, tool use",
    "3D, gaussian splatting",
    "speech, audio",
    "robotics, manipulation",
    "graph neural networks, molecules",
    "quantization, efficient inference",
    "benchmark, evaluation",
]


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at


def readers_on(relay: Relay, make_settings: Any, clock: Clock, n: int) -> pipeline.Context:
    """`n` readers of varied interests, on both channels, with today's papers fetched."""
    settings = make_settings(
        smtp={"host": relay.host, "port": relay.port, "retries": 0, "timeout": 5},
    )
    ctx = pipeline.build_context(settings, now=clock)
    pipeline.fetch(ctx)
    for i in range(n):
        ctx.store.subscribers.add(
            f"reader{i}@uni.example",
            Preferences(keywords=INTERESTS[i % len(INTERESTS)], max_papers=3 + i % 8),
            confirmed=True,
            now=clock(),
        )
    return ctx


def sign_up_while_the_relay_hiccups(
    relay: Relay, make_settings: Any, clock: Clock, email: str
) -> pipeline.Context:
    """A sign-up whose confirmation the relay answers 451 once: the mail stays queued."""
    ctx = readers_on(relay, make_settings, clock, 0)
    relay.rules[email] = Rule("451 4.3.0 try later", times=1)
    ctx.store.subscribers.add(
        email,
        Preferences(keywords="agents"),
        confirmed=False,
        now=clock(),
        send_confirmation=True,
    )
    with pytest.raises(pipeline.MailError):
        pipeline.send_mails_now(ctx)
    return ctx


def cli_on(relay: Relay, make_settings: Any, config_file: Path) -> Any:
    """`digest --config FILE ...` against the test relay, as an operator runs it."""
    text = config_file.read_text()
    config_file.write_text(
        text.replace(f"port = {make_settings().smtp.port}", f"port = {relay.port}")
    )
    runner = CliRunner()

    def digest(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config_file), *args])

    return digest


def titles_in(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def composed_titles(ctx: pipeline.Context, email: str) -> list[str]:
    reader = ctx.store.subscribers.get(email=email)
    assert reader.id is not None
    [composition] = ctx.store.digests.get_many([(reader.id, DAY)]).values()
    papers = ctx.store.papers.by_ids([i.paper_id for i in composition.items])
    return [papers[i.paper_id].title for i in composition.items if i.section == "match"]


def test_a_relay_answering_451_for_a_whole_run_changes_nothing_the_reader_gets(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = readers_on(relay, make_settings, clock, 6)
    for i in range(6):
        relay.rules[f"reader{i}@uni.example"] = Rule("451 4.3.0 try again later")

    first = pipeline.run(ctx, fetch_first=False, digest_date=DAY)

    assert relay.copies() == {}
    assert first.sent.count("pending") == 6  # each reader's email waits for a later run
    before = {
        f"reader{i}@uni.example": composed_titles(ctx, f"reader{i}@uni.example") for i in range(6)
    }
    feed_before = {
        email: [
            item.paper_id
            for item in ctx.store.digests.feed_items(
                ctx.store.subscribers.get(email=email).id or 0, since=DAY
            )
        ]
        for email in before
    }

    relay.rules.clear()
    clock.at += timedelta(hours=3)  # past every backoff
    second = pipeline.run(ctx, fetch_first=False, digest_date=DAY)

    assert second.sent.count("sent") == 6
    for email, titles in before.items():
        assert titles, f"{email} had papers composed for them"
        assert composed_titles(ctx, email) == titles  # composed once, never again
        body = titles_in(relay.message_to(email))
        positions = [body.find(title[:40]) for title in titles]
        assert -1 not in positions, f"{email} got other papers than were composed"
        assert positions == sorted(positions), f"{email} got them in another order"
        reader_id = ctx.store.subscribers.get(email=email).id or 0
        feed = [item.paper_id for item in ctx.store.digests.feed_items(reader_id, since=DAY)]
        assert feed == feed_before[email]  # the email's retry did not change the feed copy


def test_a_relay_that_is_down_for_a_run_sends_the_same_digests_when_it_is_back(
    relay: Relay, make_settings: Any
) -> None:
    from conftest import free_port

    clock = Clock()
    up = readers_on(relay, make_settings, clock, 4)
    down = pipeline.build_context(
        make_settings(smtp={"port": free_port(), "retries": 0, "timeout": 2}), now=clock
    )

    with pytest.raises(RelayError):
        pipeline.run(down, fetch_first=False, digest_date=DAY)
    assert up.store.deliveries.counts_for(digest_date=DAY).get("sent", 0) == 4  # feed copies
    composed = {
        f"reader{i}@uni.example": composed_titles(up, f"reader{i}@uni.example") for i in range(4)
    }

    report = pipeline.run(up, fetch_first=False, digest_date=DAY)

    assert report.sent.count("sent") == 4
    for email, titles in composed.items():
        body = titles_in(relay.message_to(email))
        assert all(title[:40] in body for title in titles)


def test_a_relay_refusing_everyone_for_its_own_reasons_stops_the_run_and_blames_nobody(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = readers_on(relay, make_settings, clock, 5)
    for i in range(5):
        relay.rules[f"reader{i}@uni.example"] = Rule("554 5.7.1 Relay access denied")

    for _ in range(4):  # more than bounce_after runs
        with pytest.raises(RelayError, match=r"5\.7\.1"):
            pipeline.run(ctx, fetch_first=False, digest_date=DAY)
        clock.at += timedelta(days=1)

    readers = ctx.store.subscribers.all()
    assert {r.status for r in readers} == {"active"}  # nobody bounced
    counts = ctx.store.deliveries.counts_for(digest_date=DAY)
    assert counts.get("failed", 0) == 0 and counts.get("pending", 0) == 5


def test_the_cli_says_what_to_fix_and_exits_1_when_the_relay_refuses_us(
    relay: Relay, make_settings: Any, config_file: Path
) -> None:
    digest = cli_on(relay, make_settings, config_file)
    assert (
        digest("subscribe", "a@uni.example", "--keywords", "diffusion", "--confirmed").exit_code
        == 0
    )
    relay.rules["a@uni.example"] = Rule("550 5.7.1 Relay access denied")

    result = digest("-q", "run")

    assert result.exit_code == 1
    assert "5.7.1" in result.output and "Nothing was lost" in result.output


def test_the_dry_run_lists_exactly_what_the_run_then_sends(
    relay: Relay, make_settings: Any, config_file: Path
) -> None:
    digest = cli_on(relay, make_settings, config_file)
    assert digest("fetch").exit_code == 0
    for i in range(30):
        interest = INTERESTS[i % len(INTERESTS)]
        channels = ["--channels", "email"] if i % 3 == 0 else []
        result = digest(
            "subscribe",
            f"r{i}@lab.example",
            "--keywords",
            interest,
            "--confirmed",
            "--max-papers",
            str(2 + i % 9),
            *channels,
        )
        assert result.exit_code == 0, result.output

    dry = digest("run", "--dry-run", "--no-fetch", "--format", "json")
    real = digest("run", "--no-fetch", "--format", "json")

    assert dry.exit_code == 0 and real.exit_code == 0, (dry.output, real.output)
    previewed = {
        d["email"]: [p["key"] for p in d["papers"]] for d in json.loads(dry.stdout)["digests"]
    }
    sent = {d["email"]: [p["key"] for p in d["papers"]] for d in json.loads(real.stdout)["digests"]}
    assert len(sent) == 30  # one row per reader, whatever their channels
    assert previewed == sent
    assert any(sent.values()) and sum(1 for v in sent.values() if v) > 10


def test_no_paper_is_recommended_twice_across_days(relay: Relay, make_settings: Any) -> None:
    clock = Clock()
    ctx = readers_on(relay, make_settings, clock, 3)
    pipeline.run(ctx, fetch_first=False, digest_date=DAY)
    clock.at += timedelta(days=1)
    pipeline.run(ctx, fetch_first=False, digest_date=DAY + timedelta(days=1))

    for i in range(3):
        reader = ctx.store.subscribers.get(email=f"reader{i}@uni.example")
        assert reader.id is not None
        days = ctx.store.digests.get_many([(reader.id, DAY), (reader.id, DAY + timedelta(days=1))])
        seen: list[int] = [
            item.paper_id for c in days.values() for item in c.items if item.section == "match"
        ]
        assert len(seen) == len(set(seen))


def test_a_web_style_sign_up_while_the_relay_is_down_is_confirmed_after_it_recovers(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = sign_up_while_the_relay_hiccups(relay, make_settings, clock, "new@uni.example")
    assert ctx.store.mails.counts() == {"pending": 1}

    clock.at += timedelta(hours=1)
    report = pipeline.run(ctx, fetch_first=False, digest_date=DAY)

    assert report.mails == (1, 0)
    assert relay.copies() == {"new@uni.example": 1}
    assert "Confirm" in relay.message_to("new@uni.example")["Subject"]


def test_a_confirmation_whose_link_would_have_expired_is_not_sent(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = sign_up_while_the_relay_hiccups(relay, make_settings, clock, "late@uni.example")

    clock.at += timedelta(days=ctx.settings.web.token_max_age_days + 1)
    pipeline.send_queued_mails(ctx, SmtpTransport(ctx.settings.smtp))

    assert relay.copies() == {}
    assert ctx.store.mails.counts() == {"failed": 1}


def test_a_relay_refusing_most_recipients_with_bare_550_bounces_nobody(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = readers_on(relay, make_settings, clock, 8)
    for i in range(7):  # no enhanced code to tell: the share of refusals does
        relay.rules[f"reader{i}@uni.example"] = Rule("550 Requested action not taken")

    with pytest.raises(RelayError, match="refused 7 of 8 recipients"):
        pipeline.run(ctx, fetch_first=False, digest_date=DAY)

    assert {r.status for r in ctx.store.subscribers.all()} == {"active"}
    emails = {
        r["email"]: r["status"]
        for r in ctx.store.deliveries.for_day(digest_date=DAY)
        if r["channel"] == "email"
    }
    assert sorted(emails.values()).count("pending") == 7  # given back, no attempt burned


def test_a_few_refused_mailboxes_among_many_accepted_are_their_own(
    relay: Relay, make_settings: Any
) -> None:
    clock = Clock()
    ctx = readers_on(relay, make_settings, clock, 8)
    relay.rules["reader3@uni.example"] = Rule("550 5.1.1 no such user")

    report = pipeline.run(ctx, fetch_first=False, digest_date=DAY)

    assert report.sent.count("failed") == 1
    [row] = [
        r
        for r in ctx.store.deliveries.for_day(digest_date=DAY)
        if r["email"] == "reader3@uni.example" and r["channel"] == "email"
    ]
    assert row["status"] == "failed" and "5.1.1" in row["last_error"]


def test_a_run_that_prepares_in_a_second_process_sends_the_same_digests(
    relay: Relay, make_settings: Any
) -> None:
    settings = make_settings(
        smtp={"host": relay.host, "port": relay.port, "connections": 3},
        delivery={"prepare_process": "always", "batch_size": 4},
    )
    ctx = pipeline.build_context(settings)  # the real clock: the preparer is another process
    pipeline.fetch(ctx)
    for i in range(14):
        # Every third reader reads by email only: batches of 4 readers hold 5 to 8 rows.
        channels = ("email",) if i % 3 == 0 else ("email", "feed")
        ctx.store.subscribers.add(
            f"reader{i}@uni.example",
            Preferences(keywords=INTERESTS[i % len(INTERESTS)], max_papers=4, channels=channels),
            confirmed=True,
            now=ctx.now(),
        )
    day = ctx.now().date()
    dry = pipeline.run(ctx, fetch_first=False, dry_run=True, digest_date=day)
    previewed = {o.email: [p.key for p in o.papers] for o in dry.rows}

    report = pipeline.run(ctx, fetch_first=False, digest_date=day)

    assert report.sent.total == 14  # one row per reader, whatever its channels
    assert len(report.rows) == 14
    sent = {o.email: [p.key for p in o.papers] for o in report.rows}
    assert sent == previewed
    emails = [e for e, keys in sent.items() if keys]
    assert relay.copies() == {e: 1 for e in emails}
    assert ctx.store.deliveries.counts().get("sending", 0) == 0


def test_a_run_with_out_writes_every_sent_digest_even_where_preparers_would_run(
    relay: Relay, make_settings: Any, tmp_path: Path
) -> None:
    """`--out` renders files from whole digests, which stay in the process that prepared them:
    such a run prepares in the sending process, and every mailed digest has its files."""
    settings = make_settings(
        smtp={"host": relay.host, "port": relay.port, "connections": 3},
        delivery={"prepare_process": "always", "batch_size": 4},
    )
    ctx = pipeline.build_context(settings)
    pipeline.fetch(ctx)
    for i in range(10):
        ctx.store.subscribers.add(
            f"reader{i}@uni.example",
            Preferences(keywords=INTERESTS[i % len(INTERESTS)], max_papers=4),
            confirmed=True,
            now=ctx.now(),
        )
    out = tmp_path / "sent"

    report = pipeline.run(ctx, fetch_first=False, out=out)

    mailed = sorted(e for e in relay.copies())
    assert mailed, "some readers got mail"
    written = sorted(p.stem.split("-", 1)[1] for p in out.glob("*.eml"))
    assert written == mailed
    assert all((out / f"{p.stem}.html").read_text() for p in out.glob("*.eml"))
    assert report.sent.count("sent") == len(mailed)
