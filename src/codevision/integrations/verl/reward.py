"""The reward verl trains on: the :class:`RewardSpec` evaluation reports, on the trajectory the loop recorded.

verl's reward managers call ``compute_score(data_source, solution_str, ground_truth, extra_info,
**reward_kwargs)`` with the row's ``extra_info`` merged with the agent loop's ``extra_fields``. The
decoded ``solution_str`` mixes the model's replies with tool output, so it is not read: the
trajectory the codevision agent loop recorded (its replies, outcomes, op traces, shown images and
their lineage) is, and the reward is the one a trajectory of the same episode gets in evaluation.

Select it with ``reward.custom_reward_function.path=<this file>`` (``python -m
codevision.integrations.verl`` prints it) and ``name=compute_score``. ``reward_kwargs`` may name a
``reward_spec`` YAML file (default: CodeVision's dense reward) and an answer judge (``judge_url``,
``judge_model``, ``judge_cache``, ``judge_timeout``, ``judge_retries``). A judge that stays down never
stops training: that rollout is scored by the rules alone and ``judge_fallback`` is 1.

The returned dict has the same keys for every rollout (verl stacks each key over the batch):
``score``, one key per term of the spec (``codevision.accuracy``, ...), ``acc`` (the answer is
right), ``pred`` (the final answer), ``tool_calls``, ``tool_errors``, ``answered``, ``turns``,
``sandbox_error`` and ``judge_fallback``. verl reports them as ``reward_extra_info`` (validation
metrics average the numeric ones per data source).

This file is loaded by path as a module of its own, so it imports codevision absolutely and
imports no verl.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from codevision.integrations.verl.episode import episode_of
from codevision.rewards.base import RewardResult
from codevision.rewards.outcome import outcome_reward
from codevision.rewards.spec import RewardSpec
from codevision.scoring import LLMJudge
from codevision.task import Task
from codevision.trajectory import Trajectory

#: ``reward_kwargs`` this function reads; verl's reward managers may add the other two.
OPTIONS = frozenset({"reward_spec", "judge_url", "judge_model", "judge_cache", "judge_timeout", "judge_retries"})
_VERL_OPTIONS = frozenset({"reward_router_address", "reward_model_tokenizer"})

_lock = threading.Lock()
_specs: dict[str | None, tuple[RewardSpec, tuple[str, ...]]] = {}
_judges: dict[tuple[Any, ...], LLMJudge] = {}


def compute_score(
    data_source: str | None = None,
    solution_str: str | None = None,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> dict[str, Any]:
    """The reward of one rollout of the codevision agent loop and its terms (see the module docstring).

    Raises :class:`~codevision.integrations.verl.episode.MissingEpisodeError` for a rollout of another
    agent loop (its ``extra_info`` has no recorded trajectory), naming what is missing.
    """
    unknown = sorted(set(reward_kwargs) - OPTIONS - _VERL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown reward_kwargs {unknown} for the codevision reward; it reads {', '.join(sorted(OPTIONS))}"
        )
    task, trajectory = episode_of(extra_info)
    spec, terms = reward_spec(reward_kwargs.get("reward_spec"))
    judge = _judge(reward_kwargs)
    if judge is None:
        result, fallback = spec.compute(task, trajectory), False
    else:
        result, fallback = judge.run_sync(spec.acompute_or_rules(task, trajectory, judge))
    return score_fields(task, trajectory, result, terms, judge_fallback=fallback)


def reward_spec(path: str | Path | None) -> tuple[RewardSpec, tuple[str, ...]]:
    """The spec in ``path`` (None: the default, CodeVision's dense reward) and the names of all its terms.

    Loaded once per process. The term names come from the spec itself, so every rollout reports the
    same keys whatever its trajectory holds. A spec with the group-level necessity term (``beta``) is
    refused: one rollout at a time, it would silently become a per-rollout term.
    """
    key = None if path is None else str(path)
    with _lock:
        if key not in _specs:
            spec = RewardSpec() if key is None else RewardSpec.from_yaml(key)
            if spec.weights.get("codevision") and spec.codevision.beta:
                # verl calls this once per rollout, so no group exists to compute the released term over.
                raise ValueError(
                    f"{key}: codevision.beta {spec.codevision.beta} weighs CodeVision's necessity term, which is "
                    "computed over each prompt's group of rollouts; verl's reward function sees one rollout at a "
                    "time. Set beta to 0 (as released), or train with `codevision train grpo`, which computes it"
                )
            blank = spec.compute(
                Task(id="terms", question="", answers=[""]), Trajectory(task_id="terms", protocol="codevision")
            )
            _specs[key] = spec, tuple(blank.breakdown)
        return _specs[key]


def _judge(options: dict[str, Any]) -> LLMJudge | None:
    url = options.get("judge_url")
    if not url:
        return None
    settings = (
        str(url),
        str(options.get("judge_model") or "judge"),
        options.get("judge_cache"),
        float(options.get("judge_timeout") or 60.0),
        int(options.get("judge_retries") if options.get("judge_retries") is not None else 3),
    )
    with _lock:
        if settings not in _judges:
            url, model, cache, timeout, retries = settings
            _judges[settings] = LLMJudge(url, model, cache=cache, timeout=timeout, retries=retries)
        return _judges[settings]


def score_fields(
    task: Task,
    trajectory: Trajectory,
    result: RewardResult,
    terms: tuple[str, ...],
    *,
    judge_fallback: bool = False,
) -> dict[str, Any]:
    """The dict verl receives: the total as ``score``, every term, and the rollout's counts."""
    fields: dict[str, Any] = {"score": float(result.total)}
    for term in dict.fromkeys([*terms, *result.breakdown]):
        fields[term] = float(result.breakdown.get(term, 0.0))
    outcomes = [outcome for turn in trajectory.turns for outcome in turn.outcomes]
    fields.update(
        acc=float(_correct(task, trajectory, result)),
        pred=trajectory.final_answer or "",
        tool_calls=len(outcomes),
        tool_errors=sum(outcome.status != "ok" for outcome in outcomes),
        answered=float(trajectory.final_answer is not None),
        turns=len(trajectory.turns),
        sandbox_error=float(trajectory.stop_reason == "sandbox_error"),
        judge_fallback=float(judge_fallback),
    )
    return fields


def _correct(task: Task, trajectory: Trajectory, result: RewardResult) -> bool:
    """Whether the answer is right, as the spec's accuracy part judged it (the rules when it has none)."""
    for part in ("outcome", "codevision"):
        details = result.details.get(part)
        if isinstance(details, dict):
            verdict = details.get("correct", details.get("outcome", {}).get("correct"))
            if verdict is not None:
                return bool(verdict)
    return bool(outcome_reward(task, trajectory).details.get("correct"))
