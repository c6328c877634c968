"""Attack baselines, run side by side with Adv-RM on the same held-out prompts and target-RM budget.

- ``rlhf``: RL against the target alone ("RM over-optimization"); see reward.TargetOnlyReward.
- ``best_of_n``: the reference response the target likes best among N samples.
- ``textfooler``: greedy word substitution guided by the target's score (TextFooler-style, Jin et al.
  2020): rank word positions by how much deleting them lowers the score, then at each position try
  substitutes drawn from the reference vocabulary and keep the best one if it raises the score.
- ``style``: fixed style transforms of a reference response (transforms.style_transforms).
Each returns one response y1 per prompt and the number of target queries it spent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..scoring import Scorer
from ..transforms import Transform


@dataclass
class BaselineResult:
    name: str
    responses: list[str]  # y1 per prompt
    target_queries: int
    curve: list[tuple[int, list[str]]] | None = None  # (queries, y1 per prompt) at intermediate budgets


def best_of_n(
    prompts: Sequence[str], samples: Sequence[Sequence[str]], target: Scorer, checkpoints: Sequence[int] = ()
) -> BaselineResult:
    """Pick argmax_target among the N samples of each prompt; ``checkpoints`` give y1 for smaller N."""
    n = len(samples[0])
    flat_p = [p for p, rs in zip(prompts, samples, strict=True) for _ in rs]
    scores = target.score(flat_p, [r for rs in samples for r in rs]).reshape(len(prompts), n)

    def pick(k: int) -> list[str]:
        best = scores[:, :k].argmax(axis=1)
        return [samples[i][j] for i, j in enumerate(best)]

    curve = [(k * len(prompts), pick(k)) for k in checkpoints if k < n]
    return BaselineResult("best_of_n", pick(n), n * len(prompts), curve)


def textfooler(
    prompts: Sequence[str],
    starts: Sequence[str],
    target: Scorer,
    *,
    budget_per_prompt: int,
    vocabulary: Sequence[str],
    tries_per_position: int = 8,
    seed: int = 0,
) -> BaselineResult:
    """Greedy word substitution from each start response, at most ``budget_per_prompt`` target queries."""
    rng = random.Random(seed)
    vocab = list(vocabulary)
    out, used_total = [], 0
    for prompt, start in zip(prompts, starts, strict=True):
        words = start.split()
        used = 1
        best = float(target.score([prompt], [start])[0])
        if len(words) > 1 and used + len(words) <= budget_per_prompt:
            deleted = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
            drops = best - target.score([prompt] * len(deleted), deleted)
            used += len(words)
            order = list(np.argsort(-drops))
        else:
            order = list(range(len(words)))
        for pos in order:
            k = min(tries_per_position, budget_per_prompt - used)
            if k <= 0:
                break
            cands = [
                " ".join(words[:pos] + [w] + words[pos + 1 :]) for w in rng.sample(vocab, min(k, len(vocab)))
            ]
            scores = target.score([prompt] * len(cands), cands)
            used += len(cands)
            j = int(np.argmax(scores))
            if scores[j] > best:
                best, words = float(scores[j]), cands[j].split()
        out.append(" ".join(words))
        used_total += used
    return BaselineResult("textfooler", out, used_total)


def style_attacks(
    prompts: Sequence[str], starts: Sequence[str], transforms: dict[str, Transform], *, seed: int = 0
) -> list[BaselineResult]:
    """One result per transform; each spends one target query per prompt (its evaluation)."""
    results = []
    for name, fn in transforms.items():
        rng = random.Random(seed)
        ys = [fn(p, r, rng) for p, r in zip(prompts, starts, strict=True)]
        results.append(BaselineResult(f"style:{name}", ys, len(prompts)))
    return results
