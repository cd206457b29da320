"""Shared CLI plumbing: the root group, loading settings, output helpers and error mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest import __version__

# Only click is imported up front: cron starts `digest` often, and `digest --help` should not
# wait for numpy, SQLAlchemy or rich. Each command imports what it uses when it runs.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from digest.config import Settings
    from digest.pipeline import Context

F = TypeVar("F", bound=Callable[..., Any])


def user_errors() -> tuple[tuple[type[BaseException], int], ...]:
    """Errors a user can act on: message and exit code, never a traceback."""
    from digest.config import ConfigError
    from digest.deliver.message import DkimError, MessageError
    from digest.deliver.transport import RelayError
    from digest.pipeline import MailError
    from digest.ranking import ProfileError
    from digest.render import TemplateError
    from digest.sources import SourceError
    from digest.store import InvalidSubscriber, StoreError, UnknownSource, UnknownSubscriber

    return (
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


def hints() -> tuple[tuple[type[BaseException], str], ...]:
    """What happens next, for the errors where that is not obvious from the message."""
    from digest.deliver.transport import RelayError
    from digest.pipeline import MailError

    return (
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
            from digest import logs
            from digest.config import load_settings

            self._settings = load_settings(self.config_path)
            logs.configure(self._settings.logging, quiet=self.quiet)
        return self._settings

    @property
    def context(self) -> Context:
        if self._context is None:
            from digest.pipeline import build_context

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
    from digest import logs
    from digest.config import LoggingSettings

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
        except Exception as exc:
            code = next((code for kind, code in user_errors() if isinstance(exc, kind)), None)
            if code is None:
                raise
            error(str(exc))
            hint = next((text for kind, text in hints() if isinstance(exc, kind)), None)
            if hint:
                errors.print(hint, markup=False, highlight=False)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def state() -> State:
    """The State of the running command."""
    return click.get_current_context().find_object(State)  # type: ignore[return-value]


class LazyConsole:
    """A rich Console made on first use, so that importing the CLI does not import rich."""

    def __init__(self, make: Callable[[], Console]) -> None:
        self._make = make
        self._console: Console | None = None
        self.quiet = False

    def get(self) -> Console:
        """The console itself, made now if it was not yet, quiet when --quiet was given."""
        if self._console is None:
            self._console = self._make()
        self._console.quiet = self.quiet
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def _stdout() -> Console:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        # Under cron or in a pipe there is no terminal width; keep tables readable in the log.
        console = Console(highlight=False, width=140)
    return console


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


stdout = LazyConsole(_stdout)
stderr = LazyConsole(_stderr)
errors = LazyConsole(_stderr)


def plain(*values: object) -> list[Text]:
    """Table cells shown as written: a paper title with [brackets] is not rich markup."""
    from rich.text import Text

    return [Text(str(value)) for value in values]


def error(message: str) -> None:
    """Print an error on stderr, even with --quiet (messages name keys like [smtp]: no markup)."""
    from rich.text import Text

    errors.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)


def warn(message: str) -> None:
    """Print a warning on stderr, even with --quiet."""
    from rich.text import Text

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
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=stderr.get(),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=max(total, done) or None)

        yield update
