"""``advrm harden``: rounds of attack -> keep -> augment -> retrain (method.md section 4).

Round r's RMs are trained from scratch, with the same seeds as the baseline, on the original pairs
plus every adversarial pair harvested so far. A pair is

    chosen   = an in-distribution reference-policy response to the prompt (no new labels needed),
    rejected = a kept adversarial response (target fooled, U an outlier).

Adversarial pairs are harvested on the attack-training prompts; ASR is always measured by a fresh
attack on held-out prompts, so a round's score never sees its own training data. Layout:

    rm/round-R/seed-K/      RMs of round R (round 0 = conventional)
    attack/round-R/         the attack on round R's RMs (its ASR is round R's row)
    adv_pairs/round-R.jsonl pairs harvested from attack/round-(R-1), added to train round R
    harden.json             one row per round: asr_standard, asr_strict, rm_accuracy, pairs_added
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets

from .attack.run import AttackConfig, Judge, Scorers, prepare_judge, run_attack, sample_policy, split_prompts
from .io import atomic_write_json, read_jsonl, write_jsonl
from .manifest import Manifest, run_stage
from .objective import keep_mask
from .rm_eval import evaluate_pairs
from .rm_training import RMTrainConfig, train_reward_model
from .scoring import HFRewardScorer, Scorer


@dataclass(frozen=True)
class HardenConfig:
    rounds: int = field(default=2, metadata={"min": 1})
    pairs_per_round: int = field(default=1000, metadata={"min": 1})
    seeds: tuple[int, ...] = field(
        default=(0, 1), metadata={"help": "RM seeds trained each round; seeds[0] is the attack's target"}
    )
    n_second: int = field(
        default=1,
        metadata={
            "min": 1,
            "help": "second RMs of the attack: seeds[1 : 1 + n_second] (the paper "
            "uses one; more seeds can still be trained, e.g. for ensemble baselines)",
        },
    )
    harvest_samples_per_prompt: int = field(default=8, metadata={"min": 1})
    rm: RMTrainConfig = RMTrainConfig()
    attack: AttackConfig = AttackConfig()
    baselines_every_round: bool = field(
        default=False, metadata={"help": "run attack baselines in every round, not only round 0"}
    )

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise ValueError("seeds needs at least two RM seeds: a target and a second RM")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds {list(self.seeds)} repeat a seed; the target and second RMs need distinct seeds"
            )
        if self.n_second > len(self.seeds) - 1:
            raise ValueError(
                f"n_second={self.n_second} but only {len(self.seeds) - 1} seeds after the target"
            )


def harvest(
    judge: Judge, adv_policy: Path, prompts: list[str], cfg: HardenConfig, *, round_: int
) -> list[dict]:
    """Sample the adversarial policy on ``prompts``; pair every kept response with a reference response."""
    gens = sample_policy(
        adv_policy,
        prompts,
        cfg.harvest_samples_per_prompt,
        cfg.attack.rl.max_new_tokens,
        cfg.attack.seed + 4000 + round_,
    )
    flat_p = [p for p in prompts for _ in range(cfg.harvest_samples_per_prompt)]
    flat_r = gens.flat_texts()
    s = judge.score(flat_p, flat_r)
    kept = keep_mask(s["z_target"], s["z_uncertainty"], cfg.attack.objective.tau)
    kept &= ~np.asarray(gens.flat_truncated())
    rng = random.Random(cfg.attack.seed + round_)
    rows = []
    for i in np.flatnonzero(kept):
        p = flat_p[i]
        refs = judge.ref.responses[judge.index[p]]
        row = {
            "prompt": p,
            "chosen": rng.choice(refs[1:] or refs),
            "rejected": flat_r[i],
            "source": f"adversarial-round-{round_}",
            "z_target": float(s["z_target"][i]),
            "z_uncertainty": float(s["z_uncertainty"][i]),
        }
        rows.append(row)
    rng.shuffle(rows)
    return rows[: cfg.pairs_per_round]


def rm_paths(out: Path, round_: int, seeds: tuple[int, ...]) -> list[Path]:
    return [out / "rm" / f"round-{round_}" / f"seed-{s}" for s in seeds]


def train_round(
    base: Path,
    data: Dataset,
    out: Path,
    round_: int,
    cfg: HardenConfig,
    manifest: Manifest,
    inputs: list[Path],
) -> list[Path]:
    paths = rm_paths(out, round_, cfg.seeds)
    for seed, path in zip(cfg.seeds, paths, strict=True):
        run_stage(
            manifest,
            f"rm/round-{round_}/seed-{seed}",
            {"rm": cfg.rm, "seed": seed, "n_pairs": len(data)},
            [path],
            lambda s=seed, p=path: train_reward_model(base, data, p, cfg.rm, seed=s),
            inputs=inputs,
        )
    return paths


def run_harden(
    base_policy: Path,
    pairs: Dataset,
    heldout_pairs: Dataset | None,
    prompts: list[str],
    out: Path,
    cfg: HardenConfig,
    *,
    eval_prompts: list[str] | None = None,
    validator: Scorer | None = None,
    log=print,
) -> dict:
    """All rounds; returns (and writes) ``harden.json``."""
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(out)
    train_prompts, eval_prompts = split_prompts(prompts, eval_prompts, cfg.attack)
    base_cols = [c for c in ("prompt", "chosen", "rejected") if c in pairs.column_names]
    data = pairs.select_columns(base_cols)
    rows: list[dict] = []
    adv_files: list[Path] = []
    for r in range(cfg.rounds + 1):
        if r > 0:
            adv = read_jsonl(adv_files[-1])
            extra = Dataset.from_list([{k: row[k] for k in base_cols} for row in adv]) if adv else None
            data = concatenate_datasets([data, extra]) if extra is not None else data
        log(f"round {r}: training {len(cfg.seeds)} RMs on {len(data)} pairs")
        rms = train_round(base_policy, data, out, r, cfg, manifest, adv_files[-1:])
        scorers = Scorers(
            HFRewardScorer(rms[0], name=f"round-{r}/seed-{cfg.seeds[0]}"),
            [
                HFRewardScorer(p, name=f"round-{r}/seed-{s}")
                for p, s in zip(rms[1 : 1 + cfg.n_second], cfg.seeds[1 : 1 + cfg.n_second], strict=True)
            ],
            validator,
        )
        attack_cfg = (
            cfg.attack if (r == 0 or cfg.baselines_every_round) else replace(cfg.attack, baselines=())
        )
        attack_dir = out / "attack" / f"round-{r}"
        log(f"round {r}: attacking {rms[0]}")
        metrics = run_attack(
            scorers,
            base_policy,
            train_prompts + eval_prompts,
            attack_dir,
            attack_cfg,
            eval_prompts=eval_prompts,
            target_name=f"round-{r} RM (seed {cfg.seeds[0]})",
        )
        accuracy = evaluate_pairs(scorers.target, heldout_pairs) if heldout_pairs is not None else {}
        rows.append(
            {
                "round": r,
                "asr_standard": metrics["asr_standard"],
                "asr_strict": metrics["asr_strict"],
                "n_kept": metrics["n_kept"],
                "rm_accuracy": accuracy.get("accuracy_vs_gold", accuracy.get("accuracy_vs_labels")),
                "rm_accuracy_vs_labels": accuracy.get("accuracy_vs_labels"),
                "pairs_added": len(read_jsonl(adv_files[-1])) if r > 0 else 0,
                "n_train_pairs": len(data),
                "failure_modes": metrics["failure_modes"],
            }
        )
        if r < cfg.rounds:
            judge = prepare_judge(scorers, base_policy, train_prompts, eval_prompts, attack_dir, attack_cfg)
            path = out / "adv_pairs" / f"round-{r + 1}.jsonl"
            if not path.exists():
                write_jsonl(path, harvest(judge, attack_dir / "policy", train_prompts, cfg, round_=r + 1))
            adv_files.append(path)
            log(f"round {r}: harvested {len(read_jsonl(path))} adversarial pairs -> {path}")
        atomic_write_json(out / "harden.json", {"rounds": rows, "wall_seconds": time.time() - start})
    return {"rounds": rows, "wall_seconds": time.time() - start}
