"""The tracer: a registry of image objects with their ids and origins, and the op log of a run."""

from __future__ import annotations

import json
import math
import weakref
from types import FrameType
from typing import Any

import numpy as np
from PIL import Image

from codevision.sandbox.results import (
    MAX_OP_BYTES,
    MAX_OP_CONTAINERS,
    MAX_OP_ITEMS,
    MAX_OPS_PER_RUN,
    MAX_TRACE_PROBLEM_CHARS,
    MAX_TRACE_PROBLEMS,
)

CELL_PREFIX = "<cell "

Ref = dict[str, Any]
Described = tuple[str, dict[str, Any]] | None


def cell_filename(cell: int) -> str:
    """File name given to a cell's code object; it is how the tracer recognises model code."""
    return f"{CELL_PREFIX}{cell}>"


def _plain(value: Any) -> Any:
    """Convert arguments to JSON-friendly values (numpy scalars, tuples, enums, small arrays)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum members and other int subclasses
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, (tuple, list)):  # long ones (mesh data, lookup tables) are summarised
        return [_plain(v) for v in value] if len(value) <= 64 else f"list[{len(value)}]"
    if isinstance(value, np.ndarray):
        return _plain(value.tolist()) if value.size <= 64 else f"array{list(value.shape)}"
    if isinstance(getattr(value, "value", None), int):
        return int(value.value)
    return repr(value)[:200]


def size_of(obj: Any) -> list[int] | None:
    if isinstance(obj, Image.Image):
        return [obj.width, obj.height]
    if isinstance(obj, np.ndarray) and obj.ndim >= 2:
        return [int(obj.shape[1]), int(obj.shape[0])]
    return None


def model_frame(frame: FrameType | None) -> FrameType | None:
    """``frame`` if it runs model code (a cell), else None: library-internal calls are not ops."""
    if frame is not None and frame.f_code.co_filename.startswith(CELL_PREFIX):
        return frame
    return None


def _cell_number(filename: str) -> int | None:
    try:
        return int(filename[len(CELL_PREFIX) : -1])
    except ValueError:
        return None


class Tracer:
    """Per-session registry of image objects and the op log of the current run.

    Objects are keyed by ``id()`` and held through weak references, so the registry never
    keeps model data alive and a recycled ``id()`` is never mistaken for the old object.
    """

    def __init__(self, max_ops: int = MAX_OPS_PER_RUN) -> None:
        self.ops: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.run_index = 0
        self.max_ops = max_ops
        self._known: dict[int, list[Any]] = {}  # id(obj) -> [weakref, image id | None, origin]
        self._next_id = 0

    def start_run(self, run_index: int) -> None:
        self.ops = []
        self.problems = []
        self.run_index = run_index

    def register_input(self, obj: Any, index: int) -> None:
        self._remember(obj, index, index)
        self._next_id = max(self._next_id, index + 1)

    def _remember(
        self, obj: Any, image_id: int | None, origin: int | None, same_as: list[Any] | None = None
    ) -> list[Any] | None:
        """Register ``obj``; ``same_as`` is the entry of an object with the same pixels and geometry
        (a conversion or copy), whose id ``obj`` then shares so box mapping can see through it."""
        key = id(obj)
        known = self._known

        def forget(_: Any, key: int = key) -> None:
            known.pop(key, None)

        try:
            entry = [weakref.ref(obj, forget), image_id, origin, same_as]
        except TypeError:
            return None
        known[key] = entry
        return entry

    def _entry(self, obj: Any) -> list[Any] | None:
        entry = self._known.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry
        return None

    def origin(self, obj: Any) -> int | None:
        entry = self._entry(obj)
        return None if entry is None else entry[2]

    def is_known(self, obj: Any) -> bool:
        return self._entry(obj) is not None

    def inherit(self, obj: Any, parent: Any) -> None:
        """Give ``obj`` the provenance of ``parent`` (no id yet; one is assigned on first use)."""
        if obj is None or obj is parent or self._entry(obj) is not None:
            return
        parent_entry = self._entry(parent)
        if parent_entry is not None:
            same_geometry = size_of(obj) is not None and size_of(obj) == size_of(parent)
            self._remember(obj, None, parent_entry[2], parent_entry if same_geometry else None)

    def fresh(self, obj: Any, origin: int | None) -> None:
        """Mark ``obj`` as a new image (e.g. a crop that shares memory with its operand)."""
        self._remember(obj, None, origin)

    def ref(self, obj: Any, size: list[int] | None = None) -> Ref:
        """Id, size and origin of ``obj``, assigning an id the first time it is referenced."""
        entry = self._entry(obj) or self._remember(obj, None, None)
        if entry is None:
            return {"id": None, "size": size or size_of(obj), "origin": None}
        return {"id": self._id_of(entry), "size": size or size_of(obj), "origin": entry[2]}

    def _id_of(self, entry: list[Any]) -> int:
        if entry[1] is None:
            entry[1] = self._id_of(entry[3]) if entry[3] is not None else self._new_id()
        return entry[1]

    def derived(self, result: Any, origin: int | None) -> Ref | None:
        """Reference to an op's result; an object seen for the first time descends from ``origin``."""
        if size_of(result) is None:
            return None
        entry = self._entry(result)
        # A library may have produced the result through calls of its own that only passed
        # provenance on (an alias of the operand); the op's result is a new image all the same.
        if entry is None or entry[3] is not None:
            self._remember(result, None, origin)
        return self.ref(result)

    def renewed(self, obj: Any) -> Ref:
        """A new id for an object an op changed in place, so ops before and after stay distinct."""
        self._remember(obj, None, self.origin(obj))
        return self.ref(obj)

    def intermediate(self, size: list[int], origin: int | None) -> Ref:
        """Reference to an image that one call produced on the way and never handed out."""
        return {"id": self._new_id(), "size": size, "origin": origin}

    @property
    def full(self) -> bool:
        """True once a run recorded as many ops as a result may carry (the host rejects more)."""
        return len(self.ops) >= self.max_ops

    def note(self, problem: str) -> None:
        """Remember why the trace may be incomplete; a handful of reasons is enough to report."""
        if len(self.problems) < MAX_TRACE_PROBLEMS:
            self.problems.append(problem[:MAX_TRACE_PROBLEM_CHARS])

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def emit(
        self,
        name: str,
        args: dict[str, Any],
        *,
        call: str,
        caller: FrameType,
        operand: Ref | None,
        result: Ref | None,
        unchanged: bool = False,
    ) -> None:
        """Record one op; ``unchanged`` when its result holds exactly its operand's pixels."""
        if self.full:
            return
        op: dict[str, Any] = {
            "name": name,
            "args": {key: _plain(value) for key, value in args.items()},
            "call": call,
            "run": self.run_index,
            "cell": _cell_number(caller.f_code.co_filename),
            "line": caller.f_lineno,
        }
        if operand is not None:
            op["operand"] = operand
        if result is not None:
            op["result"] = result
        if unchanged:
            op["unchanged"] = True
        self.ops.append(_bounded(op))
        if self.full:
            self.note(f"reached the limit of {self.max_ops} ops in one run; later ones are not recorded")


def _footprint(value: Any) -> tuple[int, int, int]:
    """Bytes, arrays and objects, and commas of ``value`` as a result header carries it."""
    text = json.dumps(value, separators=(",", ":"))
    return len(text), text.count("[") + text.count("{"), text.count(",")


def _fits(value: Any) -> bool:
    size, containers, items = _footprint(value)
    return size <= MAX_OP_BYTES and containers <= MAX_OP_CONTAINERS and items <= MAX_OP_ITEMS


def _bounded(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` within a result header's budget for one op: oversized arguments are replaced by what they were."""
    if _fits(op):
        return op
    args = {
        key: value if _footprint(value)[0] <= 256 else f"{type(value).__name__} too large to record"
        for key, value in op["args"].items()
    }
    op = {**op, "args": args}
    return op if _fits(op) else {**op, "args": {"omitted": f"{len(args)} arguments too large to record"}}


TRACER = Tracer()
