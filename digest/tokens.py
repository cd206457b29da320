"""Signed, scoped tokens for the links in every mail: confirm, unsubscribe, preferences.

Each scope has its own salt, so a token for one purpose never opens another. Confirmation links
expire and are single-use (they carry the subscriber's token version, which confirming bumps).
Feed URLs use a random per-subscriber token kept in the database instead (rotatable).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer


class Scope(StrEnum):
    """What a token lets its bearer do."""

    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


class TokenError(Exception):
    """A token is forged, for another purpose, or expired; the message can be shown to the reader."""


class TokenExpired(TokenError):
    """A token was genuine but is too old."""


@dataclass(frozen=True, slots=True)
class TokenData:
    """What a verified token says: whose it is, and (confirm only) which version it was made for."""

    subscriber_id: int
    version: int = 0


class Signer:
    """Makes and checks tokens with the site's secret key."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("the secret key must be at least 16 characters long")
        self._serializers = {
            scope: URLSafeTimedSerializer(secret_key, salt=f"paper-digest.{scope.value}")
            for scope in Scope
        }

    def make(self, scope: Scope, subscriber_id: int, version: int = 0) -> str:
        """A URL-safe token (short enough for a List-Unsubscribe header on one line)."""
        payload = [subscriber_id, version] if scope is Scope.CONFIRM else subscriber_id
        return str(self._serializers[scope].dumps(payload))

    def read(self, scope: Scope, token: str, *, max_age: int | None = None) -> TokenData:
        """Verify a token for a scope (constant-time signature check) or raise TokenError."""
        try:
            payload = self._serializers[scope].loads(token, max_age=max_age)
        except SignatureExpired:
            raise TokenExpired("this link has expired") from None
        except BadData:
            raise TokenError("this link is not valid") from None
        if scope is Scope.CONFIRM:
            if not (isinstance(payload, list) and len(payload) == 2):
                raise TokenError("this link is not valid")
            return TokenData(int(payload[0]), int(payload[1]))
        if not isinstance(payload, int):
            raise TokenError("this link is not valid")
        return TokenData(payload)
