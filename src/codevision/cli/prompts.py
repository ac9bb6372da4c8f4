"""``--system-prompt FILE``: a setup reproduced with its own released system prompt, on every command
that puts tasks to a model or writes the prompts a model is trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

SYSTEM_PROMPT_HELP = "File whose text replaces the protocol's system prompt (UTF-8)."


def read_system_prompt(path: Path | None) -> str | None:
    """The file's text; a missing, unreadable, non-UTF-8 or empty file is a usage error naming it."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        hint = "--system-prompt"
        raise typer.BadParameter(f"{path} is not UTF-8 text (byte {exc.start + 1})", param_hint=hint) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise typer.BadParameter(f"{path} cannot be read: {reason}", param_hint="--system-prompt") from None
    if not text.strip():
        raise typer.BadParameter(f"{path} is empty", param_hint="--system-prompt")
    return text


def prompt_digest(text: str | None) -> str | None:
    """What a run records of its system prompt, so resuming with another one is refused."""
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text is not None else None
