"""Typed config loading with validation (advrm.configs)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advrm.configs import config_to_dict, dump_yaml, load_config, load_yaml, parse_overrides
from advrm.errors import AdvrmError


@dataclass
class RMConfig:
    lr: float = field(default=1e-4, metadata={"gt": 0, "help": "learning rate of the reward model"})
    epochs: int = field(default=1, metadata={"min": 1, "max": 100})
    loss: Literal["bt", "margin"] = "bt"


@dataclass
class RunConfig:
    out: Path = Path("runs/demo")
    name: str = "demo"
    preset: Literal["quick", "full"] = "quick"
    beta: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "weight of the KL term"})
    seeds: tuple[int, ...] = (0, 1)
    tags: list[str] = field(default_factory=list)
    max_length: int | None = None
    remote: str | int = "none"
    weights: dict[str, float] = field(default_factory=dict)
    shape: tuple[int, str] = (1, "a")
    flag: bool = False
    extra: Any = None
    rm: RMConfig = field(default_factory=RMConfig)


@dataclass
class NeedsName:
    name: str = field(metadata={"help": "the world's name"})
    low: int = 0
    high: int = 1

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low={self.low} is above high={self.high}; swap them")


@dataclass
class Unsupported:
    when: complex = 0j


def test_defaults_dicts_and_nested_sections() -> None:
    assert load_config(RunConfig) == RunConfig()
    cfg = load_config(RunConfig, {"name": "x", "rm": {"lr": 0.001}, "seeds": [3], "out": "/tmp/o"})
    assert (cfg.name, cfg.rm, cfg.seeds, cfg.out) == ("x", RMConfig(lr=0.001), (3,), Path("/tmp/o"))


def test_int_is_accepted_and_converted_for_float() -> None:
    cfg = load_config(RunConfig, {"beta": 1, "weights": {"a": 2}})
    assert cfg.beta == 1.0 and isinstance(cfg.beta, float) and isinstance(cfg.weights["a"], float)
    assert config_to_dict(cfg) == config_to_dict(load_config(RunConfig, {"beta": 1.0, "weights": {"a": 2.0}}))


def test_yaml_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("name: from-file\nrm:\n  lr: 1e-3\n  epochs: 3\nseeds: [1, 2]\n")
    cfg = load_config(RunConfig, path, {"rm.epochs": 5, "rm": {"loss": "margin"}, "name": "cli"})
    assert (cfg.name, cfg.rm, cfg.seeds) == ("cli", RMConfig(lr=0.001, epochs=5, loss="margin"), (1, 2))
    assert load_config(RunConfig, str(path)).rm.lr == 0.001  # 1e-3 is a float, not the string "1e-3"


def test_parse_overrides() -> None:
    assert parse_overrides(["rm.lr=1e-3", "name=x", "seeds=[1, 2]", "flag=true", "tags=", "k= a=b"]) == {
        "rm.lr": 0.001,
        "name": "x",
        "seeds": [1, 2],
        "flag": True,
        "tags": "",
        "k": "a=b",
    }
    with pytest.raises(AdvrmError, match="not key=value"):
        parse_overrides(["rm.lr"])
    cfg = load_config(RunConfig, None, parse_overrides(["rm.epochs=2", "preset=full"]))
    assert (cfg.rm.epochs, cfg.preset) == (2, "full")


def test_unknown_keys_suggest_the_closest_and_list_valid_ones() -> None:
    with pytest.raises(AdvrmError) as e:
        load_config(RunConfig, {"rm": {"lrr": 0.1}})
    assert (
        str(e.value)
        == "unknown config key 'rm.lrr' (did you mean 'rm.lr'?); valid keys in 'rm': lr, epochs, loss"
    )
    with pytest.raises(AdvrmError, match=r"unknown config key 'zzz'; valid keys: out, name, preset"):
        load_config(RunConfig, {"zzz": 1})
    with pytest.raises(AdvrmError, match=r"config key 'rm.loss': expected one of 'bt', 'margin', got dict"):
        load_config(RunConfig, {}, {"rm.loss.x": 1})  # a setting is not a section


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": 3}, "config key 'name': expected str, got int 3"),
        ({"name": False}, "config key 'name': expected str, got bool False (YAML reads yes/no"),
        (
            {"beta": "0.5"},
            "config key 'beta': expected float, got str '0.5' (write the number without quotes)",
        ),
        ({"beta": True}, "config key 'beta': expected float, got bool True"),
        ({"rm": {"epochs": True}}, "config key 'rm.epochs': expected int, got bool True"),
        ({"rm": {"epochs": 2.0}}, "config key 'rm.epochs': expected int, got float 2.0"),
        ({"preset": "fast"}, "config key 'preset': expected one of 'quick', 'full', got str 'fast'"),
        ({"seeds": [0, "1"]}, "config key 'seeds[1]': expected int, got str '1'"),
        ({"seeds": 3}, "config key 'seeds': expected tuple[int, ...], got int 3"),
        ({"tags": "a"}, "config key 'tags': expected list[str], got str 'a'"),
        ({"max_length": "x"}, "config key 'max_length': expected int, got str 'x'"),
        ({"remote": 1.5}, "config key 'remote': expected str or int, got float 1.5"),
        ({"weights": {"a": "b"}}, "config key 'weights.a': expected float, got str 'b'"),
        ({"shape": [1]}, "config key 'shape': expected 2 items, got 1"),
        ({"out": 5}, "config key 'out': expected Path, got int 5"),
        ({"rm": [1]}, "config key 'rm': expected a mapping, got list [1]"),
        ({"flag": 1}, "config key 'flag': expected bool, got int 1"),
        ({"beta": float("nan")}, "config key 'beta': nan is not a finite number"),
    ],
)
def test_type_errors_name_key_expected_type_and_value(data: dict, message: str) -> None:
    with pytest.raises(AdvrmError) as e:
        load_config(RunConfig, data)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"beta": 1.5}, "config key 'beta': must be at most 1, got 1.5 (weight of the KL term)"),
        ({"beta": -0.1}, "config key 'beta': must be at least 0, got -0.1"),
        ({"rm": {"lr": 0}}, "config key 'rm.lr': must be greater than 0, got 0.0 (learning rate"),
        ({"rm": {"epochs": 0}}, "config key 'rm.epochs': must be at least 1, got 0"),
    ],
)
def test_ranges_from_field_metadata(data: dict, message: str) -> None:
    with pytest.raises(AdvrmError) as e:
        load_config(RunConfig, data)
    assert str(e.value).startswith(message)


def test_literal_and_union_values_are_kept_exactly() -> None:
    cfg = load_config(RunConfig, {"remote": 8000, "max_length": None, "extra": {"anything": [1]}})
    assert (cfg.remote, cfg.max_length, cfg.extra) == (8000, None, {"anything": [1]})


def test_required_keys_and_post_init_checks() -> None:
    with pytest.raises(AdvrmError, match=r"missing config key 'name': str \(the world's name\)"):
        load_config(NeedsName)
    with pytest.raises(AdvrmError, match=r"config: low=2 is above high=1; swap them"):
        load_config(NeedsName, {"name": "w", "low": 2})


def test_developer_errors_are_not_user_errors() -> None:
    with pytest.raises(TypeError, match="does not support the annotation"):
        load_config(Unsupported, {"when": 1})
    with pytest.raises(TypeError, match="needs a dataclass type"):
        load_config(dict, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        config_to_dict({"a": 1})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such config file"),
        ("a: [1,\n", r"bad.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "a YAML list, expected a mapping"),
    ],
)
def test_yaml_file_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AdvrmError, match=message):
        load_config(RunConfig, path)


def test_empty_yaml_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_yaml(path) == {}
    assert load_config(RunConfig, path) == RunConfig()


def test_config_to_dict_is_plain_json() -> None:
    assert config_to_dict(RunConfig(seeds=(4,), out=Path("o"))) == {
        "out": "o",
        "name": "demo",
        "preset": "quick",
        "beta": 0.1,
        "seeds": [4],
        "tags": [],
        "max_length": None,
        "remote": "none",
        "weights": {},
        "shape": [1, "a"],
        "flag": False,
        "extra": None,
        "rm": {"lr": 0.0001, "epochs": 1, "loss": "bt"},
    }


# --------------------------------------------------------------------------------------------------
# Properties

finite = st.floats(allow_nan=False, allow_infinity=False)
strings = st.text(max_size=8)
valid_run = st.fixed_dictionaries(
    {},
    optional={
        "out": strings.filter(lambda s: "\0" not in s).map(lambda s: s or "."),
        "name": strings,
        "preset": st.sampled_from(["quick", "full"]),
        "beta": st.floats(0, 1),
        "seeds": st.lists(st.integers(), max_size=3),
        "tags": st.lists(strings, max_size=3),
        "max_length": st.none() | st.integers(),
        "remote": strings | st.integers(),
        "weights": st.dictionaries(strings, finite, max_size=2),
        "shape": st.tuples(st.integers(), strings).map(list),
        "flag": st.booleans(),
        "rm": st.fixed_dictionaries(
            {},
            optional={
                "lr": st.floats(0, 10, exclude_min=True),
                "epochs": st.integers(1, 100),
                "loss": st.sampled_from(["bt", "margin"]),
            },
        ),
    },
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(["out", "name", "preset", "beta", "seeds", "weights", "shape", "rm", "flag", "nme"])


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(keys, anything, max_size=5), st.dictionaries(st.sampled_from(["rm.lr", "rm.x"]), anything)
)
def test_arbitrary_input_raises_only_advrm_error(data: dict, overrides: dict) -> None:
    try:
        cfg = load_config(RunConfig, data, overrides)
    except AdvrmError as e:
        assert "\n" not in str(e)
        return
    assert load_config(RunConfig, config_to_dict(cfg)) == cfg


@settings(max_examples=50, deadline=None)
@given(valid_run)
def test_valid_configs_round_trip_through_dicts_and_yaml(data: dict) -> None:
    cfg = load_config(RunConfig, data)
    as_dict = config_to_dict(cfg)
    assert load_config(RunConfig, as_dict) == cfg
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(dump_yaml(as_dict), encoding="utf-8")
        assert load_config(RunConfig, path) == cfg
