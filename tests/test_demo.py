"""The quick demo end to end: world -> RMs -> 2 hardening rounds -> RLHF x 5 rewards -> report."""

import json

from advrm.demo import REWARDS, DemoConfig, run_demo


def test_quick_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    m = run_demo(out, DemoConfig.preset_config("quick"), log=lambda *_: None)
    assert [r["round"] for r in m["rounds"]] == [0, 1, 2]
    for r in m["rounds"]:
        assert 0.0 <= r["asr_standard"] <= 1.0 and 0.0 <= r["asr_strict"] <= 1.0
        assert 0.0 <= r["rm_accuracy"] <= 1.0
    assert m["rounds"][1]["pairs_added"] > 0
    assert set(m["rlhf"]) == set(REWARDS)
    for summary in m["rlhf"].values():
        assert summary["n_seeds"] == 2 and summary["onset_step_mean"] is not None
    assert "onset_ratio" in m and m["wall_seconds"] > 0 and m["bars"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["rounds"] == m["rounds"]
    report = (out / "report.md").read_text()
    assert "ASR" in report and "onset" in report
    assert (out / "figures" / "rlhf_gold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for reward in REWARDS:
        rows = (out / "rlhf" / reward / "seed-1" / "curve.csv").read_text().splitlines()
        assert rows[0].startswith("step,proxy,gold,kl,length") and len(rows) == 1 + 4  # steps 0, 10, 20, 30
    # rerunning the finished demo into the same directory redoes nothing and gives the same numbers
    again = run_demo(out, DemoConfig.preset_config("quick"), log=lambda *_: None)
    assert again["rounds"] == m["rounds"] and again["rlhf"] == m["rlhf"]
