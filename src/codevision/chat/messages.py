"""codevision messages in the chat format processors' templates read (PIL images in place)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from codevision.trajectory import ImagePart, Message, TextPart

#: An image, or what stands for it where only its placement matters (its size, when planning a batch).
ImageLike = TypeVar("ImageLike")


def to_chat(messages: Sequence[Message], images: Sequence[Any], *, tool_role: bool) -> list[dict[str, Any]]:
    """Messages in a processor's chat format, images (PIL objects, or stand-ins the template never reads) in place.

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


def shown_images(messages: Sequence[Message], images: Sequence[ImageLike]) -> list[ImageLike]:
    """The images the messages show, in the order their placeholders appear (one per image part)."""
    return [images[part.index] for message in messages for part in message.content if isinstance(part, ImagePart)]
