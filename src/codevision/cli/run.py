"""``codevision run``: one image, one question, one model — the trajectory streamed to the terminal."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from codevision.agent import Limits, arun_agent
from codevision.cli import render
from codevision.cli.budget import MAX_PIXELS_HELP, PROCESSOR_HELP, budget_limits, chosen_budget, warn_unsized
from codevision.cli.outputs import claim_folder, fresh_folder
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
from codevision.cli.sandbox import load_image, start_sandbox
from codevision.cli.waits import WaitSpinner
from codevision.policies.base import Policy
from codevision.policies.factory import make_policy
from codevision.protocols import get_protocol
from codevision.protocols.base import Protocol
from codevision.protocols.registry import DEFAULT_PROTOCOL
from codevision.task import Task
from codevision.trajectory import Trajectory, Turn
from codevision.viewer import write_viewer

DEFAULT_ROOT = Path("codevision-runs")


class TurnPrinter:
    """Prints each turn as it completes: reasoning, code, what it printed and returned, the answer."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, trajectory: Trajectory, turn: Turn) -> None:
        console = self.console
        console.rule(f"turn {turn.index + 1}")
        console.print(Panel(turn.text.strip() or "(empty reply)", title="model", expand=False, highlight=False))
        for action, outcome in zip(turn.actions, turn.outcomes, strict=False):
            if action.code:
                console.print(Syntax(action.code, "python", line_numbers=True, word_wrap=True))
            if action.bbox:
                console.print(f"crop {action.bbox} of image {action.image_index or 0}")
            style = "green" if outcome.status == "ok" else "red"
            console.print(f"[{style}]{outcome.status}[/] in {outcome.seconds * 1000:.0f} ms", highlight=False)
            if outcome.stdout:
                console.print(Panel(outcome.stdout.rstrip(), title="stdout", expand=False, highlight=False))
            if outcome.error:
                console.print(Panel(outcome.error, title="error", style="red", expand=False, highlight=False))
            for index in outcome.image_indices:
                width, height = trajectory.images[index].size
                console.print(f"image {index}: {width}x{height}")
            for op in outcome.ops:
                console.print(f"  op {op.name} {render.format_args(op.args)}", highlight=False)
        for issue in turn.issues:
            console.print(f"[yellow]issue:[/] {issue}", highlight=False)
        if turn.answer is not None:
            console.print(f"[bold]answer:[/] {turn.answer}", highlight=False)


async def _run(task: Task, policy: Policy, protocol: Protocol, limits: Limits, console: Console) -> Trajectory:
    sandbox = start_sandbox(console) if protocol.uses_sandbox else None
    try:
        async with WaitSpinner(console, [("the model", policy)]):
            return await arun_agent(task, policy, sandbox, protocol, limits, on_turn=TurnPrinter(console))
    finally:
        await policy.aclose()
        if sandbox is not None:
            sandbox.close()


def run_command(
    image: Path = typer.Argument(..., help="The image to ask about."),
    question: str = typer.Argument(..., help="The question."),
    model: str = typer.Option(
        ..., "--model", "-m", help="Server URL (http://host:port/v1), model folder, or scripted:FILE."
    ),
    model_name: str | None = typer.Option(
        None, help="Model name to request from a server (default: the first it lists)."
    ),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, help="codevision, code-tags, crop or direct."),
    system_prompt: Path | None = typer.Option(None, help=SYSTEM_PROMPT_HELP),
    calls: str = typer.Option("lenient", metavar="lenient|trl", help=CALLS_HELP),
    tools: str | None = typer.Option(None, metavar="FILE", help=TOOLS_HELP),
    tool_choice: str | None = typer.Option(None, metavar="auto|none", help=TOOL_CHOICE_HELP),
    trust_remote_code: bool = typer.Option(False, help="Let a local model folder run its own processor code."),
    processor: Path | None = typer.Option(None, metavar="PATH", help=PROCESSOR_HELP),
    max_pixels: int | None = typer.Option(None, min=1, help=MAX_PIXELS_HELP),
    max_turns: int = typer.Option(12, min=1, help="Assistant turns before stopping."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Folder for the trajectory and its viewer page (default: a new folder under {DEFAULT_ROOT}/).",
        show_default=False,
    ),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first."),
    timeout: float = typer.Option(120.0, min=0.1, help="Seconds to wait for one reply of the model."),
    retries: int = typer.Option(5, min=0, help="Attempts after the first for one request to the model."),
) -> None:
    """Let a model work on one image with code; stream each turn and save the trajectory.

    Each run gets its own folder (a new one under codevision-runs/ unless --out names one), so an
    earlier run is never replaced.

    Examples:

      codevision run receipt.jpg "What is the total?" --model http://localhost:8000/v1 --model-name Qwen2.5-VL-7B

      codevision run page.png "Who signed?" --model ./checkpoints/codevision-7b --protocol codevision

      codevision run chart.png "Which bar is tallest?" -m http://localhost:8000/v1 --processor ./Qwen3-VL-8B-Instruct
    """
    console = Console()
    try:
        chosen = get_protocol(protocol, system_prompt=read_system_prompt(system_prompt), calls=calls_rules(calls))
        schemas = read_tools(tools, chosen)
        budget = chosen_budget(model, processor, max_pixels)
        policy = make_policy(
            model,
            model_name=model_name,
            trust_remote_code=trust_remote_code,
            timeout=timeout,
            retries=retries,
            tools=schemas,
            tool_choice=read_tool_choice(tool_choice, schemas),
            max_pixels=max_pixels,
        )
    except (ValueError, ImportError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    warn_unsized(console, policy, model, budget)
    # A command line in another encoding arrives with lone surrogates; read it as UTF-8, replacing what is not.
    question = os.fsencode(question).decode("utf-8", errors="replace")
    task = Task.from_images([load_image(image)], id=image.stem, question=question)
    out = claim_folder(out, overwrite=overwrite) if out is not None else fresh_folder(DEFAULT_ROOT, task.id)
    trajectory = asyncio.run(_run(task, policy, chosen, budget_limits(Limits(max_turns=max_turns), budget), console))
    path = trajectory.save(out / task.id)
    console.rule("done")
    console.print(f"stop reason: {trajectory.stop_reason}; answer: {trajectory.final_answer!r}", highlight=False)
    if trajectory.error:
        console.print(f"[red]error:[/] {trajectory.error}", highlight=False)
    console.print(f"trajectory saved: [cyan]{path}[/]")
    console.print(f"viewer: [cyan]{write_viewer([path.parent], out / 'index.html')}[/]")
    if trajectory.stop_reason in ("model_error", "sandbox_error"):
        raise typer.Exit(render.EXIT_SANDBOX if trajectory.stop_reason == "sandbox_error" else render.EXIT_CODE_FAILED)
