"""Identity of feed entries: arXiv ids (new and old style), their pages, and stable short keys."""

from __future__ import annotations

import hashlib
import re

from digest.models import KEY_MAX_CHARS

# New-style ids (2007 on): YYMM.NNNN (to 1412) or YYMM.NNNNN (from 1501), optional version.
_NEW_ID = r"(?P<new>(?:0[7-9]|[1-9]\d)(?:0[1-9]|1[0-2])\.\d{4,5})(?:v\d+)?"
# Old-style ids: archive(.SUBJECT-CLASS)/YYMMNNN, e.g. hep-th/9901001, math.GT/0309136.
_OLD_ID = r"(?P<old>[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]{2})?/\d{7})(?:v\d+)?"
# An id only counts where arXiv put it: its URLs, its "arXiv:" prefix, its OAI identifiers,
# or Hugging Face's paper pages. A bare number elsewhere in a link is not an arXiv id.
_CONTEXT = (
    r"(?:arxiv\.org/(?:abs|pdf|html)/|arxiv:|oai:arxiv\.org:"
    r"|huggingface\.co/papers/|hf\.co/papers/)"
)
_IN_CONTEXT = re.compile(_CONTEXT + r"\s*(?:" + _NEW_ID + "|" + _OLD_ID + r")(?![\d.])", re.I)
_BARE = re.compile(r"\s*(?:" + _NEW_ID + "|" + _OLD_ID + r")\s*")


def paper_key(*candidates: str | None) -> str | None:
    """The arXiv id (no version) in the first candidate that has one (id, link, text), else None."""
    for candidate in candidates:
        if not candidate:
            continue
        bare = _BARE.fullmatch(candidate)
        match = bare or _IN_CONTEXT.search(candidate)
        if match:
            return match.group("new") or _old_style(match.group("old"))
    return None


def _old_style(value: str) -> str:
    # The archive is lower case but a subject class is upper case (math.GT/0309136).
    archive, _, number = value.partition("/")
    name, dot, subject = archive.partition(".")
    return f"{name.lower()}{dot}{subject.upper()}/{number}"


def arxiv_abs_url(key: str) -> str:
    """The abstract page of an arXiv paper (latest version)."""
    return f"https://arxiv.org/abs/{key}"


def arxiv_pdf_url(key: str) -> str:
    """The PDF of an arXiv paper (latest version)."""
    return f"https://arxiv.org/pdf/{key}"


def short_key(key: str) -> str:
    """The key itself, or for one over KEY_MAX_CHARS its start and a digest of the whole (stable)."""
    if len(key) <= KEY_MAX_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{key[: KEY_MAX_CHARS - 40]}#sha256:{digest}"
