"""Checking a claimed lineage against pixels: replay the geometry outside the session and compare.

The trace is written inside the session, where model code can rewrite it, so what it claims about
a shown image (this is input 0 turned a quarter and cropped there) is only believed when the
host, holding the real pixels of the image the chain starts from, renders that view itself and
finds the shown image agrees with it. Both are compared small (at most :data:`SIDE` pixels a side,
both box-filtered to the same grid), which keeps the check cheap whatever the image sizes.

Agreement is the correlation of the two images' brightness, and of their edge strength after an
op that keeps only structure (thresholds, edge maps); its sign is ignored after an op that may
invert brightness. Pixel ops in the chain are not replayed, so the bar is lower when there are
some. The claimed view must also agree better than its own mirror images and (when square) its
quarter turns, so a trace claiming a turn the pixels did not take fails even when the picture
is bright in the same places either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: The comparison grid's longest side, in pixels.
SIDE = 48
#: Agreement a shown image needs when its chain is purely geometric, when pixel ops were applied too, and
#: when one of them keeps only structure (an edge map, a threshold).
GEOMETRIC_AGREEMENT = 0.8
PIXEL_OP_AGREEMENT = 0.5
STRUCTURE_AGREEMENT = 0.3
#: How much better than the claimed view a mirrored or turned one must agree to count as a mismatch.
ALTERNATIVE_MARGIN = 0.1
#: How much finer than the grid the replay is rendered to measure edge density.
EDGE_DETAIL = 4
# Below this spread of brightness (0-255) an image is flat: there is nothing to correlate.
_FLAT = 2.0
_MIN_SAMPLES = 4


@dataclass(frozen=True)
class Verdict:
    """Whether the shown pixels agree with the replayed view, how well, and why not."""

    agrees: bool
    agreement: float | None
    reason: str | None = None


def grid_size(width: int, height: int) -> tuple[int, int]:
    """The comparison grid for an image of this size: the image itself when small, else scaled to :data:`SIDE`."""
    scale = min(1.0, SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode in ("L", "RGB", "RGBA", "LA") else image.convert("RGB")


def small(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``image`` box-filtered to ``size``, as float RGB."""
    shrunk = _rgb(image)
    if shrunk.size != size:
        shrunk = shrunk.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(shrunk.convert("RGB"), dtype=np.float32)


def render(
    base: Callable[[int], Image.Image], base_size: tuple[int, int], matrix: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The base image seen through ``matrix`` (grid pixel → base pixel) on a ``size`` grid, and where it is defined.

    ``base(factor)`` gives the base reduced by an integer factor (cached by the caller), chosen so
    a grid pixel spans about one pixel of it, as a box filter would.
    """
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:2, :2]))))
    factor = max(1, min(int(scale), base_size[0], base_size[1]))
    reduced = base(factor)
    to_reduced = np.diag([1.0 / factor, 1.0 / factor, 1.0]) @ matrix
    coefficients = tuple(float(v) for v in to_reduced[:2].ravel())
    pixels = _rgb(reduced).transform(size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    # A grid pixel counts only when all of it lies inside the base: one straddling the edge mixes in
    # whatever the shown image has there (padding, a rotation's corners).
    # ``reduce`` rounds the size up, so the base ends at its true size over the factor, not at the last pixel.
    right, bottom = base_size[0] / factor, base_size[1] / factor
    inside = np.ones((size[1], size[0]), dtype=bool)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xs, ys = np.meshgrid(np.arange(size[0]) + dx, np.arange(size[1]) + dy)
        bx = to_reduced[0, 0] * xs + to_reduced[0, 1] * ys + to_reduced[0, 2]
        by = to_reduced[1, 0] * xs + to_reduced[1, 1] * ys + to_reduced[1, 2]
        inside &= (bx >= -1e-6) & (bx <= right + 1e-6) & (by >= -1e-6) & (by <= bottom + 1e-6)
    return np.asarray(pixels.convert("RGB"), dtype=np.float32), inside


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 0 else None


def _edges(gray: np.ndarray) -> np.ndarray:
    dx = np.zeros_like(gray)
    dy = np.zeros_like(gray)
    dx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    dy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    return np.hypot(dx, dy)


def edge_density(fine: np.ndarray, factor: int) -> np.ndarray:
    """Edge strength of an image rendered ``factor`` times finer than the grid, averaged over each grid pixel.

    An edge map (Canny, ``FIND_EDGES``) box-filtered to the grid is a map of where edges are dense;
    this is the same quantity computed from the replay, so the two can be compared.
    """
    edges = _edges(fine.mean(axis=2))
    height, width = edges.shape[0] // factor, edges.shape[1] // factor
    return edges[: height * factor, : width * factor].reshape(height, factor, width, factor).mean(axis=(1, 3))


def _score(
    shown: np.ndarray, replayed: np.ndarray, mask: np.ndarray, density: np.ndarray | None, *, inverting: bool
) -> float:
    gray_s, gray_r = shown.mean(axis=2), replayed.mean(axis=2)
    candidates = [_correlation(gray_s[mask], gray_r[mask])]
    if density is not None:
        # After an edge map or a threshold the shown image is like the replay's edges, or has the same edges.
        candidates += [
            _correlation(gray_s[mask], density[mask]),
            _correlation(_edges(gray_s)[mask], _edges(gray_r)[mask]),
        ]
    values = [abs(value) if inverting else value for value in candidates if value is not None]
    return max(values, default=-1.0)


_Moves = list[tuple[str, Callable[[np.ndarray], np.ndarray]]]
_MIRRORS: _Moves = [
    ("mirrored left to right", lambda a: a[:, ::-1]),
    ("upside down", lambda a: a[::-1, :]),
    ("turned half a turn", lambda a: a[::-1, ::-1]),
]
_TURNS: _Moves = [
    ("turned a quarter", lambda a: np.rot90(a, 1)),
    ("turned three quarters", lambda a: np.rot90(a, 3)),
    ("transposed", lambda a: np.swapaxes(a, 0, 1)),
    ("transversed", lambda a: np.swapaxes(np.rot90(a, 2), 0, 1)),
]


def compare(
    shown: np.ndarray,
    replayed: np.ndarray,
    mask: np.ndarray,
    density: np.ndarray | None = None,
    *,
    pixel_ops: bool,
    inverting: bool,
) -> Verdict:
    """Does the shown image (on the grid) agree with the replayed view where the view is defined?

    ``density`` (:func:`edge_density` of a finer replay) is given when the chain keeps only structure.
    """
    if int(mask.sum()) < _MIN_SAMPLES:
        return Verdict(False, None, "too little of the image lies inside the image it is traced to")
    gray_s, gray_r = shown.mean(axis=2)[mask], replayed.mean(axis=2)[mask]
    flat_s, flat_r = float(gray_s.std()) < _FLAT, float(gray_r.std()) < _FLAT
    if flat_s or flat_r:
        # A blank region replayed as the same blank region is all there is to check; a blank image
        # claiming to show something that is not blank (or the reverse) cannot be believed.
        if flat_s and flat_r and not pixel_ops and abs(float(gray_s.mean() - gray_r.mean())) < 16:
            return Verdict(True, None, "nothing to compare: both are blank")
        return Verdict(False, 0.0, "it is blank where its trace says it is not, or the reverse")
    score = _score(shown, replayed, mask, density, inverting=inverting)
    needed = STRUCTURE_AGREEMENT if density is not None else PIXEL_OP_AGREEMENT if pixel_ops else GEOMETRIC_AGREEMENT
    if score < needed:
        return Verdict(False, score, f"its pixels do not match the replayed trace (agreement {score:.2f} < {needed})")
    moves = _MIRRORS + (_TURNS if replayed.shape[0] == replayed.shape[1] else [])
    for name, move in moves:
        both = mask & move(mask)
        if int(both.sum()) < _MIN_SAMPLES:
            continue
        other_density = None if density is None else move(density)
        rival = _score(shown, move(replayed), both, other_density, inverting=inverting)
        if rival > score + ALTERNATIVE_MARGIN:
            return Verdict(False, score, f"it matches the traced view {name} better than the view itself")
    return Verdict(True, score)
