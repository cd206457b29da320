"""Setting up and serving: `digest init`, `digest db upgrade` and `digest serve`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import click

from digest.cli.base import handle_errors, info, state, warn


@click.command()
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the starter config (default: ./digest.toml).",
)
@handle_errors
def init(path: Path | None) -> None:
    """Write a starter digest.toml (when there is none) and create or upgrade the database."""
    from digest import store
    from digest.config import DEFAULT_CONFIG_NAME, example_config_path, load_settings

    target = path or Path(state().config_path or DEFAULT_CONFIG_NAME)
    if target.exists():
        info(f"{target} exists; leaving it as it is.")
        if target.stat().st_mode & 0o077:
            info(f"{target} is readable by others, and it holds secrets: chmod 600 {target}")
    else:
        text = example_config_path().read_text(encoding="utf-8")
        text = text.replace('secret_key = ""', f'secret_key = "{secrets.token_urlsafe(32)}"', 1)
        # Created 0600 from the start: it holds the signing key and, often, the SMTP password.
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        info(
            f"Wrote {target} (readable by you only: it holds the signing key): "
            "set [email] from, [smtp] and [site] base_url, then `digest fetch`."
        )
    settings = load_settings(target)
    engine = store.open_engine(settings.database.url, create=True)
    store.migrate(engine)
    private = " (readable by you only)" if engine.dialect.name == "sqlite" else ""
    info(f"Database ready: {store.describe(engine)}{private}")


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply every pending migration (stop the schedulers and workers of the older version first)."""
    from digest import store

    engine = store.open_engine(state().settings.database.url, create=True)
    store.migrate(engine)
    info(f"Database is up to date: {store.describe(engine)}")


@db.command("copy")
@click.option(
    "--to",
    "target_url",
    required=True,
    help="The database to copy into, e.g. postgresql://digest@db.example/digest (created empty).",
)
@handle_errors
def db_copy(target_url: str) -> None:
    """Copy everything (papers, readers, deliveries, sources, the signing key) into another database.

    For moving from SQLite to PostgreSQL: stop `digest schedule`, `worker` and `serve` first,
    then point [database] url at the new database.
    """
    from digest import store

    ctx = state().context
    target = store.open_engine(target_url, create=True)
    store.migrate(target)
    copied = store.copy_database(ctx.engine, target)
    total = ", ".join(f"{count} {table}" for table, count in copied.items() if count)
    info(f"Copied {total or 'nothing (the database is empty)'} to {store.describe(target)}.")
    info("Now set [database] url (or DIGEST_DATABASE_URL) to it and start the services again.")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default: the port of [site] base_url, else 8000).",
)
@handle_errors
def serve(host: str, port: int | None) -> None:
    """Serve the subscribe, preferences and unsubscribe pages, the private feeds and /metrics."""
    from digest.web import serve as serve_web

    settings = state().settings
    base_url = settings.site.base_url
    expected = base_port(base_url)
    if port is None:
        port = expected or 8000
    elif expected and port != expected:
        warn(
            f"listening on port {port}, but [site] base_url ({base_url}) says {expected}: "
            "mailed links reach this server only through a proxy that forwards them"
        )
    ctx = state().context
    info(f"Serving on http://{host}:{port}/; mails link to {base_url}/")
    serve_web(settings, host=host, port=port, ctx=ctx)


def base_port(base_url: str) -> int | None:
    """The port a base URL names explicitly, or None (http and https defaults are a proxy's)."""
    try:
        return urlsplit(base_url).port
    except ValueError:
        return None
