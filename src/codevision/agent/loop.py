"""The multi-turn loop: ask the policy, parse through the protocol, run tools, show results, repeat.

One implementation serves evaluation, data generation and training. The conversation only ever
grows at its end (nothing already shown to the model is rewritten), so a training engine can
recover the exact prompt and response tokens of every turn without re-templating drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from codevision.agent.limits import Limits
from codevision.agent.tools import EpisodeTools
from codevision.chat.budget import ImageBudget
from codevision.policies.base import Policy, PolicyError
from codevision.protocols.base import ParsedTurn, Protocol
from codevision.sandbox import RemoteSandbox, Sandbox, SandboxError
from codevision.task import Task
from codevision.trajectory import ImagePart, Message, TextPart, Trajectory, Turn

TurnCallback = Callable[[Trajectory, Turn], None]


class _Episode:
    """State of one trajectory while it runs."""

    def __init__(
        self,
        task: Task,
        policy: Policy,
        sandbox: Sandbox | RemoteSandbox | None,
        protocol: Protocol,
        limits: Limits,
        budget: ImageBudget,
        on_turn: TurnCallback | None,
    ) -> None:
        self.on_turn = on_turn
        self.task = task
        self.policy = policy
        self.sandbox = sandbox
        self.protocol = protocol
        self.limits = limits
        self.budget = budget
        self.trajectory = Trajectory(
            task_id=task.id,
            protocol=protocol.name,
            model=policy.name,
            source=task.source,
            question=task.question,
            references=list(task.answers),
            metadata={"image_budget": budget.to_dict()},
        )
        if protocol.calls != "lenient":
            self.trajectory.metadata["call_rules"] = protocol.calls
        self.tools = EpisodeTools(self.trajectory, sandbox, budget)
        # The conversation as sent to the policy: it only ever grows at its end.
        self.messages: list[Message] = []
        self.images_shown = 0

    # ------------------------------------------------------------------ images
    def _hide_images_beyond_budget(self, messages: list[Message]) -> list[Message]:
        """Name, instead of showing, images past the context budget (earlier messages stay as they were)."""
        budget = self.limits.max_images_in_context
        result = []
        for message in messages:
            parts = []
            for part in message.content:
                if isinstance(part, ImagePart):
                    if self.images_shown >= budget:
                        parts.append(
                            TextPart(text=f"[image {part.index} not shown: at most {budget} images per conversation]")
                        )
                        continue
                    self.images_shown += 1
                parts.append(part)
            result.append(message.model_copy(update={"content": parts}))
        return result

    # ------------------------------------------------------------------ the loop
    async def run(self, base_dir: str | Path | None) -> Trajectory:
        started = time.monotonic()
        trajectory = self.trajectory
        inputs = self.task.load_images(base_dir)
        indices = [self.tools.add_image(img, "input", None) for img in inputs]
        trajectory.messages = self._hide_images_beyond_budget(
            self.protocol.initial_messages(self.task.question, indices)
        )
        self.messages = list(trajectory.messages)
        try:
            if self.protocol.uses_sandbox:
                if self.sandbox is None:
                    raise ValueError(f"protocol {self.protocol.name!r} runs code and needs a sandbox")
                await self.tools.open_session(indices)
            await self._turns()
        except SandboxError as exc:
            trajectory.stop_reason, trajectory.error = "sandbox_error", f"{type(exc).__name__}: {exc}"
        finally:
            await self.tools.close_session()
            trajectory.seconds = time.monotonic() - started
        return trajectory

    async def _turns(self) -> None:
        trajectory, limits = self.trajectory, self.limits
        for turn_index in range(limits.max_turns):
            remaining = limits.max_total_tokens - trajectory.usage.completion_tokens
            asked = time.monotonic()
            try:
                reply = await self.policy.generate(
                    self.messages, self.tools.model_images, max_tokens=min(limits.max_tokens_per_turn, remaining)
                )
            except PolicyError as exc:
                trajectory.stop_reason, trajectory.error = "model_error", str(exc)
                return
            turn = Turn(
                index=turn_index,
                text=reply.text,
                usage=reply.usage,
                finish_reason=reply.finish_reason,
                model_seconds=reply.seconds or time.monotonic() - asked,
                response_token_ids=reply.token_ids,
            )
            trajectory.turns.append(turn)
            trajectory.usage.add(reply.usage)
            parsed = self.protocol.parse(reply.text)
            turn.actions, turn.issues, turn.answer = parsed.actions, parsed.issues, parsed.answer
            try:
                if await self._turn(turn, parsed):
                    return
                self.messages.append(turn.message())
                self.messages.extend(turn.observation)
            finally:
                if self.on_turn is not None:
                    self.on_turn(trajectory, turn)
        trajectory.stop_reason = "max_turns"

    async def _turn(self, turn: Turn, parsed: ParsedTurn) -> bool:
        """Finish one turn: stop (True), or run its tools and prepare the observation (False)."""
        trajectory = self.trajectory
        if parsed.answer is not None and not parsed.actions:
            trajectory.final_answer, trajectory.stop_reason = parsed.answer, "answered"
            return True
        if not parsed.actions and not parsed.issues:
            trajectory.stop_reason = "max_tokens" if turn.finish_reason == "length" else "no_action"
            return True
        tools_started = time.monotonic()
        turn.outcomes = await self.tools.execute(parsed.actions, turn.index)
        turn.tool_seconds = time.monotonic() - tools_started
        turn.observation = self._hide_images_beyond_budget(
            self.protocol.render_observation(turn.outcomes, parsed.issues)
        )
        if trajectory.usage.completion_tokens >= self.limits.max_total_tokens:
            trajectory.stop_reason = "max_tokens"
            return True
        return False


async def arun_agent(
    task: Task,
    policy: Policy,
    sandbox: Sandbox | RemoteSandbox | None,
    protocol: Protocol,
    limits: Limits | None = None,
    *,
    base_dir: str | Path | None = None,
    on_turn: TurnCallback | None = None,
) -> Trajectory:
    """Run one task to the end and return its trajectory; many can run concurrently on one event loop.

    Model failures and sandbox outages end the trajectory with a stop reason and the error, never
    an exception; a task whose images cannot be loaded raises, naming the task and the file.
    ``on_turn`` is called after every turn (for streaming displays). Images are sized by the
    policy's own pixel budget when it has one (a local model's processor), else by ``limits``;
    the budget used is recorded in the trajectory's metadata.
    """
    limits = limits or Limits()
    budget = await _image_budget(policy, limits)
    return await _Episode(task, policy, sandbox, protocol, limits, budget, on_turn).run(base_dir)


async def _image_budget(policy: Policy, limits: Limits) -> ImageBudget:
    """The budget images are sized with: the policy's (what its processor does anyway), else the limits'.

    Limits that set a different budget for a policy with its own are refused, because the processor
    would resize every image again and the recorded sizes would not be what the model saw. A policy
    that cannot load its processor falls back to the limits: its first reply fails with the reason.
    """
    try:
        own = await policy.image_budget()
    except PolicyError:
        return limits.image_budget
    if own is None:
        return limits.image_budget
    if limits.sets_image_budget and limits.image_budget != own:
        raise ValueError(
            f"the limits size images with {limits.image_budget}, but {policy.name or type(policy).__name__} "
            f"sizes them with its processor's {own}; set the budget on the policy (e.g. TransformersPolicy's "
            "max_pixels) instead"
        )
    return own


def run_agent(
    task: Task,
    policy: Policy,
    sandbox: Sandbox | RemoteSandbox | None,
    protocol: Protocol,
    limits: Limits | None = None,
    *,
    base_dir: str | Path | None = None,
    on_turn: TurnCallback | None = None,
) -> Trajectory:
    """Synchronous :func:`arun_agent`, for scripts; inside async code call ``arun_agent`` instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_agent(task, policy, sandbox, protocol, limits, base_dir=base_dir, on_turn=on_turn))
    raise RuntimeError("run_agent was called from a running event loop; await arun_agent(...) instead")
