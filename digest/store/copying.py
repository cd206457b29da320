"""Copying a whole database to another one (SQLite to PostgreSQL, or a move between servers)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, insert, select, text

from digest.store.engine import StoreError, database_errors, describe
from digest.store.schema import Base

CHUNK = 2000


def copy_database(
    source: Engine, target: Engine, *, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every row of every table, ids included, into an empty database at the same schema.

    Returns the rows copied per table. The target's id sequences are moved past the copied ids
    (PostgreSQL), so new rows there never collide with copied ones.
    """
    tables = Base.metadata.sorted_tables  # parents before children: foreign keys hold throughout
    with database_errors(target), target.connect() as connection:
        filled = {
            t.name: n
            for t in tables
            if (n := connection.scalar(select(func.count()).select_from(t)) or 0)
        }
    if filled:
        held = ", ".join(f"{n} in {name}" for name, n in filled.items())
        raise StoreError(
            f"{describe(target)} already holds rows ({held}); copy into a new, empty database"
        )
    copied: dict[str, int] = {}
    with database_errors(source), source.connect() as reading, target.begin() as writing:
        for table in tables:
            count = 0
            result = reading.execution_options(stream_results=True).execute(
                select(table).order_by(*table.primary_key.columns)
            )
            while rows := result.fetchmany(CHUNK):
                writing.execute(insert(table), [row._asdict() for row in rows])
                count += len(rows)
                if progress:
                    progress(table.name, count)
            copied[table.name] = count
        if target.dialect.name == "postgresql":
            for table in tables:
                if "id" in table.columns and table.columns["id"].primary_key:
                    writing.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table.name}"
                        )
                    )
    return copied
