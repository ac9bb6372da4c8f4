"""The protocol contract: how a task is put to a model, how its replies are read, how results return.

A protocol owns every piece of text the model sees or writes: the system prompt, the first user
message, the parsing of each reply into actions and an answer, and the rendering of tool results
as the next message. Evaluation, data generation and training all go through the same protocol
object, so the conversation never differs between them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from codevision.protocols.answers import extract_answer
from codevision.trajectory import Action, Message, ToolOutcome

# Tool text handed back to the model is cut here (CodeVision's released setting).
MAX_OBSERVATION_CHARS = 10_240


@dataclass
class ParsedTurn:
    """What a reply asked for: tool calls to run, a final answer, and problems to report back."""

    actions: list[Action] = field(default_factory=list)
    answer: str | None = None
    issues: list[str] = field(default_factory=list)


class Protocol(ABC):
    """Base class of the protocols; subclasses are stateless and safe to share between tasks."""

    name: ClassVar[str]
    uses_sandbox: ClassVar[bool] = True
    #: The protocol's own system prompt.
    default_system_prompt: ClassVar[str]
    #: How tool calls are read and answered; only protocols with JSON tool calls offer other rules
    #: (see :class:`~codevision.protocols.toolcalls.HermesProtocol`).
    calls: str = "lenient"

    def __init__(self, *, system_prompt: str | None = None) -> None:
        """``system_prompt`` replaces the protocol's own, to reproduce a setup with its released prompt."""
        if system_prompt is not None and not system_prompt.strip():
            raise ValueError("the system prompt is empty")
        self._system_prompt = system_prompt

    def system_prompt(self) -> str:
        """The system message text: the one given to the protocol, else its own."""
        return self._system_prompt if self._system_prompt is not None else self.default_system_prompt

    def initial_messages(self, question: str, image_indices: list[int]) -> list[Message]:
        """System prompt, then the user turn with the input images before the question."""
        return [Message.of("system", self.system_prompt()), Message.of("user", *image_indices, question)]

    @abstractmethod
    def parse(self, text: str) -> ParsedTurn:
        """Read one reply; never raises: what cannot be understood becomes an issue for the model."""

    @abstractmethod
    def render_observation(self, outcomes: list[ToolOutcome], issues: list[str]) -> list[Message]:
        """The message(s) that carry tool results and parse problems back to the model."""

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The protocol's tools as OpenAI-style function schemas, for a chat template or server that renders them.

        Empty for a protocol without function tools. Nothing renders them by default: the system prompt
        describes the tool, as in CodeVision's released data; they are rendered only when a run asks for
        them (``--tools protocol``). Each call returns fresh dicts, so callers may change them.
        """
        return []


def truncate(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    """Cut long tool text in the middle, where it is least informative, saying how much went."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - head - tail} characters omitted ...]\n{text[-tail:]}"
