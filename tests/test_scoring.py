"""advrm.scoring: the HF RM scorer against TRL's own training inputs, remote scoring, ensembles, z-scores."""

import json
import threading

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from advrm.errors import AdvrmError
from advrm.models import init_reward_model_from
from advrm.scoring import (
    CallableScorer,
    Ensemble,
    HFRewardScorer,
    Normalizer,
    RemoteScorer,
    Scorer,
    check_scores,
    serve_scorer,
)
from advrm.worlds.synthetic.tokenizer import build_tokenizer

PROMPTS = [
    "how does the soup heat ? ",
    "why is the rain cold ? ",
    "tell me about the song . ",
    "what is a map ? ",
]
RESPONSES = [
    "the soup is hot .",
    "the rain is cold because the wind blows . the cloud is dark .",
    "the song is loud",
    "a map is old and the road is long . it is busy .",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(extra_words=["user", "assistant", ":"])


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tok):
    lm = tmp_path_factory.mktemp("lm")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(lm)
    tok.save_pretrained(lm)
    rm = init_reward_model_from(lm)
    out = tmp_path_factory.mktemp("rm")
    rm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return HFRewardScorer(rm_dir, batch_size=3)


def _direct(model, ids):
    """One unpadded forward pass per sequence: the reference value of a reward."""
    with torch.no_grad():
        return np.array([model(input_ids=torch.tensor([i])).logits[0, 0].item() for i in ids])


# ------------------------------------------------------------------------------------------------
# HFRewardScorer == what TRL's RewardTrainer trains on


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_plain_scores_equal_reward_trainer_inputs(scorer, tok, tmp_path):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    data = Dataset.from_dict({"prompt": PROMPTS, "chosen": RESPONSES, "rejected": RESPONSES[::-1]})
    args = RewardConfig(
        output_dir=str(tmp_path),
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
    )
    trainer = RewardTrainer(model=scorer.model, args=args, train_dataset=data, processing_class=tok)
    chosen_ids = trainer.train_dataset["chosen_ids"]
    assert scorer.encode(PROMPTS, RESPONSES) == chosen_ids  # the same tokens, bos and eos included
    assert all(ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id for ids in chosen_ids)

    # The trainer's own collated, padded batch through the model gives the scorer's numbers.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PROMPTS))])
    scorer.model.eval()
    with torch.no_grad():
        logits = scorer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    trained_on = logits.squeeze(-1)[: len(PROMPTS)].double().numpy()
    scores = scorer.score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(scores, trained_on, atol=1e-5)
    np.testing.assert_allclose(scores, _direct(scorer.model, chosen_ids), atol=1e-5)
    assert scores.dtype == np.float64 and scores.shape == (4,) and np.ptp(scores) > 0


def test_batch_size_padding_side_and_eos_do_not_change_scores(scorer, rm_dir, tok):
    ref = scorer.score(PROMPTS, RESPONSES)
    for bs in (1, 2, 64):
        np.testing.assert_allclose(
            HFRewardScorer(rm_dir, batch_size=bs).score(PROMPTS, RESPONSES), ref, atol=1e-5
        )
    left = build_tokenizer(extra_words=["user", "assistant", ":"])
    left.padding_side = "left"
    np.testing.assert_allclose(HFRewardScorer(scorer.model, left).score(PROMPTS, RESPONSES), ref, atol=1e-5)
    # A response that already ends with eos gets no second one (TRL's add_eos).
    np.testing.assert_allclose(scorer.score(PROMPTS, [r + tok.eos_token for r in RESPONSES]), ref, atol=1e-5)
    # Order of the inputs only permutes the outputs.
    np.testing.assert_allclose(scorer.score(PROMPTS[::-1], RESPONSES[::-1]), ref[::-1], atol=1e-5)


def test_chat_format_matches_trl_conversational_tokenization(scorer, tok):
    from trl.data_utils import _tokenize

    chat_tok = build_tokenizer(extra_words=["user", "assistant", ":"])
    chat_tok.chat_template = CHAT_TEMPLATE
    chat = HFRewardScorer(scorer.model, chat_tok)  # auto -> chat
    plain = HFRewardScorer(scorer.model, chat_tok, text_format="plain")
    assert chat.text_format == "chat" and scorer.text_format == "plain" and plain.text_format == "plain"
    expected = [
        _tokenize(chat_tok, [{"role": "user", "content": p}] + [{"role": "assistant", "content": r}])[
            "input_ids"
        ]
        for p, r in zip(PROMPTS, RESPONSES, strict=True)
    ]
    assert chat.encode(PROMPTS, RESPONSES) == expected
    np.testing.assert_allclose(chat.score(PROMPTS, RESPONSES), _direct(scorer.model, expected), atol=1e-5)
    with pytest.raises(AdvrmError, match="no chat template"):
        HFRewardScorer(scorer.model, tok, text_format="chat")


def test_hf_scorer_counts_queries_and_checks_inputs(rm_dir, tok, scorer):
    s = HFRewardScorer(rm_dir)
    assert isinstance(s, Scorer) and s.name == rm_dir.name and s.n_queries == 0
    s.score(PROMPTS, RESPONSES)
    s.score(PROMPTS[:2], RESPONSES[:2])
    assert s.n_queries == 6
    assert s.score([], []).shape == (0,)
    with pytest.raises(AdvrmError, match="4 prompts for 3 responses"):
        s.score(PROMPTS, RESPONSES[:3])
    with pytest.raises(AdvrmError, match="no tokenizer"):
        HFRewardScorer(scorer.model)
    with pytest.raises(AdvrmError, match="text_format"):
        HFRewardScorer(rm_dir, text_format="html")


# ------------------------------------------------------------------------------------------------
# check_scores / CallableScorer


def test_check_scores_errors():
    np.testing.assert_array_equal(check_scores([1, 2, 3], 3, "x"), [1.0, 2.0, 3.0])
    assert check_scores(np.ones((3, 1), dtype=np.float32), 3, "x").dtype == np.float64
    with pytest.raises(AdvrmError, match="scorer 'x' returned 2 scores for 3 responses"):
        check_scores([1.0, 2.0], 3, "x")
    bad = np.zeros(128)
    bad[[1, 5, 9]] = np.nan
    with pytest.raises(AdvrmError, match="scorer 'x' returned 3 NaN scores out of 128; "):
        check_scores(bad, 128, "x")
    with pytest.raises(AdvrmError, match="returned 1 infinite scores out of 2"):
        check_scores([1.0, float("inf")], 2, "x")
    with pytest.raises(AdvrmError, match="not a list of numbers"):
        check_scores(["a", "b"], 2, "x")


def test_callable_scorer():
    s = CallableScorer(lambda p, r: [len(x) for x in r], name="length")
    assert isinstance(s, Scorer) and repr(s) == "CallableScorer(name='length')"
    np.testing.assert_array_equal(s.score(["a", "b"], ["xy", "xyz"]), [2.0, 3.0])
    assert s.n_queries == 2
    with pytest.raises(AdvrmError, match="scorer 'short' returned 1 scores for 2"):
        CallableScorer(lambda p, r: [0.0], name="short").score(["a", "b"], ["c", "d"])


# ------------------------------------------------------------------------------------------------
# Ensemble

MATRIX = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 8.0]])


def test_ensemble_reductions_on_a_hand_made_matrix():
    np.testing.assert_allclose(Ensemble.mean(MATRIX), [2.0, 2.0, 4.0])
    np.testing.assert_allclose(Ensemble.min(MATRIX), [1.0, 2.0, 1.0])
    std = np.array([np.sqrt(2 / 3), 0.0, np.sqrt(26 / 3)])  # ddof=0 over the 3 members
    np.testing.assert_allclose(Ensemble.mean_minus_k_std(MATRIX, k=1.0), [2.0, 2.0, 4.0] - std)
    np.testing.assert_allclose(
        Ensemble.mean_minus_k_std(MATRIX, k=0.5, penalty="var"), [2 - 1 / 3, 2.0, 4 - 13 / 3]
    )
    np.testing.assert_allclose(Ensemble.disagreement([1.0, 0.5], [-1.0, 0.5]), [2.0, 0.0])
    with pytest.raises(AdvrmError, match="same shape"):
        Ensemble.disagreement([1.0], [1.0, 2.0])


def test_ensemble_is_a_scorer():
    members = [CallableScorer(lambda p, r, row=row: list(row), name=f"m{i}") for i, row in enumerate(MATRIX)]
    p, r = ["a"] * 3, ["x", "y", "z"]
    np.testing.assert_allclose(Ensemble(members).score_matrix(p, r), MATRIX)
    np.testing.assert_allclose(Ensemble(members).score(p, r), Ensemble.mean(MATRIX))
    np.testing.assert_allclose(Ensemble(members, reduction="min").score(p, r), Ensemble.min(MATRIX))
    e = Ensemble(members, reduction="mean_minus_k_std", k=2.0)
    assert isinstance(e, Scorer)
    np.testing.assert_allclose(e.score(p, r), Ensemble.mean_minus_k_std(MATRIX, k=2.0))
    with pytest.raises(AdvrmError, match="reduction"):
        Ensemble(members, reduction="max")
    with pytest.raises(AdvrmError, match="at least one"):
        Ensemble([])


# ------------------------------------------------------------------------------------------------
# Normalizer


def test_normalizer_z_scores_of_the_reference_set(tmp_path):
    ref = [[1.0, 2.0, 3.0, 6.0], [10.0, 10.5, 9.0, 12.5], [5.0, 5.0, 5.0, 5.0]]
    prompts = ["p0", "p1", "flat"]
    norm = Normalizer.from_scores(prompts, ref, scorer_name="rm")
    for p, row in zip(prompts[:2], ref[:2], strict=True):
        z = norm.z([p] * 4, row)
        assert abs(z.mean()) < 1e-12 and abs(z.std() - 1.0) < 1e-12
    np.testing.assert_allclose(norm.mean(prompts), [3.0, 10.5, 5.0])
    everything = np.concatenate([np.asarray(r) for r in ref])
    assert norm.std_floor == pytest.approx(1e-3 * everything.std())
    assert norm.std(["flat"])[0] == norm.std_floor  # a constant prompt divides by the floor, not by 0
    np.testing.assert_allclose(norm.z(["p0", "flat"], [3.0, 5.0]), [0.0, 0.0])

    with pytest.raises(AdvrmError, match="1 of 2 prompts have no reference statistics"):
        norm.z(["p0", "unseen"], [1.0, 2.0])

    path = norm.to_json(tmp_path / "stats" / "ref.json")
    again = Normalizer.from_json(path)
    assert again.scorer_name == "rm" and len(again) == 3 and "p1" in again
    np.testing.assert_array_equal(again.z(prompts, [0.0, 1.0, 2.0]), norm.z(prompts, [0.0, 1.0, 2.0]))


def test_normalizer_fit_scores_every_reference_response():
    s = CallableScorer(lambda p, r: [float(len(x)) for x in r], name="len")
    refs = [["a", "abc"], ["ab", "abcd", "abcdef"]]
    norm = Normalizer.fit(s, ["p", "q"], refs)
    assert s.n_queries == 5 and norm.scorer_name == "len"
    np.testing.assert_allclose(norm.mean(["p", "q"]), [2.0, 4.0])
    np.testing.assert_allclose(norm.std(["p", "q"]), [1.0, np.sqrt(8 / 3)])


def test_normalizer_errors(tmp_path):
    with pytest.raises(AdvrmError, match="fewer than 2 reference responses"):
        Normalizer.from_scores(["p"], [[1.0]])
    with pytest.raises(AdvrmError, match="does not exist"):
        Normalizer.from_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AdvrmError, match="not valid JSON"):
        Normalizer.from_json(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AdvrmError, match="not an advrm Normalizer file"):
        Normalizer.from_json(tmp_path / "other.json")


# ------------------------------------------------------------------------------------------------
# RemoteScorer <-> serve_scorer

TOKEN = "s3cret-t0ken-value"


@pytest.fixture()
def served(scorer, monkeypatch):
    monkeypatch.setenv("ADVRM_TEST_SERVER_TOKEN", TOKEN)
    server = serve_scorer(scorer, token_env="ADVRM_TEST_SERVER_TOKEN")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("protocol, path", [("advrm", "/score"), ("openrlhf", "/get_reward")])
def test_remote_scorer_equals_local_scorer(served, scorer, monkeypatch, protocol, path):
    monkeypatch.setenv("ADVRM_RM_TOKEN", TOKEN)
    remote = RemoteScorer(served.url + path, protocol=protocol)
    assert isinstance(remote, Scorer)
    local = scorer.score(PROMPTS, RESPONSES)
    np.testing.assert_array_equal(remote.score(PROMPTS, RESPONSES), local)  # float64 survives JSON exactly
    assert remote.n_queries == 4
    # Smaller requests: the server pads other batches, so float32 rounding may differ a little.
    chunked = RemoteScorer(served.url + path, protocol=protocol, batch_size=3)
    np.testing.assert_allclose(chunked.score(PROMPTS, RESPONSES), local, atol=1e-6)
    assert TOKEN not in repr(remote) and TOKEN not in str(vars(remote))


def test_remote_scorer_wrong_or_missing_token(served, monkeypatch):
    monkeypatch.setenv("ADVRM_RM_TOKEN", "wrong-" + TOKEN)
    remote = RemoteScorer(served.url + "/score", retries=0)
    with pytest.raises(AdvrmError, match=r"HTTP 401 from .*; check \$ADVRM_RM_TOKEN") as e:
        remote.score(PROMPTS, RESPONSES)
    assert TOKEN not in str(e.value) and "wrong-" not in str(e.value)
    monkeypatch.delenv("ADVRM_RM_TOKEN")
    with pytest.raises(AdvrmError, match=r"it is not set"):
        remote.score(PROMPTS, RESPONSES)


def test_remote_scorer_protocol_errors(served, monkeypatch):
    monkeypatch.setenv("ADVRM_RM_TOKEN", TOKEN)
    with pytest.raises(AdvrmError, match="HTTP 404"):
        RemoteScorer(served.url + "/nowhere").score(PROMPTS, RESPONSES)
    with pytest.raises(AdvrmError, match="HTTP 400: 'query' must be a list of strings .*protocol"):
        RemoteScorer(served.url + "/get_reward", protocol="advrm").score(PROMPTS, RESPONSES)
    with pytest.raises(AdvrmError, match="must be http"):
        RemoteScorer("file:///etc/passwd")


def test_remote_scorer_retries_then_fails_cleanly(monkeypatch):
    monkeypatch.setenv("ADVRM_RM_TOKEN", TOKEN)
    calls = []

    def nan_scores(p, r):
        calls.append(len(r))
        return [float("nan")] * len(r)

    server = serve_scorer(CallableScorer(nan_scores, name="broken"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(
            AdvrmError, match=r"failed 3 times \(last: HTTP 500: scorer 'broken' returned 2 NaN"
        ):
            RemoteScorer(server.url + "/score", retries=2, backoff=0.01).score(["a", "b"], ["c", "d"])
        assert calls == [2, 2, 2]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(AdvrmError, match="failed 2 times") as e:  # nothing listens any more
        RemoteScorer(server.url + "/score", retries=1, backoff=0.01, timeout=2).score(["a"], ["b"])
    assert TOKEN not in str(e.value)


def test_remote_scorer_does_not_follow_redirects(monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    monkeypatch.setenv("ADVRM_RM_TOKEN", TOKEN)

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/score"
        with pytest.raises(AdvrmError, match="HTTP 307 .*does not follow") as e:
            RemoteScorer(url).score(["a"], ["b"])
        assert TOKEN not in str(e.value)
    finally:
        server.shutdown()
        server.server_close()
