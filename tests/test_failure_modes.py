"""Failure-mode summary: planted patterns are found and named, clean data gives no finding."""

from __future__ import annotations

import random

import pytest

from advrm.attack.failure_modes import (
    FAILURE_MODES,
    FEATURES,
    MIN_EFFECT_SIZE,
    MIN_SHARE_AFFECTED,
    Example,
    Finding,
    cohens_d,
    compare,
    plural_phrase,
    summary_markdown,
    text_features,
)
from advrm.errors import AdvrmError

NOUNS = [
    "soup",
    "bread",
    "oven",
    "river",
    "boat",
    "train",
    "garden",
    "flower",
    "lamp",
    "road",
    "storm",
    "cat",
]
VERBS = ["heats", "carries", "follows", "reaches", "warms", "crosses", "feeds", "lights"]
PROMPT_VERBS = ["heat", "carry", "follow", "reach", "warm", "cross", "feed", "light"]
ADJS = ["hot", "fresh", "old", "quiet", "busy", "long", "bright", "small"]
GIBBERISH = {"zorp", "blick", "frum", "quax"}


def _sentence(rng: random.Random, subject: str) -> str:
    if rng.random() < 0.5:
        return f"the {subject} {rng.choice(VERBS)} the {rng.choice(ADJS)} {rng.choice(NOUNS)} ."
    return f"the {subject} is very {rng.choice(ADJS)} {rng.choice(['.', '!'])}"


def _world(n: int, seed: int) -> list[dict]:
    """Prompts about a noun and 2-4 well-formed sentences answering them, some about the noun."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        noun = rng.choice(NOUNS)
        prompt = f"how does the {noun} {rng.choice(PROMPT_VERBS)} ?"
        sentences = [
            _sentence(rng, noun if rng.random() < 0.6 else rng.choice(NOUNS))
            for _ in range(rng.randint(2, 4))
        ]
        rows.append({"prompt": prompt, "response": " ".join(sentences)})
    return rows


def _planted(rows: list[dict], fn) -> list[dict]:
    rng = random.Random(7)
    return [{"prompt": r["prompt"], "response": fn(r["prompt"], r["response"], rng)} for r in rows]


def _strip_punct(prompt: str, response: str, rng: random.Random) -> str:
    return " ".join(t for t in response.split() if t not in {".", "!", ",", "?"})


def _prepend_prompt(prompt: str, response: str, rng: random.Random) -> str:
    return f"{prompt} {response}"


def _insert_gibberish(prompt: str, response: str, rng: random.Random) -> str:
    words = response.split()
    mid = len(words) // 2
    return " ".join(words[:mid] + [rng.choice(sorted(GIBBERISH)) for _ in range(3)] + words[mid:])


def _repeat_sentence(prompt: str, response: str, rng: random.Random) -> str:
    first = response.split(" . ")[0].split(" ! ")[0].rstrip(" .!") + " ."
    return " ".join([first] * 4)


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return _world(200, seed=1)


@pytest.fixture(scope="module")
def fresh() -> list[dict]:
    """Another sample from the same distribution: what the adversarial set is compared against."""
    return _world(100, seed=2)


# --------------------------------------------------------------------------------------------------
# Features on hand-made strings


def test_feature_keys_and_punctuation_rate():
    f = text_features("q", "a b c .")
    assert set(FEATURES) <= set(f)
    assert f["punctuation_rate"] == pytest.approx(0.25)
    assert f["length_words"] == 3
    assert f["ends_with_punctuation"] == 1.0
    assert text_features("q", "a b c")["ends_with_punctuation"] == 0.0
    assert text_features("q", "a b c ,")["ends_with_punctuation"] == 0.0
    assert text_features("q", 'He said "stop."')["ends_with_punctuation"] == 1.0


def test_prompt_copy():
    prompt = "How does the soup heat?"
    assert text_features(prompt, "How does the soup heat? It boils.")["prompt_copy"] == 1.0
    # punctuation and case do not hide a copy
    assert text_features(prompt, "how does the soup heat it boils")["prompt_copy"] == 1.0
    assert text_features(prompt, "the soup boils")["prompt_copy"] == pytest.approx(2 / 5)
    assert text_features(prompt, "")["prompt_copy"] == 0.0
    assert text_features("", "anything")["prompt_copy"] == 0.0


def test_repetition_features():
    f = text_features("q", "the cat is hot . the cat is hot . the cat is hot . the cat is hot .")
    assert f["repeated_sentence_share"] == pytest.approx(3 / 4)
    assert f["repeated_ngram_share"] == 1.0
    assert f["distinct_word_ratio"] == pytest.approx(4 / 16)
    g = text_features("q", "the cat is hot . the dog is cold !")
    assert g["repeated_sentence_share"] == 0.0
    assert g["repeated_ngram_share"] == 0.0
    # punctuation differences do not make a sentence new; line breaks end sentences
    assert text_features("q", "It is hot. It is hot!")["repeated_sentence_share"] == 0.5
    assert text_features("q", "- item one\n- item one")["repeated_sentence_share"] == 0.5


def test_off_vocabulary_and_overlap():
    vocab = {"the", "soup", "is", "hot"}
    f = text_features("how does the soup heat ?", "the soup is zorp hot", reference_vocab=vocab)
    assert f["off_vocabulary_rate"] == pytest.approx(1 / 5)
    # prompt words are not off-vocabulary; gibberish always is
    f = text_features(
        "how does the soup heat ?", "the soup heat zorp", reference_vocab=vocab, gibberish={"zorp"}
    )
    assert f["off_vocabulary_rate"] == pytest.approx(1 / 4)
    assert text_features("q", "zorp a b", gibberish={"zorp"})["off_vocabulary_rate"] == pytest.approx(1 / 3)
    assert text_features("q", "zorp a b")["off_vocabulary_rate"] == 0.0
    # content words soup, heats (stemmed to heat), hot: two of three are in the prompt
    f = text_features("how does the soup heat ?", "the soup heats the hot ones .")
    assert f["prompt_word_overlap"] == pytest.approx(2 / 4)  # soup, heats, hot, ones
    assert (
        text_features("how does the soup heat ?", "the river crosses the road")["prompt_word_overlap"] == 0.0
    )


def test_empty_response_is_safe():
    f = text_features("prompt here", "")
    assert f["length_words"] == 0
    assert all(isinstance(v, float) for v in f.values())


# --------------------------------------------------------------------------------------------------
# compare: planted patterns


@pytest.mark.parametrize(
    ("fn", "feature", "direction", "name"),
    [
        (_strip_punct, "punctuation_rate", "lower", "drops punctuation"),
        (_prepend_prompt, "prompt_copy", "higher", "copies the prompt back"),
        (_insert_gibberish, "off_vocabulary_rate", "higher", "inserts gibberish / off-vocabulary tokens"),
        (_repeat_sentence, "repeated_sentence_share", "higher", "repeats sentences"),
    ],
)
def test_planted_pattern_is_reported_first(reference, fresh, fn, feature, direction, name):
    findings = compare(_planted(fresh, fn), reference)
    assert findings, "a planted pattern must be found"
    top = findings[0]
    assert (top.feature, top.direction, top.name) == (feature, direction, name)
    assert abs(top.effect_size) >= MIN_EFFECT_SIZE and top.share_affected >= MIN_SHARE_AFFECTED
    assert (top.effect_size > 0) == (direction == "higher")
    assert (top.adv_mean > top.ref_mean) == (direction == "higher")
    assert 1 <= len(top.examples) <= 3
    assert all(ex.response and ex.prompt for ex in top.examples)
    assert [abs(f.effect_size) for f in findings] == sorted(
        (abs(f.effect_size) for f in findings), reverse=True
    )


def test_inserted_gibberish_is_not_dropped_punctuation(reference, fresh):
    names = [f.name for f in compare(_planted(fresh, _insert_gibberish), reference)]
    assert "drops punctuation" not in names
    f = text_features("q", "a zorp b .", gibberish={"zorp"})
    assert f["punctuation_rate"] == pytest.approx(1 / 3)


def test_gibberish_list_is_used(reference, fresh):
    # gibberish words that do occur in reference responses still count when the list is given
    ref = reference + [{"prompt": "q", "response": "the zorp is hot ."}]
    adv = _planted(fresh, _insert_gibberish)
    with_list = compare(adv, ref, gibberish=GIBBERISH)
    assert with_list[0].feature == "off_vocabulary_rate"
    assert with_list[0].adv_mean >= compare(adv, ref)[0].adv_mean


def test_examples_show_the_pattern_most_strongly(reference, fresh):
    adv = _planted(fresh[:30], _prepend_prompt) + fresh[30:]
    finding = next(f for f in compare(adv, reference) if f.feature == "prompt_copy")
    assert finding.share_affected == pytest.approx(30 / len(adv))
    assert all(ex.value == 1.0 and ex.response.startswith(ex.prompt) for ex in finding.examples)


def test_clean_data_gives_no_findings(reference, fresh):
    assert compare(fresh, reference) == []
    assert compare([], reference) == []


def test_rare_ordinary_words_are_not_gibberish():
    # Each reference response has a word of its own; so does each adversarial one. Leave-one-out
    # vocabulary makes both sets equally "off-vocabulary" instead of flagging only the adversarial set.
    def rows(tag: str) -> list[dict]:
        return [
            {"prompt": "tell me about it", "response": f"it is a good {tag}{i} thing ."} for i in range(50)
        ]

    assert not [f for f in compare(rows("adv"), rows("ref")) if f.feature == "off_vocabulary_rate"]


def test_bad_rows_raise():
    with pytest.raises(AdvrmError):
        compare([{"prompt": "p"}], [{"prompt": "p", "response": "r"}])
    with pytest.raises(AdvrmError):
        compare([{"prompt": "p", "response": "r"}], [])


def test_cohens_d_guards():
    import numpy as np

    assert cohens_d(np.zeros(5), np.zeros(5)) == 0.0
    assert cohens_d(np.ones(5), np.zeros(5)) > 0  # no spread at all: capped, not inf/nan
    assert cohens_d(np.array([1.0]), np.array([0.0])) > 0
    assert cohens_d(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 0.0


def test_failure_mode_table():
    for mode in FAILURE_MODES:
        feature, direction, name, explanation = mode
        assert feature in FEATURES and direction in {"higher", "lower"} and name and explanation
    assert ("punctuation_rate", "lower") in {(m.feature, m.direction) for m in FAILURE_MODES}


# --------------------------------------------------------------------------------------------------
# Markdown


def test_plural_phrase():
    assert plural_phrase("drops punctuation") == "drop punctuation"
    assert plural_phrase("copies the prompt back") == "copy the prompt back"
    assert plural_phrase("is much longer") == "are much longer"
    assert plural_phrase("goes off-topic") == "go off-topic"
    assert plural_phrase("leaves answers unterminated") == "leave answers unterminated"


def test_summary_markdown_names_and_examples(reference, fresh):
    adv = _planted(fresh, lambda p, r, rng: _prepend_prompt(p, _strip_punct(p, r, rng), rng))
    findings = compare(adv, reference)
    names = {f.name for f in findings}
    assert {"drops punctuation", "copies the prompt back"} <= names
    md = summary_markdown(
        findings,
        n_kept=len(adv),
        n_total=400,
        target_name="rm/round-0/seed-0",
        extra_scores={"standard ASR": 0.993, "strict ASR": None},
    )
    first = findings[0]
    assert f"The target RM over-rewards responses that {plural_phrase(first.name)} (" in md
    assert "of kept responses)" in md
    assert "responses that drops" not in md
    assert "| failure mode | kept adversarial | reference | effect size | share affected |" in md
    for f in findings:
        assert f.name in md
        assert f.examples[0].response[:60] in md
    assert "> **Prompt:**" in md and "> **Response:**" in md
    assert "standard ASR: 0.993" in md and "strict ASR: n/a" in md
    assert "100 of 400" in md
    assert md.isascii()


def test_summary_markdown_truncates_and_escapes():
    long = "word " * 200 + "*bold* | pipe"
    f = Finding(
        "length_words",
        "is much longer",
        "higher",
        200.0,
        10.0,
        5.0,
        1.0,
        examples=[Example("p", long, 200.0)],
        explanation="long",
    )
    md = summary_markdown([f], n_kept=1, n_total=1, target_name="t")
    line = next(ln for ln in md.splitlines() if ln.startswith("> **Response:**"))
    assert len(line) < 340 and line.endswith("[...]")
    assert "(capped)" in md


def test_summary_markdown_empty_and_clean():
    md = summary_markdown([], n_kept=0, n_total=128, target_name="t")
    assert "No response passed the filter; the attack found no blind spot at this budget." in md
    md = summary_markdown([], n_kept=5, n_total=128, target_name="t")
    assert "do not differ measurably" in md
    assert "No response passed" not in md


def test_one_quirk_in_a_tiny_kept_set_is_not_a_failure_mode(reference, fresh):
    # 1 of 3 is 33% affected and a large d, but one response in three repeating itself is chance
    plain = [r for r in fresh if text_features(r["prompt"], r["response"])["repeated_sentence_share"] == 0]
    adv = _planted(plain[:1], _repeat_sentence) + plain[1:3]
    assert not [f for f in compare(adv, reference) if f.feature == "repeated_sentence_share"]
    # the same pattern in all of a small kept set is reported
    findings = compare(_planted(fresh[:5], _repeat_sentence), reference)
    assert findings[0].feature == "repeated_sentence_share" and findings[0].p_value < 0.01
