"""Terminal rendering of sandbox results, shared by ``sandbox exec`` and ``demo``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from codevision.sandbox import RunResult

EXIT_OK = 0
EXIT_CODE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SANDBOX = 3
EXIT_SESSION_DIED = 4
EXIT_MODEL_UNAVAILABLE = 5


def exit_code_for(result: RunResult) -> int:
    if result.ok:
        return EXIT_OK
    if result.status in ("killed", "crashed"):
        return EXIT_SESSION_DIED
    return EXIT_CODE_FAILED


def save_images(result: RunResult, out_dir: Path, prefix: str = "output") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, img in enumerate(result.images):
        path = out_dir / f"{prefix}_{index}.png"
        img.save(path)
        paths.append(path)
    return paths


def format_value(value: object) -> str:
    """A number for a table cell ("–" for missing)."""
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in args.items() if value is not None)


def print_result(console: Console, result: RunResult, saved: list[Path], code: str | None = None) -> None:
    if code is not None:
        console.print(Panel(Syntax(code, "python", line_numbers=True, word_wrap=True), title="code", expand=False))
    style = {"ok": "green", "error": "red", "timeout": "yellow"}.get(result.status, "bold red")
    console.print(f"[bold]status:[/] [{style}]{result.status}[/]  ({result.duration * 1000:.1f} ms)")
    if result.stdout:
        console.print(Panel(result.stdout.rstrip("\n"), title="stdout", expand=False, highlight=False))
    if result.stderr:
        console.print(Panel(result.stderr.rstrip("\n"), title="stderr", style="yellow", expand=False, highlight=False))
    if result.error:
        console.print(Panel(result.error, title="error", style="red", expand=False, highlight=False))
    if result.ops:
        table = Table(title="image operations (runtime trace)", title_justify="left")
        for column in ("#", "op", "arguments", "line", "operand", "result"):
            table.add_column(column)
        for index, op in enumerate(result.ops):
            operand = f"#{op.operand.id} {op.operand.size}" if op.operand else ""
            produced = f"#{op.result.id} {op.result.size}" if op.result else ""
            table.add_row(str(index), op.name, format_args(op.args), str(op.line or ""), operand, produced)
        console.print(table)
    for path, info in zip(saved, result.image_info, strict=True):
        console.print(f"image saved: [cyan]{path}[/] ({info.size[0]}x{info.size[1]}, {info.mode})")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def result_json(result: RunResult, saved: list[Path]) -> str:
    payload = result.to_dict()
    for entry, path in zip(payload["images"], saved, strict=True):
        entry["path"] = str(path)
    return json.dumps(payload, indent=2, ensure_ascii=False)


@contextmanager
def errors_as_json(enabled: bool) -> Iterator[None]:
    """In a ``--json`` mode, a bad input is reported as ``{"error": ..., "exit_code": 2}`` on stdout, so
    a program reading the output always gets JSON; otherwise the usual message is printed."""
    try:
        yield
    except typer.BadParameter as exc:
        if not enabled:
            raise
        typer.echo(json.dumps({"error": exc.format_message(), "exit_code": EXIT_BAD_INPUT}))
        raise typer.Exit(EXIT_BAD_INPUT) from None
