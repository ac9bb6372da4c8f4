"""The demo's teacher: solves a quadrant task from the pixels and writes the code a good model would.

``data synth --teacher builtin:quadrants`` drives it like any teacher: it receives the guided
conversation (the kind of example asked for is in the guidance line ``data synth`` adds to the
system prompt) and the images, and replies turn by turn. It finds the white square, works out the
rotation that puts it at the top left, reads the colour there, and writes one of four solutions:
one call (turn and crop), two calls (turn, then crop the turned image), a first call with a
mistake that raises and a fixed second one, or a direct answer. ``data synth`` then keeps only
the runs whose answer is right and whose op trace shows the turn and the crop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from PIL import Image

from codevision.policies.base import Generation, Policy, PolicyError
from codevision.synthesis import KIND_GUIDANCE
from codevision.training_demo.tasks import COLOURS, HALF, SIDE, STRIPE_SHADE, TARGET_BOX
from codevision.trajectory import Message, Usage

TOOL = "code_image_tool"
_SHADE = (1 + STRIPE_SHADE) / 2  # the stripes darken half the rows


def upright_angle(image: Image.Image) -> int:
    """The counter-clockwise turn (``Image.rotate`` degrees) that puts the white square at the top left."""
    for angle in (0, 90, 180, 270):
        turned = np.asarray(image.rotate(angle, expand=True).convert("RGB"), dtype=np.float32)
        corners = [turned[:HALF, :HALF], turned[:HALF, HALF:], turned[HALF:, :HALF], turned[HALF:, HALF:]]
        if int(np.argmax([corner.min(axis=2).mean() for corner in corners])) == 0:
            return angle
    raise PolicyError("no white square in the picture: this is not a quadrant task")


def colour_at_target(image: Image.Image, angle: int) -> str:
    """The named colour nearest to the mean of the upright picture's top-right quadrant."""
    region = np.asarray(image.rotate(angle, expand=True).convert("RGB").crop(TARGET_BOX), dtype=np.float32)
    mean = region.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: float(np.sum((np.array(COLOURS[name]) * _SHADE - mean) ** 2)))


def call(code: str, image_index: int = 0) -> str:
    arguments = {"code": code, "image_index": image_index}
    return f"<tool_call>{json.dumps({'name': TOOL, 'arguments': arguments})}</tool_call>"


def solution(kind: str, angle: int, answer: str) -> list[str]:
    """The replies of one solution of ``kind`` (a ``data synth`` kind) for a picture needing ``angle``."""
    box = ", ".join(str(v) for v in TARGET_BOX)
    zoom = f".resize(({SIDE}, {SIDE}))"  # a bigger view: 16 image tokens instead of 4
    upright = f"image.rotate({angle}, expand=True)" if angle else "image"
    final = f"<answer>{answer}</answer>"
    if kind == "direct":
        return [final]
    if kind == "multi":
        first = call(f"display({upright})") if angle else call(f"display(image.crop((0, 0, {SIDE}, {HALF})))")
        return [first, call(f"display(image.crop(({box})){zoom})", 1), final]
    if kind == "recovery":  # Image.crop takes one box, not four numbers: a TypeError to read and fix
        return [call(f"display({upright}.crop({box}){zoom})"), call(f"display({upright}.crop(({box})){zoom})"), final]
    return [call(f"display({upright}.crop(({box})){zoom})"), final]


def requested_kind(messages: Sequence[Message]) -> str:
    """The kind the guidance asks for; ``single`` where a conversation carries no guidance."""
    system = next((message.text for message in messages if message.role == "system"), "")
    return next((kind for kind, text in KIND_GUIDANCE.items() if text in system), "single")


class QuadrantTeacher(Policy):
    """A scripted expert for the demo's quadrant tasks (no model: it reads the pixels)."""

    name = "builtin:quadrants"

    async def generate(
        self, messages: Sequence[Message], images: Sequence[Image.Image], *, max_tokens: int
    ) -> Generation:
        if not images:
            raise PolicyError("the quadrant teacher needs the task's picture")
        angle = upright_angle(images[0])
        replies = solution(requested_kind(messages), angle, colour_at_target(images[0], angle))
        turn = sum(1 for message in messages if message.role == "assistant")
        if turn >= len(replies):
            raise PolicyError(f"the solution has {len(replies)} replies and turn {turn + 1} asked for another")
        text = replies[turn]
        return Generation(text=text, usage=Usage(completion_tokens=len(text.split())), finish_reason="stop")
