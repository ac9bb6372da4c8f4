"""Pillow operations."""

from __future__ import annotations

import inspect
import re
from typing import Any

from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageOps

from codevision.sandbox.tracing.core import Described
from codevision.sandbox.tracing.wrap import Call, Describer, constant, install_wrapper, rotation

_TRANSPOSE: dict[int, tuple[str, dict[str, Any]]] = {
    0: ("flip", {"axis": "horizontal"}),
    1: ("flip", {"axis": "vertical"}),
    2: ("rotate", {"angle": 90.0, "angle_ccw": 90.0, "expand": True}),
    3: ("rotate", {"angle": 180.0, "angle_ccw": 180.0, "expand": True}),
    4: ("rotate", {"angle": 270.0, "angle_ccw": 270.0, "expand": True}),
    5: ("transpose", {"kind": "transpose"}),
    6: ("transpose", {"kind": "transverse"}),
}


def _pil_rotate(c: Call) -> Described:
    args = rotation(c.params["angle"], c.params["expand"])
    for key in ("center", "translate"):
        if c.params.get(key) is not None:
            args[key] = c.params[key]
    return "rotate", args


def _pil_transpose(c: Call) -> Described:
    name, args = _TRANSPOSE[int(c.params["method"])]
    return name, dict(args)


def _pil_crop(c: Call) -> Described:
    box = c.params["box"]
    if box is None:
        return None  # a copy
    return "crop", {"box": [round(v) for v in box]}  # PIL rounds the box the same way


def _pil_resize(c: Call) -> Described:
    args = {"size": list(c.output.size), "from_size": list(c.operand.size)}
    if c.params.get("box") is not None:
        args["box"] = c.params["box"]
    return "resize", args


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _filter_args(flt: Any) -> dict[str, Any]:
    """``kind`` and the constructor parameters of a PIL filter (class or instance)."""
    if isinstance(flt, type):
        flt = flt()
    name = type(flt).__name__
    if isinstance(flt, ImageFilter.Kernel):
        size, _, _, kernel = flt.filterargs
        return {"kind": "kernel", "size": size, "kernel": kernel}
    if name.isupper():  # the built-in kernels: SHARPEN, EDGE_ENHANCE_MORE, ...
        return {"kind": name.lower()}
    args: dict[str, Any] = {"kind": _snake(name.removesuffix("Filter"))}
    for param in inspect.signature(type(flt).__init__).parameters:
        value = getattr(flt, param, None)
        if isinstance(value, (int, float)) or (isinstance(value, tuple) and len(value) <= 4):
            args[param] = value
    return args


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _pil_convert(c: Call) -> Described:
    mode, source_mode = c.params.get("mode"), c.operand.mode
    if mode is None or mode == source_mode:
        return None
    if mode in ("L", "LA") and source_mode not in _GRAY_MODES:
        return "grayscale", {"mode": mode}
    if mode == "1":
        dither = c.params.get("dither")
        return "threshold", {"mode": "1", "dither": dither is None or int(dither) != 0}
    return "convert", {"mode": mode, "from_mode": source_mode}


def _pil_transform(c: Call) -> Described:
    method, data = c.params["method"], c.params.get("data")
    if hasattr(method, "getdata"):
        method, data = method.getdata()
    try:
        kind = Image.Transform(int(method)).name.lower()
    except (TypeError, ValueError):
        kind = type(method).__name__
    return "transform", {"method": kind, "data": data, "size": list(c.output.size)}


def _border(border: Any) -> list[int]:
    """PIL's border argument (int, (x, y) or (left, top, right, bottom)) as 4 numbers."""
    if isinstance(border, (tuple, list)):
        if len(border) == 2:
            return [border[0], border[1], border[0], border[1]]
        return list(border)
    return [border] * 4


def _border_box(size: tuple[int, int], border: Any) -> list[int]:
    left, top, right, bottom = _border(border)
    return [left, top, size[0] - right, size[1] - bottom]


def _pil_thumbnail(c: Call) -> Described:
    size = list(c.operand.size)
    if size == c.operand_size:
        return None  # already small enough: nothing changed
    return "resize", {"size": size, "from_size": c.operand_size}


def install_pil() -> None:
    cls = Image.Image
    methods: dict[str, Describer | None] = {
        "rotate": _pil_rotate,
        "transpose": _pil_transpose,
        "crop": _pil_crop,
        "resize": _pil_resize,
        "reduce": lambda c: (
            "resize",
            {"size": list(c.output.size), "from_size": list(c.operand.size), "factor": c.params["factor"]},
        ),
        "convert": _pil_convert,
        "filter": lambda c: ("filter", _filter_args(c.params["filter"])),
        "point": lambda c: ("point", {} if c.params.get("mode") is None else {"mode": c.params["mode"]}),
        "transform": _pil_transform,
        "copy": None,
        "__copy__": None,
    }
    for attr, describe in methods.items():
        install_wrapper(
            cls, attr, describe, operand="self", call=f"PIL.Image.Image.{attr}", trace_failures=attr == "crop"
        )
    install_wrapper(cls, "thumbnail", _pil_thumbnail, operand="self", call="PIL.Image.Image.thumbnail", in_place=True)
    install_wrapper(Image, "fromarray", None, operand="obj", call="PIL.Image.fromarray")

    image_ops: dict[str, Describer] = {
        "mirror": constant("flip", {"axis": "horizontal"}),
        "flip": constant("flip", {"axis": "vertical"}),
        "grayscale": constant("grayscale", {"mode": "L"}),
        "equalize": constant("equalize", {}),
        "invert": constant("invert", {}),
        "exif_transpose": constant("exif_transpose", {}),
        "autocontrast": lambda c: ("autocontrast", {"cutoff": c.params["cutoff"]}),
        "posterize": lambda c: ("posterize", {"bits": c.params["bits"]}),
        "solarize": lambda c: ("solarize", {"threshold": c.params["threshold"]}),
        "crop": lambda c: ("crop", {"box": _border_box(c.operand.size, c.params["border"])}),
        "expand": lambda c: ("pad", {"border": _border(c.params["border"]), "size": list(c.output.size)}),
        "scale": lambda c: (
            "resize",
            {"size": list(c.output.size), "from_size": list(c.operand.size), "factor": c.params["factor"]},
        ),
    }
    for attr in ("fit", "pad", "contain", "cover"):
        image_ops[attr] = lambda c, attr=attr: (attr, {"size": list(c.output.size), "from_size": list(c.operand.size)})
    for attr, describe in image_ops.items():
        install_wrapper(
            ImageOps, attr, describe, operand="image", call=f"PIL.ImageOps.{attr}", in_place=attr == "exif_transpose"
        )
    install_wrapper(ImageChops, "invert", constant("invert", {}), operand="image", call="PIL.ImageChops.invert")

    for kind in ("Contrast", "Brightness", "Sharpness", "Color"):
        install_wrapper(
            getattr(ImageEnhance, kind),
            "enhance",
            lambda c, kind=kind: ("enhance", {"kind": kind.lower(), "factor": c.params["factor"]}),
            operand="self",
            call=f"PIL.ImageEnhance.{kind}.enhance",
            unwrap=lambda e: e.image,
        )
