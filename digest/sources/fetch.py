"""Fetching a source's bytes: HTTP(S) with httpx (conditional GET, retries, caps) or a file."""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from digest import __version__
from digest.config import FetchSettings, SourceSettings

from .parse import parse_feed
from .records import FetchResult, FetchState, SourceError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, application/json;q=0.7, */*;q=0.1"
)


@dataclass(frozen=True, slots=True)
class _Body:
    status: int
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""
    etag: str | None = None
    last_modified: str | None = None


def user_agent(settings: FetchSettings) -> str:
    """The User-Agent we send: product, version and the operator's contact, as feed owners ask."""
    contact = settings.contact.strip()
    if contact and "@" in contact and ":" not in contact:
        contact = f"mailto:{contact}"
    return f"paper-digest/{__version__}" + (f" (+{contact})" if contact else "")


def make_client(settings: FetchSettings) -> httpx.Client:
    """An httpx client with our timeouts, redirect limit and headers; the caller closes it."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": user_agent(settings), "Accept": ACCEPT},
    )


def fetch_source(
    source: SourceSettings,
    state: FetchState,
    settings: FetchSettings,
    *,
    client: httpx.Client | None = None,
    backoff: float = 1.0,
    max_retry_wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch and parse one source; never raises for a bad feed (status "failed", one-line error).

    backoff is the first pause before a retry (doubling each time); a Retry-After longer than
    max_retry_wait seconds is not waited for: the source fails and names the delay.
    """
    try:
        fetched = _fetch_bytes(source.url, state, settings, client, backoff, max_retry_wait, sleep)
    except SourceError as exc:
        return _failed(source, state, str(exc))
    fingerprint = (
        None if fetched.status == 304 else body_fingerprint(fetched.content, source, settings)
    )
    # A 304, or the same body again from a server without ETag / Last-Modified: nothing to parse.
    if fetched.status == 304 or (state.content_hash and fingerprint == state.content_hash):
        return FetchResult(
            source=source.name,
            status="not_modified",
            papers=[],
            kind=source.kind,
            etag=fetched.etag or state.etag,
            last_modified=fetched.last_modified or state.last_modified,
            error=None,
            url=fetched.url,
            bytes_read=len(fetched.content),
            content_hash=fingerprint or state.content_hash,
        )
    try:
        parsed = parse_feed(
            fetched.content,
            source_name=source.name,
            kind=source.kind,
            headers=fetched.headers,
            settings=settings,
        )
    except SourceError as exc:
        return _failed(source, state, str(exc), url=fetched.url, size=len(fetched.content))
    except Exception as exc:  # a parser bug on wild input must not stop the other sources
        log.exception("unexpected error parsing source %s", source.name)
        reason = f"could not read the feed ({type(exc).__name__}: {exc})"
        return _failed(source, state, " ".join(reason.split()), url=fetched.url)
    return FetchResult(
        source=source.name,
        status="ok",
        papers=parsed.papers,
        kind=parsed.kind,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        error=None,
        warnings=parsed.warnings,
        skipped=parsed.skipped,
        url=fetched.url,
        bytes_read=len(fetched.content),
        content_hash=fingerprint,
    )


def body_fingerprint(body: bytes, source: SourceSettings, settings: FetchSettings) -> str:
    """A hash of the body and of the settings that change what it parses into."""
    shape = f"{source.kind}|{settings.include_cross_lists}|{settings.include_replacements}|"
    return hashlib.sha256(shape.encode() + body).hexdigest()


def _failed(
    source: SourceSettings, state: FetchState, error: str, *, url: str = "", size: int = 0
) -> FetchResult:
    # The old validators stay, and no fingerprint: the next fetch must read the feed in full.
    return FetchResult(
        source=source.name,
        status="failed",
        papers=[],
        kind=source.kind,
        etag=state.etag,
        last_modified=state.last_modified,
        error=error,
        url=url or source.url,
        bytes_read=size,
    )


def _fetch_bytes(
    url: str,
    state: FetchState,
    settings: FetchSettings,
    client: httpx.Client | None,
    backoff: float,
    max_retry_wait: float,
    sleep: Callable[[float], None],
) -> _Body:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        if client is not None:
            return _get(client, url, state, settings, backoff, max_retry_wait, sleep)
        with make_client(settings) as own:
            return _get(own, url, state, settings, backoff, max_retry_wait, sleep)
    if scheme == "file":
        return _read_file(Path(unquote(urlsplit(url).path)), state, settings)
    if scheme and len(scheme) > 1:  # "C:\feeds\x.xml" has a one-letter scheme, and is a path
        raise SourceError(
            f"unsupported address {url!r}: use http://, https:// or a local file path"
        )
    return _read_file(Path(url).expanduser(), state, settings)


def _read_file(path: Path, state: FetchState, settings: FetchSettings) -> _Body:
    """A local feed named in the operator's config; its size and mtime act as validators."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SourceError(f"the file {path} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise SourceError(f"{path} is not a file")
    if stat.st_size > settings.max_bytes:
        raise SourceError(_too_big(settings))
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    url = path.as_uri() if path.is_absolute() else str(path)
    if state.etag == etag:
        return _Body(status=304, url=url, etag=etag, last_modified=last_modified)
    try:
        with path.open("rb") as handle:
            content = handle.read(settings.max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(content) > settings.max_bytes:
        raise SourceError(_too_big(settings))
    return _Body(status=200, content=content, url=url, etag=etag, last_modified=last_modified)


def _get(
    client: httpx.Client,
    url: str,
    state: FetchState,
    settings: FetchSettings,
    backoff: float,
    max_retry_wait: float,
    sleep: Callable[[float], None],
) -> _Body:
    """Conditional GET; retry timeouts, connection errors and 5xx; honour Retry-After."""
    headers = {"User-Agent": user_agent(settings), "Accept": ACCEPT}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        pause = backoff * 2 ** (attempt - 1)
        try:
            with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
                code = response.status_code
                if code == 304:
                    return _Body(
                        status=304,
                        url=str(response.url),
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                    )
                if code == 429 or code >= 500:
                    reason = (
                        f"HTTP {code} {response.reason_phrase} from {_host(response.url)}".strip()
                    )
                    wait = _retry_after(response.headers.get("retry-after"))
                    if wait is not None and code in (429, 503):
                        if wait > max_retry_wait:
                            raise SourceError(
                                f"{reason}; the server asks to retry after {wait:.0f} s"
                            )
                        pause = max(pause, wait)
                    if last:
                        raise SourceError(f"{reason} (tried {attempts} times)")
                    log.info("%s; retrying in %.1f s", reason, pause)
                    sleep(pause)
                    continue
                if code >= 400:
                    raise SourceError(
                        f"HTTP {code} {response.reason_phrase} from {response.url}".strip()
                    )
                if code >= 300:
                    raise SourceError(
                        f"HTTP {code} redirect without a usable Location from {response.url}"
                    )
                content = _read_capped(response, settings)
                return _Body(
                    status=200,
                    content=content,
                    headers=dict(response.headers),
                    url=str(response.url),
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )
        except httpx.TooManyRedirects:
            raise SourceError(
                f"more than {MAX_REDIRECTS} redirects from {url} (a redirect loop?)"
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise SourceError(f"redirected to an address that is not http(s): {exc}") from None
        except httpx.InvalidURL as exc:
            raise SourceError(f"invalid address {url!r}: {exc}") from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            reason = _transport_reason(exc, url, settings)
            if last:
                raise SourceError(f"{reason} (tried {attempts} times)") from None
            log.info("%s; retrying in %.1f s", reason, pause)
            sleep(pause)
    raise AssertionError("unreachable: the loop returns or raises")


def _read_capped(response: httpx.Response, settings: FetchSettings) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_bytes:
        raise SourceError(_too_big(settings))
    # The read timeout bounds each wait; this bounds a server that trickles bytes forever.
    deadline = time.monotonic() + settings.timeout * 3
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():  # decoded bytes: a gzip bomb hits the cap too
        total += len(chunk)
        if total > settings.max_bytes:
            raise SourceError(_too_big(settings))
        if time.monotonic() > deadline:
            raise SourceError(
                f"the server sent the feed too slowly (over {settings.timeout * 3:g} s)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(settings: FetchSettings) -> str:
    return f"the feed is larger than {settings.max_bytes:,} bytes (fetch.max_bytes); not read"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _transport_reason(exc: Exception, url: str, settings: FetchSettings) -> str:
    host = _host(url)
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} did not answer within {settings.timeout:g} s (fetch.timeout)"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to {host} ({_short(exc)})"
    return f"the connection to {host} failed ({_short(exc)})"


def _host(url: httpx.URL | str) -> str:
    parts = urlsplit(str(url))
    return parts.netloc or str(url)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__
