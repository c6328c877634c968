"""Reward sources named on the command line: an RM directory, an HTTP reward server, or the world's gold.

``gold`` is the synthetic world's judge; ``http://...`` / ``https://...`` is a reward server speaking
advrm's protocol (``advrm serve-rm``) or OpenRLHF's (``openrlhf+http://...``); anything else is a
Hugging Face sequence-classifier directory.
"""

from __future__ import annotations

from pathlib import Path

from .errors import AdvrmError
from .models import check_model_dir
from .scoring import HFRewardScorer, RemoteScorer, Scorer


def make_scorer(spec: str, *, trust_remote_code: bool = False, name: str | None = None) -> Scorer:
    """A scorer from its command-line spelling (see the module docstring)."""
    spec = str(spec)
    if spec == "gold":
        from .worlds.synthetic.gold import GoldJudge

        return GoldJudge()
    if spec.startswith("openrlhf+http"):
        return RemoteScorer(spec.removeprefix("openrlhf+"), protocol="openrlhf", name=name)
    if spec.startswith(("http://", "https://")):
        return RemoteScorer(spec, name=name)
    if not spec:
        raise AdvrmError("an empty reward-model path was given; name an RM directory, a URL, or 'gold'")
    check_model_dir(Path(spec))
    return HFRewardScorer(Path(spec), trust_remote_code=trust_remote_code, name=name or spec)
