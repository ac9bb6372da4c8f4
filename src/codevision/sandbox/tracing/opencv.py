"""OpenCV operations."""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import cv2
import numpy as np

from codevision.sandbox.tracing.arrays import as_traced
from codevision.sandbox.tracing.core import TRACER, Described, model_frame, size_of
from codevision.sandbox.tracing.wrap import Call, Describer, constant, install_wrapper, rotation

_CV_ROTATE = {0: 270.0, 1: 180.0, 2: 90.0}  # ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE
_CV_THRESH_TYPES = {0: "binary", 1: "binary_inv", 2: "trunc", 3: "tozero", 4: "tozero_inv"}
_CV_MORPH = {0: "erode", 1: "dilate", 2: "open", 3: "close", 4: "gradient", 5: "tophat", 6: "blackhat", 7: "hitmiss"}


@functools.cache
def cv_color_codes() -> dict[int, str]:
    """``COLOR_*`` names by value; of aliases (``BGR2RGB`` == ``RGB2BGR``) the first in sorted order."""
    codes: dict[int, str] = {}
    for name in sorted(dir(cv2)):
        if name.startswith("COLOR_"):
            codes.setdefault(int(getattr(cv2, name)), name)
    return codes


def _cv_rotate(c: Call) -> Described:
    """Only the three real codes are rotations: OpenCV returns garbage for others, without raising."""
    angle = _CV_ROTATE.get(int(c.params["rotateCode"]))
    return None if angle is None else ("rotate", rotation(angle, True))


def _cv_flip(c: Call) -> Described:
    code = int(c.params["flipCode"])
    return "flip", {"axis": "vertical" if code == 0 else "horizontal" if code > 0 else "both"}


def _cv_resize(c: Call) -> Described:
    return "resize", {"size": size_of(c.output), "from_size": size_of(c.operand)}


def _cv_inverse(c: Call) -> bool:
    return bool(int(c.params.get("flags") or 0) & cv2.WARP_INVERSE_MAP)


def _cv_affine(c: Call) -> Described:
    """A rotation (possibly scaled) when the matrix is one, else a general affine warp."""
    m = np.asarray(c.params["M"], dtype=float).view(np.ndarray)
    a, b, lower_a, lower_b = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    scale = math.hypot(a, lower_a)
    angle = math.degrees(math.atan2(b, a))
    tolerance = 1e-6 * max(scale, 1.0)
    similarity = (
        scale > 0 and math.isclose(a, lower_b, abs_tol=tolerance) and math.isclose(b, -lower_a, abs_tol=tolerance)
    )
    if not similarity or math.isclose(angle, 0.0, abs_tol=1e-6):
        return "affine", {"matrix": m, "size": size_of(c.output), "inverse": _cv_inverse(c)}
    inverse = _cv_inverse(c)
    if inverse:
        angle, scale = -angle, 1.0 / scale
    args = {**rotation(round(angle, 6), False), "scale": round(scale, 6), "matrix": m, "inverse": inverse}
    return "rotate", {**args, "size": size_of(c.output)}


def _cv_cvtcolor(c: Call) -> Described:
    code = int(c.params["code"])
    name = cv_color_codes().get(code, str(code))
    if np.ndim(c.output) == 2 and np.ndim(c.operand) == 3:
        return "grayscale", {"code": name}
    return "color_convert", {"code": name}


def _cv_threshold(c: Call) -> Described:
    """``thresh`` is the threshold applied: the one OpenCV computed for Otsu and triangle."""
    flags = int(c.params["type"])
    method = "otsu" if flags & cv2.THRESH_OTSU else "triangle" if flags & cv2.THRESH_TRIANGLE else "fixed"
    return "threshold", {
        "thresh": c.returned[0],
        "maxval": c.params["maxval"],
        "type": _CV_THRESH_TYPES.get(flags & 7, flags & 7),
        "method": method,
    }


def _cv_adaptive(c: Call) -> Described:
    method = "gaussian" if int(c.params["adaptiveMethod"]) == cv2.ADAPTIVE_THRESH_GAUSSIAN_C else "mean"
    kind = int(c.params["thresholdType"])
    return "threshold", {
        "method": f"adaptive_{method}",
        "maxval": c.params["maxValue"],
        "type": _CV_THRESH_TYPES.get(kind, kind),
        "block_size": c.params["blockSize"],
        "c": c.params["C"],
    }


def _cv_morphology(kind: str, c: Call) -> Described:
    return "morphology", {
        "kind": kind,
        "kernel_size": size_of(c.params.get("kernel")),
        "iterations": c.params.get("iterations", 1),
    }


def _cv_sub_pix(c: Call) -> Described:
    """``getRectSubPix``: the box whose centre is ``center`` (OpenCV's pixel-centre convention)."""
    width, height = c.params["patchSize"]
    cx, cy = c.params["center"]
    x0, y0 = cx - (width - 1) / 2, cy - (height - 1) / 2
    return "crop", {"box": [x0, y0, x0 + width, y0 + height]}


def _cv_pad(c: Call) -> Described:
    p = c.params
    return "pad", {"border": [p["left"], p["top"], p["right"], p["bottom"]], "size": size_of(c.output)}


# name -> (parameter names, describer, index of the image in a tuple result)
_CV_SPECS: dict[str, tuple[tuple[str, ...], Describer, int | None]] = {
    "rotate": (("src", "rotateCode"), _cv_rotate, None),
    "flip": (("src", "flipCode"), _cv_flip, None),
    "transpose": (("src",), constant("transpose", {"kind": "transpose"}), None),
    "resize": (("src", "dsize", "dst", "fx", "fy", "interpolation"), _cv_resize, None),
    "pyrDown": (("src",), _cv_resize, None),
    "pyrUp": (("src",), _cv_resize, None),
    "warpAffine": (("src", "M", "dsize", "dst", "flags"), _cv_affine, None),
    "warpPerspective": (
        ("src", "M", "dsize", "dst", "flags"),
        lambda c: ("perspective", {"matrix": c.params["M"], "size": size_of(c.output), "inverse": _cv_inverse(c)}),
        None,
    ),
    "cvtColor": (("src", "code"), _cv_cvtcolor, None),
    "threshold": (("src", "thresh", "maxval", "type"), _cv_threshold, 1),
    "adaptiveThreshold": (("src", "maxValue", "adaptiveMethod", "thresholdType", "blockSize", "C"), _cv_adaptive, None),
    "inRange": (
        ("src", "lowerb", "upperb"),
        lambda c: ("threshold", {"method": "range", "lower": c.params["lowerb"], "upper": c.params["upperb"]}),
        None,
    ),
    "equalizeHist": (("src",), constant("equalize", {}), None),
    "GaussianBlur": (
        ("src", "ksize", "sigmaX"),
        lambda c: ("filter", {"kind": "gaussian_blur", "ksize": c.params["ksize"], "sigma": c.params.get("sigmaX")}),
        None,
    ),
    "medianBlur": (("src", "ksize"), lambda c: ("filter", {"kind": "median", "ksize": c.params["ksize"]}), None),
    "blur": (("src", "ksize"), lambda c: ("filter", {"kind": "box_blur", "ksize": c.params["ksize"]}), None),
    "boxFilter": (
        ("src", "ddepth", "ksize"),
        lambda c: ("filter", {"kind": "box_blur", "ksize": c.params["ksize"]}),
        None,
    ),
    "bilateralFilter": (
        ("src", "d", "sigmaColor", "sigmaSpace"),
        lambda c: (
            "filter",
            {
                "kind": "bilateral",
                "d": c.params["d"],
                "sigma_color": c.params["sigmaColor"],
                "sigma_space": c.params["sigmaSpace"],
            },
        ),
        None,
    ),
    "filter2D": (
        ("src", "ddepth", "kernel"),
        lambda c: ("filter", {"kind": "kernel", "kernel": c.params["kernel"]}),
        None,
    ),
    "Canny": (
        ("image", "threshold1", "threshold2"),
        lambda c: ("edges", {"kind": "canny", "thresholds": [c.params["threshold1"], c.params["threshold2"]]}),
        None,
    ),
    "Sobel": (
        ("src", "ddepth", "dx", "dy"),
        lambda c: ("edges", {"kind": "sobel", "dx": c.params["dx"], "dy": c.params["dy"]}),
        None,
    ),
    "Scharr": (
        ("src", "ddepth", "dx", "dy"),
        lambda c: ("edges", {"kind": "scharr", "dx": c.params["dx"], "dy": c.params["dy"]}),
        None,
    ),
    "Laplacian": (("src", "ddepth"), constant("edges", {"kind": "laplacian"}), None),
    "erode": (("src", "kernel", "dst", "anchor", "iterations"), functools.partial(_cv_morphology, "erode"), None),
    "dilate": (("src", "kernel", "dst", "anchor", "iterations"), functools.partial(_cv_morphology, "dilate"), None),
    "morphologyEx": (
        ("src", "op", "kernel", "dst", "anchor", "iterations"),
        lambda c: _cv_morphology(_CV_MORPH.get(int(c.params["op"]), str(c.params["op"])), c),
        None,
    ),
    "convertScaleAbs": (
        ("src", "dst", "alpha", "beta"),
        lambda c: (
            "enhance",
            {"kind": "linear", "alpha": c.params.get("alpha", 1.0), "beta": c.params.get("beta", 0.0)},
        ),
        None,
    ),
    "addWeighted": (
        ("src1", "alpha", "src2", "beta", "gamma"),
        lambda c: ("blend", {"alpha": c.params["alpha"], "beta": c.params["beta"], "gamma": c.params["gamma"]}),
        None,
    ),
    "bitwise_not": (("src",), constant("invert", {}), None),
    "normalize": (
        ("src", "dst", "alpha", "beta", "norm_type"),
        lambda c: ("normalize", {"alpha": c.params.get("alpha", 1.0), "beta": c.params.get("beta", 0.0)}),
        None,
    ),
    "copyMakeBorder": (("src", "top", "bottom", "left", "right", "borderType"), _cv_pad, None),
    "getRectSubPix": (("image", "patchSize", "center"), _cv_sub_pix, None),
    "fastNlMeansDenoising": (("src",), constant("denoise", {}), None),
    "fastNlMeansDenoisingColored": (("src",), constant("denoise", {}), None),
    "detailEnhance": (("src",), constant("enhance", {"kind": "detail"}), None),
    "LUT": (("src", "lut"), constant("point", {}), None),
}


class _TracedCLAHE:
    """Proxy for ``cv2.CLAHE`` (a C++ class whose methods cannot be patched)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def apply(self, src: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._inner.apply(src, *args, **kwargs)
        try:
            result = as_traced(result, src)
            caller = model_frame(sys._getframe(1))
            if caller is not None:
                operand = TRACER.ref(src)
                grid = self._inner.getTilesGridSize()
                TRACER.emit(
                    "equalize",
                    {"kind": "clahe", "clip_limit": self._inner.getClipLimit(), "tile_grid_size": grid},
                    call="cv2.CLAHE.apply",
                    caller=caller,
                    operand=operand,
                    result=TRACER.derived(result, operand["origin"]),
                )
        except Exception as exc:  # tracing must never break model code
            TRACER.note(f"cv2.CLAHE.apply: {exc!r}")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install_cv2() -> None:
    for attr, (names, describe, result_index) in _CV_SPECS.items():
        install_wrapper(
            cv2,
            attr,
            describe,
            operand=names[0],
            call=f"cv2.{attr}",
            names=names,
            result_index=result_index,
            array_result=True,
        )
    original_clahe = cv2.createCLAHE

    @functools.wraps(original_clahe)
    def create_clahe(*args: Any, **kwargs: Any) -> Any:
        return _TracedCLAHE(original_clahe(*args, **kwargs))

    create_clahe.__codevision_traced__ = True  # type: ignore[attr-defined]
    cv2.createCLAHE = create_clahe
