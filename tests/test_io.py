"""Atomic writes, crash-tolerant JSONL and hashing (advrm.io)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advrm import io as aio
from advrm.errors import AdvrmError
from advrm.io import (
    JsonlWriter,
    atomic_dir,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    config_hash,
    read_jsonl,
    read_jsonl_numbered,
    repair_jsonl,
    sha256_dir,
    sha256_file,
    sha256_path,
    to_jsonable,
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
json_records = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# --------------------------------------------------------------------------------------------------
# JSON conversion and atomic file writes


@dataclass
class _Point:
    x: float
    where: Path


def test_to_jsonable_converts_what_stages_produce() -> None:
    value = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np": np.float32(0.5),
        "arr": np.arange(3),
        "path": Path("a") / "b",
        "tuple": (1, 2),
        "set": {"b", "a"},
        "dc": _Point(1.0, Path("x")),
    }
    assert to_jsonable(value) == {
        "nan": None,
        "inf": None,
        "np": 0.5,
        "arr": [0, 1, 2],
        "path": "a/b",
        "tuple": [1, 2],
        "set": ["a", "b"],
        "dc": {"x": 1.0, "where": "x"},
    }


@pytest.mark.parametrize("bad", [{1: "int key"}, {"obj": object()}])
def test_to_jsonable_rejects_what_cannot_be_read_back(bad: object) -> None:
    with pytest.raises(TypeError):
        to_jsonable(bad)


def test_atomic_write_json_is_indented_strict_json_with_nan_as_null(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "sub" / "metrics.json", {"b": 1, "a": float("nan"), "t": "é"})
    text = path.read_text(encoding="utf-8")
    assert text == '{\n  "b": 1,\n  "a": null,\n  "t": "é"\n}\n'  # key order kept, NaN -> null
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert siblings(path) == ["metrics.json"]


def test_atomic_write_text_replaces_and_keeps_umask_permissions(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new\r\nline")
    assert path.read_bytes() == b"new\r\nline"
    assert path.stat().st_mode & 0o777 == 0o666 & ~aio._UMASK
    assert siblings(path) == ["report.md"]


def test_failed_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"v": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(aio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert siblings(path) == ["metrics.json"]


def test_atomic_write_json_of_unwritable_object_leaves_old_file(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "m.json", {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}


def test_atomic_write_csv(tmp_path: Path) -> None:
    rows = [{"step": 0, "proxy": 0.5}, {"step": 1, "gold": -1.0}]
    path = atomic_write_csv(tmp_path / "curve.csv", rows)
    assert path.read_text() == "step,proxy,gold\n0,0.5,\n1,,-1.0\n"
    atomic_write_csv(path, rows, fieldnames=["gold", "step", "proxy"])
    assert path.read_text().splitlines()[0] == "gold,step,proxy"
    with pytest.raises(ValueError):
        atomic_write_csv(path, rows, fieldnames=["step"])
    assert path.read_text().splitlines()[0] == "gold,step,proxy"  # the failed write changed nothing


# --------------------------------------------------------------------------------------------------
# atomic_dir


def test_atomic_dir_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "rm" / "seed-0"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        (tmp / "model.safetensors").write_text("v1")
    assert (target / "model.safetensors").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]  # the old directory is gone
    assert siblings(target) == ["seed-0"]


def test_atomic_dir_failure_leaves_existing_directory_untouched(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("good")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w").write_text("half")
        raise RuntimeError("training crashed")
    assert (target / "w").read_text() == "good"
    assert siblings(target) == ["model"]


def test_atomic_dir_restores_old_directory_when_the_final_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("good")
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.endswith(".tmp"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(aio.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"), atomic_dir(target) as tmp:
        (tmp / "w").write_text("new")
    assert (target / "w").read_text() == "good"
    assert siblings(target) == ["model"]


# --------------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_writer_appends_and_fsyncs_each_record(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "adversarial.jsonl"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(aio.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with JsonlWriter(path) as writer:
        writer.write({"i": 0, "text": "line\nbreak é", "z": float("nan")})
        writer.write({"i": 1})
        assert len(synced) == 2
    with JsonlWriter(path) as writer:  # append mode: earlier records stay
        writer.write({"i": 2})
    assert read_jsonl(path) == [{"i": 0, "text": "line\nbreak é", "z": None}, {"i": 1}, {"i": 2}]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    with pytest.raises(ValueError, match="closed"):
        writer.write({"i": 3})
    with pytest.raises(TypeError), JsonlWriter(path) as writer:
        writer.write([1, 2])  # type: ignore[arg-type]


def test_atomic_write_jsonl_writes_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    records = [{"prompt": "p", "chosen": "a\nb"}, {"prompt": "q", "score": float("inf")}]
    atomic_write_jsonl(path, (r for r in records))
    assert read_jsonl(path, tolerate_truncated_tail=False) == [records[0], {"prompt": "q", "score": None}]
    atomic_write_jsonl(path, [])
    assert path.read_bytes() == b""
    with pytest.raises(TypeError):
        atomic_write_jsonl(path, [["not", "a", "mapping"]])  # type: ignore[list-item]


def test_truncated_last_line_is_dropped_and_repair_lets_appending_continue(tmp_path: Path) -> None:
    path = tmp_path / "adversarial.jsonl"
    with JsonlWriter(path) as writer:
        for i in range(3):
            writer.write({"i": i, "response": "word " * i})
    full_line = json.dumps({"i": 3, "response": "cut here"}) + "\n"
    with open(path, "a") as f:
        f.write(full_line[: len(full_line) // 2])  # a kill in the middle of a write
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]
    with pytest.raises(AdvrmError, match=r"adversarial.jsonl:4: not valid JSON"):
        read_jsonl(path, tolerate_truncated_tail=False)
    assert repair_jsonl(path) == len(full_line) // 2
    assert repair_jsonl(path) == 0
    with open(path, "a") as f:  # a plain append (no JsonlWriter) now starts on a fresh line
        f.write(json.dumps({"i": 3}) + "\n")
    assert [r["i"] for r in read_jsonl(path, tolerate_truncated_tail=False)] == [0, 1, 2, 3]


def test_jsonl_writer_repairs_a_torn_file_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"i": 0}\n{"i": 1, "t": "\xc3')  # torn inside a UTF-8 character
    with JsonlWriter(path) as writer:
        writer.write({"i": 1})
    assert read_jsonl(path, tolerate_truncated_tail=False) == [{"i": 0}, {"i": 1}]


def test_repair_adds_a_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "user.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')
    assert repair_jsonl(path) == 0
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"i": 0}\n{"i": \n{"i": 2}\n', r"bad.jsonl:2: not valid JSON"),
        ('{"i": 0}\n[1, 2]\n', r"bad.jsonl:2: a JSON list where a JSON object was expected"),
        ('"text"\n', r"bad.jsonl:1: a JSON str"),
    ],
)
def test_corrupt_lines_raise_with_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(AdvrmError, match=message):
        read_jsonl(path)


def test_read_jsonl_skips_blank_lines_and_numbers_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('\n{"i": 0}\n  \n{"i": 1}\n\n')
    assert read_jsonl_numbered(path) == [(2, {"i": 0}), (4, {"i": 1})]


def test_read_jsonl_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(AdvrmError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


@settings(max_examples=50, deadline=None)
@given(records=st.lists(json_records, min_size=1, max_size=5), cut_fraction=st.floats(0, 1))
def test_any_truncation_keeps_exactly_the_complete_records(records: list[dict], cut_fraction: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log.jsonl"
        with JsonlWriter(path) as writer:
            for record in records:
                writer.write(record)
        data = path.read_bytes()
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        cut = last_start + round(cut_fraction * (len(data) - last_start))  # anywhere in the last line
        path.write_bytes(data[:cut])
        complete = records if cut >= len(data) - 1 else records[:-1]  # only the newline lost: complete
        assert read_jsonl(path) == complete
        with JsonlWriter(path) as writer:
            writer.write({"after": "repair"})
        assert read_jsonl(path, tolerate_truncated_tail=False) == [*complete, {"after": "repair"}]


_KILLED_WRITER = """
import sys
from advrm.io import JsonlWriter
with JsonlWriter(sys.argv[1]) as w:
    i = 0
    while True:
        w.write({"i": i, "payload": "x" * (i % 5000)})
        i += 1
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_stream_loses_at_most_the_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)])
    try:
        deadline = time.monotonic() + 10
        while (not path.exists() or path.stat().st_size < 100_000) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    records = read_jsonl(path)
    assert len(records) > 10
    assert [r["i"] for r in records] == list(range(len(records)))
    with JsonlWriter(path) as writer:
        writer.write({"i": len(records)})
    assert len(read_jsonl(path, tolerate_truncated_tail=False)) == len(records) + 1


# --------------------------------------------------------------------------------------------------
# Hashing


def test_sha256_file_matches_known_digest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_path(path) == sha256_file(path)


def _make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_sha256_dir_depends_on_names_and_contents_only(tmp_path: Path) -> None:
    files = {"config.json": "{}", "sub/model.safetensors": "weights", "z": ""}
    a = _make_tree(tmp_path / "a", files)
    b = _make_tree(tmp_path / "b", dict(reversed(files.items())))  # other creation order and location
    (b / "empty_dir").mkdir()
    assert sha256_dir(a) == sha256_dir(b) == sha256_path(a)
    (b / "z").write_text("changed")
    assert sha256_dir(a) != sha256_dir(b)
    (b / "z").write_text("")
    (b / "z").rename(b / "y")
    assert sha256_dir(a) != sha256_dir(b)
    with pytest.raises(NotADirectoryError):
        sha256_dir(a / "z")


def test_config_hash_is_canonical() -> None:
    assert config_hash({"a": 1, "b": {"c": [1, 2]}}) == config_hash({"b": {"c": [1, 2]}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"p": Path("x")}) == config_hash({"p": "x"})
    assert len(config_hash({})) == 64
