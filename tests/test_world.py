"""The synthetic world: the gold judge rewards what it should, and the same seed gives the same world."""

import json
import random

import numpy as np

from advrm.io import read_jsonl
from advrm.transforms import off_distribution_transforms
from advrm.worlds.synthetic.gold import GoldJudge
from advrm.worlds.synthetic.grammar import ResponseGenerator, all_prompts, prompt_topic_and_nouns
from advrm.worlds.synthetic.vocab import GIBBERISH, LEXICON, split_words

PROMPT = "tell me about the soup ."
GOOD = "the soup heats the oven . the hot bread mixes the sauce . the onion is very salty ."


def test_gold_prefers_good_answers_over_each_failure_mode():
    judge = GoldJudge()
    good = judge.score_one(PROMPT, GOOD)
    rng = random.Random(0)
    for name, fn in off_distribution_transforms(GIBBERISH).items():
        bad = fn(PROMPT, GOOD, rng)
        assert judge.score_one(PROMPT, bad) < good - 0.3, name
    off_topic = "the rain falls on the cloud . the wind blows the storm ."
    assert judge.score_one(PROMPT, off_topic) < good - 1.0
    assert judge.score_one(PROMPT, "") < judge.score_one(PROMPT, "the soup boils .")


def test_gold_completeness_saturates_and_length_is_penalized():
    judge = GoldJudge()
    one = judge.score_one(PROMPT, "the soup heats the oven .")
    three = judge.score_one(PROMPT, GOOD)
    assert three > one
    sentences = [
        f"the {n} {v} the {m} ."
        for n in ("soup", "bread", "sauce")
        for v in ("heats", "mixes")
        for m in ("oven", "knife")
    ]
    long = judge.score_one(PROMPT, " ".join(sentences))  # 12 distinct good sentences, 72 words
    assert long < three
    comps = judge.explain(PROMPT, " ".join(sentences))
    assert comps["over_length"] > 1.0 and comps["completeness"] > 1.9


def test_gold_components_name_the_failure():
    judge = GoldJudge()
    assert judge.explain(PROMPT, GOOD.replace(" .", ""))["unterminated"] == 1.0
    assert judge.explain(PROMPT, PROMPT + " " + GOOD)["prompt_copy"] > 0
    assert judge.explain(PROMPT, GOOD + " " + GOOD)["repetition"] > 0
    assert judge.explain(PROMPT, "the soup zorp heats the oven .")["gibberish"] > 0


def test_generator_follows_the_grammar_mostly():
    gen, judge, rng = ResponseGenerator(), GoldJudge(), random.Random(1)
    prompts = all_prompts()
    scores = []
    for _ in range(300):
        p = rng.choice(prompts)
        topic, nouns = prompt_topic_and_nouns(split_words(p), LEXICON.word_topic, LEXICON.word_class)
        scores.append(judge.score_one(p, gen.response(rng, topic, nouns)))
    assert 2.0 < np.median(scores) < 4.5
    assert np.std(scores) > 0.5  # quality varies, so preference pairs carry signal


def test_world_build_outputs_and_ceiling(tiny_world):
    summary = json.loads((tiny_world / "world.json").read_text())
    assert summary["n_prompts"]["heldout"] == 48
    train = {r["prompt"] for r in read_jsonl(tiny_world / "prompts_train.jsonl")}
    held = {r["prompt"] for r in read_jsonl(tiny_world / "prompts_heldout.jsonl")}
    assert not train & held
    pairs = read_jsonl(tiny_world / "pairs_train.jsonl")
    assert {"prompt", "chosen", "rejected", "gold_chosen", "gold_rejected"} <= set(pairs[0])
    # Bradley-Terry labels agree with gold more often than chance, but not always (noise).
    assert 0.65 < summary["label_gold_agreement_train"] < 0.99
    assert (tiny_world / "policy" / "model.safetensors").exists()


def test_same_seed_same_world(tiny_world, tmp_path):
    from conftest import tiny_world_config

    from advrm.worlds.synthetic.build import build_world

    build_world(tmp_path / "again", tiny_world_config())
    assert (tmp_path / "again" / "pairs_train.jsonl").read_text() == (
        tiny_world / "pairs_train.jsonl"
    ).read_text()
    assert (tmp_path / "again" / "prompts_attack.jsonl").read_bytes() == (
        tiny_world / "prompts_attack.jsonl"
    ).read_bytes()
