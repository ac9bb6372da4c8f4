"""Image lineage through the real agent loop and sandbox: every traced geometry maps to the pixels shown.

The maps are checked independently of the host's replay: the input is warped through the stored
matrix at full resolution and compared with the image the model got back.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from codevision.agent import Limits
from codevision.lineage import LineageTracker
from codevision.lineage.maps import GEOMETRIC_OPS, PIXEL_OPS, affine
from codevision.sandbox import ImageOp, ImageRef, OutputImageInfo, RunResult, Sandbox
from codevision.sandbox.results import ImageBase
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Lineage, Trajectory
from tests.conftest import episode, final, tool_call, zoom_call

W, H = 160, 120


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=10.0, memory_mb=1024) as sb:
        yield sb


def run(sandbox: Sandbox, *replies: str) -> Trajectory:
    task = Task.from_images([scene_image(W, H, seed=3)], id="t", question="q", answers=["a"])
    return episode(sandbox, task, *replies, final("a"))


def shown(sandbox: Sandbox, code: str) -> tuple[Trajectory, Lineage]:
    trajectory = run(sandbox, tool_call(code))
    record = trajectory.images[-1]
    assert record.origin == "tool", trajectory.turns[0].outcomes[0].error
    assert record.lineage is not None
    return trajectory, record.lineage


def warped(trajectory: Trajectory, lineage: Lineage) -> tuple[np.ndarray, np.ndarray]:
    """The input warped through the lineage's matrix at the shown image's size, and where it is defined."""
    assert lineage.matrix is not None and lineage.input is not None
    source = trajectory.image(lineage.input).convert("RGB")
    size = trajectory.images[-1].size
    pixels = source.transform(size, Image.Transform.AFFINE, lineage.matrix, Image.Resampling.BILINEAR)
    inside = Image.new("L", source.size, 255).transform(size, Image.Transform.AFFINE, lineage.matrix)
    return np.asarray(pixels, dtype=float), np.asarray(inside) == 255


GEOMETRY = {
    "pil-rotate-90": "display(image.rotate(90, expand=True))",
    "pil-rotate-270": "display(image.rotate(-90, expand=True))",
    "pil-rotate-180": "display(image.rotate(180))",
    "pil-rotate-37-expand": "display(image.rotate(37, expand=True))",
    "pil-rotate-20-centre-translate": "display(image.rotate(20, center=(30, 40), translate=(5, -3)))",
    "pil-transpose": "display(image.transpose(Image.Transpose.TRANSPOSE))",
    "pil-transverse": "display(image.transpose(Image.Transpose.TRANSVERSE))",
    "pil-mirror-flip": "display(ImageOps.flip(ImageOps.mirror(image)))",
    "pil-crop": "display(image.crop((30, 20, 110, 90)))",
    "pil-resize-box": "display(image.resize((50, 40), box=(20, 10, 120, 90)))",
    "pil-reduce": "display(image.reduce(2))",
    "pil-thumbnail": "t = image.copy()\nt.thumbnail((64, 64))\ndisplay(t)",
    "pil-fit": "display(ImageOps.fit(image, (60, 60)))",
    "pil-pad": "display(ImageOps.pad(image, (100, 100)))",
    "pil-contain": "display(ImageOps.contain(image, (80, 80)))",
    "pil-expand": "display(ImageOps.expand(image, (10, 5)))",
    "pil-border-crop": "display(ImageOps.crop(image, 15))",
    "pil-transform-affine": "display(image.transform((100, 80), Image.Transform.AFFINE, (1.2, 0.1, 5, -0.1, 1.1, 8)))",
    "pil-transform-extent": "display(image.transform((60, 40), Image.Transform.EXTENT, (20, 30, 140, 110)))",
    "np-rot90": "display(np.rot90(np.asarray(image), 3))",
    "np-flip-slices": "display(np.asarray(image)[::-1, 20:140:2])",
    "np-transpose": "display(np.asarray(image).transpose(1, 0, 2))",
    "np-pad": "display(np.pad(np.asarray(image), ((4, 6), (8, 2), (0, 0))))",
    "cv2-rotate": "display(cv2.rotate(np.asarray(image), cv2.ROTATE_90_CLOCKWISE))",
    "cv2-flip": "display(cv2.flip(np.asarray(image), -1))",
    "cv2-resize": "display(cv2.resize(np.asarray(image), (90, 50)))",
    "cv2-warp-affine": (
        "M = cv2.getRotationMatrix2D((80, 60), 25, 0.8)\ndisplay(cv2.warpAffine(np.asarray(image), M, (160, 120)))"
    ),
    "cv2-warp-inverse": (
        "M = cv2.getRotationMatrix2D((80, 60), 25, 1.0)\n"
        "display(cv2.warpAffine(np.asarray(image), M, (160, 120), flags=cv2.WARP_INVERSE_MAP))"
    ),
    "cv2-border": "display(cv2.copyMakeBorder(np.asarray(image), 3, 5, 7, 9, cv2.BORDER_REFLECT))",
    "cv2-subpix": "display(cv2.getRectSubPix(np.asarray(image), (40, 30), (70.0, 50.0)))",
    "cv2-pyrdown": "display(cv2.pyrDown(np.asarray(image)))",
    "chain": (
        "a = np.asarray(image.rotate(90, expand=True))\n"
        "b = cv2.resize(a[10:150, 5:100], (60, 90))\n"
        "display(Image.fromarray(b).transpose(Image.Transpose.FLIP_LEFT_RIGHT))"
    ),
}


@pytest.mark.parametrize("code", GEOMETRY.values(), ids=GEOMETRY.keys())
def test_every_traced_geometry_maps_to_the_pixels_shown(sandbox: Sandbox, code: str) -> None:
    trajectory, lineage = shown(sandbox, code)
    assert lineage.status == "verified", lineage.reason
    expected, inside = warped(trajectory, lineage)
    actual = np.asarray(trajectory.image(len(trajectory.images) - 1).convert("RGB"), dtype=float)
    # Away from the edges (where resampling mixes in the border), the warped input is the shown image.
    core = inside & np.roll(inside, 2, 0) & np.roll(inside, -2, 0) & np.roll(inside, 2, 1) & np.roll(inside, -2, 1)
    assert core.sum() > 0.3 * core.size
    assert np.abs(expected - actual)[core].mean() < 12


def test_box_and_orientation_of_a_crop_of_a_turned_image(sandbox: Sandbox) -> None:
    _, lineage = shown(sandbox, "r = image.rotate(90, expand=True)\ndisplay(r.crop((20, 40, 60, 100)))")
    # A quarter turn ccw takes input (x, y) to (y, 160 - x): the crop is input x 60..120, y 20..60.
    assert lineage.box == pytest.approx((60.0, 20.0, 120.0, 60.0))
    assert (lineage.angle, lineage.mirrored) == (90.0, False)
    assert len(lineage.chain) == 2 and lineage.input == 0


def test_orientations_of_mirrors_and_transposes(sandbox: Sandbox) -> None:
    cases = {
        "display(ImageOps.mirror(image))": (0.0, True),
        "display(ImageOps.flip(image))": (180.0, True),
        "display(image.transpose(Image.Transpose.TRANSPOSE))": (90.0, True),
        "display(np.rot90(np.asarray(image)))": (90.0, False),
    }
    for code, orientation in cases.items():
        _, lineage = shown(sandbox, code)
        assert (lineage.angle, lineage.mirrored) == orientation, code


def test_a_rebuilt_image_and_a_restarted_session_keep_their_lineage(sandbox: Sandbox) -> None:
    trajectory = run(
        sandbox,
        tool_call("display(image.rotate(90, expand=True))"),
        tool_call("display(image.crop((20, 40, 60, 100)))", 1),  # a crop of the turned image, rebuilt
        tool_call("import os\nos._exit(3)"),
        tool_call("display(images[1].crop((20, 40, 60, 100)))"),  # the new session holds every image
    )
    rebuilt, restarted = trajectory.images[2].lineage, trajectory.images[3].lineage
    assert rebuilt is not None and restarted is not None
    assert rebuilt.status == restarted.status == "verified"
    assert rebuilt.box == pytest.approx((60.0, 20.0, 120.0, 60.0))
    assert restarted.box == pytest.approx((60.0, 20.0, 120.0, 60.0))
    assert rebuilt.angle == restarted.angle == 90.0


def test_downscaled_returns_record_their_scale() -> None:
    with Sandbox(workers=1, max_image_pixels=W * H // 4) as small:
        task = Task.from_images([scene_image(W, H, seed=3)], id="t", question="q", answers=["a"])
        trajectory = episode(
            small, task, tool_call("display(image)"), tool_call("display(image.crop((10, 10, 40, 30)))", 1), final("a")
        )
    downscaled, crop = trajectory.images[1].lineage, trajectory.images[2].lineage
    assert downscaled is not None and crop is not None and crop.status == "verified"
    assert downscaled.box == (0.0, 0.0, W, H) and trajectory.images[1].size == (W // 2, H // 2)
    assert crop.box == pytest.approx((20.0, 20.0, 80.0, 60.0))


def test_forgeries_and_the_unknown_are_not_believed(sandbox: Sandbox) -> None:
    forged = (
        "from codevision.sandbox.tracing import TRACER\n"
        "turned = image.rotate(180)\n"
        "fake = image.copy()\n"
        "TRACER._remember(fake, TRACER.ref(turned)['id'], 0)\n"
        "display(fake)"
    )
    assert shown(sandbox, forged)[1].status == "mismatch"
    misplaced = "from codevision.sandbox.tracing import TRACER\nc = image.crop((0, 0, 40, 30))\n"
    misplaced += "fake = image.crop((100, 80, 140, 110))\nTRACER._remember(fake, TRACER.ref(c)['id'], 0)\ndisplay(fake)"
    assert shown(sandbox, misplaced)[1].status == "mismatch"
    resized = "from codevision.sandbox.tracing import TRACER\nturned = image.rotate(90, expand=True)\n"
    resized += "fake = image.copy()\nTRACER._remember(fake, TRACER.ref(turned)['id'], 0)\ndisplay(fake)"
    lineage = shown(sandbox, resized)[1]
    assert lineage.status == "mismatch" and "made a (120, 160) image" in (lineage.reason or "")
    drawn = "canvas = Image.new('RGB', (50, 50), 'white')\ndisplay(canvas)"
    assert shown(sandbox, drawn)[1].status == "untraced"
    warp = "display(cv2.warpPerspective(np.asarray(image), np.eye(3), (160, 120)))"
    lineage = shown(sandbox, warp)[1]
    assert lineage.status == "unmappable" and "perspective" in (lineage.reason or "")


PIXEL_CHAINS = {
    "contrast": "display(ImageEnhance.Contrast(image).enhance(1.8))",
    "invert": "display(ImageOps.invert(image))",
    "threshold": "g = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)\n"
    "display(cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1])",
    "canny": "display(cv2.Canny(np.asarray(image.convert('L')), 50, 150))",
    "find-edges": "display(image.filter(ImageFilter.FIND_EDGES))",
    "solarize": "display(ImageOps.solarize(image, 100))",
    "bgr": "display(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))",
    "clahe": "g = np.asarray(image.convert('L'))\ndisplay(cv2.createCLAHE(2.0, (8, 8)).apply(g))",
    "untraced-arithmetic": (
        "a = np.asarray(image).astype(float)\ndisplay(np.clip((a - 40) * 1.4, 0, 255).astype(np.uint8))"
    ),
}


@pytest.mark.parametrize("code", PIXEL_CHAINS.values(), ids=PIXEL_CHAINS.keys())
def test_pixel_ops_keep_a_verified_lineage(sandbox: Sandbox, code: str) -> None:
    lineage = shown(sandbox, code)[1]
    assert lineage.status == "verified", lineage.reason
    assert lineage.box == (0.0, 0.0, W, H) and lineage.angle == 0.0


def test_the_crop_tool_composes_with_the_image_it_zooms_into() -> None:
    task = Task.from_images([scene_image(W, H, seed=3)], id="t", question="q", answers=["a"])
    exact = Limits(image_factor=8, image_min_pixels=16)
    trajectory = episode(
        None,
        task,
        zoom_call([40, 20, 120, 100]),
        zoom_call([10, 10, 50, 40], 1),
        final("a"),
        protocol="crop",
        limits=exact,
    )
    first, second = trajectory.images[1].lineage, trajectory.images[2].lineage
    assert first is not None and second is not None and first.status == second.status == "host"
    assert first.box == (40.0, 20.0, 120.0, 100.0) and second.box == (50.0, 30.0, 90.0, 60.0)
    assert np.allclose(affine(*second.matrix)[:2, 2], [50.0, 30.0])  # type: ignore[misc]


# ------------------------------------------------------------------------------------ hostile traces
refs = st.builds(
    ImageRef,
    id=st.one_of(st.none(), st.integers(-2, 6)),
    size=st.one_of(st.none(), st.tuples(st.integers(-5, 300), st.integers(-5, 300))),
    origin=st.one_of(st.none(), st.integers(-1, 3)),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=7),
    max_leaves=20,
)
hostile_ops = st.builds(
    ImageOp,
    name=st.sampled_from(
        [*sorted(GEOMETRIC_OPS), *sorted(PIXEL_OPS), "pad", "perspective", "exif_transpose", "nonsense"]
    ),
    args=st.dictionaries(
        st.sampled_from(
            [
                "box",
                "angle",
                "angle_ccw",
                "expand",
                "center",
                "translate",
                "matrix",
                "inverse",
                "axis",
                "kind",
                "size",
                "from_size",
                "border",
                "method",
                "data",
                "factor",
                "error",
            ]
        ),
        values,
        max_size=6,
    ),
    operand=st.one_of(st.none(), refs),
    result=st.one_of(st.none(), refs),
)
infos = st.builds(
    OutputImageInfo,
    mode=st.just("RGB"),
    size=st.just((24, 16)),
    source_size=st.one_of(st.none(), st.tuples(st.integers(-3, 5000), st.integers(-3, 5000))),
    id=st.one_of(st.none(), st.integers(-2, 6)),
    trace_at=st.one_of(st.none(), st.integers(-5, 50)),
)
bases = st.lists(
    st.builds(ImageBase, id=st.one_of(st.none(), st.integers(-2, 6)), index=st.integers(-3, 5)), max_size=2
)


FUZZ_INPUT, FUZZ_SHOWN = scene_image(40, 30), scene_image(24, 16, seed=1)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(hostile_ops, max_size=12),
    shown=st.lists(infos, min_size=1, max_size=3),
    claimed=bases,
    problems=st.lists(st.text(max_size=10), max_size=1),
    linked=st.booleans(),
)
def test_any_trace_gives_every_shown_image_a_lineage_and_never_raises(
    ops: list[ImageOp], shown: list[OutputImageInfo], claimed: list[ImageBase], problems: list[str], linked: bool
) -> None:
    if linked:  # one chain from input 0 through every op to the first shown image, so every op is followed
        for position, op in enumerate(ops):
            op.operand = ImageRef(id=position, size=op.operand.size if op.operand else None)
            op.result = ImageRef(id=position + 1, size=op.result.size if op.result else None)
        shown[0].id, shown[0].trace_at = len(ops), None
    trajectory = Trajectory(task_id="fuzz", protocol="codevision")
    trajectory.add_image(FUZZ_INPUT, "input")
    tracker = LineageTracker(trajectory)
    tracker.start_session([0])
    result = RunResult(status="ok", ops=ops, image_info=shown, bases=claimed, trace_problems=problems)
    indices = [trajectory.add_image(FUZZ_SHOWN, "tool", 0) for _ in shown]
    tracker.record_run(result, indices)
    for index in indices:
        lineage = trajectory.images[index].lineage
        assert lineage is not None and lineage.status != "input"
        Lineage.model_validate_json(lineage.model_dump_json())  # storable as JSON
