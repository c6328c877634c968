"""Loading model directories safely and sampling from a policy.

Safety rules: weights load from safetensors only (pickle files can run code when loaded) and
``trust_remote_code`` is off unless the caller turns it on. Every user mistake (a missing folder, a
pickle-only checkpoint, a classifier with two labels, a tokenizer with no pad token) raises
:class:`~advrm.errors.AdvrmError` with a one-line message that says how to fix it.

Reward models are Hugging Face sequence classifiers with ``num_labels == 1``, as TRL's
``RewardTrainer`` trains them; policies are causal LMs. :func:`generate` samples completions the way
TRL's ``RLOOTrainer`` does on its transformers path: prompts tokenized with ``tokenizer(text=prompts)``
(special tokens on, so a bos is added where the tokenizer adds one), left padding, ``do_sample=True``,
``top_k=0`` unless asked otherwise, and completions decoded with ``skip_special_tokens=True``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import AdvrmError

# Names of weight files. Safetensors are the only ones advrm loads; the pickle ones are recognised so
# that the error can say what is there.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
DEFAULT_PAD_TOKEN = "<|advrm_pad|>"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------------------
# Directories and tokenizers
# --------------------------------------------------------------------------------------------------


def check_model_dir(path: str | Path) -> Path:
    """Check that ``path`` is a Hugging Face model folder with safetensors weights; return it as a Path."""
    p = Path(path).expanduser()
    if not p.exists():
        raise AdvrmError(
            f"model directory '{p}' does not exist; pass the folder that holds config.json and model.safetensors"
        )
    if not p.is_dir():
        raise AdvrmError(
            f"'{p}' is a file, not a model directory; pass the folder that holds config.json and model.safetensors"
        )
    if not (p / "config.json").is_file():
        raise AdvrmError(
            f"'{p}' is not a Hugging Face model directory (no config.json); "
            "pass a folder written by save_pretrained()"
        )
    files = [f.name for f in p.iterdir() if f.is_file()]
    if any(name.endswith(".safetensors") or name == "model.safetensors.index.json" for name in files):
        return p
    pickles = sorted(n for n in files if n.endswith(_PICKLE_SUFFIXES) or n == "pytorch_model.bin.index.json")
    if pickles:
        raise AdvrmError(
            f"weights must be safetensors, but '{p}' has only pickle weights ({', '.join(pickles[:3])}); "
            "convert with transformers in an environment you trust: "
            "AutoModel...from_pretrained(dir).save_pretrained(dir) writes model.safetensors"
        )
    raise AdvrmError(
        f"'{p}' has a config.json but no weights (model.safetensors); pass a folder written by save_pretrained()"
    )


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer with ``AutoTokenizer``; refuse one without a pad token.

    Sequence-classification heads pool at the last non-pad token and batched generation pads, so a pad
    token is required. Call :func:`ensure_pad_token` to add one to a tokenizer that lacks it.
    """
    from transformers import AutoTokenizer

    p = Path(path).expanduser()
    try:
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError ... for unloadable folders
        raise AdvrmError(
            f"cannot load a tokenizer from '{p}' ({_first_line(e)}); "
            "pass a folder with tokenizer.json / tokenizer_config.json (tokenizer.save_pretrained(dir))"
        ) from e
    if tok.pad_token is None:
        raise AdvrmError(
            f"the tokenizer in '{p}' has no pad token; set one distinct from eos "
            "(tokenizer.pad_token = ...) or call advrm.models.ensure_pad_token(tokenizer, model)"
        )
    return tok


def ensure_pad_token(tokenizer: Any, model: Any | None = None, pad_token: str = DEFAULT_PAD_TOKEN) -> Any:
    """Give ``tokenizer`` a pad token distinct from eos if it has none (or pad == eos); return it.

    The new token ``pad_token`` is added to the vocabulary. Pass ``model`` to resize its token
    embeddings and set ``config.pad_token_id``; a model used with the tokenizer but not passed here
    must be resized by the caller (``model.resize_token_embeddings(len(tokenizer))``).
    """
    if tokenizer.pad_token is None or (
        tokenizer.eos_token is not None and tokenizer.pad_token_id == tokenizer.eos_token_id
    ):
        tokenizer.add_special_tokens({"pad_token": pad_token})
    if model is not None:
        if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def _load_config(p: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise AdvrmError(
            f"cannot read the model config in '{p}' ({_first_line(e)}); "
            "pass a folder written by save_pretrained() (set trust_remote_code only for code you trust)"
        ) from e


def _from_pretrained(auto_cls: Any, p: Path, *, trust_remote_code: bool, dtype: Any, **kwargs: Any) -> Any:
    try:
        return auto_cls.from_pretrained(
            str(p), use_safetensors=True, trust_remote_code=trust_remote_code, dtype=dtype, **kwargs
        )
    except (OSError, ValueError) as e:
        raise AdvrmError(
            f"cannot load {auto_cls.__name__.removeprefix('AutoModelFor')} weights from '{p}' ({_first_line(e)}); "
            "check that the folder was written by save_pretrained() for this kind of model"
        ) from e


def _load(
    auto_name: str,
    path: str | Path,
    trust_remote_code: bool,
    dtype: str | torch.dtype | None,
    device: str | torch.device | None,
    check_config: Any = None,
) -> Any:
    """Check the folder and its config, load it with ``transformers.<auto_name>``, move it, eval mode."""
    import transformers

    p = check_model_dir(path)
    cfg = _load_config(p, trust_remote_code)
    if check_config is not None:
        check_config(p, cfg)
    model = _from_pretrained(
        getattr(transformers, auto_name), p, trust_remote_code=trust_remote_code, dtype=dtype
    )
    if device is not None:
        model = model.to(device)
    return model.eval()


def _require_one_label(p: Path, cfg: Any) -> None:
    num_labels = getattr(cfg, "num_labels", None)
    if num_labels != 1:
        raise AdvrmError(
            f"'{p}' has num_labels={num_labels}, but a reward model outputs one score (num_labels=1); "
            "train one with advrm, or start one from this folder with advrm.models.init_reward_model_from()"
        )


def load_reward_model(
    path: str | Path,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """Load a reward model (sequence classifier, ``num_labels == 1``, safetensors) in eval mode."""
    return _load(
        "AutoModelForSequenceClassification", path, trust_remote_code, dtype, device, _require_one_label
    )


def load_policy(
    path: str | Path,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """Load a causal LM (safetensors only) in eval mode; call ``.train()`` before fine-tuning it."""
    return _load("AutoModelForCausalLM", path, trust_remote_code, dtype, device)


@contextlib.contextmanager
def _quiet_new_head() -> Iterator[None]:
    """Silence the expected 'score.weight newly initialized' load report (TRL's own helper)."""
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:  # pragma: no cover - other TRL versions: the report is only noise
        yield
        return
    with suppress_seqcls_warning():
        yield


def init_reward_model_from(
    path: str | Path,
    tokenizer: Any | None = None,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """A new reward model (``num_labels=1``) initialised from a causal-LM or classifier folder.

    The backbone comes from ``path``; the scalar head is new (freshly initialised), except when ``path``
    already holds a one-label classifier, whose head is kept. ``config.pad_token_id`` is set from
    ``tokenizer`` (loaded from ``path`` when not given), as TRL's ``RewardTrainer`` does. The model is
    returned in eval mode; trainers switch it to train mode.
    """
    from transformers import AutoModelForSequenceClassification

    p = check_model_dir(path)
    cfg = _load_config(p, trust_remote_code)
    tok = tokenizer if tokenizer is not None else load_tokenizer(p, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        raise AdvrmError(
            "the tokenizer has no pad token; set one distinct from eos (tokenizer.pad_token = ...) "
            "or call advrm.models.ensure_pad_token(tokenizer, model)"
        )
    # A classifier with another number of labels has a head of the wrong shape: drop it.
    mismatched = getattr(cfg, "num_labels", 1) != 1 and any(
        a.endswith("ForSequenceClassification") for a in (getattr(cfg, "architectures", None) or [])
    )
    with _quiet_new_head():
        model = _from_pretrained(
            AutoModelForSequenceClassification,
            p,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            num_labels=1,
            ignore_mismatched_sizes=mismatched,
        )
    model.config.pad_token_id = tok.pad_token_id
    if device is not None:
        model = model.to(device)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generations:
    """Completions of :func:`generate`, indexed ``[prompt][sample]``.

    ``truncated[i][j]`` is True when completion ``j`` of prompt ``i`` used all ``max_new_tokens`` without
    emitting an eos token (method.md: such responses get the penalty). ``completion_ids`` holds the
    sampled token ids up to and including the first eos (TRL's completion mask).
    """

    texts: list[list[str]]
    truncated: list[list[bool]]
    completion_ids: list[list[list[int]]]

    def __len__(self) -> int:
        return len(self.texts)

    def flat_texts(self) -> list[str]:
        """All completions, prompt-major (prompt 0's samples first)."""
        return [t for row in self.texts for t in row]

    def flat_truncated(self) -> list[bool]:
        return [t for row in self.truncated for t in row]


def _eos_ids(policy: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for source in (tokenizer.eos_token_id, getattr(policy.generation_config, "eos_token_id", None)):
        for i in source if isinstance(source, list | tuple) else [source]:
            if i is not None and i not in ids:
                ids.append(int(i))
    if not ids:
        raise AdvrmError(
            "the tokenizer has no eos token; set tokenizer.eos_token so that completions can end"
        )
    return ids


def _validate_sampling(
    n_per_prompt: int, max_new_tokens: int, temperature: float, top_p: float, batch_size: int
):
    if n_per_prompt < 1:
        raise AdvrmError(f"n_per_prompt must be at least 1, got {n_per_prompt}")
    if max_new_tokens < 1:
        raise AdvrmError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature > 0:
        raise AdvrmError(f"temperature must be > 0 for sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise AdvrmError(f"top_p must be in (0, 1], got {top_p}")
    if batch_size < 1:
        raise AdvrmError(f"batch_size must be at least 1, got {batch_size}")


def generate(
    policy: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    n_per_prompt: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 256,
    show_progress: bool = False,
) -> Generations:
    """Sample ``n_per_prompt`` completions for every prompt; deterministic given the arguments.

    Prompts are tokenized as TRL's RLOOTrainer does (``tokenizer(text=prompts)``, special tokens on) and
    left-padded by hand with the tokenizer's pad id, so the tokenizer's ``padding_side`` does not matter
    and is left untouched. Rows are prompt-major (each prompt repeated ``n_per_prompt`` times) and cut
    into batches of ``batch_size`` rows. The global RNG state is saved and restored around sampling
    (``torch.random.fork_rng``), which is seeded with ``seed``: the same (prompts, seed, batch_size,
    n_per_prompt) give the same texts, and the caller's random stream is not disturbed.
    """
    from transformers import GenerationConfig

    _validate_sampling(n_per_prompt, max_new_tokens, temperature, top_p, batch_size)
    prompts = list(prompts)
    if not prompts:
        return Generations([], [], [])
    if tokenizer.pad_token_id is None:
        raise AdvrmError(
            "the tokenizer has no pad token; set one distinct from eos (tokenizer.pad_token = ...) "
            "or call advrm.models.ensure_pad_token(tokenizer, model)"
        )
    eos_ids = _eos_ids(policy, tokenizer)
    pad_id = int(tokenizer.pad_token_id)
    device = next(policy.parameters()).device
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=1.0,
        pad_token_id=pad_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        disable_compile=True,
    )

    prompt_ids = tokenizer(text=prompts)["input_ids"]
    rows = [ids for ids in prompt_ids for _ in range(n_per_prompt)]
    starts = range(0, len(rows), batch_size)
    if show_progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch")

    eos_t = torch.tensor(eos_ids, device=device)
    out_ids: list[list[int]] = []
    out_trunc: list[bool] = []
    was_training = policy.training
    policy.eval()
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices), torch.inference_mode():
            torch.manual_seed(seed)
            for start in starts:
                batch = rows[start : start + batch_size]
                width = max(len(r) for r in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for i, r in enumerate(batch):
                    if r:
                        input_ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                        attention[i, width - len(r) :] = 1
                seq = policy.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=gen_cfg,
                )
                completion = seq[:, width:]
                is_eos = torch.isin(completion, eos_t)
                has_eos = is_eos.any(dim=1)
                first = torch.where(has_eos, is_eos.int().argmax(dim=1), completion.size(1))
                for c, e, h in zip(completion.cpu(), first.cpu(), has_eos.cpu(), strict=True):
                    kept = c[: int(e) + 1] if h else c
                    out_ids.append(kept.tolist())
                    # Without an eos the row ran to the length limit (HF stops a row only at eos).
                    out_trunc.append(not bool(h))
    finally:
        policy.train(was_training)

    texts = tokenizer.batch_decode(out_ids, skip_special_tokens=True)
    n = n_per_prompt
    return Generations(
        texts=[texts[i * n : (i + 1) * n] for i in range(len(prompts))],
        truncated=[out_trunc[i * n : (i + 1) * n] for i in range(len(prompts))],
        completion_ids=[out_ids[i * n : (i + 1) * n] for i in range(len(prompts))],
    )
