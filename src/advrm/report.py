"""``advrm report``: turn a demo run directory into ``report.md`` and ``figures/*.png``.

The report is what a reader looks at after ``advrm demo``, so it must be trustworthy before it is
pretty:

- **It only reads.** Every input is opened read-only; the only files written are ``report.md`` and
  ``figures/*.png`` (atomically, so a report being rebuilt while someone reads it is never torn).
- **It works on partial runs.** A demo can be interrupted or still running. Whatever is missing
  (a metrics key, a null value, a stage directory that does not exist yet) is skipped and the page
  says in a line what is missing, so an absent table is never mistaken for "no effect".
- **It never invents numbers.** Every number on the page is copied from a run file (formatted, not
  recomputed); the only aggregation done here is the one the project itself defines
  (:func:`advrm.onset.summarize_onsets`) when ``metrics.json`` lacks its ``rlhf`` summary, and the
  mean/spread bands of the curves over seeds, which the captions describe.

Inputs (any may be missing): ``metrics.json`` (the demo's summary), ``rlhf/<reward>/seed-<k>/``
(``curve.csv``, ``metrics.json``, ``run.json``) and ``harden/attack/round-<R>/`` (``adversarial.jsonl``,
``summary.md``); ``attack/round-<R>/`` directly under the run directory is accepted too, the layout
``advrm harden`` writes when run on its own.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AdvrmError
from .io import atomic_write_bytes, atomic_write_text, read_jsonl

__all__ = ["ASR_BAR", "build_report", "reward_color"]

logger = logging.getLogger(__name__)

#: The attack-success bar the hardened RM should get under (method.md: "the attack no longer succeeds").
ASR_BAR = 0.2

#: Figure geometry: readable in a markdown viewer at full width, small enough to embed.
FIGSIZE = (7.0, 4.0)
DPI = 120

#: Examples of adversarial responses shown, and the length a response is cut to in the table.
N_EXAMPLES = 6
EXAMPLE_CHARS = 160

# One color per reward in every figure, so that "the blue line" means the same RM everywhere. Known
# names get fixed colors (the conventional RM red: it is the one expected to be hacked first; the
# hardened RMs blues); others take the remaining tab10 colors in sorted order.
_REWARD_COLORS = {
    "conventional": "tab:red",
    "ensemble_mean": "tab:orange",
    "ensemble_mean_minus_std": "tab:purple",
    "ensemble_min": "tab:brown",
    "adv_rm_round1": "tab:cyan",
    "adv_rm_round2": "tab:blue",
}
_SPARE_COLORS = ("tab:green", "tab:pink", "tab:olive", "tab:gray", "tab:brown", "tab:purple")
_ADV_RM_RE = re.compile(r"^adv_rm_round(\d+)$")


def reward_color(name: str, names: Sequence[str] = ()) -> str:
    """The color of reward ``name``; ``names`` (all rewards in the run) fixes the spare-color order."""
    if name in _REWARD_COLORS:
        return _REWARD_COLORS[name]
    others = sorted(n for n in set(names) | {name} if n not in _REWARD_COLORS)
    return _SPARE_COLORS[others.index(name) % len(_SPARE_COLORS)]


def _reward_order(names: Iterable[str]) -> list[str]:
    """Known rewards first in the order of the method (baseline -> ensembles -> hardened), then the rest."""
    known = list(_REWARD_COLORS)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))


# --------------------------------------------------------------------------------------------------
# Tolerant access: any key may be missing, null or of the wrong type


def _get(obj: Any, *keys: str | int) -> Any:
    """``obj[k1][k2]...`` or ``None`` where any level is missing or not a container."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return None
        elif not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _num(value: Any) -> float | None:
    """A finite number, or ``None``: booleans, strings and NaN are not numbers to put on a page."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings in a list (other entries dropped): tolerates a half-filled ``rounds`` list."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


# --------------------------------------------------------------------------------------------------
# Formatting


def _pct(value: Any) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _fixed(value: Any, digits: int = 2) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{v:.{digits}f}"


def _int(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v == round(v) else f"{v:,.1f}"


def _pm(mean: Any, std: Any, digits: int = 2) -> str:
    """``mean ± std``; the std is left out where it is undefined (one seed)."""
    m = _num(mean)
    if m is None:
        return "n/a"
    s = _num(std)
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def _cell(value: Any) -> str:
    """Text safe inside a markdown table cell: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _truncate(text: str, n: int = EXAMPLE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _missing(what: str) -> str:
    return f"_Missing: {what}._"


def _onset_text(summary: Mapping[str, Any]) -> str:
    """The mean onset step ± std, with ``≥`` when censored seeds make it a lower bound."""
    text = _pm(summary.get("onset_step_mean"), summary.get("onset_step_std"), digits=0)
    if text != "n/a" and summary.get("onset_step_is_lower_bound"):
        text = "≥ " + text
    return text


def _rounds_phrase(n: int) -> str:
    return f"{n} round{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------------------------------
# Reading the run


@dataclass
class _Seed:
    seed: str
    curve: dict[str, list[float]] = field(default_factory=dict)
    onset: dict[str, Any] | None = None
    onset_config: dict[str, Any] | None = None


@dataclass
class _Run:
    dir: Path
    metrics: dict[str, Any]
    rlhf: dict[str, list[_Seed]]
    attack_dirs: dict[int, Path]
    notes: list[str]


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        notes.append(f"{path.name} in {path.parent} could not be read ({e})")
        return None
    return value if isinstance(value, dict) else None


def _read_curve(path: Path) -> dict[str, list[float]]:
    """Columns of ``curve.csv`` as floats; empty or bad cells become NaN (a curve without a validator)."""
    cols: dict[str, list[float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("step") in (None, ""):
                continue
            for key, cell in row.items():
                if key is None:
                    continue
                try:
                    v = float(cell) if cell not in (None, "") else math.nan
                except ValueError:
                    v = math.nan
                cols.setdefault(key, []).append(v)
    return cols


def _seed_key(path: Path) -> tuple[int, str]:
    tail = path.name.removeprefix("seed-")
    return (int(tail), tail) if tail.isdigit() else (1 << 30, tail)


def _read_rlhf(run_dir: Path, notes: list[str]) -> dict[str, list[_Seed]]:
    out: dict[str, list[_Seed]] = {}
    root = run_dir / "rlhf"
    if not root.is_dir():
        return out
    for reward_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        seeds = []
        for seed_dir in sorted((p for p in reward_dir.glob("seed-*") if p.is_dir()), key=_seed_key):
            s = _Seed(seed_dir.name.removeprefix("seed-"))
            curve_path = seed_dir / "curve.csv"
            if curve_path.is_file():
                try:
                    s.curve = _read_curve(curve_path)
                except (OSError, UnicodeDecodeError, csv.Error) as e:
                    notes.append(f"{curve_path.relative_to(run_dir)} could not be read ({e})")
            onset = _get(_read_json(seed_dir / "metrics.json", notes), "onset")
            s.onset = dict(onset) if isinstance(onset, Mapping) else None
            cfg = _get(_read_json(seed_dir / "run.json", notes), "config", "onset")
            s.onset_config = dict(cfg) if isinstance(cfg, Mapping) else None
            seeds.append(s)
        if seeds:
            out[reward_dir.name] = seeds
    return out


def _find_attack_dirs(run_dir: Path) -> dict[int, Path]:
    """``round -> directory`` for the attacks; ``harden/attack`` (the demo's layout) wins over ``attack``."""
    found: dict[int, Path] = {}
    for base in (run_dir / "attack", run_dir / "harden" / "attack"):
        if base.is_dir():
            for d in base.glob("round-*"):
                tail = d.name.removeprefix("round-")
                if d.is_dir() and tail.isdigit():
                    found[int(tail)] = d
    return dict(sorted(found.items()))


def _load(run_dir: Path) -> _Run:
    """Read everything; while the demo is still running, take rounds and the round-0 attack from the stages.

    ``metrics.json`` is written once at the end of ``advrm demo``; ``harden/harden.json`` and
    ``harden/attack/round-0/metrics.json`` exist long before, and hold the same numbers.
    """
    notes: list[str] = []
    metrics = _read_json(run_dir / "metrics.json", notes)
    if metrics is None:
        notes.append(
            "metrics.json (the demo's summary) is missing: tables are built from the stage files found"
        )
        metrics = {}
    attack_dirs = _find_attack_dirs(run_dir)
    if not _round_rows(metrics):
        harden = _read_json(run_dir / "harden" / "harden.json", notes) or {}
        if _round_rows(harden):
            metrics["rounds"] = harden["rounds"]
            notes.append("rounds are taken from harden/harden.json (metrics.json has none yet)")
    if not isinstance(metrics.get("attack_round0"), Mapping) and 0 in attack_dirs:
        attack0 = _read_json(attack_dirs[0] / "metrics.json", notes)
        if attack0:
            metrics["attack_round0"] = attack0
            rel = (attack_dirs[0] / "metrics.json").relative_to(run_dir).as_posix()
            notes.append(f"the round-0 attack is taken from {rel} (metrics.json has none yet)")
    return _Run(run_dir, metrics, _read_rlhf(run_dir, notes), attack_dirs, notes)


# --------------------------------------------------------------------------------------------------
# Figures


def _save(fig: Any, path: Path) -> Path:
    """Render to memory, then write atomically (temp name + os.replace): a reader never sees half a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _new_figure() -> tuple[Any, Any]:
    # The object API with the Agg canvas: no pyplot global state, no GUI backend, safe in any process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _finish(fig: Any, ax: Any, path: Path, heading: str, xlabel: str, ylabel: str, **legend: Any) -> None:
    """Title, axis labels, legend, save: the parts every figure must have to be read on its own."""
    ax.set_title(heading)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, **legend)
    _save(fig, path)


def _percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


@dataclass
class _Band:
    steps: list[float]
    mean: list[float]
    low: list[float] | None
    high: list[float] | None
    n_seeds: int
    truncated: bool


def _band(seeds: Sequence[_Seed], column: str) -> _Band | None:
    """Mean over seeds at the steps every seed reached, with ±1 std (3+ seeds) or min-max (2 seeds).

    Steps only some seeds reached (a run still going) are left out: a mean over a changing set of
    seeds would show a jump that is not in any run.
    """
    import numpy as np

    series = []
    for s in seeds:
        steps, values = s.curve.get("step", []), s.curve.get(column, [])
        pts = {t: v for t, v in zip(steps, values, strict=False) if math.isfinite(v)}
        if pts:
            series.append(pts)
    if not series:
        return None
    common = sorted(set.intersection(*(set(p) for p in series)))
    if not common:
        return None
    x = np.array([[p[t] for t in common] for p in series])
    low = high = None
    if len(series) == 2:
        low, high = x.min(axis=0).tolist(), x.max(axis=0).tolist()
    elif len(series) > 2:
        m, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
        low, high = (m - sd).tolist(), (m + sd).tolist()
    truncated = any(len(p) > len(common) for p in series)
    return _Band(common, x.mean(axis=0).tolist(), low, high, len(series), truncated)


def _onset_marker(summary: Mapping[str, Any] | None) -> tuple[float | None, bool]:
    if not summary:
        return None, False
    return _num(summary.get("onset_step_mean")), bool(summary.get("onset_step_is_lower_bound"))


def _fig_rlhf(run: _Run, summaries: Mapping[str, Mapping[str, Any]], column: str, path: Path) -> dict | None:
    """Gold or proxy vs RLHF step, one line per reward; returns what the caption needs, or None."""
    names = _reward_order(run.rlhf)
    bands = {n: b for n in names if (b := _band(run.rlhf[n], column)) is not None}
    if not bands:
        return None
    fig, ax = _new_figure()
    for name, b in bands.items():
        color = reward_color(name, names)
        onset, lower = _onset_marker(summaries.get(name))
        label = name
        if onset is not None:
            label += f" (onset {'≥ ' if lower else ''}{onset:.0f})"
        ax.plot(b.steps, b.mean, color=color, lw=1.8, label=label)
        if b.low is not None:
            ax.fill_between(b.steps, b.low, b.high, color=color, alpha=0.15, lw=0)
        if onset is not None:
            ax.axvline(onset, color=color, ls=":", lw=1.5)
    what = "gold reward (validator)" if column == "gold" else "proxy reward (standardized per reward)"
    _finish(
        fig,
        ax,
        path,
        f"RLHF: {what.split(' (')[0]} vs step",
        "RLHF step",
        what,
        loc="best",
        title="reward (mean onset step)",
        title_fontsize=8,
    )
    n = sorted({b.n_seeds for b in bands.values()})
    return {"n_seeds": n, "truncated": any(b.truncated for b in bands.values())}


def _round_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [r for r in _dicts(metrics.get("rounds")) if _num(r.get("round")) is not None]
    return sorted(rows, key=lambda r: r["round"])


def _fig_asr_rounds(rounds: Sequence[Mapping[str, Any]], path: Path) -> bool:
    import numpy as np

    if not any(_num(r.get(k)) is not None for r in rounds for k in ("asr_standard", "asr_strict")):
        return False
    fig, ax = _new_figure()
    x = np.arange(len(rounds))
    width = 0.38
    for offset, key, color, label in (
        (-width / 2, "asr_standard", "tab:blue", "ASR standard"),
        (width / 2, "asr_strict", "tab:orange", "ASR strict"),
    ):
        for xi, r in zip(x, rounds, strict=True):
            v = _num(r.get(key))
            if v is None:
                ax.text(xi + offset, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="gray")
                continue
            ax.bar(xi + offset, v, width, color=color, label=label)
            ax.text(xi + offset, v + 0.01, f"{100 * v:.1f}%", ha="center", va="bottom", fontsize=8)
            label = "_nolegend_"
    ax.axhline(ASR_BAR, color="black", ls="--", lw=1.2, label=f"bar: {100 * ASR_BAR:.0f}%")
    ax.set_xticks(x, [f"round {int(r['round'])}" for r in rounds])
    ax.set_xlim(-0.6, len(rounds) - 0.4)  # room for both bars of every round, drawn or n/a
    ax.set_ylim(0, 1.1)
    _percent_axis(ax)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("bar"))  # bars, then the line
    _finish(
        fig,
        ax,
        path,
        "Attack success of a fresh attack per hardening round",
        "hardening round (0 = conventional RM)",
        "attack success rate (held-out prompts)",
        handles=[handles[i] for i in order],
        labels=[labels[i] for i in order],
        loc="upper right",
    )
    return True


def _fig_accuracy_rounds(rounds: Sequence[Mapping[str, Any]], ceiling: float | None, path: Path) -> bool:
    pts = [(int(r["round"]), v) for r in rounds if (v := _num(r.get("rm_accuracy"))) is not None]
    if not pts:
        return False
    fig, ax = _new_figure()
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, marker="o", color="tab:blue", lw=1.8, label="target RM")
    for xi, yi in pts:
        ax.annotate(
            f"{100 * yi:.1f}%", (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
        )
    if ceiling is not None:
        ax.axhline(ceiling, color="black", ls="--", lw=1.2, label=f"gold ceiling ({100 * ceiling:.1f}%)")
    values = list(ys) + ([ceiling] if ceiling is not None else [])
    pad = max(0.02, (max(values) - min(values)) * 0.3)
    ax.set_ylim(max(0.0, min(values) - pad), min(1.0, max(values) + pad))
    ax.set_xticks(sorted(set(xs)), [str(x) for x in sorted(set(xs))])
    _percent_axis(ax)
    _finish(
        fig,
        ax,
        path,
        "Held-out RM accuracy per hardening round",
        "hardening round (0 = conventional RM)",
        "accuracy on held-out preference pairs",
        loc="lower right",
    )
    return True


def _baselines(attack: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, result)`` of the baseline attacks in ``attack_round0.baselines``, sorted by name."""
    given = attack.get("baselines")
    items = sorted(given.items()) if isinstance(given, Mapping) else []
    return [(str(name), b) for name, b in items if isinstance(b, Mapping)]


def _curve_points(curve: Any) -> list[tuple[float, float]]:
    pts = [(_num(c.get("target_queries")), _num(c.get("asr_standard"))) for c in _dicts(curve)]
    return sorted((q, a) for q, a in pts if q is not None and q > 0 and a is not None)


def _query_ticks(ax: Any) -> None:
    """Log-x ticks at 1-2-5 steps labelled 500, 2k, 1M: ``3x10^3``-style minor labels are unreadable."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def label(x: float, _pos: int) -> str:
        for div, suffix in ((1e6, "M"), (1e3, "k")):
            if x >= div:
                return f"{x / div:g}{suffix}"
        return f"{x:g}"

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _fig_asr_vs_queries(attack: Mapping[str, Any], path: Path) -> bool:
    series: list[tuple[str, list[tuple[float, float]]]] = []
    for name, d in [("Adv-RM attack", attack), *_baselines(attack)]:
        # The logged curve where there is one, else the final result as a single point.
        pts = _curve_points(d.get("curve")) or _curve_points([d])
        if pts:
            series.append((name, pts))
    if not series:
        return False
    fig, ax = _new_figure()
    markers = "osD^vP*X"
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")
    for i, (name, pts) in enumerate(series):
        xs, ys = zip(*pts, strict=True)
        style = {"marker": markers[i % len(markers)], "color": colors[i % len(colors)], "label": name}
        if len(pts) > 1:
            ax.plot(xs, ys, lw=1.8 if i == 0 else 1.2, ms=4, **style)
        else:
            ax.scatter(xs, ys, s=50, zorder=3, **style)
    ax.set_xscale("log")
    _query_ticks(ax)
    ax.set_ylim(-0.03, 1.05)
    _percent_axis(ax)
    _finish(
        fig,
        ax,
        path,
        "Attack success vs queries to the target RM (round 0)",
        "queries to the target RM (log scale)",
        "ASR standard (held-out prompts)",
        loc="best",
    )
    return True


# --------------------------------------------------------------------------------------------------
# Sections


def _rlhf_summaries(run: _Run, notes: list[str]) -> tuple[dict[str, dict[str, Any]], bool]:
    """Per-reward onset summaries: metrics.json's, else the project's own aggregation of the seed files.

    Returns the summaries and whether they came from the seed files.
    """
    given = run.metrics.get("rlhf")
    if isinstance(given, Mapping) and given:
        return {str(k): dict(v) for k, v in given.items() if isinstance(v, Mapping)}, False
    from .onset import summarize_onsets

    out = {}
    for name, seeds in run.rlhf.items():
        onsets = [s.onset for s in seeds if s.onset]
        if not onsets:
            continue
        try:
            out[name] = summarize_onsets(onsets)
        except (AdvrmError, KeyError, TypeError, ValueError) as e:
            notes.append(f"the onsets of rlhf/{name} could not be summarized ({e})")
    return out, True


def _summary_paragraph(run: _Run, rounds: Sequence[Mapping[str, Any]], rlhf: Mapping[str, Mapping]) -> str:
    m = run.metrics
    parts = []
    first = next((r for r in rounds if r["round"] == 0), None)
    first_std = _num(_get(first, "asr_standard")) if first else _num(_get(m, "attack_round0", "asr_standard"))
    first_strict = _num(_get(first, "asr_strict")) if first else _num(_get(m, "attack_round0", "asr_strict"))
    if first_std is not None:
        strict = f"; strict ASR {_pct(first_strict)}" if first_strict is not None else ""
        text = f"A fresh attack fooled the conventional RM on {_pct(first_std)} of held-out prompts (standard ASR{strict})"
        last = next((r for r in reversed(rounds) if _num(r.get("asr_standard")) is not None), None)
        if last is not None and last["round"] > 0:
            n = int(last["round"])
            strict = _num(last.get("asr_strict"))
            text += (
                f"; after {_rounds_phrase(n)} of adversarial training, a fresh attack on the round-{n} RM "
                f"succeeded on {_pct(last['asr_standard'])}"
                + (f" (strict {_pct(strict)})" if strict is not None else "")
            )
        parts.append(text + ".")
    accs = [(int(r["round"]), v) for r in rounds if (v := _num(r.get("rm_accuracy"))) is not None]
    ceiling = _num(_get(m, "rm_eval", "gold_ceiling"))
    if accs:
        text = f"Held-out RM accuracy was {_pct(accs[0][1])} in round {accs[0][0]}"
        if len(accs) > 1:
            text += f" and {_pct(accs[-1][1])} in round {accs[-1][0]}"
        if ceiling is not None:
            text += f" (gold ceiling {_pct(ceiling)})"
        parts.append(text + ".")
    conv = rlhf.get("conventional")
    adv = sorted((int(mt.group(1)), n) for n in rlhf if (mt := _ADV_RM_RE.match(n)))
    if "adv_rm_round2" in rlhf:  # the RM metrics.json's onset_ratio is defined against
        adv.append((2, "adv_rm_round2"))
    if conv and adv and _num(conv.get("onset_step_mean")) is not None:
        k, adv_name = adv[-1]
        a = rlhf[adv_name]
        if _num(a.get("onset_step_mean")) is not None:
            text = (
                f"RLHF against the round-{k} RM reached its hacking onset at step {_onset_text(a)} vs "
                f"{_onset_text(conv)} for the conventional RM (mean ± std over seeds"
            )
            ratio = _num(m.get("onset_ratio"))
            if ratio is not None and adv_name == "adv_rm_round2":
                bound = (
                    "≥ "
                    if a.get("onset_step_is_lower_bound") and not conv.get("onset_step_is_lower_bound")
                    else ""
                )
                text += f"; onset ratio {bound}{ratio:.2f}"
            text += ")."
            if conv.get("onset_step_is_lower_bound"):
                text += " The conventional RM's onset is itself a lower bound (censored seeds), so the ratio is uncertain."
            parts.append(text)
    bars = [b for b in _dicts(m.get("bars")) if isinstance(b.get("met"), bool)]
    if bars:
        failed = [str(b.get("name")) for b in bars if not b["met"]]
        text = f"{sum(b['met'] for b in bars)} of {len(bars)} bars met"
        parts.append(text + (f"; not met: {', '.join(failed)}." if failed else "."))
    return (
        " ".join(parts)
        if parts
        else _missing("the numbers a summary is written from (metrics.json rounds, rlhf, bars)")
    )


def _setup_line(m: Mapping[str, Any]) -> str | None:
    bits = []
    if isinstance(m.get("preset"), str):
        bits.append(f"preset `{m['preset']}`")
    seeds = m.get("seeds")
    if isinstance(seeds, list) and seeds:
        bits.append("seeds " + ", ".join(str(s) for s in seeds))
    wall = _num(m.get("wall_seconds"))
    if wall is not None:
        h, rest = divmod(int(round(wall)), 3600)
        bits.append(
            f"wall time {h} h {rest // 60:02d} min" if h else f"wall time {rest // 60} min {rest % 60:02d} s"
        )
    return "Run: " + "; ".join(bits) + "." if bits else None


def _section_world(m: Mapping[str, Any]) -> list[str]:
    world = m.get("world")
    if not isinstance(world, Mapping):
        return []
    rows = [(k, v) for k, v in world.items() if isinstance(v, str | int | float | bool) and v is not None]
    if not rows:
        return []
    return ["## World", "", *_table(["setting", "value"], [(f"`{k}`", v) for k, v in rows[:16]])]


def _section_bars(m: Mapping[str, Any]) -> list[str]:
    out = ["## Bars", ""]
    bars = _dicts(m.get("bars"))
    if not bars:
        return out + [_missing("metrics.json has no `bars`"), ""]
    rows = []
    for b in bars:
        met = b.get("met")
        rows.append(
            (
                b.get("name", "n/a"),
                b.get("value", "n/a"),
                b.get("target", "n/a"),
                "yes" if met is True else "NO" if met is False else "n/a",
            )
        )
    return out + _table(["bar", "measured", "target", "met?"], rows)


def _section_rlhf(run: _Run, rlhf: Mapping[str, Mapping[str, Any]], from_seeds: bool) -> list[str]:
    out = ["## Downstream RLHF", ""]
    if not rlhf:
        what = "metrics.json has no `rlhf` summary and no rlhf/<reward>/seed-<k>/metrics.json has an onset"
        return out + [_missing(what), ""]
    rows = []
    for name in _reward_order(rlhf):
        s = rlhf[name]
        n, c = _num(s.get("n_seeds")), _num(s.get("n_censored"))
        censored = f"{c:.0f} of {n:.0f}" if n is not None and c is not None else _int(c)
        rows.append(
            (
                name,
                _onset_text(s),
                censored,
                _pm(s.get("peak_gold_mean"), s.get("peak_gold_std")),
                _pm(s.get("final_gold_mean"), s.get("final_gold_std")),
            )
        )
    out += _table(["reward", "onset step (mean ± std)", "censored seeds", "peak gold", "final gold"], rows)
    out.append(
        "Onset, peak and final gold are on the smoothed gold curve, mean ± sample std over seeds. A censored "
        "seed never showed hacking before its run ended; it counts at its last step, so the mean is a lower "
        "bound (marked ≥)."
    )
    if from_seeds:
        out.append(
            "metrics.json has no `rlhf` summary yet; this table aggregates the per-seed "
            "rlhf/<reward>/seed-<k>/metrics.json onsets with advrm.onset.summarize_onsets."
        )
    ratio = _num(run.metrics.get("onset_ratio"))
    if ratio is not None:
        out.append(f"Onset ratio reported by the run (adv_rm_round2 over conventional): {ratio:.2f}.")
    return out + [""]


def _section_rounds(rounds: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["## Hardening rounds", ""]
    if not rounds:
        return out + [_missing("metrics.json has no `rounds`"), ""]
    rows = []
    for r in rounds:
        modes = r.get("failure_modes")
        modes_text = (
            "; ".join(str(x) for x in modes)
            if isinstance(modes, list) and modes
            else "n/a"
            if modes is None
            else "none"
        )
        rows.append(
            (
                int(r["round"]),
                _pct(r.get("asr_standard")),
                _pct(r.get("asr_strict")),
                _pct(r.get("rm_accuracy")),
                _int(r.get("pairs_added")),
                _int(r.get("n_kept")),
                modes_text,
            )
        )
    header = ["round", "ASR standard", "ASR strict", "RM accuracy", "pairs added", "kept", "failure modes"]
    out += _table(header, rows)
    out.append(
        "Each round's ASR is a fresh attack on that round's RM, on held-out prompts; pairs added: adversarial "
        "pairs added to the training data for that round's RM; kept: adversarial responses that passed the filter."
    )
    return out + [""]


def _section_attack(m: Mapping[str, Any]) -> list[str]:
    out = ["## Attack vs baselines (round 0, conventional RM)", ""]
    attack = m.get("attack_round0")
    if not isinstance(attack, Mapping):
        return out + [_missing("metrics.json has no `attack_round0`"), ""]
    methods = [("Adv-RM attack", attack), *_baselines(attack)]
    rows = [
        (name, _pct(d.get("asr_standard")), _pct(d.get("asr_strict")), _int(d.get("target_queries")))
        for name, d in methods
    ]
    out += _table(["method", "ASR standard", "ASR strict", "target queries"], rows)
    if len(methods) == 1:
        out += [_missing("`attack_round0.baselines`: no baseline attack to compare with"), ""]
    return out


def _section_rm_quality(m: Mapping[str, Any]) -> list[str]:
    out = ["## RM quality", ""]
    ev = m.get("rm_eval")
    if not isinstance(ev, Mapping):
        return out + [_missing("metrics.json has no `rm_eval`"), ""]
    rows = [
        ("accuracy vs gold (held-out pairs)", _pct(ev.get("accuracy_vs_gold"))),
        ("gold ceiling", _pct(ev.get("gold_ceiling"))),
        ("Spearman with gold (in distribution)", _fixed(ev.get("spearman_with_gold"), 3)),
        (
            "Spearman with gold (off distribution, pooled)",
            _fixed(_get(ev, "off_distribution", "spearman_with_gold_pooled"), 3),
        ),
    ]
    out += _table(["measure", "value"], rows)
    transforms = _get(ev, "off_distribution", "transforms")
    if isinstance(transforms, Mapping) and transforms:
        rows = []
        for name, t in sorted(transforms.items()):
            if not isinstance(t, Mapping):
                continue
            prefers = t.get("rm_prefers_transformed")
            prefers_text = ("yes" if prefers else "no") if isinstance(prefers, bool) else _pct(prefers)
            rows.append(
                (
                    name,
                    _fixed(t.get("rm_delta_mean")),
                    _fixed(t.get("gold_delta_mean")),
                    prefers_text,
                    _fixed(t.get("spearman_with_gold"), 3),
                )
            )
        out += [
            "Off-distribution transforms of held-out responses (RM Δ, gold Δ: mean score change the transform causes):",
            "",
        ]
        out += _table(
            ["transform", "RM Δ mean", "gold Δ mean", "RM prefers transformed", "Spearman with gold"], rows
        )
        out.append(
            "A transform the RM likes (positive RM Δ) while gold dislikes it (negative gold Δ) is a blind spot."
        )
        out.append("")
    else:
        out += [_missing("`rm_eval.off_distribution.transforms`"), ""]
    return out


def _caption_rlhf(info: dict, column: str) -> str:
    n = info["n_seeds"]
    if n == [1]:
        text = "One seed per reward, no band"
    else:
        text = f"Mean over {'/'.join(str(x) for x in n)} seeds, band ±1 std over seeds (min-max where there are 2)"
    text += "; dotted lines: mean onset step per reward (≥: a lower bound)."
    if column == "proxy":
        text += (
            " Each reward's proxy is standardized on its own (z-scored against the reference policy), "
            "so levels are not comparable across rewards: compare the shapes."
        )
    if info["truncated"]:
        text += " Curves stop at the last step every seed of a reward reached (some runs are longer or still going)."
    return text


def _drawn(draw: Any, name: str, notes: list[str], *args: Any) -> Any:
    """Run one figure function; a failure becomes a note instead of losing the whole report.

    The report is most needed when a run went wrong, which is also when its files are oddest; a bug
    in one figure must not take the tables (and the other figures) down with it. It is logged with
    its traceback so that it still gets fixed.
    """
    try:
        return draw(*args)
    except Exception as e:
        logger.exception("report: could not draw %s", name)
        notes.append(f"figures/{name} could not be drawn ({type(e).__name__}: {e})")
        return None


def _section_figures(run: _Run, rounds: Sequence[Mapping], rlhf: Mapping[str, Mapping]) -> list[str]:
    figs = run.dir / "figures"
    out = ["## Figures", ""]
    m = run.metrics
    for column, name, title in (
        ("gold", "rlhf_gold.png", "Gold reward during RLHF"),
        ("proxy", "rlhf_proxy.png", "Proxy reward during RLHF"),
    ):
        info = _drawn(_fig_rlhf, name, run.notes, run, rlhf, column, figs / name)
        if info is None:
            out += [_missing(f"rlhf/<reward>/seed-<k>/curve.csv with a `{column}` column; no {name}"), ""]
        else:
            out += [f"### {title}", "", f"![{title}](figures/{name})", "", _caption_rlhf(info, column), ""]
    if _drawn(_fig_asr_rounds, "asr_rounds.png", run.notes, rounds, figs / "asr_rounds.png"):
        out += [
            "### Attack success per round",
            "",
            "![Attack success per round](figures/asr_rounds.png)",
            "",
            f"A fresh attack on each round's RM, held-out prompts; dashed: the {100 * ASR_BAR:.0f}% bar.",
            "",
        ]
    else:
        out += [_missing("ASR values in metrics.json `rounds`; no asr_rounds.png"), ""]
    ceiling = _num(_get(m, "rm_eval", "gold_ceiling"))
    name = "accuracy_rounds.png"
    if _drawn(_fig_accuracy_rounds, name, run.notes, rounds, ceiling, figs / name):
        caption = "Held-out pair accuracy of each round's target RM" + (
            "; dashed: the gold ceiling." if ceiling is not None else " (no gold ceiling in metrics.json)."
        )
        out += [
            "### RM accuracy per round",
            "",
            "![RM accuracy per round](figures/accuracy_rounds.png)",
            "",
            caption,
            "",
        ]
    else:
        out += [_missing("`rm_accuracy` in metrics.json `rounds`; no accuracy_rounds.png"), ""]
    attack = m.get("attack_round0")
    name = "asr_vs_queries.png"
    if isinstance(attack, Mapping) and _drawn(_fig_asr_vs_queries, name, run.notes, attack, figs / name):
        out += [
            "### Attack success vs queries",
            "",
            "![ASR vs queries](figures/asr_vs_queries.png)",
            "",
            "Standard ASR against the conventional RM by the number of target-RM queries spent; lines where "
            "a method logged a curve, points where only its final result is known.",
            "",
        ]
    else:
        out += [_missing("`attack_round0` with target queries and ASR; no asr_vs_queries.png"), ""]
    return out


def _section_examples(run: _Run) -> list[str]:
    out = ["## Adversarial examples (round 0)", ""]
    d = run.attack_dirs.get(0)
    path = d / "adversarial.jsonl" if d else None
    if path is None or not path.is_file():
        return out + [_missing("harden/attack/round-0/adversarial.jsonl"), ""]
    try:
        records = read_jsonl(path)
    except AdvrmError as e:
        return out + [_missing(f"a readable adversarial.jsonl ({e})"), ""]
    kept = [r for r in records if r.get("kept") is True and _num(r.get("z_target")) is not None]
    if not kept:
        return out + [f"No kept adversarial response among the {len(records)} sampled in round 0.", ""]
    kept.sort(key=lambda r: -r["z_target"])
    rows = [
        (
            _truncate(r.get("prompt", ""), 80),
            _truncate(r.get("response", "")),
            _fixed(r.get("z_target")),
            _fixed(r.get("z_second")),
            _fixed(r.get("gold")),
        )
        for r in kept[:N_EXAMPLES]
    ]
    out.append(
        f"The {len(rows)} kept responses (of {len(kept)} kept, {len(records)} sampled) the target RM scores "
        "highest: `z_target` and `z_second` are the target and second RM's per-prompt z-scores; gold is the "
        "validator's score."
    )
    out.append("")
    return out + _table(["prompt", "response", "z_target", "z_second", "gold"], rows)


def _demote(markdown: str, levels: int = 1) -> list[str]:
    """Shift every ATX heading down ``levels`` levels (outside code fences), so an included page nests."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"^#{1,6}\s", line):
            line = "#" * levels + line
        out.append(line)
    return out


def _section_failure_modes(run: _Run) -> list[str]:
    d = run.attack_dirs.get(0)
    path = d / "summary.md" if d else None
    if path is None or not path.is_file():
        return ["## Failure modes (round 0)", "", _missing("harden/attack/round-0/summary.md"), ""]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return ["## Failure modes (round 0)", "", _missing(f"a readable round-0 summary.md ({e})"), ""]
    if not text.strip():
        return [
            "## Failure modes (round 0)",
            "",
            _missing("text in harden/attack/round-0/summary.md (it is empty)"),
            "",
        ]
    lines = _demote(text)
    first = next((ln for ln in lines if ln.strip()), "")
    head = [] if first.startswith("## ") else ["## Failure modes (round 0)", ""]
    return head + lines + [""]


def _onset_rule(run: _Run) -> str:
    cfg = next((s.onset_config for seeds in run.rlhf.values() for s in seeds if s.onset_config), None)
    margin, patience, window = (_get(cfg, k) for k in ("margin", "patience", "window"))
    units = "" if _get(cfg, "margin_units") in (None, "gold") else " reference-gold standard deviations"
    m = f"the margin (here {margin:g}{units})" if _num(margin) is not None else "the margin"
    p = (
        f"`patience` evaluations (here {patience})"
        if _num(patience) is not None
        else "`patience` evaluations"
    )
    w = f" (moving average over {window} evaluations)" if _num(window) is not None else ""
    return (
        "**Hacking onset**: the last RLHF evaluation step before smoothed gold reward"
        f"{w} falls by more than {m} below its running peak for {p} while the proxy reward holds or rises; "
        "it is reported at that peak (the checkpoint early stopping would keep). A run in which no such fall "
        "is seen is censored: its onset is at least its last step. The same rule is used for every reward "
        "(advrm.onset)."
    )


def _section_how_to_read(run: _Run) -> list[str]:
    return [
        "## How to read this",
        "",
        "- **ASR standard**: share of held-out prompts where the attack's response beats a reference-policy "
        "response to the same prompt under the target RM while the gold validator prefers the reference one.",
        "- **ASR strict**: share of held-out prompts where the attack's response has a target-RM z-score above "
        "0 (better than the reference policy's average) and a gold z-score below -1.96 (clearly worse).",
        "- **Round R**: the RM retrained from scratch on the original pairs plus the adversarial pairs of "
        "rounds 1..R; round 0 is the conventional RM.",
        f"- {_onset_rule(run)}",
        "- **n/a**: the run files hold no value there (not measured, undefined, or not written yet).",
        "",
    ]


# --------------------------------------------------------------------------------------------------
# Entry point


def build_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/figures/*.png`` from what the run has written so far.

    Only reads the run's files (see the module docstring); missing pieces are skipped with a line
    that names them. Returns the path of ``report.md``. Raises :class:`AdvrmError` only when
    ``run_dir`` is not a directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AdvrmError(f"{run_dir}: not a directory; pass the run directory `advrm demo` wrote")
    run = _load(run_dir)
    m = run.metrics
    rounds = _round_rows(m)
    rlhf, from_seeds = _rlhf_summaries(run, run.notes)

    lines = ["# Adv-RM run report", ""]
    if setup := _setup_line(m):
        lines += [setup, ""]
    lines += ["## Summary", "", _summary_paragraph(run, rounds, rlhf), ""]
    body = [
        *_section_bars(m),
        *_section_rlhf(run, rlhf, from_seeds),
        *_section_rounds(rounds),
        *_section_attack(m),
        *_section_rm_quality(m),
        *_section_figures(run, rounds, rlhf),
        *_section_examples(run),
        *_section_failure_modes(run),
        *_section_how_to_read(run),
        *_section_world(m),
    ]
    if run.notes:
        lines += ["## Notes on the inputs", "", *(f"- {n}" for n in run.notes), ""]
    lines += body
    text = "\n".join(lines).rstrip("\n") + "\n"
    return atomic_write_text(run_dir / "report.md", text)
