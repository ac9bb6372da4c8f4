"""Properties every reward keeps, over random specifications and real trajectories: the breakdown adds up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codevision.lineage import LineageTracker
from codevision.opnames import canonical
from codevision.rewards import (
    CodeVisionConfig,
    FaithfulnessConfig,
    FormatConfig,
    OutcomeConfig,
    RewardSpec,
    codevision_reward,
    faithfulness_reward,
    format_reward,
)
from codevision.sandbox import ImageOp, ImageRef, OutputImageInfo, RunResult, Sandbox
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Action, ToolOutcome, Trajectory, Turn
from tests.conftest import episode, final, tool_call
from tests.test_lineage import FUZZ_INPUT, FUZZ_SHOWN, hostile_ops

W, H = 96, 72
CODES = [
    [],
    ["display(image.rotate(90, expand=True))"],
    ["r = image.rotate(90, expand=True)\ndisplay(r)", "display(r.crop((10, 20, 40, 60)))"],
    ["display(ImageOps.mirror(image).crop((0, 0, 30, 30)))", "display(ImageEnhance.Contrast(image).enhance(2))"],
    ["x = image\nfor _ in range(3):\n    x = x.rotate(90, expand=True)\ndisplay(image)"],
    ["boom(", "boom("],
    ["image.crop((40, 0, 10, 10))"],
    ["import matplotlib.pyplot as plt\nplt.imshow(image)\nplt.show()"],
]


def make_task(expected: list[str], box: tuple[float, float, float, float] | None) -> Task:
    return Task.from_images(
        [scene_image(W, H)], id="t", question="q?", answers=["7"], source="verl", expected_ops=expected,
        bboxes=[box] if box else [],
    )  # fmt: skip


@pytest.fixture(scope="module")
def trajectories() -> Iterator[list[Trajectory]]:
    with Sandbox(workers=2, timeout=10.0) as sandbox:
        played = [
            episode(sandbox, make_task([], None), *(tool_call(code) for code in codes), final(answer))
            for codes in CODES
            for answer in ("7", "eight")
        ]
    yield played


numbers = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)
counts = st.integers(min_value=0, max_value=6)
specs = st.builds(
    RewardSpec,
    weights=st.dictionaries(st.sampled_from(["outcome", "format", "codevision", "faithfulness"]), numbers, min_size=1),
    outcome=st.builds(OutcomeConfig, partial_credit=st.booleans()),
    format=st.builds(FormatConfig, partial=st.booleans(), require_think=st.booleans()),
    codevision=st.builds(
        CodeVisionConfig,
        alpha=numbers,
        beta=numbers,
        gamma=numbers,
        format_weight=numbers,
        emergent_bonus=numbers,
        exact_bonus=numbers,
        free_calls=counts,
        free_images=counts,
        spurious_cap=counts,
        format=st.builds(FormatConfig, partial=st.booleans()),
    ),
    faithfulness=st.builds(
        FaithfulnessConfig, invalid_crop_penalty=numbers, noop_crop_penalty=numbers, repeated_failure_penalty=numbers
    ),
)
expected_ops = st.lists(st.sampled_from(["rotate_90", "rotate_180", "flip_h", "crop", "contrast"]), max_size=3)
boxes = st.one_of(st.none(), st.tuples(st.just(10.0), st.just(20.0), st.just(40.0), st.just(60.0)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, expected=expected_ops, box=boxes, pick=st.integers(min_value=0, max_value=len(CODES) * 2 - 1))
def test_breakdowns_add_up_to_totals(
    trajectories: list[Trajectory], spec: RewardSpec, expected: list[str], box: object, pick: int
) -> None:
    task = make_task(expected, box)  # type: ignore[arg-type]
    trajectory = trajectories[pick]
    for result in (
        spec.compute(task, trajectory),
        codevision_reward(task, trajectory, spec.codevision),
        faithfulness_reward(task, trajectory, spec.faithfulness),
        format_reward(trajectory, spec.format),
    ):
        assert sum(result.breakdown.values()) == pytest.approx(result.total, abs=1e-9)


def score_hostile(ops: list[ImageOp], expected: list[str], box: object, spec: RewardSpec) -> None:
    """Record a run with trace ``ops`` through the lineage tracker and check every reward of it adds up."""
    trajectory = Trajectory(task_id="t", protocol="codevision")
    trajectory.add_image(FUZZ_INPUT, "input")
    shown = trajectory.add_image(FUZZ_SHOWN, "tool", 0)
    tracker = LineageTracker(trajectory)
    tracker.start_session([0])
    info = OutputImageInfo(mode="RGB", size=FUZZ_SHOWN.size, id=ops[-1].result.id if ops and ops[-1].result else 0)
    tracker.record_run(RunResult(status="ok", ops=ops, image_info=[info]), [shown])
    outcome = ToolOutcome(action=0, status="ok", ops=ops, image_indices=[shown])
    trajectory.turns = [
        Turn(index=0, text=tool_call("x"), actions=[Action(kind="code", code="x")], outcomes=[outcome]),
        Turn(index=1, text=final("7"), answer="7"),
    ]
    trajectory.final_answer = "7"
    task = make_task(expected, box)  # type: ignore[arg-type]
    for result in (spec.compute(task, trajectory), RewardSpec.tapo().compute(task, trajectory)):
        assert sum(result.breakdown.values()) == pytest.approx(result.total, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(hostile_ops, max_size=10), expected=expected_ops, box=boxes, spec=specs)
def test_rewards_of_any_trace_never_raise_and_add_up(
    ops: list[ImageOp], expected: list[str], box: object, spec: RewardSpec
) -> None:
    score_hostile(ops, expected, box, spec)


@pytest.mark.parametrize(
    ("name", "args", "named"),
    [
        *(("rotate", {"angle": angle}, "rotate") for angle in (None, "ninety", float("inf"), [90])),
        *(("flip", {"axis": axis}, "flip") for axis in ([], {"h": 1}, None, 3)),
    ],
)
def test_ops_with_arguments_of_the_wrong_type_are_unknown_ops(name: str, args: dict[str, object], named: str) -> None:
    op = ImageOp(name=name, args=args, operand=ImageRef(id=0, size=(4, 4)), result=ImageRef(id=1))
    assert canonical(op) == named
    score_hostile([op], ["rotate_90"], None, RewardSpec())
