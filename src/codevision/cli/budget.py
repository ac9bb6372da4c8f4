"""``--processor`` and ``--max-pixels``: images sized the way the model's own processor will size them.

A local model folder carries its processor, so the agent reads the budget from it. A server does
not say how it resizes images, and a wrong guess costs twice: the server resizes every image again
(the trajectory's recorded sizes are not what the model saw) and training, which reads the
checkpoint's processor, gets other image tokens than evaluation. So the commands that put tasks to a
model take the served checkpoint's processor config, and warn when a Qwen3-VL is served without it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from codevision.agent import Limits
from codevision.chat.budget import ImageBudget
from codevision.policies.base import Policy

PROCESSOR_HELP = (
    "The served model's folder or its preprocessor_config.json: images are sized as its processor sizes them "
    "(default for servers and scripted replies: Qwen2.5-VL's factor 28, 3,136 to 1,003,520 pixels). See docs/chat.md."
)
MAX_PIXELS_HELP = "Largest image shown to the model, in pixels (replaces the processor's maximum; 1003520 = 1280·28²)."


def is_model_folder(spec: str) -> bool:
    """Whether ``--model`` names a local model folder, whose processor sizes images itself."""
    return not spec.startswith(("http://", "https://", "scripted:", "builtin:")) and Path(spec).is_dir()


def chosen_budget(
    spec: str, processor: Path | None, max_pixels: int | None, *, flag: str = "--model"
) -> ImageBudget | None:
    """The budget the agent's limits must carry for the policy of ``spec``, or None to keep the defaults.

    A model folder's budget is its processor's (``--max-pixels`` goes to the policy instead), so
    ``--processor`` with a folder is refused rather than silently ignored.
    """
    if is_model_folder(spec):
        if processor is not None:
            raise ValueError(
                f"{flag} {spec} is a model folder, whose own processor sizes images; --processor is for a server "
                "or scripted replies (use --max-pixels to cap the folder's budget)"
            )
        return None
    return flag_budget(processor, max_pixels)


def flag_budget(processor: Path | None, max_pixels: int | None) -> ImageBudget | None:
    """The budget ``--processor`` and ``--max-pixels`` give (None when neither is given)."""
    if processor is None and max_pixels is None:
        return None
    budget = ImageBudget.from_config(processor) if processor is not None else Limits().image_budget
    if max_pixels is None:
        return budget
    if max_pixels < budget.min_pixels:
        raise ValueError(f"--max-pixels {max_pixels:,} is below the processor's minimum of {budget.min_pixels:,}")
    return replace(budget, max_pixels=max_pixels)


def budget_limits(limits: Limits, budget: ImageBudget | None) -> Limits:
    """``limits`` sizing images with ``budget`` when one was chosen."""
    return limits if budget is None else limits.with_image_budget(budget)


def warn_unsized(console: Console, policy: Policy, spec: str, budget: ImageBudget | None) -> None:
    """Say so when a served Qwen3-VL would get images sized for Qwen2.5-VL (the defaults)."""
    name = (policy.name or "").lower().replace("_", "-")
    if budget is None and spec.startswith(("http://", "https://")) and "qwen3-vl" in name:
        console.print(
            f"[yellow]warning:[/] images are sized for Qwen2.5-VL (factor 28), but {policy.name} looks like a "
            "Qwen3-VL (factor 32, 65,536-pixel minimum): pass --processor with its folder or preprocessor_config.json"
        )
