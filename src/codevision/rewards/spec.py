"""A reward specification: which rewards, with which weights and coefficients, from one YAML file.

The trainers read the same file, so the reward a run optimised is recorded beside it. Parts are
``outcome``, ``format``, ``codevision`` (the dense reward, which includes its own accuracy and
format terms) and ``faithfulness``; a part with weight 0 is not computed.

.. code-block:: yaml

    weights: {outcome: 1.0, format: 0.3, faithfulness: 0.5}   # CodeV's TAPO mix
    faithfulness: {noop_crop_penalty: 0.2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from codevision.rewards.base import RewardResult
from codevision.rewards.codevision import CodeVisionConfig, codevision_reward
from codevision.rewards.faithfulness import (
    FaithfulnessConfig,
    FaithfulnessJudge,
    faithfulness_reward,
    faithfulness_reward_judged,
)
from codevision.rewards.format import FormatConfig, format_reward
from codevision.rewards.outcome import OutcomeConfig, judged_score, outcome_from_score, outcome_reward
from codevision.scoring import LLMJudge
from codevision.scoring.judge import JudgeError
from codevision.task import Task
from codevision.trajectory import Trajectory

PARTS = ("outcome", "format", "codevision", "faithfulness")


class RewardSpec(BaseModel):
    """Weights of the parts and each part's configuration; the default is CodeVision's dense reward alone."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: {"codevision": 1.0})
    outcome: OutcomeConfig = Field(default_factory=OutcomeConfig)
    format: FormatConfig = Field(default_factory=FormatConfig)
    codevision: CodeVisionConfig = Field(default_factory=CodeVisionConfig)
    faithfulness: FaithfulnessConfig = Field(default_factory=FaithfulnessConfig)

    @field_validator("weights")
    @classmethod
    def _known_parts(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown reward parts {unknown}; the parts are {', '.join(PARTS)}")
        return weights

    @classmethod
    def tapo(cls) -> RewardSpec:
        """CodeV's mix: accuracy + 0.3·format + 0.5·faithfulness (with its penalties)."""
        return cls(weights={"outcome": 1.0, "format": 0.3, "faithfulness": 0.5})

    @classmethod
    def from_yaml(cls, path: str | Path) -> RewardSpec:
        """Load a spec; an empty file is the default spec, and errors name the file."""
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a reward spec is a mapping, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def _active(self) -> list[str]:
        return [part for part in PARTS if self.weights.get(part, 0.0) != 0.0]

    def _combine(self, results: dict[str, RewardResult]) -> RewardResult:
        total = sum(self.weights[part] * result.total for part, result in results.items())
        breakdown = {
            f"{part}.{term}": self.weights[part] * value
            for part, result in results.items()
            for term, value in result.breakdown.items()
        }
        details: dict[str, Any] = {part: result.details for part, result in results.items()}
        details["parts"] = {part: result.total for part, result in results.items()}
        return RewardResult(total, breakdown, details)

    def compute(self, task: Task, trajectory: Trajectory) -> RewardResult:
        """The weighted sum of the active parts, rules and geometry only (pure, no judge)."""
        results: dict[str, RewardResult] = {}
        for part in self._active():
            if part == "outcome":
                results[part] = outcome_reward(task, trajectory, self.outcome)
            elif part == "format":
                results[part] = format_reward(trajectory, self.format)
            elif part == "codevision":
                results[part] = codevision_reward(task, trajectory, self.codevision)
            else:
                results[part] = faithfulness_reward(task, trajectory, self.faithfulness)
        return self._combine(results)

    async def acompute(
        self,
        task: Task,
        trajectory: Trajectory,
        *,
        judge: LLMJudge | None = None,
        vlm_judge: FaithfulnessJudge | None = None,
    ) -> RewardResult:
        """:meth:`compute`, with ``judge`` settling answers the rules leave to a judge (asked once, shared
        by every part that needs accuracy) and ``vlm_judge`` grading faithfulness where no target box is known."""
        active = self._active()
        # The judge's verdict does not depend on how a part turns it into a reward: ask once, map per part.
        judged = await judged_score(task, trajectory, judge) if {"outcome", "codevision"} & set(active) else None
        results: dict[str, RewardResult] = {}
        for part in active:
            if part == "format":
                results[part] = format_reward(trajectory, self.format)
            elif part == "faithfulness":
                results[part] = await faithfulness_reward_judged(task, trajectory, vlm_judge, self.faithfulness)
            elif judged is not None and part == "outcome":
                results[part] = outcome_from_score(judged, self.outcome)
            elif judged is not None:
                accuracy = outcome_from_score(judged, self.codevision.outcome)
                results[part] = codevision_reward(task, trajectory, self.codevision, outcome=accuracy)
        return self._combine(results)

    async def acompute_or_rules(self, task: Task, trajectory: Trajectory, judge: LLMJudge) -> tuple[RewardResult, bool]:
        """:meth:`acompute` with ``judge``; when the judge stays down after its retries, the rules alone and
        ``True``, so that a trainer scores the rollout and counts the fallback instead of stopping."""
        try:
            return await self.acompute(task, trajectory, judge=judge), False
        except JudgeError:
            return self.compute(task, trajectory), True
