"""The runtime op trace: exact names, arguments and provenance of the image operations that ran.

Rewards are computed from this trace, so every convention is pinned down here: angles are
counter-clockwise, flips name the axis the pixels move along, crop boxes are in operand
pixels, and ops that raised, never ran or happened inside a library are absent. Geometric
claims are checked against the returned pixels with an independent NumPy reference.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from codevision.sandbox import Sandbox
from codevision.sandbox.results import MAX_OPS_PER_RUN, ImageOp, RunResult
from codevision.sandbox.tracing.wrap import same_pixels
from tests.conftest import gradient_image

INCOMPLETE = "op trace may be incomplete"


def run_cells(
    sandbox: Sandbox, *cells: str, images: list[Image.Image] | None = None, complete: bool = True
) -> RunResult:
    """Run cells in one fresh session; all must succeed (with a complete trace). Returns the last."""
    with sandbox.session(images=images if images is not None else [gradient_image()]) as session:
        for cell in cells:
            result = session.run(cell)
            assert result.ok, result.error
            if complete:
                assert not [w for w in result.warnings if INCOMPLETE in w], result.warnings
    return result


def run_code(sandbox: Sandbox, code: str, images: list[Image.Image] | None = None, complete: bool = True) -> RunResult:
    return run_cells(sandbox, code, images=images, complete=complete)


def calls(result: RunResult) -> list[tuple[str, dict[str, Any]]]:
    return [(op.name, op.args) for op in result.ops]


def only_op(result: RunResult) -> ImageOp:
    assert len(result.ops) == 1, calls(result)
    return result.ops[0]


def ccw90(pixels: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Rotate counter-clockwise by quarter turns with plain indexing (top-right goes top-left)."""
    for _ in range(quarter_turns % 4):
        pixels = pixels.swapaxes(0, 1)[::-1]
    return pixels


def claimed(source: np.ndarray, op: ImageOp) -> np.ndarray:
    """The pixels an op's recorded arguments say it produced from ``source``."""
    if op.name == "rotate":
        quarter_turns = op.args["angle_ccw"] / 90
        assert quarter_turns.is_integer(), op.args
        return ccw90(source, int(quarter_turns))
    if op.name == "flip":
        rows, cols = {"horizontal": (1, -1), "vertical": (-1, 1), "both": (-1, -1)}[op.args["axis"]]
        return source[::rows, ::cols]
    if op.name == "transpose":
        swapped = source.swapaxes(0, 1)
        return swapped if op.args["kind"] == "transpose" else swapped[::-1, ::-1]
    if op.name == "crop":
        x0, y0, x1, y1 = op.args["box"]
        return source[y0:y1, x0:x1]
    raise AssertionError(f"no reference for {op.name}")


def assert_pixels_match_claims(result: RunResult, source: Image.Image) -> None:
    """Each op displayed in order must have turned ``source`` into exactly what its args claim."""
    assert len(result.images) == len(result.ops)
    pixels = np.asarray(source)
    for op, shown in zip(result.ops, result.images, strict=True):
        np.testing.assert_array_equal(np.asarray(shown), claimed(pixels, op), err_msg=str(op))


# ---------------------------------------------------------------- conventions themselves


def test_reference_rotation_is_counter_clockwise() -> None:
    corners = np.array([[1, 2], [3, 4]])  # 1 top-left, 2 top-right
    assert ccw90(corners, 1).tolist() == [[2, 4], [1, 3]]
    assert ccw90(corners, 3).tolist() == [[3, 1], [4, 2]]


# ---------------------------------------------------------------- PIL


def test_pil_rotate_records_given_and_computed_angles(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "a = 45 * 2\n"
            "r1 = image.rotate(a, expand=True)\n"
            "r2 = image.rotate(-30)\n"
            "r3 = image.rotate(angle=30)\n"
            "r4 = image.rotate(np.float32(12.5), expand=1)\n"
            "r5 = image.rotate(450, expand=True)\n"
        ),
    )
    assert calls(result) == [
        ("rotate", {"angle": 90.0, "angle_ccw": 90.0, "expand": True}),
        ("rotate", {"angle": -30.0, "angle_ccw": 330.0, "expand": False}),
        ("rotate", {"angle": 30.0, "angle_ccw": 30.0, "expand": False}),
        ("rotate", {"angle": 12.5, "angle_ccw": 12.5, "expand": True}),
        ("rotate", {"angle": 450.0, "angle_ccw": 90.0, "expand": True}),
    ]
    assert [op.line for op in result.ops] == [2, 3, 4, 5, 6]
    expected_sizes = [
        gradient_image().rotate(a, expand=e).size
        for a, e in ((90, True), (-30, False), (30, False), (12.5, True), (450, True))
    ]
    assert [op.result.size for op in result.ops if op.result] == expected_sizes


def test_pil_rotate_direction_matches_pixels(sandbox: Sandbox) -> None:
    result = run_code(sandbox, "display(image.rotate(90, expand=True), image.rotate(-90, expand=True))")
    assert_pixels_match_claims(result, gradient_image())


def test_pil_transpose_variants_match_pixels(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "for name in ('FLIP_LEFT_RIGHT', 'FLIP_TOP_BOTTOM', 'ROTATE_90', 'ROTATE_180', 'ROTATE_270',\n"
            "             'TRANSPOSE', 'TRANSVERSE'):\n"
            "    display(image.transpose(getattr(Image.Transpose, name)))\n"
        ),
    )
    assert calls(result) == [
        ("flip", {"axis": "horizontal"}),
        ("flip", {"axis": "vertical"}),
        ("rotate", {"angle": 90.0, "angle_ccw": 90.0, "expand": True}),
        ("rotate", {"angle": 180.0, "angle_ccw": 180.0, "expand": True}),
        ("rotate", {"angle": 270.0, "angle_ccw": 270.0, "expand": True}),
        ("transpose", {"kind": "transpose"}),
        ("transpose", {"kind": "transverse"}),
    ]
    assert {op.line for op in result.ops} == {3}
    assert_pixels_match_claims(result, gradient_image())
    top_right = np.asarray(gradient_image())[0, -1]
    np.testing.assert_array_equal(np.asarray(result.images[2])[0, 0], top_right)  # ROTATE_90 is ccw


def test_pil_crop_box_is_recorded_as_applied(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        ("display(image.crop((10, 5, 40, 30)))\ndisplay(image.crop(box=(10.4, 5.6, 40, 30)))\ncopied = image.crop()\n"),
    )
    assert calls(result) == [("crop", {"box": [10, 5, 40, 30]}), ("crop", {"box": [10, 6, 40, 30]})]
    assert result.ops[0].result is not None and result.ops[0].result.size == (30, 25)
    assert_pixels_match_claims(result, gradient_image())


def test_pil_resize_reduce_and_in_place_thumbnail(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "a = image.resize((32, 24), Image.Resampling.LANCZOS)\n"
            "b = image.reduce(2)\n"
            "c = image.copy()\n"
            "c.thumbnail((16, 16))\n"
            "c.thumbnail((100, 100))\n"
            "d = c.crop((0, 0, 8, 8))\n"
        ),
    )
    assert calls(result) == [
        ("resize", {"size": [32, 24], "from_size": [64, 48]}),
        ("resize", {"size": [32, 24], "from_size": [64, 48], "factor": 2}),
        ("resize", {"size": [16, 12], "from_size": [64, 48]}),
        ("crop", {"box": [0, 0, 8, 8]}),
    ]
    thumbnail, crop = result.ops[2], result.ops[3]
    assert thumbnail.operand is not None and thumbnail.result is not None and crop.operand is not None
    assert thumbnail.operand.size == (64, 48) and thumbnail.result.size == (16, 12)
    assert thumbnail.result.id != thumbnail.operand.id  # the image changed in place: a new id
    assert crop.operand.id == thumbnail.result.id and crop.operand.origin == 0


def test_pil_convert_records_grayscale_threshold_but_not_same_mode(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "g = image.convert('L')\n"
            "t = image.convert('1')\n"
            "u = image.convert('1', dither=Image.Dither.NONE)\n"
            "same = image.convert('RGB')\n"
            "gg = g.convert('L')\n"
            "h = image.convert('HSV')\n"
            "r = same.rotate(5)\n"
        ),
    )
    assert calls(result) == [
        ("grayscale", {"mode": "L"}),
        ("threshold", {"mode": "1", "dither": True}),
        ("threshold", {"mode": "1", "dither": False}),
        ("convert", {"mode": "HSV", "from_mode": "RGB"}),
        ("rotate", {"angle": 5.0, "angle_ccw": 5.0, "expand": False}),
    ]
    assert result.ops[-1].operand is not None and result.ops[-1].operand.origin == 0


def test_pil_filters_record_kind_and_parameters(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "a = image.filter(ImageFilter.GaussianBlur(radius=3))\n"
            "b = image.filter(ImageFilter.SHARPEN)\n"
            "c = image.filter(ImageFilter.UnsharpMask(2, 150, 3))\n"
            "d = image.filter(ImageFilter.MedianFilter(5))\n"
            "e = image.filter(ImageFilter.GaussianBlur)\n"
            "f = image.filter(ImageFilter.EDGE_ENHANCE_MORE)\n"
            "g = image.filter(ImageFilter.Kernel((3, 3), [0, -1, 0, -1, 5, -1, 0, -1, 0]))\n"
            "h = image.point(lambda v: 255 - v)\n"
        ),
    )
    assert calls(result) == [
        ("filter", {"kind": "gaussian_blur", "radius": 3}),
        ("filter", {"kind": "sharpen"}),
        ("filter", {"kind": "unsharp_mask", "radius": 2, "percent": 150, "threshold": 3}),
        ("filter", {"kind": "median", "size": 5}),
        ("filter", {"kind": "gaussian_blur", "radius": 2}),
        ("filter", {"kind": "edge_enhance_more"}),
        ("filter", {"kind": "kernel", "size": [3, 3], "kernel": [0, -1, 0, -1, 5, -1, 0, -1, 0]}),
        ("point", {}),
    ]


def test_image_enhance_records_only_enhance_calls(sandbox: Sandbox) -> None:
    constructed = run_code(
        sandbox,
        (
            "enhancers = [ImageEnhance.Contrast(image), ImageEnhance.Brightness(image),\n"
            "             ImageEnhance.Sharpness(image), ImageEnhance.Color(image)]\n"
        ),
    )
    assert constructed.ops == []
    result = run_code(
        sandbox,
        (
            "e = ImageEnhance.Contrast(image)\n"
            "a = e.enhance(1.5)\n"
            "b = ImageEnhance.Brightness(image).enhance(0.8)\n"
            "c = ImageEnhance.Sharpness(image).enhance(2)\n"
            "d = ImageEnhance.Color(image).enhance(0.0)\n"
        ),
    )
    assert calls(result) == [
        ("enhance", {"kind": "contrast", "factor": 1.5}),
        ("enhance", {"kind": "brightness", "factor": 0.8}),
        ("enhance", {"kind": "sharpness", "factor": 2}),
        ("enhance", {"kind": "color", "factor": 0.0}),
    ]
    assert [op.line for op in result.ops] == [2, 3, 4, 5]
    assert all(op.operand and op.operand.id == 0 and op.result and op.result.origin == 0 for op in result.ops)


@pytest.mark.parametrize(
    ("code", "name", "args", "size"),
    [
        ("ImageOps.mirror(image)", "flip", {"axis": "horizontal"}, (64, 48)),
        ("ImageOps.flip(image)", "flip", {"axis": "vertical"}, (64, 48)),
        ("ImageOps.grayscale(image)", "grayscale", {"mode": "L"}, (64, 48)),
        ("ImageOps.equalize(image)", "equalize", {}, (64, 48)),
        ("ImageOps.autocontrast(image, cutoff=2)", "autocontrast", {"cutoff": 2}, (64, 48)),
        ("ImageOps.invert(image)", "invert", {}, (64, 48)),
        ("ImageOps.crop(image, border=5)", "crop", {"box": [5, 5, 59, 43]}, (54, 38)),
        ("ImageOps.crop(image, (1, 2, 3, 4))", "crop", {"box": [1, 2, 61, 44]}, (60, 42)),
        ("ImageOps.expand(image, border=3)", "pad", {"border": [3, 3, 3, 3], "size": [70, 54]}, (70, 54)),
        ("ImageOps.expand(image, (1, 2))", "pad", {"border": [1, 2, 1, 2], "size": [66, 52]}, (66, 52)),
        ("ImageOps.fit(image, (20, 20))", "fit", {"size": [20, 20], "from_size": [64, 48]}, (20, 20)),
        ("ImageOps.pad(image, (80, 80))", "pad", {"size": [80, 80], "from_size": [64, 48]}, (80, 80)),
        ("ImageOps.contain(image, (32, 32))", "contain", {"size": [32, 24], "from_size": [64, 48]}, (32, 24)),
        ("ImageOps.cover(image, (32, 32))", "cover", {"size": [43, 32], "from_size": [64, 48]}, (43, 32)),
        ("ImageOps.exif_transpose(image)", "exif_transpose", {}, (64, 48)),
        ("ImageOps.scale(image, 0.5)", "resize", {"size": [32, 24], "from_size": [64, 48], "factor": 0.5}, (32, 24)),
        ("ImageOps.posterize(image, 3)", "posterize", {"bits": 3}, (64, 48)),
        ("ImageOps.solarize(image, 100)", "solarize", {"threshold": 100}, (64, 48)),
        ("ImageOps.solarize(image)", "solarize", {"threshold": 128}, (64, 48)),
        ("ImageOps.crop(image=image, border=2)", "crop", {"box": [2, 2, 62, 46]}, (60, 44)),
    ],
)
def test_image_ops_are_recorded_once_without_their_internals(
    sandbox: Sandbox,
    code: str,
    name: str,
    args: dict[str, Any],
    size: tuple[int, int],
) -> None:
    result = run_code(sandbox, f"out = {code}\ndisplay(out)")
    op = only_op(result)
    assert (op.name, op.args) == (name, args)
    assert op.call.startswith("PIL.ImageOps.") and op.line == 1
    assert op.operand is not None and (op.operand.id, op.operand.origin) == (0, 0)
    assert op.result is not None and op.result.size == size and op.result.origin == 0
    assert (result.image_info[0].id, result.image_info[0].origin) == (op.result.id, 0)


def test_exif_transpose_records_only_itself(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "tagged = image.copy()\n"
            "tagged.getexif()[0x0112] = 6\n"
            "upright = ImageOps.exif_transpose(tagged)\n"
            "ImageOps.exif_transpose(tagged, in_place=True)\n"
        ),
    )
    assert calls(result) == [("exif_transpose", {}), ("exif_transpose", {})]
    first, second = result.ops
    assert first.result is not None and first.result.size == (48, 64)
    assert second.operand is not None and second.result is not None
    assert second.result.size == (48, 64) and second.result.id != second.operand.id


# ---------------------------------------------------------------- OpenCV


def test_cv2_rotate_codes_map_to_counter_clockwise_angles(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "display(cv2.rotate(arr, cv2.ROTATE_90_CLOCKWISE))\n"
            "display(cv2.rotate(arr, cv2.ROTATE_180))\n"
            "display(cv2.rotate(arr, cv2.ROTATE_90_COUNTERCLOCKWISE))\n"
        ),
    )
    assert [op.args for op in result.ops] == [
        {"angle": 270.0, "angle_ccw": 270.0, "expand": True},
        {"angle": 180.0, "angle_ccw": 180.0, "expand": True},
        {"angle": 90.0, "angle_ccw": 90.0, "expand": True},
    ]
    assert_pixels_match_claims(result, gradient_image())


def test_cv2_flip_codes_match_pixels(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "display(cv2.flip(arr, 0), cv2.flip(arr, 1), cv2.flip(arr, -1), cv2.flip(src=arr, flipCode=1))\n"
        ),
    )
    assert [op.args["axis"] for op in result.ops] == ["vertical", "horizontal", "both", "horizontal"]
    assert_pixels_match_claims(result, gradient_image())


def test_cv2_geometry(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "a = cv2.resize(arr, (32, 24))\n"
            "b = cv2.resize(arr, None, fx=0.5, fy=0.25, interpolation=cv2.INTER_AREA)\n"
            "M = cv2.getRotationMatrix2D((32, 24), 30, 1.0)\n"
            "c = cv2.warpAffine(arr, M, (64, 48))\n"
            "d = cv2.warpAffine(arr, cv2.getRotationMatrix2D((0, 0), -45, 2.0), (64, 48))\n"
            "e = cv2.warpAffine(arr, M, (64, 48), flags=cv2.WARP_INVERSE_MAP)\n"
            "shift = np.float32([[1, 0, 5], [0, 1, 3]])\n"
            "f = cv2.warpAffine(arr, shift, (64, 48))\n"
            "P = np.float64([[1, 0.1, 0], [0, 1, 0], [0, 0, 1]])\n"
            "g = cv2.warpPerspective(arr, P, (40, 30))\n"
            "h = cv2.copyMakeBorder(arr, 1, 2, 3, 4, cv2.BORDER_CONSTANT)\n"
            "print(M.tolist())\n"
        ),
    )
    matrix = json.loads(result.stdout)  # the matrix exactly as the session computed it
    names = [op.name for op in result.ops]
    assert names == ["resize", "resize", "rotate", "rotate", "rotate", "affine", "perspective", "pad"]
    a, b, c, d, e, f, g, h = (op.args for op in result.ops)
    assert a == {"size": [32, 24], "from_size": [64, 48]}
    assert b == {"size": [32, 12], "from_size": [64, 48]}
    assert c == {
        "angle": 30.0, "angle_ccw": 30.0, "expand": False, "scale": 1.0, "matrix": matrix, "inverse": False,
        "size": [64, 48],
    }  # fmt: skip
    assert (d["angle"], d["angle_ccw"], d["scale"]) == (-45.0, 315.0, 2.0)
    assert (e["angle"], e["angle_ccw"], e["scale"]) == (-30.0, 330.0, 1.0)
    assert f == {"matrix": [[1.0, 0.0, 5.0], [0.0, 1.0, 3.0]], "size": [64, 48], "inverse": False}
    assert g == {"matrix": [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "size": [40, 30], "inverse": False}
    assert h == {"border": [3, 1, 4, 2], "size": [71, 51]}
    assert all(op.operand and op.operand.origin == 0 and op.result and op.result.origin == 0 for op in result.ops)


def test_cv2_color_and_thresholds(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)\n"
            "hsv = cv2.cvtColor(arr, cv2.COLOR_RGB2HSV)\n"
            "t, fixed = cv2.threshold(gray, 100, 255, cv2.THRESH_BINARY)\n"
            "otsu_t, otsu = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)\n"
            "ad = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 11, 2)\n"
            "eq = cv2.equalizeHist(gray)\n"
            "clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4))\n"
            "cl = clahe.apply(gray)\n"
            "clahe.setClipLimit(5.0)\n"
            "cl2 = clahe.apply(gray)\n"
            "print(otsu_t)\n"
            "display(otsu)\n"
        ),
    )
    otsu_threshold = float(result.stdout)
    assert otsu_threshold > 0
    assert calls(result) == [
        ("grayscale", {"code": "COLOR_RGB2GRAY"}),
        ("color_convert", {"code": "COLOR_RGB2HSV"}),
        ("threshold", {"thresh": 100.0, "maxval": 255, "type": "binary", "method": "fixed"}),
        ("threshold", {"thresh": otsu_threshold, "maxval": 255, "type": "binary_inv", "method": "otsu"}),
        ("threshold", {"method": "adaptive_gaussian", "maxval": 255, "type": "binary", "block_size": 11, "c": 2}),
        ("equalize", {}),
        ("equalize", {"kind": "clahe", "clip_limit": 3.0, "tile_grid_size": [4, 4]}),
        ("equalize", {"kind": "clahe", "clip_limit": 5.0, "tile_grid_size": [4, 4]}),
    ]
    gray_id = result.ops[0].result.id if result.ops[0].result else None
    assert [op.operand.id for op in result.ops[2:] if op.operand] == [gray_id] * 6
    otsu_op = result.ops[3]
    assert otsu_op.result is not None and result.image_info[0].id == otsu_op.result.id


def test_cv2_filters_edges_morphology_and_tones(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "gray = np.array(image.convert('L'))\n"
            "k = np.ones((3, 3), np.uint8)\n"
            "a = cv2.GaussianBlur(arr, (5, 5), 1.5)\n"
            "b = cv2.medianBlur(arr, 3)\n"
            "c = cv2.bilateralFilter(arr, 9, 75, 75)\n"
            "d = cv2.filter2D(arr, -1, np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]))\n"
            "e = cv2.Canny(gray, 50, 150)\n"
            "f = cv2.erode(gray, k)\n"
            "g = cv2.dilate(gray, k, iterations=2)\n"
            "h = cv2.morphologyEx(gray, cv2.MORPH_OPEN, k)\n"
            "i = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, np.ones((5, 3), np.uint8))\n"
            "j = cv2.convertScaleAbs(arr, alpha=1.5, beta=10)\n"
            "l = cv2.bitwise_not(arr)\n"
        ),
    )
    assert calls(result) == [
        ("grayscale", {"mode": "L"}),
        ("filter", {"kind": "gaussian_blur", "ksize": [5, 5], "sigma": 1.5}),
        ("filter", {"kind": "median", "ksize": 3}),
        ("filter", {"kind": "bilateral", "d": 9, "sigma_color": 75, "sigma_space": 75}),
        ("filter", {"kind": "kernel", "kernel": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]}),
        ("edges", {"kind": "canny", "thresholds": [50, 150]}),
        ("morphology", {"kind": "erode", "kernel_size": [3, 3], "iterations": 1}),
        ("morphology", {"kind": "dilate", "kernel_size": [3, 3], "iterations": 2}),
        ("morphology", {"kind": "open", "kernel_size": [3, 3], "iterations": 1}),
        ("morphology", {"kind": "close", "kernel_size": [3, 5], "iterations": 1}),
        ("enhance", {"kind": "linear", "alpha": 1.5, "beta": 10}),
        ("invert", {}),
    ]
    assert all(op.operand and op.operand.origin == 0 for op in result.ops)


def test_other_cv2_and_pil_ops(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)\n"
            "display(cv2.getRectSubPix(arr, (10, 6), (19.5, 14.5)))\n"
            "b = cv2.inRange(arr, (0, 0, 0), (128, 128, 128))\n"
            "c = cv2.pyrDown(arr)\n"
            "d = cv2.pyrUp(arr)\n"
            "e = cv2.Sobel(gray, cv2.CV_64F, 1, 0)\n"
            "f = cv2.Laplacian(gray, cv2.CV_64F)\n"
            "g = cv2.addWeighted(arr, 0.7, arr, 0.3, 0)\n"
            "h = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)\n"
            "i = cv2.LUT(arr, np.arange(256, dtype=np.uint8)[::-1].copy())\n"
            "j = cv2.blur(arr, (5, 5))\n"
            "k = cv2.transpose(arr)\n"
            "m = image.transform((32, 24), Image.Transform.EXTENT, (0, 0, 32, 24))\n"
            "import PIL.ImageChops\n"
            "n = PIL.ImageChops.invert(image)\n"
        ),
    )
    assert calls(result) == [
        ("grayscale", {"code": "COLOR_RGB2GRAY"}),
        ("crop", {"box": [15.0, 12.0, 25.0, 18.0]}),
        ("threshold", {"method": "range", "lower": [0, 0, 0], "upper": [128, 128, 128]}),
        ("resize", {"size": [32, 24], "from_size": [64, 48]}),
        ("resize", {"size": [128, 96], "from_size": [64, 48]}),
        ("edges", {"kind": "sobel", "dx": 1, "dy": 0}),
        ("edges", {"kind": "laplacian"}),
        ("blend", {"alpha": 0.7, "beta": 0.3, "gamma": 0}),
        ("normalize", {"alpha": 0, "beta": 255}),
        ("point", {}),
        ("filter", {"kind": "box_blur", "ksize": [5, 5]}),
        ("transpose", {"kind": "transpose"}),
        ("transform", {"method": "extent", "data": [0, 0, 32, 24], "size": [32, 24]}),
        ("invert", {}),
    ]
    np.testing.assert_array_equal(np.asarray(result.images[0]), np.asarray(gradient_image())[12:18, 15:25])
    assert all(op.operand and op.operand.origin == 0 for op in result.ops)


# ---------------------------------------------------------------- NumPy


def test_numpy_rot90_directions_match_pixels(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "display(np.rot90(arr), np.rot90(arr, 2), np.rot90(arr, -1), np.rot90(arr, 1, axes=(1, 0)),\n"
            "        np.rot90(m=arr, k=np.int64(3)), np.rot90(arr, -2, (-3, -2)))\n"
        ),
    )
    assert [(op.args["angle"], op.args["angle_ccw"], op.args["k"]) for op in result.ops] == [
        (90.0, 90.0, 1),
        (180.0, 180.0, 2),
        (-90.0, 270.0, -1),
        (-90.0, 270.0, 1),
        (270.0, 270.0, 3),
        (-180.0, 180.0, -2),
    ]
    assert all(op.args["expand"] is True for op in result.ops)
    assert [op.line for op in result.ops] == [2, 2, 2, 2, 3, 3]
    assert_pixels_match_claims(result, gradient_image())


def test_numpy_flips_and_transposes_match_pixels(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "display(np.flip(arr, 0), np.flip(arr, axis=1), np.flip(arr, (0, 1)), np.fliplr(arr),\n"
            "        np.flipud(arr), np.transpose(arr, (1, 0, 2)), arr.transpose(1, 0, 2),\n"
            "        arr.swapaxes(0, 1))\n"
            "channels = np.flip(arr, 2)\n"
            "not_spatial = np.transpose(arr)\n"
        ),
    )
    assert calls(result) == [
        ("flip", {"axis": "vertical"}),
        ("flip", {"axis": "horizontal"}),
        ("flip", {"axis": "both"}),
        ("flip", {"axis": "horizontal"}),
        ("flip", {"axis": "vertical"}),
        ("transpose", {"kind": "transpose"}),
        ("transpose", {"kind": "transpose"}),
        ("transpose", {"kind": "transpose"}),
    ]
    assert_pixels_match_claims(result, gradient_image())


def test_numpy_flip_without_axis_and_gray_transpose(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "gray = np.array(image.convert('L'))\n"
            "a = np.flip(gray)\n"
            "b = gray.T\n"
            "c = np.transpose(gray)\n"
            "rgb = np.flip(np.array(image))\n"
        ),
    )
    assert calls(result)[1:] == [
        ("flip", {"axis": "both"}),
        ("transpose", {"kind": "transpose"}),
        ("transpose", {"kind": "transpose"}),
        ("flip", {"axis": "both"}),
    ]


def test_array_slicing_crops_and_flips_input_images(sandbox: Sandbox) -> None:
    big = gradient_image(100, 80)
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "display(arr[10:50, 20:80])\n"
            "display(arr[::-1])\n"
            "display(arr[:, ::-1])\n"
            "display(arr[::-1, ::-1])\n"
            "display(arr[-30:, :-10])\n"
            "display(arr[10:50, 20:80, 0])\n"
        ),
        images=[big],
    )
    assert calls(result) == [
        ("crop", {"box": [20, 10, 80, 50]}),
        ("flip", {"axis": "vertical"}),
        ("flip", {"axis": "horizontal"}),
        ("flip", {"axis": "both"}),
        ("crop", {"box": [0, 50, 90, 80]}),
        ("crop", {"box": [20, 10, 80, 50]}),
    ]
    assert result.ops[0].call == "numpy.ndarray.__getitem__"
    assert all(op.operand and op.operand.origin == 0 and op.result and op.result.origin == 0 for op in result.ops)
    assert [info.id for info in result.image_info] == [op.result.id for op in result.ops if op.result]
    pixels = np.asarray(big)
    for op, shown in list(zip(result.ops, result.images, strict=True))[:5]:
        np.testing.assert_array_equal(np.asarray(shown), claimed(pixels, op))


def test_array_indexing_that_is_not_geometry_records_nothing(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "red = arr[..., 0]\n"
            "green = arr[:, :, 1]\n"
            "pixel = arr[3, 4]\n"
            "value = arr[3, 4, 0]\n"
            "row = arr[5]\n"
            "column = arr[:, 7]\n"
            "bgr = arr[:, :, ::-1]\n"
            "same = arr[:]\n"
            "bright = arr[arr.sum(axis=2) > 300]\n"
            "gray = red[2, 2]\n"
            "new_axis = arr[None]\n"
            "print(arr)\n"
            "print(repr(red))\n"
        ),
    )
    assert result.ops == []


def test_writing_pixels_and_pixel_lists_record_nothing(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "arr[10:20, 10:20] = 0\n"
            "arr[:, ::-1] = arr.copy()\n"
            "pixels = arr.reshape(-1, 3)\n"
            "sample = pixels[:100]\n"
            "every_tenth = pixels[::10]\n"
            "canvas = np.zeros_like(arr)\n"
            "patch = canvas[0:10, 0:10]\n"
            "ones = np.ones_like(arr)[::-1]\n"
            "flat = arr.ravel()[:10]\n"
        ),
    )
    assert result.ops == []


def test_strided_and_reversed_slices_become_a_chained_pipeline(sandbox: Sandbox) -> None:
    result = run_code(sandbox, ("arr = np.array(image)\nhalf = arr[::2, ::2]\nmixed = arr[40:0:-2, 10:50]\n"))
    assert calls(result) == [
        ("resize", {"size": [32, 24], "from_size": [64, 48], "step": [2, 2]}),
        ("crop", {"box": [10, 1, 50, 41]}),
        ("resize", {"size": [40, 20], "from_size": [40, 40], "step": [1, 2]}),
        ("flip", {"axis": "vertical"}),
    ]
    crop, resize, flip = result.ops[1:]
    assert crop.result and resize.operand and resize.result and flip.operand and flip.result
    assert crop.result.id == resize.operand.id and resize.result.id == flip.operand.id
    assert flip.result.size == (40, 20) and flip.result.origin == 0


def test_numpy_pad(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "a = np.pad(arr, ((1, 2), (3, 4), (0, 0)))\n"
            "b = np.pad(arr, ((0, 0), (0, 0), (0, 1)))\n"
            "c = np.pad(np.array(image.convert('L')), 5, mode='edge')\n"
        ),
    )
    assert calls(result) == [
        ("pad", {"border": [3, 1, 4, 2], "size": [71, 51], "mode": "constant"}),
        ("grayscale", {"mode": "L"}),
        ("pad", {"border": [5, 5, 5, 5], "size": [74, 58], "mode": "edge"}),
    ]


def test_numpy_functions_on_plain_numbers_record_nothing(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "m = np.arange(12).reshape(3, 4)\n"
            "a = np.rot90(m)\n"
            "b = np.flip(m, 0)\n"
            "c = np.transpose(m)\n"
            "d = m[1:3, 0:2]\n"
            "e = m[::-1]\n"
        ),
    )
    assert result.ops == []


# ---------------------------------------------------------------- provenance


def test_provenance_chains_follow_results(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "r = image.rotate(90, expand=True)\n"
            "c = r.crop((0, 0, 10, 10))\n"
            "s = images[1].rotate(10)\n"
            "f = Image.fromarray(np.array(images[1])[5:10, 5:20])\n"
            "g = f.resize((30, 10))\n"
            "h = cv2.flip(np.asarray(images[1]), 1)\n"
            "display(c, g, images[1])\n"
        ),
        images=[gradient_image(), gradient_image(32, 24)],
    )
    rotate, crop, second, slice_crop, resize, flip = result.ops
    assert rotate.result and crop.operand and crop.result
    assert crop.operand.id == rotate.result.id and (crop.operand.origin, crop.result.origin) == (0, 0)
    assert second.operand and second.result
    assert (second.operand.id, second.operand.origin, second.result.origin) == (1, 1, 1)
    assert (slice_crop.name, slice_crop.args) == ("crop", {"box": [5, 5, 20, 10]})
    assert slice_crop.operand and slice_crop.operand.origin == 1
    assert resize.operand and resize.result and (resize.operand.origin, resize.result.origin) == (1, 1)
    assert flip.operand and flip.operand.origin == 1
    ids = {op.result.id for op in result.ops if op.result}
    assert len(ids) == len(result.ops)  # every result is a distinct image
    assert [(info.id, info.origin) for info in result.image_info] == [
        (crop.result.id, 0),
        (resize.result.id, 1),
        (1, 1),
    ]


def test_copies_and_conversions_keep_the_origin(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "import copy\n"
            "a = copy.copy(images[1]).rotate(1)\n"
            "b = images[1].copy().rotate(2)\n"
            "c = np.asarray(images[1]).astype(np.float32)[0:4, 0:4]\n"
            "d = Image.fromarray(np.ascontiguousarray(np.array(images[1])[::-1])).rotate(3)\n"
            "e = ImageOps.mirror(images[1].convert('RGB'))\n"
            "f = np.copy(np.array(images[1]))[1:5, 1:5]\n"
        ),
        images=[gradient_image(), gradient_image(32, 24)],
    )
    assert [op.name for op in result.ops] == ["rotate", "rotate", "crop", "flip", "rotate", "flip", "crop"]
    assert all(op.operand and op.operand.origin == 1 and op.result and op.result.origin == 1 for op in result.ops)


def test_ops_in_functions_from_earlier_cells_report_their_cell_and_line(sandbox: Sandbox) -> None:
    result = run_cells(
        sandbox,
        "def prepare(img):\n    gray = img.convert('L')\n    return gray.rotate(15)\n",
        "# now use it\nout = prepare(image)\ndisplay(out.crop((0, 0, 20, 20)))\n",
    )
    assert [(op.name, op.run, op.cell, op.line) for op in result.ops] == [
        ("grayscale", 2, 1, 2),
        ("rotate", 2, 1, 3),
        ("crop", 2, 2, 3),
    ]


def test_line_numbers_skip_comments_and_blank_lines(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "# rotate first\n"
            "\n"
            "r = image.rotate(10)\n"
            "x = 1\n"
            "\n"
            "c = r.crop((\n"
            "    0, 0, 5, 5))\n"
            "if x:\n"
            "    m = ImageOps.mirror(c)\n"
        ),
    )
    assert [(op.name, op.line, op.cell, op.run) for op in result.ops] == [
        ("rotate", 3, 1, 1),
        ("crop", 6, 1, 1),
        ("flip", 9, 1, 1),
    ]


def test_ops_in_a_loop_are_recorded_each_time(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "outs = []\n"
            "for a in range(0, 90, 30):\n"
            "    outs.append(image.rotate(a))\n"
            "crops = [np.array(image)[i:i + 10, i:i + 10] for i in (0, 5)]\n"
        ),
    )
    assert calls(result) == [
        ("rotate", {"angle": 0.0, "angle_ccw": 0.0, "expand": False}),
        ("rotate", {"angle": 30.0, "angle_ccw": 30.0, "expand": False}),
        ("rotate", {"angle": 60.0, "angle_ccw": 60.0, "expand": False}),
        ("crop", {"box": [0, 0, 10, 10]}),
        ("crop", {"box": [5, 5, 15, 15]}),
    ]
    assert [op.line for op in result.ops] == [3, 3, 3, 4, 4]


# ---------------------------------------------------------------- only what ran, only what the model did


def test_ops_that_raise_or_never_run_are_absent_except_refused_crops(sandbox: Sandbox) -> None:
    with sandbox.session(images=[gradient_image()]) as session:
        bad_crop = session.run("a = image.rotate(10)\nb = image.crop((0, 0, 10))\nc = image.rotate(20)")
        reversed_box = session.run("image.crop((30, 0, 10, 20))")
        empty_slice = session.run("a = np.asarray(image)[30:10, :]")
        bad_size = session.run("arr = np.array(image)\nd = cv2.resize(arr, (0, 0))")
        bad_kernel = session.run("e = cv2.GaussianBlur(arr, (4, 4), 0)")
        bad_axes = session.run("f = np.rot90(arr, axes=(0, 0))")
        bad_code = session.run("g = cv2.rotate(arr, 99)")
        caught = session.run(
            "try:\n    image.crop((0, 0, 10))\nexcept Exception:\n    pass\n"
            "if False:\n    image.rotate(45)\n"
            "def unused():\n    return image.rotate(45)\n"
        )
    # A crop the library refused is still an attempt the faithfulness penalties must see: recorded
    # with its error and no result. Other ops that raised did nothing and are not recorded.
    assert bad_crop.status == "error" and calls(bad_crop)[0] == (
        "rotate",
        {"angle": 10.0, "angle_ccw": 10.0, "expand": False},
    )
    (failed_crop,) = bad_crop.ops[1:]
    assert failed_crop.name == "crop" and failed_crop.result is None and failed_crop.args["error"]
    (refused,) = reversed_box.ops
    assert refused.args["box"] == [30, 0, 10, 20] and "ValueError" in refused.args["error"] and refused.result is None
    (empty,) = empty_slice.ops
    assert empty.name == "crop" and empty.args["box"][1:4:2] == [30, 10] and empty.result is None
    for failed in (bad_size, bad_kernel, bad_axes):
        assert failed.status == "error" and failed.ops == [], failed.error
    # OpenCV may not even raise for an unknown rotate code; it rotated nothing either way
    assert bad_code.ops == [] and not [w for w in bad_code.warnings if INCOMPLETE in w]
    assert caught.ok and [op.name for op in caught.ops] == ["crop"] and caught.ops[0].result is None


def test_library_helpers_and_display_do_not_leak_internal_ops(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "a = ImageOps.fit(image, (30, 30), centering=(0.2, 0.8))\n"
            "b = ImageOps.pad(image, (90, 90))\n"
            "c = image.rotate(90, expand=True)\n"
            "d = image.convert('1')\n"
            "e = image.resize((300, 200))\n"
            "display(d, e)\n"
            "print(np.array(image))\n"
        ),
    )
    assert [op.name for op in result.ops] == ["fit", "pad", "rotate", "threshold", "resize"]


def test_matplotlib_internals_record_nothing(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(2, 2), dpi=50)\n"
            "ax.imshow(np.array(image)[::-1])\n"
            "ax.imshow(np.array(image.convert('L')), cmap='gray')\n"
            "display(fig)\n"
            "plt.close(fig)\n"
        ),
    )
    assert calls(result) == [("flip", {"axis": "vertical"}), ("grayscale", {"mode": "L"})]


def test_trace_is_capped_at_what_a_result_may_carry(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        ("arr = np.array(image)\nfor i in range(10_050):\n    patch = arr[0:8, 0:8]\ndisplay(image.rotate(5))\n"),
        complete=False,
    )
    assert len(result.ops) == MAX_OPS_PER_RUN and result.session_alive
    assert {op.name for op in result.ops} == {"crop"}
    assert any("limit of 10000 ops" in w for w in result.warnings), result.warnings


# ---------------------------------------------------------------- tracing never changes behaviour


def test_traced_arrays_behave_like_ndarrays(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "import pickle\n"
            "arr = np.array(image)\n"
            "print(isinstance(arr, np.ndarray), type(arr).__name__, type(arr).__module__)\n"
            "print(repr(arr[:1, :1, :1]))\n"
            "print(type(pickle.loads(pickle.dumps(arr))).__name__)\n"
            "print(arr.T.shape, arr.dtype, arr.mean() > 0)\n"
            "print(type(cv2.flip(arr, 1)).__name__, np.asarray(image).shape)\n"
        ),
    )
    assert result.stdout.splitlines() == [
        "True ndarray numpy",
        "array([[[0]]], dtype=uint8)",
        "ndarray",
        "(3, 64, 48) uint8 True",
        "ndarray (48, 64, 3)",
    ]


def test_unusual_arguments_are_recorded_as_plain_values(sandbox: Sandbox) -> None:
    result = run_code(
        sandbox,
        (
            "arr = np.array(image)\n"
            "a = image.rotate(np.float64(30.0), expand=np.bool_(True))\n"
            "b = image.transpose(method=Image.Transpose.ROTATE_270)\n"
            "c = image.crop(tuple(np.array([1, 2, 11, 12])))\n"
            "d = cv2.flip(src=arr, flipCode=np.int32(-1))\n"
            "e = image.resize(size=(np.int64(16), np.int64(12)), resample=Image.Resampling.NEAREST)\n"
            "f = ImageOps.posterize(image, bits=np.uint8(2))\n"
            "g = cv2.GaussianBlur(src=arr, ksize=(3, 3), sigmaX=0)\n"
        ),
    )
    assert calls(result) == [
        ("rotate", {"angle": 30.0, "angle_ccw": 30.0, "expand": True}),
        ("rotate", {"angle": 270.0, "angle_ccw": 270.0, "expand": True}),
        ("crop", {"box": [1, 2, 11, 12]}),
        ("flip", {"axis": "both"}),
        ("resize", {"size": [16, 12], "from_size": [64, 48]}),
        ("posterize", {"bits": 2}),
        ("filter", {"kind": "gaussian_blur", "ksize": [3, 3], "sigma": 0}),
    ]
    for op in result.ops:
        for value in op.args.values():
            assert type(value) in (bool, int, float, str, list), (op.name, value)


def test_same_pixels_finds_a_change_wherever_it_is() -> None:
    base = gradient_image(300, 200).convert("RGBA")
    one_pixel = base.copy()
    one_pixel.putpixel((151, 99), (0, 0, 0, 255))  # off the probe grid, alpha unchanged
    assert same_pixels(base, base.copy()) and not same_pixels(base, one_pixel)
    assert not same_pixels(base, base.convert("RGB")) and not same_pixels(base, base.resize((300, 199)))
    array = np.asarray(base.convert("RGB")).copy()
    changed = array.copy()
    changed[101, 149, 2] ^= 1
    assert same_pixels(array, array.copy()) and not same_pixels(array, changed)
    assert not same_pixels(array, array[:, :, 0]) and not same_pixels(base, array)
