"""``codevision train``: supervised fine-tuning on TRL from trajectories, and merging LoRA adapters."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from codevision.cli.outputs import claim_folder, ensure_writable
from codevision.cli.render import EXIT_BAD_INPUT, EXIT_CODE_FAILED
from codevision.train.config import ConfigError, SFTSettings, as_dict, load_config

train_app = typer.Typer(help="Train models: SFT on trajectories and multi-turn GRPO, on TRL.", no_args_is_help=True)

SFT_EPILOG = (
    "Examples:\n\n"
    "  codevision train sft --config recipes/sft/qwen2_5_vl_7b.yaml\n\n"
    "  codevision train sft --config recipes/sft/tiny_cpu.yaml model=./tiny data=[runs/demo] output_dir=out\n\n"
    "  codevision train sft --config sft.yaml learning_rate=2e-5 finetune=lora lora.r=8 --dry-run\n\n"
    "  codevision train sft --config sft.yaml --resume        # after a kill, from the newest checkpoint\n\n"
    "  accelerate launch --config_file recipes/accelerate/fsdp.yaml -m codevision.cli train sft --config sft.yaml\n\n"
    "Settings are documented in docs/training.md; an unknown key is an error naming it."
)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@train_app.command("sft", epilog=SFT_EPILOG)
def sft_command(
    config: Path = typer.Option(..., "--config", "-c", help="YAML file of settings (see recipes/sft/)."),
    overrides: list[str] = typer.Argument(None, help="Settings that replace the file's: key=value, lora.r=8."),
    resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint in output_dir."),
    overwrite: bool = typer.Option(False, help="Clear a non-empty output_dir first."),
    dry_run: bool = typer.Option(False, help="Check the settings and plan every sequence; train nothing."),
    json_output: bool = typer.Option(False, "--json", help="Print the data plan (and the outcome) as JSON."),
) -> None:
    """Fine-tune a Qwen-VL model on trajectories with TRL's SFTTrainer, on the tokens evaluation renders."""
    from codevision.train.common import TrainingError, require_training_stack
    from codevision.train.examples import DataError
    from codevision.train.sft import prepare, train

    console = Console(stderr=json_output)
    try:
        settings = load_config(SFTSettings, config, overrides or [])
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    output_dir = Path(settings.output_dir)
    # Under accelerate every process runs this command; only the first one claims the folder.
    if not dry_run and os.environ.get("RANK", "0") == "0":
        _claim_output(output_dir, resume=resume, overwrite=overwrite)
    try:
        require_training_stack()
        with console.status("reading and rendering the training data"):
            prepared = prepare(settings)
    except (DataError, TrainingError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    summary = prepared.summary()
    _print_plan(console, settings, prepared, summary)
    if dry_run:
        if json_output:
            typer.echo(json.dumps({"plan": summary, "config": as_dict(settings)}, indent=1))
        return
    try:
        # TRL's progress and log lines go to stderr with --json, so stdout holds the JSON alone.
        with contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext():
            outcome = train(prepared, resume=resume)
    except TrainingError as exc:
        raise _fail(str(exc)) from None
    except DataError as exc:
        raise _fail(f"{exc}; fix the input, then continue with --resume", EXIT_CODE_FAILED) from None
    result = {
        "final": str(outcome.final),
        "steps": outcome.steps,
        "train_loss": outcome.train_loss,
        "samples_per_second": outcome.samples_per_second,
        "tokens_per_second": outcome.tokens_per_second,
        "resumed_from": str(outcome.resumed_from) if outcome.resumed_from else None,
    }
    if json_output:
        typer.echo(json.dumps({"plan": summary, "outcome": result}, indent=1))
        return
    console.print(
        f"trained {outcome.steps} steps, loss {_number(outcome.train_loss)}, "
        f"{_number(outcome.samples_per_second)} samples/s, {_number(outcome.tokens_per_second)} tokens/s"
    )
    console.print(f"model: {outcome.final}  (codevision eval -m {outcome.final} ...)")


GRPO_EPILOG = (
    "Examples:\n\n"
    "  codevision data export rl --source vstar:data/vstar --transforms all-orientation --format trl -o rl.parquet\n\n"
    "  codevision train grpo --config recipes/grpo/qwen2_5_vl_7b.yaml model=runs/sft-7b/final data=[rl.parquet]\n\n"
    "  codevision train grpo --config recipes/grpo/tiny_cpu.yaml --resume\n\n"
    "Settings are documented in docs/training.md; an unknown key is an error naming it."
)


@train_app.command("grpo", epilog=GRPO_EPILOG)
def grpo_command(
    config: Path = typer.Option(..., "--config", "-c", help="YAML file of settings (see recipes/grpo/)."),
    overrides: list[str] = typer.Argument(None, help="Settings that replace the file's: key=value, lora.r=8."),
    resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint in output_dir."),
    overwrite: bool = typer.Option(False, help="Clear a non-empty output_dir first."),
    json_output: bool = typer.Option(False, "--json", help="Print the outcome as JSON (TRL's log goes to stderr)."),
) -> None:
    """Multi-turn GRPO on TRL's GRPOTrainer: the sandbox runs the protocol's tool, the evaluation rewards pay."""
    from codevision.train.common import TrainingError, require_training_stack
    from codevision.train.config import GRPOSettings
    from codevision.train.grpo import launched_processes, step_shape, train_grpo, with_step_shape

    try:
        settings = load_config(GRPOSettings, config, overrides or [])
        shaped = with_step_shape(settings, launched_processes())
    except (ConfigError, TrainingError) as exc:
        raise _fail(str(exc)) from None
    if os.environ.get("RANK", "0") == "0":
        _claim_output(Path(settings.output_dir), resume=resume, overwrite=overwrite)
        typer.echo(step_shape(shaped, launched_processes()), err=json_output)
    try:
        require_training_stack()
        with contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext():
            outcome = train_grpo(settings, resume=resume)
    except (TrainingError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    result = {
        "final": str(outcome.final),
        "steps": outcome.steps,
        "resumed_from": str(outcome.resumed_from) if outcome.resumed_from else None,
    }
    if json_output:
        typer.echo(json.dumps({"outcome": result}, indent=1))
        return
    typer.echo(f"trained {outcome.steps} steps; model: {outcome.final}")


@train_app.command(
    "merge",
    epilog="Example:\n\n  codevision train merge runs/sft/checkpoint-500 --out runs/sft/merged-500",
)
def merge_command(
    adapter: Path = typer.Argument(..., help="A LoRA run's adapter/ or checkpoint-N/ folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged model."),
    base: str | None = typer.Option(None, help="Base model (default: the one named in the adapter's config)."),
    dtype: str = typer.Option("bfloat16", help="Precision of the merged weights: float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, help="Allow model or processor code from the model folder."),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first."),
) -> None:
    """Merge LoRA adapters into the base model, so vLLM, transformers serve and eval -m load one folder."""
    from codevision.train.common import TrainingError, require_training_stack
    from codevision.train.merge import MergeError, merge_adapter

    if dtype not in ("float32", "bfloat16", "float16"):
        raise _fail(f"--dtype {dtype!r} is not known; choose float32, bfloat16 or float16")
    if not (adapter / "adapter_config.json").is_file():
        raise _fail(
            f"{adapter} holds no LoRA adapter (adapter_config.json); give a LoRA run's adapter/ or checkpoint-N/"
        )
    claim_folder(out, overwrite=overwrite)
    try:
        require_training_stack()
        merged = merge_adapter(adapter, out, base_model=base, dtype=dtype, trust_remote_code=trust_remote_code)
    except (MergeError, TrainingError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"merged model: {merged}")


def _claim_output(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """A fresh output_dir, or the one being resumed; never a finished or foreign folder silently reused."""
    if resume and overwrite:
        raise _fail("--resume continues the run in output_dir and --overwrite clears it: choose one")
    if resume:
        if not output_dir.is_dir():
            raise _fail(f"output_dir {output_dir} does not exist; run without --resume to start")
        ensure_writable(output_dir, "output_dir")
        return
    claim_folder(output_dir, overwrite=overwrite, option="output_dir", hint=", or --resume to continue its run")


def _print_plan(console: Console, settings: SFTSettings, prepared: Any, summary: dict[str, Any]) -> None:
    table = Table(title="training data", show_header=False)
    budget = prepared.budget
    rows = [
        (
            "conversations",
            f"{summary['conversations']} ({summary['left_out']} left out, {summary['unscored']} unscored)",
        ),
        ("sequences", f"{summary['train_sequences']} train, {summary['eval_sequences']} held out"),
        ("over max_length", f"{summary['dropped']} dropped, {summary['truncated']} truncated ({settings.overflow})"),
        ("tokens", f"{summary['tokens']:,} ({summary['trained_tokens']:,} trained)"),
        ("images", f"{summary['images']:,} at {budget.min_pixels:,}-{budget.max_pixels:,} px, factor {budget.factor}"),
        ("recorded replies", f"{summary['sampled_replies']} as sampled, {summary['retokenised_replies']} re-tokenised"),
        (
            "model",
            f"{settings.model} ({settings.finetune}, vision {'frozen' if settings.freeze_vision else 'trained'})",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for line in (prepared.collected.left_out + prepared.plan.dropped + prepared.plan.truncated)[:5]:
        console.print(f"  [dim]{line}[/dim]")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
