"""``code-tags``: code in ``<code>`` blocks and results in ``<sandbox_output>``, the layout CodeV uses.

It lets models trained on that layout be compared with CodeVision-style ones on the same sandbox,
tasks and scoring. Unlike CodeV's fresh process per block, the session keeps its state, and the
prompt says so.
"""

from __future__ import annotations

from typing import ClassVar

from codevision.protocols.prompts import CODE_TASK, SANDBOX_TOOLS, answer_rule, continue_instruction, image_numbering
from codevision.protocols.render import compose
from codevision.protocols.toolcalls import Block, ToolProtocol, clean_code, parse_image_index
from codevision.trajectory import Action, Role

SYSTEM_PROMPT = f"""{CODE_TASK}

To run code, put a python block inside <code></code>:
<code>
```python
upright = image.rotate(90, expand=True)
display(upright)
```
</code>
The result comes back inside <sandbox_output></sandbox_output>: what you printed, any error, and the images you \
displayed.
- The Python session keeps its variables from block to block.
- `image` starts as the first input image (a PIL image) and then holds whatever you assign to it; `images` is the \
list of input images.
- {image_numbering("you display")} To set `image` to image N before your code runs, open the block with \
<code image_index="N">.
{SANDBOX_TOOLS}

Think before each step and write at most one code block per turn. {answer_rule("code")}"""


class CodeTagsProtocol(ToolProtocol):
    name: ClassVar[str] = "code-tags"
    call_tag: ClassVar[str] = "code"
    observation_role: ClassVar[Role] = "user"
    bare_code_hint: ClassVar[str] = (
        "Your code was not run: only code inside <code></code> runs. Wrap the ```python block in <code></code>, "
        "or, if you are done, give the final answer in <answer></answer>."
    )
    continue_hint: ClassVar[str] = continue_instruction("write another <code> block")

    default_system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def read_call(self, block: Block) -> Action | str:
        """The block's code, run on whatever ``image`` holds unless the tag names an ``image_index``."""
        index = parse_image_index(block.attributes.get("image_index"), default=None)
        if isinstance(index, str):
            return f"In your <code> tag, {index}; nothing was run."
        code = clean_code(block.body)
        if not code:
            return "Your <code></code> block is empty, so nothing was run. Put a ```python block inside it."
        return Action(kind="code", code=code, image_index=index, raw=block.raw)

    def wrap_outcome(self, parts: list[str | int]) -> list[str | int]:
        return compose("<sandbox_output>\n", *parts, "</sandbox_output>\n")
