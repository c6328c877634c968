"""The gold judge: the synthetic world's ground truth of response quality.

Proxy RMs never see it; they learn from preference labels that it produced with Bradley-Terry noise.
It scores a response to a prompt as

    gold = relevance + 0.5 * mention + fluency + completeness
           - 2 * repetition - unterminated - over_length - filler - gibberish - prompt_copy

Each term is a documented, inspectable component (``GoldJudge.components``), so that the failure
modes an attack finds can be read against what the judge actually penalizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .grammar import ALLOWED_BIGRAMS, TEMPLATE_SET, prompt_topic_and_nouns
from .vocab import LEXICON, TERMINAL_PUNCT, split_words

MAX_GOOD_LENGTH = 40  # tokens; every token past this costs LENGTH_COST
LENGTH_COST = 0.05
FILLER_COST, FILLER_CAP = 0.25, 1.0
GIBBERISH_COST, GIBBERISH_CAP = 0.5, 2.0
PROMPT_COPY_COST = 1.5
PROMPT_COPY_MIN_WORDS = 3
EMPTY_SCORE = -3.0


@dataclass(frozen=True)
class GoldComponents:
    """The terms of the gold score; ``total`` is their weighted sum (see the module docstring)."""

    relevance: float  # share of content words on the prompt's topic, in [0, 1]
    mention: float  # 1 if the response names a noun of the prompt
    fluency: float  # share of word-class bigrams that the grammar allows, in [0, 1]
    completeness: float  # 2 * (1 - exp(-good_sentences / 1.5)): saturating in distinct good sentences
    repetition: float  # share of sentences that repeat an earlier one, plus immediate word repeats
    unterminated: float  # share of sentences without terminal punctuation
    over_length: float  # LENGTH_COST per token beyond MAX_GOOD_LENGTH
    filler: float  # FILLER_COST per filler word, capped
    gibberish: float  # GIBBERISH_COST per out-of-grammar token, capped
    prompt_copy: float  # PROMPT_COPY_COST if the prompt is copied into the response

    @property
    def total(self) -> float:
        return (
            self.relevance
            + 0.5 * self.mention
            + self.fluency
            + self.completeness
            - 2.0 * self.repetition
            - self.unterminated
            - self.over_length
            - self.filler
            - self.gibberish
            - self.prompt_copy
        )


def _sentences(words: list[str]) -> list[list[str]]:
    """Split at terminal punctuation; a trailing run without it is an unterminated sentence."""
    out: list[list[str]] = []
    cur: list[str] = []
    for w in words:
        cur.append(w)
        if w in TERMINAL_PUNCT:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


class GoldJudge:
    """Scores (prompt, response) pairs of the synthetic world. Implements the ``Scorer`` protocol."""

    name = "gold"

    def components(self, prompt: str, response: str) -> GoldComponents | None:
        """The gold terms for one pair, or None for an empty response."""
        cls = LEXICON.word_class
        words = split_words(response)
        if not words:
            return None
        p_words = split_words(prompt)
        topic, p_nouns = prompt_topic_and_nouns(p_words, LEXICON.word_topic, cls)

        content = [w for w in words if cls.get(w) in ("N", "V", "A")]
        on_topic = [w for w in content if LEXICON.word_topic.get(w) == topic]
        relevance = len(on_topic) / len(content) if content else 0.0
        mention = float(any(w in p_nouns for w in words))

        classes = ["^"] + [cls.get(w, "G") for w in words if cls.get(w) != "F"] + ["$"]
        bigrams = list(zip(classes, classes[1:], strict=False))
        fluency = sum(b in ALLOWED_BIGRAMS for b in bigrams) / len(bigrams)

        sentences = _sentences([w for w in words if cls.get(w) not in ("F", ",")])
        if not sentences:  # nothing but filler and commas
            return None
        keys = [" ".join(s) for s in sentences]
        repeats = len(keys) - len(set(keys))
        stutter = sum(a == b for a, b in zip(words, words[1:], strict=False))
        repetition = repeats / len(sentences) + 0.1 * stutter
        good = {
            " ".join(s)
            for s in sentences
            if tuple(cls.get(w, "G") if w not in TERMINAL_PUNCT else "." for w in s) in TEMPLATE_SET
            and all(LEXICON.word_topic.get(w, topic) == topic for w in s)
        }
        completeness = 2.0 * (1.0 - math.exp(-len(good) / 1.5))
        unterminated = sum(s[-1] not in TERMINAL_PUNCT for s in sentences) / len(sentences)

        over_length = LENGTH_COST * max(0, len(words) - MAX_GOOD_LENGTH)
        filler = min(FILLER_CAP, FILLER_COST * sum(cls.get(w) == "F" for w in words))
        gibberish = min(GIBBERISH_CAP, GIBBERISH_COST * sum(cls.get(w, "G") in ("G", "Q") for w in words))
        body = [w for w in p_words if w not in TERMINAL_PUNCT and w != "?"]
        copied = len(body) >= PROMPT_COPY_MIN_WORDS and _contains(words, body)
        return GoldComponents(
            relevance=relevance,
            mention=mention,
            fluency=fluency,
            completeness=completeness,
            repetition=repetition,
            unterminated=unterminated,
            over_length=over_length,
            filler=filler,
            gibberish=gibberish,
            prompt_copy=PROMPT_COPY_COST if copied else 0.0,
        )

    def score_one(self, prompt: str, response: str) -> float:
        c = self.components(prompt, response)
        return EMPTY_SCORE if c is None else c.total

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.array(
            [self.score_one(p, r) for p, r in zip(prompts, responses, strict=True)], dtype=np.float64
        )

    def explain(self, prompt: str, response: str) -> dict[str, float]:
        """Components and total as a dict (for reports and failure-mode summaries)."""
        c = self.components(prompt, response)
        if c is None:
            return {"total": EMPTY_SCORE}
        return {**asdict(c), "total": c.total}
