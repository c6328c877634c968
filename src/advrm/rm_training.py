"""Bradley-Terry reward models through TRL's ``RewardTrainer``.

The loss is TRL's ``-log sigmoid(r(x, y_w) - r(x, y_l))`` (plus a small reward-centering term). An RM
starts from the reference policy's weights (as RMs start from the SFT model in practice) or from any
causal-LM / sequence-classifier directory. Ensembles differ by seed: a new head initialisation and a
new data order (``data_seed``), on the same data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from .data import count_overlong
from .io import atomic_dir, atomic_write_json
from .models import init_reward_model_from, load_tokenizer
from .trl_args import common_trainer_args


@dataclass(frozen=True)
class RMTrainConfig:
    epochs: float = field(default=2.0, metadata={"min": 0.01})
    learning_rate: float = field(default=1e-3, metadata={"min": 0.0})
    batch_size: int = field(default=32, metadata={"min": 1})
    max_length: int = field(
        default=256, metadata={"min": 8, "help": "longer pairs are dropped (and counted)"}
    )
    center_rewards_coefficient: float = field(default=0.01, metadata={"min": 0.0})
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})


PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def train_reward_model(
    base: Path, pairs: Dataset, out: Path, cfg: RMTrainConfig, *, seed: int, trust_remote_code: bool = False
) -> dict:
    """Train one RM on ``pairs`` and save it to ``out`` (atomically) with a ``metrics.json``."""
    start = time.time()
    tokenizer = load_tokenizer(base, trust_remote_code=trust_remote_code)
    columns = [c for c in PAIR_COLUMNS if c in pairs.column_names]
    data = pairs.select_columns(columns)
    n_overlong = count_overlong(data, tokenizer, cfg.max_length)
    torch.manual_seed(seed)
    model = init_reward_model_from(base, tokenizer=tokenizer, trust_remote_code=trust_remote_code)
    args = RewardConfig(
        **common_trainer_args(
            out.parent / f".tmp-train-{out.name}",
            seed=seed,
            learning_rate=cfg.learning_rate,
            batch_size=cfg.batch_size,
            logging_steps=10,
        ),
        num_train_epochs=cfg.epochs,
        max_length=cfg.max_length,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        weight_decay=cfg.weight_decay,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "base": str(base),
        "seed": seed,
        "config": asdict(cfg),
        "n_pairs": len(data),
        "n_dropped_overlong": n_overlong,
        "train_loss_first": float(losses[0]) if losses else None,
        "train_loss_last": float(losses[-1]) if losses else None,
        "train_loss_mean": float(result.training_loss),
        "train_seconds": time.time() - start,
    }
    model = trainer.model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "metrics.json", metrics)
    return metrics
