"""`digest schedule` and `digest worker` as real processes: a moved clock (libfaketime), two
schedulers on one database, and SIGTERM in the middle of sending.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from digest import pipeline, store
from digest.config import SAMPLE_FEED, Settings
from digest.store.schema import DeliveryRow, SubscriberRow
from tests.sources_fixtures import Reply

pytest_plugins = ["tests.sources_fixtures"]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None or not LIBFAKETIME.exists(),
    reason="libfaketime is not installed (apt-get install faketime)",
)


def write_config(path: Path, settings: Settings) -> Path:
    """The settings as the JSON-shaped TOML the CLI reads (TOML is a superset for these values)."""
    data = settings.model_dump(mode="json", by_alias=True, exclude={"path"}, exclude_none=True)
    lines: list[str] = []
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        elif isinstance(values, list) and values and isinstance(values[0], dict):
            for item in values:
                lines.append(f"[[{section}]]")
                lines.extend(f"{key} = {json.dumps(value)}" for key, value in item.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def digest_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "digest", "--config", str(config), *args]


def run_at(moment: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a digest command with the clock at `moment` (UTC, running from there)."""
    return subprocess.run(
        ["faketime", "-f", f"@{moment}", *digest_command(config, *args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "UTC"},
    )


class Running:
    """A long-running digest process whose log lines are collected as they come."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TZ": "UTC", **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, count: int = 1, limit: float = 120.0) -> str:
        deadline = time.monotonic() + limit
        while True:
            found = [line for line in self.lines if text in line]
            if len(found) >= count:
                return found[count - 1]
            assert self.process.poll() is None or self._reader.is_alive(), "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM, limit: float = 60.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=limit)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def running() -> Any:
    """Start processes with `running(command, env)`; any left alive is killed after the test."""
    started: list[Running] = []

    def start(command: list[str], env: dict[str, str] | None = None) -> Running:
        started.append(Running(command, env))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def add_readers(ctx: pipeline.Context, count: int, **values: Any) -> list[str]:
    emails = [f"reader{i:04d}@uni.example" for i in range(count)]
    now = ctx.now()
    with ctx.engine.begin() as connection:
        connection.execute(
            insert(SubscriberRow),
            [
                {
                    "email": email,
                    "status": "active",
                    "keywords": "learning, models, data",
                    "channels": ["email"],
                    "feed_token": f"feed-{i}",
                    "created_at": now,
                    "confirmed_at": now,
                    "token_version": 0,
                    "bounce_count": 0,
                    "max_papers": 5,
                    "send_hour": 0,
                    **values,
                }
                for i, email in enumerate(emails)
            ],
        )
    return emails


def statuses(ctx: pipeline.Context) -> Counter[str]:
    with Session(ctx.engine) as session:
        rows = session.execute(
            select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
        ).all()
    return Counter({status: count for status, count in rows})


@needs_faketime
def test_once_under_a_moved_clock_sends_at_the_readers_hour_and_only_once(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    # 07:00 in New York on the day it springs forward (UTC-4 from 02:00 local) is 11:00 UTC.
    add_readers(ctx, 1, timezone="America/New_York", send_hour=7)

    before = run_at("2027-03-14 10:59:00", config, "schedule", "--once")
    assert before.returncode == 0, before.stderr
    assert smtp_server.raw == []
    assert "pass: fetched 1 source(s)" in before.stderr

    for moment in ("2027-03-14 11:01:00", "2027-03-14 11:20:00", "2027-03-15 03:59:00"):
        run = run_at(moment, config, "schedule", "--once")
        assert run.returncode == 0, run.stderr
    assert len(smtp_server.to("reader0000@uni.example")) == 1

    run_at("2027-03-15 11:00:00", config, "schedule", "--once")  # the next day's hour
    # (no new papers in the sample feed since, so that digest is empty and not mailed)
    assert statuses(ctx) == {"sent": 1, "empty": 1}


def digest_dates(ctx: pipeline.Context) -> dict[str, list[str]]:
    """Each reader's digest dates, in order."""
    with Session(ctx.engine) as session:
        rows = session.execute(
            select(SubscriberRow.email, DeliveryRow.digest_date)
            .join(SubscriberRow, SubscriberRow.id == DeliveryRow.subscriber_id)
            .order_by(SubscriberRow.email, DeliveryRow.digest_date)
        ).all()
    found: dict[str, list[str]] = {}
    for email, day in rows:
        found.setdefault(email, []).append(day.isoformat())
    return found


@needs_faketime
def test_cron_runs_across_dst_and_odd_offsets_give_each_reader_one_digest_at_their_hour(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    readers = {
        "ny-spring@lab.example": ("America/New_York", 2),  # 02:00 does not exist on 03-14
        "ny-fall@lab.example": ("America/New_York", 1),  # 01:00 happens twice on 11-07
        "berlin-fall@lab.example": ("Europe/Berlin", 2),  # 02:00 happens twice on 10-31
        "kolkata@lab.example": ("Asia/Kolkata", 7),  # UTC+05:30
        "chatham@lab.example": ("Pacific/Chatham", 6),  # UTC+12:45 from 04-04
    }
    for email, (zone, hour) in readers.items():
        ctx.store.subscribers.add(
            email,
            store.Preferences(
                keywords="learning", timezone=zone, send_hour=hour, channels=("email",)
            ),
            confirmed=True,
            now=datetime(2027, 3, 1, tzinfo=UTC),
        )

    # (moment, {reader: the digest dates this run adds for them}); readers not named there may
    # get their digest of another day meanwhile (they are daily readers), which is not checked
    moments = [
        ("2027-03-14 01:29:00", {"kolkata": []}),
        ("2027-03-14 01:30:00", {"kolkata": ["2027-03-14"]}),
        ("2027-03-14 06:59:00", {"ny-spring": []}),  # 01:59 in New York
        ("2027-03-14 07:00:00", {"ny-spring": ["2027-03-14"]}),  # 03:00, right after the gap
        ("2027-03-14 07:45:00", {"ny-spring": [], "kolkata": []}),
        ("2027-04-03 17:14:00", {"chatham": []}),
        ("2027-04-03 17:15:00", {"chatham": ["2027-04-04"]}),
        ("2027-04-03 18:15:00", {"chatham": []}),
        ("2027-10-30 23:59:00", {"berlin-fall": []}),
        ("2027-10-31 00:00:00", {"berlin-fall": ["2027-10-31"]}),  # the first 02:00
        ("2027-10-31 01:00:00", {"berlin-fall": []}),  # the second 02:00
        ("2027-11-07 04:59:00", {"ny-fall": []}),
        ("2027-11-07 05:00:00", {"ny-fall": ["2027-11-07"]}),  # the first 01:00
        ("2027-11-07 06:00:00", {"ny-fall": []}),  # the second 01:00
    ]
    before = digest_dates(ctx)
    for moment, checks in moments:
        run = run_at(moment, config, "schedule", "--once", "--no-send")
        assert run.returncode == 0, run.stderr
        after = digest_dates(ctx)
        for name, new in checks.items():
            email = f"{name}@lab.example"
            added = after.get(email, [])[len(before.get(email, [])) :]
            assert added == new, f"{moment}: {email} got {added}, not {new}"
        before = after
    for email, days in digest_dates(ctx).items():
        assert len(days) == len(set(days)), email


@needs_faketime
def test_cron_after_36_hours_off_sends_one_catch_up_and_a_clock_set_back_sends_nothing_twice(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    settings = make_settings(digest={"first_digest_days": 1})
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    ctx.store.subscribers.add(
        "ada@lab.example",
        store.Preferences(
            keywords="learning, models, data", send_hour=8, max_papers=50, channels=("email",)
        ),
        confirmed=True,
        now=datetime(2027, 3, 1, tzinfo=UTC),
    )
    assert run_at("2027-03-10 08:00:00", config, "schedule", "--once").returncode == 0
    assert len(smtp_server.raw) == 1

    # Off from the 10th 08:30 to the 12th 20:30: two send hours missed, one digest after.
    for moment in ("2027-03-12 20:30:00", "2027-03-12 20:45:00", "2027-03-13 07:59:00"):
        assert run_at(moment, config, "schedule", "--once").returncode == 0
    assert digest_dates(ctx) == {"ada@lab.example": ["2027-03-10", "2027-03-12"]}

    # The clock is set back 25 hours, to before the 12th's hour: nothing is planned again.
    for moment in ("2027-03-11 19:30:00", "2027-03-12 08:00:00", "2027-03-12 09:00:00"):
        run = run_at(moment, config, "schedule", "--once")
        assert run.returncode == 0, run.stderr
    assert digest_dates(ctx) == {"ada@lab.example": ["2027-03-10", "2027-03-12"]}
    # ... and the next real day still comes.
    run_at("2027-03-13 08:00:00", config, "schedule", "--once")
    assert digest_dates(ctx) == {"ada@lab.example": ["2027-03-10", "2027-03-12", "2027-03-13"]}


@needs_faketime
def test_once_with_no_send_fetches_and_plans_but_sends_nothing(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    add_readers(ctx, 3, send_hour=8)

    run = run_at("2027-03-10 08:05:00", config, "schedule", "--once", "--no-send")

    assert run.returncode == 0, run.stderr
    assert smtp_server.raw == []
    assert statuses(ctx) == {"pending": 3}
    assert ctx.store.papers.seen_between(*_day("2027-03-10"))


def _day(day: str) -> tuple[Any, Any]:
    from datetime import UTC, datetime, timedelta

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


@needs_faketime
def test_a_clock_set_a_day_ahead_between_cron_runs_sends_nothing_early(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    add_readers(ctx, 1, send_hour=8)

    def once_at(moment: str, *extra: str) -> subprocess.CompletedProcess[str]:
        # The wall clock is set; the kernel's monotonic and boot clocks go on (as they do).
        return subprocess.run(
            ["faketime", "-f", f"@{moment}", *digest_command(config, "schedule", "--once", *extra)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TZ": "UTC", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        )

    assert once_at("2027-03-10 07:30:00").returncode == 0
    ahead = once_at("2027-03-11 08:30:00")  # someone sets the clock a day ahead

    assert ahead.returncode == 0, ahead.stderr
    assert "ahead of the time measured" in ahead.stderr
    assert smtp_server.raw == [] and statuses(ctx) == {}, "tomorrow's digest went out today"

    # The operator says the new time is right: it is believed from then on.
    believed = once_at("2027-03-11 08:31:00", "--reset-clock")
    assert believed.returncode == 0, believed.stderr
    assert len(smtp_server.to("reader0000@uni.example")) == 1


@needs_faketime
def test_a_running_scheduler_keeps_going_when_the_clock_is_stepped_and_sends_nothing_early(
    make_settings: Any, smtp_server: Any, tmp_path: Path, running: Any
) -> None:
    """One pass a minute; takes about three minutes."""
    settings = make_settings(schedule={"run_minutes": 1, "fetch_minutes": 60})
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    add_readers(ctx, 1, send_hour=8)
    clock = tmp_path / "clock"
    clock.write_text("@2027-03-10 07:30:00\n")
    scheduler = running(
        digest_command(config, "schedule"),
        {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(clock),
            "FAKETIME_NO_CACHE": "1",
            # the kernel's monotonic clock goes on as a real one does when the wall clock is set
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    assert "fetched 1 source(s)" in scheduler.wait_for("pass:")

    # Someone sets the clock a day ahead: tomorrow 08:30, past the reader's hour.
    clock.write_text("@2027-03-11 08:30:00\n")
    scheduler.wait_for("pass:", count=2, limit=90)
    assert smtp_server.raw == [], "tomorrow's digest went out today"
    assert any("ahead of the time measured" in line for line in scheduler.lines)

    # ... and then 25 hours back from the real time: the passes go on, and fetch at once.
    clock.write_text("@2027-03-09 06:33:00\n")
    third = scheduler.wait_for("pass:", count=3, limit=90)
    assert "fetched 1 source(s)" in third
    assert smtp_server.raw == []

    assert scheduler.stop() == 0
    assert scheduler.lines[-1].endswith("scheduler stopped")


def test_two_schedulers_on_one_database_fetch_plan_and_send_once(
    make_settings: Any, smtp_server: Any, tmp_path: Path, running: Any, feed_server: Any
) -> None:
    feed_server.route(
        "/papers.atom",
        Reply(200, SAMPLE_FEED.read_bytes(), {"Content-Type": "application/atom+xml"}),
    )
    settings = make_settings(
        sources=[{"name": "papers", "url": feed_server.url("/papers.atom"), "kind": "atom"}],
        schedule={"run_minutes": 1, "fetch_minutes": 60},
    )
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    emails = add_readers(ctx, 20)

    first = running(digest_command(config, "schedule"))
    first.wait_for("pass:")
    second = running(digest_command(config, "schedule"))
    idle = second.wait_for("holds the schedule lock")
    once = subprocess.run(
        digest_command(config, "schedule", "--once"), capture_output=True, text=True, timeout=60
    )

    assert "stays idle (no fetch, no sending)" in idle
    assert once.returncode == 0
    assert "holds the schedule lock" in once.stderr
    assert len(feed_server.hits("/papers.atom")) == 1
    assert sorted(Counter(r for _, rcpts in smtp_server.envelopes for r in rcpts).items()) == [
        (email, 1) for email in emails
    ]
    assert first.stop() == 0
    # The second takes over at its next tick once the first is gone (a minute here), and fetches
    # nothing new: the last fetch is recent.
    second.wait_for("took over the schedule lock", limit=90)
    assert "no fetch due" in second.wait_for("pass:", limit=30)
    assert len(feed_server.hits("/papers.atom")) == 1
    assert second.stop() == 0
    assert second.lines[-1].endswith("scheduler stopped")


@pytest.mark.parametrize("command", [("schedule",), ("worker",)])
def test_sigterm_while_sending_finishes_what_is_in_flight_and_leaves_nothing_sending(
    make_settings: Any, smtp_server: Any, tmp_path: Path, running: Any, command: tuple[str, ...]
) -> None:
    settings = make_settings(delivery={"batch_size": 20})
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    pipeline.fetch(ctx)
    emails = add_readers(ctx, 400)
    pipeline.plan(ctx, due_only=True)

    process = running(digest_command(config, *command))
    deadline = time.monotonic() + 60
    while len(smtp_server.raw) < 30:
        assert time.monotonic() < deadline, "\n".join(process.lines)
        time.sleep(0.01)
    assert process.stop() == 0, "\n".join(process.lines)

    counts = statuses(ctx)
    assert counts["sending"] == 0
    assert 30 <= counts["sent"] < 400, "it stopped early, not after sending everything"
    assert counts["sent"] == len(smtp_server.raw)  # every message it sent is recorded as sent
    assert counts["sent"] + counts["pending"] == 400
    assert any("SIGTERM received" in line for line in process.lines)

    # The rest go out with the next run, each reader's digest exactly once.
    pipeline.send_pending(ctx)
    received = Counter(r for _, rcpts in smtp_server.envelopes for r in rcpts)
    assert sorted(received.items()) == [(email, 1) for email in emails]


def test_a_pass_that_fails_is_logged_and_the_scheduler_goes_on(
    make_settings: Any, tmp_path: Path, running: Any
) -> None:
    from tests.conftest import free_port

    settings = make_settings(smtp={"host": "127.0.0.1", "port": free_port(), "retries": 0})
    config = write_config(tmp_path / "digest.toml", settings)
    ctx = pipeline.build_context(settings)
    add_readers(ctx, 3)

    scheduler = running(digest_command(config, "schedule"))
    failed = scheduler.wait_for("the pass failed")
    time.sleep(0.5)

    assert "Traceback" not in "\n".join(scheduler.lines)
    assert scheduler.process.poll() is None, "the scheduler died with its pass"
    assert "the next pass tries again" in failed
    assert scheduler.stop() == 0
    assert statuses(ctx)["sending"] == 0

    once = subprocess.run(
        digest_command(config, "schedule", "--once"), capture_output=True, text=True, timeout=60
    )
    assert once.returncode == 1  # from cron, the failure is the exit code
