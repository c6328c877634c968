"""Crash safety: an attack, an RLHF run and a hardening round SIGKILLed mid-way, then rerun into the same
directory, end with the records of an uninterrupted run (same count, same content, no torn line).

Runs are real processes. To pay the ~10 s import of torch/transformers/TRL once, a small fork server
(:func:`serve`, started as ``python -c``) imports everything, then forks one child per run; a child that
must die installs a hook that sends itself SIGKILL at a precise point (right after a checkpoint is saved,
between two optimizer steps, or in the middle of writing a line, leaving half of it on disk). SIGKILL
cannot be caught: no ``finally``, no ``atexit``, no flush happens, exactly as with ``kill -9``.
Every child starts from the server's freshly imported state, so nothing a killed run computed
survives in memory: a resumed run knows only what is on disk.

The one legitimately non-deterministic field is ``wall_seconds`` (and, for RLHF, ``resumed_from_step``,
which says where the run resumed); everything else is compared exactly.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent

ATTACK = {
    "rl": {"steps": 6, "save_steps": 2, "prompts_per_step": 4, "num_generations": 2, "max_new_tokens": 16},
    "n_eval_prompts": 8,
    "samples_per_prompt": 2,
    "n_reference": 2,
    "baselines": [],
    "curve_points": 6,
}
RLHF = {
    "rl": {
        "steps": 6,
        "save_steps": 2,
        "prompts_per_step": 4,
        "num_generations": 2,
        "max_new_tokens": 16,
        "learning_rate": 3e-3,
    },
    "eval_every": 2,
    "n_eval_prompts": 8,
    "n_ref_prompts": 8,
}
HARDEN = {
    "rounds": 1,
    "pairs_per_round": 32,
    "seeds": [0, 1],
    "harvest_samples_per_prompt": 2,
    "rm": {"epochs": 2.0, "batch_size": 16, "learning_rate": 5e-3},
    "attack": {**ATTACK, "curve_points": 2},
}
N_PAIRS, N_HELDOUT_PAIRS = 128, 48
SECONDS_PER_RUN = 300
NONDETERMINISTIC = ("wall_seconds", "resumed_from_step")


# --------------------------------------------------------------------------------------------------
# The fork server (runs in its own process)
# --------------------------------------------------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Torn:
    """Stands in for an open file: writes the first half of what it is given, syncs, and dies."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: Any) -> None:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        os.fsync(self.real.fileno())
        _die()


def _install_kill(kill: dict[str, Any]) -> None:
    """Patch the library so that this process SIGKILLs itself at ``kill``'s point.

    - ``{"at": "after_save", "step": N, "where": s}``: right after a trainer whose output_dir contains
      ``s`` has saved its checkpoint of step N;
    - ``{"at": "mid_step", "step": N, "where": s}``: after optimizer step N (and the step-end callbacks),
      before that trainer logs or saves anything;
    - ``{"at": "torn_jsonl", "file": name, "record": N}`` / ``{"at": "torn_csv", "record": N}``: in the
      middle of the N-th line this process appends to ``name`` (a JsonlWriter file) / to ``curve.csv``.
    """
    import transformers

    from advrm.io import JsonlWriter
    from advrm.rlhf import CurveLog

    at = kill["at"]

    def due(trainer: Any) -> bool:
        return kill["where"] in str(trainer.args.output_dir) and trainer.state.global_step == kill["step"]

    if at == "after_save":
        save = transformers.Trainer._save_checkpoint

        def save_then_die(self, *args, **kwargs):
            save(self, *args, **kwargs)
            if due(self):
                _die()

        transformers.Trainer._save_checkpoint = save_then_die
    elif at == "mid_step":
        step_end = transformers.Trainer._maybe_log_save_evaluate

        def die_before_save(self, *args, **kwargs):
            if due(self):
                _die()
            return step_end(self, *args, **kwargs)

        transformers.Trainer._maybe_log_save_evaluate = die_before_save
    elif at in ("torn_jsonl", "torn_csv"):
        cls, method = (JsonlWriter, "write") if at == "torn_jsonl" else (CurveLog, "append")
        original = getattr(cls, method)
        seen = [0]

        def tear(self, *args, **kwargs):
            if at == "torn_csv" or self.path.name == kill["file"]:
                seen[0] += 1
                if seen[0] == kill["record"]:
                    self._file = _Torn(self._file)
            return original(self, *args, **kwargs)

        setattr(cls, method, tear)
    else:
        raise ValueError(f"unknown kill point {at!r}")


def _job_attack(world: str, rms: list[str], out: str, config: dict) -> None:
    from advrm.attack.run import AttackConfig, Scorers, run_attack
    from advrm.configs import load_config
    from advrm.data import load_prompts
    from advrm.scoring import HFRewardScorer
    from advrm.worlds.synthetic.gold import GoldJudge

    w = Path(world)
    scorers = Scorers(HFRewardScorer(Path(rms[0])), [HFRewardScorer(Path(rms[1]))], GoldJudge())
    run_attack(
        scorers,
        w / "policy",
        load_prompts(w / "prompts_attack.jsonl").prompts,
        Path(out),
        load_config(AttackConfig, config),
        eval_prompts=load_prompts(w / "prompts_heldout.jsonl").prompts,
    )


def _job_rlhf(world: str, rms: list[str], out: str, config: dict) -> None:
    from advrm.configs import load_config
    from advrm.data import load_prompts
    from advrm.rlhf import RLHFConfig, run_rlhf
    from advrm.worlds.synthetic.gold import GoldJudge

    w = Path(world)
    run_rlhf(
        w / "policy",
        [Path(rms[0])],
        load_prompts(w / "prompts_attack.jsonl").prompts,
        load_prompts(w / "prompts_heldout.jsonl").prompts,
        Path(out),
        load_config(RLHFConfig, config),
        seed=1,
        validator=GoldJudge(),
        reward_name="single",
    )


def _job_harden(world: str, out: str, config: dict) -> None:
    from advrm.configs import load_config
    from advrm.data import load_preferences, load_prompts
    from advrm.harden import HardenConfig, run_harden
    from advrm.worlds.synthetic.gold import GoldJudge

    w = Path(world)
    run_harden(
        w / "policy",
        load_preferences(w / "pairs_train.jsonl").select(range(N_PAIRS)),
        load_preferences(w / "pairs_heldout.jsonl").select(range(N_HELDOUT_PAIRS)),
        load_prompts(w / "prompts_attack.jsonl").prompts,
        Path(out),
        load_config(HardenConfig, config),
        eval_prompts=load_prompts(w / "prompts_heldout.jsonl").prompts,
        validator=GoldJudge(),
    )


def _job_train_rm(world: str, out: str, config: dict, seed: int) -> None:
    from advrm.configs import load_config
    from advrm.data import load_preferences
    from advrm.rm_training import RMTrainConfig, train_reward_model

    w = Path(world)
    pairs = load_preferences(w / "pairs_train.jsonl")
    train_reward_model(w / "policy", pairs, Path(out), load_config(RMTrainConfig, config), seed=seed)


JOBS = {"attack": _job_attack, "rlhf": _job_rlhf, "harden": _job_harden, "train_rm": _job_train_rm}


def serve() -> None:
    """Read one job per stdin line; run each in a forked child; answer with how the child ended."""
    import torch

    torch.set_num_threads(1)
    import advrm.attack.run
    import advrm.harden
    import advrm.rlhf  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                if job.get("kill"):
                    _install_kill(job["kill"])
                JOBS[job["kind"]](**job["args"])
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        print(json.dumps({"signal": killed_by, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


# --------------------------------------------------------------------------------------------------
# The test side
# --------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, logs: Path) -> None:
        env = {
            **os.environ,
            "ADVRM_FORCE_CPU": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        self.logs = logs
        self.n = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from test_resume import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(logs / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
            text=True,
            env=env,
        )
        assert json.loads(self._answer(120)) == {"ready": True}

    def _answer(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise AssertionError(f"fork server gave no answer; see {self.logs}")
        return line

    def run(self, kind: str, kill: dict | None = None, **args: Any) -> dict:
        """Run one job; with ``kill``, assert that it died of SIGKILL, else that it succeeded."""
        self.n += 1
        log = self.logs / f"{self.n:02d}-{kind}.log"
        job = {"kind": kind, "args": args, "kill": kill, "log": str(log)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        result = json.loads(self._answer(SECONDS_PER_RUN))
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        if kill:
            assert result["signal"] == signal.SIGKILL, f"{kind} was to be killed at {kill}: {result}\n{tail}"
        else:
            assert result["exit"] == 0, f"{kind} failed: {result}\n{tail}"
        return result

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("resume-logs"))
    yield r
    r.close()


def jsonl_records(path: Path) -> list[dict]:
    """Every line of ``path`` parsed; fails on a torn line anywhere, the last one included."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path}: last line is not terminated"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def assert_torn(path: Path) -> None:
    """The kill left half a line at the end of ``path``."""
    data = path.read_bytes()
    assert data and not data.endswith(b"\n"), f"{path}: expected a torn last line"


def without_wall_time(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: without_wall_time(v) for k, v in obj.items() if k not in NONDETERMINISTIC}
    if isinstance(obj, list):
        return [without_wall_time(v) for v in obj]
    return obj


def json_file(path: Path) -> Any:
    return without_wall_time(json.loads(path.read_text()))


def assert_same_weights(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].dtype == tb[name].dtype and ta[name].shape == tb[name].shape, name
        assert (ta[name] == tb[name]).all(), f"{a} and {b} differ in {name}"


def assert_same_attack(a: Path, b: Path) -> None:
    records = jsonl_records(a / "adversarial.jsonl")
    assert len(records) == 8 * 2  # every held-out prompt, every sample, once
    assert len({(r["prompt"], r["sample"]) for r in records}) == len(records)
    assert records == jsonl_records(b / "adversarial.jsonl")
    assert jsonl_records(a / "curve.jsonl") == jsonl_records(b / "curve.jsonl")
    assert jsonl_records(a / "reference.jsonl") == jsonl_records(b / "reference.jsonl")
    assert json_file(a / "metrics.json") == json_file(b / "metrics.json")
    assert (a / "summary.md").read_text() == (b / "summary.md").read_text()
    assert_same_weights(a / "policy" / "model.safetensors", b / "policy" / "model.safetensors")


@pytest.fixture(scope="module")
def paths(tiny_world, tiny_rms) -> dict[str, Any]:
    return {"world": str(tiny_world), "rms": [str(p) for p in tiny_rms]}


def test_attack_killed_three_times_resumes_to_the_uninterrupted_records(runner, paths, tmp_path):
    ref, ref2, run = tmp_path / "uninterrupted", tmp_path / "uninterrupted-again", tmp_path / "killed"
    runner.run("attack", out=str(ref), config=ATTACK, **paths)
    runner.run("attack", out=str(ref2), config=ATTACK, **paths)
    assert_same_attack(ref, ref2)  # same seed and config, same records: the baseline is deterministic
    assert len(jsonl_records(ref / "curve.jsonl")) == 6

    # 1. Right after the RL checkpoint of step 2 is written.
    runner.run(
        "attack", kill={"at": "after_save", "step": 2, "where": ".rl"}, out=str(run), config=ATTACK, **paths
    )
    assert (run / ".rl" / "checkpoint-2").is_dir() and not (run / "policy").exists()
    # 2. After step 5 (its curve point written), before anything is saved: resumes from checkpoint-4.
    runner.run(
        "attack", kill={"at": "mid_step", "step": 5, "where": ".rl"}, out=str(run), config=ATTACK, **paths
    )
    assert [p["step"] for p in jsonl_records(run / "curve.jsonl")] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (run / ".rl").glob("checkpoint-*")) == ["checkpoint-4"]
    # 3. Half-way through writing the 6th record (the second sample of the third prompt).
    kill = {"at": "torn_jsonl", "file": "adversarial.jsonl", "record": 6}
    runner.run("attack", kill=kill, out=str(run), config=ATTACK, **paths)
    assert_torn(run / "adversarial.jsonl")
    assert not (run / "metrics.json").exists()

    runner.run("attack", out=str(run), config=ATTACK, **paths)
    assert_same_attack(run, ref)


def read_curve_csv(path: Path) -> list[dict[str, str]]:
    import csv

    text = path.read_text()
    assert text.endswith("\n"), f"{path}: last row is not terminated"
    return list(csv.DictReader(text.splitlines()))


def test_rlhf_killed_twice_resumes_to_the_uninterrupted_curve(runner, paths, tmp_path):
    ref, run = tmp_path / "uninterrupted", tmp_path / "killed"
    runner.run("rlhf", out=str(ref), config=RLHF, **paths)
    rows = read_curve_csv(ref / "curve.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]

    runner.run(
        "rlhf", kill={"at": "after_save", "step": 2, "where": "killed"}, out=str(run), config=RLHF, **paths
    )
    assert (run / "checkpoint-2").is_dir()
    assert [int(r["step"]) for r in read_curve_csv(run / "curve.csv")] == [0, 2]
    # The first row this process appends is step 4's: it dies half-way through writing it.
    runner.run("rlhf", kill={"at": "torn_csv", "record": 1}, out=str(run), config=RLHF, **paths)
    assert not (run / "curve.csv").read_text().endswith("\n")

    runner.run("rlhf", out=str(run), config=RLHF, **paths)
    assert (run / "curve.csv").read_text() == (ref / "curve.csv").read_text()
    assert read_curve_csv(run / "curve.csv") == rows
    done, expected = json.loads((run / "metrics.json").read_text()), json_file(ref / "metrics.json")
    assert done["resumed_from_step"] == 2
    assert without_wall_time(done) == expected
    assert_same_weights(
        run / "checkpoint-6" / "model.safetensors", ref / "checkpoint-6" / "model.safetensors"
    )


def test_harden_killed_between_and_inside_stages_resumes_to_the_uninterrupted_rounds(runner, paths, tmp_path):
    ref, run = tmp_path / "uninterrupted", tmp_path / "killed"
    world = paths["world"]
    runner.run("harden", world=world, out=str(ref), config=HARDEN)

    # 1. Round-0 RMs are trained; the round-0 attack dies right after its first RL checkpoint.
    kill = {"at": "after_save", "step": 2, "where": "attack/round-0/.rl"}
    runner.run("harden", kill=kill, world=world, out=str(run), config=HARDEN)
    assert (run / "rm" / "round-0" / "seed-1" / "model.safetensors").exists()
    assert not (run / "attack" / "round-0" / "metrics.json").exists()
    # 2. Pairs are harvested, round-1 seed 0 is trained; seed 1 dies after its second optimizer step.
    kill = {"at": "mid_step", "step": 2, "where": "round-1/.tmp-train-seed-1"}
    runner.run("harden", kill=kill, world=world, out=str(run), config=HARDEN)
    assert (run / "adv_pairs" / "round-1.jsonl").exists()
    assert (run / "rm" / "round-1" / "seed-0").is_dir() and not (run / "rm" / "round-1" / "seed-1").exists()

    runner.run("harden", world=world, out=str(run), config=HARDEN)
    rows = json_file(run / "harden.json")["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows == json_file(ref / "harden.json")["rounds"]
    pairs = jsonl_records(run / "adv_pairs" / "round-1.jsonl")
    assert pairs == jsonl_records(ref / "adv_pairs" / "round-1.jsonl")
    assert rows[1]["pairs_added"] == len(pairs)
    for r in (0, 1):
        attack = f"attack/round-{r}"
        assert jsonl_records(run / attack / "adversarial.jsonl") == jsonl_records(
            ref / attack / "adversarial.jsonl"
        )
        for seed in (0, 1):
            rm = Path("rm") / f"round-{r}" / f"seed-{seed}" / "model.safetensors"
            assert_same_weights(run / rm, ref / rm)


def test_same_seed_same_reward_model_in_two_processes(runner, paths, tmp_path):
    config = {"epochs": 1.0, "batch_size": 32}
    for name in ("a", "b"):
        runner.run("train_rm", world=paths["world"], out=str(tmp_path / name), config=config, seed=3)
    assert_same_weights(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors")
    other = tmp_path / "other-seed"
    runner.run("train_rm", world=paths["world"], out=str(other), config=config, seed=4)
    with pytest.raises(AssertionError):
        assert_same_weights(tmp_path / "a" / "model.safetensors", other / "model.safetensors")
