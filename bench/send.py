"""How close sending through the product comes to bare aiosmtplib (the floor).

An aiosmtpd sink runs in another process on 127.0.0.1. The same ready messages (one rendered
digest, addressed to 20,000 readers) go out twice per connection count: through bare aiosmtplib on
N reused connections, and through the product (`pipeline.send_pending`: claim with leases, send on
the pool, record every result in the database). Run:

    python bench/send.py [--messages 20000] [--connections 1 8 32] [--database URL] [--small]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import insert, text

from digest import pipeline, store
from digest.config import parse_settings
from digest.deliver.message import build_message
from digest.deliver.transport import Envelope, SmtpTransport
from digest.models import Digest, Match, Paper, RenderedEmail, Subscriber
from digest.pipeline.batch import Pending, Prepared
from digest.store.schema import DeliveryRow, SubscriberRow

SINK = r"""
import sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""

DAY = date(2025, 11, 27)
NOW = datetime(2025, 11, 27, 8, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    return process, port


def prepare_database(ctx: pipeline.Context, count: int) -> None:
    """`count` readers with a planned digest each (bulk SQL: this part is not measured)."""
    with ctx.engine.begin() as connection:
        connection.execute(
            insert(SubscriberRow),
            [
                {
                    "email": f"reader{i}@bench.example",
                    "status": "active",
                    "keywords": "diffusion",
                    "channels": ["email"],
                    "feed_token": f"token-{i}",
                    "created_at": NOW,
                    "token_version": 0,
                    "bounce_count": 0,
                }
                for i in range(count)
            ],
        )
        ids = [row[0] for row in connection.execute(text("SELECT id FROM subscribers"))]
        connection.execute(
            insert(DeliveryRow),
            [
                {
                    "subscriber_id": sid,
                    "digest_date": DAY,
                    "channel": "email",
                    "status": "pending",
                    "attempts": 0,
                    "created_at": NOW,
                }
                for sid in ids
            ],
        )


def ready_messages(ctx: pipeline.Context, *, small: bool) -> dict[int, Envelope]:
    """One rendered digest of ten papers (or a 1 KiB note), built as a message per delivery."""
    papers = [
        Paper(
            key=f"2511.{i:05d}",
            title=f"Diffusion models for sample {i}",
            abstract="We study diffusion models. " * 40,
            authors=("A. Author", "B. Author"),
            url=f"https://arxiv.org/abs/2511.{i:05d}",
            id=i,
        )
        for i in range(10)
    ]
    reader = Subscriber(email="reader@bench.example", keywords="diffusion", id=1)
    digest = Digest(reader, DAY, tuple(Match(p, 3.0, ("diffusion",)) for p in papers))
    rendered = ctx.renderer.digest(digest)
    if small:
        rendered = RenderedEmail("Your digest", "<p>" + "papers " * 60 + "</p>", "papers " * 60)
    envelopes: dict[int, Envelope] = {}
    query = text(
        "SELECT d.id, s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
    )
    with ctx.engine.connect() as connection:
        for delivery_id, email in connection.execute(query):
            message = build_message(
                rendered, to=email, email=ctx.settings.email, site=ctx.settings.site
            )
            envelopes[delivery_id] = Envelope(
                delivery_id, ctx.sender, email, message.data, message.message_id
            )
    return envelopes


async def floor(port: int, envelopes: Sequence[Envelope], connections: int) -> float:
    """Bare aiosmtplib: N connections, each reused for its share of the messages."""
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        while not queue.empty():
            envelope = queue.get_nowait()
            await client.sendmail(envelope.sender, [envelope.recipient], envelope.data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


def product(ctx: pipeline.Context, envelopes: dict[int, Envelope], connections: int) -> float:
    """The product's sending path with the messages already built (ranking is benched elsewhere)."""

    def ready(_ctx: pipeline.Context, claims: Sequence[store.Claim], _report: Any) -> Prepared:
        prepared = Prepared()
        for claim in claims:
            envelope = envelopes[claim.id]
            prepared.envelopes.append(envelope)
            prepared.pending[claim.id] = Pending(claim, envelope.recipient, envelope.message_id)
        return prepared

    with ctx.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE deliveries SET status = 'pending', attempts = 0, message_id = NULL,"
                " sent_at = NULL, lease_owner = NULL, lease_until = NULL"
            )
        )
    transport = SmtpTransport(ctx.settings.smtp.model_copy(update={"connections": connections}))
    started = time.perf_counter()
    report = pipeline.send_pending(ctx, transport, prepare=ready)
    elapsed = time.perf_counter() - started
    sent = ctx.store.deliveries.counts().get("sent", 0)
    assert report.count("sent") == len(envelopes) == sent, (report.count("sent"), sent)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--database", default="", help="database URL (default: a SQLite file)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--small",
        action="store_true",
        help="1 KiB messages instead of a real digest (the sink parses ~450 lines per digest and "
        "becomes the bottleneck; small messages show the product's own overhead)",
    )
    args = parser.parse_args()

    sink, port = start_sink()
    try:
        with tempfile.TemporaryDirectory() as folder:
            url = args.database or f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
            settings = parse_settings(
                {
                    "database": {"url": url},
                    "smtp": {"host": "127.0.0.1", "port": port},
                    "email": {"from": "Paper Digest <digest@bench.example>"},
                    "site": {"secret_key": "bench-secret-0123456789"},
                    "delivery": {"batch_size": args.batch_size},
                }
            )
            store.migrate(store.open_engine(url, create=True))  # what `digest init` does
            ctx = pipeline.build_context(settings, now=lambda: NOW)
            prepare_database(ctx, args.messages)
            envelopes = ready_messages(ctx, small=args.small)
            size = sum(len(e.data) for e in envelopes.values()) / len(envelopes)
            print(
                f"{len(envelopes)} messages of {size / 1024:.1f} KiB, database {url.split(':')[0]}"
            )
            print(f"{'connections':>11} {'floor msg/s':>12} {'product msg/s':>14} {'ratio':>6}")
            for connections in args.connections:
                bare = asyncio.run(floor(port, list(envelopes.values()), connections))
                ours = product(ctx, envelopes, connections)
                rate_bare, rate_ours = len(envelopes) / bare, len(envelopes) / ours
                print(
                    f"{connections:>11} {rate_bare:>12.0f} {rate_ours:>14.0f}"
                    f" {rate_ours / rate_bare:>6.0%}",
                    flush=True,
                )
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=10)


if __name__ == "__main__":
    main()
