"""``codevision demo train``: data, SFT, GRPO and evaluation of a tiny model, on a laptop's CPU, offline."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from codevision.cli import render

# Marks a folder written by `demo train`, which a later one may replace without --overwrite.
DEMO_TRAIN_MARKER = ".codevision-demo-train"

EPILOG = (
    "Examples:\n\n"
    "  codevision demo train                      # the full run, about 15 minutes on 2 cores\n\n"
    "  codevision demo train --quick -o quick     # the tests' run: fewer held-out pictures, about 5.5 minutes\n\n"
    "  codevision demo train --resume             # continue a run that was stopped"
)


def demo_train_command(
    out: Path = typer.Option(Path("codevision-demo-train"), "--out", "-o", help="Folder for every stage's output."),
    quick: bool = typer.Option(False, help="The shortened run (12 held-out pictures instead of 32), as in the tests."),
    seed: int = typer.Option(0, help="Seed of the tasks, the model's weights and both trainers."),
    resume: bool = typer.Option(False, help="Continue the run in --out: finished stages are not run again."),
    overwrite: bool = typer.Option(False, help="Clear a non-empty --out first (an earlier demo run included)."),
) -> None:
    """Watch the whole life of a model: teacher data, SFT, GRPO with the dense reward, evaluation.

    A task whose answer needs the picture turned upright (four coloured quadrants, rotated), a
    scripted teacher that solves it through the real agent loop and sandbox (`data synth`), a tiny
    Qwen2.5-VL built from a config with a tokenizer trained on the demo's text, `train sft` on the
    teacher data, `train grpo` from the SFT model on other pictures, and `eval` of the three
    checkpoints on held-out pictures. Every stage is a real codevision command, printed as it
    runs, its output in --out/logs. The report page (report.html) shows the curves and the
    before/after table. Needs the training extra (torch, TRL): `make demo-train` installs it.
    """
    from codevision.train.common import TrainingError, require_training_stack
    from codevision.training_demo.pipeline import (
        FULL,
        QUICK,
        Demo,
        PlanMismatch,
        StageFailed,
        StageResult,
        replace_seed,
    )
    from codevision.training_demo.report import summarize, summary_lines, write_report

    if resume and overwrite:
        raise typer.BadParameter("--resume continues the run in --out and --overwrite deletes it: choose one")
    _claim(out, resume=resume, overwrite=overwrite)
    console = Console()
    try:
        require_training_stack()
    except TrainingError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))} (or run `make demo-train`)")
        raise typer.Exit(render.EXIT_BAD_INPUT) from None
    (out / DEMO_TRAIN_MARKER).write_text("codevision demo train output; continue it with --resume\n")
    # A terminate signal unwinds like Ctrl-C, so the running command is stopped with the demo.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    plan = replace_seed(QUICK if quick else FULL, seed)
    stage_seconds: dict[str, float] = {}
    earlier = _earlier_stage_seconds(out)
    resumed: list[bool] = []
    started = time.monotonic()
    with console.status("") as status:
        current = {"name": "", "since": time.monotonic()}

        def on_line(line: str) -> None:
            elapsed = time.monotonic() - current["since"]
            status.update(f"[bold]{current['name']}[/] {elapsed:.0f} s  [dim]{escape(line.strip()[-90:])}[/]")

        def on_start(name: str) -> None:
            current.update(name=name, since=time.monotonic())
            status.update(f"[bold]{name}[/]")

        def on_command(command: list[str]) -> None:
            console.print(f"[dim]$ codevision {escape(shlex.join(command[3:]))}[/]")

        def on_stage(name: str, result: StageResult) -> None:
            # A stage done by an earlier run keeps the time that run measured.
            stage_seconds[name] = earlier.get(name, 0.0) if result.skipped else round(result.seconds, 1)
            resumed.append(result.skipped)
            note = "done earlier" if result.skipped else f"{result.seconds:.0f} s"
            console.print(f"[green]✓[/] {name}: {note}")

        demo = Demo(out, plan, on_line=on_line, on_start=on_start, on_command=on_command)
        try:
            demo.run(on_stage)
        except PlanMismatch as exc:
            console.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(render.EXIT_BAD_INPUT) from None
        except StageFailed as exc:
            console.print(f"[red]stopped:[/] {escape(str(exc))}")
            console.print(f"fix the cause, then continue with: codevision demo train --resume -o {out}")
            raise typer.Exit(render.EXIT_CODE_FAILED) from None
    if not any(resumed):  # the wall-clock time, between stages included; a resumed run sums its stages
        stage_seconds["total"] = round(time.monotonic() - started, 1)
    summary = summarize(out, stage_seconds)
    page = write_report(out, summary)
    for line in summary_lines(summary):
        console.print(line, markup=False, highlight=False)
    console.print(f"report: [cyan]{page}[/]  (open it in a browser)")


def _earlier_stage_seconds(out: Path) -> dict[str, float]:
    from codevision.training_demo.report import SUMMARY_FILE

    try:
        return dict(json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))["stages"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _claim(out: Path, *, resume: bool, overwrite: bool) -> None:
    """--resume continues a demo run; otherwise a non-empty --out (an earlier run included: it took
    minutes to make) is cleared only with --overwrite."""
    from codevision.cli.outputs import claim_folder

    marker = out / DEMO_TRAIN_MARKER
    if resume:
        if out.exists() and any(out.iterdir()) and not marker.exists():
            raise typer.BadParameter(f"{out} holds no demo run to continue", param_hint="--resume")
    else:
        hint = " or --resume to continue the run in it" if marker.exists() else ""
        claim_folder(out, overwrite=overwrite, hint=hint)
    out.mkdir(parents=True, exist_ok=True)
