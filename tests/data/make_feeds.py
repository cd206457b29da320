"""Writes the whole-day fixtures in tests/data/feeds/ (run from the repository root; deterministic).

    python tests/data/make_feeds.py

arxiv-day.rss follows rss.arxiv.org's listing byte for byte (RSS 2.0 with the arxiv: and dc:
namespaces, "arXiv:ID Announce Type: T \\nAbstract: ..." descriptions, one dc:creator line):
new, cross, replace and replace-cross entries, authors with affiliations in parentheses,
same-name co-authors, LaTeX and abstracts that quote tags. hf-day.json follows
huggingface.co/api/daily_papers.
"""

from __future__ import annotations

import json
import random
from html import escape
from pathlib import Path

HERE = Path(__file__).parent / "feeds"
EOL = " \n"  # arXiv ends the announce line with a space
ITEMS = 420
ANNOUNCE = ["new"] * 300 + ["cross"] * 60 + ["replace"] * 45 + ["replace-cross"] * 15
FIRST = ["Ana", "Wei", "Priya", "Jonas", "Mei", "Carlos", "Sofia", "Yuki", "Kofi", "Ines", "Omar"]
LAST = ["López", "Zhang", "Raman", "Berg", "Tanaka", "Mendes", "Rossi", "Sato", "Haddad", "Li"]
TOPICS = [
    ("Federated Distillation for Heterogeneous Clients", "federated learning"),
    ("Sparse Mixture-of-Experts Routing", "mixture-of-experts language models"),
    ("Diffusion Models for Video Inpainting", "latent diffusion for video"),
    ("Calibrated Uncertainty for Graph Neural Networks", "graph neural networks"),
    ("Retrieval-Augmented Generation at Scale", "retrieval-augmented generation"),
    ("Reinforcement Learning from Human Feedback", "reward models for RLHF"),
]
# The real day's troublemakers, as the issue reports them.
AFFILIATED = (
    "Tianliang Yan (University of Birmingham, School of Physics and Astronomy, Birmingham, "
    "United Kingdom), Ruth Okafor (University of Birmingham, School of Physics and Astronomy, "
    "Birmingham, United Kingdom), Hugo Lambert (Andrew and Peggy Cherng Department of Medical "
    "Engineering, California Institute of Technology, Pasadena, USA), Lei Zhang (Tsinghua "
    "University, Beijing, China), Lei Zhang (Zhejiang University, Hangzhou, China), Mariam "
    "Haddad, Jon Ek (KTH Royal Institute of Technology, Stockholm, Sweden), Sara Lind"
)


def creators(rng: random.Random, index: int) -> str:
    if index % 47 == 3:
        return AFFILIATED
    if index == 5:
        return r"Bernt \o{}ksendal (Universit\'e Paris Cit\'e), {\L}ukasz Nowak, Karl Ga\ss"
    names = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(rng.randint(1, 6))]
    if index % 53 == 7:
        names.append(names[0])  # two co-authors with the same name
    if len(names) > 2 and index % 11 == 0:
        return ", ".join(names[:-1]) + ", and " + names[-1]
    if len(names) > 1 and index % 5 == 0:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names)


def arxiv_day() -> str:
    rng = random.Random(14)
    items = []
    for index in range(ITEMS):
        announce = ANNOUNCE[index % len(ANNOUNCE)] if index >= 4 else "new"
        number = (
            f"2411.{3000 + index:05d}"
            if announce in ("new", "cross")
            else f"2410.{10000 + index:05d}"
        )
        version = "v1" if announce in ("new", "cross") else f"v{rng.randint(2, 4)}"
        title, topic = TOPICS[index % len(TOPICS)]
        if index % 3 == 0:
            title += r" with $\mathcal{O}(\sqrt{T})$ Regret"
        abstract = (
            f"We study {topic} and show that a simple correction halves the error, "
            rf"reaching $\epsilon &lt; 0.05$ on {rng.randint(3, 40)} benchmarks."
        )
        if index == 1:
            abstract = "Reasoning models emit &lt;think&gt; before answering; we ask when &lt;think&gt; helps &amp; when it hurts."
        primary = (
            "cs.LG" if announce in ("new", "replace") else rng.choice(["cs.CV", "stat.ML", "cs.CL"])
        )
        cats = [primary] + (
            ["cs.LG"] if primary != "cs.LG" else rng.sample(["cs.AI", "stat.ML"], 1)
        )
        categories = "".join(f"\n      <category>{c}</category>" for c in cats)
        items.append(
            f"""    <item>
      <title>{escape(title, quote=False)}</title>
      <link>https://arxiv.org/abs/{number}</link>
      <description>arXiv:{number}{version} Announce Type: {announce}{EOL}Abstract: {abstract}</description>
      <guid isPermaLink="false">oai:arXiv.org:{number}{version}</guid>{categories}
      <pubDate>Tue, 05 Nov 2024 00:00:00 -0500</pubDate>
      <arxiv:announce_type>{announce}</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      <dc:creator>{escape(creators(rng, index), quote=False)}</dc:creator>
    </item>
"""
        )
    return (
        """<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">
  <channel>
    <title>cs.LG updates on arXiv.org</title>
    <link>http://rss.arxiv.org/rss/cs.LG</link>
    <description>cs.LG updates on the arXiv.org e-print archive.</description>
    <atom:link href="http://rss.arxiv.org/rss/cs.LG" rel="self" type="application/rss+xml"/>
    <docs>http://www.rssboard.org/rss-specification</docs>
    <language>en-us</language>
    <lastBuildDate>Tue, 05 Nov 2024 05:00:04 +0000</lastBuildDate>
    <managingEditor>rss-help@arxiv.org</managingEditor>
    <pubDate>Tue, 05 Nov 2024 00:00:00 -0500</pubDate>
    <skipDays>
      <day>Saturday</day>
      <day>Sunday</day>
    </skipDays>
"""
        + "".join(items)
        + "  </channel>\n</rss>\n"
    )


def hf_day() -> list[dict]:
    rng = random.Random(1414)
    papers = []
    for index in range(50):
        number = f"2411.{3000 + index * 7:05d}"
        title, topic = TOPICS[index % len(TOPICS)]
        summary = f"We study {topic}; it works & scales."
        if index == 0:
            title = "Latent Reasoning with Switch Tokens"
            summary = (
                "The model emits <swi> to enter latent mode and </swi> to leave it; 3 < 4 & 5 > 2."
            )
        authors = [
            {
                "_id": f"672a{index:04d}{n:016x}",
                "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "hidden": False,
            }
            for n in range(rng.randint(1, 5))
        ]
        papers.append(
            {
                "paper": {
                    "id": number,
                    "authors": authors,
                    "publishedAt": "2024-11-04T16:03:11.000Z",
                    "submittedOnDailyAt": "2024-11-05T01:22:09.511Z",
                    "title": title,
                    "summary": summary,
                    "upvotes": rng.randint(0, 120),
                    "discussionId": f"672a{index:04d}aaaaaaaaaaaaaaaa",
                },
                "publishedAt": "2024-11-05T01:22:09.511Z",
                "title": title,
                "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{number}.png",
                "numComments": rng.randint(0, 9),
                "isAuthorParticipating": False,
            }
        )
    return papers


if __name__ == "__main__":
    (HERE / "arxiv-day.rss").write_text(arxiv_day(), encoding="utf-8")
    (HERE / "hf-day.json").write_text(
        json.dumps(hf_day(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
