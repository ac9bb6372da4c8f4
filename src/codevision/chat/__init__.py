"""Rendering conversations into model tokens, the chat templates shipped for it, and image budgets.

Evaluation and every training path go through :class:`ChatRenderer`, so the prompt a reply was
sampled from is exactly the prefix of the sequence trained on; see docs/chat.md.
"""

from __future__ import annotations

from codevision.chat.budget import ImageBudget
from codevision.chat.render import ChatRenderer, Rendered, RenderError, ReplySpan, sampled_ids
from codevision.chat.templates import chat_template_for, load_template, template_path

__all__ = [
    "ChatRenderer",
    "ImageBudget",
    "RenderError",
    "Rendered",
    "ReplySpan",
    "chat_template_for",
    "load_template",
    "sampled_ids",
    "template_path",
]
