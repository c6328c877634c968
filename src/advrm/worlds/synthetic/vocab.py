"""The world's vocabulary: topics with their nouns, verbs and adjectives, and the other word classes.

Every word is one token of the world's tokenizer. Word classes drive both the response grammar and
the gold judge's fluency check, so they live here, in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "cooking": {
        "N": ("soup", "bread", "oven", "knife", "sauce", "onion"),
        "V": ("bakes", "boils", "cuts", "mixes", "heats"),
        "A": ("hot", "fresh", "salty", "sweet"),
    },
    "weather": {
        "N": ("rain", "cloud", "wind", "storm", "sun", "snow"),
        "V": ("falls", "blows", "moves", "warms", "covers"),
        "A": ("cold", "wet", "dark", "bright"),
    },
    "music": {
        "N": ("song", "drum", "piano", "choir", "guitar", "note"),
        "V": ("plays", "sings", "sounds", "rings", "hums"),
        "A": ("loud", "soft", "slow", "gentle"),
    },
    "sport": {
        "N": ("ball", "team", "coach", "goal", "race", "player"),
        "V": ("kicks", "runs", "wins", "throws", "trains"),
        "A": ("fast", "strong", "tired", "brave"),
    },
    "garden": {
        "N": ("rose", "seed", "tree", "soil", "leaf", "flower"),
        "V": ("grows", "blooms", "needs", "feeds", "drinks"),
        "A": ("green", "tall", "young", "tiny"),
    },
    "travel": {
        "N": ("train", "road", "map", "ship", "city", "bridge"),
        "V": ("leaves", "crosses", "reaches", "carries", "follows"),
        "A": ("long", "busy", "old", "quiet"),
    },
}

# Function words by class. "D" determiners, "P" pronoun, "C" conjunctions, "R" adverbs, "X" copula,
# "W" prepositions. Their classes define which word-class bigrams are grammatical (see grammar.py).
FUNCTION_WORDS: dict[str, tuple[str, ...]] = {
    "D": ("the", "a"),
    "P": ("it",),
    "C": ("and", "because", "so", "but"),
    "R": ("very", "often", "always", "also"),
    "X": ("is",),
    "W": ("with", "in", "of"),
}
# Words that carry no content; the gold judge penalizes them.
FILLER = ("well", "basically", "actually", "honestly", "um", "anyway")
# Tokens that belong to no class: the policy can emit them, the gold judge punishes them.
GIBBERISH = ("zorp", "blick", "frum", "quax", "vint", "plog", "snib", "drell", "wub", "glim", "trop", "yeck")
# Words used only by prompts.
QUESTION_WORDS = (
    "how",
    "why",
    "what",
    "does",
    "do",
    "tell",
    "me",
    "about",
    "explain",
    "describe",
    "you",
    "know",
    "work",
    "makes",
    "can",
)
TERMINAL_PUNCT = (".", "!")
PUNCT = (".", ",", "?", "!")

SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>", "eos": "<eos>"}

# The same split rule as the tokenizer's Whitespace pre-tokenizer: words and runs of punctuation.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """Split text the way the world's tokenizer does (so the judge and the models see the same units)."""
    return _TOKEN_RE.findall(text.lower())


@dataclass(frozen=True)
class Lexicon:
    """Lookup tables derived from the word lists above."""

    word_class: dict[str, str]
    word_topic: dict[str, str]

    @classmethod
    def build(cls) -> Lexicon:
        word_class: dict[str, str] = {}
        word_topic: dict[str, str] = {}
        for topic, classes in TOPICS.items():
            for cls_name, words in classes.items():
                for w in words:
                    word_class[w] = cls_name
                    word_topic[w] = topic
        for cls_name, words in FUNCTION_WORDS.items():
            for w in words:
                word_class[w] = cls_name
        for w in FILLER:
            word_class[w] = "F"
        for w in GIBBERISH:
            word_class[w] = "G"
        for w in QUESTION_WORDS:
            word_class.setdefault(w, "Q")
        for p in PUNCT:
            word_class[p] = "." if p in TERMINAL_PUNCT else p
        return cls(word_class=word_class, word_topic=word_topic)

    def all_words(self) -> list[str]:
        return sorted(self.word_class)


LEXICON = Lexicon.build()
