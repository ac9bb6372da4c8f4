"""codevision messages in the chat format processors' templates read (PIL images in place)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from codevision.trajectory import ImagePart, Message, TextPart


def to_chat(messages: Sequence[Message], images: Sequence[Image.Image], *, tool_role: bool) -> list[dict[str, Any]]:
    """Messages in a processor's chat format, images as PIL objects in place.

    Without ``tool_role``, each tool message becomes a user message with its content wrapped in
    ``<tool_response>`` tags: what Qwen-style templates render for a tool turn, and exactly what
    :class:`~codevision.policies.openai.OpenAIPolicy` sends, so both backends build the same prompt.
    """
    chat: list[dict[str, Any]] = []
    for message in messages:
        content: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif 0 <= part.index < len(images):
                content.append({"type": "image", "image": images[part.index]})
            else:
                raise ValueError(f"a message refers to image {part.index} but there are {len(images)} images")
        if message.role == "tool" and not tool_role:
            wrapped = [
                {"type": "text", "text": "<tool_response>\n"},
                *content,
                {"type": "text", "text": "\n</tool_response>"},
            ]
            chat.append({"role": "user", "content": wrapped})
        else:
            chat.append({"role": message.role, "content": content})
    return chat


def shown_images(messages: Sequence[Message], images: Sequence[Image.Image]) -> list[Image.Image]:
    """The images the messages show, in the order their placeholders appear (one per image part)."""
    return [images[part.index] for message in messages for part in message.content if isinstance(part, ImagePart)]
