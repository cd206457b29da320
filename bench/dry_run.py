"""Time `digest run --dry-run` on the bundled sample feed for N generated subscribers.

Usage: python bench/dry_run.py [--subscribers 1000]
Prints seconds for the whole command (a fresh process, as an operator runs it) and per reader.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from digest import store
from digest.store import Preferences

TERMS = [
    '"federated learning"',
    "distillation",
    "diffusion",
    '"language models"',
    "LLM",
    "agents",
    "reinforcement learning",
    "reasoning",
    "video generation",
    "robotics",
    "-medical",
    '"vision-language"',
    "benchmark",
    "retrieval",
    "quantization",
    "speech",
    "graph neural networks",
    "cat:cs.LG",
    "title:transformer",
    "multimodal^2",
    "privacy",
    "alignment",
    "RLHF",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        config = Path(tmp) / "digest.toml"
        config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
        engine = store.open_engine(url, create=True)
        store.migrate(engine)
        now = datetime.now(UTC)
        start = time.perf_counter()
        for i in range(args.subscribers):
            keywords = ", ".join(rng.sample(TERMS, rng.randint(2, 6)))
            store.Store(engine).subscribers.add(
                f"reader{i}@bench.example",
                Preferences(keywords=keywords),
                confirmed=True,
                now=now,
            )
        print(f"created {args.subscribers} subscribers in {time.perf_counter() - start:.1f} s")
        command = [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(config),
            "run",
            "--dry-run",
            "--format",
            "json",
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(done.stderr)
        print(
            f"digest run --dry-run: {elapsed:.2f} s for {args.subscribers} subscribers "
            f"({elapsed / args.subscribers * 1000:.2f} ms per reader, fetch of 148 papers included)"
        )
        start = time.perf_counter()
        subprocess.run(
            [*command[:-2], "--no-fetch", "--out", str(Path(tmp) / "out"), "--format", "json"],
            capture_output=True,
            check=True,
        )
        elapsed = time.perf_counter() - start
        print(f"digest run --dry-run --out DIR (render + .html/.txt/.eml files): {elapsed:.2f} s")


if __name__ == "__main__":
    main()
