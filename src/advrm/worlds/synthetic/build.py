"""``advrm world build``: prompts, reference policy, preference pairs and gold scores in one directory.

Same seed, same world: every random choice flows from ``WorldConfig.seed`` through dedicated
generators (``random.Random`` for the grammar and splits, ``numpy`` for the Bradley-Terry labels,
torch seeds for training and sampling).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ...io import atomic_dir, atomic_write_json, write_jsonl
from ...manifest import pin_config
from ...models import generate
from .gold import GoldJudge
from .grammar import all_prompts
from .policy import PolicyConfig, train_policy
from .tokenizer import build_tokenizer

Preset = Literal["quick", "full"]


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the synthetic world. ``quick`` builds in well under a minute; ``full`` is the headline."""

    preset: Preset = "full"
    seed: int = 0
    n_attack_prompts: int = field(default=384, metadata={"min": 1})
    n_heldout_prompts: int = field(default=256, metadata={"min": 1})
    n_train_pairs: int = field(default=4000, metadata={"min": 1})
    n_heldout_pairs: int = field(default=500, metadata={"min": 1})
    label_beta: float = field(
        default=3.0,
        metadata={
            "min": 0.0,
            "help": "Bradley-Terry label noise: P(a > b) = sigmoid(beta * (gold(a) - gold(b)))",
        },
    )
    max_new_tokens: int = field(default=64, metadata={"min": 8})
    policy: PolicyConfig = PolicyConfig()

    @classmethod
    def preset_config(cls, preset: Preset, seed: int = 0) -> WorldConfig:
        if preset == "quick":
            return cls(
                preset="quick",
                seed=seed,
                n_attack_prompts=128,
                n_heldout_prompts=128,
                n_train_pairs=1000,
                n_heldout_pairs=200,
                policy=replace(PolicyConfig(), hidden_size=64, corpus_size=8000, epochs=1.0),
            )
        return cls(preset="full", seed=seed)


def split_prompts(cfg: WorldConfig) -> dict[str, list[str]]:
    """Disjoint train / attack / held-out prompt sets (the attack never trains on held-out prompts)."""
    prompts = all_prompts()
    random.Random(cfg.seed).shuffle(prompts)
    a, h = cfg.n_attack_prompts, cfg.n_heldout_prompts
    return {"heldout": prompts[:h], "attack": prompts[h : h + a], "train": prompts[h + a :]}


def label_pairs(
    prompts: list[str], samples: list[list[str]], gold: np.ndarray, beta: float, rng: np.random.Generator
) -> list[dict]:
    """Bradley-Terry labels from gold: a is chosen over b with probability sigmoid(beta * (g_a - g_b))."""
    rows = []
    for i, (p, (a, b)) in enumerate(zip(prompts, samples, strict=True)):
        g_a, g_b = gold[i]
        a_wins = rng.random() < 1.0 / (1.0 + np.exp(-beta * (g_a - g_b)))
        chosen, rejected, g_c, g_r = (a, b, g_a, g_b) if a_wins else (b, a, g_b, g_a)
        rows.append(
            {
                "prompt": p,
                "chosen": chosen,
                "rejected": rejected,
                "gold_chosen": float(g_c),
                "gold_rejected": float(g_r),
            }
        )
    return rows


def sample_pairs(
    policy, tokenizer, prompts: list[str], n_pairs: int, cfg: WorldConfig, *, seed: int
) -> list[dict]:
    rng = random.Random(seed)
    pair_prompts = [rng.choice(prompts) for _ in range(n_pairs)]
    gens = generate(
        policy,
        tokenizer,
        pair_prompts,
        n_per_prompt=2,
        max_new_tokens=cfg.max_new_tokens,
        seed=seed,
        show_progress=True,
    )
    judge = GoldJudge()
    flat_p = [p for p in pair_prompts for _ in range(2)]
    flat_r = [r for pair in gens.texts for r in pair]
    gold = judge.score(flat_p, flat_r).reshape(n_pairs, 2)
    rows = label_pairs(pair_prompts, gens.texts, gold, cfg.label_beta, np.random.default_rng(seed))
    # An empty sample (eos first) is not a response anyone would label; such pairs are dropped.
    return [r for r in rows if r["chosen"].strip() and r["rejected"].strip()]


def gold_ceiling(rows: list[dict]) -> float:
    """How often the noisy labels agree with gold's strict ordering (ties excluded): the RM's ceiling."""
    decided = [r for r in rows if r["gold_chosen"] != r["gold_rejected"]]
    return (
        float(np.mean([r["gold_chosen"] > r["gold_rejected"] for r in decided])) if decided else float("nan")
    )


def build_world(out: Path, cfg: WorldConfig) -> dict:
    """Build the world into ``out``; returns the ``world.json`` summary."""
    out.mkdir(parents=True, exist_ok=True)
    pin_config(
        out / "world_config.json", "the world build", cfg
    )  # a rerun resumes; another config is refused
    splits = split_prompts(cfg)
    for name, prompts in splits.items():
        write_jsonl(out / f"prompts_{name}.jsonl", [{"prompt": p} for p in prompts])
    tokenizer = build_tokenizer()
    policy = train_policy(splits["train"], tokenizer, cfg.policy, seed=cfg.seed, work_dir=out / ".tmp-policy")
    with atomic_dir(out / "policy") as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    train_pairs = sample_pairs(policy, tokenizer, splits["train"], cfg.n_train_pairs, cfg, seed=cfg.seed + 1)
    heldout_pairs = sample_pairs(
        policy, tokenizer, splits["heldout"], cfg.n_heldout_pairs, cfg, seed=cfg.seed + 2
    )
    write_jsonl(out / "pairs_train.jsonl", train_pairs)
    write_jsonl(out / "pairs_heldout.jsonl", heldout_pairs)
    golds = [g for r in heldout_pairs for g in (r["gold_chosen"], r["gold_rejected"])]
    summary = {
        "config": asdict(cfg),
        "n_prompts": {k: len(v) for k, v in splits.items()},
        "n_policy_parameters": sum(p.numel() for p in policy.parameters()),
        "reference_gold_mean": float(np.mean(golds)),
        "reference_gold_std": float(np.std(golds)),
        "label_gold_agreement_train": gold_ceiling(train_pairs),
        "label_gold_agreement_heldout": gold_ceiling(heldout_pairs),
    }
    atomic_write_json(out / "world.json", summary)
    return summary
