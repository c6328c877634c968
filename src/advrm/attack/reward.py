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

    def z_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        z1 = self.target_norm.z(prompts, self.target.score(prompts, responses))
        self.target_queries += len(responses)
        z2 = np.mean(
            [
                n.z(prompts, s.score(prompts, responses))
                for s, n in zip(self.seconds, self.second_norms, strict=True)
            ],
            axis=0,
        )
        return z1, z2

    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        completion_ids: list[list[int]],
        log_metric=None,
        **_: object,
    ) -> list[float]:
        z1, z2 = self.z_scores(prompts, completions)
        truncated = is_truncated(completion_ids, self.stop_ids, self.max_new_tokens)
        reward = adv_reward(z1, z2, self.cfg, truncated)
        if log_metric is not None:
            log_metric("adv/z_target", float(z1.mean()))
            log_metric("adv/z_second", float(z2.mean()))
            log_metric("adv/fooled", float(np.mean(z1 > self.cfg.tau)))
            log_metric("adv/truncated", float(truncated.mean()))
        return reward.tolist()


class TargetOnlyReward(AdvRMReward):
    """The plain-RLHF baseline ("RM over-optimization"): maximize the target's z-score alone."""

    __name__ = "target_rm"

    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        completion_ids: list[list[int]],
        log_metric=None,
        **_: object,
    ) -> list[float]:
        z1 = self.target_norm.z(prompts, self.target.score(prompts, completions))
        self.target_queries += len(completions)
        if log_metric is not None:
            log_metric("adv/z_target", float(z1.mean()))
        return z1.tolist()
