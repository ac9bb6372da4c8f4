"""From a trajectory to a score: the benchmark's official rule, and the judge where it calls for one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from codevision.eval.runner import Scorer
from codevision.scoring import OfficialPrompts, ScoringOptions, UnknownBenchmarkError, rule_for, score, score_with_judge
from codevision.scoring.judge import LLMJudge
from codevision.scoring.options import DEFAULT_OPTIONS
from codevision.task import Task
from codevision.trajectory import Trajectory

# Sources whose items are scored by a rule of another name; metadata["scoring"] overrides it.
SOURCE_RULES = {"synthetic": "ocr", "verl": "codevision", "bundled-examples": "ocr"}
FALLBACK_RULE = "general"


def rule_name(task: Task) -> str:
    for name in (task.metadata.get("scoring"), SOURCE_RULES.get(task.source), task.source):
        if isinstance(name, str) and name:
            try:
                rule_for(name)
            except UnknownBenchmarkError:
                continue
            return name
    return FALLBACK_RULE


def judge_fields(task: Task) -> dict[str, Any]:
    """The item's fields for a judge or extractor: its metadata and its question as the benchmark states
    it. Loaders that append the options to the question the model sees keep the original in
    ``raw_question``; the judge prompts list the options themselves."""
    return {
        **task.metadata,
        "question": task.metadata.get("raw_question") or task.question,
        "query": task.metadata.get("query") or task.question,
    }


def response_of(trajectory: Trajectory, *, whole_reply: bool = False) -> str:
    """The final answer when the model gave one, else its last reply (rules extract from free text).

    ``whole_reply`` gives the last reply in full, as the official scripts receive a model's output
    (strict-official scoring).
    """
    if trajectory.final_answer is not None and not (whole_reply and trajectory.turns):
        return trajectory.final_answer
    return trajectory.turns[-1].text if trajectory.turns else ""


def scored_text(rule: str, trajectory: Trajectory, options: ScoringOptions = DEFAULT_OPTIONS) -> str:
    """What the rule named ``rule`` (:func:`rule_name`) is given: the answer (:func:`response_of`), or,
    for a rule that reads the whole response (CodeVision's), every assistant turn, one after another,
    as verl decodes a multi-turn rollout for the released scorer (tool output is not part of it; that
    scorer drops it)."""
    if rule_for(rule, options.mode).reads == "response" and trajectory.turns:
        return "\n".join(turn.text for turn in trajectory.turns)
    return response_of(trajectory, whole_reply=options.strict)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "__dict__"):
        return _plain(vars(value))
    return repr(value)


def make_scorer(
    judge: LLMJudge | None = None,
    *,
    strict_official: bool = False,
    official_prompts: str | Path | OfficialPrompts | None = None,
    mathvista_quick_extract: bool = False,
) -> Scorer:
    """A scorer for :func:`codevision.eval.evaluate`: official rule first, judge only where the rule says.

    ``strict_official`` scores the whole last reply exactly as each released script does, asking the
    judge with the prompts in ``official_prompts`` (a YAML file, see
    :mod:`codevision.scoring.prompt_file`); ``mathvista_quick_extract`` turns on MathVista's quick
    extraction regex. Both are recorded in every item's ``details``.
    """
    options = ScoringOptions.of(
        strict_official=strict_official,
        official_prompts=official_prompts,
        mathvista_quick_extract=mathvista_quick_extract,
    )

    async def scorer(task: Task, trajectory: Trajectory) -> dict[str, Any]:
        name = rule_name(task)
        response = scored_text(name, trajectory, options)
        if judge is None:
            result = score(name, response, task.answers, scoring_options=options, **task.metadata)
        else:
            result = await score_with_judge(
                name, response, task.answers, judge=judge, scoring_options=options, **judge_fields(task)
            )
        return {
            "correct": bool(result.correct),
            "value": float(result.value),
            "rule": result.rule,
            # A verdict was used only if the judge was asked and the item no longer waits for one.
            "judged": "judge" in result.details and not result.needs_judge,
            "needs_judge": bool(result.needs_judge),
            "details": _plain(result.details),
        }

    return scorer
