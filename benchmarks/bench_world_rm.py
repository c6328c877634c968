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
from _measure import print_table, world_and_rms, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="quick,full")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args()
    rows = [
        {"preset": preset, **stage}
        for preset in args.presets.split(",")
        for stage in world_and_rms(args.out / f"world-{preset}", preset, args.out)
    ]
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
