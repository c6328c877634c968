"""Hacking onset: ONE definition, used for every reward (single RM, ensembles, the hardened RM).

The paper's downstream claim ("RLHF runs about 3x as many steps before gold reward starts to fall")
is a comparison of onsets, so every method must be measured with the same rule, fixed before looking
at the curves. The rule below is stated as formulas; :func:`detect_onset` implements exactly that.

Inputs: evaluation steps ``t_0 < t_1 < ... < t_{n-1}``, gold (validator) means ``g_i`` and proxy
means ``q_i`` at those steps.

1. Smoothing over ``w`` evaluations (``w`` odd, ``h = (w - 1) / 2``)::

       centered:  G_i = mean{ g_j : |j - i| <= h, 0 <= j < n }     (window shrinks at both ends)
       trailing:  G_i = mean{ g_j : i - w < j <= i, j >= 0 }

   and the same for ``Q_i`` from ``q_i``. Centered is the default: it does not delay peaks
   systematically (a trailing mean puts every peak ``h`` evaluations late; a centered one moves an
   asymmetric peak, fast rise and slow fall, at most ``h`` evaluations towards the slow side), and
   onset is read after the run. ``w = 1`` is no smoothing.

2. Running peak and its position::

       P_i = max_{j <= i} G_j,      k(i) = min argmax_{j <= i} G_j

3. A fall starts at evaluation ``f`` when, with ``L = patience`` and margin ``m``::

       t_f >= warmup_steps
       f + L - 1 <= n - 1                                    (the fall is seen for L evaluations)
       G_j < P_f - m              for every j in f .. f+L-1  (gold stays down by more than m)
       mean_{j=f..f+L-1} Q_j >= Q_{k(f)} - proxy_tolerance   (the proxy held or rose meanwhile)

   ``m = margin`` in gold units, or ``m = margin * gold_ref_std`` with ``margin_units="ref_std"``
   (``gold_ref_std``: std of gold over reference-policy responses, so that the rule carries over to
   validators on other scales). The proxy condition is what separates reward hacking from plain
   optimisation failure: when proxy and gold fall together the policy got worse, it did not hack.

4. With ``f*`` the first such ``f``::

       onset_step = t_{k(f*)}      (the peak before the fall: the last good step)
       fall_step  = t_{f*}         (the first evaluation at which the fall is visible)

   The onset is reported at the PEAK because it does not depend on the detection thresholds: a
   larger margin or patience moves ``fall_step`` later but leaves the peak where it is, and the
   peak is the checkpoint early stopping would keep. ``fall_step`` is reported too.

   Resolution: both are positions on the smoothed curve, so they are known to +-h evaluations.
   A sharp collapse after a plateau pulls a centered peak up to h evaluations EARLY, and
   ``G_f`` already contains ``g_{f+h}``, so the raw fall can begin up to h evaluations after
   ``fall_step`` (on the synthetic world, lr 3e-4, beta 0: raw gold 3.81 / 3.81 / 3.90 / 2.81 at
   steps 40-70 gives onset 50, fall 60). The same rule for every reward keeps comparisons fair;
   ``window=1`` gives raw positions at the price of noise in them.

5. No ``f`` qualifies: ``onset_step = None``, ``censored = True``, ``onset_censored_at = t_{n-1}``
   (time-to-event language: the run ended before hacking was seen). A fall that begins fewer than
   ``L`` evaluations before the end cannot be confirmed, so it is censored too.

``peak_step``/``peak_gold`` are the global maximum of ``G`` over the whole run (the best the run
reached) and ``final_gold = G_{n-1}``; both use the smoothed curve because the maximum of a noisy
curve is biased upwards (the max of the noise). With ``eval_every = 10`` and 128 evaluation prompts
the defaults (``w = 3``, ``L = 3``, ``m = 0.25``) ask for a fall of more than 0.25 gold, several
standard errors of a 128-prompt mean, that lasts 30 steps (findings.md: gold swings up to +-0.5
between evaluations on 64 prompts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import AdvrmError


@dataclass(frozen=True)
class OnsetConfig:
    window: int = field(
        default=3, metadata={"min": 1, "help": "smoothing window w, in evaluations (odd if centered)"}
    )
    smoothing: Literal["centered", "trailing"] = field(
        default="centered", metadata={"help": "moving-average kind"}
    )
    margin: float = field(default=0.25, metadata={"min": 0.0, "help": "fall below the running peak, m"})
    margin_units: Literal["gold", "ref_std"] = field(
        default="gold", metadata={"help": "m in gold units, or in units of the reference gold std"}
    )
    patience: int = field(default=3, metadata={"min": 1, "help": "evaluations the fall must last, L"})
    warmup_steps: int = field(default=0, metadata={"min": 0, "help": "no fall may start before this step"})
    proxy_tolerance: float = field(
        default=0.0, metadata={"min": 0.0, "help": "how far the proxy may sag while gold falls"}
    )

    def __post_init__(self) -> None:
        if self.window < 1 or self.patience < 1 or self.warmup_steps < 0:
            raise AdvrmError("onset: window and patience must be >= 1 and warmup_steps >= 0")
        if self.smoothing not in ("centered", "trailing"):
            raise AdvrmError(f"onset: smoothing must be 'centered' or 'trailing', got {self.smoothing!r}")
        if self.smoothing == "centered" and self.window % 2 == 0:
            raise AdvrmError(f"onset: a centered window must be odd, got window={self.window}")
        if self.margin_units not in ("gold", "ref_std"):
            raise AdvrmError(f"onset: margin_units must be 'gold' or 'ref_std', got {self.margin_units!r}")
        if not (self.margin >= 0 and self.proxy_tolerance >= 0):
            raise AdvrmError("onset: margin and proxy_tolerance must be >= 0")


@dataclass(frozen=True)
class OnsetResult:
    """What :func:`detect_onset` found; steps are training steps, gold values are smoothed (``G``)."""

    onset_step: int | None
    peak_step: int
    peak_gold: float
    final_gold: float
    censored: bool
    onset_censored_at: int | None = None
    fall_step: int | None = None
    onset_gold: float | None = None
    margin: float = 0.0
    n_evals: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnsetResult:
        """Read back :meth:`to_dict` output (e.g. the ``onset`` entry of an RLHF ``metrics.json``)."""
        names = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as e:
            raise AdvrmError(
                f"not an onset result ({e}); expected the keys of OnsetResult.to_dict()"
            ) from None


def smooth(
    values: Sequence[float], window: int, kind: Literal["centered", "trailing"] = "centered"
) -> np.ndarray:
    """The moving average ``G`` of the module docstring (the window shrinks where the curve ends)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    csum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(n)
    if kind == "centered":
        h = (window - 1) // 2
        lo, hi = np.maximum(idx - h, 0), np.minimum(idx + h + 1, n)
    else:
        lo, hi = np.maximum(idx - window + 1, 0), idx + 1
    return (csum[hi] - csum[lo]) / (hi - lo)


def _checked(steps: Sequence[int], gold: Sequence[float], proxy: Sequence[float] | None):
    t = np.asarray(steps)
    g = np.asarray(gold, dtype=np.float64)
    q = None if proxy is None else np.asarray(proxy, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise AdvrmError("onset: need at least one evaluation (steps is empty)")
    if g.shape != t.shape or (q is not None and q.shape != t.shape):
        raise AdvrmError(
            f"onset: steps, gold and proxy must have the same length, got {t.size}, {g.size}, "
            f"{'-' if q is None else q.size}"
        )
    if np.any(np.diff(t) <= 0):
        raise AdvrmError("onset: steps must be strictly increasing (one evaluation per step, in order)")
    if not np.all(np.isfinite(g)) or (q is not None and not np.all(np.isfinite(q))):
        raise AdvrmError("onset: gold and proxy must be finite numbers (is a validator missing?)")
    return t.astype(np.int64), g, q


def detect_onset(
    steps: Sequence[int],
    gold: Sequence[float],
    proxy: Sequence[float] | None,
    cfg: OnsetConfig | None = None,
    *,
    gold_ref_std: float | None = None,
) -> OnsetResult:
    """The hacking onset of one run, by the rule of the module docstring.

    ``proxy=None`` drops the proxy condition (gold-only onset, e.g. for a run whose proxy was not
    logged); ``gold_ref_std`` is required when ``cfg.margin_units == "ref_std"``.
    """
    cfg = cfg or OnsetConfig()
    t, g, q = _checked(steps, gold, proxy)
    if cfg.margin_units == "ref_std":
        if gold_ref_std is None or not (math.isfinite(gold_ref_std) and gold_ref_std > 0):
            raise AdvrmError("onset: margin_units='ref_std' needs a positive gold_ref_std")
        m = cfg.margin * gold_ref_std
    else:
        m = cfg.margin
    G = smooth(g, cfg.window, cfg.smoothing)
    Q = None if q is None else smooth(q, cfg.window, cfg.smoothing)
    n, L = t.size, cfg.patience
    P = np.maximum.accumulate(G)
    # k(i): first index of the running maximum (a later, equal value does not move the peak).
    k = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        k[i] = i if G[i] > P[i - 1] else k[i - 1]

    fall = None
    for f in range(n - L + 1):
        if t[f] < cfg.warmup_steps:
            continue
        window = slice(f, f + L)
        if not np.all(G[window] < P[f] - m):
            continue
        if Q is not None and Q[window].mean() < Q[k[f]] - cfg.proxy_tolerance:
            continue
        fall = f
        break

    best = int(np.argmax(G))
    common = {
        "peak_step": int(t[best]),
        "peak_gold": float(G[best]),
        "final_gold": float(G[-1]),
        "margin": float(m),
        "n_evals": int(n),
    }
    if fall is None:
        return OnsetResult(onset_step=None, censored=True, onset_censored_at=int(t[-1]), **common)
    return OnsetResult(
        onset_step=int(t[k[fall]]),
        censored=False,
        fall_step=int(t[fall]),
        onset_gold=float(G[k[fall]]),
        **common,
    )


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for a single seed, where a spread is undefined)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def summarize_onsets(results: Sequence[OnsetResult | Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate onsets over seeds.

    A censored run counts at its last step (``onset_censored_at``): its true onset is at least that,
    so ``onset_step_mean`` is a LOWER BOUND whenever ``n_censored > 0`` (``onset_step_is_lower_bound``).
    Stds are sample stds over seeds (ddof=1), NaN (JSON null) for one seed.
    """
    rs = [r if isinstance(r, OnsetResult) else OnsetResult.from_dict(r) for r in results]
    if not rs:
        raise AdvrmError("summarize_onsets: no results to summarize (no seeds finished?)")
    onset = []
    for r in rs:
        step = r.onset_step if not r.censored else r.onset_censored_at
        if step is None:
            raise AdvrmError("summarize_onsets: a censored result has no onset_censored_at")
        onset.append(step)
    n_censored = sum(r.censored for r in rs)
    out: dict[str, Any] = {
        "n_seeds": len(rs),
        "n_censored": n_censored,
        "onset_step_is_lower_bound": n_censored > 0,
    }
    for name, values in (
        ("onset_step", onset),
        ("peak_step", [r.peak_step for r in rs]),
        ("peak_gold", [r.peak_gold for r in rs]),
        ("final_gold", [r.final_gold for r in rs]),
    ):
        out[f"{name}_mean"], out[f"{name}_std"] = _mean_std(values)
    return out
