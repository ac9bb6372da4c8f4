"""Trajectories scored per second by the rule-based rewards (no judge), on 10k recorded trajectories.

Episodes are played through the real agent loop and sandbox by scripted policies (honest solvers,
sweeps, discards, grids, failing code), so every returned image carries the lineage the host
verified when the run was recorded; rewards only read it. Each of the 10k items pairs one of them
with a task of random expected ops and target box. Every part of the CodeVision and TAPO specs is
computed for each, and the same items are scored with the lineage stripped (the cost of the terms
that do not depend on it) for the ratio.

    python bench/rewards.py            # 10,000 items
    python bench/rewards.py --n 2000   # fewer
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence

from codevision.agent import run_agent
from codevision.policies import ScriptedPolicy
from codevision.protocols.registry import get_protocol
from codevision.rewards import RewardSpec
from codevision.sandbox import Sandbox
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Trajectory

W, H = 320, 240
GRID = (
    "for y in range(0, 240, 80):\n    for x in range(0, 320, 80):\n        display(image.crop((x, y, x + 80, y + 80)))"
)
CODES = [
    ["r = image.rotate(90, expand=True)\ndisplay(r)", "display(r.crop((40, 60, 90, 120)))"],
    ["display(ImageOps.mirror(image))"],
    ["display(ImageEnhance.Contrast(image.crop((180, 30, 270, 100))).enhance(2.0))"],
    ["x = image\nfor _ in range(4):\n    x = x.rotate(90, expand=True)\ndisplay(image)"],
    [GRID],
    ["boom(", "display(np.rot90(np.asarray(image)))"],
    [],
]


def tool_call(code: str) -> str:
    payload = {"name": "code_image_tool", "arguments": {"code": code, "image_index": 0}}
    return f"<think>x</think><tool_call>{json.dumps(payload)}</tool_call>"


def episodes() -> list[Trajectory]:
    task = Task.from_images([scene_image(W, H)], id="bench", question="What digit?", answers=["7"], source="verl")
    played = []
    with Sandbox(workers=2) as sandbox:
        for codes in CODES:
            for answer in ("7", "8", "seven"):
                replies = [*(tool_call(code) for code in codes), f"<think>y</think><answer>{answer}</answer>"]
                played.append(run_agent(task, ScriptedPolicy(replies), sandbox, get_protocol("codevision")))
    return played


def build(n: int) -> tuple[list[tuple[Task, Trajectory]], list[tuple[Task, Trajectory]]]:
    """``n`` (task, trajectory) items, and the same items with every tool image's lineage removed."""
    pool = episodes()
    stripped = []
    for trajectory in pool:
        copy = trajectory.model_copy(deep=True)
        for record in copy.images:
            if record.origin == "tool":
                record.lineage = None
        stripped.append(copy)
    rng = random.Random(0)
    items, bare = [], []
    for i in range(n):
        x, y = rng.randint(0, 260), rng.randint(0, 190)
        task = Task(
            id=str(i),
            question="What digit?",
            answers=["7"],
            source="verl",
            bboxes=[(x, y, x + 60, y + 50)] if rng.random() < 0.7 else [],
            expected_ops=rng.choice([["rotate_90"], ["rotate_90", "crop"], ["flip_h"], ["crop"], []]),
        )
        pick = rng.randrange(len(pool))
        items.append((task, pool[pick]))
        bare.append((task, stripped[pick]))
    return items, bare


def rate(spec: RewardSpec, items: Sequence[tuple[Task, Trajectory]]) -> float:
    started = time.perf_counter()
    for task, trajectory in items:
        spec.compute(task, trajectory)
    return len(items) / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="items to score (default 10,000)")
    args = parser.parse_args(argv)
    items, bare = build(args.n)
    for name, spec in (("codevision", RewardSpec()), ("tapo", RewardSpec.tapo())):
        with_lineage, without = rate(spec, items), rate(spec, bare)
        print(
            f"{name}: {with_lineage:,.0f} trajectories/s reading verified lineage, "
            f"{without:,.0f}/s with it stripped (ratio {without / with_lineage:.2f})"
        )


if __name__ == "__main__":
    main()
