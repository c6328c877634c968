"""advrm.rlhf: a tiny end-to-end RLHF run, its artifacts, and resume giving the uninterrupted curve."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ADVRM_FORCE_CPU", "1")

import copy
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from advrm.errors import AdvrmError
from advrm.rlhf import CURVE_FIELDS, CurveLog, RLHFConfig, StandardizedReward, run_rlhf
from advrm.scoring import CallableScorer
from advrm.worlds.synthetic.gold import GoldJudge
from advrm.worlds.synthetic.grammar import all_prompts
from advrm.worlds.synthetic.policy import PolicyConfig, new_policy
from advrm.worlds.synthetic.tokenizer import build_tokenizer

PROMPTS = all_prompts()
TRAIN, EVAL = PROMPTS[:32], PROMPTS[-8:]


# The reference policy's own architecture (advrm.worlds.synthetic.policy), shrunk: hidden 32, 1 layer.
TINY = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run 20x faster on one thread than on two contended ones (measured on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tok = build_tokenizer()
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    policy = new_policy(tok, TINY)
    policy.generation_config.pad_token_id = tok.pad_token_id
    policy.generation_config.eos_token_id = tok.eos_token_id
    policy.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    rms = []
    for k in range(2):
        torch.manual_seed(10 + k)
        cfg = copy.deepcopy(policy.config)
        cfg.num_labels = 1
        rm = AutoModelForSequenceClassification.from_config(cfg)
        rm.save_pretrained(root / f"rm-{k}")
        tok.save_pretrained(root / f"rm-{k}")
        rms.append(root / f"rm-{k}")
    return root / "policy", rms


def small_cfg(steps: int, **kw) -> RLHFConfig:
    # 4 prompts x 2 samples of 8 tokens per step; a checkpoint every 2 steps so that runs can resume.
    rl = replace(RLHFConfig().rl, steps=steps, learning_rate=3e-3, num_generations=2, prompts_per_step=4)
    rl = replace(rl, max_new_tokens=8, save_steps=2)
    return RLHFConfig(rl=rl, eval_every=2, n_eval_prompts=6, n_ref_prompts=8, **kw)


def read_curve(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def gold() -> GoldJudge:
    return GoldJudge()


def run_ensemble(policy, rms, out):
    cfg = small_cfg(4, reward="ensemble_mean_minus_std")
    return run_rlhf(policy, rms, TRAIN, EVAL, out, cfg, seed=0, validator=gold(), reward_name="ens-mms")


def test_end_to_end_artifacts(world, tmp_path):
    policy, rms = world
    out = tmp_path / "run"
    m = run_ensemble(policy, rms, out)
    rows = read_curve(out / "curve.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    assert tuple(rows[0]) == CURVE_FIELDS
    assert all(r["gold"] != "" and r["proxy"] != "" for r in rows)
    assert float(rows[0]["kl"]) == pytest.approx(0.0, abs=1e-6)  # the policy is the reference at step 0
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in (
        "onset",
        "peak_gold",
        "final_gold",
        "curve",
        "config",
        "seed",
        "reward_name",
        "wall_seconds",
        "reward_standardization",
    ):
        assert key in on_disk
    assert on_disk["reward_name"] == "ens-mms" and on_disk["seed"] == 0
    assert on_disk["curve"]["steps"] == [0, 2, 4] and m["curve"] == on_disk["curve"]
    assert set(on_disk["onset"]) >= {"onset_step", "peak_step", "peak_gold", "final_gold", "censored"}
    # Finished: a rerun returns the metrics without training again.
    again = run_ensemble(policy, rms, out)
    assert again == on_disk


def test_resume_gives_the_uninterrupted_curve(world, tmp_path):
    policy, rms = world
    single = [rms[0]]
    kw = {"seed": 1, "validator": gold(), "reward_name": "rm-0"}
    run_rlhf(policy, single, TRAIN, EVAL, tmp_path / "full", small_cfg(4), **kw)
    run_rlhf(policy, single, TRAIN, EVAL, tmp_path / "resumed", small_cfg(2), **kw)
    assert [int(r["step"]) for r in read_curve(tmp_path / "resumed" / "curve.csv")] == [0, 2]
    m = run_rlhf(policy, single, TRAIN, EVAL, tmp_path / "resumed", small_cfg(4), **kw)
    assert m["resumed_from_step"] == 2
    assert read_curve(tmp_path / "resumed" / "curve.csv") == read_curve(tmp_path / "full" / "curve.csv")
    # Another config into the same directory is refused.
    with pytest.raises(AdvrmError, match="another config"):
        run_rlhf(policy, single, TRAIN, EVAL, tmp_path / "resumed", replace(small_cfg(4), k=2.0), **kw)


def test_curve_log_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "curve.csv"
    log = CurveLog(path)
    log.append({k: (0 if k == "step" else 1.5) for k in CURVE_FIELDS})
    log.close()
    with open(path, "a") as f:
        f.write("2,1.0,0.5")  # killed in the middle of a row
    log = CurveLog(path)
    assert list(log.rows) == [0] and log.rows[0]["gold"] == 1.5
    log.append({k: (2 if k == "step" else float("nan")) for k in CURVE_FIELDS})
    log.close()
    rows = read_curve(path)
    assert [r["step"] for r in rows] == ["0", "2"] and rows[1]["gold"] == ""


def test_standardized_reward_puts_members_on_one_scale():
    a = CallableScorer(lambda p, r: [float(len(x)) for x in r], "len")
    b = CallableScorer(lambda p, r: [100.0 + 10.0 * len(x) for x in r], "len-shifted")
    responses = ["a", "abc", "abcde"]
    prompts = ["q"] * 3
    raw = np.array([[1.0, 3.0, 5.0], [110.0, 130.0, 150.0]])
    mu, sigma = raw.mean(axis=1), raw.std(axis=1)
    r = StandardizedReward([a, b], "ensemble_mean_minus_std", 1.0, mu, sigma, name="x")
    s = r.standardized_matrix(prompts, responses)
    assert np.allclose(s[0], s[1])  # same ranking, different offset and scale: identical after standardizing
    assert np.allclose(r.score(prompts, responses), s[0])  # members agree: no std penalty


def test_argument_errors(world, tmp_path):
    policy, rms = world
    with pytest.raises(AdvrmError, match="exactly one"):
        run_rlhf(policy, rms, TRAIN, EVAL, tmp_path, small_cfg(2), seed=0, validator=None, reward_name="x")
    with pytest.raises(AdvrmError, match="at least two"):
        run_rlhf(
            policy,
            rms[:1],
            TRAIN,
            EVAL,
            tmp_path,
            small_cfg(2, reward="ensemble_mean"),
            seed=0,
            validator=None,
            reward_name="x",
        )
    with pytest.raises(AdvrmError, match="seed"):
        cfg = small_cfg(2)
        run_rlhf(
            policy, rms[:1], TRAIN, EVAL, tmp_path, cfg, seed=cfg.eval_seed, validator=None, reward_name="x"
        )
