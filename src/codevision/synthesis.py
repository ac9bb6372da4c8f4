"""Teacher synthesis of SFT trajectories: a strong model solves tasks with guidance, only good runs are kept.

Each item gets a kind (``single``, ``multi``, ``crop``, ``recovery``, ``direct``) and guidance for
the teacher: the ops a good solution uses, the target region, what the kind asks for. The guidance
is added only to the requests sent to the teacher; the trajectory records the conversation a
student will be trained on, without it. A trajectory is kept only when its answer is correct and
its runtime op trace matches the kind (for ``recovery``, an error really happened and was fixed);
every rejection is recorded with its reason, the run resumes after an interruption, and the yield
is reported per kind.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from codevision.agent import Limits, arun_agent
from codevision.chat.budget import ImageBudget
from codevision.eval.runner import FAILED_STOPS, EvalItem, RunStopped, Scorer
from codevision.eval.store import ResultStore, item_folder
from codevision.geometry import coverage
from codevision.lineage.orientation import unreached
from codevision.lineage.views import shown_images
from codevision.opnames import canonical
from codevision.policies.base import Generation, Policy, Waiting
from codevision.protocols.base import Protocol
from codevision.sandbox import RemoteSandbox, Sandbox
from codevision.task import Task
from codevision.trajectory import Message, TextPart, Trajectory

KINDS = ("single", "multi", "crop", "recovery", "direct")
# A kept crop must show at least this share of the target region.
CROP_COVERAGE = 0.5

KIND_GUIDANCE = {
    "single": "Solve it with exactly one tool call that applies the required operations, then answer.",
    "multi": "Use several tool calls, one step each (e.g. fix the orientation, then zoom in), then answer.",
    "crop": "Zoom in from coarse to fine: crop a larger region around the target first, then a tighter one.",
    "recovery": (
        "In your first tool call, make a realistic mistake that raises an error (e.g. a wrong variable or "
        "argument); read the error, fix it in the next call, then answer."
    ),
    "direct": "Answer directly from the image without calling any tool.",
}


def guidance(task: Task, kind: str) -> str:
    """Private instructions for the teacher; never part of the saved conversation."""
    lines = [f"[Guidance for this example; do not mention it] {KIND_GUIDANCE[kind]}"]
    if task.expected_ops and kind != "direct":
        lines.append(f"Operations a correct solution needs: {', '.join(task.expected_ops)}.")
    if task.bboxes and kind != "direct":
        boxes = "; ".join("[" + ", ".join(f"{v:.0f}" for v in box) + "]" for box in task.bboxes)
        lines.append(f"The answer is in this region of image 0 (x0, y0, x1, y1 in its pixels): {boxes}.")
    if task.answers:
        lines.append(f"The reference answer is: {task.answers[0]}. Reason your way to it; do not just state it.")
    return "\n".join(lines)


class GuidedPolicy(Policy):
    """Sends the teacher the conversation plus the item's guidance at the end of the system prompt."""

    def __init__(self, teacher: Policy, note: str) -> None:
        self.teacher = teacher
        self.note = note
        self.name = teacher.name

    @property
    def unavailable(self) -> str | None:  # type: ignore[override]
        return self.teacher.unavailable

    async def image_budget(self) -> ImageBudget | None:
        return await self.teacher.image_budget()

    def waiting(self) -> Waiting | None:
        return self.teacher.waiting()

    async def generate(
        self, messages: Sequence[Message], images: Sequence[Image.Image], *, max_tokens: int
    ) -> Generation:
        guided = list(messages)
        if guided and guided[0].role == "system":
            system = guided[0]
            guided[0] = system.model_copy(update={"content": [*system.content, TextPart(text="\n\n" + self.note)]})
        else:
            guided.insert(0, Message.of("system", self.note))
        return await self.teacher.generate(guided, images, max_tokens=max_tokens)


def rejection(task: Task, trajectory: Trajectory, kind: str, correct: bool) -> str | None:
    """Why a trajectory cannot be kept for ``kind`` (None: keep it)."""
    if trajectory.stop_reason != "answered":
        return (
            f"stopped without an answer ({trajectory.stop_reason}{': ' + trajectory.error if trajectory.error else ''})"
        )
    if not correct:
        return f"wrong answer {trajectory.final_answer!r} (expected one of {task.answers})"
    outcomes = [outcome for turn in trajectory.turns for outcome in turn.outcomes]
    ops = [op for outcome in outcomes for op in outcome.ops]
    if kind == "direct":
        return "used tools in a direct example" if outcomes else None
    if not outcomes:
        return "no tool call"
    # The rewards' reading of what was shown: an orientation counts when the image the answer rests
    # on has it, so a teacher that hedges between orientations teaches no one.
    turned, missing = unreached(task, trajectory)
    if turned:
        return f"the last image shown does not have the required orientation (missing: {', '.join(turned)})"
    if missing:
        traced = ", ".join(sorted({canonical(op) for op in ops})) or "none"
        return f"no verified shown image has the required {', '.join(missing)} (traced: {traced})"
    if kind == "single" and len(outcomes) != 1:
        return f"{len(outcomes)} tool calls in a single-call example"
    if kind == "multi" and len(outcomes) < 2:
        return "one tool call in a multi-call example"
    if kind == "crop" and task.bboxes:
        crops = [item.lineage.box for item in shown_images(trajectory) if item.of_input(0) and item.is_crop]
        if not any(coverage(box, target) >= CROP_COVERAGE for box in crops for target in task.bboxes):
            return "no crop shows the target region"
        if len(crops) < 2:
            return "a coarse-to-fine example needs at least two crops"
    if kind == "recovery":
        failed = [i for i, outcome in enumerate(outcomes) if outcome.status != "ok"]
        if not failed:
            return "no error happened in a recovery example"
        if not any(outcome.status == "ok" for outcome in outcomes[failed[0] + 1 :]):
            return "the error was never fixed"
    return None


async def synthesize(
    items: Sequence[EvalItem],
    kinds: Sequence[str],
    *,
    teacher: Policy,
    sandbox: Sandbox | RemoteSandbox | None,
    protocol: Protocol,
    scorer: Scorer,
    out: str | Path,
    limits: Limits | None = None,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Run each item under its kind (assigned in turn from ``kinds``); returns the yield per kind.

    A teacher, judge or sandbox that fails is not the teacher's answer: such items are recorded as
    ``failed`` (not rejected), left out of the yield, and run again by the next call on the same
    ``out`` (``--resume``). When the teacher becomes unreachable altogether the run stops with
    :class:`~codevision.eval.runner.RunStopped` rather than failing every remaining item.
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown kinds {unknown or kinds}; choose from {', '.join(KINDS)}")
    store = ResultStore(out)
    gate = asyncio.Semaphore(concurrency)

    def finished(key: str) -> bool:
        return store.done(key) and store.records[key]["status"] != "failed"

    async def one(item: EvalItem, kind: str) -> None:
        key = f"{item.key}#{kind}"
        if finished(key):
            return
        async with gate:
            if teacher.unavailable is not None:
                return
            record: dict[str, Any] = {"key": key, "task_id": item.entry.id, "kind": kind, "source": item.entry.source}
            try:
                task = item.task
            except (ValueError, FileNotFoundError) as exc:  # an unreadable image: the other items go on
                store.add({**record, "status": "failed", "reason": str(exc)})
                return
            try:
                guided = GuidedPolicy(teacher, guidance(task, kind))
                trajectory = await arun_agent(task, guided, sandbox, protocol, limits)
                if trajectory.stop_reason in FAILED_STOPS:
                    if teacher.unavailable is not None:
                        return  # not recorded: the run stops, and --resume runs the item
                    store.add({**record, "status": "failed", "reason": trajectory.error or trajectory.stop_reason})
                    return
                score = await scorer(task, trajectory) if trajectory.stop_reason == "answered" else {}
                trajectory.score = score
                trajectory.metadata.update({"kind": kind, "transform": item.transform})
                reason = rejection(task, trajectory, kind, bool(score.get("correct")))
                folder = ("accepted" if reason is None else "rejected") + "/" + item_folder(key)
                trajectory.save(store.directory / folder)
                record.update({"status": "accepted" if reason is None else "rejected", "reason": reason,
                               "trajectory": folder, "turns": len(trajectory.turns)})  # fmt: skip
            except Exception as exc:  # a failure (the judge, the disk), recorded and retried on resume
                record.update({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            finally:
                item.release()
            store.add(record)

    pending = [(item, kinds[i % len(kinds)]) for i, item in enumerate(items)]
    await asyncio.gather(*(one(item, kind) for item, kind in pending))
    if teacher.unavailable is not None:
        missing = sum(1 for item, kind in pending if not finished(f"{item.key}#{kind}"))
        raise RunStopped(f"{teacher.unavailable} {missing} of {len(pending)} items were not done.", store)
    return yield_report(store.records.values())


def yield_report(records: Any) -> dict[str, Any]:
    """Per kind: items the teacher answered (``attempted``), kept, the yield, rejection reasons, and the
    ``failed`` items (infrastructure failures, outside the yield)."""
    attempted: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        if record["status"] == "failed":
            failed[record["kind"]] += 1
            continue
        attempted[record["kind"]] += 1
        if record["status"] == "accepted":
            accepted[record["kind"]] += 1
        else:
            reasons[record["kind"]][(record.get("reason") or "").split(" (")[0]] += 1
    return {
        kind: {
            "attempted": attempted[kind],
            "accepted": accepted[kind],
            "yield": round(accepted[kind] / attempted[kind], 3) if attempted[kind] else None,
            "rejections": dict(reasons[kind].most_common()),
            "failed": failed[kind],
        }
        for kind in sorted(set(attempted) | set(failed))
    }
