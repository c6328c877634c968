"""Wall time and peak memory of world build and RM training, for both presets.

    python benchmarks/bench_world_rm.py [--presets quick,full] [--out runs/bench]

Each stage runs in a fresh child process (``benchmarks/_measure.py``). Prints a table and writes
``benchmarks/results/world_rm.json``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from _measure import measure, print_table, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="quick,full")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args()
    rows = []
    for preset in args.presets.split(","):
        world = args.out / f"world-{preset}"
        rows.append(
            {
                "preset": preset,
                **measure(
                    f"world build ({preset})",
                    ["world", "build", "--out", str(world), "--preset", preset],
                    args.out / f"world-{preset}.log",
                ),
            }
        )
        rows.append(
            {
                "preset": preset,
                **measure(
                    f"train-rm x2 ({preset})",
                    [
                        "train-rm",
                        "--base",
                        str(world / "policy"),
                        "--data",
                        str(world / "pairs_train.jsonl"),
                        "--out",
                        str(world / "rm"),
                        "--seeds",
                        "0,1",
                    ],
                    args.out / f"rm-{preset}.log",
                ),
            }
        )
    print_table(rows, ["preset", "stage", "wall_seconds", "peak_rss_mib"])
    for preset in args.presets.split(","):
        total = sum(r["wall_seconds"] for r in rows if r["preset"] == preset)
        print(f"{preset}: world + 2 RMs = {total:.0f} s")
    write_json(
        Path(__file__).parent / "results" / "world_rm.json",
        {
            "machine": {
                "cpus": torch.get_num_threads(),
                "platform": platform.platform(),
                "torch": torch.__version__,
            },
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
