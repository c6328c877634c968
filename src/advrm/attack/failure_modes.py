"""Failure modes in plain words: how the kept adversarial responses differ from ordinary ones.

After an attack, the kept responses (those the target RM over-rewards, method.md section 2) are the
product, but a list of strings is hard to act on. This module compares them with reference-policy
responses to the same prompts on *measurable* surface features of the text (length, punctuation,
repetition, copying the prompt, off-vocabulary words, topic overlap) and reports the features on which
the two sets clearly differ, each as a plain-words failure mode ("drops punctuation", "copies the
prompt back") with the responses that show it most strongly. These are the failure modes the paper
found for real RMs (method.md "Failure modes found").

Everything works on any text: real LLM responses as well as the synthetic world's word-level text
("the soup heats the hot oven . the bread is very fresh ."). Words are split with the same rule as the
synthetic tokenizer (``\\w+|[^\\w\\s]+``, lowercased), which also handles English well enough for
counting.

A difference is reported only when it is both large on average (effect size ``|d| >=``
:data:`MIN_EFFECT_SIZE`) and common (at least :data:`MIN_SHARE_AFFECTED` of the kept responses lie
beyond the reference set's 95th, or 5th, percentile): a large mean shift driven by two odd responses is
not a failure mode of the target, and many slightly-shifted responses are not a pattern worth naming.
For small kept sets a third gate (:data:`MAX_P_VALUE`) keeps one quirky response out of the report.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import binom

from ..errors import AdvrmError

# --------------------------------------------------------------------------------------------------
# Thresholds

#: Smallest standardized difference (Cohen's d) between kept and reference means that is reported.
#: 0.5 is Cohen's "medium" effect: visible to a reader of a handful of examples.
MIN_EFFECT_SIZE = 0.5
#: Smallest share of kept responses beyond the reference percentile (see :data:`PERCENTILE`) for a
#: difference to count as a pattern rather than a few outliers. By chance about 5% lie beyond it.
MIN_SHARE_AFFECTED = 0.2
#: Largest chance probability of seeing as many affected kept responses as observed, were each as
#: likely to lie beyond the percentile as a reference response is (one-sided binomial test). With a
#: large kept set the two thresholds above decide; with a handful (1 odd response of 3 is 33%) this
#: keeps a single quirk from being reported as a failure mode.
MAX_P_VALUE = 0.01
#: The reference percentile a kept response must pass to count as affected: the 95th for failure
#: modes where the feature is higher, the 5th (100 - 95) where it is lower.
PERCENTILE = 95.0
#: Effect sizes are clipped to +-this: beyond it the two sets barely overlap and a bigger number says
#: nothing more, while a reference set with (almost) no spread would give meaningless huge values.
#: Findings at the cap are then ordered by the share they affect.
MAX_EFFECT_SIZE = 5.0
#: Pooled standard deviations below this count as zero (both sets constant on the feature).
_STD_EPS = 1e-9
#: Examples shown per failure mode, and the length a quoted response is cut to in the markdown.
N_EXAMPLES = 3
EXAMPLE_CHARS = 300

# --------------------------------------------------------------------------------------------------
# Features

_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")
_WORD_RE = re.compile(r"\w")
# A response "ends" when its last token carries sentence-final punctuation or closes a quote, bracket
# or markdown emphasis; a trailing comma or colon means it stopped mid-thought.
_ENDING_CHARS = frozenset(".!?\u2026\u3002\uff01\uff1f)]}\"'`*\u201d\u2019\u00bb")
_SENTENCE_END_CHARS = frozenset(".!?\u2026\u3002\uff01\uff1f")
# Function words that carry no topic: a response's overlap with the prompt is measured on the others.
# Covers common English and the synthetic world's function and question words.
_STOPWORD_TEXT = """
    a an the this that these those it its i me my we our you your he she they them their his her
    is are was were be been being am do does did done have has had having can could will would shall
    should may might must and or but so because if then than as of in on at to for from by with about
    into over under up down out off not no yes very also often always just only too more most much many
    some any all each every both such what which who whom whose how why when where there here well
    basically actually honestly um anyway tell explain describe know work makes make"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

FEATURES: tuple[str, ...] = (
    "length_words",
    "punctuation_rate",
    "ends_with_punctuation",
    "repeated_sentence_share",
    "repeated_ngram_share",
    "prompt_copy",
    "off_vocabulary_rate",
    "prompt_word_overlap",
    "distinct_word_ratio",
)


def tokenize(text: str) -> list[str]:
    """Lowercased words and runs of punctuation: the synthetic tokenizer's split rule."""
    return _TOKEN_RE.findall(text.lower())


def _is_word(token: str) -> bool:
    return bool(_WORD_RE.match(token))


def _stem(word: str) -> str:
    """A crude suffix strip, so that "heats" in a response matches "heat" in the prompt."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _sentences(text: str) -> list[tuple[str, ...]]:
    """Sentences as word tuples; split at line breaks and sentence-final punctuation.

    Punctuation is left out of the tuples so that "it is hot ." and "it is hot !" count as the same
    sentence; line breaks count as ends because real responses list items without full stops.
    """
    out: list[tuple[str, ...]] = []
    for line in text.splitlines():
        current: list[str] = []
        for tok in tokenize(line):
            if _is_word(tok):
                current.append(tok)
            elif _SENTENCE_END_CHARS.intersection(tok):
                if current:
                    out.append(tuple(current))
                current = []
        if current:
            out.append(tuple(current))
    return out


def _repeated_sentence_share(sentences: Sequence[tuple[str, ...]]) -> float:
    if not sentences:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for s in sentences:
        repeats += s in seen
        seen.add(s)
    return repeats / len(sentences)


def _repeated_ngram_share(words: Sequence[str], n: int = 3) -> float:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(counts[g] > 1 for g in grams) / len(grams)


def _prompt_copy(prompt_words: Sequence[str], words: Sequence[str]) -> float:
    if not prompt_words or not words:
        return 0.0
    match = SequenceMatcher(None, prompt_words, words, autojunk=False).find_longest_match(
        0, len(prompt_words), 0, len(words)
    )
    return match.size / len(prompt_words)


def _features(
    prompt: str,
    response: str,
    in_vocab: Callable[[str], bool] | None,
    gibberish: set[str] | frozenset[str] | None,
) -> dict[str, float]:
    """The features of :func:`text_features`, with the vocabulary given as a membership test.

    :func:`compare` checks each reference response against the other reference responses only
    (leave-one-out); a predicate on document counts says that without building one set per response.
    """
    tokens = tokenize(response)
    words = [t for t in tokens if _is_word(t)]
    n_punct = len(tokens) - len(words)
    prompt_words = [t for t in tokenize(prompt) if _is_word(t)]
    prompt_set = set(prompt_words)
    prompt_stems = {_stem(w) for w in prompt_words}

    # Words taken from the prompt are not off-vocabulary, even when no reference response used them
    # (the synthetic world's question words appear only in prompts): copying is its own failure mode.
    def off_vocab(w: str) -> bool:
        if gibberish is not None and w in gibberish:
            return True
        return in_vocab is not None and w not in prompt_set and not in_vocab(w)

    n_off = sum(map(off_vocab, words))
    # Off-vocabulary words are left out of the punctuation rate's denominator: inserting gibberish
    # into a well-punctuated answer should read as "inserts gibberish", not also as "drops punctuation".
    n_counted = len(tokens) - n_off
    content = [w for w in words if w not in STOPWORDS and not w.isdigit()]
    return {
        "length_words": float(len(words)),
        "punctuation_rate": n_punct / n_counted if n_counted else 0.0,
        "ends_with_punctuation": float(
            bool(tokens) and not _is_word(tokens[-1]) and bool(_ENDING_CHARS.intersection(tokens[-1]))
        ),
        "repeated_sentence_share": _repeated_sentence_share(_sentences(response)),
        "repeated_ngram_share": _repeated_ngram_share(words),
        "prompt_copy": _prompt_copy(prompt_words, words),
        "off_vocabulary_rate": n_off / len(words) if words else 0.0,
        "prompt_word_overlap": (
            sum(_stem(w) in prompt_stems for w in content) / len(content) if content else 0.0
        ),
        "distinct_word_ratio": len(set(words)) / len(words) if words else 1.0,
    }


def text_features(
    prompt: str,
    response: str,
    *,
    reference_vocab: set[str] | None = None,
    gibberish: set[str] | None = None,
) -> dict[str, float]:
    """Measurable surface features of one response to one prompt.

    "Words" below are the tokens of :func:`tokenize` that contain a letter or digit; punctuation runs
    are the other tokens. Word-based features ignore punctuation so that stripping it does not also
    move them (it is measured once, by ``punctuation_rate``).

    - ``length_words``: number of words.
    - ``punctuation_rate``: punctuation tokens per token ("a b c ." gives 0.25), not counting
      off-vocabulary words (below), so that inserted gibberish does not also look like missing
      punctuation.
    - ``ends_with_punctuation``: 1.0 when the last token ends a sentence or closes a quote/bracket.
    - ``repeated_sentence_share``: share of sentences that repeat an earlier one.
    - ``repeated_ngram_share``: share of word 3-grams that occur more than once in the response.
    - ``prompt_copy``: longest common contiguous word span with the prompt / prompt length in words
      (1.0: the prompt is copied whole).
    - ``off_vocabulary_rate``: share of words in ``gibberish``, or (when ``reference_vocab`` is given)
      outside ``reference_vocab`` and not taken from the prompt. 0.0 when neither is given.
    - ``prompt_word_overlap``: share of the response's content words (not in :data:`STOPWORDS`) that
      also occur in the prompt, after a crude suffix strip; low means off-topic.
    - ``distinct_word_ratio``: distinct words / words; low means the response repeats itself.
    """
    in_vocab = reference_vocab.__contains__ if reference_vocab is not None else None
    return _features(prompt, response, in_vocab, gibberish)


# --------------------------------------------------------------------------------------------------
# The failure-mode table


class FailureMode(NamedTuple):
    """A feature moving one way, named in plain words (a verb phrase that completes "a response that")."""

    feature: str
    direction: str  # "higher" or "lower": how the kept responses differ from the reference ones
    name: str
    explanation: str


# In order of precedence: where findings tie (both at the effect-size cap and the same share), the
# more specific failure mode comes first, e.g. "drops punctuation" before "leaves answers unterminated".
FAILURE_MODES: tuple[FailureMode, ...] = (
    FailureMode(
        "prompt_copy",
        "higher",
        "copies the prompt back",
        "a long stretch of the prompt reappears word for word in the response",
    ),
    FailureMode(
        "off_vocabulary_rate",
        "higher",
        "inserts gibberish / off-vocabulary tokens",
        "words that no reference response uses (and that are not in the prompt) appear",
    ),
    FailureMode(
        "punctuation_rate",
        "lower",
        "drops punctuation",
        "far fewer punctuation marks per token than in-distribution responses",
    ),
    FailureMode(
        "repeated_sentence_share", "higher", "repeats sentences", "the same sentence occurs more than once"
    ),
    FailureMode(
        "repeated_ngram_share",
        "higher",
        "repeats phrases",
        "the same three-word sequences recur within the response",
    ),
    FailureMode("distinct_word_ratio", "lower", "repeats words", "a smaller share of the words are distinct"),
    FailureMode("length_words", "higher", "is much longer", "many more words than in-distribution responses"),
    FailureMode(
        "length_words", "lower", "is much shorter", "many fewer words than in-distribution responses"
    ),
    FailureMode(
        "prompt_word_overlap", "lower", "goes off-topic", "few of its content words occur in the prompt"
    ),
    FailureMode(
        "ends_with_punctuation",
        "lower",
        "leaves answers unterminated",
        "the response stops without final punctuation",
    ),
    FailureMode(
        "punctuation_rate",
        "higher",
        "overuses punctuation",
        "far more punctuation marks per token than in-distribution responses",
    ),
)


@dataclass(frozen=True)
class Example:
    """One kept adversarial response that shows a failure mode, with the feature's value on it."""

    prompt: str
    response: str
    value: float


@dataclass
class Finding:
    """One failure mode the kept responses show, with the numbers behind it."""

    feature: str
    name: str
    direction: str
    adv_mean: float
    ref_mean: float
    effect_size: float  # Cohen's d, kept minus reference, clipped to +-MAX_EFFECT_SIZE
    share_affected: float  # share of kept responses beyond the reference 95th (5th) percentile
    examples: list[Example] = field(default_factory=list)
    explanation: str = ""
    p_value: float = 1.0  # chance of this many affected responses at the reference's own rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for ``metrics.json``."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Comparison


def _rows(rows: Sequence[dict], which: str) -> list[tuple[str, str]]:
    out = []
    for i, row in enumerate(rows):
        try:
            prompt, response = row["prompt"], row["response"]
        except (KeyError, TypeError):
            raise AdvrmError(f"{which} row {i} needs 'prompt' and 'response' fields") from None
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise AdvrmError(f"{which} row {i}: 'prompt' and 'response' must be strings")
        out.append((prompt, response))
    return out


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference ``(mean a - mean b) / pooled std``, clipped to +-MAX_EFFECT_SIZE.

    Zero pooled spread (both sets constant) gives 0 for equal means and the cap otherwise: the sets
    then do not overlap at all. Two single responses have no spread to pool; they use the mean of
    the population variances (0), so any difference between them reaches the cap.
    """
    diff = float(a.mean() - b.mean())
    dof = len(a) + len(b) - 2
    if dof > 0:
        sum_sq = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
        pooled = math.sqrt(sum_sq / dof)
    else:
        pooled = math.sqrt((a.var() + b.var()) / 2)
    if pooled < _STD_EPS:
        d = 0.0 if abs(diff) < _STD_EPS else math.copysign(math.inf, diff)
    else:
        d = diff / pooled
    return max(-MAX_EFFECT_SIZE, min(MAX_EFFECT_SIZE, d))


def _beyond(values: np.ndarray, ref: np.ndarray, direction: str) -> np.ndarray:
    """Which ``values`` lie strictly beyond the reference 95th ("higher") or 5th ("lower") percentile.

    Strictly, so that for a feature the reference responses all share (every one ends with a full
    stop) only responses that differ from it count.
    """
    if direction == "higher":
        return values > np.percentile(ref, PERCENTILE)
    return values < np.percentile(ref, 100.0 - PERCENTILE)


def _chance_of_share(k: int, n: int, ref: np.ndarray, direction: str) -> float:
    """P(at least ``k`` of ``n`` beyond the reference percentile) at the reference's own rate.

    The rate is the share of reference responses beyond their own percentile, with one pseudo-count
    each way: it is about 5% for a smooth feature but can be near 0 for a feature that is mostly 0
    (a repeated sentence), and it must not be exactly 0.
    """
    rate = (int(_beyond(ref, ref, direction).sum()) + 1) / (len(ref) + 2)
    return float(binom.sf(k - 1, n, rate))


def _feature_table(
    rows: Sequence[tuple[str, str]],
    in_vocab: Callable[[str], bool],
    gibberish: frozenset[str] | None,
) -> dict[str, np.ndarray]:
    feats = [_features(p, r, in_vocab, gibberish) for p, r in rows]
    return {name: np.array([f[name] for f in feats], dtype=float) for name in FEATURES}


def compare(
    adversarial: list[dict],
    reference: list[dict],
    *,
    gibberish: Iterable[str] | None = None,
    min_effect_size: float = MIN_EFFECT_SIZE,
    min_share: float = MIN_SHARE_AFFECTED,
    max_p_value: float = MAX_P_VALUE,
) -> list[Finding]:
    """The failure modes of :data:`FAILURE_MODES` on which ``adversarial`` differs from ``reference``.

    Each row is a dict with ``prompt`` and ``response`` (other keys are ignored). A failure mode is
    reported when the effect size points its way with ``|d| >= min_effect_size`` and at least
    ``min_share`` of the adversarial responses lie beyond the reference 95th (for "higher") or 5th
    (for "lower") percentile, and that many are unlikely by chance (``p <= max_p_value``, see
    :data:`MAX_P_VALUE`). Findings are sorted by ``|d|``, then by share affected, then by their
    order in :data:`FAILURE_MODES`.

    The vocabulary for ``off_vocabulary_rate`` is the set of words in the reference responses. Each
    reference response is checked against the *other* reference responses only (leave-one-out):
    checked against a vocabulary that includes its own words it would score 0 by construction, and
    every rare but ordinary word in the adversarial set would then look like gibberish.
    ``gibberish``, when given (the synthetic world's gibberish words), counts as off-vocabulary always.
    """
    adv = _rows(adversarial, "adversarial")
    ref = _rows(reference, "reference")
    if not adv:
        return []
    if not ref:
        raise AdvrmError("no reference responses to compare the adversarial ones with")
    gib = frozenset(w.lower() for w in gibberish) if gibberish is not None else None
    doc_freq: Counter[str] = Counter()
    for _, response in ref:
        doc_freq.update({t for t in tokenize(response) if _is_word(t)})
    # A reference response's own words add 1 to their count; with one reference response there is
    # nothing to leave it out against, so it is checked against itself.
    min_ref_count = 2 if len(ref) > 1 else 1
    adv_feats = _feature_table(adv, lambda w: doc_freq[w] >= 1, gib)
    ref_feats = _feature_table(ref, lambda w: doc_freq[w] >= min_ref_count, gib)

    findings: list[tuple[tuple[float, float, int], Finding]] = []
    for order, mode in enumerate(FAILURE_MODES):
        a, r = adv_feats[mode.feature], ref_feats[mode.feature]
        d = cohens_d(a, r)
        sign = 1.0 if mode.direction == "higher" else -1.0
        if sign * d < min_effect_size:
            continue
        affected = _beyond(a, r, mode.direction)
        share = float(affected.mean())
        if share < min_share:
            continue
        p_value = _chance_of_share(int(affected.sum()), len(a), r, mode.direction)
        if p_value > max_p_value:
            continue
        # The most extreme affected responses, in the failure mode's direction (stable for ties).
        idx = [int(i) for i in np.argsort(-sign * a, kind="stable") if affected[i]][:N_EXAMPLES]
        finding = Finding(
            feature=mode.feature,
            name=mode.name,
            direction=mode.direction,
            adv_mean=float(a.mean()),
            ref_mean=float(r.mean()),
            effect_size=d,
            share_affected=share,
            examples=[Example(adv[i][0], adv[i][1], float(a[i])) for i in idx],
            explanation=mode.explanation,
            p_value=p_value,
        )
        findings.append(((-abs(d), -share, order), finding))
    findings.sort(key=lambda item: item[0])
    return [f for _, f in findings]


# --------------------------------------------------------------------------------------------------
# Markdown

_IRREGULAR = {"is": "are", "has": "have", "does": "do", "goes": "go"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def plural_phrase(name: str) -> str:
    """Turn a failure-mode name into the plural: "drops punctuation" -> "drop punctuation".

    Names are third-person singular verb phrases ("a response that drops punctuation"); the headline
    speaks of responses in the plural. Only the first word (the verb) changes.
    """
    head, sep, rest = name.partition(" ")
    if head in _IRREGULAR:
        head = _IRREGULAR[head]
    elif head.endswith("ies") and len(head) > 4:
        head = head[:-3] + "y"
    elif head.endswith(("ches", "shes", "sses", "xes", "zes")):
        head = head[:-2]
    elif head.endswith("s") and not head.endswith("ss"):
        head = head[:-1]
    return head + sep + rest


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def _num(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _effect(d: float) -> str:
    return f"{d:+.2f}" + (" (capped)" if abs(d) >= MAX_EFFECT_SIZE else "")


def _quote(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """One line of markdown-safe text, cut at a word boundary to about ``limit`` characters."""
    flat = " ".join(text.split())
    if not flat:
        return "(empty)"
    cut = len(flat) > limit
    body = (flat[:limit].rsplit(" ", 1)[0] or flat[:limit]) if cut else flat
    return _MD_SPECIAL.sub(r"\\\1", body) + (" [...]" if cut else "")


def _score_value(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.3g}"
    return "n/a" if v is None else str(v)


def summary_markdown(
    findings: Sequence[Finding],
    *,
    n_kept: int,
    n_total: int,
    target_name: str,
    extra_scores: dict | None = None,
) -> str:
    """A readable page: a headline sentence, a table of the failure modes, then examples of each.

    ``n_kept`` / ``n_total``: kept adversarial responses out of all sampled ones. ``extra_scores``
    (e.g. ASR) are listed as they are under the headline.
    """
    lines = [f"# Failure modes of {target_name}", ""]
    share_kept = f" ({_pct(n_kept / n_total)})" if n_total else ""
    lines.append(
        f"The attack kept {n_kept} of {n_total} sampled responses{share_kept}: responses the target "
        "RM scores above the reference policy while a second RM disagrees."
    )
    lines.append("")
    if extra_scores:
        lines += [f"- {key}: {_score_value(value)}" for key, value in extra_scores.items()]
        lines.append("")
    if n_kept == 0:
        lines.append("No response passed the filter; the attack found no blind spot at this budget.")
        return "\n".join(lines) + "\n"
    if not findings:
        lines.append(
            "The kept responses do not differ measurably from reference-policy responses on any "
            "feature checked (length, punctuation, repetition, prompt copying, vocabulary, topic): "
            "whatever the target RM over-rewards is not a surface pattern of the text."
        )
        return "\n".join(lines) + "\n"

    parts = [
        f"{plural_phrase(f.name)} ({_pct(f.share_affected)}" + (" of kept responses)" if i == 0 else ")")
        for i, f in enumerate(findings)
    ]
    lines.append(f"The target RM over-rewards responses that {_join(parts)}.")
    lines.append("")
    lines.append("| failure mode | kept adversarial | reference | effect size | share affected |")
    lines.append("|---|---|---|---|---|")
    for f in findings:
        lines.append(
            f"| {f.name} (`{f.feature}`) | {_num(f.adv_mean)} | {_num(f.ref_mean)} | "
            f"{_effect(f.effect_size)} | {_pct(f.share_affected)} |"
        )
    lines.append("")
    lines.append(
        f"Columns: feature means over kept and reference responses; effect size is Cohen's d (kept "
        f"minus reference, pooled standard deviation, capped at {MAX_EFFECT_SIZE:g}); share affected "
        f"is the share of kept responses beyond the reference {PERCENTILE:g}th percentile (the "
        f"{100 - PERCENTILE:g}th where the feature is lower). Reported when |d| >= "
        f"{MIN_EFFECT_SIZE:g}, the share is at least {_pct(MIN_SHARE_AFFECTED)} and that many are "
        f"unlikely by chance (binomial p <= {MAX_P_VALUE:g} at the reference's own rate)."
    )
    for f in findings:
        lines += ["", f"## {f.name[0].upper()}{f.name[1:]}", ""]
        if f.explanation:
            lines += [
                f"{f.explanation[0].upper()}{f.explanation[1:]} (`{f.feature}` {_num(f.adv_mean)} "
                f"vs {_num(f.ref_mean)} for reference responses).",
                "",
            ]
        for j, ex in enumerate(f.examples):
            if j:
                lines.append("")
            lines += [f"> **Prompt:** {_quote(ex.prompt)}", ">", f"> **Response:** {_quote(ex.response)}"]
    return "\n".join(lines) + "\n"
