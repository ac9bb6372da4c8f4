"""The evaluation runner: tasks through the agent loop, scored, written durably as they finish.

Items run concurrently; each finished item's trajectory and result line are on disk before
the next progress update, so ``--resume`` after a crash or ``kill -9`` continues with exactly the
items that are missing. Model or judge outages are retried inside the policy and the judge; an
item that still fails is recorded as failed with the reason, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from codevision.agent import Limits, arun_agent
from codevision.eval.store import ResultStore, credit, item_folder, item_key
from codevision.geometry import coverage, iou
from codevision.lineage.orientation import unreached
from codevision.lineage.views import shown_images, shown_ops
from codevision.opnames import canonical
from codevision.policies.base import Policy
from codevision.protocols.base import Protocol
from codevision.sandbox import RemoteSandbox, Sandbox
from codevision.scoring.judge import JudgeError
from codevision.task import Task
from codevision.trajectory import Trajectory

if TYPE_CHECKING:
    from codevision.rewards.spec import RewardSpec

NO_TRANSFORM = "none"
# The stop reasons that fail an item (not a wrong answer), and the stage a result line names for each.
FAILED_STOPS = {"model_error": "model", "sandbox_error": "sandbox"}
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
    """One task under one transform (``none`` for the original images).

    ``entry`` is the task as the benchmark lists it; ``build``, when given, makes the task the model
    sees (images read, the transform applied) and runs only when the item runs, so a benchmark's
    images are never all in memory at once and one unreadable image fails one item, not the run.
    """

    entry: Task
    transform: str = NO_TRANSFORM
    base_id: str | None = None
    build: Callable[[], Task] | None = None
    _built: Task | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        return item_key(self.base_id or self.entry.id, self.transform)

    @property
    def task(self) -> Task:
        """The task with its images; raises ``ValueError`` or ``FileNotFoundError`` naming a bad image."""
        if self.build is None:
            return self.entry
        if self._built is None:
            self._built = self.build()
        return self._built

    def release(self) -> None:
        """Drop the built task's images once the item is done (they are rebuilt if asked for again)."""
        self._built = None


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


def summarize(
    item: EvalItem,
    task: Task,
    trajectory: Trajectory,
    folder: str,
    *,
    judge_failure: str | None = None,
    reward: RewardSpec | None = None,
) -> dict[str, Any]:
    """The result line of one item: everything the report needs without reopening trajectories.

    With ``reward``, the line also holds the reward a trainer using that spec would have paid for
    the episode (its total and each term), computed by the trainers' own code.

    ``judge_failure`` is the judge server's error when it could not score the item: the item then
    counts as failed, but its trajectory is kept, so ``--retry-failed`` re-scores it without the model.
    """
    score = trajectory.score or {}
    outcomes = [outcome for turn in trajectory.turns for outcome in turn.outcomes]
    ops = [op for outcome in outcomes for op in outcome.ops]
    errors = [i for i, outcome in enumerate(outcomes) if outcome.status != "ok"]
    recovered = sum(1 for i in errors if any(o.status == "ok" for o in outcomes[i + 1 :]))
    stage = FAILED_STOPS.get(trajectory.stop_reason) or ("judge" if judge_failure else None)
    details = score.get("details") or {}
    judge_record = details.get("judge") or {}
    return {
        "key": item.key,
        "task_id": item.base_id or task.id,
        "transform": item.transform,
        "source": task.source,
        "status": "failed" if stage else "done",
        "stage": stage,
        "reason": (trajectory.error if stage != "judge" else f"judge: {judge_failure}") if stage else None,
        "correct": None if stage else bool(score.get("correct")),
        "score": score.get("value"),
        "rule": score.get("rule"),
        "scoring": {key: details[key] for key in ("mode", "quick_extract") if key in details} or None,
        "judged": score.get("judged", False),
        "needs_judge": bool(score.get("needs_judge")),
        "judge_error": judge_failure or judge_record.get("error"),
        "prediction": trajectory.final_answer,
        "references": list(task.answers),
        "stop_reason": trajectory.stop_reason,
        "turns": len(trajectory.turns),
        "tool_calls": len(outcomes),
        "tool_errors": len(errors),
        "errors_recovered": recovered,
        "ops": sorted({canonical(op) for op in ops}),
        "shown_ops": sorted(shown_ops(trajectory, ops)),
        "expected_ops": list(task.expected_ops),
        "expected_ops_reached": not any(unreached(task, trajectory)) if task.expected_ops else None,
        "faithfulness": faithfulness(task, trajectory),
        "prompt_tokens": trajectory.usage.prompt_tokens,
        "completion_tokens": trajectory.usage.completion_tokens,
        "seconds": round(trajectory.seconds, 3),
        "metadata": {k: v for k, v in task.metadata.items() if isinstance(v, (str, int, float, bool))},
        "trajectory": f"items/{folder}",
        **(_reward_fields(reward, task, trajectory) if reward is not None and not stage else {}),
    }


def _reward_fields(reward: RewardSpec, task: Task, trajectory: Trajectory) -> dict[str, Any]:
    result = reward.compute(task, trajectory)
    return {"reward": round(result.total, 4), "reward_terms": {k: round(v, 4) for k, v in result.breakdown.items()}}


def _failure(item: EvalItem, reason: str, *, stage: str, status: str = "failed") -> dict[str, Any]:
    """The line of an item that has no trajectory: its input could not be read, or the runner failed."""
    return {
        "key": item.key,
        "task_id": item.base_id or item.entry.id,
        "transform": item.transform,
        "source": item.entry.source,
        "status": status,
        "stage": stage,
        "reason": reason,
        "correct": None,
        "needs_judge": False,
        "judge_error": None,
        "references": list(item.entry.answers),
        "metadata": {},
    }


def rescorable(record: dict[str, Any]) -> bool:
    """Whether the item's trajectory is kept and only its score is missing or provisional: the judge
    failed, could not be read, or was never asked where the rule wants one."""
    if "trajectory" not in record:
        return False
    return record.get("stage") == "judge" or (record["status"] == "done" and bool(record.get("needs_judge")))


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
    skip_bad_items: bool = False,
    console: Console | None = None,
    waiting: Callable[[], str | None] | None = None,
    reward: RewardSpec | None = None,
) -> ResultStore:
    """Run every item not yet in ``out``'s results; returns the store with all results.

    With ``retry_failed``, items that failed are run again, except those whose only failure was the
    judge's (or whose score still waits for one): their saved trajectory is re-scored instead. An item
    whose images cannot be read is recorded as failed with the reason, or as ``skipped`` with
    ``skip_bad_items``; the other items run either way. Lines superseded by a retry are compacted away
    when the run ends, so ``results.jsonl`` holds one line per item. ``waiting`` describes a reply that
    is late (shown beside the progress bar, so a hung server is never silence). ``reward`` adds the
    training reward of each episode to its line (see :func:`summarize`).
    """
    store = ResultStore(out)
    todo = []
    for item in items:
        record = store.records.get(item.key)
        if record is None or (retry_failed and (record["status"] == "failed" or rescorable(record))):
            todo.append(item)
    gate = asyncio.Semaphore(concurrency)
    finished = [c for c in map(credit, store.records.values()) if c is not None]
    correct = [sum(finished), len(finished)]
    columns = (
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accuracy {task.fields[accuracy]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("[yellow]{task.fields[waiting]}"),
    )
    started = time.monotonic()
    superseded = sum(1 for item in todo if store.done(item.key))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("eval", total=len(todo), accuracy=_accuracy(*correct), rate="", waiting="")

        async def watch() -> None:
            while waiting is not None:
                progress.update(bar, waiting=waiting() or "")
                await asyncio.sleep(0.5)

        async def one(item: EvalItem) -> None:
            async with gate:
                if policy.unavailable is not None:
                    return  # the run is stopping; the item stays missing, for --resume
                previous = store.records.get(item.key)
                try:
                    if previous is not None and rescorable(previous):
                        record = await _rescore(item, previous, store, scorer, reward)
                    else:
                        record = await _run(
                            item, store, policy, sandbox, protocol, scorer, limits, skip_bad_items, reward
                        )
                except Exception as exc:  # the item is recorded as failed, never dropped
                    record = _failure(item, f"{type(exc).__name__}: {exc}", stage="internal")
                finally:
                    item.release()
                if record is None:
                    return
                for line, sign in ((previous, -1), (record, 1)):
                    earned = None if line is None else credit(line)
                    if earned is not None:
                        correct[0] += sign * earned
                        correct[1] += sign
                store.add(record)
                done = progress.tasks[bar].completed + 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(bar, advance=1, accuracy=_accuracy(*correct), rate=f"{rate:.2f} items/s")

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.gather(*(one(item) for item in todo))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if superseded:
        store.compact()
    if policy.unavailable is not None:
        missing = sum(1 for item in todo if not store.done(item.key))
        failed = sum(1 for item in todo if store.done(item.key) and store.records[item.key]["status"] == "failed")
        message = f"{policy.unavailable} {missing} of {len(todo)} items were not run"
        if failed:
            message += f"; {failed} failed before it stopped (add --retry-failed to run them again)"
        raise RunStopped(message + ".", store)
    return store


async def _run(
    item: EvalItem,
    store: ResultStore,
    policy: Policy,
    sandbox: Sandbox | RemoteSandbox | None,
    protocol: Protocol,
    scorer: Scorer,
    limits: Limits | None,
    skip_bad_items: bool,
    reward: RewardSpec | None,
) -> dict[str, Any] | None:
    """Run and score one item; None when the model became unavailable (the item stays missing)."""
    try:
        task = item.task
    except (ValueError, FileNotFoundError) as exc:
        return _failure(item, str(exc), stage="input", status="skipped" if skip_bad_items else "failed")
    trajectory = await arun_agent(task, policy, sandbox, protocol, limits)
    if trajectory.stop_reason == "model_error" and policy.unavailable is not None:
        return None
    judge_failure = None
    if trajectory.stop_reason not in FAILED_STOPS:
        judge_failure = await _score(scorer, task, trajectory)
    folder = item_folder(item.key)
    trajectory.save(store.directory / "items" / folder)
    return summarize(item, task, trajectory, folder, judge_failure=judge_failure, reward=reward)


async def _rescore(
    item: EvalItem, previous: dict[str, Any], store: ResultStore, scorer: Scorer, reward: RewardSpec | None
) -> dict[str, Any]:
    """Score a saved trajectory again (the judge is back, or was added); the model is not asked."""
    folder = previous["trajectory"].removeprefix("items/")
    trajectory = Trajectory.load(store.directory / previous["trajectory"])
    task = item.task
    judge_failure = await _score(scorer, task, trajectory)
    trajectory.save(store.directory / "items" / folder)
    return summarize(item, task, trajectory, folder, judge_failure=judge_failure, reward=reward)


async def _score(scorer: Scorer, task: Task, trajectory: Trajectory) -> str | None:
    """Set the trajectory's score; the judge server's error when it could not give one."""
    try:
        trajectory.score = await scorer(task, trajectory)
    except JudgeError as exc:
        trajectory.score = None
        return str(exc)
    return None


def _accuracy(correct: float, total: int) -> str:
    return f"{100 * correct / total:.1f}% of {total}" if total else "–"
