"""Small values the program keeps for itself, such as the generated signing key."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from digest.store.engine import transaction
from digest.store.schema import MetaRow

SECRET_KEY = "secret_key"


def get_or_create_secret(engine: Engine) -> str:
    """A random signing key kept in the database, for setups that configure none."""
    with transaction(engine) as session:
        value = session.scalar(select(MetaRow.value).where(MetaRow.key == SECRET_KEY))
        if value:
            return value
    try:
        with transaction(engine) as session:
            value = secrets.token_urlsafe(32)
            session.add(MetaRow(key=SECRET_KEY, value=value))
            return value
    except IntegrityError:
        # Another process created it first; use theirs.
        return get_or_create_secret(engine)


def read_meta(engine: Engine, key: str) -> str | None:
    """A named value, or None when it was never written."""
    with transaction(engine) as session:
        return session.scalar(select(MetaRow.value).where(MetaRow.key == key))


def write_meta(engine: Engine, values: dict[str, str]) -> None:
    """Write (insert or replace) named values in one transaction."""
    with transaction(engine) as session:
        for key, value in values.items():
            row = session.get(MetaRow, key)
            if row is None:
                session.add(MetaRow(key=key, value=value))
            else:
                row.value = value
