"""Ranking: the profile language, BM25F with stems, phrases and acronyms, trending, explained matches.

Pure: papers and profiles in, ranked matches out; no database, no network, no files.
"""

from digest.ranking.corpus import Corpus, build_corpus
from digest.ranking.engine import Ranking, prepared, rank, score_batch, thresholds, trending
from digest.ranking.evidence import snippet, with_snippets
from digest.ranking.explain import Explanation, TermScore, explain
from digest.ranking.profile import ProfileError, Query, Term, parse_profile, validate_profile
from digest.ranking.steer import TermEdit, apply_edits, steer
from digest.ranking.text import BUILTIN_ACRONYMS, learn_acronyms

__all__ = [
    "BUILTIN_ACRONYMS",
    "Corpus",
    "Explanation",
    "ProfileError",
    "Query",
    "Ranking",
    "Term",
    "TermEdit",
    "TermScore",
    "apply_edits",
    "build_corpus",
    "explain",
    "learn_acronyms",
    "parse_profile",
    "prepared",
    "rank",
    "score_batch",
    "snippet",
    "steer",
    "thresholds",
    "trending",
    "validate_profile",
    "with_snippets",
]
