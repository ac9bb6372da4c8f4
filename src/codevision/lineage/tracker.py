"""Recording the lineage of every image a trajectory returns, once, as its run comes back.

A session's trace names each op's operand and result by trace id, and each shown image by the
id of the object displayed. Following producers back from a shown image gives the chain of ops
it claims to descend through, ending at a *base*: an image the session was given (an input, or
after a restart every trajectory image) or one a run started from (``image_index``). The chain's
geometry is one matrix (:mod:`codevision.lineage.maps`); composed with the base's own lineage it
says which part of which input the shown image is, and at what orientation. The claim is believed
only if the replay from the base's real pixels agrees with the shown pixels
(:mod:`codevision.lineage.replay`), because the trace is written where model code runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from codevision.lineage.maps import (
    INVERTING_OPS,
    NEUTRAL_OPS,
    PIXEL_OPS,
    Unreplayable,
    affine,
    apply,
    keeps_only_structure,
    op_map,
    scaling,
    translation,
)
from codevision.lineage.replay import Verdict, average, compare, edge_density, grid_size, inside, sample
from codevision.sandbox.results import MAX_OPS_PER_RUN, ImageOp, OutputImageInfo, RunResult
from codevision.trajectory import Lineage, Trajectory

#: Chains longer than this are not followed (a loop of thousands of ops is not a view of anything).
MAX_CHAIN = 256


def orientation_of(matrix: np.ndarray) -> tuple[float, bool]:
    """The orientation (ccw degrees after an optional left-right mirror) of an image whose pixels ``matrix``
    takes to its input's: the inverse map, input to image, read as a mirror and a turn."""
    forward = np.linalg.inv(matrix[:2, :2])
    mirrored = bool(np.linalg.det(forward) < 0)
    cosine = -forward[0, 0] if mirrored else forward[0, 0]
    angle = math.degrees(math.atan2(forward[0, 1], cosine)) % 360.0
    return round(angle, 6) % 360.0, mirrored


def view(
    status: str, input_index: int, matrix: np.ndarray, size: tuple[int, int], input_size: tuple[int, int], **fields
) -> Lineage:
    """A lineage for an image of ``size`` whose pixels ``matrix`` takes into input ``input_index``."""
    corners = apply(matrix, [(0, 0), (size[0], 0), (size[0], size[1]), (0, size[1])])
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    box = (max(0.0, min(xs)), max(0.0, min(ys)), min(float(input_size[0]), max(xs)), min(float(input_size[1]), max(ys)))
    angle, mirrored = orientation_of(matrix)
    return Lineage(
        status=status,  # type: ignore[arg-type]
        input=input_index,
        matrix=tuple(float(v) for v in matrix[:2].ravel()),  # type: ignore[arg-type]
        box=box if box[2] > box[0] and box[3] > box[1] else None,
        angle=angle,
        mirrored=mirrored,
        **fields,
    )


class LineageTracker:
    """The lineage of each image of one trajectory, recorded run by run (sessions may restart)."""

    def __init__(self, trajectory: Trajectory) -> None:
        self.trajectory = trajectory
        self.ops_seen = 0
        self._producers: dict[int, tuple[int, ImageOp]] = {}
        self._bases: dict[int, int] = {}
        self._tainted: list[range] = []

    def start_session(self, indices: Sequence[int]) -> None:
        """A session was opened with these trajectory images, in order (trace ids 0, 1, ...)."""
        self._producers = {}
        self._bases = {position: index for position, index in enumerate(indices)}

    def record_run(self, result: RunResult, indices: Sequence[int]) -> None:
        """Set the lineage of the images ``result`` returned, stored at trajectory ``indices``."""
        ops = result.ops
        first = self.ops_seen
        self.ops_seen += len(ops)
        incomplete = None
        if len(ops) >= MAX_OPS_PER_RUN:
            incomplete = f"its run traced the maximum of {MAX_OPS_PER_RUN} ops, so later ones are missing"
        elif result.trace_problems:
            incomplete = "its run's trace reported problems: " + "; ".join(result.trace_problems[:3])
        if incomplete:
            self._tainted.append(range(first, first + len(ops)))
        images = self.trajectory.images
        for base in result.bases:
            if base.id is not None and 0 <= base.index < len(images):
                self._bases[base.id] = base.index
        order = sorted(range(len(indices)), key=lambda i: _shown_at(result.image_info[i], len(ops)))
        registered = 0
        for i in order:
            at = _shown_at(result.image_info[i], len(ops))
            for position in range(registered, at):
                self._register(ops[position], first + position)
            registered = max(registered, at)
            index = indices[i]
            if incomplete:
                images[index].lineage = Lineage(status="incomplete", reason=incomplete)
                continue
            try:
                images[index].lineage = self._resolve(result.image_info[i], index)
            except (ArithmeticError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
                # The trace comes from model code: numbers no geometry can hold are its problem, not the host's.
                reason = f"its traced geometry cannot be computed ({type(exc).__name__}: {exc})"[:300]
                images[index].lineage = Lineage(status="unmappable", reason=reason)
        for position in range(registered, len(ops)):
            self._register(ops[position], first + position)

    def record_crop(self, source: int, box: Sequence[float], index: int) -> None:
        """Image ``index`` is the host's crop of image ``source`` to ``box`` (in its pixels)."""
        images = self.trajectory.images
        base = images[source].lineage
        if not _trusted(base):
            images[index].lineage = _unverified_base(source, base)
            return
        matrix = affine(*base.matrix) @ translation(float(box[0]), float(box[1]))
        images[index].lineage = view("host", base.input, matrix, images[index].size, images[base.input].size)

    # ------------------------------------------------------------------ internals
    def _register(self, op: ImageOp, position: int) -> None:
        if op.result is not None and op.result.id is not None:
            self._producers[op.result.id] = (position, op)

    def _resolve(self, info: OutputImageInfo, index: int) -> Lineage:
        images = self.trajectory.images
        if info.id is None:
            return Lineage(status="untraced", reason="it was not made from a traced image (a figure or new pixels)")
        shown_w, shown_h = images[index].size
        source_w, source_h = info.source_size or (shown_w, shown_h)
        if source_w <= 0 or source_h <= 0:
            return Lineage(status="mismatch", reason=f"its traced size {info.source_size} has no area")
        matrix = scaling(source_w / shown_w, source_h / shown_h)
        chain: list[int] = []
        steps: list[ImageOp] = []
        current: int | None = info.id
        expected_size: tuple[int, int] | None = (source_w, source_h)
        while current not in self._bases:
            if len(chain) >= MAX_CHAIN:
                return Lineage(status="unmappable", chain=chain, reason=f"its chain is longer than {MAX_CHAIN} ops")
            entry = self._producers.get(current) if current is not None else None
            if entry is None:
                return Lineage(status="untraced", chain=chain, reason="no traced op of this session produced it")
            position, op = entry
            made = tuple(op.result.size) if op.result is not None and op.result.size is not None else None
            if expected_size is not None and made is not None and made != tuple(expected_size):
                reason = f"its trace says {op.name} made a {made} image, not {tuple(expected_size)}"
                return Lineage(status="mismatch", chain=chain, reason=reason)
            try:
                matrix = op_map(op) @ matrix
            except Unreplayable as exc:
                return Lineage(status="unmappable", chain=[*chain, position], reason=f"{op.call or op.name}: {exc}")
            chain.append(position)
            steps.append(op)
            expected_size = tuple(op.operand.size) if op.operand and op.operand.size else None  # type: ignore[assignment]
            current = op.operand.id if op.operand is not None else None
        if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
            return Lineage(status="unmappable", chain=chain, reason="its traced geometry collapses or overflows")
        if any(position in tainted for tainted in self._tainted for position in chain):
            return Lineage(
                status="incomplete", chain=chain, reason="its chain passes through a run with an incomplete trace"
            )
        base_index = self._bases[current]
        base = images[base_index].lineage
        if not _trusted(base):
            return _unverified_base(base_index, base, chain)
        verdict = self._replay(index, base_index, matrix, steps)
        status = "verified" if verdict.agrees else "mismatch"
        total = affine(*base.matrix) @ matrix
        return view(
            status, base.input, total, images[index].size, images[base.input].size,
            chain=chain, agreement=verdict.agreement, reason=verdict.reason,
        )  # fmt: skip

    def _replay(self, index: int, base_index: int, matrix: np.ndarray, steps: list[ImageOp]) -> Verdict:
        shown = self.trajectory.image(index)
        grid = grid_size(*shown.size)
        to_shown = scaling(shown.width / grid[0], shown.height / grid[1])
        base = self.trajectory.image(base_index)
        replayed = sample(base, matrix @ to_shown, grid)
        names = {op.name for op in steps}
        return compare(
            average(sample(shown, to_shown, grid)),
            average(replayed),
            inside(matrix @ to_shown, grid, base.size),
            edge_density(replayed) if any(keeps_only_structure(op) for op in steps) else None,
            pixel_ops=bool(names & (PIXEL_OPS - NEUTRAL_OPS)),
            inverting=bool(names & INVERTING_OPS),
        )


def _shown_at(info: OutputImageInfo, n_ops: int) -> int:
    return n_ops if info.trace_at is None else max(0, min(info.trace_at, n_ops))


def _trusted(lineage: Lineage | None) -> bool:
    """Whether an image can be built on: verified, and placed in an input."""
    return lineage is not None and lineage.verified and lineage.matrix is not None and lineage.input is not None


def _unverified_base(index: int, base: Lineage | None, chain: list[int] | None = None) -> Lineage:
    status = base.status if base is not None else "unrecorded"
    return Lineage(
        status="unverified_base",
        chain=chain or [],
        reason=f"it descends from image {index}, whose lineage is {status}",
    )
