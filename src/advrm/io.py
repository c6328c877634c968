"""Writing and reading run artifacts so that a crash never leaves a half-written file behind.

Every stage of a run can be killed at any moment (Ctrl-C, an out-of-memory kill, a laptop lid). A
later ``advrm`` call resumes from what is on disk, so what is on disk must be either the old artifact
or the new one, never a torn mix:

- single files (JSON, text, CSV) are written to a temporary file in the same directory, fsynced and
  moved over the target with :func:`os.replace`, which is atomic on POSIX and Windows;
- directories (saved models) are built in a temporary sibling and renamed into place
  (:func:`atomic_dir`);
- logs that grow during a stage (``adversarial.jsonl``) are appended one fsynced line at a time
  (:class:`JsonlWriter`), so a kill loses at most the line being written, and the readers
  (:func:`read_jsonl`, :func:`repair_jsonl`) recognise and drop such a torn last line.

**Non-finite floats.** JSON has no NaN or infinity; Python's ``json`` writes them as the bare words
``NaN``/``Infinity`` that strict parsers (``jq``, browsers, most languages) reject. Metrics can be
undefined for good reasons (an attack that keeps no sample has no success rate; a curve without
reward hacking has no onset), and raising at the end of a long stage would lose its results. So
:func:`to_jsonable` turns NaN and +/-infinity into ``None`` (JSON ``null``, "undefined"), and
everything is then dumped with ``allow_nan=False`` as a guard. Readers must treat ``null`` metrics as
undefined.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .errors import AdvrmError

__all__ = [
    "JsonlWriter",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "config_hash",
    "dumps_json",
    "read_jsonl",
    "read_jsonl_numbered",
    "repair_jsonl",
    "sha256_dir",
    "sha256_file",
    "sha256_path",
    "to_jsonable",
    "write_jsonl",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any threads write files.
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; artifacts should get the user's usual permissions.
_UMASK = _current_umask()


# --------------------------------------------------------------------------------------------------
# JSON conversion


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` as plain JSON types: dicts with string keys, lists, str, int, float, bool, None.

    Besides the JSON types it accepts what stages naturally produce: tuples and sets (as lists; sets
    sorted, so that hashes are stable), :class:`~pathlib.Path` (as a POSIX string), dataclass instances
    (as dicts of their fields) and numpy/torch scalars and arrays (anything with ``tolist()``).
    Non-finite floats become ``None`` (see the module docstring). Anything else raises ``TypeError``:
    writing its ``repr`` would silently produce an artifact nobody can read back.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__} {key!r}")
            out[key] = to_jsonable(value)
        return out
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, Path):
        return obj.as_posix()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays, without importing either
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")


def dumps_json(
    obj: Any, *, indent: int | None = 2, sort_keys: bool = False, separators: tuple[str, str] | None = None
) -> str:
    """Serialise ``obj`` after :func:`to_jsonable`; the one JSON encoder every artifact goes through.

    Non-ASCII text is kept as is (``ensure_ascii=False``): adversarial responses are read by people.
    """
    return json.dumps(
        to_jsonable(obj),
        indent=indent,
        sort_keys=sort_keys,
        separators=separators,
        allow_nan=False,
        ensure_ascii=False,
    )


# --------------------------------------------------------------------------------------------------
# Atomic writes


def _fsync_dir(path: Path) -> None:
    """Persist a rename: on POSIX the new directory entry is durable only once the directory is synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The temporary file lives in the target's directory because :func:`os.replace` is only atomic
    within one file system. Parent directories are created. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` as UTF-8 (newlines are written as given, not translated)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON with a trailing newline; NaN/inf become ``null``."""
    return atomic_write_text(path, dumps_json(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]],
    fieldnames: Sequence[str] | None = None,
) -> Path:
    """Atomically write ``rows`` as CSV with a header.

    ``fieldnames`` fixes the column order; by default it is the keys in order of first appearance.
    A row key outside ``fieldnames`` raises ``ValueError`` (a silently dropped column is a bug); a
    missing key is written as an empty cell. Lines end with ``\\n`` so Unix tools read the file cleanly.
    """
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling directory; on success it replaces ``path``.

    Use it to save models: ``with atomic_dir(out) as tmp: model.save_pretrained(tmp)``. If the block
    raises, the temporary directory is deleted and an existing ``path`` is left untouched. On success
    an existing ``path`` is moved aside, the new directory renamed into place, and the old one deleted;
    if the rename fails the old directory is moved back. A kill at the exact moment between those two
    renames leaves the old version under a hidden ``.<name>.*.old`` sibling; a kill inside the block
    leaves a hidden ``.<name>.*.tmp`` sibling. Neither is ever mistaken for ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(new, target)
        _fsync_dir(target.parent)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    old.rmdir()  # only the unique name is wanted; rename needs the destination to be absent
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    _fsync_dir(target.parent)
    _remove(old)


# --------------------------------------------------------------------------------------------------
# Append-only JSONL


def _jsonl_line(record: Mapping[str, Any]) -> bytes:
    if not isinstance(record, Mapping):
        raise TypeError(f"a JSONL record must be a mapping, got {type(record).__name__}")
    return (dumps_json(record, indent=None) + "\n").encode("utf-8")


def atomic_write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically write a whole JSONL file (a finished artifact such as ``pairs_train.jsonl``).

    For a log that grows while a stage runs, use :class:`JsonlWriter` instead.
    """
    return atomic_write_bytes(path, b"".join(_jsonl_line(record) for record in records))


write_jsonl = atomic_write_jsonl  # the shorter name other modules import


class JsonlWriter:
    """Append JSON records to a ``.jsonl`` file, one line each, durable as soon as ``write`` returns.

    Each record is encoded first and written with a single ``write`` call, then flushed and fsynced,
    so a SIGKILL loses at most the line being written. Opening the writer first calls
    :func:`repair_jsonl`: a torn last line left by an earlier kill would otherwise be glued to the next
    record and turn into a corrupt line in the middle of the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            repair_jsonl(self.path)
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (a mapping; see :func:`to_jsonable` for the value types accepted)."""
        if self._file is None:
            raise ValueError(f"{self.path}: JsonlWriter is closed")
        self._file.write(_jsonl_line(record))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_lines(data: bytes) -> list[tuple[int, int, bytes]]:
    """Return ``(line_number, end_offset, line)`` for every line, ``end_offset`` just past its newline."""
    out = []
    start = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        end = start + len(raw)
        if end < len(data):
            end += 1  # the newline
        out.append((number, end, raw))
        start = end
    if out and out[-1][2] == b"":  # the empty piece after a final newline is not a line
        out.pop()
    return out


def _parse_line(raw: bytes) -> Any:
    """Parse one line; raise ``ValueError`` (JSON or UTF-8 error) when it is not a JSON value."""
    return json.loads(raw.decode("utf-8"))


def _parses(raw: bytes) -> bool:
    try:
        _parse_line(raw)
    except ValueError:
        return False
    return True


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AdvrmError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise AdvrmError(f"{path}: is a directory, expected a .jsonl file") from None


def read_jsonl_numbered(
    path: str | os.PathLike[str], *, tolerate_truncated_tail: bool = True
) -> list[tuple[int, dict[str, Any]]]:
    """Like :func:`read_jsonl`, with each record's 1-based line number, for messages that point at a line."""
    path = Path(path)
    lines = [(n, end, raw) for n, end, raw in _split_lines(_read_bytes(path)) if raw.strip()]
    records: list[tuple[int, dict[str, Any]]] = []
    for i, (number, _, raw) in enumerate(lines):
        try:
            value = _parse_line(raw)
        except ValueError as e:
            if tolerate_truncated_tail and i == len(lines) - 1:
                logger.warning("%s:%d: dropped a truncated last line (an interrupted write)", path, number)
                break
            raise AdvrmError(
                f"{path}:{number}: not valid JSON ({e}); fix or delete that line "
                "(each line must hold one JSON object)"
            ) from None
        if not isinstance(value, dict):
            raise AdvrmError(
                f"{path}:{number}: a JSON {type(value).__name__} where a JSON object was expected; "
                'each line must hold one object like {"prompt": ...}'
            )
        records.append((number, value))
    return records


def read_jsonl(path: str | os.PathLike[str], *, tolerate_truncated_tail: bool = True) -> list[dict[str, Any]]:
    """Read a JSONL file of objects; blank lines are skipped.

    A last line that does not parse is what a kill in the middle of :meth:`JsonlWriter.write` leaves
    behind: with ``tolerate_truncated_tail`` it is dropped (with a logged warning), otherwise it is an
    error. A bad line anywhere else is corruption, not an interrupted append, and raises
    :class:`AdvrmError` naming ``file:line``.
    """
    return [
        record for _, record in read_jsonl_numbered(path, tolerate_truncated_tail=tolerate_truncated_tail)
    ]


def repair_jsonl(path: str | os.PathLike[str]) -> int:
    """Make ``path`` safe to append to; return the number of bytes removed.

    A torn last line (not valid JSON) is truncated away, so the file ends after its last complete
    line. A valid last line without a trailing newline gets one, so the next record starts on a line
    of its own. Lines in the middle are not checked here; :func:`read_jsonl` reports them.
    """
    path = Path(path)
    data = _read_bytes(path)
    ends = [(end, raw) for _, end, raw in _split_lines(data) if raw.strip()]
    if ends and _parses(ends[-1][1]):
        if not data.endswith(b"\n"):
            with open(path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        return 0
    keep = ends[-2][0] if len(ends) > 1 else 0
    if keep == len(data):
        return 0
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    logger.warning("%s: removed a truncated last line (%d bytes)", path, len(data) - keep)
    return len(data) - keep


# --------------------------------------------------------------------------------------------------
# Hashing


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks so multi-GB model weights do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike[str]) -> str:
    """Hex sha256 over every file below ``path``: relative POSIX names and contents, in sorted order.

    Stable across machines and file systems (directory listing order does not matter); renaming or
    editing any file changes it. Empty directories do not count: they hold no artifact.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode("utf-8") + b"\0" + sha256_file(root / name).encode("ascii") + b"\n")
    return h.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_dir` for a directory, :func:`sha256_file` otherwise (artifacts can be either)."""
    return sha256_dir(path) if Path(path).is_dir() else sha256_file(path)


def config_hash(obj: Any) -> str:
    """Hex sha256 of ``obj`` as canonical JSON (sorted keys, no whitespace).

    Two configs hash alike exactly when they are equal as JSON, whatever their key order.
    """
    return hashlib.sha256(
        dumps_json(obj, indent=None, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()
