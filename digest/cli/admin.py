"""Setting up and serving: `digest init`, `digest db upgrade` and `digest serve`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from digest import store
from digest.cli.base import handle_errors, info, state
from digest.config import DEFAULT_CONFIG_NAME, example_config_path, load_settings


@click.command()
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write the starter config (default: ./{DEFAULT_CONFIG_NAME}).",
)
@handle_errors
def init(path: Path | None) -> None:
    """Write a starter digest.toml (when there is none) and create or upgrade the database."""
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
    engine = store.open_engine(settings.database.url)
    store.migrate(engine)
    database = engine.url.render_as_string(hide_password=True)
    if engine.dialect.name == "sqlite" and engine.url.database:
        info(f"Database ready: {database} (readable by you only)")
    else:
        info(f"Database ready: {database}")


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = state().settings
    store.migrate(store.open_engine(settings.database.url))
    info(f"Database is up to date: {settings.database.url}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@handle_errors
def serve(host: str, port: int) -> None:
    """Serve the subscribe, preferences and unsubscribe pages and the private feeds."""
    from digest.web import serve as serve_web

    serve_web(state().settings, host=host, port=port)
