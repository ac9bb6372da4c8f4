"""Evaluation items: each task as it is, and under each requested transform."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

from codevision.eval.runner import EvalItem
from codevision.task import Task
from codevision.transforms import Transform
from codevision.transforms.tasks import item_seed, transformed_task


def build_items(
    tasks: Iterable[Task],
    transforms: list[Transform],
    *,
    base_dir: str | Path | None = None,
    include_original: bool = True,
    seed: int = 0,
) -> Iterator[EvalItem]:
    """Every task untransformed (the baseline of the robustness table) and under every transform.

    Images are read when an item runs (:attr:`EvalItem.task`), not here."""
    for task in tasks:
        prebuilt = task.metadata.get("transform")
        if isinstance(prebuilt, str):  # an item of a built benchmark: already transformed
            base_id = str(task.metadata.get("source_task", task.id))
            yield EvalItem(task, transform=prebuilt, base_id=base_id, build=partial(_loaded, task, base_dir))
            continue
        if include_original:
            yield EvalItem(task, base_id=task.id, build=partial(_loaded, task, base_dir))
        for transform in transforms:
            seeded = item_seed(task.id, transform.name, seed)
            build = partial(transformed_task, task, transform, seeded, base_dir)
            yield EvalItem(task, transform=transform.name, base_id=task.id, build=build)


def _loaded(task: Task, base_dir: str | Path | None) -> Task:
    return Task.from_images(task.load_images(base_dir), **task.model_dump(exclude={"images"}))
