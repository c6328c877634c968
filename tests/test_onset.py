"""advrm.onset: the one hacking-onset rule, on curves whose answer is known."""

import math

import numpy as np
import pytest

from advrm.errors import AdvrmError
from advrm.onset import OnsetConfig, OnsetResult, detect_onset, smooth, summarize_onsets

STEPS = list(range(0, 210, 10))  # 21 evaluations, every 10 steps


def rise_then_fall(peak_at: int = 30) -> list[float]:
    """findings.md's clean run: gold 2.3 -> 3.8 at step 30 -> 2.1 at step 200."""
    return [
        2.3 + 1.5 * s / peak_at if s <= peak_at else 3.8 - 1.7 * (s - peak_at) / (200 - peak_at)
        for s in STEPS
    ]


def rising(lo: float = 2.0, hi: float = 2.2) -> list[float]:
    return list(np.linspace(lo, hi, len(STEPS)))


def test_smooth_centered_and_trailing():
    x = [0.0, 3.0, 6.0, 9.0]
    assert smooth(x, 3, "centered").tolist() == [1.5, 3.0, 6.0, 7.5]
    assert smooth(x, 3, "trailing").tolist() == [0.0, 1.5, 3.0, 6.0]
    assert smooth(x, 1).tolist() == x


def test_rise_then_fall_reports_the_peak():
    exact = detect_onset(STEPS, rise_then_fall(), rising(), OnsetConfig(window=1))
    assert exact.onset_step == 30 and exact.peak_step == 30 and exact.onset_gold == pytest.approx(3.8)
    r = detect_onset(STEPS, rise_then_fall(), rising(), OnsetConfig())
    assert not r.censored and r.onset_censored_at is None
    # Smoothing moves this asymmetric peak (fast rise, slow fall) at most h = 1 evaluation later.
    assert r.onset_step in (30, 40) and r.peak_step == r.onset_step
    # The fall is confirmed once the smoothed gold is 0.25 below the peak: a few evaluations later.
    assert r.fall_step is not None and 30 < r.fall_step <= 80
    assert r.final_gold < r.peak_gold
    # A larger margin moves the fall later, not the onset.
    r2 = detect_onset(STEPS, rise_then_fall(), rising(), OnsetConfig(margin=0.6))
    assert r2.onset_step == r.onset_step and r2.fall_step > r.fall_step


def test_monotone_rise_is_censored_at_the_last_step():
    r = detect_onset(STEPS, rising(2.0, 4.0), rising(), OnsetConfig())
    assert r.onset_step is None and r.censored and r.onset_censored_at == 200
    assert r.peak_step == 200 and r.fall_step is None


def test_noisy_plateau_within_margin_is_not_hacking():
    rng = np.random.default_rng(0)
    gold = 3.0 + rng.uniform(-0.15, 0.15, len(STEPS))
    r = detect_onset(STEPS, gold, rising(), OnsetConfig(margin=0.25))
    assert r.censored and r.onset_step is None


def test_proxy_falling_with_gold_is_not_hacking():
    gold = rise_then_fall()
    proxy = [g - 1.0 for g in gold]  # the proxy tracks gold: the policy got worse, it did not hack
    assert detect_onset(STEPS, gold, proxy, OnsetConfig()).censored
    # Without the proxy condition the same gold curve has an onset.
    assert detect_onset(STEPS, gold, None, OnsetConfig(window=1)).onset_step == 30


def test_fall_shorter_than_patience_or_at_the_end_is_censored():
    gold = [3.0] * len(STEPS)
    gold[10] = gold[11] = 2.0  # a two-evaluation dip (smoothed: three) then recovery
    cfg = OnsetConfig(window=1, patience=3)
    assert detect_onset(STEPS, gold, None, cfg).censored
    late = [3.0] * (len(STEPS) - 2) + [2.0, 2.0]  # a fall seen for 2 < patience evaluations
    assert detect_onset(STEPS, late, None, cfg).censored


def test_warmup_and_ref_std_margin():
    gold = [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    steps = [0, 10, 20, 30, 40, 50]
    cfg = OnsetConfig(window=1, patience=2)
    r = detect_onset(steps, gold, None, cfg)
    assert (r.onset_step, r.fall_step) == (0, 10)
    r = detect_onset(steps, gold, None, OnsetConfig(window=1, patience=2, warmup_steps=30))
    assert (r.onset_step, r.fall_step) == (0, 30)  # a persistent fall is still found after the warm-up
    ref = OnsetConfig(window=1, patience=2, margin=2.0, margin_units="ref_std")
    assert detect_onset(steps, gold, None, ref, gold_ref_std=0.4).onset_step == 0  # m = 0.8 < 1
    assert detect_onset(steps, gold, None, ref, gold_ref_std=0.6).censored  # m = 1.2 > 1
    with pytest.raises(AdvrmError, match="gold_ref_std"):
        detect_onset(steps, gold, None, ref)


def test_bad_inputs_are_user_errors():
    with pytest.raises(AdvrmError):
        detect_onset([], [], None)
    with pytest.raises(AdvrmError, match="increasing"):
        detect_onset([0, 10, 10], [1.0, 2.0, 3.0], None)
    with pytest.raises(AdvrmError, match="finite"):
        detect_onset([0, 10], [1.0, math.nan], None)
    with pytest.raises(AdvrmError, match="odd"):
        OnsetConfig(window=4)


def test_summarize_onsets_counts_censored_runs_at_their_last_step():
    cfg = OnsetConfig(window=1)
    hacked = detect_onset(STEPS, rise_then_fall(30), rising(), cfg)
    hacked_late = detect_onset(STEPS, rise_then_fall(90), rising(), cfg)
    clean = detect_onset(STEPS, rising(2.0, 4.0), rising(), cfg)
    s = summarize_onsets([hacked, hacked_late, clean.to_dict()])
    assert s["n_seeds"] == 3 and s["n_censored"] == 1 and s["onset_step_is_lower_bound"]
    assert hacked_late.onset_step == 90
    assert s["onset_step_mean"] == pytest.approx((30 + 90 + 200) / 3)
    assert s["onset_step_std"] == pytest.approx(np.std([30, 90, 200], ddof=1))
    assert s["peak_gold_mean"] == pytest.approx(
        np.mean([hacked.peak_gold, hacked_late.peak_gold, clean.peak_gold])
    )
    assert s["final_gold_std"] > 0
    one = summarize_onsets([hacked])
    assert (
        one["n_censored"] == 0 and not one["onset_step_is_lower_bound"] and math.isnan(one["onset_step_std"])
    )
    with pytest.raises(AdvrmError):
        summarize_onsets([])


def test_result_round_trips_through_a_dict():
    r = detect_onset(STEPS, rise_then_fall(), rising(), OnsetConfig())
    assert OnsetResult.from_dict(r.to_dict()) == r
