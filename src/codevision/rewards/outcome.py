"""Outcome reward: whether the final answer is right, by the task's official scoring rule.

The rule is the one evaluation uses (:func:`codevision.eval.scorer.rule_name`), so training
optimises the number that is later reported. The synchronous form is pure and uses the rule only:
where the benchmark would ask a judge, the rule's provisional verdict stands and
``details["needs_judge"]`` says so. The asynchronous form asks the judge there.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from codevision.eval.scorer import judge_fields, rule_name, scored_text
from codevision.rewards.base import RewardResult
from codevision.scoring import LLMJudge, Score, score, score_with_judge
from codevision.task import Task
from codevision.trajectory import Trajectory


class OutcomeConfig(BaseModel):
    """``partial_credit``: use the rule's graded value (ANLS similarity) rather than 1/0 correctness."""

    model_config = ConfigDict(extra="forbid")

    partial_credit: bool = False


def outcome_from_score(result: Score, config: OutcomeConfig) -> RewardResult:
    """The reward for a rule's (or judge's) score, so one judged score can serve several configurations."""
    value = float(result.value) if config.partial_credit else float(result.correct)
    details = {
        "rule": result.rule,
        "correct": bool(result.correct),
        "needs_judge": bool(result.needs_judge),
        # A judge asked without a readable verdict leaves the rule's provisional score standing: that
        # is not a judged result, and why the judge failed is kept for the reader.
        "judged": result.rule.endswith("+judge"),
    }
    judge = result.details.get("judge")
    if isinstance(judge, dict) and judge.get("error"):
        details["judge_error"] = judge["error"]
    return RewardResult(total=value, breakdown={"accuracy": value}, details=details)


def outcome_reward(task: Task, trajectory: Trajectory, config: OutcomeConfig | None = None) -> RewardResult:
    """The official rule's verdict on the final answer, without a judge (pure and deterministic)."""
    config = config or OutcomeConfig()
    name = rule_name(task)
    result = score(name, scored_text(name, trajectory), task.answers, **task.metadata)
    return outcome_from_score(result, config)


async def judged_score(task: Task, trajectory: Trajectory, judge: LLMJudge | None) -> Score:
    """The official rule's score of the final answer, with the judge asked where the protocol asks one."""
    name = rule_name(task)
    return await score_with_judge(name, scored_text(name, trajectory), task.answers, judge=judge, **judge_fields(task))


async def outcome_reward_judged(
    task: Task, trajectory: Trajectory, judge: LLMJudge | None, config: OutcomeConfig | None = None
) -> RewardResult:
    """:func:`outcome_reward`, with the judge asked wherever the benchmark's official protocol asks one."""
    return outcome_from_score(await judged_score(task, trajectory, judge), config or OutcomeConfig())
