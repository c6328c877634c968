"""Downstream RLHF: optimise a policy against a reward (one RM, an ensemble, the hardened RM) and record
when reward hacking sets in.

The study of method.md ("with the adversarially trained RM, RLHF runs about 3x as many steps before
gold reward starts to fall") needs, per reward and seed, a curve of proxy reward, gold reward, KL and
length on held-out prompts, and one onset rule for all (:mod:`advrm.onset`). Training is RLOO
(:func:`advrm.rloo.train_rloo`); this module adds the reward, the evaluation callback and the artifacts
``curve.csv`` and ``metrics.json`` in ``out_dir``.

**Reward.** Let ``R_m(x, y)`` be the raw score of member m (M = 1 for ``"single"``). Raw Bradley-Terry
scores are only defined up to a shift (the loss depends on differences) and their scale depends on the
training run, so members of one ensemble sit on different scales and ``std_m R_m`` would measure offsets,
not disagreement. Each member is therefore standardized ONCE at start by its mean and std over
reference-policy responses (``n_ref_samples`` samples on ``n_ref_prompts`` training prompts)::

    s_m(x, y) = (R_m(x, y) - mu_m) / sigma_m                 (mu_m, sigma_m over reference responses)
    single:                   r = s_1
    ensemble_mean:            r = mean_m s_m
    ensemble_mean_minus_std:  r = mean_m s_m - k * std_m s_m  (ddof=0, Coste et al.'s uncertainty weighting)

No per-prompt z-normalisation (the attack's) is used: RLOO's leave-one-out baseline already removes
per-prompt offsets. The shared scale also makes one KL beta mean the same trade-off for every reward.
``standardize=False`` uses raw scores (``mu = 0, sigma = 1``).

**Evaluation** at step 0 (before any update), every ``eval_every`` steps and at the last step: one
response per held-out prompt, sampled with a dedicated seed ``eval_seed`` (the same at every
evaluation, so that successive points differ by the policy and not by the sampling noise, and never the
training seed: the trainer reseeds the global RNG and would replay its stream, findings.md pitfall 5).
``generate`` forks the RNG, so evaluating does not change training: a run resumed from a checkpoint
gives the curve of an uninterrupted one. Columns of ``curve.csv``:

    step, proxy (mean r), gold (mean validator score), kl, length (mean words), proxy_std, gold_std,
    kl_seq, truncated (fraction that hit max_new_tokens)

``kl`` is the token-pooled estimate of KL(pi || pi_ref) on the sampled responses, as TRL logs it::

    kl     = sum_{i,t} (log pi(y_it | x_i, y_i<t) - log pi_ref(y_it | x_i, y_i<t)) / sum_i |y_i|
    kl_seq = mean_i sum_t (log pi - log pi_ref)(y_it)             (per response)

with pi_ref the starting policy and both distributions at the sampling temperature (TRL divides logits
by it too). This (k1) estimator is unbiased but can come out slightly negative on few samples. It is computed here rather than read from TRL's log history because TRL computes no KL
when beta = 0, the setting where hacking appears, and because the log history holds training-batch
values at logging steps, not held-out values at evaluation steps.

Rows are appended and fsynced one at a time, so a kill loses nothing already written; on resume the
rows present are kept and their steps not evaluated again.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import TrainerCallback

from .errors import AdvrmError
from .io import atomic_write_json, atomic_write_text, to_jsonable
from .models import generate, load_policy, load_tokenizer
from .onset import OnsetConfig, detect_onset
from .rloo import RLConfig, train_rloo
from .scoring import Ensemble, HFRewardScorer, Scorer

logger = logging.getLogger(__name__)

RewardKind = Literal["single", "ensemble_mean", "ensemble_mean_minus_std"]
CURVE_FIELDS = ("step", "proxy", "gold", "kl", "length", "proxy_std", "gold_std", "kl_seq", "truncated")


def _hacking_rl() -> RLConfig:
    """findings.md: lr 3e-4 with no KL penalty gives a clean rise-then-fall of gold within 200-300 steps
    (batch 32 completions = 8 prompts x 4 samples)."""
    return RLConfig(
        steps=250,
        learning_rate=3e-4,
        beta=0.0,
        num_generations=4,
        prompts_per_step=8,
        max_new_tokens=64,
        save_steps=50,
    )


@dataclass(frozen=True)
class RLHFConfig:
    """One downstream RLHF run. The defaults are the setting in which findings.md saw reward hacking
    on the synthetic world (so that an RM's robustness shows up as a later onset, not as "nothing
    happened"); 128 evaluation prompts because 64 left gold swinging +-0.5 between evaluations."""

    rl: RLConfig = field(default_factory=_hacking_rl)
    reward: RewardKind = field(
        default="single", metadata={"help": "single | ensemble_mean | ensemble_mean_minus_std"}
    )
    k: float = field(default=1.0, metadata={"min": 0.0, "help": "std weight of ensemble_mean_minus_std"})
    standardize: bool = field(default=True, metadata={"help": "scale each RM by its reference mean/std"})
    n_ref_prompts: int = field(
        default=256, metadata={"min": 1, "help": "training prompts for the member stats"}
    )
    n_ref_samples: int = field(default=2, metadata={"min": 1, "help": "reference samples per such prompt"})
    eval_every: int = field(default=10, metadata={"min": 1})
    n_eval_prompts: int = field(default=128, metadata={"min": 1, "help": "held-out prompts per evaluation"})
    eval_seed: int = field(default=1_000_003, metadata={"min": 0, "help": "sampling seed of evaluations"})
    eval_batch_size: int = field(default=256, metadata={"min": 1})
    kl_batch_size: int = field(default=32, metadata={"min": 1, "help": "rows per log-prob forward"})
    rm_batch_size: int = field(default=64, metadata={"min": 1})
    onset: OnsetConfig = field(default_factory=OnsetConfig)

    def __post_init__(self) -> None:
        if self.reward not in ("single", "ensemble_mean", "ensemble_mean_minus_std"):
            raise AdvrmError(
                f"reward must be single, ensemble_mean or ensemble_mean_minus_std, got {self.reward!r}"
            )
        small = [
            name
            for name in (
                "eval_every",
                "n_eval_prompts",
                "n_ref_prompts",
                "n_ref_samples",
                "eval_batch_size",
                "kl_batch_size",
                "rm_batch_size",
            )
            if getattr(self, name) < 1
        ]
        if small or self.k < 0 or self.eval_seed < 0:
            raise AdvrmError(
                f"RLHF config: {', '.join(small) or 'k / eval_seed'} must be >= 1 (k, eval_seed >= 0)"
            )

    @property
    def ref_seed(self) -> int:
        """Seed of the reference samples for the member statistics (never an evaluation's)."""
        return self.eval_seed + 1

    def eval_steps(self) -> list[int]:
        """0, eval_every, 2 * eval_every, ... and the last step."""
        return sorted({*range(0, self.rl.steps + 1, self.eval_every), self.rl.steps})


# --------------------------------------------------------------------------------------------------
# Reward
# --------------------------------------------------------------------------------------------------


class StandardizedReward:
    """The training reward ``r`` of the module docstring, as a :class:`~advrm.scoring.Scorer`."""

    def __init__(
        self,
        members: Sequence[Scorer],
        kind: RewardKind,
        k: float,
        mu: np.ndarray,
        sigma: np.ndarray,
        name: str,
    ) -> None:
        self.members = list(members)
        self.kind = kind
        self.k = k
        self.mu = np.asarray(mu, dtype=np.float64).reshape(-1, 1)
        self.sigma = np.asarray(sigma, dtype=np.float64).reshape(-1, 1)
        self.name = name
        self._ensemble = Ensemble(self.members, name=name)

    def standardized_matrix(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """``s_m(x, y)`` for every member, shape (M, N)."""
        return (self._ensemble.score_matrix(prompts, responses) - self.mu) / self.sigma

    def reduce(self, s: np.ndarray) -> np.ndarray:
        if self.kind == "ensemble_mean_minus_std":
            return Ensemble.mean_minus_k_std(s, self.k)
        return Ensemble.mean(s)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.reduce(self.standardized_matrix(prompts, responses))


def _member_stats(
    members: Sequence[Scorer], prompts: list[str], responses: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``mu_m`` and ``sigma_m`` (ddof=0) over reference responses, sigma floored so that a constant RM
    (an untrained head) does not divide by zero."""
    matrix = Ensemble(members).score_matrix(prompts, responses)
    mu, sigma = matrix.mean(axis=1), matrix.std(axis=1)
    return mu, np.maximum(sigma, 1e-6 * np.maximum(np.abs(mu), 1.0))


def build_reward(
    reward_rms: Sequence[Path],
    cfg: RLHFConfig,
    ref_policy: Any,
    tokenizer: Any,
    prompts_train: Sequence[str],
    *,
    name: str,
    device: str,
    trust_remote_code: bool = False,
) -> StandardizedReward:
    """Load the RMs and fit ``mu_m, sigma_m`` on samples of the reference policy (seed ``cfg.ref_seed``)."""
    members = [
        HFRewardScorer(
            p,
            batch_size=cfg.rm_batch_size,
            device=device,
            name=p.name,
            trust_remote_code=trust_remote_code,
        )
        for p in reward_rms
    ]
    if cfg.standardize:
        ref_prompts = list(prompts_train[: cfg.n_ref_prompts])
        ref = generate(
            ref_policy,
            tokenizer,
            ref_prompts,
            n_per_prompt=cfg.n_ref_samples,
            max_new_tokens=cfg.rl.max_new_tokens,
            temperature=cfg.rl.temperature,
            seed=cfg.ref_seed,
            batch_size=cfg.eval_batch_size,
        )
        mu, sigma = _member_stats(
            members, [p for p in ref_prompts for _ in range(cfg.n_ref_samples)], ref.flat_texts()
        )
    else:
        mu, sigma = np.zeros(len(members)), np.ones(len(members))
    return StandardizedReward(members, cfg.reward, cfg.k, mu, sigma, name=name)


def _make_reward_fn(reward: StandardizedReward):
    """The callable TRL's RLOOTrainer calls with every batch of completions."""

    def reward_fn(
        prompts: list[Any], completions: list[Any], completion_ids: list[Any], **kwargs: Any
    ) -> list[float]:
        if prompts and not isinstance(prompts[0], str):
            raise AdvrmError(
                "run_rlhf takes plain-text prompts; conversational prompts are not supported here"
            )
        s = reward.standardized_matrix(prompts, completions)
        if len(reward.members) > 1 and "log_metric" in kwargs:
            kwargs["log_metric"]("reward/member_std", float(s.std(axis=0).mean()))
        return [float(v) for v in reward.reduce(s)]

    return reward_fn


# --------------------------------------------------------------------------------------------------
# KL on sampled responses
# --------------------------------------------------------------------------------------------------


def completion_logps(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    temperature: float,
    batch_size: int,
) -> list[torch.Tensor]:
    """``log pi(y_t | x, y_<t)`` of every completion token (logits divided by ``temperature``), one 1-D
    float32 CPU tensor per row. Rows are right-padded, so positions of real tokens start at 0 as they
    did in left-padded generation (where position ids follow the attention mask)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(prompt_ids), batch_size):
                ps = prompt_ids[start : start + batch_size]
                cs = completion_ids[start : start + batch_size]
                seqs = [list(p) + list(c) for p, c in zip(ps, cs, strict=True)]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(seqs), width), dtype=torch.long)
                for row, s in enumerate(seqs):
                    ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
                    attention[row, : len(s)] = 1
                ids, attention = ids.to(device), attention.to(device)
                logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
                logps = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
                token_logps = logps.gather(-1, ids[:, 1:, None]).squeeze(-1).cpu()
                for row, (p, c) in enumerate(zip(ps, cs, strict=True)):
                    # Token j of the sequence is predicted at position j - 1; a prompt without any token
                    # (no bos) leaves the first completion token unpredicted, so it is left out.
                    first = max(len(p), 1)
                    out.append(token_logps[row, first - 1 : len(p) + len(c) - 1])
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------------
# curve.csv: append-and-fsync rows, tolerant of a torn last line
# --------------------------------------------------------------------------------------------------


def _format(value: float) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def _parse(name: str, value: str) -> float | int:
    if name == "step":
        return int(value)
    return float(value) if value != "" else math.nan


class CurveLog:
    """``curve.csv`` of one run. Opening it drops a torn last line (a kill in the middle of a write: a
    row is one ``write`` ending in a newline, so a line without one is incomplete), checks the header and
    keeps the rows present; :meth:`append` writes, flushes and fsyncs one row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[int, dict[str, float | int]] = {}
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        clean = text[: text.rfind("\n") + 1]
        header = ",".join(CURVE_FIELDS) + "\n"
        if not clean:
            clean = header
        lines = list(csv.reader(_stdio.StringIO(clean)))
        if tuple(lines[0]) != CURVE_FIELDS:
            raise AdvrmError(
                f"{path}: columns {lines[0]} are not a run_rlhf curve {list(CURVE_FIELDS)}; "
                "delete the file (or the run directory) to start over"
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = {k: _parse(k, v) for k, v in zip(CURVE_FIELDS, line, strict=True)}
            except ValueError:
                raise AdvrmError(
                    f"{path}:{number}: not a curve row; delete the file (or the run directory) to start over"
                ) from None
            self.rows[int(row["step"])] = row
        if clean != text:
            atomic_write_text(path, clean)
        self._file = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()

    def append(self, row: dict[str, float | int]) -> None:
        line = ",".join(str(row[k]) if k == "step" else _format(row[k]) for k in CURVE_FIELDS) + "\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows[int(row["step"])] = {
            k: _parse(k, line.rstrip("\n").split(",")[i]) for i, k in enumerate(CURVE_FIELDS)
        }

    def sorted_rows(self) -> list[dict[str, float | int]]:
        return [self.rows[s] for s in sorted(self.rows)]

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------------------------------
# Evaluation callback
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)  # identity equality and hashing, as for any callback object
class EvalCallback(TrainerCallback):
    """Evaluates the policy at the steps of :meth:`RLHFConfig.eval_steps` that ``curve`` lacks.

    Runs on the main process only (the others wait at the next gradient all-reduce); sharded models
    (FSDP, ZeRO-3) need every process in a forward pass and are not supported by this callback.
    """

    cfg: RLHFConfig
    curve: CurveLog
    reward: Scorer
    validator: Scorer | None
    ref_policy: Any
    tokenizer: Any
    prompts: list[str]

    def __post_init__(self) -> None:
        self.prompt_ids = self.tokenizer(text=self.prompts)["input_ids"]
        self.due = set(self.cfg.eval_steps())

    def evaluate(self, policy: Any, step: int) -> dict[str, float | int]:
        cfg, tok = self.cfg, self.tokenizer
        gen = generate(
            policy,
            tok,
            self.prompts,
            n_per_prompt=1,
            max_new_tokens=cfg.rl.max_new_tokens,
            temperature=cfg.rl.temperature,
            seed=cfg.eval_seed,
            batch_size=cfg.eval_batch_size,
        )
        texts, ids = gen.flat_texts(), [row[0] for row in gen.completion_ids]
        proxy = self.reward.score(self.prompts, texts)
        gold = (
            self.validator.score(self.prompts, texts)
            if self.validator is not None
            else np.full(len(texts), np.nan)
        )
        kw = {
            "pad_id": int(tok.pad_token_id),
            "temperature": cfg.rl.temperature,
            "batch_size": cfg.kl_batch_size,
        }
        lp = completion_logps(policy, self.prompt_ids, ids, **kw)
        lp_ref = completion_logps(self.ref_policy, self.prompt_ids, ids, **kw)
        diff = [a - b for a, b in zip(lp, lp_ref, strict=True)]
        n_tokens = sum(d.numel() for d in diff)
        return {
            "step": int(step),
            "proxy": float(proxy.mean()),
            "gold": float(gold.mean()),
            "kl": float(sum(d.sum().item() for d in diff) / max(n_tokens, 1)),
            "length": float(np.mean([len(t.split()) for t in texts])),
            "proxy_std": float(proxy.std()),
            "gold_std": float(gold.std()),
            "kl_seq": float(np.mean([d.sum().item() for d in diff])),
            "truncated": float(np.mean(gen.flat_truncated())),
        }

    def _maybe_evaluate(self, state: Any, model: Any) -> None:
        step = int(state.global_step)
        if step not in self.due or step in self.curve.rows or not state.is_world_process_zero:
            return
        row = self.evaluate(model, step)
        self.curve.append(row)
        logger.info(
            "rlhf step %d: proxy %.3f gold %.3f kl %.4f length %.1f",
            step,
            row["proxy"],
            row["gold"],
            row["kl"],
            row["length"],
        )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._maybe_evaluate(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._maybe_evaluate(state, model)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _device() -> str:
    """Where the RMs and the reference policy go: where TRL will put the policy (see trl_args)."""
    return "cuda" if torch.cuda.is_available() and os.environ.get("ADVRM_FORCE_CPU") != "1" else "cpu"


def _identity(cfg: RLHFConfig, seed: int, reward_name: str) -> dict[str, Any]:
    """What must not change between a run and its resumption (steps may grow: a run can be extended)."""
    return to_jsonable(
        {"config": replace(cfg, rl=replace(cfg.rl, steps=0)), "seed": seed, "reward_name": reward_name}
    )


def _check_args(
    reward_rms: Sequence[Path],
    prompts_train: Sequence[str],
    prompts_eval: Sequence[str],
    cfg: RLHFConfig,
    seed: int,
) -> None:
    if cfg.reward == "single" and len(reward_rms) != 1:
        raise AdvrmError(f"reward 'single' takes exactly one RM, got {len(reward_rms)}")
    if cfg.reward != "single" and len(reward_rms) < 2:
        raise AdvrmError(f"reward {cfg.reward!r} needs at least two RMs (an ensemble), got {len(reward_rms)}")
    if not prompts_train or not prompts_eval:
        raise AdvrmError("run_rlhf needs non-empty training and evaluation prompts")
    if seed in (cfg.eval_seed, cfg.ref_seed):
        raise AdvrmError(
            f"the training seed {seed} equals the evaluation/reference seed; evaluation samples "
            "would replay training samples (findings.md pitfall 5): change eval_seed"
        )


def _check_resume(out_dir: Path, identity: dict[str, Any], curve: CurveLog, cfg: RLHFConfig) -> int:
    """Refuse a directory holding another run; refuse gaps that cannot be filled. Returns the step of the
    last checkpoint (0 if none)."""
    run_file = out_dir / "run.json"
    if run_file.exists():
        if json.loads(run_file.read_text(encoding="utf-8")) != identity:
            raise AdvrmError(
                f"{out_dir} holds an RLHF run with another config, seed or reward; "
                "use another out_dir or delete this one"
            )
    else:
        atomic_write_json(run_file, identity)
    checkpoints = [
        int(p.name.split("-")[1]) for p in out_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    ]
    last = max(checkpoints, default=0)
    missing = [s for s in cfg.eval_steps() if s < last and s not in curve.rows]
    if missing:
        raise AdvrmError(
            f"{out_dir}: training resumes at step {last} but curve.csv lacks the evaluations at "
            f"steps {missing[:5]}, which cannot be recomputed; delete {out_dir} to start over"
        )
    return last


def _curve_summary(rows: list[dict[str, float | int]]) -> dict[str, Any]:
    first, last = rows[0], rows[-1]
    out: dict[str, Any] = {"n_evals": len(rows), "steps": [int(r["step"]) for r in rows]}
    for key in ("proxy", "gold", "kl", "length"):
        values = [float(r[key]) for r in rows]
        out[key] = {
            "first": float(first[key]),
            "final": float(last[key]),
            "max": max(values),
            "min": min(values),
        }
    return out


def run_rlhf(
    policy_dir: Path,
    reward_rms: list[Path],
    prompts_train: Sequence[str],
    prompts_eval: Sequence[str],
    out_dir: Path,
    cfg: RLHFConfig,
    *,
    seed: int,
    validator: Scorer | None,
    reward_name: str,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """RLHF from ``policy_dir`` against ``reward_rms`` (combined as ``cfg.reward``); writes ``curve.csv``
    and ``metrics.json`` to ``out_dir`` and returns the metrics.

    Rerunning into the same ``out_dir`` resumes from the last RLOO checkpoint and keeps the curve's rows
    (same rows as an uninterrupted run, no duplicates); a finished run is returned as it is. ``cfg.rl.steps``
    may be raised between calls to extend a run; anything else changed is refused. Without a
    ``validator`` the gold column is empty and no onset is computed (``onset`` is null).
    """
    start = time.time()
    policy_dir, out_dir = Path(policy_dir), Path(out_dir)
    reward_rms = [Path(p) for p in reward_rms]
    _check_args(reward_rms, prompts_train, prompts_eval, cfg, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = _identity(cfg, seed, reward_name)
    metrics_file = out_dir / "metrics.json"
    curve = CurveLog(out_dir / "curve.csv")
    try:
        resumed_from = _check_resume(out_dir, identity, curve, cfg)
        if metrics_file.exists() and all(s in curve.rows for s in cfg.eval_steps()):
            done = json.loads(metrics_file.read_text(encoding="utf-8"))
            if done.get("config") == to_jsonable(cfg):
                logger.info("%s: finished already; returning its metrics", out_dir)
                return done

        device = _device()
        tokenizer = load_tokenizer(policy_dir, trust_remote_code=trust_remote_code)
        ref_policy = load_policy(policy_dir, trust_remote_code=trust_remote_code, device=device)
        ref_policy.requires_grad_(False)
        reward = build_reward(
            reward_rms,
            cfg,
            ref_policy,
            tokenizer,
            prompts_train,
            name=reward_name,
            device=device,
            trust_remote_code=trust_remote_code,
        )
        eval_prompts = list(prompts_eval[: cfg.n_eval_prompts])
        if len(eval_prompts) < cfg.n_eval_prompts:
            logger.warning(
                "only %d evaluation prompts (n_eval_prompts=%d)", len(eval_prompts), cfg.n_eval_prompts
            )
        callback = EvalCallback(cfg, curve, reward, validator, ref_policy, tokenizer, eval_prompts)
        train_rloo(
            policy_dir,
            _make_reward_fn(reward),
            list(prompts_train),
            cfg.rl,
            out_dir,
            seed=seed,
            callbacks=[callback],
            trust_remote_code=trust_remote_code,
        )
        # The rows of this config's evaluation steps (a run extended from fewer steps also holds the
        # evaluation at its old last step; the onset rule counts evaluations, so keep the grid regular).
        due = set(cfg.eval_steps())
        rows = [r for r in curve.sorted_rows() if int(r["step"]) in due]
    finally:
        curve.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return {}  # under torchrun / accelerate only the main process evaluates and writes the metrics

    onset = None
    if validator is not None:
        onset = detect_onset(
            [int(r["step"]) for r in rows],
            [float(r["gold"]) for r in rows],
            [float(r["proxy"]) for r in rows],
            cfg.onset,
            gold_ref_std=float(rows[0]["gold_std"]),
        )
    metrics: dict[str, Any] = {
        "reward_name": reward_name,
        "reward": cfg.reward,
        "reward_rms": [str(p) for p in reward_rms],
        "validator": getattr(validator, "name", None),
        "seed": seed,
        "onset": None if onset is None else onset.to_dict(),
        "peak_gold": None if onset is None else onset.peak_gold,
        "peak_step": None if onset is None else onset.peak_step,
        "final_gold": None if onset is None else onset.final_gold,
        "curve": _curve_summary(rows),
        "reward_standardization": {
            "member": [p.name for p in reward_rms],
            "mu": reward.mu.ravel().tolist(),
            "sigma": reward.sigma.ravel().tolist(),
            "standardized": cfg.standardize,
        },
        "n_eval_prompts": len(eval_prompts),
        "resumed_from_step": resumed_from,
        "wall_seconds": time.time() - start,
        "config": cfg,
    }
    atomic_write_json(metrics_file, metrics)
    return metrics
