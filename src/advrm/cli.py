"""The ``advrm`` command line: a thin Typer layer over functions that the tests call directly.

User mistakes surface as :class:`~advrm.errors.AdvrmError`: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import AdvrmError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Adversarial training of reward models: audit, harden and stress-test RMs.",
)
world_app = typer.Typer(no_args_is_help=True, help="The built-in synthetic world.")
app.add_typer(world_app, name="world")
console = Console(stderr=True)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise AdvrmError(f"--seeds {text!r} is not a comma-separated list of integers (e.g. 0,1,2)") from None
    if not seeds:
        raise AdvrmError("--seeds is empty; give at least one seed, e.g. --seeds 0")
    return seeds


@world_app.command("build")
def world_build(
    out: Annotated[Path, typer.Option(help="directory to build the world into")],
    preset: Annotated[str, typer.Option(help="quick (tests, ~1 min) or full (the headline world)")] = "full",
    seed: Annotated[int, typer.Option(help="same seed, same world")] = 0,
) -> None:
    """Build the synthetic world: prompts, reference policy, gold-labelled preference pairs."""
    from .worlds.synthetic.build import WorldConfig, build_world

    if preset not in ("quick", "full"):
        raise AdvrmError(f"--preset {preset!r} is not a preset; use quick or full")
    summary = build_world(out, WorldConfig.preset_config(preset, seed))  # type: ignore[arg-type]
    print_table(
        f"world {out}",
        [(k, f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in summary.items() if k != "config"],
    )


@app.command("train-rm")
def train_rm(
    base: Annotated[Path, typer.Option(help="causal-LM or sequence-classifier directory to start from")],
    data: Annotated[
        Path, typer.Option(help="preference pairs: JSONL or dataset directory (prompt/chosen/rejected)")
    ],
    out: Annotated[Path, typer.Option(help="output directory; one RM per seed in OUT/seed-K")],
    seeds: Annotated[str, typer.Option(help="comma-separated seeds, one RM each (an ensemble)")] = "0",
    config: Annotated[Path | None, typer.Option(help="YAML with RMTrainConfig fields")] = None,
    epochs: Annotated[float | None, typer.Option(help="override config epochs")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="override config learning rate")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="allow custom model code from BASE")] = False,
) -> None:
    """Train Bradley-Terry reward models with TRL's RewardTrainer (one per seed)."""
    from .configs import load_config
    from .data import load_preferences
    from .models import check_model_dir
    from .rm_training import RMTrainConfig, train_reward_model

    check_model_dir(base)
    overrides = {k: v for k, v in {"epochs": epochs, "learning_rate": learning_rate}.items() if v is not None}
    cfg = load_config(RMTrainConfig, config, overrides)
    pairs = load_preferences(data)
    from .io import sha256_path
    from .manifest import pin_config
    from .models import load_tokenizer

    seed_list = parse_seeds(seeds)
    load_tokenizer(
        base, trust_remote_code=trust_remote_code
    )  # a bad tokenizer fails before anything is written
    pin_config(
        out / "train_config.json", "train-rm", {"config": cfg, "base": str(base), "data": sha256_path(data)}
    )
    for seed in seed_list:
        if (out / f"seed-{seed}" / "metrics.json").exists():
            console.print(f"RM seed {seed}: already trained in {out / f'seed-{seed}'} (skipped)")
            continue
        m = train_reward_model(
            base, pairs, out / f"seed-{seed}", cfg, seed=seed, trust_remote_code=trust_remote_code
        )
        console.print(
            f"RM seed {seed}: loss {fmt(m['train_loss_first'])} -> {fmt(m['train_loss_last'])} "
            f"({m['train_seconds']:.0f} s, {m['n_dropped_overlong']} over-long pairs dropped) -> "
            f"{out / f'seed-{seed}'}"
        )


@app.command("eval-rm")
def eval_rm(
    rm: Annotated[Path, typer.Option(help="reward model directory (one label)")],
    data: Annotated[
        Path, typer.Option(help="held-out preference pairs (gold_chosen/gold_rejected optional)")
    ],
    out: Annotated[Path | None, typer.Option(help="write metrics JSON here (default RM/eval.json)")] = None,
    off_distribution: Annotated[
        bool,
        typer.Option(help="also probe style-transformed responses with the synthetic world's gold judge"),
    ] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="allow custom model code from RM")] = False,
) -> None:
    """Pairwise accuracy, Spearman with gold, the gold ceiling, and the off-distribution probe."""
    from .data import load_preferences
    from .io import atomic_write_json
    from .rm_eval import evaluate_off_distribution, evaluate_pairs, metric_rows
    from .scoring import HFRewardScorer

    pairs = load_preferences(data)
    scorer = HFRewardScorer(rm, trust_remote_code=trust_remote_code)
    metrics: dict = {"rm": str(rm), "data": str(data), "in_distribution": evaluate_pairs(scorer, pairs)}
    if off_distribution:
        from .transforms import off_distribution_transforms
        from .worlds.synthetic.gold import GoldJudge
        from .worlds.synthetic.vocab import GIBBERISH

        prompts = list(pairs["prompt"]) if "prompt" in pairs.column_names else [""] * len(pairs)
        metrics["off_distribution"] = evaluate_off_distribution(
            scorer, GoldJudge(), prompts, list(pairs["chosen"]), off_distribution_transforms(GIBBERISH)
        )
    target = out or (rm / "eval.json")
    atomic_write_json(target, metrics)
    print_table(f"eval {rm}", metric_rows(metrics))
    console.print(f"wrote {target}")


def read_prompts(path: Path) -> list[str]:
    """The prompts of ``path``, each once; duplicates are reported on stderr (they would over-weight prompts)."""
    from .data import load_prompts

    ps = load_prompts(path)
    if ps.n_duplicates:
        console.print(
            f"warning: {path}: {ps.n_duplicates} of {ps.n_records} prompts are duplicates; each prompt is used once",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return ps.prompts


def parse_set(items: list[str] | None) -> dict:
    from .configs import parse_overrides

    return parse_overrides(items or [])


@app.command("attack")
def attack(
    target: Annotated[
        str, typer.Option(help="target RM: a directory, an http(s):// reward server, or 'gold'")
    ],
    second: Annotated[list[str], typer.Option(help="second RM(s) (repeat the flag for an ensemble)")],
    policy: Annotated[Path, typer.Option(help="policy to start the adversary from (the reference policy)")],
    prompts: Annotated[Path, typer.Option(help="attack prompts: JSONL or dataset dir with a 'prompt' field")],
    out: Annotated[Path, typer.Option(help="output directory (rerun into it to resume)")],
    eval_prompts: Annotated[
        Path | None,
        typer.Option(help="held-out prompts for ASR (default: hold out n_eval_prompts of --prompts)"),
    ] = None,
    validator: Annotated[
        str | None,
        typer.Option(help="'gold', an RM directory or URL standing in for gold; without one ASR is null"),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with AttackConfig fields")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config field: rl.steps=100")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="RL steps (rl.steps)")] = None,
    lam1: Annotated[float | None, typer.Option(help="weight of the target z-score (objective.lam1)")] = None,
    lam2: Annotated[float | None, typer.Option(help="weight of the second z-score (objective.lam2)")] = None,
    tau: Annotated[float | None, typer.Option(help="fooled threshold on z_target (objective.tau)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="allow custom model code")] = False,
) -> None:
    """Audit a reward model: train an adversarial policy, keep what fools it, measure ASR, summarize."""
    from .attack.run import AttackConfig, Scorers, run_attack
    from .configs import load_config
    from .models import check_model_dir
    from .sources import make_scorer

    overrides = parse_set(set_)
    for key, value in {
        "rl.steps": steps,
        "objective.lam1": lam1,
        "objective.lam2": lam2,
        "objective.tau": tau,
        "seed": seed,
    }.items():
        if value is not None:
            overrides[key] = value
    cfg = load_config(AttackConfig, config, overrides)
    if not second:
        raise AdvrmError(
            "give at least one --second RM: disagreement with it is how the attack recognizes "
            "out-of-distribution responses"
        )
    train = read_prompts(prompts)
    held = read_prompts(eval_prompts) if eval_prompts else None
    check_model_dir(policy)
    scorers = Scorers(
        make_scorer(target, trust_remote_code=trust_remote_code, name="target"),
        [
            make_scorer(s, trust_remote_code=trust_remote_code, name=f"second_{i}")
            for i, s in enumerate(second)
        ],
        make_scorer(validator, trust_remote_code=trust_remote_code, name="validator") if validator else None,
    )
    m = run_attack(scorers, policy, train, out, cfg, eval_prompts=held, target_name=target)
    rows = [
        ("ASR standard", fmt(m["asr_standard"])),
        ("ASR strict", fmt(m["asr_strict"])),
        ("kept / sampled", f"{m['n_kept']} / {m['n_samples']}"),
        ("target queries", str(m["target_queries"])),
    ]
    rows += [
        (f"baseline {k}", f"{fmt(v['asr_standard'])} / {fmt(v['asr_strict'])}")
        for k, v in m["baselines"].items()
    ]
    rows += [("failure modes", ", ".join(m["failure_modes"]) or "none found")]
    print_table(f"attack {out}", rows)
    if m["note"]:
        console.print(m["note"])
    console.print(f"wrote {out / 'metrics.json'}, {out / 'adversarial.jsonl'}, {out / 'summary.md'}")


@app.command("harden")
def harden(
    base: Annotated[
        Path, typer.Option(help="policy / RM base directory (RMs start from it; the attack too)")
    ],
    data: Annotated[Path, typer.Option(help="original preference pairs (prompt/chosen/rejected)")],
    prompts: Annotated[Path, typer.Option(help="attack prompts (JSONL with 'prompt')")],
    out: Annotated[Path, typer.Option(help="output directory (rerun into it to resume)")],
    heldout: Annotated[Path | None, typer.Option(help="held-out pairs for the accuracy column")] = None,
    eval_prompts: Annotated[Path | None, typer.Option(help="held-out prompts for ASR")] = None,
    validator: Annotated[str | None, typer.Option(help="'gold', an RM directory or a URL")] = None,
    rounds: Annotated[int | None, typer.Option(help="adversarial training rounds")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with HardenConfig fields")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: attack.rl.steps=100")
    ] = None,
) -> None:
    """Adversarial training: rounds of attack -> keep -> augment -> retrain from scratch."""
    from .configs import load_config
    from .data import load_preferences
    from .harden import HardenConfig, run_harden
    from .models import check_model_dir
    from .sources import make_scorer

    overrides = parse_set(set_)
    if rounds is not None:
        overrides["rounds"] = rounds
    cfg = load_config(HardenConfig, config, overrides)
    check_model_dir(base)
    result = run_harden(
        base,
        load_preferences(data),
        load_preferences(heldout) if heldout else None,
        read_prompts(prompts),
        out,
        cfg,
        eval_prompts=read_prompts(eval_prompts) if eval_prompts else None,
        validator=make_scorer(validator) if validator else None,
        log=console.print,
    )
    print_table(
        f"harden {out}",
        [
            (
                f"round {r['round']}",
                f"ASR {fmt(r['asr_standard'])} / {fmt(r['asr_strict'])}, "
                f"acc {fmt(r['rm_accuracy'])}, +{r['pairs_added']} pairs",
            )
            for r in result["rounds"]
        ],
    )


@app.command("rlhf")
def rlhf(
    policy: Annotated[Path, typer.Option(help="policy to start RLHF from")],
    rm: Annotated[list[Path], typer.Option(help="reward model(s); several make an ensemble")],
    prompts: Annotated[Path, typer.Option(help="training prompts (JSONL with 'prompt')")],
    eval_prompts: Annotated[Path, typer.Option(help="held-out prompts for the curve")],
    out: Annotated[Path, typer.Option(help="output directory (rerun into it to resume)")],
    reward: Annotated[str, typer.Option(help="single | ensemble_mean | ensemble_mean_minus_std")] = "single",
    validator: Annotated[str | None, typer.Option(help="'gold', an RM directory or a URL")] = None,
    seed: Annotated[int, typer.Option(help="training seed")] = 1,
    name: Annotated[str, typer.Option(help="name of this reward in reports")] = "reward",
    config: Annotated[Path | None, typer.Option(help="YAML with RLHFConfig fields")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: rl.steps=300")] = None,
) -> None:
    """RLHF (RLOO) against a reward, with proxy and gold tracked and the hacking onset detected."""
    from .configs import load_config
    from .models import check_model_dir
    from .rlhf import RLHFConfig, run_rlhf
    from .sources import make_scorer

    overrides = parse_set(set_)
    overrides["reward"] = reward
    cfg = load_config(RLHFConfig, config, overrides)
    check_model_dir(policy)
    for r in rm:
        check_model_dir(r)
    m = run_rlhf(
        policy,
        list(rm),
        read_prompts(prompts),
        read_prompts(eval_prompts),
        out,
        cfg,
        seed=seed,
        validator=make_scorer(validator) if validator else None,
        reward_name=name,
    )
    onset = m.get("onset") or {}
    print_table(
        f"rlhf {out}",
        [
            ("onset step", str(onset.get("onset_step"))),
            ("peak gold", fmt(onset.get("peak_gold"))),
            ("final gold", fmt(onset.get("final_gold"))),
        ],
    )


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="run directory (rerun into it to resume)")] = Path("runs/demo"),
    preset: Annotated[
        str, typer.Option(help="quick (~minutes, the test) or full (the headline study)")
    ] = "quick",
    seed: Annotated[int, typer.Option(help="world and RM seed")] = 0,
) -> None:
    """The whole study on the synthetic world: world, RMs, hardening rounds, RLHF, report."""
    from .demo import DemoConfig, run_demo

    if preset not in ("quick", "full"):
        raise AdvrmError(f"--preset {preset!r} is not a preset; use quick or full")
    m = run_demo(out, DemoConfig.preset_config(preset, seed), log=console.print)  # type: ignore[arg-type]
    print_table(
        f"demo {out}",
        [
            (b["name"], f"{b['value']} (target {b['target']}) {'met' if b['met'] else 'NOT met'}")
            for b in m["bars"]
        ],
    )
    if preset == "quick":
        console.print(
            "quick preset: a few-minute smoke test of the whole pipeline on a tiny world; the bars "
            "are meant for --preset full"
        )
    console.print(f"report: {out / 'report.md'}  ({m['wall_seconds']:.0f} s)")


@app.command("report")
def report(run_dir: Annotated[Path, typer.Argument(help="a demo run directory")]) -> None:
    """Rebuild report.md and figures/ from a run directory."""
    from .report import build_report

    if not run_dir.is_dir():
        raise AdvrmError(f"{run_dir} is not a directory; give the --out directory of an advrm demo run")
    console.print(f"wrote {build_report(run_dir)}")


@app.command("serve-rm")
def serve_rm(
    rm: Annotated[str, typer.Option(help="reward model directory (or 'gold' for the synthetic judge)")],
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8000,
    token_env: Annotated[
        str | None, typer.Option(help="require a bearer token read from this env variable")
    ] = None,
) -> None:
    """Serve an RM over HTTP: POST /score (advrm) and POST /get_reward (OpenRLHF --reward.remote_url)."""
    from .scoring import serve_scorer
    from .sources import make_scorer

    server = serve_scorer(make_scorer(rm), host=host, port=port, token_env=token_env)
    console.print(f"serving {rm} at {server.url} (POST /score, POST /get_reward); Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def usage_errors() -> tuple[type[Exception], ...]:
    """Command-line usage errors: typer >= 0.2x raises its own vendored click's, older typer click's."""
    import click

    return tuple(t for t in (getattr(typer, "TyperException", None), click.ClickException) if t is not None)


def print_error(message: str) -> None:
    """One line on stderr; the message is printed as is (a path like ``runs/[x]`` is not rich markup)."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers 5 deprecates `gradient_checkpointing`, which TRL 1.16's configs still set: not the user's concern.
    warnings.filterwarnings("ignore", message=".*(gradient_checkpointing|is_gradient_checkpointing).*")
    try:
        app(args=argv, standalone_mode=False)
    except AdvrmError as e:
        print_error(str(e))
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None) if isinstance(e, typer.Exit) else e.code
        sys.exit(code or 0)
    except Exception as e:
        if not isinstance(e, usage_errors()):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()
        else:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print_error(f"{e.format_message()}{hint}")
        sys.exit(2)


if __name__ == "__main__":
    main()
