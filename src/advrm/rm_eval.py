"""``advrm eval-rm``: how good an RM is in distribution, and how wrong it is out of it.

In distribution: pairwise accuracy on held-out pairs against the (noisy) labels and against the gold
judge's ordering, Spearman correlation with gold over the held-out responses, and the labels' own
agreement with gold (the ceiling no RM trained on those labels should be expected to pass).
Out of distribution: the same held-out responses after fixed style transforms (transforms.py); a
proxy that is blind off-distribution scores them about as well as the originals while gold drops.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from datasets import Dataset
from scipy.stats import spearmanr

from .scoring import Scorer
from .transforms import Transform


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def evaluate_pairs(rm: Scorer, pairs: Dataset) -> dict:
    """Pairwise accuracy (labels and gold), Spearman with gold, and the label-gold ceiling."""
    prompts = list(pairs["prompt"]) if "prompt" in pairs.column_names else [""] * len(pairs)
    r_c = rm.score(prompts, list(pairs["chosen"]))
    r_r = rm.score(prompts, list(pairs["rejected"]))
    out: dict = {"n_pairs": len(pairs), "accuracy_vs_labels": float(np.mean(r_c > r_r))}
    if {"gold_chosen", "gold_rejected"} <= set(pairs.column_names):
        g_c, g_r = np.asarray(pairs["gold_chosen"]), np.asarray(pairs["gold_rejected"])
        decided = g_c != g_r
        gold_prefers_chosen = g_c[decided] > g_r[decided]
        rm_prefers_chosen = r_c[decided] > r_r[decided]
        out["accuracy_vs_gold"] = float(np.mean(rm_prefers_chosen == gold_prefers_chosen))
        out["gold_ceiling"] = float(np.mean(gold_prefers_chosen))
        out["spearman_with_gold"] = _spearman(np.concatenate([r_c, r_r]), np.concatenate([g_c, g_r]))
    return out


def evaluate_off_distribution(
    rm: Scorer,
    gold: Scorer,
    prompts: Sequence[str],
    responses: Sequence[str],
    transforms: dict[str, Transform],
    *,
    seed: int = 0,
) -> dict:
    """Per transform: mean change of RM and gold score versus the untransformed response, and Spearman
    with gold over originals + transformed responses pooled (where a blind RM's ranking breaks)."""
    prompts, responses = list(prompts), list(responses)
    rm_base, gold_base = rm.score(prompts, responses), gold.score(prompts, responses)
    per: dict[str, dict] = {}
    all_rm, all_gold = [rm_base], [gold_base]
    for name, fn in transforms.items():
        rng = random.Random(seed)
        moved = [fn(p, r, rng) for p, r in zip(prompts, responses, strict=True)]
        rm_t, gold_t = rm.score(prompts, moved), gold.score(prompts, moved)
        all_rm.append(rm_t)
        all_gold.append(gold_t)
        per[name] = {
            "rm_delta_mean": float(np.mean(rm_t - rm_base)),
            "gold_delta_mean": float(np.mean(gold_t - gold_base)),
            "rm_prefers_transformed": float(np.mean(rm_t > rm_base)),
            "spearman_with_gold": _spearman(
                np.concatenate([rm_base, rm_t]), np.concatenate([gold_base, gold_t])
            ),
        }
    pooled = _spearman(np.concatenate(all_rm), np.concatenate(all_gold))
    return {"n_responses": len(responses), "spearman_with_gold_pooled": pooled, "transforms": per}


def metric_rows(metrics: dict) -> list[tuple[str, str]]:
    """Flatten eval metrics into (name, value) rows for a console table."""
    rows = []
    for k, v in metrics.get("in_distribution", {}).items():
        rows.append((k, f"{v:.3f}" if isinstance(v, float) else str(v)))
    off = metrics.get("off_distribution")
    if off:
        rows.append(("off-dist Spearman (pooled)", f"{off['spearman_with_gold_pooled']:.3f}"))
        for name, m in off["transforms"].items():
            rows.append(
                (
                    f"  {name}: RM delta / gold delta / RM prefers",
                    f"{m['rm_delta_mean']:+.2f} / {m['gold_delta_mean']:+.2f} / {m['rm_prefers_transformed']:.2f}",
                )
            )
    return rows
