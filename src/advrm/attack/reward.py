"""The Adv-RM objective as a TRL reward callable (what ``RLOOTrainer`` maximizes during the attack)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..objective import ObjectiveConfig, adv_reward
from ..scoring import Normalizer, Scorer


def is_truncated(
    completion_ids: Sequence[Sequence[int]], stop_ids: set[int], max_new_tokens: int
) -> np.ndarray:
    """A completion that filled the length budget without an end token ran past the limit."""
    return np.array(
        [len(ids) >= max_new_tokens and (not ids or ids[-1] not in stop_ids) for ids in completion_ids],
        dtype=bool,
    )


class AdvRMReward:
    """r_adv(x, y) from the target RM and the second RM(s), each z-scored per prompt.

    With several second RMs, z2 is the mean of their z-scores. ``target_queries`` counts every
    response the target scored, the budget that baselines are matched on.
    """

    __name__ = "adv_rm"

    def __init__(
        self,
        target: Scorer,
        seconds: Sequence[Scorer],
        target_norm: Normalizer,
        second_norms: Sequence[Normalizer],
        cfg: ObjectiveConfig,
        *,
        stop_ids: set[int],
        max_new_tokens: int,
    ) -> None:
        self.target, self.seconds = target, list(seconds)
        self.target_norm, self.second_norms = target_norm, list(second_norms)
        self.cfg, self.stop_ids, self.max_new_tokens = cfg, stop_ids, max_new_tokens
        self.target_queries = 0

    def target_z(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """z1: the target's per-prompt z-score (each call counts against the query budget)."""
        self.target_queries += len(responses)
        return self.target_norm.z(prompts, self.target.score(prompts, responses))

    def rewards(
        self, prompts: list[str], completions: list[str], completion_ids: list[list[int]]
    ) -> tuple[np.ndarray, dict[str, float]]:
        """r_adv per completion, and the batch means worth logging."""
        z1 = self.target_z(prompts, completions)
        z2 = np.mean(
            [
                n.z(prompts, s.score(prompts, completions))
                for s, n in zip(self.seconds, self.second_norms, strict=True)
            ],
            axis=0,
        )
        truncated = is_truncated(completion_ids, self.stop_ids, self.max_new_tokens)
        logs = {
            "adv/z_target": float(z1.mean()),
            "adv/z_second": float(z2.mean()),
            "adv/fooled": float(np.mean(z1 > self.cfg.tau)),
            "adv/truncated": float(truncated.mean()),
        }
        return adv_reward(z1, z2, self.cfg, truncated), logs

    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        completion_ids: list[list[int]],
        log_metric=None,
        **_: object,
    ) -> list[float]:
        """TRL's reward-function signature (extra dataset columns and the trainer state arrive as kwargs)."""
        reward, logs = self.rewards(prompts, completions, completion_ids)
        if log_metric is not None:
            for name, value in logs.items():
                log_metric(name, value)
        return reward.tolist()


class TargetOnlyReward(AdvRMReward):
    """The plain-RLHF baseline ("RM over-optimization"): maximize the target's z-score alone."""

    __name__ = "target_rm"

    def rewards(
        self, prompts: list[str], completions: list[str], completion_ids: list[list[int]]
    ) -> tuple[np.ndarray, dict[str, float]]:
        z1 = self.target_z(prompts, completions)
        return z1, {"adv/z_target": float(z1.mean())}
