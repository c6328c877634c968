"""Loading and validating preference pairs and prompt files (advrm.data)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advrm.data import PairStats, count_overlong, load_preferences, load_prompts, pair_stats
from advrm.errors import AdvrmError
from advrm.worlds.synthetic.tokenizer import build_tokenizer

PAIRS = [
    {"prompt": "soup ", "chosen": "bread oven", "rejected": "oven", "gold_chosen": 1.0, "margin": 2},
    {"prompt": "rain ", "chosen": "cloud", "rejected": "cloud", "gold_chosen": 0.5, "margin": 0},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# --------------------------------------------------------------------------------------------------
# Sources


def test_jsonl_keeps_every_column(pairs_file: Path) -> None:
    ds = load_preferences(pairs_file)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["prompt", "chosen", "rejected", "gold_chosen", "margin"]
    assert ds.to_list() == PAIRS


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(PAIRS))
    assert load_preferences(path).to_list() == PAIRS


def test_json_lines_in_a_json_file(tmp_path: Path) -> None:
    assert load_preferences(write_jsonl(tmp_path / "pairs.json", PAIRS)).to_list() == PAIRS


def test_prompt_is_optional(tmp_path: Path) -> None:
    ds = load_preferences(write_jsonl(tmp_path / "p.jsonl", [{"chosen": "a", "rejected": "b"}]))
    assert ds.column_names == ["chosen", "rejected"]


def test_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_list(PAIRS)
    ds.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert load_preferences(tmp_path / "ds").to_list() == PAIRS
    assert load_preferences(tmp_path / "dd").to_list() == PAIRS
    assert len(load_preferences(tmp_path / "dd", split="test")) == 1
    with pytest.raises(AdvrmError, match=r"dd: no split 'heldout' \(splits: train, test\)"):
        load_preferences(tmp_path / "dd", split="heldout")


def test_saved_dataset_with_bad_values_names_the_row(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": None, "rejected": "b"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(AdvrmError, match=r"ds row 1: 'chosen' is null"):
        load_preferences(tmp_path / "ds")


def test_conversational_data_is_rejected_clearly(tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    rows = [{"prompt": msgs, "chosen": msgs, "rejected": msgs}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "chat"))
    with pytest.raises(AdvrmError, match=r"chat row 0: 'prompt' is not a string \(list"):
        load_preferences(tmp_path / "chat")


@pytest.mark.parametrize(
    ("name", "setup", "message"),
    [
        ("missing.jsonl", None, r"missing.jsonl: no such file or directory; pass a .jsonl file"),
        ("pairs.csv", "chosen,rejected\n", r"pairs.csv: unsupported file type '.csv'"),
        ("model_dir", "dir", r"model_dir: a directory but not a saved dataset"),
        ("empty.jsonl", "", r"empty.jsonl: no records; preference data needs prompt/chosen/rejected"),
        ("broken.jsonl", '{"chosen": "a", "rejected": "b"}\n{"chosen": ', r"broken.jsonl:2: not valid JSON"),
        ("array.json", '[{"chosen": "a", "rejected": "b"}, 3]', r"array.json item 1: a JSON int"),
        ("bad.json", "[{", r"bad.json: not valid JSON"),
    ],
)
def test_source_errors(tmp_path: Path, name: str, setup: str | None, message: str) -> None:
    path = tmp_path / name
    if setup == "dir":
        path.mkdir()
        (path / "config.json").write_text("{}")
    elif setup is not None:
        path.write_text(setup)
    with pytest.raises(AdvrmError, match=message):
        load_preferences(path)


# --------------------------------------------------------------------------------------------------
# Validation messages


def test_missing_column_message_says_what_and_how(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a"}])
    with pytest.raises(AdvrmError) as e:
        load_preferences(path)
    assert str(e.value) == (
        f"{path}: no column 'rejected' (found: prompt, chosen); preference data needs prompt/chosen/rejected"
    )


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"prompt": "p", "chosen": 5, "rejected": "b"}, r":3: 'chosen' is not a string \(int 5\)"),
        ({"prompt": 1.5, "chosen": "a", "rejected": "b"}, r":3: 'prompt' is not a string \(float 1.5\)"),
        ({"prompt": "p", "chosen": "a"}, r":3: no 'rejected' field"),
        ({"prompt": "p", "chosen": "a", "rejected": None}, r":3: 'rejected' is null"),
        ({"prompt": "p", "chosen": "  ", "rejected": "b"}, r":3: 'chosen' is empty"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, r":3: 'prompt' is empty"),
    ],
)
def test_bad_values_name_the_line(tmp_path: Path, bad_row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [*PAIRS, bad_row])
    with pytest.raises(AdvrmError, match=r"pairs.jsonl" + message):
        load_preferences(path)


def test_bad_values_are_counted(tmp_path: Path) -> None:
    rows = [{"chosen": "a", "rejected": r} for r in ["b", 1, "c", 2, 3]]
    with pytest.raises(AdvrmError, match=r"p.jsonl:2: .*\(3 of 5 rows have a bad 'rejected'\)"):
        load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))


def test_extra_column_of_mixed_types_is_named(tmp_path: Path) -> None:
    rows = [{"chosen": "a", "rejected": "b", "margin": 1}, {"chosen": "a", "rejected": "b", "margin": "big"}]
    with pytest.raises(AdvrmError, match=r"column 'margin' cannot be stored .*same type in every row"):
        load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))


def test_extra_column_missing_in_some_rows_becomes_null(tmp_path: Path) -> None:
    rows = [{"chosen": "a", "rejected": "b"}, {"chosen": "a", "rejected": "b", "margin": 1.5}]
    assert load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))["margin"] == [None, 1.5]


# --------------------------------------------------------------------------------------------------
# Stats


def test_pair_stats_counts_identical_and_overlong(pairs_file: Path, tokenizer) -> None:
    ds = load_preferences(pairs_file)
    assert pair_stats(ds) == PairStats(n_pairs=2, n_identical=1)
    # "soup bread oven<eos>" is bos + 4 tokens = 5; "rain cloud<eos>" is 4
    assert pair_stats(ds, tokenizer, max_length=4) == PairStats(2, 1, n_overlong=1, max_length=4)
    warnings = pair_stats(ds, tokenizer, max_length=4).warnings()
    assert len(warnings) == 2
    assert warnings[0].startswith("1 of 2 pairs have chosen == rejected")
    assert "longer than max_length=4" in warnings[1]
    assert PairStats(3, 0, 0, 8).warnings() == []


def test_count_overlong_mirrors_trl_text_format(tokenizer) -> None:
    eos = tokenizer.eos_token
    ds = datasets.Dataset.from_list(
        [
            # bos + prompt + response + eos: 4 / 6 tokens
            {"prompt": "soup ", "chosen": "bread", "rejected": "oven oven oven"},
            # eos already there is not doubled: 4 / 4 tokens
            {"prompt": "soup ", "chosen": "bread" + eos, "rejected": "oven" + eos},
        ]
    )
    assert [count_overlong(ds, tokenizer, n) for n in (3, 4, 5, 6)] == [2, 1, 1, 0]
    no_prompt = ds.remove_columns("prompt")
    assert count_overlong(no_prompt, tokenizer, 3, batch_size=1) == 1  # "oven oven oven<eos>" = 5


# --------------------------------------------------------------------------------------------------
# Prompts


def test_load_prompts_dedupes_in_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in ["b", "a", "b", "c", "a"]])
    result = load_prompts(path)
    assert (result.prompts, result.n_records, result.n_duplicates, len(result)) == (["b", "a", "c"], 5, 2, 3)
    kept = load_prompts(path, dedupe=False)
    assert (kept.prompts, kept.n_duplicates) == (["b", "a", "b", "c", "a"], 2)


def test_load_prompts_other_field_and_dataset_dir(tmp_path: Path) -> None:
    datasets.Dataset.from_list([{"question": "q1"}, {"question": "q2"}]).save_to_disk(str(tmp_path / "ds"))
    assert load_prompts(tmp_path / "ds", field="question").prompts == ["q1", "q2"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [{"text": "a"}],
            r"no column 'prompt' \(found: text\); a prompt file needs a non-empty string 'prompt'",
        ),
        ([{"prompt": "a"}, {"prompt": ["a"]}], r"prompts.jsonl:2: 'prompt' is not a string \(list"),
        ([{"prompt": ""}], r"prompts.jsonl:1: 'prompt' is empty"),
        ([], r"no records"),
    ],
)
def test_load_prompts_errors(tmp_path: Path, records: list[dict], message: str) -> None:
    with pytest.raises(AdvrmError, match=message):
        load_prompts(write_jsonl(tmp_path / "prompts.jsonl", records))


# --------------------------------------------------------------------------------------------------
# Properties

any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("xy"), inner, max_size=2),
    max_leaves=4,
)
text = st.text(min_size=1, max_size=10).filter(str.strip)
# Mostly well-formed fields, so that both outcomes (a dataset, an AdvrmError) are exercised.
mostly_text = st.integers(0, 4).flatmap(lambda k: any_value if k == 0 else text)
any_record = st.fixed_dictionaries(
    {"chosen": mostly_text, "rejected": mostly_text},
    optional={k: mostly_text for k in ["prompt", "margin", "extra"]},
) | st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "margin"]), any_value)


def _load_records(records: list[dict]) -> datasets.Dataset:
    with tempfile.TemporaryDirectory() as d:
        return load_preferences(write_jsonl(Path(d) / "pairs.jsonl", records))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_record, max_size=4))
def test_arbitrary_records_load_or_raise_advrm_error(records: list[dict]) -> None:
    try:
        ds = _load_records(records)
    except AdvrmError as e:
        assert "\n" not in str(e)  # one line for the CLI
        return
    assert ds["chosen"] == [r["chosen"] for r in records]
    assert ds["rejected"] == [r["rejected"] for r in records]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"prompt": text, "chosen": text, "rejected": text},
            optional={"margin": st.floats(-5, 5), "gold_chosen": st.floats(-5, 5)},
        ),
        min_size=1,
        max_size=5,
    )
)
def test_valid_pairs_round_trip(records: list[dict]) -> None:
    ds = _load_records(records)
    columns = list(dict.fromkeys(k for r in records for k in r))
    assert ds.to_list() == [{c: r.get(c) for c in columns} for r in records]
