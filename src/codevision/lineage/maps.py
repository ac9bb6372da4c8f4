"""Each traced op as a map from its result's pixels back to its operand's pixels.

Every geometric op the tracer records (quarter and arbitrary rotations, flips, transposes, crops,
resizes, pads, PIL's ``fit``/``pad``/``transform``, OpenCV's affine warps) is an affine map, so a
whole chain of them is one 3×3 matrix: where a pixel of the shown image lies in the image it came
from. Ops that only change pixel values keep geometry and map to the identity. Anything else (a
perspective warp, ``exif_transpose``, an op this module does not know) raises :class:`Unreplayable`
with the reason, so an image behind it is reported rather than mapped by guesswork.

Coordinates are continuous, with pixel edges at integers (the convention of PIL's ``transform``);
OpenCV's matrices, which act on pixel centres, are converted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from codevision.sandbox.results import ImageOp

#: Ops that change pixel values but never where a pixel is.
PIXEL_OPS = frozenset(
    {
        "enhance",
        "filter",
        "grayscale",
        "threshold",
        "equalize",
        "autocontrast",
        "invert",
        "convert",
        "color_convert",
        "posterize",
        "solarize",
        "point",
        "edges",
        "morphology",
        "denoise",
        "normalize",
        "blend",
    }
)
#: Pixel ops after which the shown image may be a negative of the replayed one.
INVERTING_OPS = frozenset({"invert", "solarize", "threshold", "edges", "morphology", "point"})
#: Pixel ops that leave the picture itself alone (a change of container or colour space order).
NEUTRAL_OPS = frozenset({"convert", "grayscale"})
_EDGE_FILTERS = frozenset({"find_edges", "contour", "emboss", "laplacian"})
_EDGE_MORPHOLOGY = frozenset({"gradient", "tophat", "blackhat"})


def keeps_only_structure(op: ImageOp) -> bool:
    """Whether after ``op`` little more than where the edges are survives (an edge map, a threshold)."""
    kind = op.args.get("kind")
    return (
        op.name in ("edges", "solarize", "threshold")
        or (op.name == "filter" and kind in _EDGE_FILTERS)
        or (op.name == "morphology" and kind in _EDGE_MORPHOLOGY)
    )


IDENTITY = np.eye(3)
# Pixel-centre coordinates (OpenCV) from pixel-edge coordinates, and back.
_TO_CENTRES = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
_TO_EDGES = np.linalg.inv(_TO_CENTRES)


class Unreplayable(ValueError):
    """An op whose effect on geometry is unknown, so nothing behind it can be mapped."""


def affine(a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    """The map (x, y) ↦ (a·x + b·y + c, d·x + e·y + f) as a 3×3 matrix."""
    return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]], dtype=float)


def translation(dx: float, dy: float) -> np.ndarray:
    return affine(1.0, 0.0, dx, 0.0, 1.0, dy)


def scaling(sx: float, sy: float) -> np.ndarray:
    return affine(sx, 0.0, 0.0, 0.0, sy, 0.0)


def _numbers(value: Any, count: int, what: str) -> list[float]:
    """``count`` finite numbers from a traced argument, or :class:`Unreplayable` naming it."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise Unreplayable(f"{what} is not {count} numbers: {value!r:.80}")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise Unreplayable(f"{what} is not {count} numbers: {value!r:.80}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise Unreplayable(f"{what} holds a number that is not finite")
    return numbers


def _size(value: Any, what: str) -> tuple[float, float]:
    width, height = _numbers(value, 2, what)
    if width <= 0 or height <= 0:
        raise Unreplayable(f"{what} {value!r} has no area")
    return width, height


def _matrix(value: Any) -> np.ndarray:
    rows = value if isinstance(value, (list, tuple)) else None
    if rows is None or len(rows) != 2:
        raise Unreplayable(f"the affine matrix is not 2×3: {value!r:.80}")
    top, bottom = _numbers(rows[0], 3, "the affine matrix"), _numbers(rows[1], 3, "the affine matrix")
    return affine(*top, *bottom)


def _opencv_warp(op: ImageOp) -> np.ndarray:
    """OpenCV's matrix maps source centres to result centres (or back, with ``WARP_INVERSE_MAP``)."""
    matrix = _matrix(op.args.get("matrix"))
    if not op.args.get("inverse"):
        if abs(np.linalg.det(matrix)) < 1e-12:
            raise Unreplayable("the affine matrix is singular")
        matrix = np.linalg.inv(matrix)
    return _TO_EDGES @ matrix @ _TO_CENTRES


def _pil_rotation(op: ImageOp) -> np.ndarray:
    """PIL's rotation about the centre (or ``center``), moved by ``translate``, the canvas grown with ``expand``."""
    width, height = _size(op.operand.size if op.operand else None, "the rotated image's size")
    angle = float(op.args.get("angle_ccw", op.args.get("angle", 0.0)))
    center = _numbers(op.args["center"], 2, "center") if op.args.get("center") is not None else [width / 2, height / 2]
    shift = _numbers(op.args["translate"], 2, "translate") if op.args.get("translate") is not None else [0.0, 0.0]
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    # Result pixel -> source pixel: rotate about the centre after undoing the translation.
    c = cos * (-center[0] - shift[0]) + sin * (-center[1] - shift[1]) + center[0]
    f = -sin * (-center[0] - shift[0]) + cos * (-center[1] - shift[1]) + center[1]
    if op.args.get("expand"):
        corners = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height)]
        xs = [cos * x + sin * y + c for x, y in corners]
        ys = [-sin * x + cos * y + f for x, y in corners]
        grown_w = math.ceil(max(xs)) - math.floor(min(xs))
        grown_h = math.ceil(max(ys)) - math.floor(min(ys))
        dx, dy = -(grown_w - width) / 2.0, -(grown_h - height) / 2.0
        c, f = cos * dx + sin * dy + c, -sin * dx + cos * dy + f
    return affine(cos, sin, c, -sin, cos, f)


def _flip(op: ImageOp) -> np.ndarray:
    width, height = _size(op.result.size if op.result else None, "the flipped image's size")
    axis = op.args.get("axis")
    if axis == "horizontal":
        return affine(-1.0, 0.0, width, 0.0, 1.0, 0.0)
    if axis == "vertical":
        return affine(1.0, 0.0, 0.0, 0.0, -1.0, height)
    if axis == "both":
        return affine(-1.0, 0.0, width, 0.0, -1.0, height)
    raise Unreplayable(f"a flip along an unknown axis {axis!r}")


def _transpose(op: ImageOp) -> np.ndarray:
    if op.args.get("kind") == "transpose":
        return affine(0.0, 1.0, 0.0, 1.0, 0.0, 0.0)
    if op.args.get("kind") == "transverse":
        width, height = _size(op.result.size if op.result else None, "the transposed image's size")
        return affine(0.0, -1.0, height, -1.0, 0.0, width)
    raise Unreplayable(f"a transpose of unknown kind {op.args.get('kind')!r}")


def _resize(op: ImageOp) -> np.ndarray:
    out_w, out_h = _size(op.args.get("size") or (op.result.size if op.result else None), "the resized size")
    if op.args.get("box") is not None:
        x0, y0, x1, y1 = _numbers(op.args["box"], 4, "the resize box")
    else:
        from_size = op.args.get("from_size") or (op.operand.size if op.operand else None)
        x0, y0 = 0.0, 0.0
        x1, y1 = _size(from_size, "the size before resizing")
    return translation(x0, y0) @ scaling((x1 - x0) / out_w, (y1 - y0) / out_h)


def _pad(op: ImageOp) -> np.ndarray:
    left, top, _right, _bottom = _numbers(op.args.get("border"), 4, "the border")
    return translation(-left, -top)


def _contained(source: tuple[float, float], box: tuple[float, float]) -> tuple[float, float]:
    """The size ``ImageOps.contain`` gives an image of ``source`` size inside ``box``."""
    ratio, box_ratio = source[0] / source[1], box[0] / box[1]
    if ratio > box_ratio:
        return box[0], float(round(source[1] / source[0] * box[0]))
    if ratio < box_ratio:
        return float(round(source[0] / source[1] * box[1])), box[1]
    return box


def _fit(op: ImageOp) -> np.ndarray:
    """``ImageOps.fit`` with its default centring: the centred crop of the output's aspect, resized."""
    width, height = _size(op.args.get("from_size"), "the size before fitting")
    out_w, out_h = _size(op.args.get("size"), "the fitted size")
    if width / height >= out_w / out_h:
        crop_w, crop_h = out_w / out_h * height, height
    else:
        crop_w, crop_h = width, width / (out_w / out_h)
    return translation((width - crop_w) / 2, (height - crop_h) / 2) @ scaling(crop_w / out_w, crop_h / out_h)


def _pad_to(op: ImageOp) -> np.ndarray:
    """``ImageOps.pad`` with its default centring: contained, then placed in the middle of the canvas."""
    width, height = _size(op.args.get("from_size"), "the size before padding")
    out_w, out_h = _size(op.args.get("size"), "the padded size")
    inner_w, inner_h = _contained((width, height), (out_w, out_h))
    left, top = round((out_w - inner_w) * 0.5), round((out_h - inner_h) * 0.5)
    return scaling(width / inner_w, height / inner_h) @ translation(-left, -top)


def _pil_transform(op: ImageOp) -> np.ndarray:
    method, data = op.args.get("method"), op.args.get("data")
    if method == "affine":
        return affine(*_numbers(data, 6, "the affine data"))
    if method == "extent":
        out_w, out_h = _size(op.args.get("size"), "the transformed size")
        x0, y0, x1, y1 = _numbers(data, 4, "the extent")
        return translation(x0, y0) @ scaling((x1 - x0) / out_w, (y1 - y0) / out_h)
    raise Unreplayable(f"a {method} transform is not affine")


def _crop(op: ImageOp) -> np.ndarray:
    x0, y0, _x1, _y1 = _numbers(op.args.get("box"), 4, "the crop box")
    return translation(x0, y0)


def _rotate(op: ImageOp) -> np.ndarray:
    return _opencv_warp(op) if op.args.get("matrix") is not None else _pil_rotation(op)


_MAPS = {
    "crop": _crop,
    "rotate": _rotate,
    "flip": _flip,
    "transpose": _transpose,
    "resize": _resize,
    "pad": _pad,
    "contain": _resize,
    "cover": _resize,
    "fit": _fit,
    "transform": _pil_transform,
    "affine": _opencv_warp,
}


#: Ops whose geometry is replayed (``pad`` with either of its forms).
GEOMETRIC_OPS = frozenset(_MAPS)


def op_map(op: ImageOp) -> np.ndarray:
    """The matrix taking a pixel of ``op``'s result to where it lies in ``op``'s operand."""
    if op.name in PIXEL_OPS:
        before = op.operand.size if op.operand else None
        after = op.result.size if op.result else None
        if before is not None and after is not None and tuple(before) != tuple(after):
            raise Unreplayable(f"{op.name} changed the size from {before} to {after}")
        return IDENTITY
    if op.name == "pad" and op.args.get("border") is None:
        return _pad_to(op)
    mapping = _MAPS.get(op.name)
    if mapping is None:
        raise Unreplayable(f"{op.name} changes geometry in a way that cannot be replayed")
    try:
        return mapping(op)
    except (TypeError, ValueError, KeyError, ArithmeticError) as exc:  # arguments written by model code
        raise Unreplayable(f"its arguments cannot be read ({type(exc).__name__}: {exc})"[:200]) from None


def apply(matrix: np.ndarray, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Where ``points`` go under ``matrix``."""
    return [(float(x), float(y)) for x, y, _ in (matrix @ np.array([px, py, 1.0]) for px, py in points)]
