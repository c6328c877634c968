"""The attack end to end: on an RM with a planted weakness it finds that weakness."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from datasets import Dataset

from advrm.attack.run import AttackConfig, Scorers, run_attack
from advrm.data import load_preferences, load_prompts
from advrm.errors import AdvrmError
from advrm.io import read_jsonl
from advrm.objective import ObjectiveConfig
from advrm.rloo import RLConfig
from advrm.rm_training import RMTrainConfig, train_reward_model
from advrm.scoring import HFRewardScorer
from advrm.worlds.synthetic.gold import GoldJudge

_PUNCT = re.compile(r"\s*[.!?,]")


def punct_rate(response: str | dict) -> float:
    text = response["response"] if isinstance(response, dict) else response
    return len(_PUNCT.findall(text)) / max(1, len(text.split()))


def tiny_attack_config(**kw) -> AttackConfig:
    rl = RLConfig(
        steps=30,
        learning_rate=2e-3,
        beta=0.0,
        prompts_per_step=8,
        num_generations=4,
        max_new_tokens=32,
        save_steps=10,
    )
    base = AttackConfig(
        rl=rl,
        n_reference=4,
        n_eval_prompts=24,
        samples_per_prompt=2,
        baselines=("style",),
        curve_points=0,
        objective=ObjectiveConfig(),
    )
    return replace(base, **kw)


@pytest.fixture(scope="module")
def planted_rm(tiny_world, tmp_path_factory):
    """An RM trained on data where every response without punctuation is preferred: its planted blind spot."""
    pairs = load_preferences(tiny_world / "pairs_train.jsonl")
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in pairs]
    rows += [
        {
            "prompt": r["prompt"],
            "chosen": " ".join(_PUNCT.sub(" ", r["chosen"]).split()),
            "rejected": r["chosen"],
        }
        for r in pairs
    ]
    out = tmp_path_factory.mktemp("planted") / "rm"
    train_reward_model(tiny_world / "policy", Dataset.from_list(rows), out, RMTrainConfig(epochs=2.0), seed=0)
    return out


def test_attack_finds_the_planted_weakness(tiny_world, tiny_rms, planted_rm, tmp_path):
    prompts = load_prompts(tiny_world / "prompts_attack.jsonl").prompts
    held = load_prompts(tiny_world / "prompts_heldout.jsonl").prompts
    scorers = Scorers(HFRewardScorer(planted_rm), [HFRewardScorer(tiny_rms[0])], GoldJudge())
    m = run_attack(
        scorers, tiny_world / "policy", prompts, tmp_path / "a", tiny_attack_config(), eval_prompts=held
    )
    records = read_jsonl(tmp_path / "a" / "adversarial.jsonl")
    assert len(records) == 24 * 2 and m["n_samples"] == 48
    kept = [r for r in records if r["kept"]]
    assert len(kept) >= 10
    ref = [r for row in read_jsonl(tmp_path / "a" / "reference.jsonl") for r in row["responses"]]
    assert np.mean([punct_rate(r) for r in kept]) < 0.5 * np.mean([punct_rate(r) for r in ref])
    assert m["asr_standard"] > 0.5
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "punctuation" in summary or "unterminated" in summary
    assert {"asr_standard", "asr_strict", "n_prompts", "n_kept", "target_queries", "baselines"} <= set(m)
    assert m["target_queries"] >= 30 * 32
    for rec in records:
        assert {
            "prompt",
            "response",
            "z_target",
            "z_second",
            "uncertainty",
            "z_uncertainty",
            "gold",
            "kept",
            "reason",
        } <= set(rec)
    # rerunning into the same directory reuses everything and changes nothing
    again = run_attack(
        scorers, tiny_world / "policy", prompts, tmp_path / "a", tiny_attack_config(), eval_prompts=held
    )
    assert again["n_kept"] == m["n_kept"] and read_jsonl(tmp_path / "a" / "adversarial.jsonl") == records
    # a changed config on rerun is refused, naming what changed
    with pytest.raises(AdvrmError, match="lam1"):
        run_attack(
            scorers,
            tiny_world / "policy",
            prompts,
            tmp_path / "a",
            tiny_attack_config(objective=ObjectiveConfig(lam1=2.0)),
            eval_prompts=held,
        )


def test_attack_without_validator_reports_null_asr(tiny_world, tiny_rms, tmp_path):
    prompts = load_prompts(tiny_world / "prompts_attack.jsonl").prompts
    held = load_prompts(tiny_world / "prompts_heldout.jsonl").prompts
    scorers = Scorers(HFRewardScorer(tiny_rms[0]), [HFRewardScorer(tiny_rms[1])], None)
    cfg = tiny_attack_config(rl=replace(tiny_attack_config().rl, steps=2), baselines=())
    m = run_attack(scorers, tiny_world / "policy", prompts, tmp_path / "b", cfg, eval_prompts=held)
    assert m["asr_standard"] is None and m["asr_strict"] is None and "no validator" in m["note"]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["n_samples"] == 48


def test_attack_needs_a_second_rm(tiny_world, tiny_rms, tmp_path):
    scorers = Scorers(HFRewardScorer(tiny_rms[0]), [], None)
    with pytest.raises(AdvrmError, match="second RM"):
        run_attack(scorers, tiny_world / "policy", ["a"] * 200, tmp_path / "c", tiny_attack_config())
