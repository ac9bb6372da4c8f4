"""Where commands write: never over earlier results unless asked, and checked before any model work.

Every command that writes a folder or a file refuses one that already holds something unless
``--overwrite`` is given, and then clears it first, so no stale image or row of an earlier run is
left mixed with the new ones. The destination is created and a probe file written and removed before
the command starts its real work, so an unwritable ``--out`` fails in a second, not after an hour of
model calls.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import typer


def claim_folder(folder: Path, *, overwrite: bool, option: str = "--out", hint: str = "") -> Path:
    """``folder``, empty and writable: an existing non-empty one is an error unless ``overwrite``,
    which clears it. ``hint`` is added to the error (e.g. how to resume instead)."""
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is a file, not a folder", param_hint=option)
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise typer.BadParameter(
                f"{folder} is not empty; pass --overwrite to clear it first{hint}, or choose another folder",
                param_hint=option,
            )
        _refuse_to_clear(folder, option)
        shutil.rmtree(folder)
    ensure_writable(folder, option)
    return folder


def claim_file(path: Path, *, overwrite: bool, option: str = "--out") -> Path:
    """``path``, writable: an existing file is an error unless ``overwrite`` (the caller then replaces it)."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; name the file to write", param_hint=option)
    if path.exists() and not overwrite:
        raise typer.BadParameter(
            f"{path} already exists; pass --overwrite to replace it, or choose another file", param_hint=option
        )
    ensure_writable(path.parent, option)
    return path


def fresh_folder(root: Path, name: str, option: str = "--out") -> Path:
    """A new folder under ``root`` named by the time and ``name``: repeated runs never share one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}" if name else stamp
    for attempt in range(1, 1000):
        folder = root / (base if attempt == 1 else f"{base}-{attempt}")
        if not folder.exists():
            ensure_writable(folder, option)
            return folder
    raise typer.BadParameter(f"no free folder name under {root}", param_hint=option)


def ensure_writable(folder: Path, option: str = "--out") -> None:
    """Create ``folder`` and prove a file can be written in it; a clear error naming it if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise typer.BadParameter(f"{folder} cannot be written: {reason}", param_hint=option) from None


def _refuse_to_clear(folder: Path, option: str) -> None:
    """``--overwrite`` clears a results folder, never the one the user stands in or one above it."""
    target = folder.resolve()
    protected = {Path("/"), Path.home().resolve()}
    cwd = Path(os.getcwd()).resolve()
    if target in protected or target == cwd or target in cwd.parents:
        raise typer.BadParameter(
            f"--overwrite would delete {target}, which holds the current folder or is your home; "
            "name a results folder instead",
            param_hint=option,
        )
