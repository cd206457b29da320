"""Text analysis shared by papers and profiles: tokens, Snowball stems, acronyms (Schwartz & Hearst)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import Stemmer

from digest.models import Paper

# Letters and digits; hyphens, slashes and apostrophes split words ("training-free" -> training, free).
_WORD = re.compile(r"[^\W_]+")
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_VOWELS = frozenset("aeiouy")
_STEMMER = Stemmer.Stemmer("english")
# Caches per distinct string: a day's papers repeat the same few thousand words many times.
_STEM_CACHE: dict[str, str] = {}  # normalized word -> stem
_NORM_CACHE: dict[str, str] = {}  # token as written -> normalized word
_TOKEN_STEM: dict[str, str] = {}  # token as written -> stem

# Dropped from unquoted multi-word terms only ("diffusion models for video"); phrases keep them.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "s",
        "that",
        "the",
        "this",
        "to",
        "via",
        "we",
        "with",
        "using",
    ]
)

# Common pairs so that a fresh install already knows them; pairs learned from the corpus are added.
BUILTIN_ACRONYMS: dict[str, str] = {
    "llm": "large language model",
    "mllm": "multimodal large language model",
    "vlm": "vision language model",
    "lm": "language model",
    "rl": "reinforcement learning",
    "rlhf": "reinforcement learning from human feedback",
    "nlp": "natural language processing",
    "gan": "generative adversarial network",
    "cnn": "convolutional neural network",
    "rnn": "recurrent neural network",
    "gnn": "graph neural network",
    "vae": "variational autoencoder",
    "vit": "vision transformer",
    "sft": "supervised fine tuning",
    "lora": "low rank adaptation",
    "moe": "mixture of experts",
    "rag": "retrieval augmented generation",
    "cot": "chain of thought",
    "dpo": "direct preference optimization",
    "ppo": "proximal policy optimization",
    "fl": "federated learning",
    "kd": "knowledge distillation",
    "nerf": "neural radiance field",
    "asr": "automatic speech recognition",
    "ocr": "optical character recognition",
    "qa": "question answering",
    "ner": "named entity recognition",
}


def _normalize_word(word: str) -> str:
    """Lowercase one word, folding acronym plurals ("LLMs", "llms", "LoRAs") onto the singular."""
    if len(word) >= 3 and word[-1] == "s" and sum(c.isupper() for c in word[:-1]) >= 2:
        return word[:-1].lower()
    low = word.lower()
    # "llms", "cnns": no vowel before the s, so Snowball keeps it; an acronym plural all the same.
    if len(low) >= 4 and low[-1] == "s" and not (_VOWELS & set(low[:-1])) and low[:-1].isalpha():
        return low[:-1]
    return low


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
# A hyphenated name that starts with a letter and carries a digit: DeepSeek-R1-Distill-Qwen-7B,
# Llama-3-8B-Instruct, Qwen2.5-Math-7B, GPT-4, COVID-19 (a part may hold a version: 2.5).
_NAME = re.compile(r"(?<![\w-])[^\W\d_][^\W_]*(?:\.\d+)*(?:-[^\W_]+(?:\.\d+)*)+")
_DIGIT = re.compile(r"\d")
_NAME_HINT = re.compile(r"\d[^\s-]*-|-[^\s-]*\d")  # a digit and a hyphen in one word: cheap

Doc = tuple[list[str], list[str], list[int]]
"""A paper as the index reads it: title stems, abstract stems, and where (token index) each
sentence of the abstract after the first begins."""


def _variant_label(name: re.Match[str]) -> str:
    """The name with the parts after its first digit-bearing part blanked (same length).

    In "DeepSeek-R1-Distill-Qwen-7B" or "Llama-3-8B-Instruct" the words after the version are
    the variant's label, not the topic: "Distill" there is no evidence of distillation. The family
    and version stay ("deepseek r1", "llama 3"), so a profile naming the model still finds it.
    """
    text = name.group()
    first = _DIGIT.search(text)
    if first is None:
        return text
    cut = text.find("-", first.end())
    return text if cut < 0 else text[:cut] + " " * (len(text) - cut)


def visible(text: str) -> str:
    """The text with what is not evidence of a topic blanked to spaces, offsets unchanged: the
    one rule deciding which words of a text can match a profile (index, profiles, snippets)."""
    if "-" not in text or not _NAME_HINT.search(text):
        return text
    return _NAME.sub(_variant_label, text)


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a text: a . ! or ? then space and a capital or digit."""
    spans, start = [], 0
    for found in _SENTENCE_END.finditer(text):
        spans.append((start, found.start()))
        start = found.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _tokens(text: str) -> list[str]:
    text = visible(text)
    if text.isascii():
        # the tokens _WORD finds, at twice its speed: every separator a space, then one split
        return text.translate(_ASCII_SEPARATORS).split()
    return _WORD.findall(unicodedata.normalize("NFKC", text))


def words(text: str) -> list[str]:
    """The normalized (lowercased, unstemmed) words of a text."""
    cache = _NORM_CACHE
    out = []
    for w in _tokens(text):
        n = cache.get(w)
        if n is None:
            n = cache[w] = _normalize_word(w)
        out.append(n)
    return out


def stem_words(items: Sequence[str]) -> list[str]:
    """Snowball stems of normalized words, cached per distinct word."""
    cache = _STEM_CACHE
    missing = [w for w in set(items) if w not in cache]
    if missing:
        cache.update(zip(missing, _STEMMER.stemWords(missing), strict=True))
    return [cache[w] for w in items]


def stems(text: str) -> list[str]:
    """Words of a text, normalized and stemmed: what the index and the queries compare."""
    cache = _TOKEN_STEM
    tokens = _tokens(text)
    try:
        return [cache[w] for w in tokens]
    except KeyError:
        missing = [w for w in set(tokens) if w not in cache]
        normalized = [_normalize_word(w) for w in missing]
        cache.update(zip(missing, stem_words(normalized), strict=True))
        return [cache[w] for w in tokens]


def paper_doc(paper: Paper) -> Doc:
    """Title and abstract stems, and the sentence starts of the abstract (words of a multi-word
    interest count as near only within one sentence)."""
    abstract: list[str] = []
    starts: list[int] = []
    for start, end in sentences(paper.abstract):
        found = stems(paper.abstract[start:end])
        if found and abstract:
            starts.append(len(abstract))
        abstract += found
    return stems(paper.title), abstract, starts


def fold(text: str) -> str:
    """Casefold and strip accents, for names and categories ("Schölkopf" ~ "scholkopf")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# ---------------------------------------------------------------------------------------------
# Acronyms: Schwartz & Hearst (2003), "A simple algorithm for identifying abbreviation
# definitions in biomedical text". A short form in parentheses is matched right-to-left against
# the words just before it; the first letter of the short form must start a word.

_PAREN = re.compile(r"\(\s*([^()\s][^()]{0,11}?)\s*\)")
_CLAUSE_BREAK = re.compile(r"[.;:!?()\[\]]\s")


def _best_long_form(short: str, candidate: str) -> str | None:
    s = len(short) - 1
    i = len(candidate) - 1
    while s >= 0:
        c = short[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while i >= 0 and (
            candidate[i].lower() != c or (s == 0 and i > 0 and candidate[i - 1].isalnum())
        ):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = max(candidate.rfind(" ", 0, i + 1), candidate.rfind("-", 0, i + 1)) + 1
    # a hyphenated first word belongs to the long form whole ("Local-global ..."): back up to the space
    start = candidate.rfind(" ", 0, start) + 1 if start and candidate[start - 1] == "-" else start
    return candidate[start:].strip()


def _short_form_ok(short: str) -> bool:
    return (
        2 <= len(short) <= 10
        and len(short.split()) == 1
        and short[0].isalnum()
        and any(c.isalpha() for c in short)
        and any(c.isupper() for c in short)
        # "(mAP)", "(GFlowNet)" are names more than acronyms; "(IS)", "(AT)" would hijack words
        and sum(c.isupper() for c in short) >= sum(c.islower() for c in short)
        and short.lower() not in STOPWORDS
    )


def definitions(text: str) -> Iterable[tuple[str, str]]:
    """Yield (acronym, expansion) pairs defined in a text, both normalized to lowercase singular."""
    for m in _PAREN.finditer(text):
        short = m.group(1).strip()
        if not _short_form_ok(short):
            continue
        before = text[: m.start()]
        breaks = list(_CLAUSE_BREAK.finditer(before))
        if breaks:
            before = before[breaks[-1].end() :]
        window = before.split()[-min(len(short) + 5, 2 * len(short)) :]
        if not window:
            continue
        long_form = _best_long_form(short, " ".join(window))
        if not long_form or len(long_form) <= len(short) or short.lower() in long_form.lower():
            continue
        long_words = words(long_form)
        if len(long_words) < 2:
            continue
        key = _normalize_word(short)
        if key != short.lower() and long_words[-1].endswith("s"):
            long_words[-1] = long_words[-1][:-1]  # "Large Language Models (LLMs)" -> model
        key_words = words(key)
        if len(key_words) != 1:
            continue
        yield key_words[0], " ".join(long_words)


def learn_acronyms(papers: Iterable[Paper]) -> dict[str, str]:
    """Acronym -> expansion pairs that abstracts and titles define, e.g. {"llm": "large language model"}.

    When a paper set defines one acronym several ways, the most frequent expansion wins.
    """
    seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for paper in papers:
        for text in (paper.title, paper.abstract):
            for short, long_form in definitions(text):
                seen[short][long_form] += 1
    return {short: counts.most_common(1)[0][0] for short, counts in sorted(seen.items())}
