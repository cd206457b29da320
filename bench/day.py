"""A whole day at scale: import N readers, fetch P papers, send every digest to a C SMTP sink.

Everything runs as an operator runs it, each step a fresh `digest` process in a temporary
directory with its own database and config (`[smtp] connections = 16`, the sink on 127.0.0.1):

    digest subscribers import --confirmed readers.csv    (N generated readers, 2-6 real interests)
    digest fetch                                          (a P-paper Atom feed from a local file)
    SQLite:      digest -q run --no-fetch                 (rank, render, send to the sink)
    PostgreSQL:  digest schedule --no-send until it has planned, then k `digest worker --once`

Each step prints its wall time, CPU time (cores used = CPU / wall) and peak memory: the largest
single process (from wait4), and the sum of the whole process tree (sampled every 50 ms) as RSS
and as PSS (pages a forked preparer shares with its sender counted once). Then, in
the same session and to the same sink, the floor: bare aiosmtplib sending as many messages of the
same average size (measured from the bytes the sink read) over the same 16 connections.

The sink is Postfix's `smtp-sink` (Debian's postfix package) when installed, else aiosmtpd.
Readers and papers are generated as a stream, so 1,000,000 readers need no more memory than 1,000.

    python bench/day.py --readers 20000 --papers 2000
    python bench/day.py --readers 20000 --database postgresql --workers 2
    python bench/day.py --readers 1000000 --database postgresql --plan-only
    python bench/day.py --readers 1000000 --database postgresql --workers 2 --drain-seconds 300
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "data" / "hf-daily-papers-sample.atom"
ATOM = "{http://www.w3.org/2005/Atom}"
CONNECTIONS = 16
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Research topics readers follow: real subfields and methods from ML, NLP, vision, systems and
# beyond (most match some of the sample abstracts, some match nothing, as in real lists).
TOPICS = [
    '"federated learning"',
    "distillation",
    '"diffusion models"',
    '"language models"',
    "LLM",
    '"LLM agents"',
    '"reinforcement learning"',
    "reasoning",
    '"video generation"',
    "robotics",
    '"vision-language models"',
    "benchmark",
    '"retrieval-augmented generation"',
    "quantization",
    '"speech recognition"',
    '"graph neural networks"',
    "transformer",
    "multimodal",
    "privacy",
    "alignment",
    "RLHF",
    '"preference optimization"',
    '"mixture of experts"',
    "pruning",
    '"knowledge distillation"',
    '"contrastive learning"',
    '"self-supervised learning"',
    '"image generation"',
    '"text-to-image"',
    '"3D reconstruction"',
    '"neural radiance fields"',
    '"gaussian splatting"',
    '"object detection"',
    "segmentation",
    '"medical imaging"',
    '"time series"',
    "forecasting",
    '"anomaly detection"',
    '"recommender systems"',
    '"information retrieval"',
    '"question answering"',
    "summarization",
    '"machine translation"',
    '"code generation"',
    '"program synthesis"',
    '"theorem proving"',
    '"mathematical reasoning"',
    '"chain-of-thought"',
    "hallucination",
    '"instruction tuning"',
    '"in-context learning"',
    '"prompt engineering"',
    '"parameter-efficient fine-tuning"',
    "LoRA",
    '"long context"',
    '"state space models"',
    "Mamba",
    '"attention mechanism"',
    '"sparse attention"',
    '"efficient inference"',
    '"speculative decoding"',
    '"KV cache"',
    '"model compression"',
    '"neural architecture search"',
    '"continual learning"',
    '"meta-learning"',
    '"few-shot learning"',
    '"domain adaptation"',
    '"out-of-distribution"',
    "robustness",
    '"adversarial attacks"',
    '"differential privacy"',
    "fairness",
    "interpretability",
    '"mechanistic interpretability"',
    "explainability",
    '"causal inference"',
    '"bayesian optimization"',
    '"gaussian processes"',
    '"uncertainty quantification"',
    '"variational inference"',
    '"normalizing flows"',
    '"generative adversarial networks"',
    '"world models"',
    '"embodied AI"',
    '"autonomous driving"',
    "navigation",
    "manipulation",
    '"imitation learning"',
    '"offline reinforcement learning"',
    '"multi-agent"',
    '"tool use"',
    '"web agents"',
    '"embodied agents"',
    "planning",
    '"data augmentation"',
    '"synthetic data"',
    '"dataset distillation"',
    '"data curation"',
    '"scaling laws"',
    "pretraining",
    "tokenization",
    '"multilingual"',
    '"low-resource languages"',
    '"speech synthesis"',
    '"audio generation"',
    "music",
    '"video understanding"',
    '"visual question answering"',
    "captioning",
    '"document understanding"',
    "OCR",
    '"protein structure"',
    '"drug discovery"',
    "molecules",
    '"weather forecasting"',
    '"climate"',
    '"physics-informed"',
    '"neural operators"',
    '"optimization"',
    '"stochastic gradient descent"',
    '"learning rate"',
    "-medical",
    "-survey",
]

STEP = "{:<44} {:>9} {:>9} {:>7} {:>11} {:>11} {:>11}"


@dataclass
class Measured:
    """One step: wall and CPU seconds, peak RSS of the largest process and of the whole tree,
    and the tree's peak PSS (shared pages shared out: what the step takes from the machine)."""

    name: str
    wall: float
    cpu: float
    peak_one: int
    peak_tree: int
    peak_pss: int = 0

    def line(self) -> str:
        """The step as a table row."""
        return STEP.format(
            self.name,
            f"{self.wall:.1f} s",
            f"{self.cpu:.1f} s",
            f"{self.cpu / self.wall:.2f}" if self.wall else "-",
            _mib(self.peak_one),
            _mib(self.peak_tree),
            _mib(self.peak_pss),
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


# --- generated inputs -------------------------------------------------------------------------


def sample_texts() -> tuple[list[str], list[str], list[str]]:
    """Title heads, title tails and abstract sentences of the real sample papers."""
    heads, tails, sentences = [], [], []
    for entry in ET.parse(SAMPLE).getroot().iter(f"{ATOM}entry"):
        title = " ".join((entry.findtext(f"{ATOM}title") or "").split())
        head, _, tail = title.partition(": ")
        if tail:
            heads.append(head)
            tails.append(tail)
        else:
            tails.append(title)
        summary = " ".join((entry.findtext(f"{ATOM}summary") or "").split())
        sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", summary) if len(s) > 30)
    return heads, tails, sentences


def write_feed(path: Path, papers: int, rng: random.Random) -> None:
    """A P-entry Atom feed whose titles and abstracts recombine the real sample's (streamed)."""
    heads, tails, sentences = sample_texts()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w", encoding="utf-8") as out:
        out.write(
            "<?xml version='1.0' encoding='utf-8'?>\n"
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:hf="https://example.org/ns/hf">\n'
            f"<id>urn:bench:day</id><title>Bench day</title><updated>{now}</updated>\n"
        )
        for i in range(papers):
            title = rng.choice(tails)
            if rng.random() < 0.6:
                title = f"{rng.choice(heads)}{i}: {title}"
            abstract = " ".join(rng.sample(sentences, rng.randint(5, 10)))
            out.write(
                "<entry>"
                f"<id>urn:bench:{i}</id><title>{_xml(title)}</title>"
                f"<published>{now}</published><updated>{now}</updated>"
                f'<link rel="alternate" href="https://example.org/bench/{i}"/>'
                f'<summary type="text">{_xml(abstract)}</summary>'
                f"<author><name>Author {i % 997}</name></author>"
                f"<hf:upvotes>{int(rng.paretovariate(1.5)) - 1}</hf:upvotes>"
                "</entry>\n"
            )
        out.write("</feed>\n")


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def readers(count: int, rng: random.Random) -> Iterator[tuple[str, str]]:
    """(address, profile) for `count` readers, generated one at a time."""
    for i in range(count):
        interests = rng.sample(TOPICS, rng.randint(2, 6))
        while all(term.startswith("-") for term in interests):  # a profile needs one interest
            interests = rng.sample(TOPICS, len(interests))
        yield f"reader{i}@bench.example", ", ".join(interests)


def write_readers(path: Path, count: int, rng: random.Random) -> None:
    """The import CSV: email-only readers due at any hour (send_hour 0, UTC)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "keywords", "timezone", "send_hour", "channels"])
        for email, keywords in readers(count, rng):
            writer.writerow([email, keywords, "UTC", 0, "email"])


# --- the sink ---------------------------------------------------------------------------------

AIOSMTPD_SINK = r"""
import sys, asyncio
from aiosmtpd.controller import Controller

class Sink:
    received = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.received += len(envelope.original_content or b"")
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
for line in sys.stdin:
    print(Sink.received, flush=True)
controller.stop()
"""


class Sink:
    """An SMTP sink on 127.0.0.1 that can tell how many bytes it has read so far."""

    def __init__(self) -> None:
        self.port = _free_port()
        binary = shutil.which("smtp-sink") or (
            "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None
        )
        if binary:
            self.kind = "Postfix smtp-sink"
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            self.process = subprocess.Popen(
                [binary, *user, "-m", "1000", f"127.0.0.1:{self.port}", "1024"],
                stdout=subprocess.DEVNULL,
            )
            _wait_for_port(self.port)
        else:
            self.kind = "aiosmtpd (smtp-sink not installed)"
            self.process = subprocess.Popen(
                [sys.executable, "-c", AIOSMTPD_SINK, str(self.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.process.stdout is not None
            assert self.process.stdout.readline().strip() == "ready"

    def bytes_read(self) -> int:
        """Bytes received so far (the socket reads of smtp-sink, or aiosmtpd's message bytes)."""
        if self.process.stdin is None:
            io = Path(f"/proc/{self.process.pid}/io").read_text()
            return int(re.search(r"rchar: (\d+)", io).group(1))  # type: ignore[union-attr]
        assert self.process.stdout is not None
        self.process.stdin.write("?\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        """End the sink."""
        self.process.terminate()
        self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the sink did not listen on 127.0.0.1:{port}")


# --- measuring a child process ----------------------------------------------------------------


def _tree_memory(pid: int) -> tuple[int, int]:
    """Resident bytes (RSS, and PSS: pages shared by forked processes counted once) of a process
    and all its descendants, now."""
    rss, pss, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            pss += int(re.search(r"Pss:\s+(\d+)", rollup).group(1)) * 1024  # type: ignore[union-attr]
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo.extend(int(child) for child in children)
        except (OSError, AttributeError):
            continue
    return rss, pss


class Child:
    """A child process whose tree's memory is sampled until it is reaped."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.started = time.perf_counter()
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=self.handle, stderr=self.handle)
        self.peak_tree = 0
        self.peak_pss = 0
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            rss, pss = _tree_memory(self.process.pid)
            self.peak_tree = max(self.peak_tree, rss)
            self.peak_pss = max(self.peak_pss, pss)

    def reap(self) -> tuple[float, float, int, int]:
        """Wait for it: wall, CPU seconds, peak RSS of its largest process, exit code."""
        _, status, usage = os.wait4(self.process.pid, 0)
        wall = time.perf_counter() - self.started
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.done.set()
        self.sampler.join()
        self.handle.close()
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, status


def profiled(command: list[str], output: str | None) -> list[str]:
    """The command under `py-spy record` (with its child processes) when a profile is asked for."""
    if not output:
        return command
    spy = shutil.which("py-spy") or sys.exit("--profile needs py-spy: pip install py-spy")
    head = [spy, "record", "--subprocesses", "--rate", "200", "--format", "raw", "-o", output]
    return [*head, "--", *command]


def measure(
    name: str,
    commands: list[list[str]],
    env: dict[str, str],
    log: Path,
    stop_after: float | None = None,
) -> Measured:
    """Run the commands at once and wait for all; a failure stops the bench with its log.

    With `stop_after`, each still running then gets SIGTERM (a worker finishes what is in flight,
    gives the rest back and exits 0): a drain measured over a time slice.
    """
    started = time.perf_counter()
    children = [Child(command, env, log) for command in commands]
    if stop_after is not None:
        timer = threading.Timer(
            stop_after,
            lambda: [c.process.terminate() for c in children if c.process.poll() is None],
        )
        timer.daemon = True
        timer.start()
    results = [child.reap() for child in children]
    wall = time.perf_counter() - started
    for child in children:
        if child.process.returncode != 0:
            raise SystemExit(
                f"{name} failed (exit {child.process.returncode}); its output:\n"
                f"{log.read_text()[-4000:]}"
            )
    return Measured(
        name,
        wall,
        sum(r[1] for r in results),
        max(r[2] for r in results),
        sum(c.peak_tree for c in children),
        sum(c.peak_pss for c in children),
    )


def measure_schedule(command: list[str], env: dict[str, str], log: Path) -> Measured:
    """`digest schedule --no-send` until it logs its first planning, then stopped."""
    start = log.stat().st_size if log.exists() else 0
    child = Child(command, env, log)
    # A byte offset: the log holds the fetch table's box-drawing characters before this step.
    while not re.search(rb"planned \d+ deliveries", log.read_bytes()[start:]):
        if child.process.poll() is not None:
            raise SystemExit(f"digest schedule stopped; its output:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)
    wall = time.perf_counter() - child.started
    child.process.terminate()  # SIGTERM: a background shell leaves SIGINT ignored
    _, cpu, peak, _ = child.reap()
    return Measured(
        "digest schedule --no-send (planning)", wall, cpu, peak, child.peak_tree, child.peak_pss
    )


def _count_by_status(db_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status"))
        counts = {str(status): int(count) for status, count in rows}
    engine.dispose()
    return counts


# --- the floor --------------------------------------------------------------------------------


def floor_message(size: int) -> bytes:
    """A plain MIME message of about `size` bytes (quoted-printable-like 76-column body)."""
    head = (
        b"From: Paper Digest <digest@bench.example>\r\nTo: reader@bench.example\r\n"
        b"Subject: Your papers for today\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def bare_send(port: int, count: int, data: bytes) -> float:
    """Seconds for bare aiosmtplib to send `count` messages over 16 reused connections."""
    remaining = count

    async def connection() -> None:
        nonlocal remaining
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        while remaining > 0:
            remaining -= 1
            await client.sendmail("digest@bench.example", ["reader@bench.example"], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return time.perf_counter() - started


# --- the day ----------------------------------------------------------------------------------


def config_text(db_url: str, port: int, feed: Path) -> str:
    """The operator's digest.toml for the bench."""
    return f"""
[database]
url = "{db_url}"

[[sources]]
name = "bench"
url = "{feed}"
kind = "atom"

[fetch]
max_bytes = {2**31 - 1}

[smtp]
host = "127.0.0.1"
port = {port}
connections = {CONNECTIONS}

[email]
from = "Paper Digest <digest@bench.example>"
postal_address = "Bench Street 1, 00000 Bench"

[site]
base_url = "https://digest.bench.example"
secret_key = "bench-secret-key-bench-secret-key"
"""


def create_pg_database() -> tuple[str, str]:
    """A fresh PostgreSQL database for the run: (its SQLAlchemy URL, its name)."""
    import psycopg

    name = f"digest_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_pg_database(name: str) -> None:
    """Remove the run's database."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--papers", type=int, default=2_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL: workers draining")
    parser.add_argument(
        "--plan-only", action="store_true", help="PostgreSQL: stop after planning (no sending)"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare aiosmtplib floor")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        help="PostgreSQL: stop the workers (SIGTERM) after this long and report the rate so far",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the run (SQLite) or the workers with py-spy into FILE (collapsed stacks)",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    digest = shutil.which("digest") or sys.exit("install the project first: pip install -e .")

    sink = Sink()
    pg_name = None
    with tempfile.TemporaryDirectory(prefix="digest-day-") as tmp:
        folder = Path(tmp)
        try:
            if args.database == "postgresql":
                db_url, pg_name = create_pg_database()
            else:
                db_url = f"sqlite:///{folder / 'digest.sqlite3'}"
            feed, people, config = (
                folder / "feed.atom",
                folder / "readers.csv",
                folder / "digest.toml",
            )
            started = time.perf_counter()
            write_feed(feed, args.papers, rng)
            write_readers(people, args.readers, rng)
            config.write_text(config_text(db_url, sink.port, feed), encoding="utf-8")
            print(
                f"{args.readers:,} readers x {args.papers:,} papers on {args.database}, "
                f"{CONNECTIONS} connections to {sink.kind} on 127.0.0.1:{sink.port}; "
                f"{os.cpu_count()} cores; inputs generated in {time.perf_counter() - started:.1f} s"
            )
            env = {**os.environ, "DIGEST_CONFIG": str(config)}
            env.pop("DIGEST_DATABASE_URL", None)
            log = folder / "steps.log"
            print(
                STEP.format("step", "wall", "CPU", "cores", "peak 1 proc", "peak tree", "tree PSS")
            )
            steps = [
                measure("digest db upgrade", [[digest, "db", "upgrade"]], env, log),
                measure(
                    "digest subscribers import --confirmed",
                    [[digest, "subscribers", "import", "--confirmed", str(people)]],
                    env,
                    log,
                ),
                measure("digest fetch", [[digest, "fetch"]], env, log),
            ]
            for step in steps:
                print(step.line(), flush=True)
            before = sink.bytes_read()
            if args.database == "sqlite":
                send = measure(
                    "digest -q run --no-fetch",
                    [profiled([digest, "-q", "run", "--no-fetch"], args.profile)],
                    env,
                    log,
                )
                print(send.line(), flush=True)
            else:
                plan = measure_schedule([digest, "schedule", "--no-send"], env, log)
                print(plan.line(), flush=True)
                print(f"planned: {_count_by_status(db_url)}", flush=True)
                if args.plan_only:
                    return
                send = measure(
                    f"{args.workers} x digest worker --once"
                    + (f" (for {args.drain_seconds:g} s)" if args.drain_seconds else ""),
                    [
                        profiled(
                            [digest, "worker", "--once"], args.profile and f"{args.profile}.{k}"
                        )
                        for k in range(args.workers)
                    ],
                    env,
                    log,
                    stop_after=args.drain_seconds,
                )
                print(send.line(), flush=True)
            counts = _count_by_status(db_url)
            sent = counts.get("sent", 0)
            size = (sink.bytes_read() - before) // max(sent, 1)
            print(
                f"deliveries: {counts}; {sent / send.wall:,.0f} messages/s; "
                f"average {size / 1024:.1f} KiB on the wire"
            )
            if args.no_floor or not sent:
                return
            floor = asyncio.run(bare_send(sink.port, sent, floor_message(size)))
            print(
                f"floor: bare aiosmtplib, {sent:,} messages of {size / 1024:.1f} KiB over "
                f"{CONNECTIONS} connections: {floor:.1f} s ({sent / floor:,.0f} messages/s)"
            )
            print(f"ratio: {send.wall / floor:.2f} x the floor")
        finally:
            sink.stop()
            if pg_name:
                drop_pg_database(pg_name)


if __name__ == "__main__":
    main()
