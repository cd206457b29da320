"""`digest schedule`'s passes under a moving clock: one digest per reader per local day (or week).

Each story drives `pipeline.schedule_pass` (what every tick and `digest schedule --once` run)
through days of frozen time, the way the scheduler would every 15 minutes.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import pipeline, store
from digest.config import SAMPLE_FEED
from digest.store import Preferences
from digest.store.schema import DeliveryRow, SubscriberRow
from tests.sources_fixtures import FEEDS, Reply

pytest_plugins = ["tests.sources_fixtures"]

TICK = timedelta(minutes=15)


def add_reader(ctx: pipeline.Context, email: str, **preferences: Any) -> None:
    ctx.store.subscribers.add(
        email,
        Preferences(keywords="learning, models, data", channels=("email",), **preferences),
        confirmed=True,
        now=ctx.now(),
    )


def run_passes(
    ctx: pipeline.Context, start: str, end: str, *, send: bool = False, every: timedelta = TICK
) -> None:
    """A scheduler ticking from `start` to `end` (UTC)."""
    moment = datetime.fromisoformat(start).replace(tzinfo=UTC)
    last = datetime.fromisoformat(end).replace(tzinfo=UTC)
    while moment <= last:
        with freeze_time(moment):
            pipeline.schedule_pass(ctx, send=send)
        moment += every


def digests(ctx: pipeline.Context, email: str) -> list[tuple[date, datetime]]:
    """(digest date, moment it was planned) of each digest a reader has, in order."""
    with Session(ctx.engine) as session:
        rows = session.execute(
            select(DeliveryRow.digest_date, DeliveryRow.created_at)
            .join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
            .where(SubscriberRow.email == email)
            .order_by(DeliveryRow.digest_date)
        ).all()
    return [(day, created) for day, created in rows]


@pytest.mark.parametrize(
    "zone, send_hour, start, end",
    [
        # New York springs forward 2027-03-14 02:00 -> 03:00: 02:00 never happens that day.
        ("America/New_York", 2, "2027-03-13 00:00", "2027-03-16 06:00"),
        ("America/New_York", 8, "2027-03-13 00:00", "2027-03-16 06:00"),
        # ... and falls back 2027-11-07 02:00 -> 01:00: 01:00 happens twice that day.
        ("America/New_York", 1, "2027-11-06 00:00", "2027-11-09 06:00"),
        # Berlin: 2027-03-28 02:00 -> 03:00 and 2027-10-31 03:00 -> 02:00.
        ("Europe/Berlin", 2, "2027-03-27 00:00", "2027-03-30 00:00"),
        ("Europe/Berlin", 2, "2027-10-30 00:00", "2027-11-02 00:00"),
        ("Asia/Kolkata", 7, "2027-03-13 00:00", "2027-03-16 00:00"),  # UTC+05:30
        ("Pacific/Chatham", 6, "2027-04-02 00:00", "2027-04-06 00:00"),  # +13:45 -> +12:45 on 04-04
    ],
)
def test_one_digest_per_local_day_at_the_readers_hour_across_dst_and_odd_offsets(
    make_settings: Any, zone: str, send_hour: int, start: str, end: str
) -> None:
    with freeze_time(start):
        ctx = pipeline.build_context(make_settings())
        add_reader(ctx, "reader@lab.example", timezone=zone, send_hour=send_hour)

    run_passes(ctx, start, end, every=timedelta(minutes=30))

    planned = digests(ctx, "reader@lab.example")
    local_days = [day for day, _ in planned]
    assert len(local_days) == len(set(local_days)), f"two digests on one day: {local_days}"
    first = datetime.fromisoformat(start).replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()
    last = datetime.fromisoformat(end).replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    expected = [
        first + timedelta(days=n)
        for n in range((last.date() - first).days + 1)
        if first + timedelta(days=n) < last.date() or last.hour >= send_hour
    ]
    assert local_days == expected, "a day got no digest"
    subscribed = datetime.fromisoformat(start).replace(tzinfo=UTC)
    for day, created in planned:
        local = created.astimezone(ZoneInfo(zone))
        assert local.date() == day
        if created == subscribed:
            continue  # signed up after their hour: that day's digest goes out at once
        # at the reader's hour, or the first moment after it when DST skipped it
        assert local.hour == send_hour or (local.hour == send_hour + 1 and local.minute == 0)


def test_a_weekly_reader_gets_mail_on_their_weekday_even_after_downtime(
    make_settings: Any,
) -> None:
    with freeze_time("2027-03-01 06:00"):  # a Monday
        ctx = pipeline.build_context(make_settings())
        add_reader(ctx, "weekly@lab.example", frequency="weekly", send_weekday=3, send_hour=9)

    run_passes(ctx, "2027-03-01 06:00", "2027-03-12 23:00", every=timedelta(hours=1))
    # The machine is off from Wednesday 17th to Friday 19th 12:00, over Thursday's slot.
    run_passes(ctx, "2027-03-13 00:00", "2027-03-17 00:00", every=timedelta(hours=1))
    run_passes(ctx, "2027-03-19 12:00", "2027-04-02 00:00", every=timedelta(hours=1))

    planned = digests(ctx, "weekly@lab.example")
    assert [day.isoformat() for day, _ in planned] == [
        "2027-03-04",
        "2027-03-11",
        "2027-03-18",  # Thursday's digest, caught up on Friday when the machine came back
        "2027-03-25",
        "2027-04-01",
    ]
    assert planned[2][1] == datetime(2027, 3, 19, 12, tzinfo=UTC)
    assert all(day.weekday() == 3 for day, _ in planned)


def split_sample(tmp_path: Path) -> tuple[Path, list[str]]:
    """A feed file holding none of the sample's papers yet, and the sample's entries to add."""
    text = SAMPLE_FEED.read_text(encoding="utf-8")
    entries = re.findall(r"  <entry>.*?</entry>\n", text, flags=re.S)
    head = text[: text.index("  <entry>")]
    feed = tmp_path / "growing.atom"
    feed.write_text(head + "</feed>\n", encoding="utf-8")
    return feed, [head, *entries]


def publish(feed: Path, parts: list[str], count: int) -> None:
    """The feed now lists the first `count` sample entries."""
    head, entries = parts[0], parts[1:]
    feed.write_text(head + "".join(entries[:count]) + "</feed>\n", encoding="utf-8")


def test_after_36_hours_off_each_reader_gets_one_digest_with_everything_missed(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    feed, parts = split_sample(tmp_path)
    settings = make_settings(
        sources=[{"name": "papers", "url": str(feed), "kind": "atom"}],
        digest={"first_digest_days": 1},
    )
    publish(feed, parts, 40)
    with freeze_time("2027-03-10 06:00"):
        ctx = pipeline.build_context(settings)
        add_reader(ctx, "ada@lab.example", send_hour=8, max_papers=100)
    run_passes(ctx, "2027-03-10 06:00", "2027-03-10 08:00", send=True)
    assert len(smtp_server.to("ada@lab.example")) == 1
    publish(feed, parts, 80)  # fetched that evening, after the day's digest
    run_passes(ctx, "2027-03-10 19:00", "2027-03-10 20:00", send=True)
    smtp_server.clear()

    # Off for 36 hours: 20:00 on the 10th to 08:00 on the 12th, over the 11th's digest.
    publish(feed, parts, 148)
    run_passes(ctx, "2027-03-12 08:00", "2027-03-12 23:45", send=True)

    assert len(smtp_server.to("ada@lab.example")) == 1
    assert [d.isoformat() for d, _ in digests(ctx, "ada@lab.example")] == [
        "2027-03-10",
        "2027-03-12",
    ]
    first_seen = Counter(
        paper.first_seen_at.strftime("%d %H:%M") for paper in recommended(ctx, "2027-03-12")
    )
    assert set(first_seen) == {"10 19:00", "12 08:00"}, "missed papers are not all covered"


def recommended(ctx: pipeline.Context, day: str) -> list[Any]:
    """The papers a reader's digest of that day recommended (as composed, once)."""
    with Session(ctx.engine) as session:
        [subscriber_id] = session.scalars(
            select(DeliveryRow.subscriber_id).where(
                DeliveryRow.digest_date == date.fromisoformat(day)
            )
        ).all()
    unit = (subscriber_id, date.fromisoformat(day))
    composition = ctx.store.digests.get_many([unit])[unit]
    ids = [item.paper_id for item in composition.items if item.section == "match"]
    return list(ctx.store.papers.by_ids(ids).values())


def test_a_clock_that_jumps_back_sends_nothing_twice(make_settings: Any, smtp_server: Any) -> None:
    with freeze_time("2027-03-10 06:00"):
        ctx = pipeline.build_context(make_settings())
        add_reader(ctx, "early@lab.example", send_hour=7)
        add_reader(ctx, "new@lab.example", send_hour=7)
    run_passes(ctx, "2027-03-10 06:00", "2027-03-10 09:00", send=True)
    sent_before = Counter(m["To"] for m in smtp_server.messages)

    # Stepped back 25 hours: the 9th's 07:00 comes round again, and every hour after it.
    run_passes(ctx, "2027-03-09 08:00", "2027-03-10 09:00", send=True)

    assert Counter(m["To"] for m in smtp_server.messages) == sent_before
    for email in ("early@lab.example", "new@lab.example"):
        assert [d.isoformat() for d, _ in digests(ctx, email)] == ["2027-03-10"]
    # And the real next day still comes.
    run_passes(ctx, "2027-03-11 06:45", "2027-03-11 07:15", send=True)
    assert [d.isoformat() for d, _ in digests(ctx, "early@lab.example")] == [
        "2027-03-10",
        "2027-03-11",
    ]


def test_a_pass_fetches_before_it_plans_so_the_new_papers_are_in_the_digest(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    feed, parts = split_sample(tmp_path)
    with freeze_time("2027-03-10 07:00"):
        ctx = pipeline.build_context(
            make_settings(sources=[{"name": "papers", "url": str(feed), "kind": "atom"}])
        )
        add_reader(ctx, "ada@lab.example", send_hour=7, max_papers=100)
        publish(feed, parts, 148)

        report = pipeline.schedule_pass(ctx)

    assert [f.new for f in report.fetched] == [148]
    assert report.planned == 1
    assert len(smtp_server.to("ada@lab.example")) == 1
    assert recommended(ctx, "2027-03-10"), "the digest went out before the papers were stored"


def test_the_next_pass_fetches_only_once_fetch_minutes_have_passed(make_settings: Any) -> None:
    ctx = pipeline.build_context(make_settings(schedule={"fetch_minutes": 60, "run_minutes": 15}))
    fetched = []
    for moment in ("2027-03-10 07:00", "2027-03-10 07:15", "2027-03-10 07:59", "2027-03-10 08:00"):
        with freeze_time(moment):
            fetched.append(bool(pipeline.schedule_pass(ctx, send=False).fetched))
    # The clock went back a day: the last fetch is "in the future", so fetch now, not in 25 hours.
    with freeze_time("2027-03-09 07:00"):
        fetched.append(bool(pipeline.schedule_pass(ctx, send=False).fetched))
    assert fetched == [True, False, False, True, True]


def test_weekly_readers_choose_their_weekday_from_the_command_line(
    config_file: Path, smtp_server: Any
) -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    runner = CliRunner()
    args = ["--config", str(config_file), "subscribe", "w@lab.example", "--keywords", "diffusion"]
    ok = runner.invoke(
        cli, [*args, "--confirmed", "--frequency", "weekly", "--send-weekday", "thursday"]
    )
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, [*args, "--frequency", "weekly", "--send-weekday", "someday"])
    assert bad.exit_code != 0
    assert "send_weekday" in bad.output
    listed = runner.invoke(cli, ["--config", str(config_file), "subscribers", "list"])
    assert "weekly (thursday)" in listed.output
    # a reader who has yet to confirm is told the day in the confirmation mail
    pending = ["--config", str(config_file), "subscribe", "p@lab.example", "--keywords", "x"]
    runner.invoke(
        cli, [*pending, "--frequency", "weekly", "--send-weekday", "fri", "--send-hour", "9"]
    )
    [mail] = smtp_server.to("p@lab.example")
    assert "Every Friday at 09:00" in mail.get_body(preferencelist=("plain",)).get_content()


def test_after_downtime_an_arxiv_api_source_is_backfilled_for_the_days_missed(
    make_settings: Any, smtp_server: Any, feed_server: Any
) -> None:
    whole = (FEEDS / "arxiv-api.atom").read_text(encoding="utf-8")
    entries = re.findall(r"  <entry>.*?</entry>\n", whole, flags=re.S)
    newest_only = whole.replace(entries[1], "").replace(entries[2], "")
    atom = {"Content-Type": "application/atom+xml"}
    daily = feed_server.route(
        "/api/query?search_query=cat%3Acs.LG&max_results=1", Reply(200, newest_only.encode(), atom)
    )
    feed_server.route("/api/query", Reply(200, whole.encode(), atom))  # any narrowed query
    settings = make_settings(sources=[{"name": "arxiv-lg", "url": daily, "kind": "arxiv-api"}])
    with freeze_time("2027-03-10 06:00"):
        ctx = pipeline.build_context(settings)
        ctx.store.subscribers.add(
            "fl@lab.example",
            Preferences(keywords="hypernetworks, holography", channels=("email",), send_hour=8),
            confirmed=True,
            now=ctx.now(),
        )
    run_passes(ctx, "2027-03-10 07:00", "2027-03-10 07:00")
    assert [r.path for r in feed_server.requests] == [
        "/api/query?search_query=cat%3Acs.LG&max_results=1"
    ]

    # Off for 36 hours; the daily query still shows only the newest paper.
    run_passes(ctx, "2027-03-11 19:00", "2027-03-11 19:00", send=True)

    backfill = [r.path for r in feed_server.requests if "submittedDate" in r.path]
    assert len(backfill) == 1
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(backfill[0]).query)
    assert query["search_query"] == ["(cat:cs.LG) AND submittedDate:[202703080700 TO 202703111900]"]
    [catch_up] = smtp_server.to("fl@lab.example")
    body = catch_up.get_body(preferencelist=("plain",)).get_content()
    assert "Personalized Federated Learning with Hypernetworks" in body  # only in the backfill


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_one_schedule_lock_per_database_and_it_goes_with_its_holder(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'digest.sqlite3'}"
    )
    first, second = store.open_engine(url, create=True), store.open_engine(url)
    holder, other = store.ScheduleLock(first), store.ScheduleLock(second)

    assert holder.acquire() and holder.acquire()  # taking it again is a no-op
    assert not other.acquire()
    if database == "postgresql":
        # The server drops the holder's connection (a restart, a network cut): the lock is gone
        # with it, the other takes it, and the first sees it lost the lock.
        with first.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            connection.commit()
        # The terminated backend lets go of its locks as it exits, a moment later.
        deadline = time.monotonic() + 10
        while not other.acquire():
            assert time.monotonic() < deadline, "the lock of a dropped connection was never freed"
            time.sleep(0.05)
        assert not holder.acquire()
        other.release()
    else:
        holder.release()
    assert other.acquire()
    other.release()


def test_each_pass_records_when_it_ran_and_when_the_next_one_comes(make_settings: Any) -> None:
    ctx = pipeline.build_context(make_settings(schedule={"run_minutes": 15}))
    with freeze_time("2027-03-10 07:00"):
        pipeline.schedule_pass(ctx, send=False)
    assert ctx.store.meta.read("schedule.last_run_at") == "2027-03-10T07:00:00+00:00"
    assert ctx.store.meta.read("schedule.next_run_at") == "2027-03-10T07:15:00+00:00"


def test_schedule_once_says_why_it_does_nothing_while_another_holds_the_lock(
    config_file: Path, make_settings: Any
) -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    ctx = pipeline.build_context(make_settings())
    with store.ScheduleLock(ctx.engine) as held:
        assert held.acquire()
        for _ in range(2):
            result = CliRunner().invoke(cli, ["--config", str(config_file), "schedule", "--once"])
            assert result.exit_code == 0
            assert "another `digest schedule` holds the schedule lock" in result.stderr
            assert "pass:" not in result.stderr
    assert ctx.store.meta.read("schedule.last_run_at") is None  # no pass ran
    done = CliRunner().invoke(cli, ["--config", str(config_file), "schedule", "--once"])
    assert "pass: fetched 1 source(s)" in done.stderr


def test_weekly_readers_get_one_digest_in_seven_days_and_daily_ones_every_day(
    make_settings: Any, smtp_server: Any
) -> None:
    with freeze_time("2025-11-20 08:00:00"):  # a Thursday
        ctx = pipeline.build_context(make_settings())
        for email, frequency in (("weekly@lab.example", "weekly"), ("daily@lab.example", "daily")):
            ctx.store.subscribers.add(
                email,
                Preferences(
                    keywords="agents",
                    send_hour=7,
                    frequency=frequency,
                    send_weekday=3,
                    channels=("email",),
                ),
                confirmed=True,
                now=ctx.now(),
            )
        assert pipeline.plan(ctx, due_only=True) == 2

    planned = {}
    for day in ("2025-11-23", "2025-11-26", "2025-11-27"):
        with freeze_time(f"{day} 08:00:00"):
            planned[day] = pipeline.plan(ctx, due_only=True)

    # 3 and 6 days on: only the daily reader; a week on (Thursday again): both
    assert planned == {"2025-11-23": 1, "2025-11-26": 1, "2025-11-27": 2}
