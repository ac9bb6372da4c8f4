"""Boxes ``(x0, y0, x1, y1)`` in pixels and how they overlap.

Where a shown image lies in its input (its box there) comes from its lineage
(:mod:`codevision.lineage`); these are the measures rewards and metrics compare it with.
"""

from __future__ import annotations

Box = tuple[float, float, float, float]


def intersection(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, width) * max(0.0, height)


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Box, b: Box) -> float:
    shared = intersection(a, b)
    union = area(a) + area(b) - shared
    return shared / union if union > 0 else 0.0


def coverage(region: Box, target: Box) -> float:
    """Share of the target's area inside the region (1.0: the crop contains the whole target)."""
    target_area = area(target)
    return intersection(region, target) / target_area if target_area > 0 else 0.0
