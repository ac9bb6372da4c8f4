"""``crop``: a fixed zoom-in tool instead of code, the interface of DeepEyes-style baselines.

It measures what free-form code adds over cropping alone, on the same tasks and scoring. The tool
runs on the host (:func:`crop_image`), so no sandbox is needed.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from codevision.protocols.prompts import answer_rule, continue_instruction, image_numbering
from codevision.protocols.toolcalls import HermesProtocol
from codevision.trajectory import Action

TOOL_NAME = "image_zoom_in_tool"
CALL_SHAPE = (
    f'<tool_call>{{"name": "{TOOL_NAME}", "arguments": {{"bbox_2d": [x1, y1, x2, y2], "image_index": 0}}}}</tool_call>'
)

SYSTEM_PROMPT = f"""You answer questions about images, and you can zoom in to see small details.

{image_numbering("the tool returns")}

The tool {TOOL_NAME} returns the region inside bbox_2d = [x1, y1, x2, y2] of the image numbered image_index \
(default 0) as a new image. x1, y1 is the top-left corner and x2, y2 the bottom-right one, in pixels of that image; \
when all four values are between 0 and 1 they are read as fractions of its width and height.

Think before each step. Call the tool at most once per turn, like this:
<tool_call>{{"name": "{TOOL_NAME}", "arguments": {{"bbox_2d": [120, 40, 360, 200], "image_index": 0}}}}</tool_call>
{answer_rule("a tool call")}"""


def bbox_values(bbox: object) -> list[float] | str:
    """The four numbers of a box as given (a JSON list in a string is read too), or what is wrong with it."""
    if isinstance(bbox, str):
        with contextlib.suppress(json.JSONDecodeError):
            bbox = json.loads(bbox)
    if not isinstance(bbox, (list, tuple)):
        return f"bbox_2d must be a list of four numbers [x1, y1, x2, y2], not {bbox!r}"
    if len(bbox) != 4:
        return f"bbox_2d must have four numbers [x1, y1, x2, y2], not {len(bbox)}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return f"bbox_2d must hold four numbers, not {list(bbox)!r}"
    return [float(v) for v in bbox]


def resolve_bbox(bbox: object, width: int, height: int) -> tuple[int, int, int, int] | str:
    """Pixel box (left, top, right, bottom) inside a ``width``×``height`` image, or why the box is invalid.

    Values all ≤ 1 are fractions of the size (so ``[0, 0, 1, 1]`` is the whole image, not one
    pixel). A box reaching past the edges is clamped to the image; partial pixels are included.
    """
    values = bbox_values(bbox)
    if isinstance(values, str):
        return values
    shown = "[" + ", ".join(f"{v:g}" for v in values) + "]"
    x1, y1, x2, y2 = values
    if all(v <= 1 for v in values):
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    if x2 <= x1 or y2 <= y1:
        return f"bbox_2d {shown} has no area: x2 must be greater than x1 and y2 greater than y1"
    left, top, right, bottom = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if right <= left or bottom <= top:
        return f"bbox_2d {shown} lies entirely outside the image, which is {width}x{height} pixels"
    return math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom)


def crop_image(
    image: Image.Image, bbox: Sequence[float]
) -> tuple[Image.Image | None, tuple[int, int, int, int] | None, str | None]:
    """The region of ``image`` inside ``bbox`` (see :func:`resolve_bbox`) and its box, or an error for the model."""
    box = resolve_bbox(bbox, *image.size)
    if isinstance(box, str):
        return None, None, box
    return image.crop(box), box, None


class CropProtocol(HermesProtocol):
    name: ClassVar[str] = "crop"
    uses_sandbox: ClassVar[bool] = False
    tool_name: ClassVar[str] = TOOL_NAME
    call_shape: ClassVar[str] = CALL_SHAPE
    bare_code_hint: ClassVar[str] = (
        f"Code cannot be run here. To look closer, call {CALL_SHAPE}; if you are done, give the final answer in "
        "<answer></answer>."
    )
    continue_hint: ClassVar[str] = continue_instruction(f"call {TOOL_NAME} again")
    tool_description: ClassVar[str] = "Return the region of an image inside a bounding box as a new image."
    tool_arguments: ClassVar[dict[str, dict[str, Any]]] = {
        "bbox_2d": {
            "type": "array",
            "items": {"type": "number"},
            "description": "Four numbers [x1, y1, x2, y2]: the top-left and bottom-right corners in pixels of the "
            "image, or fractions of its width and height when all four are between 0 and 1.",
        }
    }
    required_arguments: ClassVar[tuple[str, ...]] = ("bbox_2d",)

    default_system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def build_action(self, arguments: dict[str, Any], image_index: int, raw: str) -> Action | str:
        values = bbox_values(arguments.get("bbox_2d"))
        if isinstance(values, str):
            return f"In your {TOOL_NAME} call, {values}; nothing was run."
        return Action(kind="crop", bbox=values, image_index=image_index, raw=raw)
