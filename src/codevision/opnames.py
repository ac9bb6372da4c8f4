"""Canonical names of traced ops, in the vocabulary of expected ops (CodeVision's core op set)."""

from __future__ import annotations

import math

from codevision.sandbox.results import ImageOp

CORE_OPS = frozenset({"rotate_90", "rotate_180", "rotate_270", "flip_h", "flip_v", "crop"})
# Within this many degrees of a quarter turn, a rotation counts as that quarter turn.
ANGLE_TOLERANCE = 2.0
_FLIPS = {"horizontal": "flip_h", "vertical": "flip_v", "both": "rotate_180"}


def canonical(op: ImageOp) -> str:
    """``rotate_90`` for a counter-clockwise quarter turn (90 and -270 alike), ``flip_h``, ``crop``, ..."""
    if op.name == "rotate":
        try:
            angle = float(op.args.get("angle_ccw", op.args.get("angle", 0.0))) % 360.0
        except (TypeError, ValueError, OverflowError):
            return "rotate"  # an angle that is not a number: a rotation by something unknown
        if not math.isfinite(angle):
            return "rotate"
        for quarter in (90, 180, 270):
            if abs(angle - quarter) <= ANGLE_TOLERANCE:
                return f"rotate_{quarter}"
        return "rotate" if min(angle, 360.0 - angle) > ANGLE_TOLERANCE else "rotate_0"
    if op.name == "flip":
        axis = op.args.get("axis")
        return _FLIPS.get(axis, "flip") if isinstance(axis, str) else "flip"
    return op.name
