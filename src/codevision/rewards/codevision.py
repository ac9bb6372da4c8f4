"""CodeVision's dense process reward, computed from the images the model was shown.

``R = r_acc + format_weight·format + α·r_mandatory + β·r_necessity + r_exact + r_emerge − γ·(c_usage + r_spurious)``

The released implementation detects ops in the code text, which credits a ``rotate(90)`` in a
comment or a branch that never ran. Crediting ops that ran is not enough either: a policy can run
every rotation, or thousands of crops, and show none of them. Here every process term reads the
lineage of the images returned to the model (:mod:`codevision.lineage`), and only images whose
lineage the host verified against their pixels earn anything:

* ``r_mandatory``: expected orientation ops are credited when the deciding view (the last shown image
  that may show input 0) has the expected net orientation (the product of all expected orientation
  ops, so ``-270`` or two quarter turns where a half turn is expected count), or, failing that, the
  ops whose own orientation it has; another expected op when an op of that name in a shown
  image's chain changed the image; an expected crop with the
  IoU between the target box and the last crop shown (without a target box: 1 when that crop
  keeps at most ``zoom_share`` of the image). Divided by the number of expected ops, capped at 1.
* ``r_spurious``: every rotation, flip or transpose that ran and is not in the chain of a shown
  image with the credited orientation, counted per op (up to ``spurious_cap``).
* ``r_exact``: the orientations of the shown images (and a shown crop) are exactly the expected
  core ops, which must not be empty, the deciding view has the expected orientation, an expected
  crop passes the gate, and every shown image is verified. ``r_emerge``: a correct answer and an effective
  image-processing op (one that changes pixel values) in a shown image's chain. ``c_usage``: calls
  beyond ``max(free_calls, |expected|)`` and shown images beyond ``free_images``. The accuracy gate
  is as released. A trajectory whose code crashed or was killed with its session earns no process
  credit (mandatory, exact, emergent): the crashed run's trace, and its penalties, are lost.

``docs/rewards.md`` lists every deviation from the released code and why.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from codevision.geometry import iou
from codevision.lineage.maps import PIXEL_OPS
from codevision.lineage.orientation import OrientationAnalysis, analyse_orientation
from codevision.lineage.views import Shown, chain_ops, shown_images, shown_ops, trace, unverified
from codevision.opnames import CORE_OPS, canonical
from codevision.rewards.base import RewardResult, calls, session_crashes
from codevision.rewards.format import FormatConfig, format_reward
from codevision.rewards.outcome import OutcomeConfig, outcome_reward
from codevision.sandbox.results import ImageOp
from codevision.task import Task
from codevision.trajectory import Trajectory


class CodeVisionConfig(BaseModel):
    """Coefficients of the dense reward; the defaults are CodeVision's released ones, plus the terms that
    make it pay for shown images only (``free_images``, ``spurious_cap``, ``zoom_share``, ``noop_tolerance``).

    ``alpha`` weighs ``r_mandatory``, ``beta`` the necessity term (1 when tools were used exactly when
    some op was expected; off by default as released), ``gamma`` each extra call, each shown image
    beyond ``free_images`` and each spurious orientation op (at most ``spurious_cap`` of them).
    ``exact_bonus`` is paid when the shown images' core ops equal the expected ones,
    ``emergent_bonus`` when the answer is correct and an effective op outside the core set and
    ``emergent_ignore`` led to a shown image; an enhancement whose factor is within
    ``noop_tolerance`` of 1 is not effective. Calls beyond ``max(free_calls, |expected|)`` are
    extra. Without a target box, an expected crop is credited when the last shown crop keeps at
    most ``zoom_share`` of the image. When a crop is expected and ``r_mandatory < gate_threshold``,
    accuracy is multiplied by ``r_mandatory``.
    """

    model_config = ConfigDict(extra="forbid")

    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 0.5
    format_weight: float = 0.1
    emergent_bonus: float = 0.2
    exact_bonus: float = 0.1
    gate_threshold: float = 0.1
    free_calls: int = Field(2, ge=0)
    free_images: int = Field(4, ge=0)
    spurious_cap: int = Field(5, ge=0)
    zoom_share: float = Field(0.5, gt=0.0, le=1.0)
    noop_tolerance: float = Field(0.05, ge=0.0)
    # Conversions and plain resizes happen incidentally while moving between PIL and NumPy; they are
    # not the image-processing judgement the emergent bonus rewards.
    emergent_ignore: frozenset[str] = frozenset(
        {"rotate_0", "convert", "color_convert", "resize", "fit", "pad", "contain", "cover"}
    )
    outcome: OutcomeConfig = Field(default_factory=OutcomeConfig)
    format: FormatConfig = Field(default_factory=FormatConfig)


def effective(op: ImageOp, tolerance: float) -> bool:
    """Whether an op changes the image: one whose result held its operand's pixels did not, nor does an
    enhancement by a factor of (about) 1 (a factor of 1.02 changes a few pixels by one level)."""
    if op.unchanged:
        return False
    args = op.args
    try:
        if op.name == "enhance" and "factor" in args:
            return abs(float(args["factor"]) - 1.0) > tolerance
        if op.name == "enhance" and args.get("kind") == "linear":
            return abs(float(args.get("alpha", 1.0)) - 1.0) > tolerance or abs(float(args.get("beta", 0.0))) > 0.5
        if op.name == "posterize":
            return int(args.get("bits", 0)) < 8
    except (TypeError, ValueError):
        return False
    return True


def last_crop(shown: list[Shown]) -> Shown | None:
    """The last verified crop of input 0 the model was shown before answering: what its answer rests on."""
    crops = [item for item in shown if item.of_input(0) and item.is_crop]
    return crops[-1] if crops else None


def crop_credit(task: Task, shown: list[Shown], zoom_share: float) -> float:
    """The crop part of ``r_mandatory``: the last shown crop's IoU with a target box, or (without boxes)
    1 when it is a real zoom."""
    crop = last_crop(shown)
    if crop is None or crop.lineage is None or crop.lineage.box is None:
        return 0.0
    if task.bboxes:
        return max(iou(crop.lineage.box, target) for target in task.bboxes)
    share = crop.share
    return float(share is not None and share <= zoom_share)


def _exact(expected: list[str], shown: list[Shown], orientation: OrientationAnalysis, crop_hit: bool) -> bool:
    """The shown views' core ops are exactly the expected ones: the expected view was the deciding one (when
    an orientation is expected), an expected crop hit its target (``crop_hit``: its credit passes the
    gate), and nothing shown is of unknown lineage (it could show anything)."""
    wanted = set(expected) & CORE_OPS
    if not wanted or (orientation.oriented and not orientation.reached) or ("crop" in wanted and not crop_hit):
        return False
    used: set[str] = set()
    for item in shown:
        if not item.verified:
            return False
        value = item.orientation
        if item.of_input(0) and value is not None:
            used |= set(value.ops()) & CORE_OPS
            if item.is_crop:
                used.add("crop")
    return used == wanted


def emergent_ops(ops: list[ImageOp], shown: list[Shown], config: CodeVisionConfig) -> list[str]:
    """Effective image-processing ops (not in ``emergent_ignore``) in the chain of a verified shown image.

    Only ops that change pixel values count: a geometric op outside the core set (a transpose, a
    rotation by a few degrees) can be undone within the same chain, so pairs of them would earn the
    bonus while showing the expected view.
    """
    found = {
        op.name
        for op in chain_ops(ops, shown)
        if op.name in PIXEL_OPS and op.name not in config.emergent_ignore and effective(op, config.noop_tolerance)
    }
    return sorted(found)


def codevision_reward(
    task: Task,
    trajectory: Trajectory,
    config: CodeVisionConfig | None = None,
    *,
    outcome: RewardResult | None = None,
) -> RewardResult:
    """The dense reward of one trajectory; ``outcome`` replaces the rule-only accuracy (e.g. a judged one)."""
    config = config or CodeVisionConfig()
    outcome = outcome or outcome_reward(task, trajectory, config.outcome)
    ops = trace(trajectory)
    shown = shown_images(trajectory)
    expected = list(dict.fromkeys(task.expected_ops))
    orientation = analyse_orientation(ops, shown, expected)
    seen = shown_ops(trajectory, ops)
    # Orientation ops are credited by the orientation the deciding view has, never by name; other
    # expected ops (a corruption's fix) when an op of that name that changed the image led to a shown one.
    done = {
        canonical(op)
        for op in chain_ops(ops, shown)
        if op.name not in PIXEL_OPS or effective(op, config.noop_tolerance)
    }
    credited = set(orientation.credited) | {
        name for name in expected if name != "crop" and name not in orientation.oriented and name in done
    }
    credit = float(len(credited))
    crop = crop_credit(task, shown, config.zoom_share) if "crop" in expected else 0.0
    credit += crop
    crashes = session_crashes(trajectory)
    if crashes:
        credit, crop = 0.0, 0.0
    mandatory = min(1.0, credit / len(expected)) if expected else 0.0
    n_calls = len(calls(trajectory))
    accuracy = outcome.total
    gated = "crop" in expected and mandatory < config.gate_threshold
    if gated:
        accuracy *= mandatory
    fmt = format_reward(trajectory, config.format).total
    necessity = float((n_calls > 0) == bool(expected))
    exact_ops = _exact(expected, shown, orientation, crop >= config.gate_threshold)
    exact = config.exact_bonus if exact_ops and not crashes else 0.0
    emergent = [] if crashes else emergent_ops(ops, shown, config)
    emerge = config.emergent_bonus if outcome.details.get("correct") and emergent else 0.0
    extra_calls = max(0, n_calls - max(config.free_calls, len(expected)))
    extra_images = max(0, len(shown) - config.free_images)
    spurious = min(len(orientation.spurious), config.spurious_cap)
    breakdown = {
        "accuracy": accuracy,
        "format": config.format_weight * fmt,
        "mandatory": config.alpha * mandatory,
        "necessity": config.beta * necessity,
        "exact": exact,
        "emergent": emerge,
        "extra_calls": -config.gamma * extra_calls,
        "extra_images": -config.gamma * extra_images,
        "spurious": -config.gamma * spurious,
    }
    problems = unverified(shown)
    crop_view = last_crop(shown)
    details = {
        "expected": expected,
        "used_ops": sorted({canonical(op) for op in ops}),
        "shown_ops": sorted(seen),
        "credited": sorted(credited),
        "crop_credit": crop,
        "last_crop": None if crop_view is None else crop_view.index,
        "orientation_reached": orientation.reached,
        "orientation_view": orientation.view,
        "spurious_ops": [canonical(ops[i]) for i in orientation.spurious],
        "emergent_ops": emergent,
        "calls": n_calls,
        "shown": len(shown),
        "unverified": problems,
        "session_crashes": crashes,
        "trace_mismatch": sum(1 for problem in problems if problem["status"] == "mismatch"),
        "accuracy_gated": gated,
        "r_mandatory": mandatory,
        "r_format": fmt,
        "outcome": outcome.details,
    }
    return RewardResult(sum(breakdown.values()), breakdown, details)


def group_necessity(
    used_tools: Sequence[bool], correct: Sequence[bool], gated: Sequence[bool] | None = None
) -> list[float]:
    """CodeVision's released necessity term over one prompt's rollouts (a GRPO group), before ``beta``.

    The gap ``max(0, accuracy of the rollouts that used a tool − accuracy of those that did not)``
    is paid to each correct rollout that used a tool, unless no rollout went without a tool (there
    is nothing to compare with) or at least two were correct without one (the question did not need
    tools), and never to a rollout whose accuracy the crop gate cut (``gated``). A single trajectory
    has no group, so evaluation reports the per-trajectory term of :func:`codevision_reward` instead.
    """
    gated = [False] * len(correct) if gated is None else gated
    if not len(used_tools) == len(correct) == len(gated):
        raise ValueError(f"{len(used_tools)} tool flags, {len(correct)} verdicts and {len(gated)} gate flags")
    with_tool = [ok for used, ok in zip(used_tools, correct, strict=True) if used]
    without = [ok for used, ok in zip(used_tools, correct, strict=True) if not used]
    gap = max(0.0, _mean(with_tool) - _mean(without)) if without and sum(without) < 2 else 0.0
    rollouts = zip(used_tools, correct, gated, strict=True)
    return [gap if used and ok and not cut else 0.0 for used, ok, cut in rollouts]


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0
