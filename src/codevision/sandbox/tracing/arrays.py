"""Arrays derived from input images, so that slicing crops and flips are seen."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
from PIL import Image

from codevision.sandbox.tracing.core import TRACER, model_frame

FLIP_AXIS = {(True, False): "vertical", (False, True): "horizontal", (True, True): "both"}


class TracedArray(np.ndarray):
    """ndarray subclass for arrays derived from input images, so slicing and axis ops are seen.

    Only arrays that descend from a traced image get this type; everything else stays a
    plain ndarray, so unrelated numerical code pays nothing. It presents itself as
    ``numpy.ndarray`` (name, ``repr``, pickling) because model code must not behave
    differently, or print anything different, because it is being traced.
    """

    def __array_finalize__(self, obj: Any) -> None:
        # rows and single pixels (``a[y, x]`` in a loop) are not pictures: skip the bookkeeping
        if obj is not None and self.ndim >= 2:
            TRACER.inherit(self, obj)

    def __getitem__(self, key: Any) -> Any:
        result = super().__getitem__(key)
        if type(result) is TracedArray and result.ndim >= 2 and not TRACER.full:
            caller = model_frame(sys._getframe(1))
            if caller is not None:
                try:
                    _describe_slice(caller, self, key, result)
                except Exception as exc:  # tracing must never break model code
                    TRACER.note(f"slice: {exc!r}")
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        # NumPy reads ``a[key]`` through __getitem__ to assign into a subclass; writing
        # pixels is not a crop, so assign through a plain view of the same memory.
        self.view(np.ndarray)[key] = value

    def reshape(self, *shape: Any, **kwargs: Any) -> Any:
        result = super().reshape(*shape, **kwargs)
        if type(result) is TracedArray and result.shape[:2] != self.shape[:2]:
            return result.view(np.ndarray)  # a pixel list, not a picture: slicing it is no crop
        return result

    def transpose(self, *axes: Any) -> Any:
        result = super().transpose(*axes)
        _trace_axes(sys._getframe(1), self, result, lambda: transpose_order(self.ndim, axes), "transpose")
        return result

    def swapaxes(self, axis1: Any, axis2: Any) -> Any:
        result = super().swapaxes(axis1, axis2)
        _trace_axes(sys._getframe(1), self, result, lambda: swap_order(self.ndim, axis1, axis2), "swapaxes")
        return result

    def _transposed(self) -> Any:
        result = super().transpose()
        _trace_axes(sys._getframe(1), self, result, lambda: tuple(range(self.ndim))[::-1], "T")
        return result

    T = property(_transposed)

    def __repr__(self) -> str:
        return repr(self.view(np.ndarray))

    def __reduce__(self) -> Any:
        return self.view(np.ndarray).__reduce__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.view(np.ndarray).__reduce_ex__(protocol)


TracedArray.__name__ = TracedArray.__qualname__ = "ndarray"
TracedArray.__module__ = "numpy"


def transpose_order(ndim: int, axes: tuple[Any, ...]) -> tuple[int, ...]:
    """Axis order of ``a.transpose(*axes)`` / ``np.transpose(a, axes)``, normalised to >= 0."""
    if len(axes) == 1:
        axes = () if axes[0] is None else tuple(np.ravel(axes[0]))
    if not axes:
        return tuple(range(ndim))[::-1]
    return tuple(int(a) % ndim for a in axes)


def swap_order(ndim: int, axis1: Any, axis2: Any) -> tuple[int, ...]:
    order = list(range(ndim))
    first, second = int(axis1) % ndim, int(axis2) % ndim
    order[first], order[second] = order[second], order[first]
    return tuple(order)


def is_spatial_transpose(order: tuple[int, ...]) -> bool:
    """True when rows and columns swap and any channel axis stays last."""
    return order in ((1, 0), (1, 0, 2))


def _trace_axes(
    frame: FrameType, operand: np.ndarray, result: Any, order: Callable[[], tuple[int, ...]], method: str
) -> None:
    """Record an axis-reordering method call when it swaps rows and columns of a picture.

    ``order`` is computed only for calls from model code: NumPy itself calls these methods
    with all kinds of arguments, and those calls must cost (and risk) nothing.
    """
    caller = model_frame(frame)
    if caller is None:
        return
    try:
        if not is_spatial_transpose(order()):
            return
        source = TRACER.ref(operand)
        TRACER.emit(
            "transpose",
            {"kind": "transpose"},
            call=f"numpy.ndarray.{method}",
            caller=caller,
            operand=source,
            result=TRACER.derived(result, source["origin"]),
        )
    except Exception as exc:  # tracing must never break model code
        TRACER.note(f"{method}: {exc!r}")


def _spatial_slices(shape: tuple[int, ...], key: Any) -> tuple[slice, slice] | None:
    """The row and column slices of an index, or None when it is not plain slicing of both."""
    parts = list(key) if isinstance(key, tuple) else [key]
    if any(p is None for p in parts):
        return None
    if any(p is Ellipsis for p in parts):
        at = next(i for i, p in enumerate(parts) if p is Ellipsis)
        parts[at : at + 1] = [slice(None)] * (len(shape) - (len(parts) - 1))
    parts += [slice(None)] * (len(shape) - len(parts))
    rows, cols = parts[0], parts[1]
    if not isinstance(rows, slice) or not isinstance(cols, slice):
        return None
    return rows, cols


def _extent(picked: range, length: int) -> tuple[int, int]:
    """The span ``[start, stop)`` of an axis that a non-empty slice samples from.

    With a step the span includes the skipped pixels after the last one picked, so
    ``a[::2]`` covers the whole axis and records no crop.
    """
    if picked.step > 0:
        return picked.start, min(picked.start + len(picked) * picked.step, length)
    return max(picked.start + len(picked) * picked.step + 1, 0), picked.start + 1


def _describe_slice(caller: FrameType, operand: np.ndarray, key: Any, result: np.ndarray) -> None:
    """Record what slicing did to the picture: crop, then subsampling, then flip (as needed).

    A single index expression can do all three (``a[40:0:-2, 10:50]``); the steps are
    chained through intermediate references so the trace still reads as a pipeline.
    """
    slices = _spatial_slices(operand.shape, key)
    if slices is None:
        return
    height, width = operand.shape[0], operand.shape[1]
    rows, cols = range(*slices[0].indices(height)), range(*slices[1].indices(width))
    if result.size == 0:
        if result.shape[0] == 0 or result.shape[1] == 0:  # a crop box with no area: an attempt all the same
            box = [cols.start, rows.start, cols.stop, rows.stop]
            args = {"box": box, "error": "the selection is empty"}
            TRACER.emit(
                "crop", args, call="numpy.ndarray.__getitem__", caller=caller, operand=TRACER.ref(operand), result=None
            )
        return
    (x0, x1), (y0, y1) = _extent(cols, width), _extent(rows, height)
    box = [x0, y0, x1, y1]
    box_size = [box[2] - box[0], box[3] - box[1]]
    size = [len(cols), len(rows)]
    steps: list[tuple[str, dict[str, Any], list[int]]] = []
    if box != [0, 0, width, height]:
        steps.append(("crop", {"box": box}, box_size))
    if size != box_size:
        steps.append(("resize", {"size": size, "from_size": box_size, "step": [abs(cols.step), abs(rows.step)]}, size))
    axis = FLIP_AXIS.get((rows.step < 0, cols.step < 0))
    if axis is not None:
        steps.append(("flip", {"axis": axis}, size))
    if not steps:
        return
    current = TRACER.ref(operand)
    origin = current["origin"]
    TRACER.fresh(result, origin)
    for index, (name, args, step_size) in enumerate(steps):
        last = index == len(steps) - 1
        produced = TRACER.ref(result) if last else TRACER.intermediate(step_size, origin)
        TRACER.emit(name, args, call="numpy.ndarray.__getitem__", caller=caller, operand=current, result=produced)
        current = produced


def as_traced(result: Any, origin_source: Any) -> Any:
    """View an ndarray result as TracedArray when its source descends from a traced image."""
    if type(result) is np.ndarray and result.ndim >= 2 and is_image(origin_source):
        traced = result.view(TracedArray)
        # The same pixels in another container: same identity, so boxes map through the conversion.
        TRACER.inherit(traced, origin_source)
        return traced
    return result


def is_image(obj: Any) -> bool:
    return isinstance(obj, (Image.Image, TracedArray)) or TRACER.is_known(obj)
