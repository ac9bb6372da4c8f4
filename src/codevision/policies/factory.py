"""Turn a model specification from a command line or config file into a policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codevision.policies.base import Policy
from codevision.policies.scripted import ScriptedPolicy

if TYPE_CHECKING:
    from codevision.policies.openai import ToolChoice

SCRIPTED_PREFIX = "scripted:"
BUILTIN_PREFIX = "builtin:"


def served_model(base_url: str, timeout: float = 10.0, *, flag: str = "--model-name") -> str:
    """The first model a server lists under ``/models``, for when no model name was given; the error
    names ``flag``, the option that would have named the model."""
    import httpx

    url = base_url.rstrip("/")
    url = url if url.endswith("/v1") else f"{url}/v1"
    try:
        response = httpx.get(f"{url}/models", timeout=timeout)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"could not list the models served at {url}/models ({exc}); pass {flag}") from exc


def make_policy(
    spec: str,
    *,
    model_name: str | None = None,
    temperature: float = 0.0,
    trust_remote_code: bool = False,
    timeout: float = 120.0,
    retries: int = 5,
    flag: str = "--model",
    name_flag: str = "--model-name",
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: ToolChoice | None = None,
    max_pixels: int | None = None,
) -> Policy:
    """``http(s)://…`` an OpenAI-compatible server (``timeout`` per wait, ``retries`` after the first attempt),
    ``scripted:FILE`` a JSON list of replies, ``builtin:NAME`` a scripted policy shipped with the package,
    anything else a local model folder for transformers
    (``trust_remote_code`` runs the folder's own code). ``tools`` are rendered in the prompt (scripted replies
    see no prompt); ``tool_choice`` is sent to a server only; ``max_pixels`` caps a local model's processor
    budget (other policies size images with the agent's limits). Errors name ``flag``, the option that gave
    ``spec``, and ``name_flag``, the one that names the served model."""
    if spec.startswith(("http://", "https://")):
        from codevision.policies.openai import OpenAIPolicy

        name = model_name or served_model(spec, timeout=min(timeout, 10.0), flag=name_flag)
        return OpenAIPolicy(
            spec, name, temperature=temperature, timeout=timeout, retries=retries, tools=tools, tool_choice=tool_choice
        )
    if tool_choice is not None:
        raise ValueError(f"--tool-choice is sent to a server; {flag} {spec!r} is not one (http://…)")
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_policy(spec[len(BUILTIN_PREFIX) :], flag=flag)
    if spec.startswith(SCRIPTED_PREFIX):
        path = Path(spec[len(SCRIPTED_PREFIX) :])
        try:
            replies = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read scripted replies from {path}: {exc}") from exc
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise ValueError(f"{path} must hold a JSON list of reply strings")
        return ScriptedPolicy(replies, name=f"scripted:{path.name}")
    if Path(spec).is_dir():
        from codevision.policies.transformers_local import TransformersPolicy

        return TransformersPolicy(
            spec, temperature=temperature, trust_remote_code=trust_remote_code, tools=tools, max_pixels=max_pixels
        )
    raise ValueError(
        f"{flag} {spec!r} is neither a server URL (http://…), a model folder, scripted:FILE nor builtin:NAME"
    )


def builtin_policy(name: str, *, flag: str = "--model") -> Policy:
    """A scripted policy shipped with the package, by name: ``quadrants`` is the training demo's teacher."""
    if name == "quadrants":
        from codevision.training_demo.teacher import QuadrantTeacher

        return QuadrantTeacher()
    raise ValueError(f"{flag} builtin:{name!r} is not known; the built-in policies are: quadrants")
