"""The `digest` command as an operator uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from digest.cli import cli

pytest_plugins = ["tests.sources_fixtures"]


def digest(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result


@freeze_time("2025-11-27 08:00:00")
def test_dry_run_shows_ranked_example_profiles_without_subscribers(
    config_file: Path, smtp_server: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = digest(config_file, "run", "--dry-run", "--out", str(out))

    assert result.exit_code == 0, result.output
    assert "No subscribers yet" in result.stderr
    assert "federated@example.org" in result.stdout
    assert "would send" in result.stdout
    assert len(list(out.glob("*.eml"))) == 3
    assert smtp_server.raw == []


@freeze_time("2025-11-27 08:00:00")
def test_the_quickstart_reader_gets_no_paper_for_a_word_of_a_model_name(
    config_file: Path, smtp_server: Any, tmp_path: Path
) -> None:
    # The Quickstart's federated@example.org asks for "distillation". "Reinforcement Learning
    # for Reasoning in Large Language Models with One Training Example" says "distil" only in
    # the model name DeepSeek-R1-Distill-Qwen-1.5B: a name, not the topic.
    out = tmp_path / "out"
    result = digest(config_file, "run", "--dry-run", "--out", str(out))
    assert result.exit_code == 0, result.output
    [mail] = out.glob("*federated@example.org.txt")
    # what matched the profile: the day's trending papers follow, apart (p112 may trend)
    text = " ".join(mail.read_text().split("Trending today, beyond your profile")[0].split())
    assert "with One Training Example" not in text
    assert "Distill*" not in text  # nor is a model name marked as evidence anywhere
    # the prose that says it still counts: "self-distillation" in a title, "distilled"
    assert "Self-Distillation for Further Pre-training of Transformers" in text
    assert "match - matched: distillation" in text


@freeze_time("2025-11-27 08:00:00")
def test_run_json_lists_each_digest_best_paper_first(config_file: Path, smtp_server: Any) -> None:
    assert (
        digest(
            config_file,
            "subscribe",
            "fl@uni.example",
            "--keywords",
            '"federated learning"',
            "--confirmed",
        ).exit_code
        == 0
    )

    result = digest(config_file, "run", "--dry-run", "--format", "json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["date"] == "2025-11-27" and data["papers"] == 148
    [entry] = data["digests"]
    assert entry["email"] == "fl@uni.example"
    scores = [p["score"] for p in entry["papers"]]
    assert scores == sorted(scores, reverse=True) and scores
    assert {"key", "title", "url", "score", "matched"} <= set(entry["papers"][0])
    assert "federated learning" in entry["papers"][0]["matched"]


def test_subscribe_without_confirmed_sends_a_confirmation_and_stays_pending(
    config_file: Path, smtp_server: Any
) -> None:
    result = digest(config_file, "subscribe", "New.Reader@Uni.Example", "--keywords", "diffusion")

    assert result.exit_code == 0, result.output
    [message] = smtp_server.to("new.reader@uni.example")
    assert (
        "https://papers.example.org/confirm/"
        in message.get_body(preferencelist=("plain",)).get_content()
    )
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert [(s["email"], s["status"], s["keywords"]) for s in listed] == [
        ("new.reader@uni.example", "pending", "diffusion")
    ]


@pytest.mark.parametrize(
    "args, says",
    [
        (["subscribe", "not-an-address", "--keywords", "x"], "not a valid email address"),
        (["subscribe", "a@b.example", "--keywords", '"unbalanced'], "quote"),
        (["subscribe", "a@b.example", "--keywords", "x", "--timezone", "Nowhere/City"], "timezone"),
        (["unsubscribe", "nobody@b.example"], "no subscriber"),
    ],
)
def test_bad_input_gets_a_clear_error(config_file: Path, args: list[str], says: str) -> None:
    result = digest(config_file, *args)
    assert result.exit_code != 0
    assert says in result.stderr
    assert "Traceback" not in result.output


def test_a_config_typo_is_named(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text("[smtp]\nhots = 'x'\n", encoding="utf-8")
    result = digest(config, "run", "--dry-run")
    assert result.exit_code == 2
    assert "smtp.hots" in result.stderr


def test_import_reports_bad_rows_keeps_good_ones_and_is_idempotent(
    config_file: Path, tmp_path: Path, smtp_server: Any
) -> None:
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(
        "email,keywords,timezone,send_hour\n"
        'ada@uni.example,"""federated learning"", -medical",Europe/Paris,8\n'
        "broken-address,diffusion,,\n"
        "grace@lab.example,reasoning,,25\n"
        "alan@lab.example,agents,,\n",
        encoding="utf-8",
    )

    first = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")
    second = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")

    assert "line 3" in first.stderr and "line 4" in first.stderr
    assert "2 added" in first.stderr
    assert "0 added, 0 updated, 2 unchanged" in second.stderr
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert [(s["email"], s["status"]) for s in listed] == [
        ("ada@uni.example", "active"),
        ("alan@lab.example", "active"),
    ]
    assert listed[0]["keywords"] == '"federated learning", -medical'
    assert smtp_server.raw == []  # --confirmed: no confirmation mails

    exported = digest(config_file, "subscribers", "export").stdout.splitlines()
    assert exported[0].startswith("email,keywords")
    assert len(exported) == 3


def test_a_long_import_reports_bad_rows_by_line_and_a_later_row_updates_an_earlier_one(
    config_file: Path, tmp_path: Path
) -> None:
    rows = [f"reader{i}@lab.example,reasoning" for i in range(2500)]
    rows[2299] = "reader2299@lab,reasoning"  # line 2301, past the first batch of 2,000
    rows.append("READER7@lab.example,diffusion models")  # line 2502: reader7 changes their mind
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("email,keywords\n" + "\n".join(rows) + "\n", encoding="utf-8")

    first = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")
    second = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")

    assert first.exit_code == 1
    assert "line 2301: 'reader2299@lab' is not a valid email address" in first.stderr
    assert "2499 added, 1 updated, 0 unchanged, 1 skipped" in first.stderr
    # reader7 is named twice: a second import changes them back, then forward, to the same end
    assert "0 added, 2 updated, 2498 unchanged, 1 skipped" in second.stderr
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert len(listed) == 2499
    assert {s["email"]: s["keywords"] for s in listed}["reader7@lab.example"] == "diffusion models"


def test_an_import_without_confirmed_asks_new_and_returning_readers_to_confirm(
    config_file: Path, tmp_path: Path, smtp_server: Any
) -> None:
    digest(config_file, "subscribe", "ada@uni.example", "--keywords", "agents", "--confirmed")
    digest(config_file, "unsubscribe", "ada@uni.example")
    digest(config_file, "subscribe", "alan@lab.example", "--keywords", "agents", "--confirmed")
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(
        "email,keywords\nada@uni.example,agents\ngrace@lab.example,reasoning\n"
        "alan@lab.example,agents\n",
        encoding="utf-8",
    )

    result = digest(config_file, "subscribers", "import", str(csv_file))

    assert "1 added, 1 updated, 1 unchanged, 0 skipped" in result.stderr
    assert len(smtp_server.to("ada@uni.example")) == 1
    assert len(smtp_server.to("grace@lab.example")) == 1
    assert smtp_server.to("alan@lab.example") == []  # already active: no mail
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert {s["email"]: s["status"] for s in listed} == {
        "ada@uni.example": "pending",
        "alan@lab.example": "active",
        "grace@lab.example": "pending",
    }


def test_a_csv_carries_weekly_readers_weekday_in_and_out(config_file: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(
        "email,keywords,frequency,send_weekday\n"
        "ada@uni.example,agents,weekly,Friday\n"
        "alan@lab.example,agents,weekly,someday\n"
        "grace@lab.example,agents,daily,\n",
        encoding="utf-8",
    )

    result = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")

    assert "line 3" in result.stderr and "send_weekday" in result.stderr
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert [(s["email"], s["frequency"], s["send_weekday"]) for s in listed] == [
        ("ada@uni.example", "weekly", "friday"),
        ("grace@lab.example", "daily", "monday"),
    ]
    exported = digest(config_file, "subscribers", "export").stdout
    again = tmp_path / "again.csv"
    again.write_text(exported, encoding="utf-8")
    reimport = digest(config_file, "subscribers", "import", str(again), "--confirmed")
    assert "0 added, 0 updated, 2 unchanged" in reimport.stderr


def test_a_csv_saved_in_a_windows_encoding_is_refused_whole_with_the_fix(
    config_file: Path, tmp_path: Path
) -> None:
    csv_file = tmp_path / "excel.csv"
    csv_file.write_bytes(
        "email,keywords\nada@uni.example,agents\nrene@uni.example,réseaux\n".encode("cp1252")
    )

    result = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")

    assert result.exit_code == 2
    assert "line 3 is not UTF-8" in result.stderr and "CSV UTF-8" in result.stderr
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert listed == []  # not even the good first row: fix the file and import it again


def test_a_stray_windows_character_deep_in_a_long_csv_is_found_by_line(
    config_file: Path, tmp_path: Path
) -> None:
    good = "".join(f"reader{i}@lab.example,agents\n" for i in range(40_000))  # over 1 MiB
    csv_file = tmp_path / "long.csv"
    csv_file.write_bytes(
        b"email,keywords\n" + good.encode() + "rené@lab.example,réseaux\n".encode("cp1252")
    )

    result = digest(config_file, "subscribers", "import", str(csv_file), "--confirmed")

    assert result.exit_code == 2
    assert "line 40002 is not UTF-8" in result.stderr
    listed = json.loads(digest(config_file, "subscribers", "list", "--format", "json").stdout)
    assert listed == []


def test_unsubscribe_stops_the_next_run(config_file: Path, smtp_server: Any) -> None:
    digest(
        config_file,
        "subscribe",
        "fl@uni.example",
        "--keywords",
        '"federated learning"',
        "--confirmed",
    )
    assert digest(config_file, "unsubscribe", "fl@uni.example").exit_code == 0

    with freeze_time("2025-11-27 08:00:00"):
        result = digest(config_file, "run")

    assert result.exit_code == 0, result.output
    assert smtp_server.raw == []


def test_fetch_papers_and_sources_listings(config_file: Path) -> None:
    fetched = digest(config_file, "fetch", "--format", "json")
    assert json.loads(fetched.stdout)[0]["new"] == 148

    papers = json.loads(
        digest(config_file, "papers", "list", "--format", "json", "--limit", "5").stdout
    )
    assert len(papers) == 5
    assert set(papers[0]) == {
        "key",
        "title",
        "abstract",
        "authors",
        "url",
        "pdf_url",
        "categories",
        "published_at",
        "first_seen_at",
        "upvotes",
        "sources",
    }
    sources = json.loads(digest(config_file, "sources", "list", "--format", "json").stdout)
    assert sources[0]["name"] == "hf-sample" and sources[0]["papers"] == 148
    assert sources[0]["status"] == "ok" and sources[0]["last_error"] is None


def test_papers_search_ranks_and_explains_a_profile(config_file: Path) -> None:
    assert digest(config_file, "fetch").exit_code == 0

    table = digest(
        config_file, "papers", "search", '"federated learning", -medical', "--limit", "3"
    )
    found = json.loads(
        digest(
            config_file, "papers", "search", '"federated learning", -medical', "--format", "json"
        ).stdout
    )
    vetoed = json.loads(
        digest(
            config_file,
            "papers",
            "search",
            "segmentation, -medical",
            "--paper",
            "urn:paper:p053",
            "--format",
            "json",
        ).stdout
    )

    assert table.exit_code == 0 and "Federated Learning" in table.stdout
    assert found and all(p["recommended"] for p in found)
    assert [p["score"] for p in found] == sorted((p["score"] for p in found), reverse=True)
    assert found[0]["terms"][0] == {
        "term": "federated learning",
        "score": found[0]["relevance"],
        "weight": 1.0,
        "matched": True,
        "exclude": False,
    }
    assert [(p["key"], p["recommended"], p["reason"]) for p in vetoed] == [
        ("urn:paper:p053", False, "excluded by -medical")
    ]


def test_papers_search_names_a_bad_profile_or_an_unknown_paper(config_file: Path) -> None:
    assert digest(config_file, "fetch").exit_code == 0

    bad = digest(config_file, "papers", "search", "diffusion, title:")
    unknown = digest(config_file, "papers", "search", "diffusion", "--paper", "nope")

    assert bad.exit_code == 2 and "empty term" in bad.stderr
    assert unknown.exit_code == 1 and "no paper 'nope'" in unknown.stderr


def test_init_writes_a_starter_config_and_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["init"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    text = (tmp_path / "digest.toml").read_text()
    assert 'secret_key = ""' not in text
    assert (tmp_path / "paper-digest.sqlite3").exists()
    # Both hold secrets (the signing key, readers' addresses): only their owner reads them.
    assert (tmp_path / "digest.toml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "paper-digest.sqlite3").stat().st_mode & 0o777 == 0o600
    assert "readable by you only" in result.stderr
    again = CliRunner().invoke(cli, ["init"], catch_exceptions=False)
    assert "leaving it as it is" in again.stderr
    assert (tmp_path / "digest.toml").read_text() == text


def test_quiet_prints_nothing_but_errors(config_file: Path, tmp_path: Path) -> None:
    quiet = CliRunner().invoke(
        cli, ["--config", str(config_file), "-q", "run", "--dry-run"], catch_exceptions=False
    )
    assert quiet.exit_code == 0
    assert quiet.stdout == "" and quiet.stderr == ""

    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp]\nsecurity = 'ssl'\n", encoding="utf-8")
    failed = CliRunner().invoke(
        cli, ["--config", str(broken), "-q", "fetch"], catch_exceptions=False
    )
    assert failed.exit_code == 2
    assert "smtp.security" in failed.stderr


def test_error_messages_keep_bracketed_config_names(config_file: Path, tmp_path: Path) -> None:
    """A message such as "check [smtp] host" must reach the operator with its brackets."""
    from digest.cli.base import error

    runner = CliRunner()
    with runner.isolation() as (_out, err, _):
        error("check [smtp] host and port")
    assert b"check [smtp] host and port" in err.getvalue()


def test_a_short_secret_key_is_a_config_error_not_a_traceback(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", "short-s3cr3t")
    result = CliRunner().invoke(cli, ["--config", str(config_file), "run", "--dry-run"])
    assert result.exit_code == 2
    assert "site.secret_key" in result.stderr and "16 characters" in result.stderr
    assert "short-s3cr3t" not in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_dry_run_previews_hold_live_links_and_only_their_owner_reads_them(
    config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "previews"
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "run", "--dry-run", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    files = list(out.iterdir())
    assert files, "the dry run wrote no previews"
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}


def test_a_mistyped_arxiv_category_and_a_latin1_feed_as_the_operator_sees_them(
    config_file: Path, feed_server: Any
) -> None:
    typo = feed_server.feed("/rss/astroph", "broken/arxiv-listing-error.rss")
    latin1 = feed_server.feed("/seminaires", "latin1-declared-utf8.rss")
    assert digest(config_file, "sources", "add", "arxiv-astroph", typo).exit_code == 0
    assert digest(config_file, "sources", "add", "seminaires", latin1).exit_code == 0

    digest(config_file, "fetch")
    listed = json.loads(digest(config_file, "sources", "list", "--format", "json").stdout)

    by_name = {row["name"]: row for row in listed}
    assert by_name["arxiv-astroph"]["status"] == "failed"
    assert "Bad archive 'astroph'" in by_name["arxiv-astroph"]["last_error"]
    assert by_name["seminaires"]["status"] == "ok" and by_name["seminaires"]["papers"] == 2
    assert "Windows-1252" in by_name["seminaires"]["warnings"][0]


HEAVY = ("numpy", "scipy", "sqlalchemy", "rich", "jinja2", "digest.pipeline", "digest.store")


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["subscribers", "--help"]])
def test_help_starts_without_the_heavy_libraries(args: list[str]) -> None:
    # cron starts `digest` often: asking for help must not load ranking, the database or rich
    script = (
        "import sys\n"
        "from digest.cli import main\n"
        f"sys.argv = ['digest', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert "Usage: digest" in done.stdout
    assert done.stderr.strip() == "[]"
