"""Secure headers, tokens kept out of access logs, and CSRF checks for the web app's forms."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
BASE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # No page ever needs to tell another site where the reader came from, and token pages must not.
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
TOKEN_PAGE_HEADERS = {"x-robots-tag": "noindex, nofollow, noarchive"}

# Paths that carry a secret; the access log sees them with the secret replaced.
_TOKEN_PATH = re.compile(r"^/(confirm|preferences|unsubscribe|digest|steer)/[^/]+(/.*)?$")
_FEED_PATH = re.compile(r"^/feeds/(?!search\.)[^/]+\.(atom|rss)$")

CSRF_FIELD = "csrf_token"
_CSRF_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


def redacted_path(path: str) -> str | None:
    """The path with its secret token replaced, or None when the path carries no secret."""
    match = _TOKEN_PATH.match(path)
    if match:
        return f"/{match.group(1)}/redacted"
    match = _FEED_PATH.match(path)
    if match:
        return f"/feeds/redacted.{match.group(1)}"
    return None


class SecurityMiddleware:
    """Adds secure headers to every response and hides URL tokens from the server's access log.

    The server logs the scope it handed to the app once the response starts, so the app is given a
    copy with the real path and the server's own scope gets the redacted one.
    """

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = dict(BASE_HEADERS)
        if https:
            self.headers["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        hidden = redacted_path(path)
        inner = scope
        if hidden is not None:
            inner = dict(scope)
            scope["path"] = hidden
            scope["raw_path"] = hidden.encode("ascii")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if hidden is not None:
                    for name, value in TOKEN_PAGE_HEADERS.items():
                        headers.setdefault(name, value)
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(inner, receive, send_with_headers)


class Csrf:
    """Double-submit CSRF protection: a random cookie, and a form field that is an HMAC of it.

    Only a page served by this site can know the field for the reader's cookie; the cookie is
    SameSite=Lax besides, and browsers that say a POST is cross-site are refused outright.
    """

    def __init__(self, secret: str, *, https: bool) -> None:
        self._key = hashlib.sha256(b"paper-digest.csrf|" + secret.encode()).digest()
        self.https = https
        self.cookie_name = "__Host-digest_csrf" if https else "digest_csrf"

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The reader's CSRF cookie, and whether it is new (then `set_cookie` must be called)."""
        current = request.cookies.get(self.cookie_name, "")
        if _CSRF_TOKEN.match(current):
            return current, False
        return secrets.token_urlsafe(24), True

    def field_for(self, cookie: str) -> str:
        """The hidden form value that goes with a cookie."""
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def set_cookie(self, response: Response, cookie: str) -> None:
        """Give the reader their CSRF cookie (session cookie, never readable by scripts)."""
        response.set_cookie(
            self.cookie_name,
            cookie,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.https,
        )

    def check(self, request: Request, form: Mapping[str, object]) -> str | None:
        """None when the POST is genuine, else a reason to show the reader."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "This form was sent from another site, so it was ignored."
        cookie = request.cookies.get(self.cookie_name, "")
        sent = form.get(CSRF_FIELD)
        if not cookie or not isinstance(sent, str) or not sent:
            return (
                "This form has expired or your browser did not keep its cookie. "
                "Reload the page and try again."
            )
        # bytes: compare_digest refuses str with non-ASCII characters (a forged field can have them)
        if not hmac.compare_digest(sent.encode(), self.field_for(cookie).encode()):
            return "This form has expired. Reload the page and try again."
        return None
