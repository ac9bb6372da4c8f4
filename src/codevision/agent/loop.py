"""The multi-turn loop: ask the policy, parse through the protocol, run tools, show results, repeat.

One implementation serves evaluation, data generation and training. The conversation only ever
grows at its end (nothing already shown to the model is rewritten), so a training engine can
recover the exact prompt and response tokens of every turn without re-templating drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from codevision.agent.images import ModelImages
from codevision.agent.limits import Limits
from codevision.chat.budget import ImageBudget
from codevision.lineage import LineageTracker
from codevision.policies.base import Policy, PolicyError
from codevision.protocols.base import ParsedTurn, Protocol
from codevision.sandbox import RemoteSandbox, RunResult, Sandbox, SandboxError, SessionAPI
from codevision.task import Task
from codevision.trajectory import Action, ImagePart, Message, TextPart, ToolOutcome, Trajectory, Turn

TurnCallback = Callable[[Trajectory, Turn], None]

SESSION_LOST = "the sandbox session had to be restarted: variables and imports from earlier calls are gone"


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
        self.model_images = ModelImages(self.trajectory.image, budget)
        self.session: SessionAPI | None = None
        self.lineage = LineageTracker(self.trajectory)
        # The conversation as sent to the policy: it only ever grows at its end.
        self.messages: list[Message] = []
        self.images_shown = 0

    # ------------------------------------------------------------------ images
    def add_image(self, image: Image.Image, origin: str, turn: int | None) -> int:
        """Record an image; the model-sized copy is made only if a policy looks at it."""
        model_size = self.budget.target(image.width, image.height)
        index = self.trajectory.add_image(image, origin, turn)  # type: ignore[arg-type]
        self.trajectory.images[index].model_size = model_size
        self.model_images.append_index()
        return index

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

    # ------------------------------------------------------------------ tools
    async def _open_session(self, indices: list[int]) -> None:
        """Open a session holding these trajectory images as its inputs, in order."""
        assert self.sandbox is not None
        self.session = self.sandbox.session(images=[self.trajectory.image(i) for i in indices])
        await self.session.__aenter__()
        self.lineage.start_session(indices)

    async def _close_session(self) -> None:
        if self.session is not None:
            with contextlib.suppress(SandboxError):
                await self.session.__aexit__(None, None, None)
            self.session = None

    async def _run_code(self, index: int, action: Action, turn: int) -> ToolOutcome:
        assert self.session is not None
        started = time.monotonic()
        result: RunResult = await self.session.arun(action.code or "", image_index=action.image_index)
        images = [self.add_image(img, "tool", turn) for img in result.images]
        self.lineage.record_run(result, images)
        error = result.error
        if not result.session_alive:
            # The model's code killed its session; continue in a fresh one that still knows every image.
            await self._close_session()
            await self._open_session(list(range(len(self.trajectory.images))))
            error = f"{error}\n({SESSION_LOST}; `images` now holds every image of the trajectory in index order)"
        return ToolOutcome(
            action=index,
            status=result.status,
            stdout=result.stdout,
            stderr=result.stderr,
            error=error,
            image_indices=images,
            ops=result.ops,
            trace_problems=result.trace_problems,
            warnings=result.warnings,
            seconds=time.monotonic() - started,
        )

    def _run_crop(self, index: int, action: Action, turn: int) -> ToolOutcome:
        """Zoom into an image; absolute boxes are in the pixels of the copy the model was shown."""
        from codevision.protocols.crop import crop_image

        started = time.monotonic()
        source = action.image_index or 0
        if not 0 <= source < len(self.trajectory.images):
            count = len(self.trajectory.images)
            error = f"image_index {source} does not exist; this trajectory has {count} images (0 to {count - 1})"
            return ToolOutcome(action=index, status="error", error=error, seconds=time.monotonic() - started)
        record = self.trajectory.images[source]
        bbox = list(action.bbox or [])
        if record.model_size and len(bbox) == 4 and not all(0 <= v <= 1 for v in bbox):
            scale_x, scale_y = record.size[0] / record.model_size[0], record.size[1] / record.model_size[1]
            bbox = [bbox[0] * scale_x, bbox[1] * scale_y, bbox[2] * scale_x, bbox[3] * scale_y]
        cropped, box, error = crop_image(self.trajectory.image(source), bbox)
        images = []
        if cropped is not None and box is not None:
            images.append(self.add_image(cropped, "tool", turn))
            self.lineage.record_crop(source, box, images[0])
        status = "ok" if cropped is not None else "error"
        return ToolOutcome(
            action=index, status=status, error=error, image_indices=images, seconds=time.monotonic() - started
        )

    async def _execute(self, actions: list[Action], turn: int) -> list[ToolOutcome]:
        outcomes = []
        for index, action in enumerate(actions):
            if action.kind == "crop":
                outcomes.append(self._run_crop(index, action, turn))
            else:
                outcomes.append(await self._run_code(index, action, turn))
        return outcomes

    # ------------------------------------------------------------------ the loop
    async def run(self, base_dir: str | Path | None) -> Trajectory:
        started = time.monotonic()
        trajectory = self.trajectory
        inputs = self.task.load_images(base_dir)
        indices = [self.add_image(img, "input", None) for img in inputs]
        trajectory.messages = self._hide_images_beyond_budget(
            self.protocol.initial_messages(self.task.question, indices)
        )
        self.messages = list(trajectory.messages)
        try:
            if self.protocol.uses_sandbox:
                if self.sandbox is None:
                    raise ValueError(f"protocol {self.protocol.name!r} runs code and needs a sandbox")
                await self._open_session(indices)
            await self._turns()
        except SandboxError as exc:
            trajectory.stop_reason, trajectory.error = "sandbox_error", f"{type(exc).__name__}: {exc}"
        finally:
            await self._close_session()
            trajectory.seconds = time.monotonic() - started
        return trajectory

    async def _turns(self) -> None:
        trajectory, limits = self.trajectory, self.limits
        for turn_index in range(limits.max_turns):
            remaining = limits.max_total_tokens - trajectory.usage.completion_tokens
            asked = time.monotonic()
            try:
                reply = await self.policy.generate(
                    self.messages, self.model_images, max_tokens=min(limits.max_tokens_per_turn, remaining)
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
        turn.outcomes = await self._execute(parsed.actions, turn.index)
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
