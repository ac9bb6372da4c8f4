"""Rewards for training and analysis: each a pure function of (task, trajectory) -> :class:`RewardResult`.

* :func:`outcome_reward` — the task's official scoring rule (:func:`outcome_reward_judged` adds the judge);
* :func:`format_reward` — the protocol's structure: think, then one call or the answer;
* :func:`codevision_reward` — CodeVision's dense process reward, from the runtime op trace;
* :func:`faithfulness_reward` — CodeV's tool faithfulness, from geometry
  (:func:`faithfulness_reward_judged` with a :class:`FaithfulnessJudge` when no box is known);
* :class:`RewardSpec` — a weighted combination, loadable from YAML.

See ``docs/rewards.md``.
"""

from codevision.lineage.orientation import analyse_orientation
from codevision.rewards.base import RewardResult
from codevision.rewards.codevision import CodeVisionConfig, codevision_reward
from codevision.rewards.faithfulness import (
    FaithfulnessConfig,
    FaithfulnessJudge,
    faithfulness_reward,
    faithfulness_reward_judged,
    parse_grade,
)
from codevision.rewards.format import FormatConfig, format_reward
from codevision.rewards.outcome import OutcomeConfig, outcome_reward, outcome_reward_judged
from codevision.rewards.spec import PARTS, RewardSpec

__all__ = [
    "PARTS",
    "CodeVisionConfig",
    "FaithfulnessConfig",
    "FaithfulnessJudge",
    "FormatConfig",
    "OutcomeConfig",
    "RewardResult",
    "RewardSpec",
    "analyse_orientation",
    "codevision_reward",
    "faithfulness_reward",
    "faithfulness_reward_judged",
    "format_reward",
    "outcome_reward",
    "outcome_reward_judged",
    "parse_grade",
]
