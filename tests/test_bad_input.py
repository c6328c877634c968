"""Bad input through the real command line: exit code 2, one line on stderr that names the problem, no
traceback. Every case here is a row of docs/errors.md (input | command | message).

Plus what the property tests of test_data.py / test_configs.py did not cover: arbitrary bytes as a data
or prompt file, and arbitrary ``--set key=value`` strings against the real configs of every command.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advrm.attack.run import AttackConfig
from advrm.cli import main
from advrm.configs import load_config, parse_overrides
from advrm.data import load_preferences, load_prompts
from advrm.errors import AdvrmError
from advrm.harden import HardenConfig
from advrm.io import read_jsonl, write_jsonl
from advrm.rlhf import RLHFConfig
from advrm.rm_training import RMTrainConfig
from advrm.scoring import CallableScorer, Ensemble, check_scores, serve_scorer

TINY_SETS = ["rl.steps=2", "rl.save_steps=1", "rl.prompts_per_step=4", "rl.num_generations=2", "rl.max_new_tokens=8",
             "n_eval_prompts=8", "samples_per_prompt=2", "n_reference=2", "baselines=[]", "curve_points=2"]  # fmt: skip
TINY_ATTACK = [arg for kv in TINY_SETS for arg in ("--set", kv)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield torch.set_num_threads(1)
    torch.set_num_threads(before)


class BadScorer:
    """What a buggy reward server computes: NaN, or the wrong number of scores."""

    def __init__(self, kind: str) -> None:
        self.name, self.kind = kind, kind

    def score(self, prompts, responses):
        if self.kind == "nan":
            return np.full(len(responses), np.nan)
        return np.zeros(max(len(responses) - 1, 0))


@pytest.fixture(scope="module")
def servers():
    """Reward servers answering NaN / one score too few (their replies are what the client checks)."""
    running = {kind: serve_scorer(BadScorer(kind)) for kind in ("nan", "short")}
    for s in running.values():
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield {kind: f"{s.url}/score" for kind, s in running.items()}
    for s in running.values():
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def files(tiny_world, tiny_rms, servers, tmp_path_factory) -> dict[str, str]:
    """Every bad input of the table, built once."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    d = tmp_path_factory.mktemp("bad")
    policy = tiny_world / "policy"
    pairs = read_jsonl(tiny_world / "pairs_train.jsonl")[:24]
    write_jsonl(d / "pairs.jsonl", [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    write_jsonl(d / "no_columns.jsonl", [{"prompt": "hi", "response": "hello"}])
    (d / "empty.jsonl").write_text("")
    write_jsonl(d / "non_string.jsonl", [{"prompt": "hi", "chosen": 3, "rejected": "no"}])
    (d / "bad_line.jsonl").write_text(
        '{"chosen": "a", "rejected": "b"}\n{"chosen": "a", \n{"chosen": "c", "rejected": "d"}\n'
    )
    write_jsonl(d / "prompts_no_field.jsonl", [{"text": "what is a dog"}])
    (d / "not_a_model").mkdir()
    (d / "not_a_model" / "README.md").write_text("not a model")
    (d / "pickle_only").mkdir()
    shutil.copy(policy / "config.json", d / "pickle_only" / "config.json")
    torch.save({"w": torch.zeros(1)}, d / "pickle_only" / "pytorch_model.bin")
    cfg = AutoConfig.from_pretrained(policy)
    cfg.num_labels = 2
    LlamaForSequenceClassification(cfg).save_pretrained(d / "two_labels")
    AutoTokenizer.from_pretrained(policy).save_pretrained(d / "two_labels")
    shutil.copytree(policy, d / "no_pad")
    tok = AutoTokenizer.from_pretrained(policy)
    tok.pad_token = None
    tok.save_pretrained(d / "no_pad")
    (d / "bad.yaml").write_text("rl: [steps\n")
    (d / "brackets [x]").mkdir()
    (d / "brackets [x]" / "[y]").mkdir()
    return {
        "d": str(d),
        "policy": str(policy),
        "rm0": str(tiny_rms[0]),
        "rm1": str(tiny_rms[1]),
        "attack_prompts": str(tiny_world / "prompts_attack.jsonl"),
        "heldout_prompts": str(tiny_world / "prompts_heldout.jsonl"),
        "nan_url": servers["nan"],
        "short_url": servers["short"],
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


ATTACK = "attack --target {rm0} --second {rm1} --policy {policy} --prompts {attack_prompts} --out {out}"
TRAIN = "train-rm --base {policy} --out {d}/rm"

# (id, command line, words the one-line message must contain). The ids are docs/errors.md's inputs.
# fmt: off
CASES = [
    ("missing data file", TRAIN + " --data {d}/missing.jsonl", "missing.jsonl: no such file or directory"),
    ("missing data file, path with [brackets]", TRAIN + " --data '{d}/brackets [x]/[y]/p.jsonl'", "[x]/[y]/p.jsonl: no such"),
    ("data without chosen/rejected", TRAIN + " --data {d}/no_columns.jsonl", "no columns 'chosen', 'rejected' (found: prompt, response)"),
    ("empty data file", TRAIN + " --data {d}/empty.jsonl", "empty.jsonl: no records"),
    ("non-string field", TRAIN + " --data {d}/non_string.jsonl", "non_string.jsonl:1: 'chosen' is not a string (int 3)"),
    ("broken JSON line", TRAIN + " --data {d}/bad_line.jsonl", "bad_line.jsonl:2: not valid JSON"),
    ("model directory that is not a model", "train-rm --base {d}/not_a_model --data {d}/pairs.jsonl --out {d}/rm", "is not a Hugging Face model directory (no config.json)"),
    ("model directory that does not exist", ATTACK.replace("{policy}", "{d}/nowhere"), "nowhere' does not exist"),
    ("pickle-only weights", "train-rm --base {d}/pickle_only --data {d}/pairs.jsonl --out {d}/rm", "weights must be safetensors"),
    ("RM with two labels", "eval-rm --rm {d}/two_labels --data {d}/pairs.jsonl", "num_labels=2"),
    ("RM with two labels as attack target", ATTACK.replace("{rm0}", "{d}/two_labels"), "num_labels=2"),
    ("tokenizer without pad token", "train-rm --base {d}/no_pad --data {d}/pairs.jsonl --out {d}/rm", "has no pad token"),
    ("unknown config key", ATTACK + " --set rl.stepz=3", "unknown config key 'rl.stepz' (did you mean 'rl.steps'?)"),
    ("wrong type", ATTACK + " --set rl.steps=abc", "config key 'rl.steps': expected int, got str 'abc'"),
    ("out of range: lam1 < 0 (--set)", ATTACK + " --set objective.lam1=-1", "'objective.lam1': must be at least 0.0, got -1.0"),
    ("out of range: lam2 < 0 (--lam2)", ATTACK + " --lam2 -0.5", "'objective.lam2': must be at least 0.0, got -0.5"),
    ("unknown baseline", ATTACK + " --set baselines=[bestofn]", "unknown baselines ['bestofn']"),
    ("repeated harden seed", "harden --base {policy} --data {d}/pairs.jsonl --prompts {attack_prompts} --out {d}/h --set seeds=[0,0]", "repeat a seed"),
    ("tau not a number", ATTACK + " --tau abc", "Invalid value for '--tau': Input should be a valid number"),
    ("no --second RM", "attack --target {rm0} --policy {policy} --prompts {attack_prompts} --out {d}/o", "Missing option '--second'"),
    ("prompts file without prompt", ATTACK.replace("{attack_prompts}", "{d}/prompts_no_field.jsonl"), "no column 'prompt' (found: text)"),
    ("--set without =", ATTACK + " --set rl.steps", "override 'rl.steps' is not key=value"),
    ("config file missing", ATTACK + " --config {d}/nope.yaml", "nope.yaml: no such config file"),
    ("config file not YAML", ATTACK + " --config {d}/bad.yaml", "bad.yaml:2: not valid YAML"),
    ("seeds not integers", TRAIN + " --data {d}/pairs.jsonl --seeds a,b", "--seeds 'a,b' is not a comma-separated list"),
    ("train-rm epochs 0", TRAIN + " --data {d}/pairs.jsonl --epochs 0", "'epochs': must be at least 0.01"),
    ("ensemble reward with one RM", "rlhf --policy {policy} --rm {rm0} --prompts {attack_prompts} --eval-prompts {heldout_prompts} --out {d}/r --reward ensemble_mean", "needs at least two RMs"),
    ("unknown RLHF reward", "rlhf --policy {policy} --rm {rm0} --prompts {attack_prompts} --eval-prompts {heldout_prompts} --out {d}/r --reward best", "config key 'reward': expected one of 'single', 'ensemble_mean', 'ensemble_mean_minus_std', got str 'best'"),
    ("unknown preset", "world build --out {d}/w --preset huge", "--preset 'huge' is not a preset"),
    ("report of a missing directory", "report {d}/no_run", "is not a directory"),
    ("unknown command", "atack --target x", "No such command 'atack'"),
    ("reward server returns NaN", ATTACK.replace("{rm0}", "{nan_url}") + " --eval-prompts {heldout_prompts}" + " " + " ".join(TINY_ATTACK), "NaN scores out of"),
    ("reward server returns too few scores", ATTACK.replace("{rm0}", "{short_url}") + " --eval-prompts {heldout_prompts}" + " " + " ".join(TINY_ATTACK), "scores for 64 responses"),
]
# fmt: on


def argv_of(template: str, files: dict[str, str]) -> list[str]:
    import shlex

    return shlex.split(template.format(**files))


@pytest.mark.parametrize(("what", "template", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(what, template, message, files, capsys, tmp_path):
    code, err = run_cli(argv_of(template, {**files, "out": str(tmp_path / "out")}), capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert message in errors[0], errors[0]
    if "reward server" not in what:  # those fail after sampling has started; the rest before any work
        assert lines == errors, err


def test_duplicated_prompts_are_reported_and_used_once_then_a_changed_config_is_refused(
    files, capsys, tmp_path
):
    prompts = read_jsonl(files["attack_prompts"])
    write_jsonl(tmp_path / "dup.jsonl", prompts + prompts[:5])
    out = tmp_path / "attack"
    argv = argv_of(
        ATTACK.replace("{attack_prompts}", str(tmp_path / "dup.jsonl")), {**files, "out": str(out)}
    )
    capsys.readouterr()
    main([*argv, "--eval-prompts", files["heldout_prompts"], *TINY_ATTACK])
    err = capsys.readouterr().err
    assert f"5 of {len(prompts) + 5} prompts are duplicates; each prompt is used once" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train_prompts"] == len(prompts)
    assert metrics["n_samples"] == 8 * 2

    code, err = run_cli(
        [*argv, "--eval-prompts", files["heldout_prompts"], *TINY_ATTACK, "--steps", "3"], capsys
    )
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:]
    assert "config.rl.steps=2, now config.rl.steps=3" in lines[-1]


def test_overlong_pairs_are_counted_and_reported_by_train_rm(files, capsys, tmp_path):
    pairs = read_jsonl(Path(files["d"]) / "pairs.jsonl")
    for p in pairs[:5]:
        p["rejected"] = " ".join(["the"] * 200)
    write_jsonl(tmp_path / "long.jsonl", pairs)
    (tmp_path / "rm.yaml").write_text("epochs: 1\nbatch_size: 8\nmax_length: 128\n")
    out = tmp_path / "rm"
    capsys.readouterr()
    main(["train-rm", "--base", files["policy"], "--data", str(tmp_path / "long.jsonl"), "--out", str(out),
          "--config", str(tmp_path / "rm.yaml")])  # fmt: skip
    err = capsys.readouterr().err
    assert "5 over-long pairs dropped" in err
    metrics = json.loads((out / "seed-0" / "metrics.json").read_text())
    assert metrics["n_dropped_overlong"] == 5 and metrics["n_pairs"] == len(pairs)


def test_nan_and_wrong_length_scores_in_an_ensemble_name_the_member():
    good = CallableScorer(lambda p, r: [1.0] * len(r), "good")
    nan = CallableScorer(lambda p, r: [1.0, float("nan")][: len(r)] + [0.0] * (len(r) - 2), "nan-rm")
    short = CallableScorer(lambda p, r: [1.0] * (len(r) - 1), "short-rm")
    for member, words in (
        (nan, "scorer 'nan-rm' returned 1 NaN scores out of 3"),
        (short, "'short-rm' returned 2 scores for 3"),
    ):
        with pytest.raises(AdvrmError, match=words) as e:
            Ensemble([good, member]).score(["p"] * 3, ["a", "b", "c"])
        assert "\n" not in str(e.value)
    with pytest.raises(AdvrmError, match="returned 1 infinite scores out of 2"):
        check_scores([1.0, float("inf")], 2, "x")
    with pytest.raises(AdvrmError, match="returned an array of shape"):
        check_scores(np.zeros((2, 2)), 2, "x")
    with pytest.raises(AdvrmError, match="not a list of numbers"):
        check_scores(["a", "b"], 2, "x")


# --------------------------------------------------------------------------------------------------
# Properties the existing ones do not cover


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json"]))
def test_arbitrary_bytes_as_data_or_prompts_raise_only_advrm_error(data, suffix, tmp_path):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    for load in (load_preferences, load_prompts):
        try:
            load(path)
        except AdvrmError as e:
            assert "\n" not in str(e)


yaml_bits = st.sampled_from(
    ["1", "-1", "0", "1e400", ".nan", "abc", "[a, b]", "[]", "{x: 1}", "&a [*a]", "!!python/object:os.system",
     "yes", "null", "''", "[", "2021-01-01", "0x10", "1_000", "3.5", "~"]
)  # fmt: skip
paths = {
    AttackConfig: ["rl.steps", "rl.beta", "objective.lam1", "objective.tau", "baselines", "n_reference", "seed",
                   "rl", "rl.stepz", "curve_points", "gibberish_words"],
    RLHFConfig: ["rl.steps", "reward", "k", "eval_every", "onset", "standardize", "eval_seed"],
    HardenConfig: ["rounds", "seeds", "attack.rl.steps", "rm.max_length", "attack.baselines", "rm"],
    RMTrainConfig: ["epochs", "learning_rate", "max_length", "batch_size"],
}  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    cls=st.sampled_from(list(paths)),
    items=st.data(),
)
def test_arbitrary_set_overrides_raise_only_advrm_error(cls, items):
    keys = items.draw(st.lists(st.sampled_from(paths[cls]), min_size=1, max_size=3))
    values = items.draw(st.lists(yaml_bits | st.text(max_size=6), min_size=len(keys), max_size=len(keys)))
    sets = [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
    try:
        load_config(cls, None, parse_overrides(sets))
    except AdvrmError as e:
        assert "\n" not in str(e)
