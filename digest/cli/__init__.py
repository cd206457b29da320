"""The `digest` command: builds the objects, makes one call, maps errors to exit codes.

Each command group lives in its own module; this one holds the root group and the shared plumbing.
"""

from __future__ import annotations

import sys

import click

from digest.cli.admin import db, init, serve
from digest.cli.base import cli
from digest.cli.content import fetch, papers, sources
from digest.cli.daily import run, schedule, worker
from digest.cli.ops import send_test, status
from digest.cli.people import subscribe, subscribers, unsubscribe

for command in (init, db, serve, fetch, sources, papers, run, schedule, worker):
    cli.add_command(command)
for command in (subscribe, unsubscribe, subscribers, status, send_test):
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(prog_name="digest", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        click.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["cli", "main"]
