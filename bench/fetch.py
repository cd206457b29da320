"""Benchmark: fetch, parse and upsert a 5,000-entry arXiv-style RSS feed, then do it again.

Run: python bench/fetch.py [--entries 5000]
Serves the generated feed from 127.0.0.1 (with an ETag) and stores into a temporary SQLite file.
Run 1 stores everything; run 2 gets the same body again from a server without validators and
skips it by its stored fingerprint; run 2b forces the same body through parse and upsert (the
merge of 5,000 known papers); run 3 sends the stored ETag and gets a 304.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from digest import store
from digest.config import FetchSettings, SourceSettings
from digest.sources import FetchState, fetch_source
from digest.store import migrate, open_engine

WORDS = [
    "federated",
    "learning",
    "diffusion",
    "model",
    "transformer",
    "attention",
    "graph",
    "neural",
    "network",
    "reinforcement",
    "agent",
    "language",
    "retrieval",
    "distillation",
    "sparse",
    "mixture",
    "experts",
    "robust",
    "calibration",
    "kernel",
]


def arxiv_feed(entries: int) -> bytes:
    """An arXiv-style RSS listing (new, cross and replace entries, as rss.arxiv.org sends)."""
    day = format_datetime(datetime(2024, 11, 5, 5, tzinfo=UTC))
    items = []
    for n in range(entries):
        key = f"2411.{n + 10000:05d}"
        kind = ("new", "new", "new", "cross", "replace")[n % 5]
        words = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(12))
        abstract = (
            f"We study {words} with $\\mathcal{{O}}(n^{n % 4})$ cost &amp; report results. " * 4
        )
        items.append(
            f"""<item><title>{escape(words.title())} {n}</title>
<link>https://arxiv.org/abs/{key}</link>
<description>arXiv:{key}v1 Announce Type: {kind}{" "}
Abstract: {abstract}</description>
<guid isPermaLink="false">oai:arXiv.org:{key}v1</guid>
<category>cs.LG</category><category>stat.ML</category>
<pubDate>{day}</pubDate>
<arxiv:announce_type>{kind}</arxiv:announce_type>
<dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
<dc:creator>Author {n}, Second Author, Third Author</dc:creator></item>"""
        )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>'
        "<title>cs.LG updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs.LG</link>"
        "<description>cs.LG updates on the arXiv.org e-print archive.</description>"
        + "\n".join(items)
        + "</channel></rss>"
    ).encode()


def serve(body: bytes) -> ThreadingHTTPServer:
    """Serve the feed at / with an ETag, answering 304 to a matching If-None-Match."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("If-None-Match") == '"bench"':
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", '"bench"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    """Run the three fetches and print their times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    args = parser.parse_args()
    body = arxiv_feed(args.entries)
    server = serve(body)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    source = SourceSettings(name="arxiv-bench", url=url, kind="auto")
    settings = FetchSettings()
    print(f"feed: {args.entries} entries, {len(body) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", create=True)
        migrate(engine)
        first = FetchState()
        runs = [
            ("run 1 (empty store)", lambda: first),
            # What the product stores after run 1: the body's fingerprint (no ETag from this server).
            ("run 2 (same body, stored)", lambda: FetchState(content_hash=last.content_hash)),
            ("run 2b (same body, reparsed)", lambda: FetchState()),
            ("run 3 (conditional GET)", lambda: FetchState(etag='"bench"')),
        ]
        last = None
        for label, state_for in runs:
            state = state_for()
            started = time.perf_counter()
            result = fetch_source(source, state, settings)
            fetched = time.perf_counter()
            counts = store.Store(engine).papers.upsert(result.papers, now=datetime.now(UTC))
            stored = time.perf_counter()
            last = last or result
            print(
                f"{label:29} {result.status:13} papers={len(result.papers):5} "
                f"skipped={result.skipped:4} fetch+parse={fetched - started:6.3f}s "
                f"upsert={stored - fetched:6.3f}s total={stored - started:6.3f}s "
                f"new={counts.new} updated={counts.updated} unchanged={counts.unchanged}"
            )
        engine.dispose()
    server.shutdown()


if __name__ == "__main__":
    main()
