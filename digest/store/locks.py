"""The schedule lock: one `digest schedule` plans and sends per database, whatever runs by mistake.

PostgreSQL: a session-level advisory lock on a connection kept open while the lock is held (it
goes with the connection, so a killed process never leaves it behind). SQLite: an exclusive
`flock` on a file beside the database file (released by the kernel when the process dies).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from digest.store.engine import StoreError

SCHEDULE_LOCK_KEY = 0x6469_6765_7374  # "digest": the advisory lock key this program owns
SCHEDULE_LOCK_SUFFIX = ".schedule.lock"


class ScheduleLock:
    """Try to take the lock (non-blocking) with `acquire`; `release` or leave the `with` to free it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._connection is not None or self._file is not None

    @property
    def where(self) -> str:
        """What is locked, for messages: the lock file, or the advisory lock's key."""
        path = lock_path(self.engine)
        return str(path) if path else f"PostgreSQL advisory lock {SCHEDULE_LOCK_KEY}"

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this process holds it afterwards.

        A held advisory lock is checked first: it went with its connection if the server
        restarted, and must then be taken again (or left to whoever took it meanwhile).
        """
        if self._connection is not None and not self._alive(self._connection):
            self._connection = None
        if self.held:
            return True
        path = lock_path(self.engine)
        if path is None:
            try:
                connection = self.engine.connect()
                taken = connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULE_LOCK_KEY}
                ).scalar()
                connection.commit()
            except DBAPIError as exc:
                raise StoreError(f"cannot take the schedule lock: {exc.orig}") from None
            if taken:
                self._connection = connection
            else:
                connection.close()
            return bool(taken)
        try:
            handle = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(
                f"cannot open the schedule lock file {path} ({exc.strerror}): "
                "the folder of the SQLite file must be writable"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    @staticmethod
    def _alive(connection: Connection) -> bool:
        try:
            connection.execute(text("SELECT 1"))
            connection.commit()
        except DBAPIError:
            connection.invalidate()
            connection.close()
            return False
        return True

    def release(self) -> None:
        """Give the lock up (nothing when not held)."""
        if self._connection is not None:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEDULE_LOCK_KEY}
                )
                self._connection.commit()
            except DBAPIError:
                pass  # the connection is gone, and the lock with it
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> ScheduleLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_path(engine: Engine) -> Path | None:
    """The lock file for a SQLite database (beside it), or None for a server database."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        # nobody else can open this database: a lock private to the process will do
        return Path(tempfile.gettempdir()) / f"digest-memory-{os.getpid()}{SCHEDULE_LOCK_SUFFIX}"
    return (
        Path(database).expanduser().resolve().with_name(Path(database).name + SCHEDULE_LOCK_SUFFIX)
    )
