"""A TRL rollout as a codevision trajectory, and the rewards evaluation reports, as TRL reward functions.

The environment sees only tool arguments, so the episode is assembled in the reward step: the
model's replies come from the completion's decoded ids, and the outcomes, returned images and
lineage come from what the environment recorded. The rewards are then
:meth:`RewardSpec.compute` on that trajectory, the function evaluation and data synthesis use.

A completion of a Qwen-VL chat template is the first reply, then for each tool round
``<|im_end|>``, the observation turn and ``<|im_start|>assistant\\n``, then the next reply. The
replies are the text between those markers, exactly as sampled (the ids are decoded with special
tokens kept).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codevision.agent.tools import rejected_outcome
from codevision.chat.render import END_OF_TURN
from codevision.protocols.toolcalls import HermesProtocol
from codevision.rewards.base import RewardResult
from codevision.rewards.codevision import group_necessity
from codevision.rewards.spec import RewardSpec
from codevision.scoring import LLMJudge
from codevision.task import Task
from codevision.train.environment import SandboxEnvironment
from codevision.trajectory import Trajectory, Turn

REPLY_START = "<|im_start|>assistant\n"


def replies_of(completion: str) -> list[str]:
    """The model's replies in a decoded completion (special tokens kept), in order."""
    segments = completion.split(REPLY_START)
    return [segment.split(END_OF_TURN, 1)[0] for segment in segments]


def episode(environment: SandboxEnvironment, completion: str, protocol: HermesProtocol) -> Trajectory:
    """The rollout as a trajectory: the environment's record with the replies, answer and stop reason.

    The replies are read under TRL call rules, so each reply has the calls TRL ran, in order. A call
    that ran takes the environment's next recorded outcome; a rejected call (no such tool, arguments
    refused) fails as it does in evaluation under the same rules.
    """
    if environment.trajectory is None:
        raise ValueError("the environment was never reset: there is no rollout to assemble")
    protocol = protocol.under_rules("trl")
    trajectory = environment.trajectory.model_copy(deep=False)
    trajectory.turns = []
    recorded = iter(environment.outcomes)
    for number, text in enumerate(replies_of(completion)):
        parsed = protocol.parse(text)
        turn = Turn(index=number, text=text, actions=parsed.actions, answer=parsed.answer, issues=parsed.issues)
        for index, action in enumerate(parsed.actions):
            outcome = rejected_outcome(index, action) if action.kind == "rejected" else next(recorded, None)
            if outcome is None:
                break
            outcome.action = index
            turn.outcomes.append(outcome)
        if turn.outcomes:
            turn.observation = protocol.render_observation(turn.outcomes, [])
        trajectory.turns.append(turn)
    answers = [turn.answer for turn in trajectory.turns if turn.answer is not None]
    trajectory.final_answer = answers[-1] if answers else None
    if trajectory.error is None:
        last = trajectory.turns[-1] if trajectory.turns else None
        answered = last is not None and last.answer is not None and not last.outcomes
        trajectory.stop_reason = "answered" if answered else ("max_turns" if last and last.outcomes else "no_action")
    return trajectory


class RolloutReward:
    """A TRL reward function computing a :class:`RewardSpec` on each rollout's trajectory.

    Each term of the spec is logged as its own metric (its mean over the step's completions), with
    tool calls per rollout, the tool error rate, the answer rate and the share of rollouts whose sandbox
    failed (infrastructure, not the model's code: see ``SandboxEnvironment._infrastructure_failure``).
    ``last`` holds the step's trajectories and rewards, for saving samples and for tests.
    """

    def __init__(
        self,
        spec: RewardSpec,
        protocol: HermesProtocol,
        tokenizer: Any,
        *,
        save_dir: str | Path | None = None,
        save_every: int = 0,
        save_count: int = 4,
        group_size: int | None = None,
    ) -> None:
        if not isinstance(protocol, HermesProtocol):
            raise ValueError(f"protocol {protocol.name!r} has no JSON tool calls for TRL's tool loop to run")
        self.spec = spec
        self.protocol = protocol.under_rules("trl")
        self.tokenizer = tokenizer
        self.__name__ = "codevision_reward"
        self.last: list[tuple[Trajectory, float, dict[str, float]]] = []
        #: Every ``save_every`` steps, the step's first ``save_count`` rollouts are saved as trajectories
        #: under ``save_dir/step-N/`` (scored with their reward), for ``codevision view``.
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.save_every = save_every
        self.save_count = save_count
        self._saved_steps: set[int] = set()
        #: Completions per prompt (GRPO's ``num_generations``), consecutive in a batch: the group-level
        #: necessity term is computed over each group.
        self.group_size = group_size

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        environments: Sequence[SandboxEnvironment] | None = None,
        log_metric: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        rollouts = self._rollouts(completion_ids, environments)
        return self._finish([(task, t, self.spec.compute(task, t)) for task, t in rollouts], log_metric, kwargs)

    def _rollouts(
        self, completion_ids: Sequence[Sequence[int]], environments: Sequence[SandboxEnvironment] | None
    ) -> list[tuple[Task, Trajectory]]:
        if environments is None:
            raise ValueError("the codevision reward needs the rollouts' environments: train with environment_factory")
        rollouts = []
        for ids, environment in zip(completion_ids, environments, strict=True):
            text = self.tokenizer.decode(list(ids), skip_special_tokens=False)
            if environment.task is None:
                raise ValueError("a rollout's environment was never reset")
            rollouts.append((environment.task, episode(environment, text, self.protocol)))
        return rollouts

    def _finish(
        self, scored: list[tuple[Task, Trajectory, RewardResult]], log_metric: Any, kwargs: dict[str, Any]
    ) -> list[float]:
        """Group terms, metrics and saved samples for the step's rewards; the totals TRL receives."""
        self.last = [(trajectory, result.total, dict(result.breakdown)) for _, trajectory, result in scored]
        dense = [result.details.get("codevision", {}) for *_, result in scored]
        verdicts = [bool(details.get("outcome", {}).get("correct")) for details in dense]
        self._group_necessity(verdicts, [bool(details.get("accuracy_gated")) for details in dense])
        if log_metric is not None:
            self._log(log_metric)
        state = kwargs.get("trainer_state")
        if state is not None:
            self._save_sample(int(state.global_step), bool(getattr(state, "is_world_process_zero", True)))
        return [reward for _, reward, _ in self.last]

    def _group_necessity(self, verdicts: list[bool], gated: list[bool]) -> None:
        """Replace each rollout's necessity term by the released group-level one (``beta`` weighs it)."""
        weight = self.spec.weights.get("codevision", 0.0) * self.spec.codevision.beta
        size = self.group_size
        if not weight or not size:
            return
        if len(self.last) % size:
            raise ValueError(f"{len(self.last)} completions do not split into groups of {size}")
        for start in range(0, len(self.last), size):
            group = self.last[start : start + size]
            used = [any(turn.outcomes for turn in trajectory.turns) for trajectory, _, _ in group]
            paid = group_necessity(used, verdicts[start : start + size], gated[start : start + size])
            for offset, ((trajectory, total, breakdown), value) in enumerate(zip(group, paid, strict=True)):
                term = weight * value
                adjusted = total + term - breakdown.get("codevision.necessity", 0.0)
                self.last[start + offset] = (trajectory, adjusted, {**breakdown, "codevision.necessity": term})

    def _save_sample(self, step: int, main_process: bool) -> None:
        if self.save_dir is None or not self.save_every or step % self.save_every or step in self._saved_steps:
            return
        self._saved_steps.add(step)
        if not main_process:
            return
        for number, (trajectory, total, breakdown) in enumerate(self.last[: self.save_count]):
            trajectory.score = {"reward": total, **breakdown}
            trajectory.save(self.save_dir / f"step-{step:06d}" / f"{number:02d}-{trajectory.task_id}")

    def _log(self, log_metric: Any) -> None:
        count = len(self.last)
        terms = sorted({term for _, _, breakdown in self.last for term in breakdown})
        for term in terms:
            log_metric(f"reward/{term}", sum(breakdown.get(term, 0.0) for _, _, breakdown in self.last) / count)
        calls = [sum(len(turn.outcomes) for turn in trajectory.turns) for trajectory, _, _ in self.last]
        errors = [
            outcome.status != "ok"
            for trajectory, _, _ in self.last
            for turn in trajectory.turns
            for outcome in turn.outcomes
        ]
        log_metric("rollout/tool_calls", sum(calls) / count)
        log_metric("rollout/tool_error_rate", sum(errors) / len(errors) if errors else 0.0)
        log_metric("rollout/answer_rate", sum(t.final_answer is not None for t, _, _ in self.last) / count)
        log_metric("rollout/sandbox_failures", sum(t.stop_reason == "sandbox_error" for t, _, _ in self.last) / count)


class JudgedRolloutReward(RolloutReward):
    """:class:`RolloutReward` with an answer judge, for answers the rules leave open (free-form ones).

    TRL awaits it on its own event loop, where the judge's connections live, and judges a step's
    rollouts concurrently. A judge that stays down after its retries never stops training: the
    rollouts it could not judge are scored by the rules alone, and ``reward/judge_fallbacks`` counts
    them per step.
    """

    def __init__(
        self, spec: RewardSpec, protocol: HermesProtocol, tokenizer: Any, judge: LLMJudge, **options: Any
    ) -> None:
        super().__init__(spec, protocol, tokenizer, **options)
        self.judge = judge
        self.fallbacks = 0

    async def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        environments: Sequence[SandboxEnvironment] | None = None,
        log_metric: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        rollouts = self._rollouts(completion_ids, environments)
        results = await asyncio.gather(
            *(self.spec.acompute_or_rules(task, trajectory, self.judge) for task, trajectory in rollouts)
        )
        fallbacks = sum(fell_back for _, fell_back in results)
        self.fallbacks += fallbacks
        if log_metric is not None:
            log_metric("reward/judge_fallbacks", float(fallbacks))
        scored = [(task, trajectory, result) for (task, trajectory), (result, _) in zip(rollouts, results, strict=True)]
        return self._finish(scored, log_metric, kwargs)
