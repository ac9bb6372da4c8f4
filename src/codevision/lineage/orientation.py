"""Which orientation the model saw: the expected orientation ops that the images it was shown credit.

The model's reading of an image's orientation rests on the last image of the input it was shown
(the deciding view, :func:`deciding_view`), not on every image it was shown: within one call the
images are chosen before any of them is seen, so showing several orientations at once is a hedge,
not a correction. Rewards, teacher synthesis and evaluation read orientation through this module so
they pay for, keep and count the same thing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from codevision.lineage.views import Shown, shown_images, shown_ops, trace
from codevision.opnames import ANGLE_TOLERANCE, canonical
from codevision.sandbox.results import ImageOp
from codevision.task import Task
from codevision.trajectory import Trajectory
from codevision.transforms.ops import Orientation, op_orientation

#: Ops that turn or mirror an image: each one that does not lead to a credited shown image is spurious.
_TURNING = frozenset({"rotate", "flip", "transpose"})


def _close(a: Orientation, b: Orientation) -> bool:
    difference = abs(a.angle - b.angle) % 360.0
    return a.mirrored == b.mirrored and min(difference, 360.0 - difference) <= ANGLE_TOLERANCE


def _expected_orientation(expected: list[str]) -> tuple[list[str], Orientation]:
    oriented = []
    for name in expected:
        with contextlib.suppress(ValueError):
            op_orientation(name)
            oriented.append(name)
    return oriented, Orientation.from_ops(oriented)


@dataclass(frozen=True)
class OrientationAnalysis:
    """The expected orientation ops, those the deciding view credits, and the turning ops that led to none.

    ``view`` is the trajectory index of the deciding view (None when nothing was shown).
    """

    oriented: list[str]
    credited: list[str]
    spurious: list[int]
    reached: bool
    view: int | None


def _turns(op: ImageOp) -> bool:
    """Whether ``op`` changes orientation (a rotation by 0 or a flip along no axis does not)."""
    return op.name in _TURNING and canonical(op) not in ("rotate_0", "flip")


def deciding_view(shown: list[Shown]) -> Shown | None:
    """The last shown image that may show input 0: what the model's reading of the orientation rests on.

    An image whose lineage is unknown may show anything, so it decides too (and credits nothing):
    otherwise the right orientation shown through ``display`` and another one through an untraced
    figure afterwards would be paid as if only the right one had been seen.
    """
    for item in reversed(shown):
        if not item.verified or item.lineage.input == 0:  # type: ignore[union-attr]
            return item
    return None


def analyse_orientation(ops: list[ImageOp], shown: list[Shown], expected: list[str]) -> OrientationAnalysis:
    """Credit the expected orientation ops by the orientation of the deciding view (:func:`deciding_view`).

    When it has the expected net orientation every expected orientation op is credited; otherwise the
    expected ops whose own orientation it has. Any earlier view counts only when it has the same
    orientation, so showing several orientations in one call (a hedge) or each expected op on a
    separate image (none of them the expected view) is never paid as the expected view, while a
    correction in a later call is, less the spurious ops of the wrong attempt. ``spurious`` holds the
    trace positions of turning ops outside the chains of views with the credited orientation.
    """
    oriented, target = _expected_orientation(expected)
    last = deciding_view(shown)
    decided = last.orientation if last is not None and last.of_input(0) else None
    reached = bool(oriented) and decided is not None and _close(decided, target)
    credited: list[str] = []
    goal: Orientation | None = None
    if reached:
        credited, goal = list(oriented), target
    elif decided is not None:
        credited = [name for name in oriented if _close(decided, op_orientation(name))]
        goal = decided if credited else None
    justifying = [
        item
        for item in shown
        if goal is not None and item.of_input(0) and item.orientation is not None and _close(item.orientation, goal)
    ]
    justified = {position for item in justifying for position in item.lineage.chain}  # type: ignore[union-attr]
    spurious = [i for i, op in enumerate(ops) if _turns(op) and i not in justified]
    return OrientationAnalysis(
        oriented=oriented,
        credited=credited,
        spurious=spurious,
        reached=reached,
        view=None if last is None else last.index,
    )


def unreached(task: Task, trajectory: Trajectory) -> tuple[list[str], list[str]]:
    """The expected ops that never reached the model, read as the reward reads them: the orientation ops
    the deciding view does not have, and the other ops (a crop, a corruption's fix) no verified shown
    image has (:func:`codevision.lineage.views.shown_ops`)."""
    ops = trace(trajectory)
    orientation = analyse_orientation(ops, shown_images(trajectory), task.expected_ops)
    seen = shown_ops(trajectory, ops)
    turned = [name for name in orientation.oriented if name not in orientation.credited]
    other = [name for name in dict.fromkeys(task.expected_ops) if name not in orientation.oriented and name not in seen]
    return turned, other
