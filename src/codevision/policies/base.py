"""The policy contract: given the conversation so far, produce the model's next message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from codevision.trajectory import Message, Usage


@dataclass
class Generation:
    """One reply. ``token_ids`` are the exact response tokens when the backend reports them."""

    text: str
    usage: Usage
    finish_reason: str | None = None
    token_ids: list[int] | None = None
    seconds: float = 0.0


class PolicyError(Exception):
    """The model could not answer (server down after retries, invalid reply, ...); the message says why."""


class ModelUnavailableError(PolicyError):
    """Every server of the model failed request after request: a run should stop, not try each item."""


class Policy(ABC):
    """A model backend. Implementations must be safe to call concurrently from one event loop."""

    #: Recorded in trajectories; a model name or path.
    name: str = ""
    #: Why the model cannot be reached at all any more (a tripped circuit breaker), else None.
    unavailable: str | None = None

    @abstractmethod
    async def generate(
        self,
        messages: Sequence[Message],
        images: Sequence[Image.Image],
        *,
        max_tokens: int,
    ) -> Generation:
        """Reply to ``messages``; image parts refer to ``images`` by index (already sized for the model)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most policies hold nothing
        """Release connections or models; the default has nothing to release."""
