"""``codevision eval`` (run, resume, report, compare) and ``codevision bench build`` (transformed benchmarks)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from codevision.agent import Limits
from codevision.benchmarks import BenchmarkError, load_benchmark
from codevision.benchmarks.transformed import build_transformed
from codevision.cli import render
from codevision.cli.budget import MAX_PIXELS_HELP, PROCESSOR_HELP, budget_limits, chosen_budget, warn_unsized
from codevision.cli.outputs import claim_folder, ensure_writable
from codevision.cli.prompts import (
    CALLS_HELP,
    SYSTEM_PROMPT_HELP,
    TOOL_CHOICE_HELP,
    TOOLS_HELP,
    calls_rules,
    prompt_digest,
    read_system_prompt,
    read_tool_choice,
    read_tools,
    tools_digest,
)
from codevision.cli.sandbox import start_sandbox
from codevision.cli.waits import wait_message
from codevision.eval import ResultStore, RunStopped, compare, evaluate, write_report
from codevision.eval.items import build_items
from codevision.eval.scorer import make_scorer, rule_name
from codevision.policies.factory import make_policy
from codevision.protocols import get_protocol
from codevision.protocols.registry import DEFAULT_PROTOCOL
from codevision.rewards.spec import RewardSpec
from codevision.scoring import PromptFileError, ScoringOptions, official_prompts_needed
from codevision.transforms import TransformSpecError, parse_transforms
from codevision.viewer import write_viewer

eval_app = typer.Typer(
    help="Evaluate a model on benchmarks, with transforms, official scoring and reports.",
    invoke_without_command=True,
    no_args_is_help=False,
)
bench_app = typer.Typer(help="Build benchmark variants.", no_args_is_help=True)
build_app = typer.Typer(help="Build a benchmark variant as a task manifest.", no_args_is_help=True)
bench_app.add_typer(build_app, name="build")


def _load(spec: str, limit: int | None, *, check_image_files: bool = True) -> tuple[list, Path | None, str]:
    """The benchmark's tasks; ``check_image_files=False`` leaves a missing image to the item that reads it."""
    try:
        benchmark = load_benchmark(spec)
        benchmark.check_image_files = check_image_files
        tasks = []
        for task in benchmark:
            tasks.append(task)
            if limit is not None and len(tasks) >= limit:
                break
    except (BenchmarkError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--benchmark/--source") from exc
    if not tasks:
        raise typer.BadParameter(
            f"{spec} holds no items; check the path and the layout", param_hint="--benchmark/--source"
        )
    return tasks, benchmark.base_dir, spec


def _transforms(specs: str | None) -> list:
    if not specs:
        return []
    try:
        return parse_transforms(specs)
    except TransformSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--transforms") from exc


def _reward_spec(spec: str | None) -> RewardSpec | None:
    """``--reward``: a named spec or a RewardSpec YAML file; a bad file is a usage error naming it."""
    if spec is None:
        return None
    if spec == "codevision":
        return RewardSpec()
    if spec == "tapo":
        return RewardSpec.tapo()
    try:
        return RewardSpec.from_yaml(spec)
    except FileNotFoundError:
        raise typer.BadParameter(f"{spec} is neither codevision, tapo nor a file", param_hint="--reward") from None
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--reward") from None


def _epilog() -> str:
    from codevision.benchmarks.registry import SPEC_FORMS
    from codevision.scoring.dispatch import RULES

    rules = sorted({rule.name for rule in RULES.values()})
    return (
        "Examples:\n\n"
        "  codevision eval -m http://localhost:8000/v1 -b ocrbench:data/OCRBench --transforms all-orientation "
        "-o runs/ocr\n\n"
        "  codevision eval -m http://localhost:8000/v1 -b synthetic:50 --protocol direct -o runs/direct --limit 20\n\n"
        "  codevision eval --resume -m http://localhost:8000/v1 -b ocrbench:data/OCRBench -o runs/ocr\n\n"
        "  codevision eval -m http://localhost:8000/v1 -b hrbench:data/HR-Bench --judge http://localhost:8001/v1 "
        "-o runs/hr\n\n"
        "  codevision eval -m ./Qwen3-VL-8B-Instruct -b vstar:data/vstar -o runs/q3\n\n"
        "  codevision eval compare runs/direct runs/ocr\n\n"
        f"Benchmarks (-b): {', '.join(SPEC_FORMS)}.\n\n"
        f"Scoring rules: {', '.join(rules)}. Each benchmark is scored by its own rule; a generic row "
        "(jsonl:, parquet:, hf:) by its 'scoring' column, else exact-match. See docs/benchmarks.md."
    )


@eval_app.callback(epilog=_epilog())
def eval_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Server URL, model folder, or scripted:FILE."),
    model_name: str | None = typer.Option(
        None, help="Model name to request from a server (default: the first it lists)."
    ),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, help="codevision, code-tags, crop or direct."),
    system_prompt: Path | None = typer.Option(None, help=SYSTEM_PROMPT_HELP),
    calls: str = typer.Option("lenient", metavar="lenient|trl", help=CALLS_HELP),
    tools: str | None = typer.Option(None, metavar="FILE", help=TOOLS_HELP),
    tool_choice: str | None = typer.Option(None, metavar="auto|none", help=TOOL_CHOICE_HELP),
    benchmark: list[str] = typer.Option(
        None, "--benchmark", "-b", help="NAME:PATH, repeatable (e.g. ocrbench:data/OCRBench)."
    ),
    transforms: str | None = typer.Option(
        None, help="Transforms to add to each item, e.g. all-orientation,gaussian_noise:3."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder: results, trajectories, reports."),
    resume: bool = typer.Option(False, help="Continue the run in --out: only missing items are run."),
    retry_failed: bool = typer.Option(
        False,
        help="With --resume, also run again the items that failed; items whose only failure was the judge "
        "(or whose score still waits for one) are re-scored from their saved trajectory, without the model.",
    ),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first (its earlier results are deleted)."),
    skip_bad_items: bool = typer.Option(
        False, help="Record items whose images cannot be read as skipped (left out of accuracy), not failed."
    ),
    concurrency: int = typer.Option(8, min=1, help="Items in flight."),
    workers: int = typer.Option(4, min=1, help="Sandbox code cells executing at once."),
    limit: int | None = typer.Option(None, min=1, help="Use only the first N items of each benchmark."),
    max_turns: int = typer.Option(12, min=1, help="Assistant turns per item."),
    max_tokens: int = typer.Option(4096, min=1, help="Tokens one reply of the model may generate."),
    reward: str | None = typer.Option(
        None,
        metavar="codevision|tapo|FILE",
        help="Also record the training reward of each episode (CodeVision's dense reward, CodeV's TAPO mix, "
        "or a RewardSpec YAML file) and report its mean per term.",
    ),
    judge: str | None = typer.Option(
        None, help="OpenAI-compatible server of the judge, where the official rule uses one."
    ),
    judge_model: str | None = typer.Option(None, help="Judge model name (default: the first the server lists)."),
    strict_official: bool = typer.Option(
        False, help="Score the whole reply exactly as each official script does, quirks included."
    ),
    official_prompts: Path | None = typer.Option(
        None, help="YAML file of the official judge prompts, for --strict-official with --judge."
    ),
    mathvista_quick_extract: bool = typer.Option(
        False, help="MathVista: read 'The answer is \"X\".' by regex before asking the judge to extract."
    ),
    timeout: float = typer.Option(120.0, min=0.1, help="Seconds to wait for one reply of the model or the judge."),
    retries: int = typer.Option(5, min=0, help="Attempts after the first for one request to the model or judge."),
    seed: int = typer.Option(0, help="Seed of the transforms' randomness."),
    trust_remote_code: bool = typer.Option(False, help="Let a local model folder run its own processor code."),
    processor: Path | None = typer.Option(None, metavar="PATH", help=PROCESSOR_HELP),
    max_pixels: int | None = typer.Option(None, min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Run benchmarks through the agent and score them officially; results are written as items finish.

    The examples are in the group's epilog (:func:`_epilog`): ``eval --help`` shows the group's help.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not model or not benchmark or out is None:
        raise typer.BadParameter("--model, --benchmark and --out are required (or use a subcommand: compare, report)")
    if resume and overwrite:
        raise typer.BadParameter("--resume continues the run in --out and --overwrite deletes it: choose one")
    if judge_model and not judge:
        raise typer.BadParameter("--judge-model names a model of the --judge server: give --judge URL too")
    store_exists = (out / "results.jsonl").exists()
    console = Console()
    prompt_text = read_system_prompt(system_prompt)
    try:
        chosen = get_protocol(protocol, system_prompt=prompt_text, calls=calls_rules(calls))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--protocol") from exc
    schemas = read_tools(tools, chosen)
    reward_spec = _reward_spec(reward)
    chosen_tool_choice = read_tool_choice(tool_choice, schemas)
    try:
        budget = chosen_budget(model, processor, max_pixels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--processor") from exc
    config = {
        "model": model,
        "model_name": model_name,
        "protocol": protocol,
        "calls": calls,
        "system_prompt": prompt_digest(prompt_text),
        "tools": tools_digest(schemas),
        "tool_choice": chosen_tool_choice,
        "benchmarks": list(benchmark),
        "transforms": transforms,
        "limit": limit,
        "max_turns": max_turns,
        "max_tokens": max_tokens,
        "reward": reward,
        "seed": seed,
        "image_budget": budget.to_dict() if budget is not None else None,
        "max_pixels": max_pixels,
    }
    try:
        scoring = ScoringOptions.of(
            strict_official=strict_official,
            official_prompts=official_prompts,
            mathvista_quick_extract=mathvista_quick_extract,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--official-prompts") from exc
    config["scoring"] = scoring.as_config()
    previous = ResultStore.config_of(out) if resume and store_exists else None
    if previous is not None:
        previous.setdefault("scoring", ScoringOptions().as_config())  # runs from before scoring modes
        previous.setdefault("calls", "lenient")  # runs from before call rules
        previous.setdefault("reward", None)  # runs from before --reward
        keys = (
            "model",
            "protocol",
            "calls",
            "system_prompt",
            "tools",
            "tool_choice",
            "benchmarks",
            "transforms",
            "seed",
            "scoring",
            "reward",
            "image_budget",
            "max_pixels",
        )
        changed = [k for k in keys if previous.get(k) != config[k]]
        if changed:
            raise typer.BadParameter(f"--resume with different {', '.join(changed)} than the run in {out}")
    try:
        policy = make_policy(
            model,
            model_name=model_name,
            trust_remote_code=trust_remote_code,
            timeout=timeout,
            retries=retries,
            tools=schemas,
            tool_choice=chosen_tool_choice,
            max_pixels=max_pixels,
        )
    except (ValueError, ImportError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    warn_unsized(console, policy, model, budget)
    items = []
    chosen_transforms = _transforms(transforms)
    for spec in benchmark:
        # A missing image fails (or, with --skip-bad-items, skips) its item when it runs, not the benchmark.
        tasks, base_dir, _ = _load(spec, limit, check_image_files=False)
        items.extend(build_items(tasks, chosen_transforms, base_dir=base_dir, seed=seed))
    if resume:
        ensure_writable(out)
    else:
        claim_folder(out, overwrite=overwrite, hint=" or --resume to continue the run in it" if store_exists else "")
    judge_client = None
    if judge:
        from codevision.policies.factory import served_model
        from codevision.scoring.judge import LLMJudge

        try:
            chosen_judge = judge_model or served_model(judge, timeout=min(timeout, 10.0), flag="--judge-model")
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--judge") from None
        judge_client = LLMJudge(
            judge,
            chosen_judge,
            cache=out / "judge-cache.sqlite",
            timeout=timeout,
            retries=retries,
        )
        try:
            scoring.check_prompts(official_prompts_needed(rule_name(item.task) for item in items))
        except PromptFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--official-prompts") from exc
    # planned_items tells a report rebuilt mid-run (or after a stop) that it is partial.
    ResultStore(out).write_config({**config, "planned_items": len(items)})
    console.print(f"{len(items)} items from {len(benchmark)} benchmark(s)")
    sandbox = (
        start_sandbox(console, workers=workers, max_sessions=max(256, concurrency * 2)) if chosen.uses_sandbox else None
    )
    stopped: RunStopped | None = None
    try:
        store = asyncio.run(
            evaluate(
                items,
                policy=policy,
                sandbox=sandbox,
                protocol=chosen,
                scorer=make_scorer(
                    judge_client,
                    strict_official=strict_official,
                    official_prompts=scoring.official_prompts,
                    mathvista_quick_extract=mathvista_quick_extract,
                ),
                out=out,
                limits=budget_limits(Limits(max_turns=max_turns, max_tokens_per_turn=max_tokens), budget),
                concurrency=concurrency,
                retry_failed=retry_failed,
                skip_bad_items=skip_bad_items,
                console=console,
                waiting=lambda: wait_message([("the model", policy), ("the judge", judge_client)]),
                reward=reward_spec,
            )
        )
    except RunStopped as exc:
        stopped, store = exc, exc.store
    finally:
        if sandbox is not None:
            sandbox.close()
    if stopped is not None:
        console.print(f"[red]stopped:[/] {stopped}")
        if store.records:
            console.print(f"report of the items done: [cyan]{write_report(out)['html']}[/]")
        raise typer.Exit(render.EXIT_MODEL_UNAVAILABLE)
    # First: the report notes a missing viewer.
    viewer = write_viewer([out / "items"], out / "trajectories.html", console=console)
    paths = write_report(out)
    console.print(paths["markdown"].read_text(), markup=False, highlight=False)
    console.print(f"report: [cyan]{paths['html']}[/]  trajectories: [cyan]{viewer}[/]")
    failed = sum(1 for r in store.records.values() if r["status"] == "failed")
    raise typer.Exit(render.EXIT_CODE_FAILED if failed else render.EXIT_OK)


@eval_app.command("report", epilog="Example: codevision eval report runs/ocr")
def report_command(run: Path = typer.Argument(..., help="A run folder.")) -> None:
    """Rebuild report.json, report.md and report.html of a run (also while it is running)."""
    if not (run / "results.jsonl").exists():
        raise typer.BadParameter(f"{run} holds no results.jsonl", param_hint="RUN")
    paths = write_report(run)
    Console().print(f"report: [cyan]{paths['html']}[/]")


@eval_app.command("compare", epilog="Example: codevision eval compare runs/direct runs/codevision")
def compare_command(
    run_a: Path = typer.Argument(..., help="First run folder."),
    run_b: Path = typer.Argument(..., help="Second run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    all_items: bool = typer.Option(False, "--all-items", help="Compare all items of each run, not only those in both."),
) -> None:
    """Side-by-side accuracy of two runs: overall, per benchmark and per transform, on the items both runs hold.

    Warns when the runs cover different items, with the item count of each and of their overlap."""
    with render.errors_as_json(as_json):
        for run, hint in ((run_a, "RUN_A"), (run_b, "RUN_B")):
            if not (run / "results.jsonl").exists():
                raise typer.BadParameter(f"{run} holds no results.jsonl", param_hint=hint)
    result = compare(run_a, run_b, all_items=all_items)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    if result["warning"]:
        hint = "" if all_items else " (--all-items compares every item of each run)"
        console.print(f"[yellow]warning:[/] {escape(result['warning'])}{hint}")
    else:
        console.print(f"both runs cover the same {result['items']['a']} items")
    table = Table(title="accuracy (%)", title_justify="left")
    for column in ("", str(run_a), "n", str(run_b), "n", "difference"):
        table.add_column(column, justify="right" if column else "left")
    for row in result["rows"]:
        diff = row["diff"]
        style = "" if diff is None or diff == 0 else ("green" if diff > 0 else "red")
        cells = [render.format_value(row[k]) for k in ("a", "n_a", "b", "n_b")]
        table.add_row(
            row["group"], *cells, f"[{style}]{render.format_value(diff)}[/]" if style else render.format_value(diff)
        )
    console.print(table)


@build_app.command(
    "transformed",
    epilog=(
        "Examples:\n\n"
        "  codevision bench build transformed --source ocrbench:data/OCRBench --transforms all-orientation "
        "--out data/ocrbench-t\n\n"
        "  codevision bench build transformed --source chartqa:data/ChartQA --transforms rotate_90,rotate_180,flip_h "
        "--sample 500 --per-item 1 --out data/chartqa-t"
    ),
)
def build_transformed_command(
    source: str = typer.Option(..., help="Source benchmark, NAME:PATH."),
    transforms: str = typer.Option(..., help="Transforms, e.g. all-orientation or rotate_90,gaussian_noise:3."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for images and manifest.jsonl."),
    sample: int | None = typer.Option(None, min=1, help="Keep a seeded sample of N source items."),
    per_item: int | None = typer.Option(None, min=1, help="Apply a seeded sample of K transforms per item."),
    seed: int = typer.Option(0, help="Seed of the sampling and of the transforms."),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first."),
) -> None:
    """Build the transformed variant of a benchmark: images plus a manifest recording each item's
    transform, the ops that undo it, its carried boxes and where it came from (load it as tasks:OUT)."""
    tasks, base_dir, spec = _load(source, None)
    chosen = _transforms(transforms)
    claim_folder(out, overwrite=overwrite)
    total = (min(sample, len(tasks)) if sample else len(tasks)) * (
        min(per_item, len(chosen)) if per_item else len(chosen)
    )
    with Progress() as progress:
        bar = progress.add_task("building", total=total)
        path = build_transformed(
            tasks,
            chosen,
            out,
            base_dir=base_dir,
            source_spec=spec,
            sample=sample,
            per_item=per_item,
            seed=seed,
            progress=lambda done: progress.update(bar, completed=done),
        )
    Console().print(f"{total} items written; manifest: [cyan]{path}[/] (evaluate with -b tasks:{out})")
