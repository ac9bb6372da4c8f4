"""Top-level ``codevision`` command: wires the sub-command groups together."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from codevision import __version__
from codevision.agent import run_agent
from codevision.cli import render
from codevision.cli.data import data_app
from codevision.cli.demo_train import EPILOG as DEMO_TRAIN_EPILOG
from codevision.cli.demo_train import demo_train_command
from codevision.cli.evaluate import bench_app, eval_app
from codevision.cli.outputs import claim_folder
from codevision.cli.run import TurnPrinter, run_command
from codevision.cli.sandbox import sandbox_app, start_sandbox
from codevision.cli.train import train_app
from codevision.cli.view import EPILOG as VIEW_EPILOG
from codevision.cli.view import view_command
from codevision.demo import EXAMPLES
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.protocols.registry import DEFAULT_PROTOCOL
from codevision.viewer import write_viewer

# Marks a folder written by the demo, which a later demo may replace without --overwrite.
DEMO_MARKER = ".codevision-demo"

app = typer.Typer(
    name="codevision",
    help=(
        "Vision-language models that think with images by writing code.\n\n"
        "Exit codes: 0 success; 1 the code raised or timed out; 2 bad input or usage; "
        "3 the sandbox could not start or lacks a required isolation layer; 4 the session was killed or crashed."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.command("run")(run_command)
app.command("view", epilog=VIEW_EPILOG)(view_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"codevision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """codevision command line."""


demo_app = typer.Typer(
    help="The bundled demos: the agent on three photos (no model), or `demo train` (a tiny model learns).",
    epilog="Examples:\n\n  codevision demo --out codevision-demo\n\n  codevision demo train",
    invoke_without_command=True,
)
app.add_typer(demo_app, name="demo")
demo_app.command("train", epilog=DEMO_TRAIN_EPILOG)(demo_train_command)


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    out: Path = typer.Option(
        Path("codevision-demo"), "--out", "-o", help="Folder for the trajectories and the viewer."
    ),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out that does not hold an earlier demo."),
) -> None:
    """Run the agent end to end on the bundled examples: no model server, no GPU, no download.

    Three photos (a receipt taken sideways, a sign upside down, a label in a mirror) are the tasks;
    a scripted policy plays the model, writing the code a trained model would; the code runs in the
    real sandbox; each turn is streamed; the trajectories are saved and an HTML viewer is written.
    A folder holding an earlier demo is replaced; any other non-empty folder needs --overwrite.
    `codevision demo train` trains a tiny model instead (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        return
    claim_folder(out, overwrite=overwrite or (out / DEMO_MARKER).exists())
    (out / DEMO_MARKER).write_text("codevision demo output; `codevision demo` replaces this folder\n")
    console = Console()
    protocol = get_protocol(DEFAULT_PROTOCOL)
    printer = TurnPrinter(console)
    saved = []
    correct = 0
    with start_sandbox(console, timeout=30.0) as sandbox:
        for example in EXAMPLES:
            console.rule(f"[bold]{example.id}[/]: {example.question}")
            policy = ScriptedPolicy(list(example.replies), name="scripted-example")
            trajectory = run_agent(example.task(), policy, sandbox, protocol, on_turn=printer)
            trajectory.score = {"correct": trajectory.final_answer == example.answer}
            correct += trajectory.score["correct"]
            saved.append(trajectory.save(out / example.id).parent)
    viewer = write_viewer(saved, out / "index.html", self_contained=True)  # three trajectories: one file to mail
    console.rule("done")
    console.print(f"{correct} of {len(EXAMPLES)} answered correctly; trajectories in [cyan]{out}[/]")
    console.print(f"viewer: [cyan]{viewer}[/]  (open it in a browser)")
    raise typer.Exit(render.EXIT_OK if correct == len(EXAMPLES) else render.EXIT_CODE_FAILED)


def main() -> None:
    app()
