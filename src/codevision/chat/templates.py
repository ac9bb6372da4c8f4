"""The chat templates shipped with codevision, and which template renders a given model's conversations.

Qwen2.5-VL's own template cannot render a ``tool`` message (it prints ``<|im_start|>tool``, a role
the model never saw), and TRL's GRPO trainer refuses it for tool use. Qwen3-VL's can, but adds a
``# Tools`` block to the system turn whenever a trainer passes ``tools=``. The shipped template
``codevision_qwen_vl.jinja`` is Qwen3-VL's without that block: for codevision's conversations it
renders the same text as either stock template does (with tool results wrapped the way Qwen
models were trained), whatever ``tools=`` a trainer passes. Its twin
``codevision_qwen_vl_training.jinja`` adds ``{% generation %}`` markers for trainers that take
the loss mask from the template. Pass either path to ``vllm serve --chat-template`` or save it as
a checkpoint's ``chat_template.jinja``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

TEMPLATE = "codevision_qwen_vl.jinja"
TRAINING_TEMPLATE = "codevision_qwen_vl_training.jinja"
# The special tokens the shipped template writes; a tokenizer without them is not a Qwen-VL one.
QWEN_VL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>")
# A template that never names the role "tool" renders tool messages like any other role.
_TOOL_ROLE = re.compile(r"""["']tool["']""")


def template_path(*, training: bool = False) -> Path:
    """The file of the shipped Qwen-VL template (``training``: the generation-marked twin)."""
    path = resources.files("codevision.chat").joinpath("templates", TRAINING_TEMPLATE if training else TEMPLATE)
    return Path(str(path))


def load_template(*, training: bool = False) -> str:
    """The text of the shipped Qwen-VL template (``training``: the generation-marked twin)."""
    return template_path(training=training).read_text(encoding="utf-8")


def template_supports_tool_role(chat_template: str | dict[str, str] | None) -> bool:
    """Whether a chat template handles messages with role ``tool`` itself (Qwen3-VL's does, Qwen2.5-VL's not)."""
    if isinstance(chat_template, dict):
        chat_template = chat_template.get("default")
    return bool(chat_template and _TOOL_ROLE.search(chat_template))


def own_template(processor: Any) -> str | None:
    """The processor's own chat template (its tokenizer's when the processor has none), or None."""
    template = processor.chat_template or getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template.get("default") if isinstance(template, dict) else template


def chat_template_for(processor: Any) -> str:
    """The template codevision renders this processor's conversations with.

    The processor's own when it renders tool turns (a Qwen3-VL checkpoint, or one trained with the
    shipped template), so a checkpoint is evaluated in the format it was trained on; the shipped
    template for a Qwen-VL tokenizer whose template cannot (Qwen2.5-VL); otherwise the processor's
    own, and the renderer hands tool results over as user turns wrapped in ``<tool_response>``.
    """
    template = own_template(processor)
    if template_supports_tool_role(template):
        return str(template)
    vocabulary = getattr(processor, "tokenizer", processor).get_vocab()
    if all(token in vocabulary for token in QWEN_VL_TOKENS):
        return load_template()
    if template is None:
        raise ValueError(f"{type(processor).__name__} has no chat template")
    return template
