"""Load `digest serve` the way issue 15's attacker did, on 127.0.0.1 only, bounded in count and time.

    python bench/web_load.py                     # 5,000 papers, 40 concurrent clients
    python bench/web_load.py --papers 5000 --concurrency 40 --rounds 5 --rankings 1

A real server process (`python -m digest serve`) on a fresh SQLite file holding N papers first
seen today. Measures, from /proc of the server process:
  1. CPU per request for uncached public search feeds, home-page previews and preference pages
     (distinct profiles, one at a time; the per-network limits are raised so nothing is refused);
  2. peak RSS while `--concurrency` clients ask for distinct search feeds at once, `--rounds`
     times (some get 503 + Retry-After: that is the bound on concurrent rankings working);
  3. home-page latency, asked by one more client all the while.
Linux only (reads /proc). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rank import make_papers, term_pool  # noqa: E402
from digest import store  # noqa: E402
from digest.tokens import Scope, Signer  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of a process now."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def prepare(directory: Path, n_papers: int, port: int, rankings: int) -> tuple[Path, str]:
    """A config and a database with n papers first seen now, and one active reader's
    preferences token."""
    db = directory / "digest.sqlite3"
    config = directory / "digest.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{db}"
[site]
base_url = "http://127.0.0.1:{port}"
secret_key = "{SECRET}"
[web]
previews_per_ip_per_hour = 100000
searches_per_ip_per_hour = 100000
preference_pages_per_ip_per_hour = 100000
concurrent_rankings = {rankings}
"""
    )
    engine = store.open_engine(f"sqlite:///{db}")
    store.migrate(engine)
    now = datetime.now(UTC)
    store.Store(engine).papers.upsert(make_papers(n_papers), now=now)
    reader, _ = store.Store(engine).subscribers.add(
        "reader@example.org",
        store.Preferences(keywords="diffusion models, LLM agents"),
        confirmed=True,
        now=now,
    )
    engine.dispose()
    assert reader.id is not None
    return config, Signer(SECRET).make(Scope.PREFERENCES, reader.id, link=reader.link_secret)


def start_server(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DIGEST_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start; see {log}")


def per_request_cpu(pid: int, count: int, send: object) -> float:
    """Milliseconds of server CPU per request, over `count` requests sent one at a time."""
    assert callable(send)
    send(-1)  # warm: the first request of a kind builds what the rest share
    before = cpu_seconds(pid)
    for i in range(count):
        send(i)
    return round((cpu_seconds(pid) - before) / count * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--papers", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=100, help="per kind, for CPU per request")
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--rankings", type=int, default=0, help="[web] concurrent_rankings (0: the default)"
    )
    args = parser.parse_args()

    terms = term_pool()
    with tempfile.TemporaryDirectory(prefix="digest-web-load-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config, prefs = prepare(Path(tmp), args.papers, port, args.rankings)
        server = start_server(config, port, Path(tmp) / "serve.log")
        try:
            pid = server.pid
            idle_mb = rss_mb(pid)
            client = httpx.Client(base_url=base, timeout=30)
            home = client.get("/")
            field = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
            assert field, "no CSRF field on the home page"

            def search(i: int) -> None:
                q = f"{terms[i % len(terms)]}, {terms[(7 * i + 3) % len(terms)]}"
                r = client.get("/feeds/search.atom", params={"q": q})
                assert r.status_code == 200, r.status_code

            def preview(i: int) -> None:
                data = {
                    "csrf_token": field.group(1),
                    "keywords": f"{terms[(3 * i + 1) % len(terms)]}, {terms[i % len(terms)]}",
                    "action": "preview",
                }
                assert client.post("/subscribe", data=data).status_code == 200

            def preferences(i: int) -> None:
                assert client.get(f"/preferences/{prefs}").status_code == 200

            cpu = {
                "search_feed_ms": per_request_cpu(pid, args.requests, search),
                "preview_ms": per_request_cpu(pid, args.requests, preview),
                "preferences_get_ms": per_request_cpu(pid, args.requests, preferences),
            }
            before_cached = cpu_seconds(pid)
            for _ in range(args.requests):
                search(0)  # the same query again: the cache answers
            cpu["cached_search_feed_ms"] = round(
                (cpu_seconds(pid) - before_cached) / args.requests * 1000, 2
            )

            # 2 and 3: a burst of distinct searches, the home page asked meanwhile
            baseline_mb = rss_mb(pid)
            peak = [baseline_mb]
            home_ms: list[float] = []
            stop = threading.Event()

            def watch() -> None:
                with httpx.Client(base_url=base, timeout=60) as own:
                    while not stop.is_set():
                        started = time.perf_counter()
                        own.get("/")
                        home_ms.append((time.perf_counter() - started) * 1000)
                        peak.append(rss_mb(pid))
                        time.sleep(0.05)

            statuses: dict[int, int] = {}
            lock = threading.Lock()

            def burst_one(i: int) -> None:
                with httpx.Client(base_url=base, timeout=60) as own:
                    q = f"{terms[(11 * i) % len(terms)]}, {terms[(13 * i + 5) % len(terms)]} {i}"
                    status = own.get("/feeds/search.atom", params={"q": q}).status_code
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                for r in range(args.rounds):
                    offset = 1000 + r * args.concurrency
                    list(pool.map(burst_one, range(offset, offset + args.concurrency)))
            burst_seconds = time.perf_counter() - started
            stop.set()
            watcher.join()
            print(
                json.dumps(
                    {
                        "papers": args.papers,
                        "cpu_per_request": cpu,
                        "rss_mb": {
                            "idle_before_any_request": round(idle_mb, 1),
                            "before_burst": round(baseline_mb, 1),
                            "peak_during_burst": round(max(peak), 1),
                        },
                        "burst": {
                            "concurrency": args.concurrency,
                            "requests": args.concurrency * args.rounds,
                            "seconds": round(burst_seconds, 2),
                            "statuses": statuses,
                        },
                        "home_page_ms_during_burst": {
                            "samples": len(home_ms),
                            "median": round(statistics.median(home_ms), 1) if home_ms else None,
                            "max": round(max(home_ms), 1) if home_ms else None,
                        },
                    },
                    indent=2,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
