"""``codevision data``: export training sets (RL from benchmarks, SFT from trajectories) and summarise them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from codevision.agent import Limits
from codevision.benchmarks import BenchmarkError, load_benchmark
from codevision.cli.budget import (
    MAX_PIXELS_HELP,
    PROCESSOR_HELP,
    budget_limits,
    chosen_budget,
    flag_budget,
    warn_unsized,
)
from codevision.cli.outputs import claim_file, claim_folder, ensure_writable
from codevision.cli.prompts import (
    CALLS_HELP,
    SYSTEM_PROMPT_HELP,
    TOOL_CHOICE_HELP,
    TOOLS_HELP,
    calls_rules,
    read_system_prompt,
    read_tool_choice,
    read_tools,
)
from codevision.cli.render import EXIT_BAD_INPUT, EXIT_CODE_FAILED, EXIT_MODEL_UNAVAILABLE
from codevision.data.rl import DEFAULT_AGENT_NAME, rl_items, write_trl_grpo, write_verl_parquet
from codevision.data.sft import SFT_FORMATS, export_sft
from codevision.data.stats import dataset_stats
from codevision.protocols import get_protocol
from codevision.protocols.registry import DEFAULT_PROTOCOL
from codevision.transforms import TransformSpecError, parse_transforms

data_app = typer.Typer(help="Build and inspect training data.", no_args_is_help=True)
export_app = typer.Typer(help="Export training sets in the formats of verl, TRL, LLaMA-Factory and ms-swift.")
data_app.add_typer(export_app, name="export")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


@export_app.command(
    "rl",
    epilog=(
        "Examples:\n\n"
        "  codevision data export rl --source ocrbench:data/OCRBench --transforms all-orientation -o rl.parquet\n\n"
        "  codevision data export rl --source synthetic:100 --transforms rotate_90,flip_h --format trl -o grpo.parquet"
    ),
)
def export_rl(
    source: str = typer.Option(..., help="Benchmark spec, NAME:PATH (see codevision eval --help)."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    transforms: str | None = typer.Option(None, help="Transforms, e.g. all-orientation or rotate_90,jpeg:3."),
    fmt: str = typer.Option("verl", "--format", help="verl or trl (GRPO)."),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, help="Protocol whose system prompt and user turn are used."),
    system_prompt: Path | None = typer.Option(None, help=SYSTEM_PROMPT_HELP),
    tools: str | None = typer.Option(
        None, metavar="FILE", help=f"{TOOLS_HELP} Written into each row (extra_info.tools for verl, tools for TRL)."
    ),
    original: bool = typer.Option(
        True, "--original/--no-original", help="Also export the untransformed tasks (--no-original: only transformed)."
    ),
    split: str = typer.Option("train", help="extra_info.split (verl)."),
    agent_name: str = typer.Option(DEFAULT_AGENT_NAME, help="verl agent loop name (agent_name column)."),
    seed: int = typer.Option(0, help="Seed of the transforms."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """RL prompts from a benchmark, under transforms: verl parquet or a TRL GRPO dataset."""
    if not original and not transforms:
        raise _fail("--no-original leaves nothing to export without --transforms; add transforms or drop it")
    if fmt not in ("verl", "trl"):
        raise _fail(f"--format {fmt!r} is not known; choose verl or trl")
    try:
        benchmark = load_benchmark(source)
        chosen = parse_transforms(transforms) if transforms else []
        proto = get_protocol(protocol, system_prompt=read_system_prompt(system_prompt))
        schemas = read_tools(tools, proto)
        items = list(rl_items(benchmark, chosen, base_dir=benchmark.base_dir, include_original=original, seed=seed))
        if not items:
            raise ValueError(f"{source} holds no items; check the path and the layout")
    except (BenchmarkError, TransformSpecError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    claim_file(out, overwrite=overwrite)
    try:
        if fmt == "verl":
            rows = write_verl_parquet(items, out, proto, split=split, agent_name=agent_name, tools=schemas)
        else:
            rows = write_trl_grpo(items, out, proto, tools=schemas)
    except (BenchmarkError, TransformSpecError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{rows} rows written to {out}")


@data_app.command(
    "filter",
    epilog=(
        "Examples:\n\n"
        "  codevision data filter -m http://localhost:8000/v1 --source vstar:data/vstar --transforms all-orientation "
        "--runs 8 -o rl.parquet\n\n"
        "  codevision data filter -m runs/sft-7b/final --source synthetic:200 --runs 4 --low 0.2 --high 0.9 "
        "--format trl -o rl.parquet --resume"
    ),
)
def filter_command(
    model: str = typer.Option(
        ..., "--model", "-m", help="The model to be trained: server URL, model folder, or scripted:FILE."
    ),
    model_name: str | None = typer.Option(None, help="Model name to request (default: the first the server lists)."),
    source: str = typer.Option(..., help="Candidate items, NAME:PATH (see codevision eval --help)."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file of the kept items."),
    transforms: str | None = typer.Option(None, help="Transforms, e.g. all-orientation or rotate_90,jpeg:3."),
    original: bool = typer.Option(True, "--original/--no-original", help="Also the untransformed items."),
    runs: int = typer.Option(8, min=1, help="Runs per item (the pass rate's denominator)."),
    low: float = typer.Option(0.0, min=0.0, max=1.0, help="Keep items whose pass rate is above this."),
    high: float = typer.Option(1.0, min=0.0, max=1.0, help="Keep items whose pass rate is below this."),
    fmt: str = typer.Option("verl", "--format", help="verl or trl (GRPO)."),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, help="Protocol the model runs and is trained with."),
    system_prompt: Path | None = typer.Option(None, help=SYSTEM_PROMPT_HELP),
    calls: str = typer.Option("lenient", metavar="lenient|trl", help=CALLS_HELP),
    runs_dir: Path | None = typer.Option(
        None, help="Folder of the runs' results and trajectories (default: OUT.runs)."
    ),
    resume: bool = typer.Option(False, help="Continue the runs in --runs-dir; finished runs are not redone."),
    concurrency: int = typer.Option(8, min=1, help="Runs in flight."),
    seed: int = typer.Option(0, help="Seed of the transforms."),
    timeout: float = typer.Option(120.0, min=0.1, help="Seconds to wait for one reply of the model."),
    retries: int = typer.Option(5, min=0, help="Attempts after the first for one request to the model."),
    processor: Path | None = typer.Option(None, metavar="PATH", help=PROCESSOR_HELP),
    max_pixels: int | None = typer.Option(None, min=1, help=MAX_PIXELS_HELP),
    overwrite: bool = typer.Option(False, help="Replace --out and clear --runs-dir first."),
) -> None:
    """Keep the RL items the model solves sometimes: each runs N times, kept when low < pass rate < high.

    The kept items are written in the RL export format with their pass_rate; the counts of items too
    easy, too hard and undecided (a run failed: rerun with --resume) are printed.
    """
    import asyncio

    from rich.console import Console

    from codevision.cli.sandbox import start_sandbox
    from codevision.cli.waits import with_wait_spinner
    from codevision.data.filter import add_pass_rates, repeated, select
    from codevision.eval import RunStopped, evaluate
    from codevision.eval.scorer import make_scorer
    from codevision.policies.factory import make_policy

    if resume and overwrite:
        raise _fail("--resume continues the runs and --overwrite deletes them: choose one")
    if not low < high:
        raise _fail(f"--low {low} must be below --high {high}")
    if fmt not in ("verl", "trl"):
        raise _fail(f"--format {fmt!r} is not known; choose verl or trl")
    if not original and not transforms:
        raise _fail("--no-original leaves nothing to filter without --transforms; add transforms or drop it")
    folder = runs_dir if runs_dir is not None else out.with_name(out.name + ".runs")
    try:
        proto = get_protocol(protocol, system_prompt=read_system_prompt(system_prompt), calls=calls_rules(calls))
        budget = chosen_budget(model, processor, max_pixels)
        policy = make_policy(model, model_name=model_name, timeout=timeout, retries=retries, max_pixels=max_pixels)
        benchmark = load_benchmark(source)
        chosen = parse_transforms(transforms) if transforms else []
        items = list(rl_items(benchmark, chosen, base_dir=benchmark.base_dir, include_original=original, seed=seed))
        if not items:
            raise ValueError(f"{source} holds no items; check the path and the layout")
    except (BenchmarkError, TransformSpecError, ValueError, FileNotFoundError, ImportError) as exc:
        raise _fail(str(exc)) from None
    claim_file(out, overwrite=overwrite)
    if resume:
        ensure_writable(folder, "--runs-dir")
    else:
        hint = " or --resume to continue its runs" if (folder / "results.jsonl").exists() else ""
        claim_folder(folder, overwrite=overwrite, option="--runs-dir", hint=hint)
    console = Console()
    warn_unsized(console, policy, model, budget)
    sandbox = start_sandbox(console, max_sessions=max(256, concurrency * 2))
    try:
        work = evaluate(
            repeated(items, runs),
            policy=policy,
            sandbox=sandbox,
            protocol=proto,
            scorer=make_scorer(),
            out=folder,
            limits=budget_limits(Limits(), budget),
            concurrency=concurrency,
            retry_failed=resume,
            console=console,
        )
        store = asyncio.run(with_wait_spinner(console, [("the model", policy)], work))
    except RunStopped as exc:
        console.print(f"[red]stopped:[/] {exc} Continue with --resume.")
        raise typer.Exit(EXIT_MODEL_UNAVAILABLE) from None
    finally:
        sandbox.close()
    selection = select(items, store.records, runs, low=low, high=high)
    kept = [item for item in items if item.key in set(selection.kept)]
    (folder / "selection.json").write_text(json.dumps({**selection.summary(), "pass_rates": selection.rates}, indent=1))
    if kept:
        if fmt == "verl":
            write_verl_parquet(kept, out, proto)
        else:
            write_trl_grpo(kept, out, proto)
        add_pass_rates(str(out), [item.key for item in kept], selection.rates)
    counts = selection.summary()
    console.print(
        f"{counts['kept']} of {counts['items']} items kept (pass rate in ({low}, {high}) over {runs} runs): "
        f"{counts['too_easy']} too easy, {counts['too_hard']} too hard, {counts['undecided']} undecided"
        + (f"; written to {out}" if kept else "; nothing written")
    )
    if selection.undecided:
        failed = len(selection.undecided)
        console.print(f"{failed} items have a failed run: run the same command with --resume to retry them")
        raise typer.Exit(EXIT_CODE_FAILED)


@export_app.command(
    "sft",
    epilog=(
        "Examples:\n\n"
        "  codevision data export sft runs/ocr/trajectories -o sft/ --format sharegpt\n\n"
        "  codevision data export sft runs/a runs/b -o sft/ --format trl --name mix\n\n"
        "  codevision data export sft runs/synth/accepted -o sft/ --processor models/Qwen2.5-VL-7B-Instruct"
    ),
)
def export_sft_command(
    inputs: list[Path] = typer.Argument(..., help="Trajectory folders (searched for trajectory.json) or files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    fmt: str = typer.Option("sharegpt", "--format", help="sharegpt (LLaMA-Factory), swift (ms-swift) or trl."),
    name: str = typer.Option("codevision_sft", help="Dataset name (file name and dataset_info.json key)."),
    include_incorrect: bool = typer.Option(
        False, "--include-incorrect", help="Also export trajectories scored wrong (left out by default)."
    ),
    processor: Path | None = typer.Option(
        None,
        metavar="PATH",
        help="The student's folder or preprocessor_config.json: images are written at the size its processor "
        "gives them, so a trainer that resizes first (LLaMA-Factory) resizes nothing. See docs/data.md.",
    ),
    max_pixels: int | None = typer.Option(None, min=1, help=MAX_PIXELS_HELP),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first."),
) -> None:
    """SFT rows from trajectories, the conversation exactly as the protocol rendered it; only correct
    (or unscored) trajectories unless --include-incorrect."""
    if fmt not in SFT_FORMATS:
        raise _fail(f"--format {fmt!r} is not known; choose {', '.join(SFT_FORMATS)}")
    try:
        budget = flag_budget(processor, max_pixels)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    claim_folder(out, overwrite=overwrite)
    try:
        result = export_sft(inputs, out, fmt, name=name, include_incorrect=include_incorrect, budget=budget)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    for reason in result.skipped:
        typer.echo(f"skipped: {reason}", err=True)
    if result.left_out:
        typer.echo(
            f"left out {len(result.left_out)} trajectories scored wrong (--include-incorrect exports them), "
            f"e.g. {result.left_out[0]}",
            err=True,
        )
    if result.unscored:
        typer.echo(f"{result.unscored} trajectories carry no score and were exported as they are", err=True)
    if not result.rows:
        raise _fail(f"no rows to export from {', '.join(map(str, inputs))}; nothing was written")
    typer.echo(f"{result.rows} rows written to {result.path}")
    if budget is not None:
        typer.echo(
            f"images at the model's size: sides a multiple of {budget.factor}, "
            f"{budget.min_pixels:,} to {budget.max_pixels:,} pixels"
        )


@data_app.command("stats", epilog="Example: codevision data stats sft/ --tokenizer models/qwen2.5-vl-7b")
def stats_command(
    directory: Path = typer.Argument(..., help="An export folder or a folder of trajectories."),
    tokenizer: Path | None = typer.Option(None, help="Tokenizer folder, for text token lengths."),
) -> None:
    """Rows per kind and source, turns, ops, image sizes and token lengths, as JSON."""
    if not directory.is_dir():
        raise _fail(f"{directory} is not a folder")
    loaded = None
    if tokenizer is not None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise _fail("--tokenizer needs transformers: pip install 'codevision[transformers]'") from None
        try:
            loaded = AutoTokenizer.from_pretrained(str(tokenizer))
        except (OSError, ValueError) as exc:
            raise _fail(f"--tokenizer {tokenizer}: no tokenizer could be loaded from it ({exc})") from None
    try:
        stats = dataset_stats(directory, loaded)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if not stats["rows"]:
        raise _fail(f"{directory} holds no training rows or trajectories")
    typer.echo(json.dumps(stats, indent=1))


@data_app.command(
    "synth",
    epilog=(
        "Examples:\n\n"
        "  codevision data synth --teacher http://localhost:8000/v1 --source ocrbench:data/OCRBench "
        "--transforms all-orientation --kinds single,multi,crop,recovery,direct --n 500 --out sft-raw\n\n"
        "  codevision data synth --teacher http://localhost:8000/v1 --source synthetic:100 --n 100 "
        "--out sft-raw --resume"
    ),
)
def synth_command(
    teacher: str = typer.Option(
        ..., help="The teacher: server URL, model folder, scripted:FILE, or builtin:quadrants (the demo's)."
    ),
    teacher_model: str | None = typer.Option(None, help="Model name to request (default: the first the server lists)."),
    source: str = typer.Option(..., help="Source tasks, NAME:PATH."),
    transforms: str | None = typer.Option(None, help="Transforms applied to the source items."),
    original: bool = typer.Option(
        False, "--original/--no-original", help="With --transforms, also synthesise from the untransformed items."
    ),
    kinds: str = typer.Option("single,multi,crop,recovery,direct", help="Kinds, assigned to items in turn."),
    n: int = typer.Option(100, min=1, help="Items to attempt (a seeded sample of the source x transforms)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder: accepted/ and rejected/ trajectories, results, yield."),
    protocol: str = typer.Option("codevision", help="Protocol the student will be trained on."),
    system_prompt: Path | None = typer.Option(None, help=SYSTEM_PROMPT_HELP),
    calls: str = typer.Option("lenient", metavar="lenient|trl", help=CALLS_HELP),
    tools: str | None = typer.Option(None, metavar="FILE", help=TOOLS_HELP),
    tool_choice: str | None = typer.Option(None, metavar="auto|none", help=TOOL_CHOICE_HELP),
    resume: bool = typer.Option(False, help="Continue a run in --out; finished items are not redone."),
    concurrency: int = typer.Option(8, min=1, help="Items in flight."),
    seed: int = typer.Option(0, help="Seed of the sample and of the transforms."),
    timeout: float = typer.Option(120.0, min=0.1, help="Seconds to wait for one reply of the teacher."),
    retries: int = typer.Option(5, min=0, help="Attempts after the first for one request to the teacher."),
    processor: Path | None = typer.Option(None, metavar="PATH", help=PROCESSOR_HELP),
    max_pixels: int | None = typer.Option(None, min=1, help=MAX_PIXELS_HELP),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first (its earlier results are deleted)."),
) -> None:
    """Let a strong teacher solve tasks with per-item guidance; keep only correct runs whose shown images fit.

    Rejections are kept with their reason; the yield per kind is printed and written to yield.json.
    Items whose teacher, judge or sandbox failed are recorded as failed, run again with --resume, and
    make the command exit with 1; an unreachable teacher stops the run (exit 5).
    """
    import asyncio
    import random

    from rich.console import Console

    from codevision.cli.sandbox import start_sandbox
    from codevision.cli.waits import with_wait_spinner
    from codevision.eval import RunStopped
    from codevision.eval.items import build_items
    from codevision.eval.scorer import make_scorer
    from codevision.policies.factory import make_policy
    from codevision.synthesis import synthesize, yield_report

    if resume and overwrite:
        raise _fail("--resume continues the run in --out and --overwrite deletes it: choose one")
    chosen_kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    prompt_text = read_system_prompt(system_prompt)
    try:
        chosen_protocol = get_protocol(protocol, system_prompt=prompt_text, calls=calls_rules(calls))
        schemas = read_tools(tools, chosen_protocol)
        policy = make_policy(
            teacher,
            model_name=teacher_model,
            timeout=timeout,
            retries=retries,
            flag="--teacher",
            name_flag="--teacher-model",
            tools=schemas,
            tool_choice=read_tool_choice(tool_choice, schemas),
            max_pixels=max_pixels,
        )
        budget = chosen_budget(teacher, processor, max_pixels, flag="--teacher")
        benchmark = load_benchmark(source)
        chosen = parse_transforms(transforms) if transforms else []
        items = [i for i in build_items(list(benchmark), chosen, base_dir=benchmark.base_dir, seed=seed)
                 if not chosen or original or i.transform != "none"]  # fmt: skip
    except (BenchmarkError, TransformSpecError, ValueError, FileNotFoundError, ImportError) as exc:
        raise _fail(str(exc)) from exc
    if not items:
        raise _fail(f"{source} gives no items to synthesise from; check the path and --transforms")
    items = sorted(random.Random(seed).sample(items, min(n, len(items))), key=lambda i: i.key)
    if resume:
        ensure_writable(out)
    else:
        holds_run = (out / "results.jsonl").exists()
        claim_folder(out, overwrite=overwrite, hint=" or --resume to continue the run in it" if holds_run else "")
    console = Console()
    warn_unsized(console, policy, teacher, budget)
    sandbox = start_sandbox(console, max_sessions=max(256, concurrency * 2))
    try:
        work = synthesize(
            items,
            chosen_kinds,
            teacher=policy,
            sandbox=sandbox,
            protocol=chosen_protocol,
            scorer=make_scorer(),
            out=out,
            limits=budget_limits(Limits(), budget),
            concurrency=concurrency,
        )
        report = asyncio.run(with_wait_spinner(console, [("the teacher", policy)], work))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    except RunStopped as exc:
        console.print(f"[red]stopped:[/] {exc}")
        (out / "yield.json").write_text(json.dumps(yield_report(exc.store.records.values()), indent=2))
        raise typer.Exit(EXIT_MODEL_UNAVAILABLE) from None
    finally:
        sandbox.close()
    (out / "yield.json").write_text(json.dumps(report, indent=2))
    failed = 0
    for kind, stats in report.items():
        failed += stats["failed"]
        console.print(
            f"{kind}: {stats['accepted']} of {stats['attempted']} kept; rejections: {stats['rejections']}"
            + (f"; {stats['failed']} failed (run again with --resume)" if stats["failed"] else "")
        )
    if failed:
        raise typer.Exit(EXIT_CODE_FAILED)
