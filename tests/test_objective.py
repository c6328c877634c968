"""The Adv-RM objective, the keep filter and both ASR definitions, on hand-made numbers."""

import numpy as np
import pytest

from advrm.objective import ObjectiveConfig, adv_reward, asr_standard, asr_strict, keep_mask, uncertainty


def test_objective_matches_the_formula():
    cfg = ObjectiveConfig(lam1=1.0, lam2=1.0, tau=0.0, penalty=-5.0)
    z1 = np.array([1.0, 2.0, -0.5, 0.0, 3.0])
    z2 = np.array([-1.0, 2.5, 0.0, -3.0, 0.0])
    np.testing.assert_allclose(adv_reward(z1, z2, cfg), [2.0, -0.5, -5.0, -5.0, 3.0])


def test_objective_weights_threshold_and_truncation():
    cfg = ObjectiveConfig(lam1=2.0, lam2=0.5, tau=1.0, penalty=-3.0)
    z1, z2 = np.array([1.5, 0.9, 4.0]), np.array([1.0, -9.0, 0.0])
    np.testing.assert_allclose(adv_reward(z1, z2, cfg), [2 * 1.5 - 0.5 * 1.0, -3.0, 8.0])
    np.testing.assert_allclose(
        adv_reward(z1, z2, cfg, truncated=np.array([False, False, True])), [2.5, -3.0, -3.0]
    )


def test_keep_mask_needs_both_conditions():
    z1 = np.array([1.0, 1.0, -1.0, 0.5])
    z_u = np.array([2.5, 1.0, 3.0, 1.97])
    assert keep_mask(z1, z_u).tolist() == [True, False, False, True]
    np.testing.assert_allclose(uncertainty([1.0, 2.0], [3.0, -1.0]), [-2.0, 3.0])


def test_asr_definitions_on_constructed_scores():
    # prompt 0: target prefers y1, gold prefers y2 -> success; 1: gold agrees -> no; 2: target prefers y2 -> no
    target_adv, target_ref = np.array([2.0, 2.0, 0.0, 5.0]), np.array([1.0, 1.0, 1.0, 1.0])
    gold_adv, gold_ref = np.array([0.0, 3.0, 0.0, -1.0]), np.array([1.0, 1.0, 1.0, 1.0])
    assert asr_standard(target_adv, target_ref, gold_adv, gold_ref) == pytest.approx(0.5)
    assert asr_strict(np.array([0.1, 1.0, -0.1, 2.0]), np.array([-2.0, -1.9, -5.0, -3.0])) == pytest.approx(
        0.5
    )


def test_objective_config_rejects_negative_lambda():
    from advrm.configs import load_config
    from advrm.errors import AdvrmError

    with pytest.raises(AdvrmError, match="lam1"):
        load_config(ObjectiveConfig, {"lam1": -1.0})
    with pytest.raises(AdvrmError, match="tau"):
        load_config(ObjectiveConfig, {"tau": "abc"})
