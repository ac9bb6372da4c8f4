"""``codevision sandbox``: run code on images, inspect isolation, serve over HTTP."""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from pathlib import Path

import typer
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from codevision.cli import render
from codevision.sandbox import Sandbox, SandboxConfig, SandboxError, SandboxIsolationError, SandboxIsolationWarning
from codevision.sandbox.confine import LAYER_DESCRIPTIONS
from codevision.sandbox.httpapi import check_token

sandbox_app = typer.Typer(help="Run model-written image code in the secure sandbox.", no_args_is_help=True)

TOKEN_ENV = "CODEVISION_SANDBOX_TOKEN"


def sandbox_config(**settings: object) -> SandboxConfig:
    """A sandbox configuration from command-line values; a value out of range names its option."""
    try:
        return SandboxConfig(**settings)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "--" + str(error["loc"][0]).replace("_", "-")
        raise typer.BadParameter(f"{error['msg']} (got {error['input']!r})", param_hint=option) from None


def start_sandbox(console: Console, config: SandboxConfig | None = None, **settings: object) -> Sandbox:
    """Start a sandbox (``config``, or one made of ``settings``); start-up failures give a clear message
    and exit code 3."""
    config = config or sandbox_config(**settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxIsolationWarning)
            sandbox = Sandbox(config=config).start()
    except SandboxIsolationError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(render.EXIT_SANDBOX) from exc
    except SandboxError as exc:
        console.print(f"[red]error:[/] the sandbox could not start: {exc}")
        raise typer.Exit(render.EXIT_SANDBOX) from exc
    missing = sandbox.status()["missing_layers"]
    if missing:
        console.print(
            f"[yellow]warning:[/] running without isolation layers: {', '.join(missing)} "
            "(see `codevision sandbox status`)",
            highlight=False,
        )
    return sandbox


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{path}: no such file", param_hint="IMAGE") from exc
    except Image.DecompressionBombError as exc:
        raise typer.BadParameter(
            f"{path}: refused, the image is a decompression bomb ({exc})", param_hint="IMAGE"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: not a readable image ({exc})", param_hint="IMAGE") from exc


def _read_code(code_file: str | None, inline: str | None) -> str:
    if (code_file is None) == (inline is None):
        raise typer.BadParameter("give exactly one of --code FILE|- or --exec CODE")
    if inline is not None:
        return inline
    assert code_file is not None
    if code_file == "-":
        return sys.stdin.read()
    try:
        return Path(code_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {code_file}: {exc}", param_hint="--code") from exc


@sandbox_app.command(
    "exec",
    epilog=(
        "Examples:\n\n"
        "  codevision sandbox exec photo.jpg --exec 'display(image.rotate(90, expand=True))'\n\n"
        "  codevision sandbox exec page.png --code fix.py --out outputs/\n\n"
        "  cat fix.py | codevision sandbox exec a.png b.png --code - --json"
    ),
)
def exec_command(
    images: list[Path] = typer.Argument(..., help="Input images; the code sees them as `image` (first) and `images`."),
    code_file: str | None = typer.Option(None, "--code", "-c", help="File with the code to run, or - for stdin."),
    inline: str | None = typer.Option(None, "--exec", "-e", help="Code to run, given inline."),
    out: Path = typer.Option(Path("codevision-out"), "--out", "-o", help="Folder for the images the code returns."),
    timeout: float = typer.Option(10.0, help="Seconds the code may run."),
    memory_mb: int = typer.Option(2048, help="Memory the code may use, in MiB."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for machines)."),
) -> None:
    """Run code on images in a fresh sandbox session; print output, errors and traced ops, save images."""
    with render.errors_as_json(as_json):
        loaded = [load_image(path) for path in images]
        code = _read_code(code_file, inline)
        config = sandbox_config(timeout=timeout, memory_mb=memory_mb)
    console = Console(stderr=as_json)
    with start_sandbox(console, config) as sandbox:
        try:
            with sandbox.session(images=loaded) as session:
                result = session.run(code)
        except (ValueError, TypeError) as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(render.EXIT_BAD_INPUT) from exc
    saved = render.save_images(result, out)
    if as_json:
        typer.echo(render.result_json(result, saved))
    else:
        render.print_result(console, result, saved)
    raise typer.Exit(render.exit_code_for(result))


@sandbox_app.command("status", epilog="Example: codevision sandbox status --json")
def status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show which isolation layers this host provides; exit code 3 when any is missing."""
    import json

    console = Console()
    with start_sandbox(console) as sandbox:
        status = sandbox.status()
    isolation = status["isolation"]
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        table = Table(title="sandbox isolation layers", title_justify="left")
        table.add_column("layer")
        table.add_column("state")
        table.add_column("what it gives / why it is missing")
        for name, ok in isolation["available"].items():
            detail = LAYER_DESCRIPTIONS.get(name, "") if ok else isolation["reasons"].get(name, "")
            table.add_row(name, "[green]on[/]" if ok else "[red]missing[/]", detail)
        console.print(table)
        console.print(
            f"fork server pid {status['fork_server_pid']}, preloaded libraries use {status['baseline_mb']} MiB "
            f"of address space; running as {'root' if isolation['running_as_root'] else 'an unprivileged user'}"
        )
    raise typer.Exit(render.EXIT_SANDBOX if status["missing_layers"] else render.EXIT_OK)


@sandbox_app.command(
    "serve",
    epilog=(
        "Example:\n\n"
        f"  {TOKEN_ENV}=s3cret codevision sandbox serve --host 0.0.0.0 --port 8765 --workers 8\n\n"
        "Clients: codevision.sandbox.service.RemoteSandbox(url, token)."
    ),
)
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, min=0, max=65535, help="Port to listen on (0 picks a free one)."),
    token: str | None = typer.Option(
        None, help=f"Bearer token clients must send (default: ${TOKEN_ENV}, else a random one is printed)."
    ),
    workers: int = typer.Option(2, help="Code cells executing at the same time."),
    timeout: float = typer.Option(10.0, help="Default seconds per run."),
    memory_mb: int = typer.Option(2048, help="Memory per session, in MiB."),
    max_sessions: int = typer.Option(256, help="Live sessions before new ones wait."),
    idle_timeout: float = typer.Option(600.0, help="Close sessions idle for this many seconds."),
    queue_timeout: float | None = typer.Option(
        None, help="Seconds a run may wait for a worker before the client gets 503 (default: wait)."
    ),
) -> None:
    """Serve the sandbox over HTTP (token auth, health endpoint) for rollouts spread over machines."""
    from codevision.sandbox.service import serve

    if not idle_timeout > 0:
        raise typer.BadParameter(f"must be more than 0 seconds, not {idle_timeout}", param_hint="--idle-timeout")
    console = Console()
    token = token or os.environ.get(TOKEN_ENV)
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    try:
        check_token(token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--token / ${TOKEN_ENV}") from exc
    config = sandbox_config(
        workers=workers, timeout=timeout, memory_mb=memory_mb, max_sessions=max_sessions, queue_timeout=queue_timeout
    )

    def ready(url: str) -> None:
        console.print(f"codevision sandbox serving on [cyan]{url}[/]")
        if generated:
            console.print(f"token: [bold]{token}[/] (set ${TOKEN_ENV} to choose one)")

    try:
        serve(host, port, token, config, idle_timeout=idle_timeout, ready=ready)
    except SandboxError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(render.EXIT_SANDBOX) from exc
    except OSError as exc:
        console.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(render.EXIT_BAD_INPUT) from exc
