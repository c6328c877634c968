"""One RL loop for everything: RLOO through TRL's ``RLOOTrainer`` with a reward callable.

The attack (reward = Adv-RM objective), the plain-RLHF baseline (reward = the target RM) and the
downstream RLHF study (reward = an RM, an ensemble, or the hardened RM) all call :func:`train_rloo`.
TRL handles generation (optionally with vLLM), the leave-one-out baseline, the KL penalty to the
starting policy and, under ``accelerate launch``, multi-GPU / multi-node training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback
from trl import RLOOConfig, RLOOTrainer

from .models import load_policy, load_tokenizer
from .trl_args import common_trainer_args


@dataclass(frozen=True)
class RLConfig:
    steps: int = field(default=200, metadata={"min": 1, "help": "optimizer steps"})
    learning_rate: float = field(default=5e-4, metadata={"min": 0.0})
    beta: float = field(default=0.01, metadata={"min": 0.0, "help": "KL penalty to the starting policy"})
    num_generations: int = field(default=4, metadata={"min": 2, "help": "samples per prompt (leave-one-out)"})
    prompts_per_step: int = field(default=16, metadata={"min": 1})
    max_new_tokens: int = field(default=64, metadata={"min": 1})
    temperature: float = field(default=1.0, metadata={"min": 0.01})
    save_steps: int = field(default=50, metadata={"min": 1, "help": "checkpoint every N steps (resume)"})
    use_vllm: bool = field(default=False, metadata={"help": "generate with vLLM (GPU; TRL colocate mode)"})


RewardFn = Callable[..., list[float | None]]


def rloo_config(cfg: RLConfig, out_dir: Path, seed: int) -> RLOOConfig:
    batch = cfg.prompts_per_step * cfg.num_generations
    extra: dict[str, Any] = {"use_vllm": True, "vllm_mode": "colocate"} if cfg.use_vllm else {}
    return RLOOConfig(
        **common_trainer_args(
            out_dir,
            seed=seed,
            learning_rate=cfg.learning_rate,
            batch_size=batch,
            logging_steps=10,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=1,
            save_only_model=False,
        ),
        max_steps=cfg.steps,
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        lr_scheduler_type="constant",
        warmup_steps=0,
        log_completions=False,
        **extra,
    )


def train_rloo(
    policy_dir: Path,
    reward_fn: RewardFn,
    prompts: Sequence[str],
    cfg: RLConfig,
    out_dir: Path,
    *,
    seed: int,
    callbacks: Sequence[TrainerCallback] = (),
    trust_remote_code: bool = False,
):
    """Train a policy with RLOO from ``policy_dir`` against ``reward_fn``; resumes from the last checkpoint
    in ``out_dir`` if one exists. Returns the trained model (in eval mode) and its tokenizer."""
    tokenizer = load_tokenizer(policy_dir, trust_remote_code=trust_remote_code)
    model = load_policy(policy_dir, trust_remote_code=trust_remote_code)
    dataset = Dataset.from_dict({"prompt": list(prompts)})
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=reward_fn,
        args=rloo_config(cfg, out_dir, seed),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    checkpoints = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    return trainer.model.eval(), tokenizer
