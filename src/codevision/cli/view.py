"""``codevision view``: one HTML page to read trajectories in a browser."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer
from rich.console import Console

from codevision.cli.outputs import ensure_writable
from codevision.cli.render import EXIT_BAD_INPUT
from codevision.viewer import BuildProgress, ForeignFilesFolder, collect, files_folder_of, write_page

EPILOG = (
    "Examples:\n\n"
    "codevision view runs/2025-01-07                   # every trajectory under a run folder\n\n"
    "codevision view runs/a runs/b --out compare.html  # several runs on one page\n\n"
    "codevision view runs/a/task-17 --open             # one trajectory, opened in the browser\n\n"
    "codevision view runs/a/task-17 --self-contained   # one file to mail, images inside"
)


def view_command(
    paths: list[Path] = typer.Argument(
        ...,
        help="Trajectory folders, trajectory.json files, or run folders searched at any depth.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("trajectories.html"), "--out", "-o", help="Where to write the page."),
    self_contained: bool = typer.Option(
        False,
        "--self-contained",
        help="Put everything, images included, in the one page file (for a few trajectories: it grows with them).",
    ),
    open_page: bool = typer.Option(False, "--open", help="Open the page in the default browser afterwards."),
) -> None:
    """Write an HTML page to browse trajectories turn by turn.

    The page shows each task's question, the model's reasoning, highlighted code, outputs,
    images and op traces, with filters by correctness, stop reason, benchmark, transform, run
    and text. Thumbnails, full images and the trajectories' bodies go into a folder beside the
    page (OUT's name with _files) and load as they are looked at, so runs of thousands open at
    once; keep the folder with the page. No server is needed. Prints the page's path; exits with
    2 when no trajectory could be loaded.
    """
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise typer.BadParameter(f"{', '.join(missing)} does not exist", param_hint="PATHS")
    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; name the page file to write", param_hint="--out")
    ensure_writable(out.parent)
    with BuildProgress(Console(stderr=True)) as progress:
        collection = collect(paths, progress)
        if not collection.loaded and not collection.failures:
            typer.echo(f"error: no trajectory.json under {', '.join(map(str, paths))}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        try:
            write_page(collection, out, self_contained=self_contained, progress=progress)
        except ForeignFilesFolder as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(str(out))
    if not self_contained:
        typer.echo(f"with its files in {files_folder_of(out)}", err=True)
    if collection.failures:
        typer.echo(f"warning: {len(collection.failures)} could not be loaded; the page lists why", err=True)
    if not collection.loaded:
        typer.echo("error: no trajectory could be loaded", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if open_page and not webbrowser.open(out.resolve().as_uri()):
        typer.echo("warning: no browser could be opened", err=True)
