"""Stage manifests: skip finished stages, rerun stale ones, refuse changed configs (advrm.manifest)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from advrm.errors import AdvrmError
from advrm.io import atomic_write_text
from advrm.manifest import Manifest, run_stage

STAGE = "attack/round-0"
CONFIG = {"lr": 0.0005, "steps": 10, "rm": {"beta": 0.1}}


class Stage:
    """A fake stage that writes one file and one directory and counts its runs."""

    def __init__(self, run_dir: Path) -> None:
        self.out_file = run_dir / "attack" / "round-0" / "adversarial.jsonl"
        self.out_dir = run_dir / "attack" / "round-0" / "policy"
        self.runs = 0

    @property
    def artifacts(self) -> list[Path]:
        return [self.out_file, self.out_dir]

    def __call__(self) -> None:
        self.runs += 1
        atomic_write_text(self.out_file, f"run {self.runs}\n")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "model.safetensors").write_text("weights")

    def run(self, run_dir: Path, config: object = CONFIG, **kwargs) -> bool:
        return run_stage(Manifest.load(run_dir), STAGE, config, self.artifacts, self, **kwargs)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def stage(run_dir: Path) -> Stage:
    return Stage(run_dir)


def test_a_finished_stage_is_skipped(run_dir: Path, stage: Stage) -> None:
    assert stage.run(run_dir) is True
    assert stage.run(run_dir) is False
    assert stage.run(run_dir, config={"rm": {"beta": 0.1}, "steps": 10, "lr": 0.0005}) is False  # key order
    assert stage.runs == 1
    assert Manifest.load(run_dir).is_done(STAGE, CONFIG)


def test_manifest_file_records_config_hashes_and_relative_paths(run_dir: Path, stage: Stage) -> None:
    stage.run(run_dir)
    data = json.loads((run_dir / "manifest.json").read_text())
    record = data["stages"][STAGE]
    assert data["version"] == 1
    assert record["status"] == "done" and record["config"] == CONFIG and len(record["config_hash"]) == 64
    assert sorted(record["artifacts"]) == ["attack/round-0/adversarial.jsonl", "attack/round-0/policy"]
    assert record["finished_at"].endswith("+00:00")


def test_changed_config_is_refused_with_the_changed_keys(run_dir: Path, stage: Stage) -> None:
    stage.run(run_dir)
    with pytest.raises(AdvrmError) as e:
        stage.run(run_dir, config={**CONFIG, "lr": 0.001})
    assert str(e.value) == (
        "stage 'attack/round-0' was run with lr=0.0005, now lr=0.001; "
        "use a new --out directory or --force to overwrite"
    )
    with pytest.raises(AdvrmError, match=r"with steps=10, rm.beta=0.1, now steps unset, rm.beta=0.2;"):
        Manifest.load(run_dir).is_done(STAGE, {"lr": 0.0005, "rm": {"beta": 0.2}})
    with pytest.raises(AdvrmError, match=r"with steps=10, now steps=10.0;"):  # hashes differ: say so
        Manifest.load(run_dir).is_done(STAGE, {**CONFIG, "steps": 10.0})
    assert stage.runs == 1


def test_long_change_lists_are_cut(run_dir: Path, stage: Stage) -> None:
    stage.run(run_dir)
    new = {f"k{i}": i for i in range(6)}
    with pytest.raises(AdvrmError, match=r"\(and 5 more keys\)"):
        Manifest.load(run_dir).is_done(STAGE, new)


def test_force_reruns_changed_stages_only(run_dir: Path, stage: Stage) -> None:
    stage.run(run_dir)
    assert stage.run(run_dir, force=True) is False  # unchanged: still skipped
    assert stage.run(run_dir, config={**CONFIG, "lr": 0.001}, force=True) is True
    assert stage.runs == 2
    assert stage.run(run_dir, config={**CONFIG, "lr": 0.001}) is False  # the new config is now recorded
    with pytest.raises(AdvrmError, match="was run with lr=0.001, now lr=0.0005"):
        stage.run(run_dir)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.out_file.unlink(),
        lambda s: s.out_file.write_text("edited by hand\n"),
        lambda s: shutil.rmtree(s.out_dir),
        lambda s: (s.out_dir / "extra.bin").write_text("new file"),
    ],
)
def test_missing_or_changed_artifacts_rerun_the_stage(run_dir: Path, stage: Stage, damage) -> None:
    stage.run(run_dir)
    damage(stage)
    manifest = Manifest.load(run_dir)
    assert not manifest.is_done(STAGE, CONFIG)
    assert "artifact attack/round-0/" in (manifest.reason_to_run(STAGE, CONFIG) or "")
    assert stage.run(run_dir) is True
    assert stage.run(run_dir) is False


def test_changed_inputs_rerun_without_force(run_dir: Path, stage: Stage) -> None:
    rm = run_dir / "rm" / "round-0" / "seed-0"
    atomic_write_text(rm / "model.safetensors", "rm v1")
    assert stage.run(run_dir, inputs=[rm]) is True
    assert stage.run(run_dir, inputs=[rm]) is False
    atomic_write_text(rm / "model.safetensors", "rm v2")  # the upstream stage was rerun
    assert Manifest.load(run_dir).reason_to_run(STAGE, CONFIG, inputs=[rm]) == (
        "input rm/round-0/seed-0 changed since it ran"
    )
    assert stage.run(run_dir, inputs=[rm]) is True
    assert stage.runs == 2


def test_a_failing_stage_is_not_recorded(run_dir: Path, stage: Stage) -> None:
    def crash() -> None:
        stage()
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(Manifest.load(run_dir), STAGE, CONFIG, stage.artifacts, crash)
    assert not (run_dir / "manifest.json").exists()
    assert stage.run(run_dir) is True


def test_mark_done_requires_every_artifact(run_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never_written.json"):
        Manifest.load(run_dir).mark_done(STAGE, CONFIG, [run_dir / "never_written.json"])


def test_a_moved_run_directory_still_resumes(tmp_path: Path, run_dir: Path, stage: Stage) -> None:
    stage.run(run_dir)
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)
    assert Manifest.load(moved).is_done(STAGE, CONFIG)


def test_artifacts_outside_the_run_directory_are_stored_absolute(tmp_path: Path, run_dir: Path) -> None:
    outside = atomic_write_text(tmp_path / "elsewhere.txt", "x")
    record = Manifest.load(run_dir).mark_done("export", {}, [outside])
    assert list(record.artifacts) == [outside.resolve().as_posix()]
    assert Manifest.load(run_dir).is_done("export", {})


def test_stages_recorded_by_separate_manifests_are_all_kept(run_dir: Path) -> None:
    a, b = Manifest.load(run_dir), Manifest.load(run_dir)  # e.g. two seeds trained in parallel
    for manifest, seed in ((a, 0), (b, 1)):
        out = atomic_write_text(run_dir / "rm" / f"seed-{seed}" / "metrics.json", "{}")
        manifest.mark_done(f"rm/round-0/seed-{seed}", {"seed": seed}, [out])
    assert sorted(Manifest.load(run_dir).stages) == ["rm/round-0/seed-0", "rm/round-0/seed-1"]


@dataclass
class AttackConfig:
    lr: float = 0.0005
    out: Path = Path("attack")


def test_dataclass_configs(run_dir: Path, stage: Stage) -> None:
    assert stage.run(run_dir, config=AttackConfig()) is True
    assert stage.run(run_dir, config={"lr": 0.0005, "out": "attack"}) is False
    with pytest.raises(TypeError):
        Manifest.load(run_dir).is_done(STAGE, [1, 2])


@pytest.mark.parametrize("content", ["{not json", '{"stages": {"s": {"config": {}}}}', "[]"])
def test_a_damaged_manifest_is_a_user_error(run_dir: Path, content: str) -> None:
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(content)
    with pytest.raises(AdvrmError, match=r"manifest.json: not a valid advrm manifest .*new --out directory"):
        Manifest.load(run_dir)
