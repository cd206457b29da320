"""Signed, scoped tokens for the links in every mail: confirm, unsubscribe, preferences.

Each scope has its own salt, so a token for one purpose never opens another. Confirmation links
expire and are single-use (they carry the subscriber's token version, which confirming bumps).
Every token also carries the reader's link secret: a random value the store replaces on
unsubscribe, re-subscribe and "sign out every link", which makes every older link stop working
(and a reused id never opens a newcomer's pages). Feed URLs use a random per-subscriber token
kept in the database instead (rotatable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import itsdangerous


class Scope(StrEnum):
    """What a token lets its bearer do."""

    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    DIGEST = "digest"
    """Read the reader's digests on the web ("View in browser"); changes nothing."""


class TokenError(Exception):
    """A token is forged, for another purpose, or expired; the message can be shown to the reader."""


class TokenExpired(TokenError):
    """A token was genuine but is too old."""


@dataclass(frozen=True, slots=True)
class TokenData:
    """What a verified token says: whose it is, and (confirm only) which version it was made for."""

    subscriber_id: int
    version: int = 0
    link: str = ""
    """The link secret the token was made with (the caller compares it with the reader's)."""


class Signer:
    """Makes and checks tokens with the site's secret key.

    A token is the subscriber id (and, for confirmation, the token version) followed by an
    HMAC-SHA256 signature, plus a timestamp where the token expires: short enough to keep a
    List-Unsubscribe header on one line, cheap enough to make a million a run.
    """

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("the secret key must be at least 16 characters long")
        self._signers: dict[Scope, itsdangerous.Signer] = {
            scope: (
                itsdangerous.TimestampSigner if scope is Scope.CONFIRM else itsdangerous.Signer
            )(
                secret_key,
                salt=f"paper-digest.{scope.value}",
                key_derivation="hmac",
                digest_method="sha256",  # hmac.new takes the name as well as the constructor
            )
            for scope in Scope
        }

    def make(self, scope: Scope, subscriber_id: int, version: int = 0, *, link: str = "") -> str:
        """A URL-safe token for one subscriber and purpose, bound to their link secret."""
        if not _LINK.fullmatch(link):
            raise ValueError("a link secret is lowercase hex")
        parts = [str(subscriber_id)]
        if scope is Scope.CONFIRM:
            parts.append(str(version))
        if link:
            parts.append(link)
        return self._signers[scope].sign("-".join(parts)).decode("ascii")

    def read(self, scope: Scope, token: str, *, max_age: int | None = None) -> TokenData:
        """Verify a token for a scope (constant-time signature check) or raise TokenError."""
        signer = self._signers[scope]
        try:
            if isinstance(signer, itsdangerous.TimestampSigner):
                payload = signer.unsign(token, max_age=max_age).decode("ascii")
            else:
                payload = signer.unsign(token).decode("ascii")
        except itsdangerous.SignatureExpired:
            raise TokenExpired("this link has expired") from None
        except (itsdangerous.BadData, UnicodeDecodeError):
            raise TokenError("this link is not valid") from None
        parts = payload.split("-")
        fixed = 2 if scope is Scope.CONFIRM else 1
        try:
            if len(parts) not in (fixed, fixed + 1):
                raise ValueError(payload)
            version = int(parts[1]) if scope is Scope.CONFIRM else 0
            link = parts[fixed] if len(parts) > fixed else ""
            return TokenData(int(parts[0]), version, link)
        except ValueError:
            raise TokenError("this link is not valid") from None


_LINK = re.compile(r"[0-9a-f]{0,32}")
