"""Small values the program keeps for itself, such as the generated signing key."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from digest.store.engine import transaction
from digest.store.schema import MetaRow

SECRET_KEY = "secret_key"


class Meta:
    """Small named values the program keeps for itself (the meta table)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def secret(self) -> str:
        """A random signing key kept in the database, for setups that configure none."""
        with transaction(self.engine) as session:
            value = session.scalar(select(MetaRow.value).where(MetaRow.key == SECRET_KEY))
            if value:
                return value
        try:
            with transaction(self.engine) as session:
                value = secrets.token_urlsafe(32)
                session.add(MetaRow(key=SECRET_KEY, value=value))
                return value
        except IntegrityError:
            # Another process created it first; use theirs.
            return self.secret()

    def read(self, key: str) -> str | None:
        """A named value, or None when it was never written."""
        with transaction(self.engine) as session:
            return session.scalar(select(MetaRow.value).where(MetaRow.key == key))

    def write(self, values: dict[str, str]) -> None:
        """Write (insert or replace) named values in one transaction."""
        with transaction(self.engine) as session:
            for key, value in values.items():
                row = session.get(MetaRow, key)
                if row is None:
                    session.add(MetaRow(key=key, value=value))
                else:
                    row.value = value
