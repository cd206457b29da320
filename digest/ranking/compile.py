"""Profile strings to term entries: one join and split for a million profiles, each term parsed once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from digest.ranking.corpus import Corpus
from digest.ranking.profile import ProfileError, _segments, parse_term
from digest.ranking.units import UnitKey, unit_key

BLANK, INVALID = -1, -2  # segment cache values besides entry ids
SPLIT = -3  # a piece of a quoted term that held a comma
MARKER = -4  # between two profiles in the joined text
PARSED_KEEP = 1_000_000
"""Parsed term strings kept with a prepared index (bounds memory with adversarial profiles)."""
SLICE = 32_768
"""Profiles split at once: the split pieces are Python strings, so a million at once would
cost most of a gigabyte for a moment."""


class Compiler:
    """Turns profile strings into term entry ids, parsing each distinct term string once."""

    def __init__(self, corpus: Corpus, parsed: dict[str, tuple | int]) -> None:
        self.corpus = corpus
        self.parsed = parsed  # term string -> (unit key, weight, exclude, text) or an error code
        self.units: dict[UnitKey, int] = {}
        self.segments: dict[str, int] = {}  # as split, spaces and all
        self.bodies: dict[str, int] = {}  # stripped
        self.keys: dict[tuple, UnitKey] = {}
        self.entry_unit: list[int] = []
        self.entry_weight: list[float] = []
        self.entry_exclude: list[bool] = []
        self.entry_text: list[str] = []
        self.segments["\x02"] = MARKER

    def _add(self, segment: str, *, whole: bool = False) -> int:
        if not whole and segment.count('"') % 2:
            # a comma inside quotes split this term: its profile is split again, quote-aware
            self.segments[segment] = SPLIT
            return SPLIT
        body = segment.strip()  # " diffusion" and "diffusion" are one entry
        eid = self.bodies.get(body)
        if eid is None:
            eid = self.bodies[body] = self._entry(body)
        self.segments[segment] = eid
        return eid

    def _entry(self, body: str) -> int:
        parsed = self.parsed.get(body)
        if parsed is None:
            parsed = self._parse(body)
            if len(self.parsed) < PARSED_KEEP:
                self.parsed[body] = parsed
        if isinstance(parsed, int):
            return parsed
        key, weight, exclude, text = parsed
        eid = len(self.entry_unit)
        self.entry_unit.append(self.units.setdefault(key, len(self.units)))
        self.entry_weight.append(weight)
        self.entry_exclude.append(exclude)
        self.entry_text.append(text)
        return eid

    def _parse(self, body: str) -> tuple | int:
        try:
            term = parse_term(body)
        except ProfileError:
            return INVALID
        if term is None:
            return BLANK
        # "-x", "x^2" and "x" ask the same of a paper: stem and look up their unit once
        what = (term.field, term.words, term.phrase)
        key = self.keys.get(what)
        if key is None:
            key = self.keys[what] = unit_key(term, self.corpus)
        return (key, term.weight, term.exclude, term.text)

    def unit_can_be_partial(self) -> np.ndarray:
        """Per unit: whether a paper can match it in part (a multi-word term that is no phrase)."""
        return np.fromiter((key[0] == "bag" for key in self.units), bool, len(self.units))

    def compile(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Entry ids of every profile, flat, and the profile each belongs to (blanks included)."""
        ids, owners = [np.empty(0, np.int32)], [np.empty(0, np.int32)]
        for start in range(0, len(texts), SLICE):
            i, o = self._compile_slice(texts[start : start + SLICE])
            ids.append(i.astype(np.int32))
            owners.append((o + start).astype(np.int32))
        return np.concatenate(ids), np.concatenate(owners)

    def _compile_slice(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """One big split instead of a loop per profile: profiles are joined with a marker between
        them and split at C speed. The rare profile whose quotes hold a comma is split again,
        quote-aware, and its terms take the place of the naive pieces.
        """
        cache = self.segments
        joined = ",\x02,".join(texts)
        if joined.count("\x02") != max(len(texts) - 1, 0):
            # a profile holds the marker itself: another control character, which the parser
            # refuses as it refuses this one, so the profile is invalid alone or in any batch
            texts = [t.replace("\x02", "\x01") for t in texts]
            joined = ",\x02,".join(texts)
        segments = joined.replace("\n", ",").split(",")
        del joined
        # new pieces first, in order of appearance (entry ids stay deterministic); then every
        # piece is one C-level lookup (split strings keep their hash from the first pass)
        for segment in [s for s in dict.fromkeys(segments) if s not in cache]:
            self._add(segment)
        ids = np.fromiter(map(cache.__getitem__, segments), np.int64, len(segments))
        del segments
        marker = ids == MARKER
        owner = np.cumsum(marker)
        ids, owner = ids[~marker], owner[~marker]
        resplit = np.unique(owner[ids == SPLIT])
        if len(resplit):
            again = [self._quote_aware(texts[r]) for r in resplit.tolist()]
            keep = ~np.isin(owner, resplit)
            ids = np.concatenate([ids[keep], *[np.asarray(a, np.int64) for a in again]])
            owner = np.concatenate([owner[keep], np.repeat(resplit, [len(a) for a in again])])
            order = np.argsort(owner, kind="stable")
            ids, owner = ids[order], owner[order]
        return ids, owner

    def _quote_aware(self, text: str) -> list[int]:
        try:
            segments = [segment for _, segment in _segments(text)]
        except ProfileError:
            return [INVALID]
        cache = self.segments
        return [
            cache[segment] if segment in cache else self._add(segment, whole=True)
            for segment in segments
        ]
