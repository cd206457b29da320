"""Shared CLI plumbing: the root group, loading settings, output helpers and error mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from digest import __version__, logs
from digest.config import ConfigError, LoggingSettings, Settings, load_settings
from digest.deliver.message import DkimError, MessageError
from digest.deliver.transport import RelayError
from digest.pipeline import Context, MailError, build_context
from digest.ranking import ProfileError
from digest.render import TemplateError
from digest.sources import SourceError
from digest.store import InvalidSubscriber, StoreError, UnknownSource, UnknownSubscriber

F = TypeVar("F", bound=Callable[..., Any])

# Errors a user can act on: message and exit code, never a traceback.
USER_ERRORS: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, 2),
    (ProfileError, 2),
    (InvalidSubscriber, 2),
    (UnknownSubscriber, 1),
    (UnknownSource, 1),
    (SourceError, 1),
    (StoreError, 1),
    (TemplateError, 1),
    (MessageError, 1),
    (MailError, 1),
    (RelayError, 1),
    (DkimError, 2),
)

# What happens next, for the errors where that is not obvious from the message.
HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        RelayError,
        "Nothing was lost: the digests stay queued as composed, no reader was blamed, and the "
        "next run sends them once the relay takes mail.",
    ),
    (
        MailError,
        "Nothing was lost: the mail stays queued and the next `digest run` (or scheduler pass) "
        "sends it once mail works (or add --confirmed if the reader already agreed).",
    ),
)

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output as a table for people or JSON for programs.",
)


class State:
    """Per-invocation state: the config path, and the settings and context built from it on demand."""

    def __init__(self, config_path: str | None, quiet: bool = False) -> None:
        self.config_path = config_path
        self.quiet = quiet
        self._settings: Settings | None = None
        self._context: Context | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            logs.configure(self._settings.logging, quiet=self.quiet)
        return self._settings

    @property
    def context(self) -> Context:
        if self._context is None:
            self._context = build_context(self.settings)
        return self._context


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Config file (default: $DIGEST_CONFIG, else ./digest.toml if present, else built-in defaults).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing but errors (and JSON when asked for): for cron.",
)
@click.version_option(__version__, prog_name="paper-digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, quiet: bool) -> None:
    """paper-digest: the day's new papers that match your readers' interests, by email and RSS."""
    ctx.obj = State(config_path, quiet)
    # Defaults until the config is read (it may name another format): from the first line on,
    # -q means nothing but warnings and errors.
    logs.configure(LoggingSettings(), quiet=quiet)
    stdout.quiet = stderr.quiet = quiet


def handle_errors(func: F) -> F:
    """Turn the errors a user can fix into a one-line message and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except tuple(kind for kind, _ in USER_ERRORS) as exc:
            code = next(code for kind, code in USER_ERRORS if isinstance(exc, kind))
            error(str(exc))
            hint = next((text for kind, text in HINTS if isinstance(exc, kind)), None)
            if hint:
                errors.print(Text(hint), highlight=False)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def state() -> State:
    """The State of the running command."""
    return click.get_current_context().find_object(State)  # type: ignore[return-value]


stdout = Console(highlight=False)
if not stdout.is_terminal:
    # Under cron or in a pipe there is no terminal width; keep tables readable in the log.
    stdout = Console(highlight=False, width=140)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(*values: object) -> list[Text]:
    """Table cells shown as written: a paper title with [brackets] is not rich markup."""
    return [Text(str(value)) for value in values]


def error(message: str) -> None:
    """Print an error on stderr, even with --quiet (messages name keys like [smtp]: no markup)."""
    errors.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)


def warn(message: str) -> None:
    """Print a warning on stderr, even with --quiet."""
    errors.print(Text.assemble(("warning:", "bold yellow"), " ", message), highlight=False)


def info(message: str) -> None:
    """Print a note on stderr (kept out of stdout so JSON output stays clean)."""
    stderr.print(message, markup=False, highlight=False)


def print_json(data: Any) -> None:
    """Write JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback that draws a bar on an interactive terminal and says nothing under cron."""
    if not enabled or not stderr.is_terminal:
        yield lambda _stage, _done, _total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=max(total, done) or None)

        yield update
