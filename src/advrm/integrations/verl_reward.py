"""A verl custom reward function backed by an advrm reward server.

verl config::

    reward_model.enable=False
    custom_reward_function.path=<site-packages>/advrm/integrations/verl_reward.py
    custom_reward_function.name=compute_score

and start the server with ``advrm serve-rm --rm DIR --port 8000`` (set ``ADVRM_RM_URL`` if it is not
``http://127.0.0.1:8000/score``; ``ADVRM_RM_TOKEN`` is sent as a bearer token when set). verl passes
the prompt in ``extra_info["prompt"]`` when the dataset carries it (add it in your data preprocessing).
"""

from __future__ import annotations

import os
from typing import Any

from advrm.scoring import RemoteScorer

_SCORER: RemoteScorer | None = None


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None, **_: Any
) -> float:
    """verl's reward signature: one response in, one float out."""
    global _SCORER
    if _SCORER is None:
        _SCORER = RemoteScorer(os.environ.get("ADVRM_RM_URL", "http://127.0.0.1:8000/score"))
    prompt = (extra_info or {}).get("prompt", "")
    return float(_SCORER.score([prompt], [solution_str])[0])
