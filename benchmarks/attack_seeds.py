"""Adv-RM and its baselines over several attack seeds: ASR mean +- std from one command.

    python benchmarks/attack_seeds.py --world runs/full/world --target RM0 --second RM1 --seeds 0,1,2 \\
        --out runs/attack-seeds [--reuse 0=runs/full/harden/attack/round-0]

Every seed is a full ``advrm attack`` (same target, second RM, prompts and query budget; a new RL seed).
``--reuse SEED=DIR`` takes an attack already run with that seed and the same config (e.g. the demo's
round-0 attack). Prints the table and writes ``benchmarks/results/attack_seeds.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _measure import measure, print_table, write_json


def mean_std(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--second", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/attack-seeds"))
    ap.add_argument("--reuse", action="append", default=[], help="SEED=DIR of a finished attack")
    args = ap.parse_args()
    reuse = {int(k): Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
    runs, stages = {}, []
    for seed in (int(s) for s in args.seeds.split(",")):
        out = reuse.get(seed, args.out / f"seed-{seed}")
        if seed not in reuse:
            args.out.mkdir(parents=True, exist_ok=True)
            stages.append(
                {
                    "seed": seed,
                    **measure(
                        f"attack seed {seed}",
                        [
                            "attack",
                            "--target",
                            args.target,
                            "--second",
                            args.second,
                            "--policy",
                            str(args.world / "policy"),
                            "--prompts",
                            str(args.world / "prompts_attack.jsonl"),
                            "--eval-prompts",
                            str(args.world / "prompts_heldout.jsonl"),
                            "--validator",
                            "gold",
                            "--seed",
                            str(seed),
                            "--out",
                            str(out),
                        ],
                        args.out / f"seed-{seed}.log",
                    ),
                }
            )
        runs[seed] = json.loads((out / "metrics.json").read_text())
    methods = {"adv-rm": [(m["asr_standard"], m["asr_strict"], m["target_queries"]) for m in runs.values()]}
    for name in next(iter(runs.values()))["baselines"]:
        methods[name] = [
            (
                m["baselines"][name]["asr_standard"],
                m["baselines"][name]["asr_strict"],
                m["baselines"][name]["target_queries"],
            )
            for m in runs.values()
        ]
    rows = [
        {
            "method": k,
            "asr_standard": mean_std([v[0] for v in vals]),
            "asr_strict": mean_std([v[1] for v in vals]),
            "target_queries": int(np.mean([v[2] for v in vals])),
            "seeds": len(vals),
        }
        for k, vals in methods.items()
    ]
    best = max(
        (r for r in rows if r["method"] != "adv-rm"), key=lambda r: float(r["asr_standard"].split()[0])
    )
    ratio = float(rows[0]["asr_standard"].split()[0]) / max(float(best["asr_standard"].split()[0]), 1e-9)
    if stages:
        print_table(stages, ["seed", "stage", "wall_seconds", "peak_rss_mib"])
        print()
    print_table(rows, ["method", "asr_standard", "asr_strict", "target_queries", "seeds"])
    print(f"\nAdv-RM standard ASR / best baseline ({best['method']}): {ratio:.2f}x")
    write_json(
        Path(__file__).parent / "results" / "attack_seeds.json",
        {
            "rows": rows,
            "best_baseline": best["method"],
            "ratio_to_best_baseline": ratio,
            "stages": stages,
            "per_seed": {
                str(k): {
                    "asr_standard": m["asr_standard"],
                    "asr_strict": m["asr_strict"],
                    "failure_modes": m.get("failure_modes"),
                }
                for k, m in runs.items()
            },
        },
    )


if __name__ == "__main__":
    main()
