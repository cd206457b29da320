"""The day's work in order: fetch -> plan -> rank -> render -> deliver.

The only module that knows the stage order. Entry points (cli, web, scheduler) build a Context
and call one function here; stages below never call each other.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from digest import ranking, sources, store
from digest.config import Settings, SourceSettings
from digest.deliver.message import DkimSigner, build_message
from digest.deliver.transport import (
    Envelope,
    FileTransport,
    SendResult,
    SmtpTransport,
    Transport,
)
from digest.models import (
    Channel,
    Digest,
    DigestLinks,
    Match,
    Paper,
    RenderedEmail,
    SourceStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.render import EmailRenderer
from digest.tokens import Scope, Signer

Progress = Callable[[str, int, int], None]
"""Called as (stage, done, total) while long work runs; the CLI draws a progress bar from it."""


def utcnow() -> datetime:
    """The current time, aware and in UTC (freezegun-friendly)."""
    return datetime.now(UTC)


@dataclass
class Context:
    """What every stage needs, built once per process by an entry point."""

    settings: Settings
    engine: Engine
    signer: Signer
    now: Callable[[], datetime] = utcnow
    _corpus_cache: dict[tuple[date, int], ranking.Corpus] = field(default_factory=dict)

    @cached_property
    def renderer(self) -> EmailRenderer:
        """The email templates, compiled once (a broken template fails here, before any send)."""
        templates = (
            Path(self.settings.email.templates_dir) if self.settings.email.templates_dir else None
        )
        return EmailRenderer(templates, site=self.settings.site, email=self.settings.email)

    @cached_property
    def dkim(self) -> DkimSigner | None:
        """The DKIM signer, when the operator configured one."""
        return DkimSigner.from_settings(self.settings.email)

    @property
    def sender(self) -> str:
        """The envelope sender (bounces go here)."""
        return parseaddr(self.settings.email.from_)[1]

    def links(self, subscriber: Subscriber) -> DigestLinks:
        """The reader's personal links, built from the configured base URL (never a Host header)."""
        base = self.settings.site.base_url
        if subscriber.id is None:
            return DigestLinks(home=base + "/")
        unsubscribe = self.signer.make(Scope.UNSUBSCRIBE, subscriber.id)
        preferences = self.signer.make(Scope.PREFERENCES, subscriber.id)
        feed = quote(subscriber.feed_token)
        mailto = ""
        if self.sender:
            mailto = f"mailto:{self.sender}?subject=unsubscribe%20{unsubscribe}"
        return DigestLinks(
            preferences=f"{base}/preferences/{preferences}",
            unsubscribe=f"{base}/unsubscribe/{unsubscribe}",
            unsubscribe_mailto=mailto,
            feed_atom=f"{base}/feeds/{feed}.atom" if feed else "",
            feed_rss=f"{base}/feeds/{feed}.rss" if feed else "",
            home=base + "/",
        )

    def corpus(self, papers_hint: Sequence[Paper] = ()) -> ranking.Corpus:
        """Ranking statistics over the rolling window of stored papers (cached per day)."""
        key = (self.now().date(), store.count_papers(self.engine))
        cached = self._corpus_cache.get(key)
        if cached is None:
            since = self.now() - timedelta(days=self.settings.ranking.window_days)
            window = store.papers_seen_between(self.engine, since, self.now() + timedelta(days=1))
            cached = ranking.build_corpus(
                window or papers_hint, acronyms=store.load_acronyms(self.engine)
            )
            self._corpus_cache.clear()
            self._corpus_cache[key] = cached
        return cached

    def transport(self) -> Transport:
        """The configured way out: SMTP, or a folder of .eml files."""
        delivery = self.settings.delivery
        if delivery.transport == "file":
            return FileTransport(Path(delivery.outbox_dir or "outbox"))
        return SmtpTransport(self.settings.smtp)


def build_context(settings: Settings, *, now: Callable[[], datetime] = utcnow) -> Context:
    """Open the database (creating or upgrading its schema) and the token signer."""
    engine = store.open_engine(settings.database.url)
    store.ensure_schema(engine)
    secret = settings.site.secret_key or store.get_or_create_secret(engine)
    return Context(settings=settings, engine=engine, signer=Signer(secret), now=now)


# ---------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class FetchReport:
    """How one source's fetch went."""

    name: str
    status: str
    kind: str = ""
    new: int = 0
    updated: int = 0
    seen: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()


def fetch(
    ctx: Context, *, only: str | None = None, progress: Progress | None = None
) -> list[FetchReport]:
    """Fetch every enabled source (or one), store the papers, remember how each fetch went.

    One source failing never stops the others.
    """
    store.sync_config_sources(ctx.engine, [s for s in ctx.settings.sources if s.enabled])
    records = store.list_sources(ctx.engine)
    if only is not None:
        records = [r for r in records if r.name == only]
        if not records:
            raise store.UnknownSource(f"no source named {only!r} (see `digest sources list`)")
    reports = []
    for done, record in enumerate(records):
        if progress:
            progress(f"fetching {record.name}", done, len(records))
        reports.append(_fetch_one(ctx, record))
    if progress:
        progress("fetched", len(records), len(records))
    return reports


def _fetch_one(ctx: Context, record: store.SourceRecord) -> FetchReport:
    source = SourceSettings(name=record.name, url=record.url, kind=record.kind)  # type: ignore[arg-type]
    state = sources.FetchState(etag=record.etag, last_modified=record.last_modified)
    result = sources.fetch_source(source, state, ctx.settings.fetch)
    now = ctx.now()
    counts = store.UpsertCounts()
    if result.status == "ok" and result.papers:
        counts = store.upsert_papers(ctx.engine, result.papers, now=now)
        store.save_acronyms(ctx.engine, ranking.learn_acronyms(result.papers))
    store.record_fetch(
        ctx.engine,
        record.name,
        now=now,
        status=result.status,
        error=result.error,
        etag=result.etag,
        last_modified=result.last_modified,
        new=counts.new,
        updated=counts.updated,
        warnings=result.warnings,
    )
    return FetchReport(
        name=record.name,
        status=result.status,
        kind=result.kind,
        new=counts.new,
        updated=counts.updated,
        seen=len(result.papers),
        error=result.error,
        warnings=tuple(result.warnings),
    )


# ---------------------------------------------------------------- plan


def local_date(subscriber: Subscriber, now: datetime) -> date:
    """The subscriber's calendar date at `now`."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).date()


def is_due(subscriber: Subscriber, now: datetime) -> bool:
    """True once the subscriber's send hour has come in their own time zone."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).hour >= subscriber.send_hour


def plan(
    ctx: Context,
    *,
    digest_date: date | None = None,
    due_only: bool = False,
) -> int:
    """Create the day's delivery rows (idempotent); returns how many are new.

    With `digest_date`, every active subscriber gets a row for that date (`digest run`); with
    `due_only`, a subscriber gets one for their local date once their send hour has come
    (`digest schedule`). Weekly readers get at most one digest in seven days.
    """
    now = ctx.now()
    created = 0
    for batch in store.iter_active(ctx.engine):
        planned: list[store.PlannedDelivery] = []
        for subscriber in batch:
            if due_only and not is_due(subscriber, now):
                continue
            day = digest_date or local_date(subscriber, now)
            planned.extend(
                store.PlannedDelivery(subscriber.id, day, channel)  # type: ignore[arg-type]
                for channel in subscriber.channels
            )
        planned = _drop_weekly_not_due(ctx, batch, planned)
        created += store.plan_deliveries(ctx.engine, planned, cutoff=now, now=now)
    return created


def _drop_weekly_not_due(
    ctx: Context, batch: Sequence[Subscriber], planned: list[store.PlannedDelivery]
) -> list[store.PlannedDelivery]:
    weekly = {s.id for s in batch if s.frequency == "weekly"}
    if not weekly:
        return planned
    kept = []
    for item in planned:
        if item.subscriber_id in weekly:
            last = store.last_digest_dates(ctx.engine, [item.subscriber_id], channel=item.channel)
            previous = last.get(item.subscriber_id)
            if previous is not None and item.digest_date - previous < timedelta(days=7):
                continue
        kept.append(item)
    return kept


# ---------------------------------------------------------------- rank


@dataclass(frozen=True, slots=True)
class Window:
    """The papers a digest may pick from: first seen after `since`, up to `until`."""

    since: datetime
    until: datetime


def compose(
    ctx: Context,
    subscribers: Sequence[Subscriber],
    windows: Sequence[Window],
    *,
    digest_date: date,
    exclude: Sequence[set[int]] | None = None,
) -> list[Digest | None]:
    """Rank each subscriber's window and assemble their digest; None where nothing is worth sending."""
    groups: dict[Window, list[int]] = defaultdict(list)
    for index, window in enumerate(windows):
        groups[window].append(index)
    failed = _failed_sources(ctx)
    digests: list[Digest | None] = [None] * len(subscribers)
    for window, indexes in groups.items():
        papers = store.papers_seen_between(ctx.engine, window.since, window.until)
        corpus = ctx.corpus(papers)
        members = [subscribers[i] for i in indexes]
        by_id = {p.id: p.key for p in papers}
        excluded = [
            {by_id[pid] for pid in (exclude[i] if exclude else ()) if pid in by_id} for i in indexes
        ]
        ranked = ranking.rank(
            papers,
            [s.keywords for s in members],
            settings=ctx.settings.ranking,
            corpus=corpus,
            limit=[s.max_papers for s in members],
            exclude=excluded,
        )
        hot = ranking.trending(papers, ctx.settings.digest.trending_count + 20)
        for index, subscriber, matches, skip in zip(
            indexes, members, ranked, excluded, strict=True
        ):
            digests[index] = _assemble(ctx, subscriber, digest_date, matches, hot, skip, failed)
    return digests


def _assemble(
    ctx: Context,
    subscriber: Subscriber,
    digest_date: date,
    matches: list[Match],
    hot: list[Match],
    skip: set[str],
    failed: tuple[SourceStatus, ...],
) -> Digest | None:
    picked = {m.paper.key for m in matches}
    fresh_hot = [m for m in hot if m.paper.key not in skip]
    trending_block = tuple(
        m for m in fresh_hot if m.paper.key not in picked and (m.paper.upvotes or 0) > 0
    )[: ctx.settings.digest.trending_count]
    fallback = False
    if not matches:
        if ctx.settings.digest.empty != "trending" or not fresh_hot:
            return None
        matches, trending_block, fallback = fresh_hot[: subscriber.max_papers], (), True
    return Digest(
        subscriber=subscriber,
        digest_date=digest_date,
        matches=tuple(matches),
        trending=trending_block,
        failed_sources=failed,
        links=ctx.links(subscriber),
        fallback=fallback,
    )


def _failed_sources(ctx: Context) -> tuple[SourceStatus, ...]:
    return tuple(
        SourceStatus(name=record.name, ok=False, error=record.last_error)
        for record in store.list_sources(ctx.engine)
        if record.last_status == "failed"
    )


def first_window(ctx: Context, cutoff: datetime) -> datetime:
    """Where a subscriber's first digest starts looking."""
    return cutoff - timedelta(days=ctx.settings.digest.first_digest_days)


# ---------------------------------------------------------------- deliver


@dataclass
class DeliveryOutcome:
    """What happened to one delivery in this run."""

    email: str
    channel: str
    status: str
    digest: Digest | None = None
    error: str | None = None


@dataclass
class SendReport:
    """What a sending pass did."""

    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    released: int = 0

    def count(self, status: str) -> int:
        """How many deliveries ended with this status."""
        return sum(1 for o in self.outcomes if o.status == status)


def worker_id() -> str:
    """Names this process in leases (host and pid), for operators reading the table."""
    return f"{socket.gethostname()}:{os.getpid()}"


def send_pending(
    ctx: Context,
    transport: Transport | None = None,
    *,
    owner: str | None = None,
    progress: Progress | None = None,
    stop_when_idle: bool = True,
) -> SendReport:
    """Claim, rank, render and send pending deliveries until none is left (or one pass when looping).

    Each row becomes sent the moment the relay accepts its message, committed at once.
    """
    transport = transport or ctx.transport()
    owner = owner or worker_id()
    report = SendReport(released=store.release_expired(ctx.engine, now=ctx.now()))
    _ = ctx.renderer  # compile templates before the first claim: a broken template sends nothing
    after = 0
    while True:
        claims = store.claim_deliveries(
            ctx.engine,
            owner=owner,
            limit=ctx.settings.delivery.batch_size,
            now=ctx.now(),
            lease_seconds=ctx.settings.delivery.lease_seconds,
            after_id=after,
        )
        if not claims:
            if after == 0:
                break
            after = 0
            continue
        after = claims[-1].id
        report.outcomes.extend(process_claims(ctx, claims, transport))
        if progress:
            progress("sending", len(report.outcomes), len(report.outcomes))
        if not stop_when_idle:
            break
    return report


def process_claims(
    ctx: Context, claims: Sequence[store.Claim], transport: Transport
) -> list[DeliveryOutcome]:
    """Rank, render and send one claimed batch, recording each row's result as it comes."""
    engine = ctx.engine
    subscribers = store.subscribers_by_ids(engine, [c.subscriber_id for c in claims])
    live = [c for c in claims if c.subscriber_id in subscribers]
    outcomes: list[DeliveryOutcome] = []
    for claim in claims:
        if claim.subscriber_id not in subscribers:
            store.mark_failed(
                engine, claim.id, error="subscriber is gone", retry_at=None, max_attempts=0
            )
    by_channel: dict[str, list[store.Claim]] = defaultdict(list)
    for claim in live:
        by_channel[claim.channel].append(claim)
    sent_before = store.sent_paper_ids(engine, [c.subscriber_id for c in live])
    for channel, group in by_channel.items():
        previous: dict[tuple[date, int], datetime] = {}
        for day in {c.digest_date for c in group}:
            ids = [c.subscriber_id for c in group if c.digest_date == day]
            for sid, cutoff in store.previous_cutoffs(
                engine, ids, channel=channel, before=day
            ).items():
                previous[(day, sid)] = cutoff
        members = [subscribers[c.subscriber_id] for c in group]
        windows = [
            Window(
                previous.get((c.digest_date, c.subscriber_id)) or first_window(ctx, c.cutoff),
                c.cutoff,
            )
            for c in group
        ]
        digests = _compose_by_day(ctx, group, members, windows, sent_before)
        outcomes.extend(_deliver_group(ctx, channel, group, members, digests, transport))
    return outcomes


def _compose_by_day(
    ctx: Context,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    windows: Sequence[Window],
    sent_before: dict[int, set[int]],
) -> list[Digest | None]:
    digests: list[Digest | None] = [None] * len(group)
    days: dict[date, list[int]] = defaultdict(list)
    for index, claim in enumerate(group):
        days[claim.digest_date].append(index)
    for day, indexes in days.items():
        composed = compose(
            ctx,
            [members[i] for i in indexes],
            [windows[i] for i in indexes],
            digest_date=day,
            exclude=[sent_before.get(group[i].subscriber_id, set()) for i in indexes],
        )
        for index, digest in zip(indexes, composed, strict=True):
            digests[index] = digest
    return digests


def _deliver_group(
    ctx: Context,
    channel: str,
    group: Sequence[store.Claim],
    members: Sequence[Subscriber],
    digests: Sequence[Digest | None],
    transport: Transport,
) -> list[DeliveryOutcome]:
    engine, now = ctx.engine, ctx.now()
    outcomes: list[DeliveryOutcome] = []
    to_send: list[tuple[store.Claim, Digest]] = []
    items: dict[int, Sequence[Match]] = {}
    for claim, subscriber, digest in zip(group, members, digests, strict=True):
        if digest is None:
            store.mark_empty(engine, claim.id, now=now, reason="nothing matched the profile")
            outcomes.append(DeliveryOutcome(subscriber.email, channel, "empty"))
            continue
        items[claim.id] = digest.matches
        to_send.append((claim, digest))
    store.save_many_items(engine, items)
    if channel == Channel.FEED:
        store.mark_many_sent(engine, [(claim.id, None) for claim, _ in to_send], now=now)
        outcomes.extend(DeliveryOutcome(d.subscriber.email, channel, "sent", d) for _, d in to_send)
        return outcomes
    return outcomes + _send_emails(ctx, to_send, transport)


def render_envelope(ctx: Context, key: int, digest: Digest) -> Envelope:
    """The digest as a ready-to-send message for its subscriber."""
    rendered = ctx.renderer.digest(digest)
    return _envelope(ctx, key, digest.subscriber.email, rendered, digest.links)


def _envelope(
    ctx: Context, key: int, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> Envelope:
    message = build_message(
        rendered,
        to=to,
        email=ctx.settings.email,
        site=ctx.settings.site,
        unsubscribe_url=links.unsubscribe if links and links.unsubscribe else None,
        unsubscribe_mailto=links.unsubscribe_mailto if links and links.unsubscribe_mailto else None,
        dkim=ctx.dkim,
    )
    return Envelope(
        key=key, sender=ctx.sender, recipient=to, data=message.data, message_id=message.message_id
    )


def _send_emails(
    ctx: Context, to_send: Sequence[tuple[store.Claim, Digest]], transport: Transport
) -> list[DeliveryOutcome]:
    engine, settings = ctx.engine, ctx.settings.delivery
    envelopes = [render_envelope(ctx, claim.id, digest) for claim, digest in to_send]
    by_key = {claim.id: (claim, digest) for claim, digest in to_send}
    message_ids = {e.key: e.message_id for e in envelopes}
    outcomes: list[DeliveryOutcome] = []

    def record(result: SendResult) -> None:
        claim, digest = by_key[result.key]
        email = digest.subscriber.email
        if result.ok:
            store.mark_sent(engine, claim.id, now=ctx.now(), message_id=message_ids[result.key])
            outcomes.append(DeliveryOutcome(email, Channel.EMAIL, "sent", digest))
            return
        retry_at = None
        if not result.permanent:
            retry_at = ctx.now() + timedelta(minutes=5 * 2 ** max(claim.attempts - 1, 0))
        status = store.mark_failed(
            engine,
            claim.id,
            error=result.error or "failed",
            retry_at=retry_at,
            max_attempts=settings.max_attempts,
        )
        if result.permanent:
            store.record_bounce(engine, claim.subscriber_id, bounce_after=settings.bounce_after)
        outcomes.append(DeliveryOutcome(email, Channel.EMAIL, status, digest, result.error))

    asyncio.run(transport.send_many(envelopes, record))
    return outcomes


# ---------------------------------------------------------------- run


@dataclass
class RunReport:
    """What `digest run` did (or, dry, would do)."""

    digest_date: date
    dry_run: bool
    papers: int
    fetched: list[FetchReport] = field(default_factory=list)
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    planned: int = 0
    examples: bool = False

    def as_json(self) -> dict[str, Any]:
        """The `--format json` shape: date, dry_run, papers and one object per digest."""
        return {
            "date": self.digest_date.isoformat(),
            "dry_run": self.dry_run,
            "papers": self.papers,
            "examples": self.examples,
            "sources": [
                {"name": f.name, "status": f.status, "new": f.new, "error": f.error}
                for f in self.fetched
            ],
            "digests": [
                {
                    "email": o.email,
                    "channel": o.channel,
                    "status": o.status,
                    "error": o.error,
                    "papers": [
                        {
                            "key": m.paper.key,
                            "title": m.paper.title,
                            "url": m.paper.url,
                            "score": round(float(m.score), 4),
                            "matched": list(m.matched),
                        }
                        for m in (o.digest.matches if o.digest else ())
                    ],
                }
                for o in self.outcomes
            ],
        }


def run(
    ctx: Context,
    *,
    digest_date: date | None = None,
    fetch_first: bool = True,
    dry_run: bool = False,
    out: Path | None = None,
    transport: Transport | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Fetch (optionally), then plan and send today's digests; dry, preview them instead."""
    day = digest_date or ctx.now().date()
    fetched = fetch(ctx, progress=progress) if fetch_first else []
    if dry_run:
        return _dry_run(ctx, day, fetched, out)
    planned = plan(ctx, digest_date=day)
    sent = send_pending(ctx, transport, progress=progress)
    report = RunReport(day, False, _window_size(ctx, day), fetched, sent.outcomes, planned)
    if out is not None:
        write_previews(ctx, report, out)
    return report


def _window_size(ctx: Context, day: date) -> int:
    now = ctx.now()
    return len(store.papers_seen_between(ctx.engine, first_window(ctx, now), now))


def _dry_run(ctx: Context, day: date, fetched: list[FetchReport], out: Path | None) -> RunReport:
    """What a run would send now, changing nothing: no delivery row, no paper marked sent."""
    now = ctx.now()
    subscribers = [s for batch in store.iter_active(ctx.engine) for s in batch]
    examples = not subscribers
    if examples:
        subscribers = [
            Subscriber(email=e.name, keywords=e.keywords, max_papers=ctx.settings.digest.max_papers)
            for e in ctx.settings.examples
        ]
    windows = _dry_windows(ctx, subscribers, day, now)
    sent_before = store.sent_paper_ids(ctx.engine, [s.id for s in subscribers if s.id])
    digests = compose(
        ctx,
        subscribers,
        windows,
        digest_date=day,
        exclude=[sent_before.get(s.id, set()) if s.id else set() for s in subscribers],
    )
    outcomes = []
    for subscriber, digest in zip(subscribers, digests, strict=True):
        status = "would send" if digest else "empty"
        if digest and "email" not in subscriber.channels:
            status = "feed only"
        outcomes.append(DeliveryOutcome(subscriber.email, Channel.EMAIL, status, digest))
    report = RunReport(day, True, _window_size(ctx, day), fetched, outcomes, 0, examples)
    if out is not None:
        write_previews(ctx, report, out)
    return report


def _dry_windows(
    ctx: Context, subscribers: Sequence[Subscriber], day: date, now: datetime
) -> list[Window]:
    ids = [s.id for s in subscribers if s.id is not None]
    previous = (
        store.previous_cutoffs(
            ctx.engine, ids, channel=Channel.EMAIL, before=day + timedelta(days=1)
        )
        if ids
        else {}
    )
    return [Window(previous.get(s.id) or first_window(ctx, now), now) for s in subscribers]  # type: ignore[arg-type]


def write_previews(ctx: Context, report: RunReport, out: Path) -> list[Path]:
    """Write each digest as .html, .txt and .eml into `out` (what the reader would get)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index, outcome in enumerate(report.outcomes, start=1):
        if outcome.digest is None:
            continue
        rendered = ctx.renderer.digest(outcome.digest)
        stem = out / f"{index:04d}-{_slug(outcome.email)}"
        envelope = _envelope(ctx, index, outcome.email, rendered, outcome.digest.links)
        for suffix, content in ((".html", rendered.html), (".txt", rendered.text)):
            path = stem.with_suffix(suffix)
            path.write_text(content, encoding="utf-8")
            written.append(path)
        eml = stem.with_suffix(".eml")
        eml.write_bytes(envelope.data)
        written.append(eml)
    return written


def _slug(value: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_" else "_" for c in value)[:80]


# ---------------------------------------------------------------- single mails


def preview(ctx: Context, keywords: str, *, limit: int = 10) -> list[Match]:
    """Today's papers for a profile (raises ranking.ProfileError on a bad profile)."""
    ranking.validate_profile(keywords)
    now = ctx.now()
    papers = store.papers_seen_between(ctx.engine, first_window(ctx, now), now)
    if not papers:
        papers = store.list_papers(ctx.engine, limit=2000)
    [matches] = ranking.rank(
        papers, [keywords], settings=ctx.settings.ranking, corpus=ctx.corpus(papers), limit=limit
    )
    return matches


def _send_one(
    ctx: Context, to: str, rendered: RenderedEmail, links: DigestLinks | None
) -> SendResult:
    results: list[SendResult] = []
    envelope = _envelope(ctx, 0, to, rendered, links)
    asyncio.run(ctx.transport().send_many([envelope], results.append))
    return results[0]


class MailError(Exception):
    """A single mail (confirmation, goodbye) could not be handed to the relay."""


def send_confirmation(ctx: Context, subscriber: Subscriber) -> None:
    """Send the double opt-in mail (or, for an active address, a note with its preferences link).

    Synchronous; from async code call it in a worker thread.
    """
    assert subscriber.id is not None
    links = ctx.links(subscriber)
    if subscriber.status == SubscriberStatus.ACTIVE:
        rendered = (
            ctx.renderer.already_subscribed(subscriber.email, links.preferences)
            if hasattr(ctx.renderer, "already_subscribed")
            else ctx.renderer.confirmation(subscriber.email, links.preferences)
        )
    else:
        version = store.token_version(ctx.engine, subscriber.id)
        token = ctx.signer.make(Scope.CONFIRM, subscriber.id, version)
        rendered = ctx.renderer.confirmation(
            subscriber.email, f"{ctx.settings.site.base_url}/confirm/{token}"
        )
    result = _send_one(ctx, subscriber.email, rendered, None)
    if not result.ok:
        raise MailError(f"could not send the confirmation to {subscriber.email}: {result.error}")


def send_goodbye(ctx: Context, subscriber: Subscriber) -> None:
    """Tell a reader they are unsubscribed, with a way back."""
    rendered = ctx.renderer.goodbye(subscriber.email, ctx.settings.site.base_url + "/")
    result = _send_one(ctx, subscriber.email, rendered, None)
    if not result.ok:
        raise MailError(f"could not send the goodbye mail to {subscriber.email}: {result.error}")
