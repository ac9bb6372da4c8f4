"""The images a trajectory showed its model, read through their lineage: what rewards and metrics pay for.

An op that ran but whose result never reached the model taught it nothing, so the process terms
look only at shown images (tool outputs) and only at those whose lineage is verified: which part
of which input each one shows (``box``), at which orientation, through which ops (``chain``).
"""

from __future__ import annotations

from dataclasses import dataclass

from codevision.geometry import Box, area, intersection
from codevision.opnames import canonical
from codevision.sandbox.results import ImageOp
from codevision.trajectory import Lineage, Trajectory
from codevision.transforms.ops import Orientation

#: A shown image keeping less than this share of its input's area is a crop (a zoom), not the whole picture.
CROP_SHARE = 0.95


@dataclass(frozen=True)
class Shown:
    """One image returned to the model: its trajectory index, the tool call (by number) that returned it
    and its lineage."""

    index: int
    call: int
    lineage: Lineage | None
    input_size: tuple[int, int] | None

    @property
    def verified(self) -> bool:
        return self.lineage is not None and self.lineage.verified

    def of_input(self, input_index: int = 0) -> bool:
        """Verified and showing (part of) input ``input_index``."""
        return self.verified and self.lineage.input == input_index and self.lineage.box is not None  # type: ignore[union-attr]

    @property
    def orientation(self) -> Orientation | None:
        lineage = self.lineage
        if not self.verified or lineage is None or lineage.angle is None:
            return None
        return Orientation(lineage.angle, bool(lineage.mirrored))

    @property
    def share(self) -> float | None:
        """The share of its input's area it shows (None when unknown)."""
        lineage = self.lineage
        if not self.verified or lineage is None or lineage.box is None or not self.input_size:
            return None
        whole = self.input_size[0] * self.input_size[1]
        return area(lineage.box) / whole if whole else None

    @property
    def is_crop(self) -> bool:
        share = self.share
        return share is not None and share < CROP_SHARE


def shown_images(trajectory: Trajectory) -> list[Shown]:
    """Every image the tools returned, in the order the model saw them."""
    found = []
    number = 0
    for turn in trajectory.turns:
        for outcome in turn.outcomes:
            for index in outcome.image_indices:
                if not 0 <= index < len(trajectory.images):
                    continue
                lineage = trajectory.images[index].lineage
                size = None
                if lineage is not None and lineage.input is not None and 0 <= lineage.input < len(trajectory.images):
                    size = trajectory.images[lineage.input].size
                found.append(Shown(index, number, lineage, size))
            number += 1
    return found


def focus(box: Box, target: Box, share: float) -> float:
    """How well a shown region looks at ``target``: the share of the target it contains, times how much
    of it the target fills (up to ``share``, beyond which context around the target costs nothing).

    The whole image contains every target but, for a small one, is mostly something else; a crop
    around the target with a margin scores 1.
    """
    shared = intersection(box, target)
    target_area, box_area = area(target), area(box)
    if target_area <= 0 or box_area <= 0:
        return 0.0
    return (shared / target_area) * min(1.0, (shared / box_area) / share)


def unverified(shown: list[Shown]) -> list[dict[str, object]]:
    """The shown images that earn nothing, with why (for ``details``)."""
    return [
        {
            "image": item.index,
            "status": item.lineage.status if item.lineage else "unrecorded",
            "reason": item.lineage.reason if item.lineage else None,
        }
        for item in shown
        if not item.verified
    ]


def chain_ops(ops: list[ImageOp], shown: list[Shown]) -> list[ImageOp]:
    """The ops in the chains of verified shown images: those whose effect the model saw."""
    positions = {
        position
        for item in shown
        if item.verified and item.lineage is not None
        for position in item.lineage.chain
        if 0 <= position < len(ops)
    }
    return [ops[position] for position in sorted(positions)]


def shown_ops(trajectory: Trajectory, ops: list[ImageOp]) -> set[str]:
    """The ops the model saw the effect of: the orientations and crops of verified shown views of input 0
    (as canonical names, so two quarter turns read as ``rotate_180``), and every op in a verified chain
    that changed the image (an op whose result held its operand's pixels had no effect to see).

    ``ops`` is the trajectory's trace (:func:`trace`), which chains index into.
    """
    shown = shown_images(trajectory)
    found = {canonical(op) for op in chain_ops(ops, shown) if not op.unchanged}
    for item in shown:
        value = item.orientation
        if item.of_input(0) and value is not None:
            found |= set(value.ops())
            if item.is_crop:
                found.add("crop")
    return found


def trace(trajectory: Trajectory) -> list[ImageOp]:
    """All ops of the trajectory in execution order: the positions lineage chains index into.

    A session keeps its objects between calls, so a crop in one call may cut an image rotated in an
    earlier one; chains are only whole when the ops of every call are read together.
    """
    return [op for turn in trajectory.turns for outcome in turn.outcomes for op in outcome.ops]
