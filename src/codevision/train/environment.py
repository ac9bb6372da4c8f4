"""The sandbox as a TRL environment: the protocol's tool, run as in evaluation, for ``environment_factory``.

TRL's GRPO trainer carries the images a tool returns into the next generation and into the
training forward pass only for tools it calls itself (``tools=`` / ``environment_factory=``). So
the protocol's tool becomes a method of an environment class, one instance per rollout. The
method's signature and docstring are synthesised from the protocol's JSON schema, so TRL renders
the same tool block evaluation does when schemas are rendered. Each call runs through
:class:`~codevision.agent.tools.EpisodeTools`, the code the agent loop runs, in one sandbox
session per rollout. The result is the protocol's own observation (its text, the ``Image N:``
labels and the images at the model's size) as content blocks.

The environment records the rollout as a codevision :class:`~codevision.trajectory.Trajectory`
(inputs, outcomes, returned images, their verified lineage), which the reward step completes with
the model's replies. TRL reuses instances and has no end-of-rollout hook, so a rollout's session
is closed by the next :meth:`reset` or by :meth:`_release`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from PIL import Image

from codevision.agent.tools import EpisodeTools, rejected_outcome
from codevision.chat.budget import ImageBudget
from codevision.chat.messages import to_chat
from codevision.chat.tools import method_from_schema
from codevision.protocols.base import Protocol
from codevision.protocols.toolcalls import HermesProtocol
from codevision.sandbox import RemoteSandbox, Sandbox, SandboxError
from codevision.task import Task
from codevision.trajectory import Action, ToolOutcome, Trajectory


class EnvironmentUseError(RuntimeError):
    """The environment was used out of order (a tool called before ``reset``)."""


def environment_class(
    protocol: Protocol, sandbox: Sandbox | RemoteSandbox | None, budget: ImageBudget
) -> type[SandboxEnvironment]:
    """A class for TRL's ``environment_factory``: its public methods are ``protocol``'s tools.

    ``sandbox`` is shared by every instance (a local pool sized to the completions in flight, or a
    service URL); ``budget`` is the model processor's pixel budget, the size tool images are shown at.
    """
    schemas = protocol.tool_schemas()
    if not schemas or not isinstance(protocol, HermesProtocol):
        raise ValueError(f"protocol {protocol.name!r} declares no tool schema, so TRL cannot call its tool")
    # The protocol answers wrong arguments itself, as in evaluation, rather than TRL's {"error": ...}.
    methods = {
        schema["function"]["name"]: method_from_schema(schema, _dispatch, check_arguments=False) for schema in schemas
    }
    attributes = {"protocol": protocol.under_rules("trl"), "sandbox": sandbox, "budget": budget, **methods}
    return type(f"{type(protocol).__name__}Environment", (SandboxEnvironment,), attributes)


def _dispatch(environment: SandboxEnvironment, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]] | str:
    """Route a tool method to the instance's ``_call``, so a subclass that overrides it is used."""
    return environment._call(name, arguments)


class SandboxEnvironment:
    """One rollout: its trajectory, its sandbox session, the calls made so far."""

    protocol: HermesProtocol
    sandbox: Sandbox | RemoteSandbox | None
    budget: ImageBudget

    def __init__(self) -> None:
        self.task: Task | None = None
        self.trajectory: Trajectory | None = None
        self.tools: EpisodeTools | None = None
        self.calls = 0
        #: The outcome of each call, in order (the reward step attaches them to the model's turns).
        self.outcomes: list[ToolOutcome] = []

    def reset(self, **row: Any) -> None:
        """Start a rollout for a dataset row (a ``data export rl --format trl`` row): its ``images`` are the
        inputs, and its task (answers, boxes, expected ops) is kept for the reward."""
        self._release()
        images = [_pil(image) for image in _as_list(row.get("images"))]
        self.task = task_of(row, images)
        self.trajectory = Trajectory(
            task_id=self.task.id,
            protocol=self.protocol.name,
            source=self.task.source,
            question=self.task.question,
            references=list(self.task.answers),
            metadata={"image_budget": self.budget.to_dict(), "call_rules": self.protocol.calls},
        )
        self.tools = EpisodeTools(self.trajectory, self.sandbox, self.budget)
        for image in images:
            self.tools.add_image(image, "input", None)
        self.calls = 0
        self.outcomes = []

    def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]] | str:
        """Run one tool call; what the model reads back (content blocks, or the problem as text).

        TRL calls tools of one rollout after another from its training thread, where no event loop
        runs; the episode's tool runner is asynchronous (the agent loop overlaps many), so each call
        runs on a short-lived loop. The session itself lives in the sandbox's worker threads.
        """
        if self.tools is None or self.trajectory is None:
            raise EnvironmentUseError("a tool was called before reset()")
        raw = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        action = self.protocol.action_for(name, arguments, raw)
        turn = self.calls
        self.calls += 1
        if isinstance(action, str):
            # Answered as evaluation under TRL call rules answers it; the reward step rebuilds this
            # outcome from the reply, so only calls that ran are recorded.
            outcomes = [rejected_outcome(0, Action(kind="rejected", error=action, raw=raw))]
        else:
            try:
                outcomes = asyncio.run(self.tools.execute([action], turn))
            except SandboxError as exc:
                outcomes = [self._infrastructure_failure(exc)]
            self.outcomes.append(outcomes[0])
        observation = self.protocol.render_observation(outcomes, [])
        chat = to_chat(observation, self.tools.model_images, tool_role=True)
        return [dict(part) for message in chat for part in message["content"]]

    def _infrastructure_failure(self, exc: SandboxError) -> ToolOutcome:
        """The outcome of a call the sandbox could not run (a fork failed, the service is unreachable).

        TRL cannot drop a rollout, so the call is recorded like any failed call: the outcomes stay
        aligned with the calls, the model reads what happened, and the next call starts a fresh
        session holding every image. The trajectory keeps the failure as its error and stop reason
        (``rollout/sandbox_failures`` counts such rollouts per step); it is not a crash of the
        model's code, which the session reports itself.
        """
        assert self.tools is not None and self.trajectory is not None
        failure = f"{type(exc).__name__}: {exc}"
        self.trajectory.stop_reason, self.trajectory.error = "sandbox_error", failure
        self.tools.close_now()
        return ToolOutcome(
            action=0,
            status="error",
            error=f"The sandbox could not run this call ({failure}); the next call starts a fresh session.",
        )

    def _release(self) -> None:
        """End the rollout's session (also done by the next reset). Private, like every method that is
        not a tool: TRL offers an environment's public methods to the model as tools."""
        if self.tools is not None:
            self.tools.close_now()


def task_of(row: dict[str, Any], images: list[Image.Image]) -> Task:
    """The task a GRPO row poses: its reward columns, and the question (the row's, else the user turn's text)."""
    question = row.get("question")
    if not question:
        users = [message for message in row.get("prompt") or [] if message.get("role") == "user"]
        content = users[-1]["content"] if users else ""
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        question = "".join(part.get("text") or "" for part in parts if part.get("type") == "text").strip()
    return Task.from_images(
        images,
        id=str(row.get("task_id") or row.get("id") or "rollout"),
        question=str(question or ""),
        answers=[str(answer) for answer in _as_list(row.get("answers"))],
        bboxes=[list(box) for box in _as_list(row.get("bboxes"))],
        expected_ops=[str(op) for op in _as_list(row.get("expected_ops"))],
        source=str(row.get("source") or ""),
    )


def _as_list(value: Any) -> Sequence[Any]:
    if value is None:
        return []
    return value if isinstance(value, list | tuple) else [value]


def _pil(image: Any) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"a row's images must be PIL images (a datasets Image() column), not {type(image).__name__}")
    return image


def release_all(environments: Sequence[SandboxEnvironment] | None) -> None:
    """Close every rollout's session at the end of a run (TRL has no end-of-rollout hook)."""
    for environment in environments or []:
        environment._release()
