"""The hidden response grammar and the prompt templates of the synthetic world.

Responses are sequences of sentences built from word-class templates (``D N V D N .`` = "the soup
heats the oven ."). A generator with quality knobs (off-topic sentences, dropped punctuation,
repeated sentences, filler, gibberish, word salad) makes the reference policy's pre-training corpus,
so that reference samples vary in quality and preference pairs carry signal. The same templates
define what the gold judge calls grammatical.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .vocab import FILLER, FUNCTION_WORDS, GIBBERISH, TOPICS

# Sentence templates over word classes (see vocab.py). "." is the terminal punctuation slot.
SENTENCE_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("D", "N", "V", "D", "N", "."),
    ("D", "A", "N", "V", "D", "N", "."),
    ("D", "N", "V", "D", "A", "N", "."),
    ("D", "N", "X", "R", "A", "."),
    ("D", "N", "R", "V", "D", "N", "."),
    ("D", "A", "N", "V", "W", "D", "N", "."),
    ("P", "V", "D", "N", "C", "D", "N", "X", "A", "."),
    ("D", "N", "C", "D", "N", "V", "."),
    ("D", "N", "V", "W", "D", "A", "N", "."),
)
TEMPLATE_SET = frozenset(SENTENCE_TEMPLATES)


def _allowed_bigrams() -> frozenset[tuple[str, str]]:
    """Class bigrams that occur in grammatical text; "^" and "$" mark the response's start and end."""
    pairs: set[tuple[str, str]] = set()
    starts = {t[0] for t in SENTENCE_TEMPLATES}
    for t in SENTENCE_TEMPLATES:
        pairs.update(zip(t, t[1:], strict=False))
        pairs.add(("^", t[0]))
        pairs.add((t[-1], "$"))
    pairs.update((".", s) for s in starts)
    return frozenset(pairs)


ALLOWED_BIGRAMS = _allowed_bigrams()

PROMPT_TEMPLATES: tuple[str, ...] = (
    "tell me about the {n1} .",
    "why is the {n1} so {a} ?",
    "how does the {n1} work with the {n2} ?",
    "what do you know about the {a} {n1} ?",
    "explain the {n1} and the {n2} .",
    "describe how the {n1} {v} the {n2} .",
    "can you describe the {a} {n1} ?",
)


def all_prompts() -> list[str]:
    """Every prompt the templates can make (about 1,700), in a fixed order."""
    out: list[str] = []
    for template in PROMPT_TEMPLATES:
        for topic in TOPICS.values():
            for n1 in topic["N"]:
                n2s = [n for n in topic["N"] if n != n1] if "{n2}" in template else [None]
                adjs = topic["A"] if "{a}" in template else [None]
                verbs = topic["V"] if "{v}" in template else [None]
                for n2 in n2s:
                    for a in adjs:
                        for v in verbs:
                            out.append(template.format(n1=n1, n2=n2, a=a, v=v))
    return out


@dataclass(frozen=True)
class GeneratorKnobs:
    """Quality knobs of the corpus generator. Probabilities are per response unless said."""

    sentence_counts: tuple[int, ...] = (1, 2, 3, 4)
    sentence_count_probs: tuple[float, ...] = (0.25, 0.35, 0.25, 0.15)
    off_topic_rates: tuple[float, ...] = (0.0, 0.15, 0.4, 1.0)  # per-sentence rate, drawn per response
    off_topic_rate_probs: tuple[float, ...] = (0.5, 0.25, 0.15, 0.1)
    mention_prompt_noun: float = 0.6  # per sentence: use a noun of the prompt
    drop_punctuation: float = 0.08  # per sentence
    repeat_sentence: float = 0.1
    filler: float = 0.08  # per sentence, at its start
    gibberish: float = 0.04
    word_salad: float = 0.04  # per sentence: shuffle its words


def prompt_topic_and_nouns(
    prompt_words: list[str], word_topic: dict[str, str], word_class: dict[str, str]
) -> tuple[str | None, list[str]]:
    """The topic a prompt is about (majority topic of its content words) and the nouns it names."""
    topics = [word_topic[w] for w in prompt_words if w in word_topic]
    nouns = [w for w in prompt_words if word_class.get(w) == "N"]
    if not topics:
        return None, nouns
    return max(sorted(set(topics)), key=topics.count), nouns


class ResponseGenerator:
    """Samples responses from the hidden grammar with the quality knobs above."""

    def __init__(self, knobs: GeneratorKnobs | None = None) -> None:
        self.knobs = knobs or GeneratorKnobs()

    def sentence(self, rng: random.Random, topic: str, nouns: list[str]) -> list[str]:
        words = TOPICS[topic]
        out = []
        for cls in rng.choice(SENTENCE_TEMPLATES):
            if cls == "N":
                use_prompt = nouns and rng.random() < self.knobs.mention_prompt_noun
                out.append(rng.choice(nouns) if use_prompt else rng.choice(words["N"]))
            elif cls in ("V", "A"):
                out.append(rng.choice(words[cls]))
            elif cls == ".":
                out.append(".")
            else:
                out.append(rng.choice(FUNCTION_WORDS[cls]))
        return out

    def response(self, rng: random.Random, topic: str, nouns: list[str]) -> str:
        k = self.knobs
        n_sent = rng.choices(k.sentence_counts, weights=k.sentence_count_probs)[0]
        off_rate = rng.choices(k.off_topic_rates, weights=k.off_topic_rate_probs)[0]
        sentences: list[list[str]] = []
        for _ in range(n_sent):
            if rng.random() < off_rate:
                other = rng.choice([t for t in TOPICS if t != topic])
                s = self.sentence(rng, other, [])
            else:
                s = self.sentence(rng, topic, nouns)
            if rng.random() < k.word_salad:
                body = s[:-1]
                rng.shuffle(body)
                s = body + s[-1:]
            if rng.random() < k.drop_punctuation:
                s = s[:-1]
            if rng.random() < k.filler:
                s = [rng.choice(FILLER), ","] + s
            sentences.append(s)
        if rng.random() < k.repeat_sentence:
            sentences.insert(rng.randrange(len(sentences) + 1), list(rng.choice(sentences)))
        words = [w for s in sentences for w in s]
        if rng.random() < k.gibberish:
            words.insert(rng.randrange(len(words) + 1), rng.choice(GIBBERISH))
        return " ".join(words)
