"""Shared measuring for the benchmarks: run a CLI command in a child process, report wall time and
peak resident memory (the child's ru_maxrss), so every stage is measured the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ADVRM = [sys.executable, "-m", "advrm.cli"]


def measure(name: str, args: list[str], log: Path) -> dict:
    """Run ``advrm ARGS`` as a child process; wall seconds and peak RSS in MiB."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    with log.open("w") as f:
        proc = subprocess.Popen([*ADVRM, *args], stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
    wall = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}); see {log}")
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    return {"stage": name, "wall_seconds": round(wall, 1), "peak_rss_mib": round(peak_mib, 1)}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def world_and_rms(world: Path, preset: str, logs: Path) -> list[dict]:
    """Measure ``advrm world build`` then ``advrm train-rm`` (seeds 0, 1) into ``world``."""
    return [
        measure(
            f"world build ({preset})",
            ["world", "build", "--out", str(world), "--preset", preset],
            logs / f"world-{preset}.log",
        ),
        measure(
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
            logs / f"rm-{preset}.log",
        ),
    ]
