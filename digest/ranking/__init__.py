"""Ranking: the profile language, BM25F with stems, phrases and acronyms, trending, explained matches.

Pure: papers and profiles in, ranked matches out; no database, no network, no files.
"""

from digest.ranking.corpus import Corpus, build_corpus
from digest.ranking.engine import Ranking, prepared, rank, score_batch, trending
from digest.ranking.explain import Explanation, TermScore, explain
from digest.ranking.profile import ProfileError, Query, Term, parse_profile, validate_profile
from digest.ranking.text import BUILTIN_ACRONYMS, learn_acronyms

__all__ = [
    "BUILTIN_ACRONYMS",
    "Corpus",
    "Explanation",
    "ProfileError",
    "Query",
    "Ranking",
    "Term",
    "TermScore",
    "build_corpus",
    "explain",
    "learn_acronyms",
    "parse_profile",
    "prepared",
    "rank",
    "score_batch",
    "trending",
    "validate_profile",
]
