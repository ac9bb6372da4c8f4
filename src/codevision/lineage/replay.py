"""Checking a claimed lineage against pixels: replay the geometry outside the session and compare.

The trace is written inside the session, where model code can rewrite it, so what it claims about
a shown image (this is input 0 turned a quarter and cropped there) is only believed when the
host, holding the real pixels of the image the chain starts from, renders that view itself and
finds the shown image agrees with it. Both are compared small (at most :data:`SIDE` pixels a side,
each grid pixel the mean of :data:`SUPERSAMPLE`² point samples, a box filter's estimate), which
keeps the check's cost that of the grid, whatever the sizes of the images.

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
#: Samples per grid pixel along each axis: the box filter is approximated by this many point samples squared.
SUPERSAMPLE = 6
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


def sample(image: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``image`` seen through ``matrix`` (grid pixel → image pixel), :data:`SUPERSAMPLE` times finer than the
    ``size`` grid: point samples, so the cost is the grid's, not the image's."""
    fine = matrix @ np.diag([1.0 / SUPERSAMPLE, 1.0 / SUPERSAMPLE, 1.0])
    coefficients = tuple(float(v) for v in fine[:2].ravel())
    shape = (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE)
    return _rgb(image).transform(shape, Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST).convert("RGB")


def average(fine: Image.Image) -> np.ndarray:
    """The brightness of each grid pixel: the mean of its :data:`SUPERSAMPLE`² samples over the three channels."""
    return np.asarray(fine.reduce(SUPERSAMPLE), dtype=np.float32).mean(axis=2)


def inside(matrix: np.ndarray, size: tuple[int, int], bounds: tuple[int, int]) -> np.ndarray:
    """Grid pixels that lie wholly inside an image of size ``bounds``: one straddling its edge mixes in
    whatever the shown image has there (padding, a rotation's corners)."""
    mask = np.ones((size[1], size[0]), dtype=bool)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xs, ys = np.meshgrid(np.arange(size[0]) + dx, np.arange(size[1]) + dy)
        bx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
        by = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
        mask &= (bx >= -1e-6) & (bx <= bounds[0] + 1e-6) & (by >= -1e-6) & (by <= bounds[1] + 1e-6)
    return mask


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


def edge_density(fine: Image.Image) -> np.ndarray:
    """Edge strength of a supersampled image, averaged over each grid pixel.

    An edge map (Canny, ``FIND_EDGES``) box-filtered to the grid is a map of where edges are dense;
    this is the same quantity computed from the replay, so the two can be compared.
    """
    edges = _edges(np.asarray(fine, dtype=np.float32).mean(axis=2))
    height, width = edges.shape[0] // SUPERSAMPLE, edges.shape[1] // SUPERSAMPLE
    return edges.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def _score(
    shown: np.ndarray, replayed: np.ndarray, mask: np.ndarray, density: np.ndarray | None, inverting: bool
) -> float:
    candidates = [_correlation(shown[mask], replayed[mask])]
    if density is not None:
        # After an edge map or a threshold the shown image is like the replay's edges, or has the same edges.
        candidates += [
            _correlation(shown[mask], density[mask]),
            _correlation(_edges(shown)[mask], _edges(replayed)[mask]),
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
    """Does the shown image agree with the replayed view where the view is defined (both brightness on the grid)?

    ``density`` (:func:`edge_density` of the replay) is given when the chain keeps little but structure.
    """
    if int(mask.sum()) < _MIN_SAMPLES:
        return Verdict(False, None, "too little of the image lies inside the image it is traced to")
    flat_s, flat_r = float(shown[mask].std()) < _FLAT, float(replayed[mask].std()) < _FLAT
    if flat_s or flat_r:
        # A blank region replayed as the same blank region is all there is to check; a blank image
        # claiming to show something that is not blank (or the reverse) cannot be believed.
        if flat_s and flat_r and not pixel_ops and abs(float(shown[mask].mean() - replayed[mask].mean())) < 16:
            return Verdict(True, None, "nothing to compare: both are blank")
        return Verdict(False, 0.0, "it is blank where its trace says it is not, or the reverse")
    score = _score(shown, replayed, mask, density, inverting)
    needed = STRUCTURE_AGREEMENT if density is not None else PIXEL_OP_AGREEMENT if pixel_ops else GEOMETRIC_AGREEMENT
    if score < needed:
        return Verdict(False, score, f"its pixels do not match the replayed trace (agreement {score:.2f} < {needed})")
    moves = _MIRRORS + (_TURNS if replayed.shape[0] == replayed.shape[1] else [])
    for name, move in moves:
        both = mask & move(mask)
        if int(both.sum()) < _MIN_SAMPLES:
            continue
        rival = _score(shown, move(replayed), both, None if density is None else move(density), inverting)
        if rival > score + ALTERNATIVE_MARGIN:
            return Verdict(False, score, f"it matches the traced view {name} better than the view itself")
    return Verdict(True, score)
