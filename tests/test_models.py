"""advrm.models: safe loading of model folders and seeded sampling from a policy."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

from advrm.errors import AdvrmError
from advrm.models import (
    DEFAULT_PAD_TOKEN,
    check_model_dir,
    ensure_pad_token,
    generate,
    init_reward_model_from,
    load_policy,
    load_reward_model,
    load_tokenizer,
)
from advrm.worlds.synthetic.tokenizer import build_tokenizer

PROMPTS = ["how does the soup heat ?", "why is the rain cold ?", "tell me about the song ."]


def tiny_config(tok, **kw):
    kw = {"pad_token_id": tok.pad_token_id, **kw}
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
        **kw,
    )


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("lm")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(tok)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def policy(lm_dir):
    return load_policy(lm_dir)


# ------------------------------------------------------------------------------------------------
# check_model_dir / load_tokenizer


def test_check_model_dir_accepts_a_saved_model(lm_dir):
    assert check_model_dir(str(lm_dir)) == lm_dir


def test_check_model_dir_missing(tmp_path):
    with pytest.raises(AdvrmError, match="does not exist"):
        check_model_dir(tmp_path / "nope")


def test_check_model_dir_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(AdvrmError, match="not a model directory"):
        check_model_dir(tmp_path / "f.txt")


def test_check_model_dir_no_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(AdvrmError, match="not a Hugging Face model directory"):
        check_model_dir(tmp_path)


def test_check_model_dir_pickle_only_is_refused(tmp_path, lm_dir):
    (tmp_path / "config.json").write_text((lm_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(AdvrmError, match="weights must be safetensors") as e:
        check_model_dir(tmp_path)
    assert "pytorch_model.bin" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AdvrmError, match="weights must be safetensors"):
        load_policy(tmp_path)


def test_check_model_dir_no_weights(tmp_path, lm_dir):
    (tmp_path / "config.json").write_text((lm_dir / "config.json").read_text())
    with pytest.raises(AdvrmError, match="no weights"):
        check_model_dir(tmp_path)


def test_load_tokenizer(lm_dir, tmp_path, tok):
    loaded = load_tokenizer(lm_dir)
    assert loaded.pad_token_id == tok.pad_token_id != loaded.eos_token_id
    with pytest.raises(AdvrmError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_load_tokenizer_without_pad_and_ensure_pad_token(tmp_path, tok):
    nopad = build_tokenizer()
    nopad.pad_token = None
    nopad.save_pretrained(tmp_path)
    with pytest.raises(
        AdvrmError, match=r"has no pad token; set one distinct from eos \(tokenizer.pad_token"
    ):
        load_tokenizer(tmp_path)

    model = AutoModelForCausalLM.from_config(tiny_config(tok, pad_token_id=None))
    ensure_pad_token(nopad, model)
    assert nopad.pad_token == DEFAULT_PAD_TOKEN
    assert nopad.pad_token_id not in (nopad.eos_token_id, nopad.bos_token_id, nopad.unk_token_id)
    assert model.get_input_embeddings().weight.shape[0] == len(nopad) == len(tok) + 1
    assert model.config.pad_token_id == nopad.pad_token_id
    # A tokenizer that already has a distinct pad token is left alone.
    same = build_tokenizer()
    assert ensure_pad_token(same).pad_token_id == tok.pad_token_id and len(same) == len(tok)


# ------------------------------------------------------------------------------------------------
# Reward models and policies


def test_load_reward_model_refuses_two_labels(tmp_path, tok, lm_dir):
    AutoModelForSequenceClassification.from_config(tiny_config(tok, num_labels=2)).save_pretrained(tmp_path)
    with pytest.raises(AdvrmError, match="num_labels=2"):
        load_reward_model(tmp_path)
    with pytest.raises(AdvrmError, match="init_reward_model_from"):  # a causal LM is not an RM yet
        load_reward_model(lm_dir)


def test_init_reward_model_from_a_causal_lm(lm_dir, tok, tmp_path, capfd):
    rm = init_reward_model_from(lm_dir)
    out, err = capfd.readouterr()
    assert "score.weight" not in out + err  # the expected new-head report is silenced
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tok.pad_token_id
    assert not rm.training
    lm = load_policy(lm_dir)
    torch.testing.assert_close(rm.model.embed_tokens.weight, lm.model.embed_tokens.weight)

    rm.save_pretrained(tmp_path)
    again = load_reward_model(tmp_path)
    assert type(again).__name__ == "LlamaForSequenceClassification" and not again.training
    torch.testing.assert_close(again.score.weight, rm.score.weight)


def test_init_reward_model_from_a_two_label_classifier(tmp_path, tok):
    AutoModelForSequenceClassification.from_config(tiny_config(tok, num_labels=2)).save_pretrained(tmp_path)
    rm = init_reward_model_from(tmp_path, tokenizer=tok)
    assert rm.config.num_labels == 1 and rm.score.weight.shape == (1, 32)


def test_load_policy(policy):
    assert type(policy).__name__ == "LlamaForCausalLM" and not policy.training


# ------------------------------------------------------------------------------------------------
# generate


def test_generate_shapes_and_determinism(policy, tok):
    state = torch.random.get_rng_state()
    a = generate(policy, tok, PROMPTS, n_per_prompt=4, max_new_tokens=6, seed=1, batch_size=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random stream is untouched
    assert len(a) == 3 and all(len(row) == 4 for row in a.texts)
    assert all(len(row) == 4 for row in a.truncated) and all(len(row) == 4 for row in a.completion_ids)
    assert all(isinstance(t, str) for t in a.flat_texts())
    assert "<eos>" not in " ".join(a.flat_texts()) and "<pad>" not in " ".join(a.flat_texts())
    b = generate(policy, tok, PROMPTS, n_per_prompt=4, max_new_tokens=6, seed=1, batch_size=5)
    assert a == b
    c = generate(policy, tok, PROMPTS, n_per_prompt=4, max_new_tokens=6, seed=2, batch_size=5)
    assert c.texts != a.texts
    assert tok.padding_side == "right"  # left padding is done by hand; the tokenizer is not changed
    assert generate(policy, tok, [], n_per_prompt=2).texts == []


def _forced_head(policy, tok, token_ids):
    """A copy of the policy whose next-token distribution is uniform over ``token_ids``."""
    import copy

    forced = copy.deepcopy(policy)
    head = torch.nn.Linear(forced.config.hidden_size, len(tok), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-1e4)
        head.bias[token_ids] = 0.0
    forced.lm_head = head
    return forced


def test_generate_truncated_flags(policy, tok):
    word = tok.convert_tokens_to_ids("soup")
    always_eos = _forced_head(policy, tok, [tok.eos_token_id])
    g = generate(always_eos, tok, PROMPTS, n_per_prompt=2, max_new_tokens=5)
    assert g.flat_texts() == [""] * 6 and not any(g.flat_truncated())
    assert all(ids == [tok.eos_token_id] for row in g.completion_ids for ids in row)

    never_eos = _forced_head(policy, tok, [word])
    g = generate(never_eos, tok, PROMPTS, n_per_prompt=2, max_new_tokens=5)
    assert g.flat_texts() == ["soup soup soup soup soup"] * 6 and all(g.flat_truncated())

    mixed = _forced_head(policy, tok, [word, tok.eos_token_id])
    g = generate(mixed, tok, PROMPTS, n_per_prompt=8, max_new_tokens=3, seed=0)
    flags = g.flat_truncated()
    assert any(flags) and not all(flags)
    for ids, trunc in zip([i for row in g.completion_ids for i in row], flags, strict=True):
        assert ids == [word] * 3 if trunc else ids[-1] == tok.eos_token_id


def test_generate_prompt_tokens_like_rloo(policy, tok):
    """Prompts are tokenized with special tokens (bos first), as RLOOTrainer's tokenizer(text=prompts)."""
    calls = []
    original = policy.generate

    def spy_generate(**kw):
        calls.append(kw["input_ids"].clone())
        return original(**kw)

    policy.generate = spy_generate
    try:
        generate(policy, tok, PROMPTS[:2], n_per_prompt=1, max_new_tokens=2)
    finally:
        del policy.generate
    ids = calls[0]
    expected = tok(text=PROMPTS[:2])["input_ids"]
    width = max(map(len, expected))
    for row, exp in zip(ids.tolist(), expected, strict=True):
        assert row == [tok.pad_token_id] * (width - len(exp)) + exp  # left padding
        assert exp[0] == tok.bos_token_id


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"n_per_prompt": 0}, "n_per_prompt"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_generate_bad_arguments(policy, tok, kw, msg):
    with pytest.raises(AdvrmError, match=msg):
        generate(policy, tok, PROMPTS, **kw)
