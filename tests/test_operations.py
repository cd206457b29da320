"""Running it for real: cron from another folder, exit codes a monitor can trust, `digest status`,
databases that are missing, corrupt or behind, retention, and the operator's send-test."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from digest import pipeline, store
from digest.cli import cli
from digest.config import SAMPLE_FEED, load_settings
from tests.conftest import Mailbox, free_port
from tests.sources_fixtures import FeedServer, Reply

pytest_plugins = ["tests.sources_fixtures"]


def digest(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def run_digest(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed program in a fresh process, started from `cwd` as cron would."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_config(folder: Path, smtp: Mailbox, *, database: str, sources: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digest.toml"
    path.write_text(
        f"""
[database]
url = "{database}"

{sources}

[smtp]
host = "{smtp.host}"
port = {smtp.port}

[email]
from = "Paper Digest <digest@papers.example.org>"

[site]
base_url = "https://papers.example.org"
secret_key = "test-secret-key-0123456789"

[fetch]
retries = 0
timeout = 5
""",
        encoding="utf-8",
    )
    return path


LOCAL_SAMPLE = """
[[sources]]
name = "hf-sample"
url = "papers.atom"
kind = "atom"
"""


# ---------------------------------------------------------------- cron from another folder


def test_cron_from_another_folder_uses_the_database_next_to_the_config(
    tmp_path: Path, smtp_server: Mailbox
) -> None:
    etc = tmp_path / "etc" / "paper-digest"
    config = write_config(
        etc, smtp_server, database="sqlite:///paper-digest.sqlite3", sources=LOCAL_SAMPLE
    )
    (etc / "papers.atom").write_bytes(SAMPLE_FEED.read_bytes())
    cron_home = tmp_path / "home"
    cron_home.mkdir()

    before_init = run_digest(cron_home, "--config", str(config), "-q", "run")

    assert before_init.returncode == 1
    assert before_init.stderr.strip().splitlines() == [
        f"error: no database at {etc / 'paper-digest.sqlite3'}; run `digest init`"
    ]
    assert list(cron_home.iterdir()) == [] and not (etc / "paper-digest.sqlite3").exists()

    assert run_digest(cron_home, "--config", str(config), "init").returncode == 0
    subscribed = run_digest(
        cron_home,
        "--config",
        str(config),
        "subscribe",
        "fl@uni.example",
        "--keywords",
        '"federated learning"',
        "--confirmed",
    )
    assert subscribed.returncode == 0, subscribed.stderr

    cron = run_digest(cron_home, "--config", str(config), "-q", "run")

    assert cron.returncode == 0, cron.stderr
    assert cron.stdout == "" and cron.stderr == ""
    assert list(cron_home.iterdir()) == []  # nothing made where cron happened to start
    assert (etc / "paper-digest.sqlite3").is_file()
    assert len(smtp_server.to("fl@uni.example")) == 1


# ---------------------------------------------------------------- failing sources and exit codes


def sources_toml(*entries: tuple[str, str]) -> str:
    return "\n".join(f'[[sources]]\nname = "{name}"\nurl = "{url}"\n' for name, url in entries)


@pytest.fixture
def failing_setup(
    tmp_path: Path, smtp_server: Mailbox, feed_server: FeedServer, database_url: str
) -> tuple[Path, str]:
    """A config with a source that answers 404 and one on a port nobody listens on."""
    missing = feed_server.route("/gone.xml", Reply(404, b"not here"))
    closed = f"http://127.0.0.1:{free_port()}/feed.xml"
    config = write_config(
        tmp_path / "conf",
        smtp_server,
        database=database_url,
        sources=sources_toml(("gone", missing), ("offline", closed)),
    )
    return config, missing


def test_every_source_failing_exits_1_even_when_quiet(failing_setup: tuple[Path, str]) -> None:
    config, _ = failing_setup

    fetched = digest(config, "-q", "fetch")

    assert fetched.exit_code == 1
    assert fetched.stdout == ""
    assert "error: every source failed its last fetch (2)" in fetched.stderr

    ran = digest(config, "-q", "run")
    assert ran.exit_code == 1
    assert "every source failed" in ran.stderr


def test_one_source_failing_alert_after_times_in_a_row_exits_1_and_recovers(
    tmp_path: Path, smtp_server: Mailbox, feed_server: FeedServer, database_url: str
) -> None:
    good = feed_server.feed("/good.xml", "arxiv-cs.LG.rss")
    flaky = feed_server.sequence(
        "/flaky.xml",
        Reply(404),
        Reply(404),
        Reply(404),
        Reply(200, (Path(__file__).parent / "data" / "feeds" / "arxiv-cs.LG.rss").read_bytes()),
    )
    config = write_config(
        tmp_path / "conf",
        smtp_server,
        database=database_url,
        sources=sources_toml(("good", good), ("flaky", flaky)),
    )

    first, second = digest(config, "-q", "fetch"), digest(config, "-q", "fetch")
    third = digest(config, "-q", "fetch")
    fourth = digest(config, "-q", "fetch")

    assert (first.exit_code, second.exit_code) == (0, 0)  # one failure is weather, not an alert
    assert third.exit_code == 1
    assert "error: source flaky failed 3 fetches in a row (alert_after is 3)" in third.stderr
    assert "HTTP 404" in third.stderr or "404" in third.stderr
    assert fourth.exit_code == 0 and fourth.stderr == ""


# ---------------------------------------------------------------- digest status


@freeze_time("2025-11-27 08:00:00")
def test_status_json_describes_a_known_state_and_exits_1_until_healthy(
    tmp_path: Path, smtp_server: Mailbox, feed_server: FeedServer, database_url: str
) -> None:
    down = feed_server.route("/down.xml", Reply(503, b"maintenance"))
    config = write_config(
        tmp_path / "conf",
        smtp_server,
        database=database_url,
        sources=sources_toml(("hf-sample", str(SAMPLE_FEED)), ("arxiv", down)),
    )
    for email, keywords in (
        ("fl@uni.example", '"federated learning"'),
        ("z@uni.example", "zyzzyva"),
    ):
        assert (
            digest(config, "subscribe", email, "--keywords", keywords, "--confirmed").exit_code == 0
        )
    assert digest(config, "subscribe", "later@uni.example", "--keywords", "agents").exit_code == 0
    assert (
        digest(config, "subscribe", "gone@uni.example", "--keywords", "x", "--confirmed").exit_code
        == 0
    )
    assert digest(config, "unsubscribe", "gone@uni.example").exit_code == 0
    digest(config, "-q", "fetch")
    digest(config, "-q", "fetch")
    ran = digest(config, "-q", "run")  # the third failure of arxiv in a row
    assert ran.exit_code == 1

    result = digest(config, "status", "--format", "json")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"sources", "deliveries", "subscribers", "schedule", "healthy"}
    assert data["healthy"] is False
    by_name = {s["name"]: s for s in data["sources"]}
    assert set(by_name["arxiv"]) == {
        "name",
        "status",
        "consecutive_failures",
        "last_ok_at",
        "last_error",
    }
    assert by_name["arxiv"]["status"] == "alert"
    assert by_name["arxiv"]["consecutive_failures"] == 3
    assert by_name["arxiv"]["last_ok_at"] is None and "503" in by_name["arxiv"]["last_error"]
    assert by_name["hf-sample"]["status"] == "ok"
    assert by_name["hf-sample"]["consecutive_failures"] == 0
    assert by_name["hf-sample"]["last_ok_at"].startswith("2025-11-27T08:00:00")
    # one row per reader and channel (email and feed): fl@ got papers, z@ matched nothing
    assert data["deliveries"]["2025-11-27"] == {
        "sent": 2,
        "pending": 0,
        "failed": 0,
        "empty": 2,
        "bounced": 0,
    }
    assert sorted(data["deliveries"]) == [f"2025-11-{day}" for day in range(21, 28)]
    assert data["subscribers"] == {"active": 2, "pending": 1, "unsubscribed": 1, "bounced": 0}
    assert data["schedule"] == {"last_run_at": None, "next_run_at": None}
    assert "source arxiv failed 3 fetches in a row" in result.stderr

    feed_server.route("/down.xml", Reply(200, SAMPLE_FEED.read_bytes()))
    assert digest(config, "-q", "fetch").exit_code == 0
    healthy = digest(config, "status", "--format", "json")
    assert healthy.exit_code == 0, healthy.stderr
    assert json.loads(healthy.stdout)["healthy"] is True
    table = digest(config, "status")
    assert table.exit_code == 0 and "Healthy: yes" in table.stdout

    # what a scheduler pass records, status shows
    engine = store.open_engine(database_url)
    store.Store(engine).meta.write(
        {
            "schedule.last_run_at": "2025-11-27T07:45:00+00:00",
            "schedule.next_run_at": "2025-11-27T08:00:00+00:00",
        },
    )
    scheduled = json.loads(digest(config, "status", "--format", "json").stdout)["schedule"]
    assert scheduled == {
        "last_run_at": "2025-11-27T07:45:00+00:00",
        "next_run_at": "2025-11-27T08:00:00+00:00",
    }


# ---------------------------------------------------------------- databases that cannot be used


def test_a_corrupt_sqlite_file_gives_one_line_with_the_fix(tmp_path: Path) -> None:
    broken = tmp_path / "digest.sqlite3"
    broken.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    config = tmp_path / "digest.toml"
    config.write_text('[database]\nurl = "sqlite:///digest.sqlite3"\n', encoding="utf-8")

    for command in (["status"], ["fetch"], ["run", "--dry-run"], ["db", "upgrade"]):
        result = run_digest(tmp_path, "--config", str(config), "-q", *command)
        assert result.returncode == 1, command
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {broken} is not a usable SQLite database")
        assert "restore it from a backup" in line


def test_an_older_database_is_refused_until_db_upgrade(tmp_path: Path) -> None:
    from alembic import command

    from digest.store.engine import _alembic_config

    path = tmp_path / "digest.sqlite3"
    engine = store.open_engine(f"sqlite:///{path}", create=True)
    command.upgrade(_alembic_config(engine), "0004")  # as the previous version left it
    engine.dispose()
    config = tmp_path / "digest.toml"
    config.write_text('[database]\nurl = "sqlite:///digest.sqlite3"\n', encoding="utf-8")

    refused = digest(config, "-q", "fetch")
    assert refused.exit_code == 1
    assert "run `digest db upgrade`" in refused.stderr
    assert not store.schema_is_current(store.open_engine(f"sqlite:///{path}"))  # not migrated

    assert digest(config, "db", "upgrade").exit_code == 0
    assert digest(config, "-q", "fetch").exit_code == 0


def test_a_missing_postgresql_database_is_one_line_and_no_password_is_printed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("pg_template")  # skips where PostgreSQL is absent
    config = tmp_path / "digest.toml"
    config.write_text(
        '[database]\nurl = "postgresql://postgres:s3cret-pw@127.0.0.1:5432/digest_nowhere"\n',
        encoding="utf-8",
    )

    result = run_digest(tmp_path, "--config", str(config), "-q", "status")

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert 'PostgreSQL at 127.0.0.1:5432 has no database "digest_nowhere"' in line
    assert "createdb digest_nowhere" in line
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_init_and_upgrade_never_print_the_password(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url").replace("postgres@", "postgres:s3cret-pw@")
    config = tmp_path / "digest.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")

    upgraded = digest(config, "db", "upgrade")

    assert upgraded.exit_code == 0
    assert "s3cret-pw" not in upgraded.output
    assert "postgres:***@127.0.0.1" in upgraded.stderr


# ---------------------------------------------------------------- retention


def test_retention_prunes_old_digests_and_expired_sign_ups_but_keeps_each_readers_last(
    config_file: Path, smtp_server: Mailbox
) -> None:
    with freeze_time("2025-01-06 08:00:00"):
        for email in ("steady@uni.example", "paused@uni.example"):
            digest(config_file, "subscribe", email, "--keywords", "learning", "--confirmed")
        digest(config_file, "subscribe", "never@uni.example", "--keywords", "learning")
        assert digest(config_file, "-q", "run").exit_code == 0
    with freeze_time("2025-01-07 08:00:00"):
        assert digest(config_file, "unsubscribe", "paused@uni.example").exit_code == 0
        assert digest(config_file, "-q", "run", "--no-fetch").exit_code == 0
    ctx = pipeline.build_context(load_settings(config_file))
    assert ctx.store.subscribers.counts()["pending"] == 1  # its link still works
    with freeze_time("2025-11-20 08:00:00"):
        assert digest(config_file, "-q", "run", "--no-fetch").exit_code == 0
    # that run pruned steady's 6 January digest (older than 180 days, and no longer its newest)
    assert sorted(ctx.store.overview.deliveries_by_day(since=date(2025, 1, 1))) == [
        date(2025, 1, 6),  # paused's, its only one
        date(2025, 1, 7),  # steady's, its newest then
        date(2025, 11, 20),
    ]

    with freeze_time("2025-11-27 05:00:00"):
        pruned = pipeline.housekeeping(ctx)

    # steady's 7 January digest goes (its email and feed rows); paused keeps its only one
    assert (pruned.digests, pruned.deliveries) == (1, 2)
    remaining = ctx.store.overview.deliveries_by_day(since=date(2025, 1, 1))
    assert sorted(remaining) == [date(2025, 1, 6), date(2025, 11, 20)]
    # the sign-up never confirmed went with the run after its link expired (and its mail)
    assert ctx.store.subscribers.counts() == {"active": 1, "unsubscribed": 1}
    # a second pass finds nothing more to prune
    with freeze_time("2025-11-27 08:00:00"):
        again = pipeline.build_context(load_settings(config_file))
        assert pipeline.housekeeping(again) == pipeline.Pruned()


# ---------------------------------------------------------------- send-test


def test_send_test_mails_a_sample_digest_through_the_relay(
    config_file: Path, smtp_server: Mailbox
) -> None:
    assert digest(config_file, "-q", "fetch").exit_code == 0

    result = digest(config_file, "send-test", "ops@lab.example")

    assert result.exit_code == 0, result.output
    [mail] = smtp_server.to("ops@lab.example")
    assert mail["Subject"].startswith("[test] ")
    assert mail.get_body(preferencelist=("html",)) is not None
    assert "matched your profile" in mail.get_body(preferencelist=("plain",)).get_content()


def test_send_test_says_when_the_relay_is_away(config_file: Path, tmp_path: Path) -> None:
    text = config_file.read_text().replace("[smtp]\n", "[smtp]\ntimeout = 2\n")
    text = text.replace(f"port = {text.split('port = ')[1].split()[0]}", f"port = {free_port()}")
    config_file.write_text(text)
    digest(config_file, "-q", "fetch")

    result = digest(config_file, "-q", "send-test", "ops@lab.example")

    assert result.exit_code == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- logs


@freeze_time("2025-11-27 08:00:00")
def test_a_run_logs_one_json_line_with_its_counts_and_no_address(
    config_file: Path, smtp_server: Mailbox, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.write_text(config_file.read_text() + '\n[logging]\nformat = "json"\n')
    digest(
        config_file,
        "subscribe",
        "fl@uni.example",
        "--keywords",
        '"federated learning"',
        "--confirmed",
    )

    result = digest(config_file, "run")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [run_line] = [entry for entry in lines if entry["message"].startswith("run for ")]
    assert run_line["level"] == "info" and run_line["time"].startswith("2025-11-27T08:00:00")
    assert "148 new papers" in run_line["message"]
    assert "2 planned; readers: 1 sent" in run_line["message"]  # one reader: email and feed rows
    assert "fl@uni.example" not in result.stderr

    # no log line carries a reader's full address, at any level
    logging.getLogger("digest.web").info("queued a confirmation for ada@uni.example")
    logging.getLogger("digest.web").warning("the relay refused ada@uni.example")
    info, warning = [json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:]]
    assert info["message"] == "queued a confirmation for a***@uni.example"
    assert warning["message"] == "the relay refused a***@uni.example"


# ---------------------------------------------------------------- serve and metrics


def wait_for_http(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited: {process.communicate()[1]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


def start_digest(cwd: Path, *args: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def test_serve_listens_on_the_base_url_port_and_answers_metrics(
    config_file: Path, tmp_path: Path, smtp_server: Mailbox
) -> None:
    port = free_port()
    text = config_file.read_text().replace(
        'base_url = "https://papers.example.org"', f'base_url = "http://127.0.0.1:{port}"'
    )
    config_file.write_text(text)
    assert digest(config_file, "-q", "fetch").exit_code == 0
    digest(config_file, "subscribe", "fl@uni.example", "--keywords", "federated", "--confirmed")
    with freeze_time("2025-11-27 08:00:00"):
        assert digest(config_file, "-q", "run", "--no-fetch").exit_code == 0

    server = start_digest(tmp_path, "--config", str(config_file), "serve")
    try:
        health = wait_for_http(f"http://127.0.0.1:{port}/healthz", server)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        err = stop(server)

    assert health.status_code == 200
    assert f"mails link to http://127.0.0.1:{port}/" in err
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'digest_queue_depth{status="pending"} 0.0' in scraped.text
    assert "# TYPE digest_deliveries_total counter" in scraped.text
    assert "fl@uni.example" not in scraped.text


def test_serve_warns_when_its_port_is_not_the_one_mails_link_to(config_file: Path) -> None:
    text = config_file.read_text().replace(
        'base_url = "https://papers.example.org"', 'base_url = "http://127.0.0.1:18766"'
    )
    config_file.write_text(text)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))  # taken: uvicorn stops at once, after the warning
    port = busy.getsockname()[1]
    try:
        result = digest(config_file, "serve", "--port", str(port))
    finally:
        busy.close()

    assert "warning: listening on port" in result.stderr
    assert "[site] base_url (http://127.0.0.1:18766) says 18766" in result.stderr


def test_a_worker_serves_metrics_on_its_metrics_port(
    config_file: Path, tmp_path: Path, smtp_server: Mailbox
) -> None:
    assert digest(config_file, "-q", "fetch").exit_code == 0
    digest(config_file, "subscribe", "fl@uni.example", "--keywords", "federated", "--confirmed")
    assert digest(config_file, "-q", "run", "--no-fetch").exit_code == 0
    port = free_port()

    worker = start_digest(
        tmp_path, "--config", str(config_file), "worker", "--metrics-port", str(port)
    )
    try:
        scraped = wait_for_http(f"http://127.0.0.1:{port}/metrics", worker)
    finally:
        stop(worker)

    assert scraped.status_code == 200
    assert 'digest_queue_depth{status="pending"} 0.0' in scraped.text
    assert "digest_send_seconds_bucket" in scraped.text


# ---------------------------------------------------------------- moving to PostgreSQL


@freeze_time("2025-11-27 08:00:00")
def test_db_copy_moves_everything_to_postgresql_and_the_service_carries_on(
    tmp_path: Path, smtp_server: Mailbox, request: pytest.FixtureRequest, sqlite_template: Path
) -> None:
    target = request.getfixturevalue("postgres_url")  # skips where PostgreSQL is absent
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "digest.sqlite3")
    config = write_config(
        tmp_path,
        smtp_server,
        database="sqlite:///digest.sqlite3",
        sources=sources_toml(("hf-sample", str(SAMPLE_FEED))),
    )
    digest(
        config, "subscribe", "fl@uni.example", "--keywords", '"federated learning"', "--confirmed"
    )
    assert digest(config, "-q", "run").exit_code == 0
    before = json.loads(digest(config, "status", "--format", "json").stdout)
    # the target template is migrated, as `digest db copy` would leave a new database
    copied = digest(config, "db", "copy", "--to", target)
    assert copied.exit_code == 0, copied.output
    assert "148 papers" in copied.stderr

    config.write_text(config.read_text().replace("sqlite:///digest.sqlite3", target))
    after = json.loads(digest(config, "status", "--format", "json").stdout)
    assert after["deliveries"] == before["deliveries"]
    assert (
        after["subscribers"]
        == before["subscribers"]
        == {
            "active": 1,
            "pending": 0,
            "unsubscribed": 0,
            "bounced": 0,
        }
    )
    # new rows get new ids (the sequences moved past the copied ones), and nothing goes twice
    assert (
        digest(
            config, "subscribe", "new@uni.example", "--keywords", "agents", "--confirmed"
        ).exit_code
        == 0
    )
    assert digest(config, "-q", "run", "--no-fetch").exit_code == 0
    assert len(smtp_server.to("fl@uni.example")) == 1

    again = digest(config, "db", "copy", "--to", target)
    assert again.exit_code == 1 and "already holds rows" in again.stderr


def test_status_reports_a_relay_that_refused_until_mail_goes_again(
    config_file: Path, smtp_server: Mailbox
) -> None:
    # real time: the relay's retries wait on the event loop's clock
    working = config_file.read_text()
    config_file.write_text(
        working.replace(
            f"port = {smtp_server.port}", f"port = {free_port()}\ntimeout = 2\nretries = 0"
        )
    )
    digest(config_file, "subscribe", "fl@uni.example", "--keywords", "federated", "--confirmed")

    down = digest(config_file, "-q", "run")
    status = digest(config_file, "-q", "status", "--format", "json")

    assert down.exit_code == 1 and "Nothing was lost" in down.stderr
    assert status.exit_code == 1 and json.loads(status.stdout)["healthy"] is False
    assert "error: the mail relay refused the last sending pass" in status.stderr

    config_file.write_text(working)
    assert digest(config_file, "-q", "run", "--no-fetch").exit_code == 0
    assert len(smtp_server.to("fl@uni.example")) == 1
    healthy = digest(config_file, "-q", "status", "--format", "json")
    assert healthy.exit_code == 0 and healthy.stderr == ""
    today = max(json.loads(healthy.stdout)["deliveries"].items())[1]
    assert today["sent"] == 2 and today["pending"] == 0  # the reader's email and feed
