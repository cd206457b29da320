"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from digest import store
from digest.store.schema import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = store.open_engine(database_url)
    store.migrate(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert store.schema_is_current(engine)


def test_upgrading_twice_is_harmless(database_url: str) -> None:
    engine = store.open_engine(database_url)
    store.migrate(engine)
    store.migrate(engine)
    assert store.schema_is_current(engine)
