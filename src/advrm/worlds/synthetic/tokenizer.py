"""A word-level tokenizer for the synthetic world, built offline from the world's own vocabulary.

Every world word is one token; pad, unk, bos and eos are distinct (a sequence-classification head pools
at the last non-pad token, so pad must never equal eos). Text is split like ``vocab.split_words``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .vocab import LEXICON, SPECIAL_TOKENS


def build_tokenizer(extra_words: list[str] | None = None) -> PreTrainedTokenizerFast:
    specials = [SPECIAL_TOKENS[k] for k in ("pad", "unk", "bos", "eos")]
    words = LEXICON.all_words() + sorted(set(extra_words or []) - set(LEXICON.word_class))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins word tokens with single spaces
    bos = SPECIAL_TOKENS["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        padding_side="right",
        model_max_length=512,
    )
