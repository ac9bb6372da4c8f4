"""The tool side of an episode: its images, its sandbox session, image lineage, and running actions.

The agent loop and a trainer's environment (TRL's ``environment_factory``) both run a model's tool
calls. Both go through this class, so the same call on the same images gives the same outcome,
the same recorded images and the same verified lineage. The rewards then pay for the same things
in training as in evaluation.
"""

from __future__ import annotations

import contextlib
import time

from PIL import Image

from codevision.agent.images import ModelImages
from codevision.chat.budget import ImageBudget
from codevision.lineage import LineageTracker
from codevision.sandbox import RemoteSandbox, RunResult, Sandbox, SandboxError, SessionAPI
from codevision.trajectory import Action, ToolOutcome, Trajectory

SESSION_LOST = "the sandbox session had to be restarted: variables and imports from earlier calls are gone"


def rejected_outcome(index: int, action: Action) -> ToolOutcome:
    """The failed result of a call that was refused before anything ran (see ``Action.kind``)."""
    return ToolOutcome(action=index, status="error", error=action.error or "the call was refused")


class EpisodeTools:
    """Runs the actions of one trajectory and records what they produced into it."""

    def __init__(self, trajectory: Trajectory, sandbox: Sandbox | RemoteSandbox | None, budget: ImageBudget) -> None:
        self.trajectory = trajectory
        self.sandbox = sandbox
        self.budget = budget
        self.model_images = ModelImages(trajectory.image, budget)
        self.session: SessionAPI | None = None
        self.lineage = LineageTracker(trajectory)

    def add_image(self, image: Image.Image, origin: str, turn: int | None) -> int:
        """Record an image; the model-sized copy is made only if a policy looks at it."""
        model_size = self.budget.target(image.width, image.height)
        index = self.trajectory.add_image(image, origin, turn)  # type: ignore[arg-type]
        self.trajectory.images[index].model_size = model_size
        self.model_images.append_index()
        return index

    async def open_session(self, indices: list[int]) -> None:
        """Open a session holding these trajectory images as its inputs, in order."""
        if self.sandbox is None:
            raise ValueError("this protocol runs code and needs a sandbox")
        session = self.sandbox.session(images=[self.trajectory.image(i) for i in indices])
        await session.__aenter__()
        self.session = session
        self.lineage.start_session(indices)

    async def close_session(self) -> None:
        if self.session is not None:
            with contextlib.suppress(SandboxError):
                await self.session.__aexit__(None, None, None)
            self.session = None

    def close_now(self) -> None:
        """Close the session from synchronous code (a trainer's hook), never raising for a dead one."""
        if self.session is not None:
            with contextlib.suppress(SandboxError):
                self.session.close()
            self.session = None

    async def execute(self, actions: list[Action], turn: int) -> list[ToolOutcome]:
        """Run a turn's actions in order; a session the code killed is reopened (see :meth:`_reopen_after_crash`)."""
        outcomes = []
        for index, action in enumerate(actions):
            if action.kind == "rejected":
                outcomes.append(rejected_outcome(index, action))
            elif action.kind == "crop":
                outcomes.append(self._run_crop(index, action, turn))
            else:
                outcomes.append(await self._run_code(index, action, turn))
        return outcomes

    async def _run_code(self, index: int, action: Action, turn: int) -> ToolOutcome:
        if self.session is None:
            # No session yet (a trainer's first call) or none could be started after a crash: start one
            # holding every image. Failing here is the sandbox's fault, not the model's: SandboxError.
            await self.open_session(list(range(len(self.trajectory.images))))
        assert self.session is not None
        started = time.monotonic()
        result: RunResult = await self.session.arun(action.code or "", image_index=action.image_index)
        images = [self.add_image(img, "tool", turn) for img in result.images]
        self.lineage.record_run(result, images)
        error = result.error
        if not result.session_alive:
            error = f"{error}\n({await self._reopen_after_crash()})"
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

    async def _reopen_after_crash(self) -> str:
        """Continue after the model's code killed its session; what the model is told about the new one.

        The crash is the model's and is recorded as such, whatever happens next: a fresh session that
        cannot be started must not turn it into an infrastructure failure, which evaluation retries
        and rewards excuse. A session that cannot hold every image (the code made thousands, or too
        many pixels) starts from the inputs alone; one that cannot start at all is left to the next
        call, whose failure is then the sandbox's.
        """
        await self.close_session()
        everything = list(range(len(self.trajectory.images)))
        inputs = [record.index for record in self.trajectory.images if record.origin == "input"]
        try:
            await self.open_session(everything)
            return f"{SESSION_LOST}; `images` now holds every image of the trajectory in index order"
        except SandboxError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if inputs != everything:
            try:
                await self.open_session(inputs)
                return (
                    f"{SESSION_LOST}; a session holding all {len(everything)} images could not start ({failure}), "
                    f"so `images` now holds only the {len(inputs)} input images"
                )
            except SandboxError as exc:
                failure = f"{type(exc).__name__}: {exc}"
        self.session = None
        return f"{SESSION_LOST}; a fresh session could not start yet ({failure}); the next call tries again"

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
