"""Wrapping library functions so that calls made directly from model code are recorded."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
from PIL import Image, ImageChops

from codevision.sandbox.tracing.arrays import TracedArray, as_traced, is_image
from codevision.sandbox.tracing.core import TRACER, Described, model_frame, size_of


@dataclass(frozen=True)
class Call:
    """What a describer sees of one completed call.

    ``params`` are the bound arguments, ``operand`` the image operated on, ``output`` the
    image-like result, ``returned`` the full return value (``cv2.threshold`` returns the
    computed threshold next to the image) and ``operand_size`` the operand's size before
    the call, for methods that change the image in place.
    """

    params: dict[str, Any]
    operand: Any
    output: Any
    returned: Any
    operand_size: list[int] | None


Describer = Callable[[Call], Described]
Binder = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class _Spec:
    """How to trace one library callable; see :func:`install_wrapper`."""

    call: str
    operand: str
    describe: Describer | None
    bind: Binder
    result_index: int | None
    array_result: bool
    images_only: bool
    unwrap: Callable[[Any], Any] | None
    in_place: bool
    trace_failures: bool


def _binder(original: Callable[..., Any], names: tuple[str, ...] | None) -> Binder:
    """Return a function mapping call arguments to a name -> value dict."""
    if names is not None:

        def bind_names(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = dict(zip(names, args, strict=False))
            bound.update(kwargs)
            return bound

        return bind_names
    signature = inspect.signature(original)

    def bind_signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    return bind_signature


def install_wrapper(
    owner: Any,
    attr: str,
    describe: Describer | None,
    *,
    operand: str,
    call: str,
    names: tuple[str, ...] | None = None,
    result_index: int | None = None,
    array_result: bool = False,
    images_only: bool = False,
    unwrap: Callable[[Any], Any] | None = None,
    in_place: bool = False,
    trace_failures: bool = False,
) -> None:
    """Replace ``owner.attr`` with a tracing wrapper.

    ``describe(call)`` names the op and its arguments, or returns None when the call is not
    an image operation worth recording (e.g. convert to the same mode). ``describe=None``
    only propagates provenance (copies, conversions between PIL and numpy).
    ``array_result`` turns ndarray results of image operands into :class:`TracedArray`;
    ``images_only`` ignores operands that do not descend from an image (generic NumPy
    functions are used on plain numbers too); ``in_place`` methods change their operand
    and return None. With ``trace_failures`` a call that raises is recorded too, with the
    error in ``args["error"]`` and no result (a crop box the library refused is still an attempt
    the faithfulness penalties must see).
    """
    original = getattr(owner, attr, None)
    if original is None or getattr(original, "__codevision_traced__", False):
        return
    spec = _Spec(
        call=call,
        operand=operand,
        describe=describe,
        bind=_binder(original, names),
        result_index=result_index,
        array_result=array_result,
        images_only=images_only,
        unwrap=unwrap,
        in_place=in_place,
        trace_failures=trace_failures,
    )

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = _operand_size(spec, args, kwargs) if spec.in_place else None
        try:
            result = original(*args, **kwargs)
        except Exception as exc:
            if spec.trace_failures:
                _trace_failure(spec, sys._getframe(1), args, kwargs, exc)
            raise
        try:
            return _trace(spec, sys._getframe(1), args, kwargs, result, before)
        except Exception as exc:  # tracing must never break model code
            TRACER.note(f"{spec.call}: {exc!r}")
            return result

    wrapper.__codevision_traced__ = True  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)


def install_detached(owner: Any, attr: str) -> None:
    """Make ``owner.attr`` return plain arrays: a blank canvas shaped like an image is not from it."""
    original = getattr(owner, attr, None)
    if original is None or getattr(original, "__codevision_traced__", False):
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        return result.view(np.ndarray) if type(result) is TracedArray else result

    wrapper.__codevision_traced__ = True  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)


def _operand_size(spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int] | None:
    try:
        return size_of(spec.bind(args, kwargs).get(spec.operand))
    except Exception:  # a call the library will reject itself
        return None


def _trace_failure(
    spec: _Spec, frame: FrameType, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> None:
    """Record a call from model code that raised, as the op it attempted with the error and no result."""
    caller = model_frame(frame)
    if caller is None or spec.describe is None:
        return
    try:
        params = spec.bind(args, kwargs)
        source = params.get(spec.operand)
        if source is not None and spec.unwrap is not None:
            source = spec.unwrap(source)
        described = spec.describe(Call(params, source, None, None, size_of(source)))
        if described is None:
            return
        name, op_args = described
        op_args = {**op_args, "error": f"{type(exc).__name__}: {exc}"[:200]}
        TRACER.emit(name, op_args, call=spec.call, caller=caller, operand=TRACER.ref(source), result=None)
    except Exception as note:  # tracing must never change what the model's code sees
        TRACER.note(f"{spec.call}: {note!r}")


def _trace(
    spec: _Spec, frame: FrameType, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, before: list[int] | None
) -> Any:
    """Record the op of one completed call and return its (possibly re-typed) result."""
    params = spec.bind(args, kwargs)
    source = params.get(spec.operand)
    if source is not None and spec.unwrap is not None:
        source = spec.unwrap(source)
    if source is None:
        return result
    output = result if spec.result_index is None else result[spec.result_index]
    if spec.array_result:
        traced = as_traced(output, source)
        if traced is not output:
            output = traced
            if spec.result_index is None:
                result = traced
            else:
                index = spec.result_index
                result = (*result[:index], traced, *result[index + 1 :])
    caller = model_frame(frame)
    described = None
    if spec.describe is not None and caller is not None and (not spec.images_only or is_image(source)):
        described = spec.describe(Call(params, source, output, result, before))
    if described is None:
        TRACER.inherit(output, source)
        return result
    name, op_args = described
    operand = TRACER.ref(source, before)
    changed_in_place = spec.in_place and output is None
    produced = TRACER.renewed(source) if changed_in_place else TRACER.derived(output, operand["origin"])
    unchanged = not changed_in_place and same_pixels(source, output)
    TRACER.emit(name, op_args, call=spec.call, caller=caller, operand=operand, result=produced, unchanged=unchanged)
    return result


#: Pixels per axis compared first: an op that changed the image usually shows it there, sparing a full pass.
_PROBE = 64
#: Modes whose full comparison PIL can do band by band (others compare their bytes).
_DIFFERENCE_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def same_pixels(before: Any, after: Any) -> bool:
    """Whether an op's result holds exactly its operand's pixels: such an op did nothing (an autocontrast of an
    image already spanning 0-255, a blur of radius 0), however effective its name or arguments sound.

    A coarse probe decides most calls; only when it finds no difference is every pixel compared.
    """
    try:
        if isinstance(before, Image.Image) and isinstance(after, Image.Image):
            if before.mode != after.mode or before.size != after.size:
                return False
            probe = (min(_PROBE, before.width), min(_PROBE, before.height))
            nearest = Image.Resampling.NEAREST
            if before.resize(probe, nearest).tobytes() != after.resize(probe, nearest).tobytes():
                return False
            if before.mode in _DIFFERENCE_MODES:  # in C, without copying either image's pixels out
                return ImageChops.difference(before, after).getbbox(alpha_only=False) is None
            return before.tobytes() == after.tobytes()
        if isinstance(before, np.ndarray) and isinstance(after, np.ndarray):
            before, after = before.view(np.ndarray), after.view(np.ndarray)
            if before.shape != after.shape or before.ndim < 2:
                return False
            step_y, step_x = max(1, before.shape[0] // _PROBE), max(1, before.shape[1] // _PROBE)
            if not np.array_equal(before[::step_y, ::step_x], after[::step_y, ::step_x]):
                return False
            return bool(np.array_equal(before, after))
    except Exception:  # an exotic image the comparison cannot read: assume the op did something
        return False
    return False


def rotation(angle: float, expand: bool) -> dict[str, Any]:
    angle = float(angle)
    ccw = angle % 360.0
    return {"angle": angle, "angle_ccw": ccw if ccw < 360.0 else 0.0, "expand": bool(expand)}


def constant(name: str, args: dict[str, Any]) -> Describer:
    return lambda c: (name, dict(args))
