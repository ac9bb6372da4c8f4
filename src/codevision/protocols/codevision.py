"""``codevision``: Python on the images through one Hermes-style tool, the default protocol.

The tag, tool and argument names are those of CodeVision's released data and checkpoints
(``<tool_call>``, ``code_image_tool``, ``code``, ``image_index``, ``<answer>``), so its SFT and RL
data replay unchanged and its models are evaluated in the conversation they were trained on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from codevision.protocols.prompts import CODE_TASK, SANDBOX_TOOLS, answer_rule, continue_instruction, image_numbering
from codevision.protocols.toolcalls import HermesProtocol, clean_code
from codevision.trajectory import Action

TOOL_NAME = "code_image_tool"
CALL_SHAPE = (
    f'<tool_call>{{"name": "{TOOL_NAME}", "arguments": {{"code": "...", "image_index": 0}}}}</tool_call> '
    '(the code is a JSON string: write line breaks as \\n and quotes as \\").'
)

SYSTEM_PROMPT = f"""{CODE_TASK}

{image_numbering("the tool returns")}

The tool {TOOL_NAME} runs your code in a Python session that keeps its variables from call to call.
- `image` is the image numbered image_index (default 0), as a PIL image; `images` is the list of input images.
{SANDBOX_TOOLS}

Think before each step. Call the tool at most once per turn, like this:
<tool_call>{{"name": "{TOOL_NAME}", "arguments": {{"code": "upright = image.rotate(90, expand=True)\\n\
display(upright)", "image_index": 0}}}}</tool_call>
{answer_rule("a tool call")}"""


class CodeVisionProtocol(HermesProtocol):
    name: ClassVar[str] = "codevision"
    tool_name: ClassVar[str] = TOOL_NAME
    call_shape: ClassVar[str] = CALL_SHAPE
    max_calls_per_turn: ClassVar[int] = 1
    bare_code_hint: ClassVar[str] = (
        f"Your code was not run: code runs only through the tool. Put it in {CALL_SHAPE} "
        "Or, if you are done, give the final answer in <answer></answer>."
    )
    continue_hint: ClassVar[str] = continue_instruction(f"call {TOOL_NAME} again")
    tool_description: ClassVar[str] = (
        "Run Python code on the images in a session that keeps its variables from call to call. `image` is the "
        "image numbered image_index (a PIL image) and `images` the list of input images; display(x) returns an "
        "image and print(...) returns text."
    )
    tool_arguments: ClassVar[dict[str, dict[str, Any]]] = {
        "code": {"type": "string", "description": "The Python code to run."}
    }
    required_arguments: ClassVar[tuple[str, ...]] = ("code",)

    default_system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def build_action(self, arguments: dict[str, Any], image_index: int, raw: str) -> Action | str:
        code = arguments.get("code")
        if not isinstance(code, str) or not clean_code(code):
            return f'Your {TOOL_NAME} call has no "code" (a string of Python), so nothing was run.'
        return Action(kind="code", code=clean_code(code), image_index=image_index, raw=raw)
