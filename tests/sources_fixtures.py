"""A real HTTP server on 127.0.0.1 that serves the fixture feeds, and misbehaves on request.

Loaded with `pytest_plugins = ["tests.sources_fixtures"]`; gives the `feed_server` fixture.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FEEDS = Path(__file__).parent / "data" / "feeds"


@dataclass
class Reply:
    """What the server answers: a status, headers and a body, or a hang (never answers)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    gzip: bool = False


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]


Handler = Callable[[Seen], Reply]


class FeedServer:
    """Routes paths to replies; records every request it receives."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """The absolute URL of a path on this server."""
        return self.base + path

    def route(self, path: str, handler: Handler | Reply) -> str:
        """Answer `path` with a fixed reply or a function of the request; returns its URL."""
        self.routes[path] = handler if callable(handler) else (lambda _seen, r=handler: r)
        return self.url(path)

    def sequence(self, path: str, *replies: Reply) -> str:
        """Answer successive requests with successive replies; the last one repeats."""
        queue = list(replies)

        def next_reply(_seen: Seen) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        return self.route(path, next_reply)

    def feed(
        self,
        path: str,
        filename: str,
        *,
        content_type: str = "application/xml",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> str:
        """Serve a fixture file, answering 304 when the client's validators still match."""
        body = (FEEDS / filename).read_bytes()

        def serve(seen: Seen) -> Reply:
            if etag and seen.headers.get("if-none-match") == etag:
                return Reply(304, headers={"ETag": etag})
            if last_modified and seen.headers.get("if-modified-since") == last_modified:
                return Reply(304)
            headers = {"Content-Type": content_type}
            if etag:
                headers["ETag"] = etag
            if last_modified:
                headers["Last-Modified"] = last_modified
            return Reply(200, body, headers)

        return self.route(path, serve)

    def hits(self, path: str) -> list[Seen]:
        """The requests made for one path."""
        return [seen for seen in self.requests if seen.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class FeedHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
            server.requests.append(seen)
            # a route without a query string answers every query on its path
            handler = server.routes.get(self.path) or server.routes.get(self.path.split("?")[0])
            reply = handler(seen) if handler else Reply(404, b"no such feed")
            if reply.hang:
                server.stopping.wait(30)
                return
            body = gzip.compress(reply.body) if reply.gzip else reply.body
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.gzip:
                self.send_header("Content-Encoding", "gzip")
            if "Content-Length" not in reply.headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The client may give up on purpose (size cap): that is not a server error.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    return FeedHandler


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running FeedServer on 127.0.0.1 (a free port), stopped after the test."""
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
