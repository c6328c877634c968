"""Reference-policy statistics: K samples per prompt, scored once by every RM in play.

They serve three formulas of method.md: the per-prompt z-scores of section 1 (mean/std of each RM
over the K reference responses), the outlier test on U = z1 - z2 of section 2 (U's mean/std over
reference responses, pooled across prompts), and the reference response y2 that ASR compares
against in section 3 (the first reference sample of each prompt). They are the largest fixed cost
of an attack (findings.md), so they are written to ``reference.jsonl`` and reused on rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import read_jsonl, write_jsonl
from ..models import generate
from ..scoring import Normalizer, Scorer


@dataclass
class ReferenceStats:
    """K reference responses per prompt and each scorer's raw scores of them."""

    prompts: list[str]
    responses: list[list[str]]
    scores: dict[str, np.ndarray]  # scorer role -> (n_prompts, K)

    def normalizer(self, role: str) -> Normalizer:
        return Normalizer.from_scores(self.prompts, self.scores[role].tolist(), scorer_name=role)

    def save(self, path: Path) -> None:
        rows = [
            {"prompt": p, "responses": rs, **{role: s[i].tolist() for role, s in self.scores.items()}}
            for i, (p, rs) in enumerate(zip(self.prompts, self.responses, strict=True))
        ]
        write_jsonl(path, rows)

    @classmethod
    def load(cls, path: Path, roles: Sequence[str]) -> ReferenceStats | None:
        """The saved statistics, or None if the file is missing or lacks one of ``roles``."""
        if not path.exists():
            return None
        rows = read_jsonl(path)
        if not rows or any(role not in rows[0] for role in roles):
            return None
        return cls(
            prompts=[r["prompt"] for r in rows],
            responses=[r["responses"] for r in rows],
            scores={role: np.asarray([r[role] for r in rows], dtype=np.float64) for role in roles},
        )


def sample_reference(
    policy,
    tokenizer,
    prompts: Sequence[str],
    scorers: dict[str, Scorer],
    *,
    k: int,
    max_new_tokens: int,
    seed: int,
) -> ReferenceStats:
    """Sample K reference responses per prompt and score them with every scorer (one call each)."""
    prompts = list(prompts)
    gens = generate(
        policy,
        tokenizer,
        prompts,
        n_per_prompt=k,
        max_new_tokens=max_new_tokens,
        seed=seed,
        show_progress=True,
    )
    flat_p = [p for p in prompts for _ in range(k)]
    flat_r = [r for rs in gens.texts for r in rs]
    scores = {role: s.score(flat_p, flat_r).reshape(len(prompts), k) for role, s in scorers.items()}
    return ReferenceStats(prompts=prompts, responses=gens.texts, scores=scores)


@dataclass(frozen=True)
class UncertaintyStats:
    """Mean and std of U = z1 - z2 over reference responses, for the outlier test z_U > 1.96."""

    mean: float
    std: float

    @classmethod
    def from_reference(cls, z1: np.ndarray, z2: np.ndarray) -> UncertaintyStats:
        u = (np.asarray(z1) - np.asarray(z2)).ravel()
        return cls(mean=float(u.mean()), std=max(float(u.std()), 1e-8))

    def z(self, u: np.ndarray) -> np.ndarray:
        return (np.asarray(u) - self.mean) / self.std
