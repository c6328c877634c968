"""The reference policy: a tiny causal LM trained from scratch on the world's corpus with TRL's SFTTrainer.

It plays the part of the SFT/instruct model in real RLHF: the RMs start from its weights, RLHF and the
attack start from it, and its samples are the in-distribution responses that the preference data and
the z-score statistics come from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from ...trl_args import common_trainer_args
from .grammar import ResponseGenerator, prompt_topic_and_nouns
from .vocab import LEXICON, split_words


@dataclass(frozen=True)
class PolicyConfig:
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    corpus_size: int = 15000
    epochs: float = 2.0
    learning_rate: float = 3e-3
    batch_size: int = 64


def make_corpus(prompts: list[str], n: int, rng: random.Random) -> Dataset:
    """Prompt/completion pairs from the hidden grammar (loss on the completion only)."""
    gen = ResponseGenerator()
    rows: dict[str, list[str]] = {"prompt": [], "completion": []}
    for _ in range(n):
        p = rng.choice(prompts)
        topic, nouns = prompt_topic_and_nouns(split_words(p), LEXICON.word_topic, LEXICON.word_class)
        rows["prompt"].append(p)
        rows["completion"].append(gen.response(rng, topic, nouns))
    return Dataset.from_dict(rows)


def new_policy(tokenizer: PreTrainedTokenizerFast, cfg: PolicyConfig) -> torch.nn.Module:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return AutoModelForCausalLM.from_config(config)


def train_policy(
    prompts: list[str], tokenizer: PreTrainedTokenizerFast, cfg: PolicyConfig, *, seed: int, work_dir: Path
) -> torch.nn.Module:
    """Pre-train the reference policy on ``cfg.corpus_size`` grammar samples; returns the model."""
    torch.manual_seed(seed)
    model = new_policy(tokenizer, cfg)
    corpus = make_corpus(prompts, cfg.corpus_size, random.Random(seed))
    args = SFTConfig(
        **common_trainer_args(
            work_dir, seed=seed, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, logging_steps=50
        ),
        num_train_epochs=cfg.epochs,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        max_length=128,
        completion_only_loss=True,
        weight_decay=0.0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=corpus, processing_class=tokenizer)
    trainer.train()
    model = trainer.model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model
