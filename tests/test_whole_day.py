"""One day of paper-digest, end to end: the sample feed in, ranked digests out through real SMTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from digest import pipeline
from digest.store import Preferences

READERS = {
    "fl@uni.example": '"federated learning", distillation, -medical',
    "rl@lab.example": '"reinforcement learning", reasoning, agents',
    "gen@studio.example": "diffusion, video generation",
}


def subscribe_all(ctx: pipeline.Context, readers: dict[str, str] = READERS) -> None:
    for email, keywords in readers.items():
        ctx.store.subscribers.add(
            email, Preferences(keywords=keywords), confirmed=True, now=ctx.now()
        )


def text_part(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


@freeze_time("2025-11-27 08:00:00")
def test_each_reader_gets_one_digest_with_their_papers(
    make_settings: Any, smtp_server: Any
) -> None:
    ctx = pipeline.build_context(make_settings())
    subscribe_all(ctx)

    report = pipeline.run(ctx)

    assert [f.new for f in report.fetched] == [148]
    assert sorted(o.email for o in report.rows if o.channels.get("email") == "sent") == sorted(
        READERS
    )
    assert len(smtp_server.raw) == 3
    fl = smtp_server.to("fl@uni.example")
    assert len(fl) == 1
    body = text_part(fl[0])
    assert "Federated Learning on Virtual Heterogeneous Data" in body
    assert "federated learning" in body.lower()
    gen_body = text_part(smtp_server.to("gen@studio.example")[0])
    assert "diffusion" in gen_body.lower()
    # Each digest is about its reader's interests, not the same list for everyone.
    rl_body = text_part(smtp_server.to("rl@lab.example")[0])
    assert "Federated Learning on Virtual Heterogeneous Data" not in rl_body


@freeze_time("2025-11-27 08:00:00")
def test_exclusions_keep_papers_out(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings())
    subscribe_all(ctx, {"fl@uni.example": '"federated learning", -distillation'})

    report = pipeline.run(ctx)

    [outcome] = [o for o in report.rows if "email" in o.channels]
    assert outcome.digest is not None and outcome.digest.matches
    for match in outcome.digest.matches:
        text = f"{match.paper.title} {match.paper.abstract}".lower()
        assert "distill" not in text


def test_a_second_run_the_same_day_sends_nothing_new(make_settings: Any, smtp_server: Any) -> None:
    with freeze_time("2025-11-27 08:00:00"):
        ctx = pipeline.build_context(make_settings())
        subscribe_all(ctx)
        pipeline.run(ctx)
        assert len(smtp_server.raw) == 3

    with freeze_time("2025-11-27 09:30:00"):
        again = pipeline.run(ctx)

    assert len(smtp_server.raw) == 3
    assert not [o for o in again.rows if o.status == "sent"]
    counts = ctx.store.deliveries.counts_for(digest_date=date(2025, 11, 27))
    assert counts.get("sent") == 6  # three readers, email and feed each


def test_no_paper_is_sent_twice(make_settings: Any, smtp_server: Any, tmp_path: Path) -> None:
    """The next day brings one new paper and repeats an old one: only the new one is sent."""
    with freeze_time("2025-11-27 08:00:00"):
        ctx = pipeline.build_context(make_settings())
        subscribe_all(ctx, {"fl@uni.example": '"federated learning"'})
        pipeline.run(ctx)
    first = text_part(smtp_server.to("fl@uni.example")[0])
    assert "FedSyn" in first

    next_day = tmp_path / "next-day.atom"
    next_day.write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>urn:feed:next</id><title>Next day</title><updated>2025-11-28T00:00:00Z</updated>
  <entry>
    <id>urn:paper:p002</id>
    <title>FedSyn: Synthetic Data Generation using Federated Learning</title>
    <updated>2025-11-28T00:00:00Z</updated>
    <link rel="alternate" href="https://example.org/papers/p002"/>
    <summary>Federated learning for synthetic data generation, seen again.</summary>
  </entry>
  <entry>
    <id>urn:paper:new-1</id>
    <title>Personalized Federated Learning with Adaptive Client Clustering</title>
    <updated>2025-11-28T00:00:00Z</updated>
    <link rel="alternate" href="https://example.org/papers/new-1"/>
    <summary>We study federated learning when clients differ, clustering clients adaptively.</summary>
  </entry>
</feed>""",
        encoding="utf-8",
    )
    settings = make_settings(sources=[{"name": "next", "url": str(next_day), "kind": "atom"}])
    with freeze_time("2025-11-28 08:00:00"):
        ctx = pipeline.build_context(settings)
        pipeline.run(ctx)

    messages = smtp_server.to("fl@uni.example")
    assert len(messages) == 2
    second = text_part(messages[1])
    assert "Personalized Federated Learning with Adaptive Client Clustering" in second
    assert "FedSyn" not in second


@freeze_time("2025-11-27 08:00:00")
def test_nothing_relevant_means_no_mail_by_default(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings())
    subscribe_all(ctx, {"chem@lab.example": '"organometallic catalysis"'})

    report = pipeline.run(ctx)

    assert smtp_server.raw == []
    assert {o.status for o in report.rows} == {"empty"}


@freeze_time("2025-11-27 08:00:00")
def test_nothing_relevant_can_send_trending_instead(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings(digest={"empty": "trending"}))
    subscribe_all(ctx, {"chem@lab.example": '"organometallic catalysis"'})

    pipeline.run(ctx)

    [message] = smtp_server.to("chem@lab.example")
    body = text_part(message)
    assert "No new papers matched your profile today" in body
    # The most upvoted paper of the sample is in the fallback digest.
    assert "upvote" in body


@freeze_time("2025-11-27 08:00:00")
def test_dry_run_previews_without_changing_anything(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    ctx = pipeline.build_context(make_settings())
    subscribe_all(ctx)
    out = tmp_path / "preview"

    report = pipeline.run(ctx, dry_run=True, out=out)

    assert smtp_server.raw == []
    assert ctx.store.deliveries.counts() == {}
    assert {o.status for o in report.rows} == {"would send"}
    assert sorted(p.suffix for p in out.iterdir()) == [".eml"] * 3 + [".html"] * 3 + [".txt"] * 3
    # The real run afterwards still sends every digest.
    pipeline.run(ctx, fetch_first=False)
    assert len(smtp_server.raw) == 3


@freeze_time("2025-11-27 08:00:00")
def test_unsubscribed_readers_get_nothing(make_settings: Any, smtp_server: Any) -> None:
    ctx = pipeline.build_context(make_settings())
    subscribe_all(ctx)
    ctx.store.subscribers.unsubscribe(email="rl@lab.example", now=datetime.now(UTC))

    pipeline.run(ctx)

    assert smtp_server.to("rl@lab.example") == []
    assert len(smtp_server.raw) == 2


@pytest.mark.parametrize("hour, due", [(6, False), (7, True), (23, True)])
def test_schedule_sends_at_the_readers_local_hour(
    make_settings: Any, smtp_server: Any, hour: int, due: bool
) -> None:
    """A reader in Tokyo with send hour 7 is due at 07:00 Tokyo time (22:00 UTC the day before)."""
    with freeze_time(f"2025-11-26 {(hour - 9) % 24:02d}:30:00"):
        ctx = pipeline.build_context(make_settings())
        ctx.store.subscribers.add(
            "tokyo@lab.example",
            Preferences(keywords='"federated learning"', timezone="Asia/Tokyo", send_hour=7),
            confirmed=True,
            now=ctx.now(),
        )
        pipeline.fetch(ctx)
        planned = pipeline.plan(ctx, due_only=True)
        pipeline.send_pending(ctx)

    assert (planned > 0) is due
    assert len(smtp_server.to("tokyo@lab.example")) == (1 if due else 0)


@freeze_time("2025-11-27 08:00:00")
def test_each_readers_feed_is_written_when_a_folder_is_configured(
    make_settings: Any, smtp_server: Any, tmp_path: Path
) -> None:
    import feedparser

    feeds_dir = tmp_path / "feeds"
    ctx = pipeline.build_context(make_settings(delivery={"feeds_dir": str(feeds_dir)}))
    subscribe_all(ctx, {"fl@uni.example": '"federated learning"'})

    pipeline.run(ctx)

    reader = ctx.store.subscribers.get(email="fl@uni.example")
    atom = feedparser.parse((feeds_dir / f"{reader.feed_token}.atom").read_bytes())
    rss = feedparser.parse((feeds_dir / f"{reader.feed_token}.rss").read_bytes())
    assert not atom.bozo and not rss.bozo
    titles = [entry.title for entry in atom.entries]
    assert (
        "Federated Learning on Virtual Heterogeneous Data with Local-global Distillation" in titles
    )
    assert [entry.title for entry in rss.entries] == titles


@freeze_time("2025-11-27 08:00:00")
def test_a_source_that_failed_is_named_by_its_title_without_promises(
    make_settings: Any, smtp_server: Any, sample_feed: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "cs-lg.rss"
    broken.write_text("<html><head><title>502 Bad Gateway</title></head><body>down</body></html>")
    ctx = pipeline.build_context(
        make_settings(
            sources=[
                {"name": "hf-sample", "url": str(sample_feed), "kind": "atom"},
                {"name": "arxiv-cs-lg", "url": str(broken), "title": "arXiv cs.LG"},
            ]
        )
    )
    subscribe_all(ctx, {"fl@uni.example": '"federated learning"'})

    report = pipeline.run(ctx)

    statuses = {f.name: f.status for f in report.fetched}
    assert statuses == {"hf-sample": "ok", "arxiv-cs-lg": "failed"}
    body = " ".join(text_part(smtp_server.to("fl@uni.example")[0]).split())
    assert "arXiv cs.LG could not be reached when this digest was put together" in body
    assert "arxiv-cs-lg" not in body  # the operator's internal name stays with the operator
    assert "tomorrow" not in body  # no promise the product does not check
    assert "Federated Learning on Virtual Heterogeneous Data" in body
