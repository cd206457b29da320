"""Feeds and papers: `digest fetch`, `digest sources ...` and `digest papers list|search`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from digest.cli.base import (
    FORMAT,
    error,
    handle_errors,
    info,
    plain,
    print_json,
    progress_bar,
    state,
    stdout,
)

if TYPE_CHECKING:
    from digest import pipeline, ranking


def print_fetch_table(reports: Sequence[pipeline.FetchReport]) -> None:
    """One row per source: new, updated, and why it failed."""
    from rich.table import Table

    table = Table(title="Fetch", title_justify="left")
    for column in ("Source", "Status", "New", "Updated", "Problem"):
        table.add_column(column, justify="right" if column in ("New", "Updated") else "left")
    for r in reports:
        problem = r.error or "; ".join(r.warnings)
        table.add_row(*plain(r.name, r.status, str(r.new), str(r.updated), problem))
    stdout.print(table)


@click.command()
@click.option("--source", "only", help="Fetch only this source.")
@FORMAT
@handle_errors
def fetch(only: str | None, fmt: str) -> None:
    """Pull every source now and store the new papers."""
    from digest import pipeline

    ctx = state().context
    with progress_bar(fmt == "table") as progress:
        reports = pipeline.fetch(ctx, only=only, progress=progress)
    if fmt == "json":
        print_json([asdict(r) for r in reports])
    else:
        print_fetch_table(reports)
    exit_on_source_problems(ctx, reports)
    if any(r.status == "failed" for r in reports):
        info("Some sources failed; the others were stored. Check the URL, or try again later.")


def exit_on_source_problems(ctx: pipeline.Context, reports: Sequence[pipeline.FetchReport]) -> None:
    """Exit 1 (the error printed even with -q) when every source failed or one fails too long."""
    from digest import pipeline

    problems = pipeline.fetched_problems(ctx, [r.name for r in reports])
    for problem in problems:
        error(problem)
    if problems:
        raise SystemExit(1)


@click.group()
def sources() -> None:
    """List, add and remove feeds (config sources win over ones added here)."""


@sources.command("list")
@FORMAT
@handle_errors
def sources_list(fmt: str) -> None:
    """Every source with its last fetch and papers."""
    from rich.table import Table

    ctx = state().context
    ctx.store.sources.sync_config([s for s in ctx.settings.sources if s.enabled])
    records = ctx.store.sources.all()
    totals = ctx.store.papers.counts_by_source()
    rows = [
        {
            "name": r.name,
            "kind": r.kind,
            "url": r.url,
            "origin": r.origin,
            "last_fetched_at": _iso(r.last_fetched_at),
            "status": r.last_status or "never fetched",
            "papers": totals.get(r.name, 0),
            "new_last_time": r.last_new,
            "last_error": r.last_error,
            "warnings": list(r.last_warnings),
        }
        for r in records
    ]
    if fmt == "json":
        print_json(rows)
        return
    table = Table(title="Sources", title_justify="left")
    for column in ("Name", "Kind", "URL", "Last fetch", "Status", "Papers", "New", "Last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *plain(
                str(row["name"]),
                str(row["kind"]),
                str(row["url"]),
                str(row["last_fetched_at"] or "-"),
                str(row["status"]),
                str(row["papers"]),
                str(row["new_last_time"]),
                str(row["last_error"] or ""),
            )
        )
    stdout.print(table)


@sources.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--kind",
    type=click.Choice(["auto", "arxiv", "arxiv-api", "hf-daily", "rss", "atom"]),
    default="auto",
    show_default=True,
)
@handle_errors
def sources_add(name: str, url: str, kind: str) -> None:
    """Add a feed by URL (or local file path) without editing the config."""

    ctx = state().context
    if any(s.name == name for s in ctx.settings.sources):
        error(f"{name!r} is defined in the config file; edit it there")
        raise SystemExit(1)
    if "://" not in url:
        from pathlib import Path

        url = str(Path(url).resolve())
    elif not url.startswith(("http://", "https://", "file://")):
        error("only http(s) URLs and local files can be fetched")
        raise SystemExit(2)
    try:
        ctx.store.sources.add(name, url, kind=kind)
    except ValueError as exc:
        error(str(exc))
        raise SystemExit(1) from None
    info(f"Added {name}. Fetch it now with `digest fetch --source {name}`.")


@sources.command("remove")
@click.argument("name")
@handle_errors
def sources_remove(name: str) -> None:
    """Remove a feed added with `digest sources add` (its papers stay)."""

    ctx = state().context
    if any(s.name == name for s in ctx.settings.sources):
        error(f"{name!r} is defined in the config file; remove it there")
        raise SystemExit(1)
    ctx.store.sources.remove(name)
    info(f"Removed {name}.")


@click.group()
def papers() -> None:
    """Look at the stored papers."""


@papers.command("list")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="First seen on or after.")
@click.option("--source", help="Only papers from this source.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@FORMAT
@handle_errors
def papers_list(since: datetime | None, source: str | None, limit: int | None, fmt: str) -> None:
    """Stored papers, newest first seen first."""
    from rich.table import Table

    ctx = state().context
    found = ctx.store.papers.newest(
        since=since.replace(tzinfo=UTC) if since else None, source=source, limit=limit
    )
    if fmt == "json":
        print_json(
            [
                {
                    "key": p.key,
                    "title": p.title,
                    "abstract": p.abstract,
                    "authors": list(p.authors),
                    "url": p.url,
                    "pdf_url": p.pdf_url,
                    "categories": list(p.categories),
                    "published_at": _iso(p.published_at),
                    "first_seen_at": _iso(p.first_seen_at),
                    "upvotes": p.upvotes,
                    "sources": list(p.sources),
                }
                for p in found
            ]
        )
        return
    table = Table(title=f"Papers ({len(found)})", title_justify="left")
    for column in ("Key", "Title", "Categories", "Upvotes", "First seen", "Sources"):
        table.add_column(column, overflow="fold")
    for p in found:
        table.add_row(
            *plain(
                p.key,
                p.title[:100],
                " ".join(p.categories[:4]),
                "" if p.upvotes is None else str(p.upvotes),
                _iso(p.first_seen_at) or "",
                ", ".join(p.sources),
            )
        )
    stdout.print(table)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@papers.command("search")
@click.argument("profile")
@click.option("--limit", type=click.IntRange(1, 200), default=10, show_default=True)
@click.option(
    "--paper",
    "keys",
    multiple=True,
    help="Explain this paper (its key, from `digest papers list`) whether or not it ranks; repeatable.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 365),
    help="Search papers first seen in the last DAYS days (default: a first digest's window).",
)
@click.option("--explain", "detailed", is_flag=True, help="Show each term's share of the score.")
@FORMAT
@handle_errors
def papers_search(
    profile: str, limit: int, keys: tuple[str, ...], days: int | None, detailed: bool, fmt: str
) -> None:
    """Rank the stored papers for a profile, as a digest would, and say why each one scored.

    PROFILE is written as subscribers write it: 'LLM, "federated learning", -medical'.
    """
    from rich.table import Table

    from digest import pipeline

    ctx = state().context
    try:
        found = pipeline.explain(ctx, profile, limit=limit, keys=keys or None, days=days)
    except KeyError as exc:
        error(
            f"{exc.args[0]}: widen the window with --days, or check the key with `digest papers list`"
        )
        raise SystemExit(1) from None
    if fmt == "json":
        print_json([_explanation_json(e) for e in found])
        return
    if not found:
        if not pipeline.candidates(ctx, days=days):
            info("No papers are stored yet: run `digest fetch` first.")
        else:
            info(
                "Nothing reaches min_score for this profile "
                f"({ctx.settings.ranking.min_score:g}); a digest would be empty or trending."
            )
        return
    table = Table(title=f"Papers for {profile!r}", title_justify="left", show_lines=detailed)
    for column in ("#", "Score", "Key", "Title", "Matched" if not detailed else "Why"):
        table.add_column(column, overflow="fold", justify="right" if column == "Score" else "left")
    for n, e in enumerate(found, 1):
        why = (
            _why(e)
            if detailed
            else ", ".join(t.term for t in e.terms if t.matched and not t.exclude)
        )
        rank_cell = str(n) if e.recommended else "-"
        table.add_row(*plain(rank_cell, f"{e.score:.2f}", e.paper.key, e.paper.title[:100], why))
    stdout.print(table)


def _why(e: ranking.Explanation) -> str:
    lines = [
        f"{t.term}: {'vetoes' if t.exclude else f'+{t.score:.2f}'}"
        + ("" if t.matched else " (partly)")
        + (f" (weight {t.weight:g})" if t.weight != 1 else "")
        for t in e.terms
        if t.score or t.matched
    ]
    if e.trending != 1:
        lines.append(f"trending: x{e.trending:.2f} ({e.paper.upvotes} upvotes)")
    lines.append(e.reason)
    return "\n".join(lines)


def _explanation_json(e: ranking.Explanation) -> dict[str, object]:
    return {
        "key": e.paper.key,
        "title": e.paper.title,
        "url": e.paper.url,
        "score": round(e.score, 4),
        "relevance": round(e.relevance, 4),
        "trending": round(e.trending, 4),
        "upvotes": e.paper.upvotes,
        "recommended": e.recommended,
        "reason": e.reason,
        "terms": [
            {
                "term": t.term,
                "score": round(t.score, 4),
                "weight": t.weight,
                "matched": t.matched,
                "exclude": t.exclude,
            }
            for t in e.terms
        ],
    }
