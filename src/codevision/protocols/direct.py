"""``direct``: no tools, the answer straight away — the baseline every robustness table needs."""

from __future__ import annotations

from typing import ClassVar

from codevision.protocols.base import ParsedTurn, Protocol
from codevision.trajectory import Message, ToolOutcome

SYSTEM_PROMPT = (
    "You answer questions about images. Look carefully, think step by step if it helps, and give your "
    "final answer inside <answer></answer>, as short as the question allows (a word, a number, an option letter)."
)


class DirectProtocol(Protocol):
    name: ClassVar[str] = "direct"
    uses_sandbox: ClassVar[bool] = False

    default_system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def parse(self, text: str) -> ParsedTurn:
        answer = self.extract_answer(text)
        if answer is None:
            # Without tags the whole reply is the answer: scoring rules match inside free text.
            answer = text.strip() or None
        return ParsedTurn(answer=answer)

    def render_observation(self, outcomes: list[ToolOutcome], issues: list[str]) -> list[Message]:
        raise NotImplementedError("the direct protocol has no tools, so there is nothing to observe")
