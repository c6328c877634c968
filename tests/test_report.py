"""The report is built from a hand-made run directory: every number on the page must come from it.

The fixture writes numbers that are easy to find on the page (and unlikely to appear by chance), so
the assertions check that the report copies what the run wrote and does not compute its own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advrm.report import build_report, reward_color

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("rlhf_gold.png", "rlhf_proxy.png", "asr_rounds.png", "accuracy_rounds.png", "asr_vs_queries.png")
CURVE_HEADER = "step,proxy,gold,kl,length,proxy_std,gold_std,kl_seq,truncated"


def _metrics() -> dict:
    return {
        "preset": "quick",
        "seeds": [0, 1],
        "world": {"vocab_size": 512, "name": "synthetic"},
        "rm_eval": {
            "accuracy_vs_gold": 0.8312,
            "gold_ceiling": 0.9047,
            "spearman_with_gold": 0.7123,
            "off_distribution": {
                "spearman_with_gold_pooled": 0.4321,
                "transforms": {
                    "drop_punctuation": {
                        "rm_delta_mean": 0.37,
                        "gold_delta_mean": -1.42,
                        "rm_prefers_transformed": 0.615,
                        "spearman_with_gold": 0.2222,
                    }
                },
            },
        },
        "rounds": [
            {
                "round": 0,
                "asr_standard": 0.953,
                "asr_strict": 0.703,
                "rm_accuracy": 0.8312,
                "pairs_added": 0,
                "n_kept": 417,
                "failure_modes": ["copies the prompt"],
            },
            {
                "round": 1,
                "asr_standard": 0.312,
                "asr_strict": 0.125,
                "rm_accuracy": 0.8344,
                "pairs_added": 1000,
                "n_kept": 211,
                "failure_modes": [],
            },
            {
                "round": 2,
                "asr_standard": 0.078,
                "asr_strict": None,
                "rm_accuracy": 0.8401,
                "pairs_added": 1000,
                "n_kept": 12,
                "failure_modes": None,
            },
        ],
        "attack_round0": {
            "asr_standard": 0.953,
            "asr_strict": 0.703,
            "target_queries": 51200,
            "curve": [
                {"step": s, "target_queries": 512 * s, "asr_standard": a, "asr_strict": a / 2}
                for s, a in ((10, 0.2), (50, 0.6), (100, 0.953))
            ],
            "baselines": {
                "textfooler": {"asr_standard": 0.096, "asr_strict": 0.0, "target_queries": 8192},
                "rlhf_target": {
                    "asr_standard": 0.083,
                    "asr_strict": 0.029,
                    "target_queries": 25600,
                    "curve": [
                        {"target_queries": q, "asr_standard": a, "asr_strict": 0.0}
                        for q, a in ((2560, 0.01), (25600, 0.083))
                    ],
                },
            },
        },
        "rlhf": {
            "conventional": {
                "onset_step_mean": 45.0,
                "onset_step_std": 7.07,
                "peak_gold_mean": 3.8312,
                "peak_gold_std": 0.05,
                "final_gold_mean": -2.4567,
                "final_gold_std": 1.1,
                "n_seeds": 2,
                "n_censored": 0,
                "onset_step_is_lower_bound": False,
            },
            "adv_rm_round2": {
                "onset_step_mean": 135.0,
                "onset_step_std": 21.2,
                "peak_gold_mean": 4.1234,
                "peak_gold_std": 0.1,
                "final_gold_mean": 3.9876,
                "final_gold_std": 0.2,
                "n_seeds": 2,
                "n_censored": 1,
                "onset_step_is_lower_bound": True,
            },
        },
        "onset_ratio": 3.0,
        "bars": [
            {"name": "ASR after hardening", "value": "7.8%", "target": "<= 20%", "met": True},
            {"name": "onset ratio", "value": "3.00", "target": ">= 3", "met": True},
            {"name": "accuracy kept", "value": "-0.4 pt", "target": ">= -1 pt", "met": False},
        ],
        "wall_seconds": 3725.0,
    }


def _write_curve(path: Path, peak: int, seed: int) -> None:
    rows = [CURVE_HEADER]
    for step in range(0, 160, 10):
        gold = 3.0 + 0.02 * min(step, peak) - 0.05 * max(0, step - peak) + 0.03 * seed
        proxy = 0.01 * step + 0.02 * seed
        rows.append(f"{step},{proxy},{gold},{0.01 * step},{20 + step / 10},0.5,0.7,{0.1 * step},0.0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def _adversarial() -> list[dict]:
    def rec(i: int, z: float, kept: bool, response: str) -> dict:
        return {
            "prompt": f"prompt {i}?",
            "response": response,
            "z_target": z,
            "z_second": -0.5 * z,
            "uncertainty": 1.5 * z,
            "z_uncertainty": 2.5,
            "gold": -1.0 - i / 10,
            "z_gold": -2.5,
            "kept": kept,
            "reason": "kept" if kept else "target not fooled",
            "selected_for_asr": True,
        }

    long = "word | pipe " * 40
    return [
        rec(0, 2.5, True, "short kept answer"),
        rec(1, 4.75, True, long),
        rec(2, 9.99, False, "not kept, must not appear"),
        *(rec(3 + i, 1.0 + i / 10, True, f"filler {i}") for i in range(6)),
    ]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps(_metrics()))
    for reward, peak in (("conventional", 40), ("adv_rm_round2", 130)):
        for seed in (0, 1):
            seed_dir = d / "rlhf" / reward / f"seed-{seed}"
            _write_curve(seed_dir / "curve.csv", peak + 10 * seed, seed)
            onset = {
                "onset_step": peak + 10 * seed,
                "peak_step": peak,
                "peak_gold": 3.8,
                "final_gold": 1.0,
                "censored": False,
                "fall_step": peak + 20,
            }
            (seed_dir / "metrics.json").write_text(json.dumps({"onset": onset}))
    attack = d / "harden" / "attack" / "round-0"
    attack.mkdir(parents=True)
    (attack / "adversarial.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _adversarial()))
    (attack / "summary.md").write_text(
        "# Failure modes of round-0 RM\n\nThe target RM over-rewards responses that copy the prompt.\n\n"
        "## Copies the prompt\n\n> **Prompt:** hello\n"
    )
    return d


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_full_report_has_the_tables_and_the_numbers(run_dir: Path) -> None:
    before = _snapshot(run_dir)
    path = build_report(run_dir)
    assert path == run_dir / "report.md"
    text = path.read_text(encoding="utf-8")

    # It only reads: every input is unchanged, and the only new files are the report and its figures.
    after = _snapshot(run_dir)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"report.md", *(f"figures/{f}" for f in FIGURES)}
    for name in FIGURES:
        assert (run_dir / "figures" / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"](figures/{name})" in text

    for heading in (
        "## Summary",
        "## Bars",
        "## Downstream RLHF",
        "## Hardening rounds",
        "## Attack vs baselines",
        "## RM quality",
        "## Adversarial examples (round 0)",
        "## How to read this",
    ):
        assert heading in text, heading
    # Summary paragraph, written from the numbers.
    assert "fooled the conventional RM on 95.3% of held-out prompts" in text
    assert "after 2 rounds of adversarial training" in text and "7.8%" in text
    assert "step ≥ 135 ± 21 vs 45 ± 7 for the conventional RM" in text
    assert "onset ratio ≥ 3.00" in text
    assert "2 of 3 bars met; not met: accuracy kept." in text
    rows = (
        # Bars.
        "| ASR after hardening | 7.8% | <= 20% | yes |",
        "| accuracy kept | -0.4 pt | >= -1 pt | NO |",
        # RLHF.
        "| conventional | 45 ± 7 | 0 of 2 | 3.83 ± 0.05 | -2.46 ± 1.10 |",
        "| adv_rm_round2 | ≥ 135 ± 21 | 1 of 2 | 4.12 ± 0.10 | 3.99 ± 0.20 |",
        # Rounds: a null value is n/a, never a made-up number.
        "| 0 | 95.3% | 70.3% | 83.1% | 0 | 417 | copies the prompt |",
        "| 2 | 7.8% | n/a | 84.0% | 1,000 | 12 | n/a |",
        # Attack vs baselines.
        "| Adv-RM attack | 95.3% | 70.3% | 51,200 |",
        "| textfooler | 9.6% | 0.0% | 8,192 |",
        "| rlhf_target | 8.3% | 2.9% | 25,600 |",
        # Off-distribution transforms.
        "| drop_punctuation | 0.37 | -1.42 | 61.5% | 0.222 |",
    )
    for row in rows:
        assert row in text, row
    # RM quality and off-distribution.
    assert "90.5%" in text and "0.712" in text and "0.432" in text
    # Examples: kept only, highest z_target first, truncated, pipes escaped.
    examples = text.split("## Adversarial examples (round 0)")[1].split("\n## ")[0]
    assert "not kept, must not appear" not in examples
    assert examples.index("4.75") < examples.index("2.50")
    assert "word \\| pipe" in examples and "…" in examples
    assert sum(line.startswith("| prompt ") and line[9].isdigit() for line in examples.splitlines()) == 6
    # The failure-mode summary is included with its headings demoted.
    assert "\n## Failure modes of round-0 RM\n" in text and "\n### Copies the prompt\n" in text
    assert "hacking onset" in text.lower() and "Missing" not in text


def test_partial_run_builds_with_missing_notes(tmp_path: Path) -> None:
    d = tmp_path / "partial"
    d.mkdir()
    rounds = [{"round": 0, "asr_standard": 0.9, "asr_strict": None, "rm_accuracy": 0.8}]
    (d / "metrics.json").write_text(json.dumps({"rounds": rounds, "rlhf": None, "bars": None}))
    text = build_report(d).read_text(encoding="utf-8")
    assert "_Missing:" in text
    assert "| 0 | 90.0% | n/a | 80.0% |" in text
    assert "metrics.json has no `rlhf` summary" in text and "adversarial.jsonl" in text
    assert (d / "figures" / "asr_rounds.png").read_bytes()[:8] == PNG_MAGIC
    assert (d / "figures" / "accuracy_rounds.png").read_bytes()[:8] == PNG_MAGIC
    assert not (d / "figures" / "rlhf_gold.png").exists()


def test_empty_run_and_per_seed_fallback(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = build_report(empty).read_text(encoding="utf-8")
    assert "metrics.json" in text and "_Missing:" in text

    # No metrics.json yet, but finished RLHF seeds: onsets are aggregated with the project's own rule.
    d = tmp_path / "seeds"
    for seed, onset in ((0, 40), (1, 60)):
        seed_dir = d / "rlhf" / "conventional" / f"seed-{seed}"
        _write_curve(seed_dir / "curve.csv", onset, seed)
        res = {
            "onset_step": onset,
            "peak_step": onset,
            "peak_gold": 3.5,
            "final_gold": 1.25,
            "censored": False,
            "onset_censored_at": None,
            "fall_step": onset + 20,
        }
        (seed_dir / "metrics.json").write_text(json.dumps({"onset": res}))
    text = build_report(d).read_text(encoding="utf-8")
    assert f"| conventional | 50 ± {math.sqrt(200):.0f} | 0 of 2 | 3.50 ± 0.00 | 1.25 ± 0.00 |" in text
    assert "summarize_onsets" in text
    assert (d / "figures" / "rlhf_gold.png").read_bytes()[:8] == PNG_MAGIC


def test_running_demo_reads_the_stage_files(tmp_path: Path) -> None:
    """Before metrics.json exists, rounds and the round-0 attack come from the harden stage's files."""
    d = tmp_path / "running"
    attack = d / "harden" / "attack" / "round-0"
    attack.mkdir(parents=True)
    (d / "harden" / "harden.json").write_text(json.dumps({"rounds": _metrics()["rounds"][:1]}))
    (attack / "metrics.json").write_text(json.dumps({"asr_standard": 0.4567, "asr_strict": 0.1234}))
    text = build_report(d).read_text(encoding="utf-8")
    assert "rounds are taken from harden/harden.json" in text
    assert "| 0 | 95.3% | 70.3% | 83.1% | 0 | 417 | copies the prompt |" in text
    assert "| Adv-RM attack | 45.7% | 12.3% | n/a |" in text


def test_nulls_everywhere_are_na_not_numbers(tmp_path: Path) -> None:
    def nullify(obj):
        if isinstance(obj, dict):
            return {k: nullify(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [nullify(v) for v in obj]
        return None

    d = tmp_path / "nulls"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps(nullify(_metrics())))
    text = build_report(d).read_text(encoding="utf-8")
    assert "n/a" in text and "%" not in text.split("## How to read this")[0].replace("20%", "")
    assert not (d / "figures").exists()


def test_not_a_directory(tmp_path: Path) -> None:
    from advrm.errors import AdvrmError

    with pytest.raises(AdvrmError):
        build_report(tmp_path / "nope")


def test_reward_colors_are_stable() -> None:
    assert reward_color("conventional") == reward_color("conventional", ["x", "conventional"])
    assert reward_color("a", ["a", "b"]) != reward_color("b", ["a", "b"])
