"""Loading and validating the user's preference pairs and prompt files.

Bad data is the most common user mistake and the most expensive one to find late: TRL's
``RewardTrainer`` fails deep inside ``datasets.map`` on a non-string field, and silently drops pairs
longer than ``max_length``. So every file is checked here, before anything trains, and every problem
is one :class:`~advrm.errors.AdvrmError` line that says where (``file:line`` for JSON Lines,
``dir row i`` for saved datasets), what is wrong, and what the data should look like.

Accepted sources, all readable offline:

- a JSON Lines file (``.jsonl``, or ``.json`` holding either JSON Lines or one JSON array of objects);
- a directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` (a ``train``
  split by default).

Fields must be plain strings: conversational data (lists of chat messages) is not accepted yet.
Extra columns (``gold_chosen``, ``margin``, ...) are kept as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import pyarrow as pa

from .errors import AdvrmError
from .io import read_jsonl_numbered

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["PairStats", "PromptSet", "count_overlong", "load_preferences", "load_prompts", "pair_stats"]

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
_PAIRS_HINT = "preference data needs prompt/chosen/rejected"
_PAIR_VALUES_HINT = "every pair needs non-empty string chosen and rejected (and prompt, if present)"
_SOURCE_HINT = "pass a .jsonl file or a directory written by Dataset.save_to_disk"


class _Missing:
    """A key absent from a JSON record, told apart from an explicit ``null`` in messages."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


@dataclass(frozen=True)
class _Table:
    """Rows from any accepted source, with column access and the location of a row for messages.

    JSON sources are validated as Python objects before Arrow sees them: Arrow's own type errors on
    mixed columns do not say which row is at fault.
    """

    name: str
    columns: list[str]
    n_rows: int
    values: Callable[[str], list[Any]]
    where: Callable[[int], str]
    to_dataset: Callable[[], datasets.Dataset]

    @classmethod
    def open(cls, path: str | os.PathLike[str], split: str) -> _Table:
        p = Path(path)
        if not p.exists():
            raise AdvrmError(f"{p}: no such file or directory; {_SOURCE_HINT}")
        if p.is_dir():
            return cls._from_dataset(p, _load_saved_dataset(p, split))
        if p.suffix.lower() not in (".jsonl", ".json"):
            raise AdvrmError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; {_SOURCE_HINT}")
        return cls._from_records(p, _read_json_records(p))

    @classmethod
    def _from_records(cls, path: Path, located: list[tuple[str, dict[str, Any]]]) -> _Table:
        records = [record for _, record in located]
        columns = list(dict.fromkeys(key for record in records for key in record))

        def to_dataset() -> datasets.Dataset:
            return _records_to_dataset(path, columns, records)

        return cls(
            name=str(path),
            columns=columns,
            n_rows=len(records),
            values=lambda column: [record.get(column, _MISSING) for record in records],
            where=lambda i: located[i][0],
            to_dataset=to_dataset,
        )

    @classmethod
    def _from_dataset(cls, path: Path, dataset: datasets.Dataset) -> _Table:
        return cls(
            name=str(path),
            columns=list(dataset.column_names),
            n_rows=len(dataset),
            values=lambda column: list(dataset[column]),
            where=lambda i: f"{path} row {i}",
            to_dataset=lambda: dataset,
        )


def _read_json_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(location, record)`` pairs from JSON Lines or, for ``.json``, a single JSON array of objects."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if path.suffix.lower() == ".json" and head.startswith(b"["):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise AdvrmError(
                f"{path}: not valid JSON ({e}); fix the file or write it as JSON Lines"
            ) from None
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise AdvrmError(
                    f"{path} item {i}: a JSON {type(item).__name__} where an object was expected; "
                    'the array must hold objects like {"prompt": ...}'
                )
        return [(f"{path} item {i}", item) for i, item in enumerate(items)]
    # Input data must be whole: a torn last line here means an unfinished file, not a resumable log.
    return [(f"{path}:{n}", r) for n, r in read_jsonl_numbered(path, tolerate_truncated_tail=False)]


def _load_saved_dataset(path: Path, split: str) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise AdvrmError(
            f"{path}: a directory but not a saved dataset (no dataset_info.json); {_SOURCE_HINT}"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise AdvrmError(
                f"{path}: no split {split!r} (splits: {', '.join(loaded)}); "
                f"save the data with a {split!r} split or pass that split's own directory"
            )
        return loaded[split]
    return loaded


def _records_to_dataset(path: Path, columns: list[str], records: list[dict[str, Any]]) -> datasets.Dataset:
    data = {column: [record.get(column) for record in records] for column in columns}
    try:
        return datasets.Dataset.from_dict(data)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        error: Exception = e
    for column, values in data.items():  # find the column Arrow could not store, for the message
        try:
            datasets.Dataset.from_dict({column: values})
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise AdvrmError(
                f"{path}: column {column!r} cannot be stored ({e}); give it the same type in every row"
            ) from None
    raise AdvrmError(f"{path}: cannot be stored as a dataset ({error}); give each column one type") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_problem(column: str, value: Any) -> str | None:
    """Why ``value`` is not a usable text field, or ``None`` when it is."""
    if isinstance(value, str):
        return None if value.strip() else f"{column!r} is empty"
    if value is _MISSING:
        return f"no {column!r} field"
    if value is None:
        return f"{column!r} is null"
    return f"{column!r} is not a string ({type(value).__name__} {_short(value)})"


def _check_text_column(table: _Table, column: str, hint: str) -> list[str]:
    """Raise on the first row whose ``column`` is not a non-empty string; return the column's values."""
    values = table.values(column)
    bad = [(i, problem) for i, v in enumerate(values) if (problem := _value_problem(column, v)) is not None]
    if bad:
        i, problem = bad[0]
        also = f" ({len(bad)} of {table.n_rows} rows have a bad {column!r})" if len(bad) > 1 else ""
        raise AdvrmError(f"{table.where(i)}: {problem}{also}; {hint}")
    return values


def _require_rows(table: _Table, what: str) -> None:
    if table.n_rows == 0:
        raise AdvrmError(f"{table.name}: no records; {what}")


def _require_columns(table: _Table, required: Sequence[str], hint: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        found = ", ".join(table.columns)
        raise AdvrmError(
            f"{table.name}: no column{'s' if len(missing) > 1 else ''} {names} (found: {found}); {hint}"
        )


def load_preferences(path: str | os.PathLike[str], *, split: str = "train") -> datasets.Dataset:
    """Load and validate preference pairs for Bradley-Terry training.

    Requires string ``chosen`` and ``rejected`` columns; ``prompt`` is optional (TRL then scores the
    responses alone) but must be a string wherever present. Every failure is an :class:`AdvrmError`
    naming the first bad row and how many rows share the problem. Pairs with ``chosen == rejected``
    and over-long pairs are legal but useless: see :func:`pair_stats`.
    """
    table = _Table.open(path, split)
    _require_rows(table, _PAIRS_HINT)
    _require_columns(table, ("chosen", "rejected"), _PAIRS_HINT)
    for column in PAIR_COLUMNS:
        if column in table.columns:
            _check_text_column(table, column, _PAIR_VALUES_HINT)
    return table.to_dataset()


@dataclass(frozen=True)
class PairStats:
    """Counts of legal but useless pairs, for a warning before training and for ``metrics.json``."""

    n_pairs: int
    n_identical: int
    """Pairs with ``chosen == rejected``: their Bradley-Terry loss is a constant log 2, no signal."""
    n_overlong: int | None = None
    """Pairs TRL's ``RewardTrainer`` drops silently for exceeding ``max_length``; ``None`` if not counted."""
    max_length: int | None = None

    def warnings(self) -> list[str]:
        """One line for each problem found, saying what it costs and how to avoid it."""
        out = []
        if self.n_identical:
            out.append(
                f"{self.n_identical} of {self.n_pairs} pairs have chosen == rejected and teach the reward "
                "model nothing; remove them from the data"
            )
        if self.n_overlong:
            out.append(
                f"{self.n_overlong} of {self.n_pairs} pairs are longer than max_length={self.max_length} "
                "tokens and will be dropped by the trainer; raise max_length or shorten them"
            )
        return out


def _trl_text(prompt: str, response: str, eos: str) -> str:
    """The text TRL's ``RewardTrainer`` tokenizes for a plain-text pair side: prompt + response + eos."""
    return prompt + (response if response.endswith(eos) else response + eos)


def count_overlong(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, *, batch_size: int = 1000
) -> int:
    """Count pairs whose chosen or rejected side is longer than ``max_length`` tokens as TRL sees it.

    Mirrors ``RewardTrainer``'s preprocessing for plain-text data: ``eos_token`` is appended unless the
    response already ends with it, the prompt is prepended, and the tokenizer adds its special tokens.
    """
    eos = tokenizer.eos_token or ""
    has_prompt = "prompt" in dataset.column_names
    n_overlong = 0
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        prompts = batch["prompt"] if has_prompt else [""] * len(batch["chosen"])
        too_long = [False] * len(prompts)
        for side in ("chosen", "rejected"):
            texts = [_trl_text(p, r, eos) for p, r in zip(prompts, batch[side], strict=True)]
            for i, ids in enumerate(tokenizer(texts)["input_ids"]):
                too_long[i] = too_long[i] or len(ids) > max_length
        n_overlong += sum(too_long)
    return n_overlong


def pair_stats(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int | None = None,
) -> PairStats:
    """Count identical pairs and, given a tokenizer and ``max_length``, over-long ones."""
    n_identical = sum(c == r for c, r in zip(dataset["chosen"], dataset["rejected"], strict=True))
    n_overlong = None
    if tokenizer is not None and max_length is not None:
        n_overlong = count_overlong(dataset, tokenizer, max_length)
    return PairStats(len(dataset), n_identical, n_overlong, max_length)


@dataclass(frozen=True)
class PromptSet:
    """Prompts read from a file, with how many duplicates it held.

    Duplicated prompts are worth reporting: they over-weight some prompts in an attack or RLHF run and
    can leak between the train and held-out splits.
    """

    prompts: list[str]
    n_records: int
    n_duplicates: int

    def __len__(self) -> int:
        return len(self.prompts)


def load_prompts(
    path: str | os.PathLike[str], *, field: str = "prompt", dedupe: bool = True, split: str = "train"
) -> PromptSet:
    """Load non-empty string prompts from ``field`` of every record.

    With ``dedupe`` the prompts are returned once each, in order of first appearance; either way
    ``n_duplicates`` counts the records that repeat an earlier prompt.
    """
    table = _Table.open(path, split)
    hint = f"a prompt file needs a non-empty string {field!r} in every record"
    _require_rows(table, hint)
    _require_columns(table, (field,), hint)
    prompts = _check_text_column(table, field, hint)
    unique = list(dict.fromkeys(prompts))
    return PromptSet(unique if dedupe else prompts, len(prompts), len(prompts) - len(unique))
