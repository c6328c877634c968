"""Arguments shared by every TRL trainer advrm drives.

TRL's configs default to ``bf16=True`` and ``gradient_checkpointing=True``: both break or slow tiny
models on CPU (findings.md, pitfalls 1-2). One function sets them from the hardware, so that the same
code runs deterministically on a 2-core CPU and in bf16 on GPUs (launched with ``accelerate launch``
for multi-GPU / multi-node: the TRL trainers pick the distributed setup up from the environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def common_trainer_args(
    output_dir: str | Path,
    *,
    seed: int,
    learning_rate: float,
    batch_size: int,
    logging_steps: int = 10,
    **overrides: Any,
) -> dict[str, Any]:
    """kwargs for any TRL ``*Config``: no checkpoints to disk, no remote loggers, CPU-safe precision."""
    on_gpu = torch.cuda.is_available() and os.environ.get("ADVRM_FORCE_CPU") != "1"
    args: dict[str, Any] = {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "use_cpu": not on_gpu,
        "gradient_checkpointing": False,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": logging_steps,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }
    args.update(overrides)
    return args
