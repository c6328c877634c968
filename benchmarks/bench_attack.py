"""ASR against target-RM queries for Adv-RM and each baseline, and the attack's wall time and peak memory.

    python benchmarks/bench_attack.py [--preset quick|full] [--out runs/bench-attack] [--world DIR]

Builds the world and two RMs (or reuses ``--world`` with ``rm/seed-0``, ``rm/seed-1`` inside), runs
``advrm attack`` in a child process, prints the table, writes ``benchmarks/results/attack_<preset>.json``
and ``benchmarks/results/asr_vs_queries_<preset>.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _measure import measure, print_table, world_and_rms, write_json

RESULTS = Path(__file__).parent / "results"


def table_rows(m: dict) -> list[dict]:
    rows = [
        {
            "method": "adv-rm",
            "target_queries": m["target_queries"],
            "asr_standard": m["asr_standard"],
            "asr_strict": m["asr_strict"],
        }
    ]
    rows += [
        {
            "method": f"adv-rm @ step {p['step']}",
            "target_queries": p["target_queries"],
            "asr_standard": p["asr_standard"],
            "asr_strict": p["asr_strict"],
        }
        for p in m.get("curve", [])
    ]
    for name, b in m["baselines"].items():
        rows.append(
            {
                "method": name,
                "target_queries": b["target_queries"],
                "asr_standard": b["asr_standard"],
                "asr_strict": b["asr_strict"],
            }
        )
        rows += [
            {
                "method": f"{name} @ {p['target_queries']}",
                **{k: p[k] for k in ("target_queries", "asr_standard", "asr_strict")},
            }
            for p in b.get("curve", [])
        ]
    for r in rows:
        for k in ("asr_standard", "asr_strict"):
            r[k] = None if r[k] is None else round(r[k], 3)
    return rows


def plot(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    curve = [*m.get("curve", []), {"target_queries": m["target_queries"], "asr_standard": m["asr_standard"]}]
    ax.plot(
        [p["target_queries"] for p in curve], [p["asr_standard"] for p in curve], "o-", label="Adv-RM", lw=2
    )
    for name, b in m["baselines"].items():
        pts = [
            *b.get("curve", []),
            {"target_queries": b["target_queries"], "asr_standard": b["asr_standard"]},
        ]
        ax.plot(
            [p["target_queries"] for p in pts],
            [p["asr_standard"] for p in pts],
            "s--" if len(pts) > 1 else "s",
            label=name,
            alpha=0.8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("target-RM queries")
    ax.set_ylabel("ASR (standard)")
    ax.set_ylim(0, 1)
    ax.set_title("Attack success vs target-RM query budget")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="full", choices=["quick", "full"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-attack"))
    ap.add_argument(
        "--world", type=Path, default=None, help="reuse a built world with rm/seed-0 and rm/seed-1"
    )
    ap.add_argument(
        "--attack",
        type=Path,
        default=None,
        help="tabulate and plot a finished attack directory instead of running one",
    )
    args = ap.parse_args()
    if args.attack is not None:
        m = json.loads((args.attack / "metrics.json").read_text())
        print_table(table_rows(m), ["method", "target_queries", "asr_standard", "asr_strict"])
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(m, RESULTS / f"asr_vs_queries_{args.preset}.png")
        write_json(
            RESULTS / f"attack_{args.preset}.json",
            {"attack": str(args.attack), "asr": table_rows(m), "wall_seconds": m.get("wall_seconds")},
        )
        return
    world = args.world or args.out / "world"
    stages = []
    if args.world is None:
        stages += world_and_rms(world, args.preset, args.out)
    attack_dir = args.out / "attack"
    extra = ["--steps", "40", "--set", "n_eval_prompts=48"] if args.preset == "quick" else []
    stages.append(
        measure(
            "attack (with baselines)",
            [
                "attack",
                "--target",
                str(world / "rm" / "seed-0"),
                "--second",
                str(world / "rm" / "seed-1"),
                "--policy",
                str(world / "policy"),
                "--prompts",
                str(world / "prompts_attack.jsonl"),
                "--eval-prompts",
                str(world / "prompts_heldout.jsonl"),
                "--validator",
                "gold",
                "--out",
                str(attack_dir),
                *extra,
            ],
            args.out / "attack.log",
        )
    )
    m = json.loads((attack_dir / "metrics.json").read_text())
    rows = table_rows(m)
    print_table(stages, ["stage", "wall_seconds", "peak_rss_mib"])
    print()
    print_table(rows, ["method", "target_queries", "asr_standard", "asr_strict"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(m, RESULTS / f"asr_vs_queries_{args.preset}.png")
    write_json(RESULTS / f"attack_{args.preset}.json", {"stages": stages, "asr": rows})


if __name__ == "__main__":
    main()
