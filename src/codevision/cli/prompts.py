"""``--system-prompt FILE`` and ``--tools FILE``: a setup reproduced with its own released prompt and tool
schemas, on every command that puts tasks to a model or writes the prompts a model is trained on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from codevision.chat.tools import PROTOCOL_TOOLS, ToolsFileError, load_tools

if TYPE_CHECKING:
    from codevision.policies.openai import ToolChoice
    from codevision.protocols.base import Protocol
    from codevision.protocols.toolcalls import CallRules

SYSTEM_PROMPT_HELP = "File whose text replaces the protocol's system prompt (UTF-8)."
TOOLS_HELP = (
    "JSON or YAML file of tool schemas to render in the prompt, or 'protocol' for the protocol's own "
    "(default: none; the system prompt describes the tool). See docs/chat.md."
)
TOOL_CHOICE_HELP = (
    "tool_choice sent with --tools to a server: auto or none (default: not sent, which servers read as auto; "
    "vLLM without a tool parser needs none). See docs/chat.md."
)
_TOOL_CHOICES = ("auto", "none")
CALLS_HELP = (
    "How tool calls are read and answered: lenient (repairs JSON, runs one call per reply, reports problems) "
    "or trl (as TRL's GRPO tool loop does, to evaluate as `train grpo` trains). See docs/agent.md."
)


def calls_rules(value: str) -> CallRules:
    """``--calls``, checked: a usage error names the two rules."""
    from codevision.protocols.toolcalls import CALL_RULES

    if value not in CALL_RULES:
        raise typer.BadParameter(
            f"{value!r} is not a call rule; choose one of: {', '.join(CALL_RULES)}", param_hint="--calls"
        )
    return value  # type: ignore[return-value]


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


def read_tools(value: str | None, protocol: Protocol) -> list[dict[str, Any]] | None:
    """The schemas ``--tools`` names: ``protocol``'s own for the word ``protocol``, else a file's (see
    :func:`~codevision.chat.tools.load_tools`); a bad file or a protocol without schemas is a usage error."""
    if value is None:
        return None
    if value == PROTOCOL_TOOLS:
        schemas = protocol.tool_schemas()
        if not schemas:
            raise typer.BadParameter(
                f"the {protocol.name} protocol has no function tool to describe; give a file of schemas "
                "(./protocol for a file of that name) or drop --tools",
                param_hint="--tools",
            )
        return schemas
    try:
        return load_tools(value)
    except ToolsFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tools") from None


def read_tool_choice(value: str | None, tools: Sequence[Mapping[str, Any]] | None) -> ToolChoice | None:
    """``--tool-choice``, checked: one of auto/none, and only beside ``--tools``."""
    if value is None:
        return None
    if value not in _TOOL_CHOICES:
        raise typer.BadParameter(f"{value!r} is not auto or none", param_hint="--tool-choice")
    if tools is None:
        raise typer.BadParameter("it is sent with tool schemas; add --tools", param_hint="--tool-choice")
    return value  # type: ignore[return-value]


def tools_digest(tools: Sequence[Mapping[str, Any]] | None) -> str | None:
    """What a run records of its tool schemas, so resuming with others is refused; key order counts, as the
    chat template renders it."""
    if tools is None:
        return None
    return hashlib.sha256(json.dumps(list(tools), ensure_ascii=False).encode()).hexdigest()[:16]
