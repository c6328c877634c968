"""Bradley-Terry RM training through TRL: the loss falls, held-out accuracy beats chance, eval is sane."""

import json

from transformers import AutoModelForSequenceClassification

from advrm.data import load_preferences
from advrm.rm_eval import evaluate_off_distribution, evaluate_pairs
from advrm.scoring import HFRewardScorer
from advrm.transforms import off_distribution_transforms
from advrm.worlds.synthetic.gold import GoldJudge
from advrm.worlds.synthetic.vocab import GIBBERISH


def test_rm_directory_is_a_one_label_hf_classifier(tiny_rms):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rms[0])
    assert model.config.num_labels == 1
    metrics = json.loads((tiny_rms[0] / "metrics.json").read_text())
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["n_pairs"] > 300


def test_rm_beats_chance_on_heldout_pairs(tiny_world, tiny_rms):
    heldout = load_preferences(tiny_world / "pairs_heldout.jsonl")
    m = evaluate_pairs(HFRewardScorer(tiny_rms[0]), heldout)
    assert m["accuracy_vs_gold"] > 0.6
    assert m["gold_ceiling"] > m["accuracy_vs_gold"] - 0.05  # noisy labels cap what an RM can learn
    assert m["spearman_with_gold"] > 0.2


def test_ensemble_members_differ_by_seed(tiny_world, tiny_rms):
    heldout = load_preferences(tiny_world / "pairs_heldout.jsonl")
    prompts, responses = list(heldout["prompt"][:20]), list(heldout["chosen"][:20])
    a = HFRewardScorer(tiny_rms[0]).score(prompts, responses)
    b = HFRewardScorer(tiny_rms[1]).score(prompts, responses)
    assert (a != b).any()


def test_off_distribution_probe_reports_each_transform(tiny_world, tiny_rms):
    heldout = load_preferences(tiny_world / "pairs_heldout.jsonl")
    out = evaluate_off_distribution(
        HFRewardScorer(tiny_rms[0]),
        GoldJudge(),
        list(heldout["prompt"][:30]),
        list(heldout["chosen"][:30]),
        off_distribution_transforms(GIBBERISH),
    )
    assert set(out["transforms"]) >= {"strip_punctuation", "repeat_prompt", "insert_gibberish", "master_key"}
    # every transform hurts gold quality (what the judge is built to do)
    assert all(t["gold_delta_mean"] < 0 for t in out["transforms"].values())


def test_cli_train_and_eval(tiny_world, tmp_path, capsys):
    from advrm.cli import main

    try:
        main(
            [
                "train-rm",
                "--base",
                str(tiny_world / "policy"),
                "--data",
                str(tiny_world / "pairs_train.jsonl"),
                "--out",
                str(tmp_path / "rm"),
                "--seeds",
                "3",
                "--epochs",
                "0.5",
            ]
        )
    except SystemExit as e:
        assert e.code == 0
    assert (tmp_path / "rm" / "seed-3" / "model.safetensors").exists()
    try:
        main(
            [
                "eval-rm",
                "--rm",
                str(tmp_path / "rm" / "seed-3"),
                "--data",
                str(tiny_world / "pairs_heldout.jsonl"),
            ]
        )
    except SystemExit as e:
        assert e.code == 0
    m = json.loads((tmp_path / "rm" / "seed-3" / "eval.json").read_text())
    assert 0.0 <= m["in_distribution"]["accuracy_vs_gold"] <= 1.0
