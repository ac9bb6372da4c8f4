"""Tool faithfulness (CodeV's TAPO): did the images a trajectory showed its model look at what the question is about?

Accuracy alone pays for a right answer reached from an irrelevant crop. The process score here is
the mean, over tool calls that returned images, of how well the call's images look at the target:

* from geometry when the task has target boxes: for each shown image, the share of a target it
  contains times how much of the image the target fills (:func:`codevision.lineage.views.focus`),
  measured through the image's verified lineage in the input's pixels; the call scores the mean
  over its images. The whole image contains the target but is not focused on it, and an image
  whose lineage is not verified scores 0;
* otherwise from a VLM judge shown only the question and the call's images, graded as CodeV does
  (1 / 0.75 / 0.25 / 0). The synchronous reward has no judge: such calls are left unscored.

Penalties, each per occurrence: crop attempts outside their image or without area (a crop the
library refused included), crops that keep (almost) the whole image, and code that already failed
run again unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from codevision.geometry import area
from codevision.lineage.views import Shown, focus, shown_images, trace, unverified
from codevision.policies.base import PolicyError
from codevision.policies.openai import OpenAIPolicy
from codevision.protocols.crop import resolve_bbox
from codevision.rewards.base import Call, RewardResult, calls, session_crashes
from codevision.scoring.judge import JudgeCache, JudgeError
from codevision.task import Task
from codevision.trajectory import Message, Trajectory

#: A call "contains" the target (the faithfulness metric) when its score reaches this.
CONTAINS = 0.75
_GRADE = re.compile(r"(?<![\d.])(0\.75|0\.25|1(?:\.0+)?|0(?:\.0+)?)(?![\d.])")
JUDGE_PROMPT = (
    "The images above were produced by a program while answering this question about an image:\n"
    "{question}\n\n"
    "Do they show the region or object the question is about? Reply with one number: 1 if it is "
    "clearly and fully visible, 0.75 if it is mostly visible, 0.25 if only a small part of it is "
    "visible, 0 if it is not visible."
)


class FaithfulnessConfig(BaseModel):
    """Penalties per occurrence; a crop keeping at least ``noop_share`` of its image's area is a no-op.
    A shown image is fully focused once the target fills ``focus_share`` of it."""

    model_config = ConfigDict(extra="forbid")

    invalid_crop_penalty: float = 0.2
    noop_crop_penalty: float = 0.2
    repeated_failure_penalty: float = 0.2
    noop_share: float = 0.95
    focus_share: float = Field(0.25, gt=0.0, le=1.0)


def parse_grade(reply: str) -> float | None:
    """The last of 1 / 0.75 / 0.25 / 0 in the judge's reply, or None."""
    found = _GRADE.findall(re.sub(r"<think>.*?(?:</think>|$)", " ", reply, flags=re.DOTALL))
    return float(found[-1]) if found else None


class FaithfulnessJudge:
    """A VLM on an OpenAI-compatible server grading whether images show what a question asks about.

    It sees the question and the produced images only (never the answer or the reference), at
    temperature 0, through :class:`OpenAIPolicy`'s transport (retries, back-off, concurrency cap).
    Usable replies are cached on disk (``cache``), keyed by the model, the prompt and the pixels.
    """

    def __init__(self, base_url: str, model: str, *, cache: str | Path | None = None, **options: Any) -> None:
        self.model = model
        self.policy = OpenAIPolicy(base_url, model, temperature=0.0, **options)
        self.cache = JudgeCache(cache) if cache is not None else None
        self.requests = 0

    async def grade(self, question: str, images: Sequence[Image.Image]) -> tuple[float | None, str]:
        """The grade (None when the reply holds none) and the raw reply; :class:`JudgeError` if no reply came."""
        prompt = JUDGE_PROMPT.format(question=question)
        digest = hashlib.sha256(json.dumps([self.model, prompt]).encode())
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            digest.update(buffer.getvalue())
        key = digest.hexdigest()
        stored = await asyncio.to_thread(self.cache.get, key) if self.cache is not None else None
        if stored is not None:
            return parse_grade(stored), stored
        self.requests += 1
        message = Message.of("user", *range(len(images)), prompt)
        try:
            reply = (await self.policy.generate([message], list(images), max_tokens=512)).text
        except PolicyError as exc:
            raise JudgeError(f"faithfulness judge {self.model!r}: {exc}") from exc
        grade = parse_grade(reply)
        if self.cache is not None and grade is not None:
            await asyncio.to_thread(self.cache.put, key, model=self.model, prompt=prompt, reply=reply)
        return grade, reply

    async def aclose(self) -> None:
        await self.policy.aclose()


@dataclass
class _Crops:
    """The crop attempts that were invalid (outside their image, without area, refused) or no-ops."""

    invalid: int = 0
    noop: int = 0


def _crops(trajectory: Trajectory, found: list[Call], config: FaithfulnessConfig) -> _Crops:
    result = _Crops()
    for op in trace(trajectory):
        if op.name != "crop" or "box" not in op.args:
            continue
        try:
            x0, y0, x1, y1 = (float(v) for v in op.args["box"])
        except (TypeError, ValueError):
            result.invalid += 1
            continue
        size = op.operand.size if op.operand is not None else None
        outside = size is not None and (x0 < 0 or y0 < 0 or x1 > size[0] or y1 > size[1])
        if op.args.get("error") or x1 <= x0 or y1 <= y0 or outside:
            result.invalid += 1
        elif size is not None and area((x0, y0, x1, y1)) >= config.noop_share * size[0] * size[1]:
            result.noop += 1
    for call in found:
        action = call.action
        if action is None or action.kind != "crop":
            continue
        if call.outcome.status != "ok":
            result.invalid += 1
            continue
        record = trajectory.images[action.image_index or 0]
        box = resolve_bbox(action.bbox, *(record.model_size or record.size))
        if isinstance(box, str):
            continue
        width, height = record.model_size or record.size
        if area(box) >= config.noop_share * width * height:
            result.noop += 1
    return result


def _repeated_failures(found: list[Call]) -> int:
    """Failing calls whose code (or crop box) already failed earlier, whitespace ignored."""
    failed: set[str] = set()
    repeats = 0
    for call in found:
        if call.outcome.status == "ok" or call.action is None:
            continue
        code = " ".join((call.action.code or json.dumps(call.action.bbox)).split())
        repeats += code in failed
        failed.add(code)
    return repeats


def _geometric(task: Task, images: list[Shown], share: float) -> float:
    """The mean focus of a call's shown images on the nearest target; an unverified image scores 0."""
    values = []
    for item in images:
        box = item.lineage.box if item.of_input(0) and item.lineage is not None else None
        values.append(0.0 if box is None else max(focus(box, target, share) for target in task.bboxes))
    return sum(values) / len(values)


def _finish(
    found: list[Call],
    scores: dict[int, float | None],
    crops: _Crops,
    repeats: int,
    config: FaithfulnessConfig,
    shown: list[Shown],
    crashes: int,
) -> RewardResult:
    graded = [value for value in scores.values() if value is not None]
    # A crash discards the crashed run's trace: whatever the other calls showed earns nothing then.
    process = sum(graded) / len(graded) if graded and not crashes else 0.0
    breakdown = {
        "process": process,
        "invalid_crops": -config.invalid_crop_penalty * crops.invalid,
        "noop_crops": -config.noop_crop_penalty * crops.noop,
        "repeated_failures": -config.repeated_failure_penalty * repeats,
    }
    details = {
        "calls": len(found),
        "scores": {str(number): value for number, value in scores.items()},
        "faithful_share": sum(value >= CONTAINS for value in graded) / len(graded) if graded else None,
        "invalid_crops": crops.invalid,
        "noop_crops": crops.noop,
        "repeated_failures": repeats,
        "unverified": unverified(shown),
        "session_crashes": crashes,
    }
    return RewardResult(sum(breakdown.values()), breakdown, details)


def _by_call(shown: list[Shown]) -> dict[int, list[Shown]]:
    grouped: dict[int, list[Shown]] = {}
    for item in shown:
        grouped.setdefault(item.call, []).append(item)
    return grouped


def faithfulness_reward(task: Task, trajectory: Trajectory, config: FaithfulnessConfig | None = None) -> RewardResult:
    """Process score from geometry plus penalties, with no judge (pure).

    ``details["faithful_share"]`` is the faithfulness metric: the share of scored image-returning
    calls whose images look at the target. Without target boxes no call can be scored here.
    """
    config = config or FaithfulnessConfig()
    found = calls(trajectory)
    shown = shown_images(trajectory)
    scores = {
        number: _geometric(task, images, config.focus_share) if task.bboxes else None
        for number, images in _by_call(shown).items()
    }
    crops, repeats = _crops(trajectory, found, config), _repeated_failures(found)
    return _finish(found, scores, crops, repeats, config, shown, session_crashes(trajectory))


async def faithfulness_reward_judged(
    task: Task, trajectory: Trajectory, judge: FaithfulnessJudge | None, config: FaithfulnessConfig | None = None
) -> RewardResult:
    """:func:`faithfulness_reward`, with ``judge`` grading each image-producing call when the task has no boxes.

    The trajectory's images must be available (in memory, or saved beside its JSON).
    """
    config = config or FaithfulnessConfig()
    if task.bboxes or judge is None:
        return faithfulness_reward(task, trajectory, config)
    found = calls(trajectory)
    shown = shown_images(trajectory)
    producing = sorted(_by_call(shown).items())
    grades = await asyncio.gather(
        *(judge.grade(task.question, [trajectory.image(item.index) for item in images]) for _, images in producing)
    )
    scores = {number: grade for (number, _), (grade, _raw) in zip(producing, grades, strict=True)}
    crops = _crops(trajectory, found, config)
    result = _finish(found, scores, crops, _repeated_failures(found), config, shown, session_crashes(trajectory))
    # An unreadable grade leaves its call unscored (never 0 or 1); its reply is kept so it can be audited.
    result.details["judge_unreadable"] = {
        str(number): raw for (number, _), (grade, raw) in zip(producing, grades, strict=True) if grade is None
    }
    return result
