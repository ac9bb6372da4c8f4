"""The evaluation runner: tasks through the agent loop, scored, written durably as they finish.

Items run concurrently; each finished item's trajectory and result line are on disk before
the next progress update, so ``--resume`` after a crash or ``kill -9`` continues with exactly the
items that are missing. Model or judge outages are retried inside the policy and the judge; an
item that still fails is recorded as failed with the reason, never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from codevision.agent import Limits, arun_agent
from codevision.eval.store import ResultStore, item_folder, item_key
from codevision.geometry import coverage, iou
from codevision.lineage.views import shown_images, shown_ops
from codevision.opnames import canonical
from codevision.policies.base import Policy
from codevision.protocols.base import Protocol
from codevision.sandbox import RemoteSandbox, Sandbox
from codevision.task import Task
from codevision.trajectory import Trajectory

NO_TRANSFORM = "none"
FAILED_STOPS = ("model_error", "sandbox_error")
# A crop "contains" the target when at least this share of the target's area lies inside it.
CONTAINS_SHARE = 0.5

Scorer = Callable[[Task, Trajectory], Awaitable[dict[str, Any]]]


class RunStopped(RuntimeError):
    """The model became unreachable: the run stopped instead of failing every remaining item. The items
    not run are not recorded, so ``--resume`` runs them; ``store`` holds what was done."""

    def __init__(self, message: str, store: ResultStore) -> None:
        super().__init__(message)
        self.store = store


@dataclass
class EvalItem:
    """One task under one transform (``none`` for the original images)."""

    task: Task
    transform: str = NO_TRANSFORM
    base_id: str | None = None

    @property
    def key(self) -> str:
        return item_key(self.base_id or self.task.id, self.transform)


def faithfulness(task: Task, trajectory: Trajectory) -> dict[str, int] | None:
    """How many of the crops the model was shown looked at the target: from verified lineage, not judged."""
    if not task.bboxes:
        return None
    shown = shown_images(trajectory)
    boxes = [item.lineage.box for item in shown if item.of_input(0) and item.is_crop and item.lineage]
    return {
        "crops": len(boxes),
        "overlapping": sum(1 for box in boxes if box and any(iou(box, target) > 0 for target in task.bboxes)),
        "containing": sum(
            1 for box in boxes if box and any(coverage(box, target) >= CONTAINS_SHARE for target in task.bboxes)
        ),
        "unverified": sum(1 for item in shown if not item.verified),
    }


def summarize(item: EvalItem, trajectory: Trajectory, folder: str) -> dict[str, Any]:
    """The result line of one item: everything the report needs without reopening trajectories."""
    score = trajectory.score or {}
    outcomes = [outcome for turn in trajectory.turns for outcome in turn.outcomes]
    ops = [op for outcome in outcomes for op in outcome.ops]
    errors = [i for i, outcome in enumerate(outcomes) if outcome.status != "ok"]
    recovered = sum(1 for i in errors if any(o.status == "ok" for o in outcomes[i + 1 :]))
    failed = trajectory.stop_reason in FAILED_STOPS
    return {
        "key": item.key,
        "task_id": item.base_id or item.task.id,
        "transform": item.transform,
        "source": item.task.source,
        "status": "failed" if failed else "done",
        "reason": trajectory.error if failed else None,
        "correct": None if failed else bool(score.get("correct")),
        "score": score.get("value"),
        "rule": score.get("rule"),
        "judged": score.get("judged", False),
        "prediction": trajectory.final_answer,
        "references": list(item.task.answers),
        "stop_reason": trajectory.stop_reason,
        "turns": len(trajectory.turns),
        "tool_calls": len(outcomes),
        "tool_errors": len(errors),
        "errors_recovered": recovered,
        "ops": sorted({canonical(op) for op in ops}),
        "shown_ops": sorted(shown_ops(trajectory, ops)),
        "expected_ops": list(item.task.expected_ops),
        "faithfulness": faithfulness(item.task, trajectory),
        "prompt_tokens": trajectory.usage.prompt_tokens,
        "completion_tokens": trajectory.usage.completion_tokens,
        "seconds": round(trajectory.seconds, 3),
        "metadata": {k: v for k, v in item.task.metadata.items() if isinstance(v, (str, int, float, bool))},
        "trajectory": f"items/{folder}",
    }


def _failure(item: EvalItem, reason: str) -> dict[str, Any]:
    return {
        "key": item.key,
        "task_id": item.base_id or item.task.id,
        "transform": item.transform,
        "source": item.task.source,
        "status": "failed",
        "reason": reason,
        "correct": None,
        "references": list(item.task.answers),
        "metadata": {},
    }


async def evaluate(
    items: Iterable[EvalItem],
    *,
    policy: Policy,
    sandbox: Sandbox | RemoteSandbox | None,
    protocol: Protocol,
    scorer: Scorer,
    out: str | Path,
    limits: Limits | None = None,
    concurrency: int = 8,
    retry_failed: bool = False,
    console: Console | None = None,
) -> ResultStore:
    """Run every item not yet in ``out``'s results; returns the store with all results."""
    store = ResultStore(out)
    todo = [
        item
        for item in items
        if not store.done(item.key) or (retry_failed and store.records[item.key]["status"] == "failed")
    ]
    gate = asyncio.Semaphore(concurrency)
    finished = [r for r in store.records.values() if r.get("correct") is not None]
    correct = [sum(1 for r in finished if r["correct"]), len(finished)]
    columns = (
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accuracy {task.fields[accuracy]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("eval", total=len(todo), accuracy=_accuracy(*correct), rate="")

        async def one(item: EvalItem) -> None:
            async with gate:
                if policy.unavailable is not None:
                    return  # the run is stopping; the item stays missing, for --resume
                try:
                    trajectory = await arun_agent(item.task, policy, sandbox, protocol, limits)
                    if trajectory.stop_reason == "model_error" and policy.unavailable is not None:
                        return
                    if trajectory.stop_reason not in FAILED_STOPS:
                        trajectory.score = await scorer(item.task, trajectory)
                    folder = item_folder(item.key)
                    trajectory.save(store.directory / "items" / folder)
                    record = summarize(item, trajectory, folder)
                except Exception as exc:  # the item is recorded as failed, never dropped
                    record = _failure(item, f"{type(exc).__name__}: {exc}")
                store.add(record)
                if record["correct"] is not None:
                    correct[0] += bool(record["correct"])
                    correct[1] += 1
                done = progress.tasks[bar].completed + 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(bar, advance=1, accuracy=_accuracy(*correct), rate=f"{rate:.2f} items/s")

        await asyncio.gather(*(one(item) for item in todo))
    if policy.unavailable is not None:
        missing = sum(1 for item in todo if not store.done(item.key))
        failed = sum(1 for item in todo if store.done(item.key) and store.records[item.key]["status"] == "failed")
        message = f"{policy.unavailable} {missing} of {len(todo)} items were not run"
        if failed:
            message += f"; {failed} failed before it stopped (add --retry-failed to run them again)"
        raise RunStopped(message + ".", store)
    return store


def _accuracy(correct: int, total: int) -> str:
    return f"{100 * correct / total:.1f}% of {total}" if total else "–"
