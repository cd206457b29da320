"""How many complete digest messages (HTML + text rendered, MIME bytes built) one core makes per second.

    python bench/render.py [--subscribers 10000] [--papers 10] [--dkim]

Each subscriber gets a different selection of the 148 sample papers, their own links and matched terms.
The step shares come from timing each step on its own over the same digests; the raw-bytes checks
(CRLF, lines <= 998, unencoded List-Unsubscribe, parse-back) run on every 100th message, untimed.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest import render
from digest.config import SAMPLE_FEED, EmailSettings, SiteSettings
from digest.deliver.message import DkimSigner, build_message
from digest.models import Digest, DigestLinks, Match, Paper, Subscriber
from digest.ranking import with_snippets
from digest.render import text, views

NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Kurt Gödel", "Barbara Liskov", "Zhang Wei"]
TERMS = ["federated learning", "distillation", "diffusion", "LLM agents", "reasoning", "video"]


def sample_papers() -> list[Paper]:
    """The 148 papers of the bundled Hugging Face sample feed."""
    feed = feedparser.parse(str(SAMPLE_FEED))
    return [
        Paper(
            key=entry.id,
            title=entry.title,
            abstract=entry.summary,
            authors=tuple(NAMES[(i + j) % len(NAMES)] for j in range(1 + i % 7)),
            url=entry.link,
            pdf_url=entry.link + ".pdf",
            categories=("cs.LG", "cs.CL")[: 1 + i % 2],
            upvotes=int(entry.get("hf_upvotes", 0) or 0) or None,
        )
        for i, entry in enumerate(feed.entries)
    ]


def digests(count: int, per: int, papers: list[Paper]) -> list[Digest]:
    """One digest per subscriber, each a different draw of papers."""
    rng = random.Random(7)
    out = []
    for n in range(count):
        chosen = rng.sample(papers, per + 3)
        address = f"reader{n}@example.org"
        token = f"{n:08x}a9F3kQ2m"
        out.append(
            Digest(
                subscriber=Subscriber(email=address, keywords=", ".join(rng.sample(TERMS, 3))),
                digest_date=date(2025, 11, 27),
                # with the snippet each match carries (chosen once per paper and terms, as a run does)
                matches=tuple(
                    with_snippets(
                        Match(p, 10.0 - i, tuple(rng.sample(TERMS, 2)))
                        for i, p in enumerate(chosen[:per])
                    )
                ),
                trending=tuple(Match(p, 0.0) for p in chosen[per:]),
                links=DigestLinks(
                    preferences=f"https://digest.example.org/p/{token}",
                    unsubscribe=f"https://digest.example.org/u/{token}",
                    unsubscribe_mailto=f"mailto:u+{token}@digest.example.org",
                    feed_atom=f"https://digest.example.org/f/{token}.atom",
                    feed_rss=f"https://digest.example.org/f/{token}.rss",
                    home="https://digest.example.org/",
                    view=f"https://digest.example.org/digest/{token}/2025-11-27",
                    more={
                        p.key: f"https://digest.example.org/s/{token}/{i}/more"
                        for i, p in enumerate(chosen)
                    },
                    fewer={
                        p.key: f"https://digest.example.org/s/{token}/{i}/fewer"
                        for i, p in enumerate(chosen)
                    },
                ),
            )
        )
    return out


def check(data: bytes, unsubscribe: str) -> None:
    """The raw-bytes properties the tests assert, on the bench's own output."""
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998, "line over 998 octets"
    assert f"List-Unsubscribe: <{unsubscribe}>, <mailto:".encode() in data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert not parsed.defects


def make_key(folder: Path) -> Path:
    key = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
        check=True,
        capture_output=True,
    )
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=10, help="papers per digest")
    parser.add_argument("--dkim", action="store_true", help="also time DKIM signing")
    args = parser.parse_args()

    site = SiteSettings(base_url="https://digest.example.org", title="Paper Digest")
    settings = EmailSettings.model_validate(
        {
            "from": "Paper Digest <digest@digest.example.org>",
            "postal_address": "1 Example St, Paris",
        }
    )
    work = digests(args.subscribers, args.papers, sample_papers())

    started = time.process_time()
    renderer = render.EmailRenderer(site=site, email=settings)
    compile_s = time.process_time() - started

    # Step by step, each over all digests (caches cleared first: a run starts cold).
    views._paper_view.cache_clear()
    text.wrap.cache_clear()
    html_template = renderer._html["digest"][1]
    text_template = renderer._text["digest"][1]
    t0 = time.process_time()
    contexts = [renderer._digest_context(d, d.matches, d.trending) for d in work]
    t1 = time.process_time()
    for ctx in contexts:
        html_template.render(ctx)
    t2 = time.process_time()
    for ctx in contexts:
        text_template.render(ctx)
    t3 = time.process_time()

    # End to end: render + build, the way a worker does it.
    views._paper_view.cache_clear()
    text.wrap.cache_clear()
    sizes = []
    built = []
    t4 = time.process_time()
    for d in work:
        rendered = renderer.digest(d)
        message = build_message(
            rendered,
            to=d.subscriber.email,
            email=settings,
            site=site,
            unsubscribe_url=d.links.unsubscribe,
            unsubscribe_mailto=d.links.unsubscribe_mailto,
        )
        built.append(message)
    t5 = time.process_time()
    renders = [renderer.digest(d) for d in work]
    t6 = time.process_time()
    for d, rendered in zip(work, renders, strict=True):
        build_message(
            rendered,
            to=d.subscriber.email,
            email=settings,
            site=site,
            unsubscribe_url=d.links.unsubscribe,
            unsubscribe_mailto=d.links.unsubscribe_mailto,
        )
    t7 = time.process_time()

    for i in range(0, len(built), 100):
        check(built[i].data, work[i].links.unsubscribe)
        sizes.append(len(renders[i].html))

    n = len(work)
    total = t5 - t4
    print(f"subscribers: {n}, papers per digest: {args.papers}")
    print(f"templates compiled once: {compile_s * 1000:.1f} ms (MJML + lint + rehearsal)")
    print(f"complete messages/s/core: {n / total:,.0f}  ({total / n * 1000:.3f} ms each)")
    render_ms = (t6 - t5) / n * 1000
    build_ms = (t7 - t6) / n * 1000
    print(
        f"  render (HTML+text, warm):  {render_ms:.3f} ms  {render_ms / (render_ms + build_ms):.0%}"
    )
    print(f"    context/view models:     {(t1 - t0) / n * 1000:.3f} ms (cold caches)")
    print(f"    Jinja HTML fill:         {(t2 - t1) / n * 1000:.3f} ms")
    print(f"    Jinja text fill:         {(t3 - t2) / n * 1000:.3f} ms")
    print(
        f"  build MIME bytes:          {build_ms:.3f} ms  {build_ms / (render_ms + build_ms):.0%}"
    )
    print(f"HTML size: median {sorted(sizes)[len(sizes) // 2]:,} B, max {max(sizes):,} B")
    print(
        f"message size: {len(built[0].data):,} B; raw-bytes checks passed on {len(sizes)} messages"
    )

    if args.dkim:
        with tempfile.TemporaryDirectory() as folder:
            signer_settings = settings.model_copy(
                update={
                    "dkim_selector": "s1",
                    "dkim_domain": "digest.example.org",
                    "dkim_key_file": str(make_key(Path(folder))),
                }
            )
            signer = DkimSigner.from_settings(signer_settings)
            assert signer is not None
            sample = built[: min(n, 1000)]
            t8 = time.process_time()
            for message in sample:
                signer.sign(message.data)
            t9 = time.process_time()
            print(f"DKIM signing (RSA-2048, dkimpy): {(t9 - t8) / len(sample) * 1000:.3f} ms each")


if __name__ == "__main__":
    main()
