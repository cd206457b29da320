"""Opening the database and bringing its schema up to date (Alembic)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from digest.config import resource_dir


class StoreError(Exception):
    """The database cannot be used as asked; the message says what to do."""


def describe(engine: Engine) -> str:
    """Where the data lives, for messages: the SQLite file, or the URL without its password."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return str(engine.url.database)
    return engine.url.render_as_string(hide_password=True)


def open_engine(url: str, *, create: bool = False) -> Engine:
    """An engine for the URL: SQLite gets WAL, foreign keys and a busy timeout; psycopg 3 for PostgreSQL.

    A SQLite file must exist unless `create` (only `digest init` and `digest db upgrade` create
    one): otherwise a typo or a cron job in another folder would quietly start an empty database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: a URL can carry a password.
        raise StoreError(
            "database.url is not a database URL (e.g. sqlite:///digest.sqlite3 or "
            "postgresql://user@host/db)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database).expanduser()
            if create:
                _create_private(path)
            elif not path.is_file():
                raise StoreError(f"no database at {path.resolve()}; run `digest init`")
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise StoreError(
            f"no driver for {parsed.drivername}: use sqlite:// or postgresql://"
        ) from None
    except ImportError as exc:
        raise StoreError(f"{exc}; for PostgreSQL install `paper-digest[postgres]`") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner only (it holds readers' addresses, and the
    signing key when the config sets none); SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Turn a database that cannot be opened into one StoreError line that says what to do."""
    try:
        yield
    except DBAPIError as exc:
        raise StoreError(_explain(engine, exc)) from None


def _explain(engine: Engine, exc: DBAPIError) -> str:
    reason = " ".join(str(exc.orig).split())
    where = describe(engine)
    if engine.dialect.name == "sqlite":
        if "not a database" in reason or "malformed" in reason:
            return (
                f"{where} is not a usable SQLite database ({reason}); restore it from a backup "
                "(see docs/operations.md) or point [database] url at the right file"
            )
        return f"cannot use the SQLite database {where}: {reason}; check the file and its folder"
    url = engine.url
    server = f"{url.host or 'localhost'}:{url.port or 5432}"
    if "does not exist" in reason and "database" in reason:
        return (
            f'PostgreSQL at {server} has no database "{url.database}": create it '
            f"(createdb {url.database}), then run `digest init`"
        )
    if "password authentication failed" in reason or "authentication" in reason:
        return f"PostgreSQL at {server} refused the login: {reason}; check [database] url"
    return f"cannot use the database {where}: {reason}; is the server running and reachable?"


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (`digest init`, `digest db upgrade`)."""
    with database_errors(engine):
        command.upgrade(_alembic_config(engine), "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration, the newest this code knows)."""
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with database_errors(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def schema_is_current(engine: Engine) -> bool:
    """True when the database has every migration applied."""
    current, head = schema_revisions(engine)
    return current == head


def check_schema(engine: Engine) -> None:
    """Refuse a database this version cannot use as it is; never migrates (only init/upgrade do).

    Migrating on start would let a new version, started anywhere, change the shared database
    under the older workers still running.
    """
    current, head = schema_revisions(engine)
    if current == head:
        return
    where = describe(engine)
    if current is None:
        raise StoreError(f"no paper-digest tables in {where}; run `digest init`")
    scripts = ScriptDirectory.from_config(_alembic_config(engine))
    try:
        known = scripts.get_revision(current) is not None
    except Exception:  # alembic raises several kinds for an unknown id
        known = False
    if known:
        raise StoreError(
            f"the database {where} is at schema {current}, this version needs {head}; "
            "run `digest db upgrade` (see docs/operations.md, Upgrades)"
        )
    raise StoreError(
        f"the database {where} has schema {current}, which this version of paper-digest does not "
        "know: a newer version migrated it; upgrade paper-digest here too"
    )


class Statistics:
    """Keeps PostgreSQL's planner statistics of tables this process fills in bulk up to date.

    Planning a million readers or composing their digests grows `deliveries` and `digests` from
    nothing within a minute: autovacuum (when it runs at all) analyzes them too late, and with
    statistics that say "empty" every per-batch lookup becomes a scan of the whole table (a
    million readers took 92 s to plan instead of 40). ANALYZE after 10,000 rows, then each time
    the count written doubles: a few sampled passes per run. SQLite plans these by its indexes.
    """

    FIRST = 10_000

    def __init__(self, engine: Engine, *tables: str) -> None:
        self.engine, self.tables = engine, tables
        self.written = 0
        self.next_at = self.FIRST

    def wrote(self, rows: int) -> None:
        """Count rows written; refresh the statistics when the count has doubled."""
        if self.engine.dialect.name != "postgresql" or rows <= 0:
            return
        self.written += rows
        if self.written < self.next_at:
            return
        self.next_at = self.written * 2
        with self.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE " + ", ".join(self.tables))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
