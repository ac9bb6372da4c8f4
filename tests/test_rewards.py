"""Rewards on trajectories played through the real agent loop and sandbox, including every known way to game them.

Each policy here is scripted: an honest solver, and adversaries that sweep, discard, forge or pad.
A sound reward keeps the ordering: the honest correct solution beats every hack that gives the
same answer, and a sweep, a discard or a no-op never beats answering without tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from codevision.agent import Limits
from codevision.chat.budget import smart_resize
from codevision.rewards import (
    CodeVisionConfig,
    FormatConfig,
    RewardSpec,
    codevision_reward,
    faithfulness_reward,
    format_reward,
    parse_grade,
)
from codevision.sandbox import Sandbox
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Trajectory, Turn
from tests.conftest import episode, final, tool_call, zoom_call

W, H = 320, 240
# The target on the input; after a quarter turn counter-clockwise (240x320) it sits at x 40..90, y 60..120.
TARGET = (200.0, 40.0, 260.0, 90.0)
TURNED_TARGET = (40, 60, 90, 120)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=10.0, memory_mb=1024) as sb:
        yield sb


def task(expected: list[str], bbox: tuple[float, float, float, float] | None = TARGET, **fields: object) -> Task:
    defaults: dict[str, object] = {
        "id": "t",
        "question": "What digit is on the sign?",
        "answers": ["7"],
        "source": "verl",
    }
    return Task.from_images(
        [scene_image(W, H)], **{**defaults, **fields}, expected_ops=expected, bboxes=[bbox] if bbox else []
    )


def play(sandbox: Sandbox, t: Task, *codes: str, answer: str = "7", **options: object) -> Trajectory:
    return episode(sandbox, t, *(tool_call(code) for code in codes), final(answer), **options)  # type: ignore[arg-type]


TURN = "r = image.rotate(90, expand=True)\ndisplay(r)"
ZOOM = f"display(r.crop({TURNED_TARGET}))"
CROP_TASK = ["rotate_90", "crop"]


def total(sandbox: Sandbox, t: Task, *codes: str, answer: str = "7") -> float:
    return codevision_reward(t, play(sandbox, t, *codes, answer=answer)).total


# ------------------------------------------------------------------------------------ the honest solver
def test_honest_rotate_then_crop_gets_every_bonus(sandbox: Sandbox) -> None:
    r = codevision_reward(task(CROP_TASK), play(sandbox, task(CROP_TASK), TURN, ZOOM))
    assert r.breakdown == pytest.approx(
        {
            "accuracy": 1.0,
            "format": 0.1,
            "mandatory": 1.0,
            "necessity": 0.0,
            "exact": 0.1,
            "emergent": 0.0,
            "extra_calls": 0.0,
            "extra_images": 0.0,
            "spurious": 0.0,
        }
    )
    assert r.total == pytest.approx(2.2) and r.details["unverified"] == [] and r.details["crop_credit"] == 1.0


def test_minus_270_and_two_quarter_turns_are_the_same_rotation(sandbox: Sandbox) -> None:
    half = task(["rotate_180"], bbox=None)
    once = codevision_reward(half, play(sandbox, half, "display(image.rotate(-180))"))
    twice = codevision_reward(
        half, play(sandbox, half, "display(image.rotate(90, expand=True).rotate(90, expand=True))")
    )
    assert once.breakdown["mandatory"] == twice.breakdown["mandatory"] == 1.0
    assert once.breakdown["exact"] == twice.breakdown["exact"] == 0.1  # the shown image is turned a half turn
    assert twice.breakdown["spurious"] == 0.0


# ------------------------------------------------------------------------------------ the hacks
@pytest.fixture(scope="module")
def baselines(sandbox: Sandbox) -> dict[str, float]:
    """What answering without tools scores, right and wrong, on the crop task."""
    t = task(CROP_TASK)
    return {"right": total(sandbox, t), "wrong": total(sandbox, t, answer="8"), "honest": total(sandbox, t, TURN, ZOOM)}


SWEEPS = {
    # ~2,700 crops, none of them shown.
    "crop sweep": "r = image.rotate(90, expand=True)\n"
    "for y in range(0, 270, 6):\n    for x in range(0, 180, 3):\n        r.crop((x, y, x + 50, y + 50))",
    # Every orientation reached along one chain; nothing turned is shown.
    "orientation sweep": "x = image\nfor _ in range(4):\n    x = x.rotate(90, expand=True)\ndisplay(image)",
    # The right ops, run and discarded; the original is shown.
    "do but don't show": f"r = image.rotate(90, expand=True)\nc = r.crop({TURNED_TARGET})\ndisplay(image)",
    # A contrast "enhancement" by a factor of 1 on a discarded copy.
    "no-op enhance": "ImageEnhance.Contrast(image).enhance(1.0)\ndisplay(image)",
}


@pytest.mark.slow
@pytest.mark.parametrize("code", SWEEPS.values(), ids=SWEEPS.keys())
def test_sweeps_discards_and_noops_never_beat_answering_without_tools(
    sandbox: Sandbox, baselines: dict[str, float], code: str
) -> None:
    t = task(CROP_TASK)
    right, wrong = total(sandbox, t, code), total(sandbox, t, code, answer="8")
    assert right <= baselines["right"] < baselines["honest"]
    assert wrong <= baselines["wrong"]


def test_the_sweep_reports_what_it_did_and_pays_nothing(sandbox: Sandbox) -> None:
    t = task(CROP_TASK)
    r = codevision_reward(t, play(sandbox, t, SWEEPS["orientation sweep"]))
    assert r.breakdown["mandatory"] == 0.0 and r.breakdown["accuracy"] == 0.0  # gated: no crop was shown
    assert r.details["spurious_ops"] == ["rotate_90"] * 4 and r.breakdown["spurious"] == pytest.approx(-2.0)


TURN_BACK = "display(image.rotate(270, expand=True))"
FIGURE = "import matplotlib.pyplot as plt\nplt.imshow(image.rotate(270, expand=True))\nplt.show()"


@pytest.mark.slow
def test_hedging_between_orientations_never_pays(sandbox: Sandbox) -> None:
    # One call shows the right and a wrong orientation; the order is chosen before either is seen,
    # so a hedge is worth the mean of its two orders.
    t = task(["rotate_90"], bbox=None)
    no_tools, honest = total(sandbox, t), total(sandbox, t, TURN)
    for wrong in (TURN_BACK, FIGURE):
        right_last, wrong_last = total(sandbox, t, f"{wrong}\n{TURN}"), total(sandbox, t, f"{TURN}\n{wrong}")
        assert (right_last + wrong_last) / 2 <= no_tools < right_last < honest, wrong
    r = codevision_reward(t, play(sandbox, t, f"{TURN}\n{FIGURE}"))
    assert r.details["orientation_view"] == r.details["unverified"][0]["image"] and r.details["credited"] == []
    # Each expected op on an image of its own: neither shows the expected view.
    both = task(["flip_h", "rotate_270"], bbox=None)
    apart = "display(ImageOps.mirror(image))\ndisplay(image.rotate(270, expand=True))"
    separately = codevision_reward(both, play(sandbox, both, apart))
    assert separately.details["credited"] == ["rotate_270"] and separately.breakdown["exact"] == 0.0
    assert (
        separately.total
        <= total(sandbox, both)
        < total(sandbox, both, "display(ImageOps.mirror(image).rotate(270, expand=True))")
    )


def test_a_correction_in_a_later_call_is_credited_less_the_wrong_attempt(sandbox: Sandbox) -> None:
    t = task(["rotate_90"], bbox=None)
    r = codevision_reward(t, play(sandbox, t, TURN_BACK, TURN))
    assert r.breakdown["mandatory"] == 1.0 and r.details["spurious_ops"] == ["rotate_270"]
    assert r.breakdown["exact"] == 0.0 and total(sandbox, t) < r.total < total(sandbox, t, TURN)


def test_exact_needs_the_expected_crop_to_hit_its_target(sandbox: Sandbox) -> None:
    t = task(["crop"])
    quadrants = "for x in (0, 160):\n    for y in (0, 120):\n        display(image.crop((x, y, x + 160, y + 120)))"
    r = codevision_reward(t, play(sandbox, t, quadrants))
    assert r.details["crop_credit"] == 0.0 and r.breakdown["exact"] == 0.0
    assert r.total <= total(sandbox, t)


def test_showing_a_grid_of_crops_costs_more_than_it_earns(sandbox: Sandbox, baselines: dict[str, float]) -> None:
    grid = "r = image.rotate(90, expand=True)\nfor y in range(0, 320, 80):\n    for x in range(0, 240, 60):\n"
    grid += "        display(r.crop((x, y, x + 60, y + 80)))"
    t = task(CROP_TASK)
    r = codevision_reward(t, play(sandbox, t, grid, grid))
    assert r.details["shown"] == 32 and r.breakdown["extra_images"] == pytest.approx(-0.5 * 28)
    assert r.total < baselines["honest"]
    # The crop credit is the last shown crop's IoU, never the best of many.
    assert r.details["crop_credit"] < 0.3


def test_emergent_needs_an_effective_op_that_reached_the_model(sandbox: Sandbox) -> None:
    t = task(["rotate_90"], bbox=None)
    noop = codevision_reward(
        t, play(sandbox, t, "display(ImageEnhance.Contrast(image.rotate(90, expand=True)).enhance(1.02))")
    )
    hidden = codevision_reward(t, play(sandbox, t, "ImageEnhance.Contrast(image).enhance(2.0)\n" + TURN))
    real = codevision_reward(
        t, play(sandbox, t, "display(ImageEnhance.Contrast(image.rotate(90, expand=True)).enhance(2.0))")
    )
    assert noop.breakdown["emergent"] == hidden.breakdown["emergent"] == 0.0
    assert real.breakdown["emergent"] == 0.2 and real.details["emergent_ops"] == ["enhance"]


NOOPS = {
    # The scene spans 0-255 over its channels together, so a min-max normalisation keeps every pixel.
    "normalize": "display(cv2.normalize(np.asarray(r), None, 0, 255, cv2.NORM_MINMAX))",
    "blur radius 0": "display(r.filter(ImageFilter.GaussianBlur(0)))",
    "identity point": "display(r.point(lambda v: v))",
    "box blur radius 0": "display(r.filter(ImageFilter.BoxBlur(0)))",
}


def test_an_expected_pixel_op_is_credited_only_when_it_changed_the_image(sandbox: Sandbox) -> None:
    t = task(["rotate_90", "enhance"], bbox=None)
    for factor, credited in ((1.0, ["rotate_90"]), (1.6, ["enhance", "rotate_90"])):
        code = f"display(ImageEnhance.Contrast(image.rotate(90, expand=True)).enhance({factor}))"
        assert codevision_reward(t, play(sandbox, t, code)).details["credited"] == credited, factor


@pytest.mark.parametrize("code", NOOPS.values(), ids=NOOPS.keys())
def test_an_op_that_changed_no_pixel_earns_no_emergent_bonus(sandbox: Sandbox, code: str) -> None:
    t = task(["rotate_90"], bbox=None)
    trajectory = play(sandbox, t, f"r = image.rotate(90, expand=True)\n{code}")
    r = codevision_reward(t, trajectory)
    unchanged = [op.name for op in trajectory.turns[0].outcomes[0].ops if op.unchanged]
    assert unchanged and r.breakdown["mandatory"] == 1.0 and r.details["unverified"] == []
    assert r.details["emergent_ops"] == [] and r.breakdown["emergent"] == 0.0


def test_an_expected_crop_without_a_box_needs_a_real_zoom_that_was_shown(sandbox: Sandbox) -> None:
    t = task(["crop"], bbox=None)
    zoom = codevision_reward(t, play(sandbox, t, "display(image.crop((0, 0, 160, 120)))"))
    tiny = codevision_reward(t, play(sandbox, t, "display(image.crop((0, 0, 8, 8)))"))
    wide = codevision_reward(t, play(sandbox, t, "display(image.crop((0, 0, 300, 230)))"))
    unseen = codevision_reward(t, play(sandbox, t, "image.crop((0, 0, 160, 120))\ndisplay(image)"))
    assert zoom.details["crop_credit"] == tiny.details["crop_credit"] == 1.0
    assert wide.details["crop_credit"] == unseen.details["crop_credit"] == 0.0


def test_a_forged_trace_earns_nothing_and_is_counted(sandbox: Sandbox) -> None:
    forge = (
        "from codevision.sandbox.tracing import TRACER\n"
        "turned = image.rotate(90, expand=True)\n"
        "fake = image.resize((240, 320))\n"  # the right size, the wrong picture
        "TRACER._remember(fake, TRACER.ref(turned)['id'], 0)\n"
        "display(fake)"
    )
    t = task(["rotate_90"], bbox=None)
    r = codevision_reward(t, play(sandbox, t, forge))
    assert r.breakdown["mandatory"] == 0.0 and r.details["trace_mismatch"] == 1
    assert r.details["unverified"][0]["status"] == "mismatch"


def test_images_without_a_known_lineage_earn_nothing_and_are_reported(sandbox: Sandbox) -> None:
    t = task(["rotate_90"], bbox=None)
    figure = "import matplotlib.pyplot as plt\nplt.imshow(image.rotate(90, expand=True))\nplt.show()"
    noted = "from codevision.sandbox.tracing import TRACER\nTRACER.note('lost track')\n" + TURN
    for code, status in (
        (figure, "untraced"),
        (noted, "incomplete"),
        (
            "display(cv2.warpPerspective(np.asarray(image.rotate(90, expand=True)), np.eye(3), (240, 320)))",
            "unmappable",
        ),
    ):
        r = codevision_reward(t, play(sandbox, t, code))
        assert r.breakdown["mandatory"] == 0.0, code
        assert [problem["status"] for problem in r.details["unverified"]] == [status], r.details["unverified"]


@pytest.mark.slow
def test_a_truncated_trace_earns_nothing(sandbox: Sandbox) -> None:
    flood = "for _ in range(10_001):\n    image.crop((0, 0, 2, 2))\n" + TURN
    t = task(["rotate_90"], bbox=None)
    r = codevision_reward(t, play(sandbox, t, flood))
    assert r.breakdown["mandatory"] == 0.0 and r.details["unverified"][0]["status"] == "incomplete"


# ------------------------------------------------------------------------------------ the bugs fixed
PIXEL_OPS = {
    "posterize": "p = ImageOps.posterize(image, 3)",
    "point": "p = image.point(lambda v: 255 - v)",
    "rgb2bgr": "p = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)",
    "edges": "p = cv2.Canny(np.asarray(image.convert('L')), 40, 120)",
    "solarize": "p = ImageOps.solarize(image, 128)",
    "morphology": "p = cv2.morphologyEx(np.asarray(image), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))",
    "denoise": "p = cv2.fastNlMeansDenoisingColored(np.asarray(image))",
    "normalize": "p = cv2.normalize(np.asarray(image), None, 0, 255, cv2.NORM_MINMAX)",
}


@pytest.mark.slow
@pytest.mark.parametrize("code", PIXEL_OPS.values(), ids=PIXEL_OPS.keys())
def test_a_crop_after_a_pixel_op_maps_back(sandbox: Sandbox, code: str) -> None:
    t = task(["crop"])
    x0, y0, x1, y1 = (int(v) for v in TARGET)
    crop = f"p = np.asarray(p)[{y0}:{y1}, {x0}:{x1}]" if "np" in code else f"p = p.crop(({x0}, {y0}, {x1}, {y1}))"
    r = codevision_reward(t, play(sandbox, t, f"{code}\n{crop}\ndisplay(p)"))
    assert r.details["unverified"] == [] and r.details["crop_credit"] == pytest.approx(1.0)
    assert r.breakdown["accuracy"] == 1.0 and not r.details["accuracy_gated"]


def test_both_orders_of_an_equivalent_inverse_score_the_same_and_the_wrong_one_less(sandbox: Sandbox) -> None:
    # Applied: rotate_90 then flip_horizontal (as the verl loader reads ["rotate_90", "flip_horizontal"]).
    t = task(["flip_h", "rotate_270"], bbox=None)
    mirror_then_turn = total(sandbox, t, "display(ImageOps.mirror(image).rotate(270, expand=True))")
    turn_then_mirror = total(sandbox, t, "display(ImageOps.mirror(image.rotate(90, expand=True)))")
    upside_down = total(sandbox, t, "display(ImageOps.mirror(image).rotate(90, expand=True))")
    assert mirror_then_turn == pytest.approx(turn_then_mirror) == pytest.approx(2.2)
    assert upside_down < mirror_then_turn


def test_exact_needs_an_expected_core_op(sandbox: Sandbox) -> None:
    t = task([], bbox=None)
    assert codevision_reward(t, play(sandbox, t)).breakdown["exact"] == 0.0
    assert codevision_reward(t, play(sandbox, t, "display(image)")).breakdown["exact"] == 0.0


def test_codevision_rows_are_scored_by_the_codevision_rule(sandbox: Sandbox) -> None:
    # As the verl loader builds an MVToolBench row: the source is the dataset, the rule is CodeVision's.
    t = task([], bbox=None, source="hiertext", metadata={"scoring": "codevision", "data_source": "hiertext"})
    r = codevision_reward(t, play(sandbox, t, answer="The answer is 7"))
    assert r.breakdown["accuracy"] == 1.0 and r.details["outcome"]["rule"] == "codevision-rule"


def test_a_crop_of_a_downscaled_returned_image_maps_to_full_size() -> None:
    # Returned images above the pixel budget are downscaled; here the budget is a quarter of the input.
    with Sandbox(workers=1, max_image_pixels=W * H // 4) as small:
        t = task(["crop"])
        x0, y0, x1, y1 = (v / 2 for v in TARGET)  # the target in the half-size image the model got back
        replies = [tool_call("display(image)"), tool_call(f"display(image.crop(({x0}, {y0}, {x1}, {y1})))", 1)]
        trajectory = episode(small, t, *replies, final("7"))
    assert trajectory.images[1].size == (W // 2, H // 2)
    r = codevision_reward(t, trajectory)
    assert r.details["unverified"] == [] and r.details["crop_credit"] == pytest.approx(1.0, abs=0.05)


def test_an_orientation_is_credited_only_when_a_shown_image_has_it(sandbox: Sandbox) -> None:
    t = task(["rotate_90"], bbox=None)
    r = codevision_reward(t, play(sandbox, t, "display(image.rotate(90, expand=True).rotate(90, expand=True))"))
    assert r.breakdown["mandatory"] == 0.0 and r.details["credited"] == []
    assert r.details["spurious_ops"] == ["rotate_90", "rotate_90"]


def test_refused_crop_boxes_are_penalised(sandbox: Sandbox) -> None:
    t = task(["crop"])
    r = faithfulness_reward(
        t, play(sandbox, t, "try:\n    image.crop((260, 90, 200, 40))\nexcept ValueError:\n    pass")
    )
    assert r.details["invalid_crops"] == 1 and r.breakdown["invalid_crops"] == pytest.approx(-0.2)


# ------------------------------------------------------------------------------------ faithfulness
def test_faithfulness_rewards_focus_not_mere_containment(sandbox: Sandbox) -> None:
    t = task(["crop"])
    x0, y0, x1, y1 = (int(v) for v in TARGET)
    tight = faithfulness_reward(
        t, play(sandbox, t, f"display(image.crop(({x0 - 10}, {y0 - 10}, {x1 + 10}, {y1 + 10})))")
    )
    whole = faithfulness_reward(t, play(sandbox, t, "display(image)"))
    wide = faithfulness_reward(t, play(sandbox, t, "display(image.crop((0, 0, 302, 226)))"))  # 89% of the area
    off = faithfulness_reward(t, play(sandbox, t, "display(image.crop((0, 150, 80, 240)))"))
    assert tight.breakdown["process"] == pytest.approx(1.0) and tight.details["faithful_share"] == 1.0
    assert whole.breakdown["process"] < 0.25 and wide.breakdown["process"] < 0.25
    assert off.breakdown["process"] == 0.0


def test_faithfulness_scores_an_unverified_image_zero(sandbox: Sandbox) -> None:
    t = task(["crop"])
    figure = "import matplotlib.pyplot as plt\nplt.imshow(image.crop((190, 30, 270, 100)))\nplt.show()"
    r = faithfulness_reward(t, play(sandbox, t, figure))
    assert r.breakdown["process"] == 0.0 and r.details["unverified"][0]["status"] == "untraced"


def test_faithfulness_penalties(sandbox: Sandbox) -> None:
    t = task(["crop"])
    noop = faithfulness_reward(t, play(sandbox, t, "display(image.crop((0, 0, 320, 240)))"))
    outside = faithfulness_reward(t, play(sandbox, t, "display(image.crop((-5, 0, 100, 100)))"))
    repeat = faithfulness_reward(t, play(sandbox, t, "boom(", "boom("))
    assert noop.breakdown["noop_crops"] == -0.2 and outside.breakdown["invalid_crops"] == -0.2
    assert repeat.details["repeated_failures"] == 1


def test_the_crop_tool_is_scored_through_the_host_lineage() -> None:
    t = task(["crop"])
    x0, y0, x1, y1 = TARGET
    trajectory = episode(None, t, zoom_call([x0 - 10, y0 - 10, x1 + 10, y1 + 10]), final("7"), protocol="crop")
    assert trajectory.images[1].lineage.status == "host"  # type: ignore[union-attr]
    assert faithfulness_reward(t, trajectory).breakdown["process"] == pytest.approx(1.0)
    # Boxes are given in the pixels of the copy the model saw (here about half size) and mapped back.
    limits = Limits(image_max_pixels=W * H // 4, image_min_pixels=16)
    seen_h, seen_w = smart_resize(H, W, limits.image_factor, limits.image_min_pixels, limits.image_max_pixels)
    sx, sy = seen_w / W, seen_h / H
    box = [(x0 - 10) * sx, (y0 - 10) * sy, (x1 + 10) * sx, (y1 + 10) * sy]
    smaller = episode(None, t, zoom_call(box), final("7"), protocol="crop", limits=limits)
    assert smaller.images[0].model_size == (seen_w, seen_h) != (W, H)
    assert faithfulness_reward(t, smaller).breakdown["process"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ format and specs
def test_format_rules_and_their_breakdown() -> None:
    good = Trajectory(task_id="t", protocol="codevision")
    good.turns = [Turn(index=0, text=final("7"), answer="7")]
    assert format_reward(good).total == 1.0 and format_reward(good).breakdown == {"all_checks": 1.0}
    broken = good.model_copy(deep=True)
    broken.turns[0].text = "<answer>7</answer> and more"
    r = format_reward(broken)
    assert r.total == 0.0 and set(r.details["failed"]) == {"think_first", "single_final_answer"}
    partial = format_reward(broken, FormatConfig(partial=True))
    assert sum(partial.breakdown.values()) == pytest.approx(partial.total) == pytest.approx(3 / 5)
    assert parse_grade("I think 0.75") == 0.75 and parse_grade("nothing") is None


def test_spec_from_yaml_and_its_breakdown_adds_up(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("weights: {outcome: 1.0, format: 0.3, faithfulness: 0.5}\nfaithfulness: {noop_crop_penalty: 1}\n")
    spec = RewardSpec.from_yaml(path)
    assert spec == RewardSpec.tapo().model_copy(update={"faithfulness": spec.faithfulness})
    t = task(["crop"])
    x0, y0, x1, y1 = (int(v) for v in TARGET)
    r = spec.compute(t, play(sandbox, t, f"display(image.crop(({x0}, {y0}, {x1}, {y1})))"))
    assert r.total == pytest.approx(1.0 + 0.3 + 0.5) == pytest.approx(sum(r.breakdown.values()))
    assert RewardSpec.model_validate_json(spec.model_dump_json())
    path.write_text("weights: {speed: 1}\n")
    with pytest.raises(ValueError, match="speed"):
        RewardSpec.from_yaml(path)


def test_config_round_trips_with_its_new_terms() -> None:
    config = CodeVisionConfig(free_images=2, spurious_cap=3, zoom_share=0.4)
    assert CodeVisionConfig.model_validate_json(config.model_dump_json()) == config


def test_a_trajectory_from_before_lineage_loads_and_earns_no_process_credit(sandbox: Sandbox, tmp_path: Path) -> None:
    t = task(["rotate_90"], bbox=None)
    trajectory = play(sandbox, t, TURN)
    trajectory.save(tmp_path)
    stored = json.loads((tmp_path / "trajectory.json").read_text())
    del stored["schema_version"]
    for record in stored["images"]:
        del record["lineage"]
    (tmp_path / "trajectory.json").write_text(json.dumps(stored))
    old = Trajectory.load(tmp_path)
    assert old.images[0].lineage.status == "input" and old.images[1].lineage.status == "unrecorded"  # type: ignore[union-attr]
    r = codevision_reward(t, old)
    assert r.breakdown["mandatory"] == 0.0 and r.details["unverified"][0]["status"] == "unrecorded"
    stored["schema_version"] = 99
    (tmp_path / "trajectory.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="schema version 99, newer"):
        Trajectory.load(tmp_path)


def test_geometric_detours_that_cancel_earn_no_emergent_bonus(sandbox: Sandbox) -> None:
    t = task(["rotate_90"], bbox=None)
    detour = codevision_reward(t, play(sandbox, t, "a = np.rot90(np.asarray(image))\ndisplay(a.T.T)"))
    tilt = codevision_reward(t, play(sandbox, t, "display(image.rotate(95, expand=True).rotate(-5, expand=True))"))
    assert detour.breakdown["mandatory"] == 1.0 and detour.breakdown["emergent"] == 0.0
    assert tilt.breakdown["emergent"] == 0.0


def test_crashing_the_session_never_hides_a_penalty(sandbox: Sandbox) -> None:
    # The sweep and the crash happen in one run, so its trace (four spurious turns) is lost with it.
    t = task(["rotate_90"], bbox=None)
    hidden = "x = image\nfor _ in range(4):\n    x = x.rotate(90, expand=True)\nimport os\nos._exit(1)"
    crashed = codevision_reward(t, play(sandbox, t, hidden, TURN))
    honest = codevision_reward(t, play(sandbox, t, TURN))
    assert crashed.details["session_crashes"] == 1 and crashed.breakdown["mandatory"] == 0.0
    assert crashed.total < honest.total and crashed.total <= total(sandbox, t)
    assert faithfulness_reward(task(["crop"]), play(sandbox, task(["crop"]), hidden, TURN)).breakdown["process"] == 0.0
