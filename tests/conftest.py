import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ADVRM_FORCE_CPU", "1")

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("ADVRM_TEST_THREADS", "2")))


def tiny_world_config(seed: int = 0):
    """A world small enough to build in seconds: the tests' shared fixture."""
    from advrm.worlds.synthetic.build import WorldConfig
    from advrm.worlds.synthetic.policy import PolicyConfig

    return replace(
        WorldConfig.preset_config("quick", seed),
        n_train_pairs=400,
        n_heldout_pairs=120,
        n_attack_prompts=64,
        n_heldout_prompts=48,
        policy=replace(
            PolicyConfig(), hidden_size=48, num_layers=1, intermediate_size=96, corpus_size=3000, epochs=1.0
        ),
    )


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A built tiny world (policy, prompts, pairs), shared by every test that needs one."""
    from advrm.worlds.synthetic.build import build_world

    out = tmp_path_factory.mktemp("world")
    build_world(out, tiny_world_config())
    return out


@pytest.fixture(scope="session")
def tiny_rms(tiny_world, tmp_path_factory) -> list[Path]:
    """Two Bradley-Terry RMs (seeds 0 and 1) trained on the tiny world's pairs."""
    from advrm.data import load_preferences
    from advrm.rm_training import RMTrainConfig, train_reward_model

    out = tmp_path_factory.mktemp("rms")
    pairs = load_preferences(tiny_world / "pairs_train.jsonl")
    cfg = RMTrainConfig(epochs=2.0, batch_size=32)
    paths = []
    for seed in (0, 1):
        train_reward_model(tiny_world / "policy", pairs, out / f"seed-{seed}", cfg, seed=seed)
        paths.append(out / f"seed-{seed}")
    return paths
