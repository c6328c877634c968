"""Stage manifests: what a run directory already holds, so that a rerun resumes instead of redoing.

``<run_dir>/manifest.json`` records, for every finished stage (``"world"``, ``"rm/round-0/seed-1"``,
``"attack/round-0"``, ...): the stage's config and its hash, the sha256 of every artifact it wrote and
of every input it read, and when it finished. A stage is skipped only when all of that still holds,
so a resume never trusts a file that was deleted, edited, or half-written by a killed run.

Three outcomes when a stage is asked for again:

- **same config, artifacts intact, inputs unchanged**: skip it;
- **same config, but an artifact or input differs**: run it again (an upstream stage was rerun, or a
  file was removed); this needs no confirmation because it cannot lose a result that is still valid;
- **different config**: refuse with :class:`AdvrmError` naming the keys that changed, because the old
  results would be silently overwritten by ones from another experiment. ``force=True`` accepts the
  change (the stage reruns); stages whose config did not change are still skipped, so ``--force``
  after editing one setting reruns only what that setting affects, provided downstream stages list
  the upstream artifacts they read as ``inputs``.

Artifact paths inside the run directory are stored relative to it, so a run directory can be moved
or copied and still resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import AdvrmError
from .io import atomic_write_json, config_hash, sha256_path, to_jsonable

try:  # advisory locking keeps parallel stages (one process per seed) from losing each other's records
    import fcntl
except ImportError:  # Windows: runs are not parallel there
    fcntl = None  # type: ignore[assignment]

__all__ = ["Manifest", "StageRecord", "pin_config", "run_stage"]

logger = logging.getLogger(__name__)

FILENAME = "manifest.json"
_VERSION = 1
_MAX_KEYS_SHOWN = 4

PathLike = str | os.PathLike[str]


@dataclass
class StageRecord:
    """What the manifest remembers about one finished stage."""

    config: dict[str, Any]
    config_hash: str
    artifacts: dict[str, str]
    """Artifact path (relative to the run directory when inside it) -> sha256 of the file or directory."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Paths the stage read -> their sha256 when it finished; a change means its results are stale."""
    finished_at: str = ""
    status: str = "done"


def _jsonable_config(config: Any) -> dict[str, Any]:
    value = to_jsonable(config)
    if not isinstance(value, dict):
        raise TypeError(f"a stage config must be a mapping or a dataclass, got {type(config).__name__}")
    return value


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"rm": {"lr": 1}}`` -> ``{"rm.lr": 1}``: the key names a user sees in messages."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str]:
    """The changed keys as ``("lr=0.0005, steps=10", "lr=0.001, steps=20")``; unset keys say so.

    Values are compared as JSON so that ``1`` and ``1.0``, which hash differently, show as a change.
    """
    a, b = _flatten(old), _flatten(new)

    def show(flat: dict[str, Any], key: str) -> str:
        return f"{key}={json.dumps(flat[key])}" if key in flat else f"{key} unset"

    def same(key: str) -> bool:
        return key in a and key in b and json.dumps(a[key]) == json.dumps(b[key])

    changed = [k for k in dict.fromkeys([*a, *b]) if not same(k)]
    more = f" (and {len(changed) - _MAX_KEYS_SHOWN} more keys)" if len(changed) > _MAX_KEYS_SHOWN else ""
    shown = changed[:_MAX_KEYS_SHOWN]
    return ", ".join(show(a, k) for k in shown) + more, ", ".join(show(b, k) for k in shown) + more


class Manifest:
    """The manifest of one run directory; load it with :meth:`Manifest.load`."""

    def __init__(self, run_dir: PathLike, stages: dict[str, StageRecord] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.stages: dict[str, StageRecord] = dict(stages or {})

    @property
    def path(self) -> Path:
        return self.run_dir / FILENAME

    @classmethod
    def load(cls, run_dir: PathLike) -> Manifest:
        """Read ``<run_dir>/manifest.json``; a run directory without one has no finished stages."""
        manifest = cls(run_dir)
        manifest.stages = manifest._read()
        return manifest

    def _read(self) -> dict[str, StageRecord]:
        if not self.path.exists():
            return {}
        fix = "delete it to rerun every stage, or use a new --out directory"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {name: StageRecord(**record) for name, record in data["stages"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AdvrmError(
                f"{self.path}: not a valid advrm manifest ({type(e).__name__}: {e}); {fix}"
            ) from None

    # ----------------------------------------------------------------------------------------------
    # Paths and hashes

    def _key(self, path: PathLike) -> str:
        """How a path is stored: relative to the run directory when inside it, absolute otherwise."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return resolved.as_posix()

    def _resolve(self, key: str) -> Path:
        return Path(key) if Path(key).is_absolute() else self.run_dir / key

    def _hashes(self, paths: Sequence[PathLike], what: str) -> dict[str, str]:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"{what} not found: {', '.join(missing)}")
        return {self._key(p): sha256_path(p) for p in paths}

    def _first_mismatch(self, recorded: Mapping[str, str], what: str) -> str | None:
        for key, digest in recorded.items():
            path = self._resolve(key)
            if not path.exists():
                return f"{what} {key} is missing"
            if sha256_path(path) != digest:
                return f"{what} {key} has changed"
        return None

    # ----------------------------------------------------------------------------------------------
    # Queries and updates

    def reason_to_run(
        self, stage: str, config: Any, *, inputs: Sequence[PathLike] = (), force: bool = False
    ) -> str | None:
        """Why ``stage`` must run (a short phrase for the log), or ``None`` when its results stand.

        Raises :class:`AdvrmError` when the stage finished with a different config, unless ``force``.
        """
        record = self.stages.get(stage)
        if record is None or record.status != "done":
            return "not run yet"
        new = _jsonable_config(config)
        if config_hash(new) != record.config_hash:
            was, now = _describe_change(record.config, new)
            if not force:
                raise AdvrmError(
                    f"stage {stage!r} was run with {was}, now {now}; "
                    "use a new --out directory or --force to overwrite"
                )
            return f"config changed ({now}) and --force was given"
        current_inputs = {self._key(p): (sha256_path(p) if Path(p).exists() else "") for p in inputs}
        if current_inputs != record.inputs:
            changed = sorted(
                k for k in {*current_inputs, *record.inputs} if current_inputs.get(k) != record.inputs.get(k)
            )
            return f"input {changed[0]} changed since it ran"
        return self._first_mismatch(record.artifacts, "artifact")

    def is_done(
        self, stage: str, config: Any, *, inputs: Sequence[PathLike] = (), force: bool = False
    ) -> bool:
        """True when ``stage`` finished with this config and its artifacts and inputs are unchanged."""
        return self.reason_to_run(stage, config, inputs=inputs, force=force) is None

    def mark_done(
        self, stage: str, config: Any, artifacts: Sequence[PathLike], *, inputs: Sequence[PathLike] = ()
    ) -> StageRecord:
        """Record ``stage`` as finished, hashing its artifacts and inputs, and write the manifest.

        The file is re-read under a lock before it is rewritten (atomically), so stages finishing in
        parallel processes all keep their records. Every artifact must exist: a stage that claims a
        file it did not write is a bug, and raises ``FileNotFoundError``.
        """
        config_dict = _jsonable_config(config)
        record = StageRecord(
            config=config_dict,
            config_hash=config_hash(config_dict),
            artifacts=self._hashes(artifacts, "artifact"),
            inputs=self._hashes(inputs, "input"),
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._locked():
            self.stages = {**self._read(), stage: record}
            atomic_write_json(
                self.path,
                {"version": _VERSION, "stages": {name: asdict(r) for name, r in self.stages.items()}},
            )
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        with open(self.run_dir / f".{FILENAME}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def run_stage(
    manifest: Manifest,
    stage: str,
    config: Any,
    artifacts: Sequence[PathLike],
    fn: Callable[[], object],
    *,
    inputs: Sequence[PathLike] = (),
    force: bool = False,
) -> bool:
    """Run ``fn()`` unless ``stage`` is already done (see :meth:`Manifest.reason_to_run`), then record it.

    Returns whether ``fn`` ran. ``fn`` must write every path in ``artifacts``; when it raises, nothing
    is recorded and the next call runs it again.
    """
    reason = manifest.reason_to_run(stage, config, inputs=inputs, force=force)
    if reason is None:
        logger.info("skipping stage %r: already done with this config", stage)
        return False
    logger.info("running stage %r: %s", stage, reason)
    fn()
    manifest.mark_done(stage, config, artifacts, inputs=inputs)
    return True


def pin_config(path: PathLike, what: str, config: Any) -> None:
    """Record ``config`` at ``path`` when a long run starts; on a rerun into the same directory refuse a
    different config (resuming would mix two experiments' records), naming the keys that changed."""
    path = Path(path)
    new = _jsonable_config(config)
    if path.exists():
        old = json.loads(path.read_text())
        if json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
            was, now = _describe_change(old, new)
            raise AdvrmError(
                f"{what} in {path.parent} was started with {was}, now {now}; "
                "rerun with the original settings to resume, or use a new --out directory"
            )
        return
    atomic_write_json(path, new)
