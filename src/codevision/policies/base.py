"""The policy contract: given the conversation so far, produce the model's next message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from codevision.chat.budget import ImageBudget
from codevision.trajectory import Message, Usage


@dataclass
class Generation:
    """One reply. ``token_ids`` are the exact response tokens when the backend reports them."""

    text: str
    usage: Usage
    finish_reason: str | None = None
    token_ids: list[int] | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Waiting:
    """The longest wait for a reply still in progress, for a progress display: long silences are the
    first sign of a hung or overloaded server."""

    seconds: float
    attempt: int
    attempts: int
    requests: int

    def describe(self, what: str) -> str:
        return (
            f"waiting {self.seconds:.0f} s for {what} (attempt {self.attempt} of {self.attempts}, "
            f"{self.requests} request{'s' if self.requests != 1 else ''} in flight)"
        )


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
        """Reply to ``messages``; image parts refer to ``images`` by index (already sized for the model).

        Assistant messages carry the ids the model sampled for them (``Message.token_ids``) when the
        backend reported them, for backends that feed the model its own tokens back.
        """

    async def image_budget(self) -> ImageBudget | None:
        """How the model's processor sizes images, when the policy knows it (None: the agent's limits decide).

        A local model knows it from its processor config; images sized with it reach the model unchanged.
        """
        return None

    def waiting(self) -> Waiting | None:
        """The longest wait for a reply now, or None when nothing is waiting or the backend cannot tell."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most policies hold nothing
        """Release connections or models; the default has nothing to release."""
