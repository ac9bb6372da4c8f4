"""codevision inside stock verl: an agent loop and a reward function, selected by configuration.

verl loads custom agent loops from a YAML file (``actor_rollout_ref.rollout.agent.agent_loop_config_path``)
and custom rewards from a Python file (``reward.custom_reward_function.path``); both settings take
file paths, which these helpers give for the installed package. Only :mod:`.agent_loop` imports
verl, so this package (and ``python -m codevision.integrations.verl``) works where verl is absent,
on the machine that writes the launch script.
"""

from __future__ import annotations

from pathlib import Path

AGENT_NAME = "codevision_agent"
AGENT_LOOP_CONFIG = "agent_loop.yaml"
REWARD_FUNCTION = "compute_score"


def agent_loop_config_path() -> Path:
    """The agent-loop YAML shipped with the package, for ``actor_rollout_ref.rollout.agent.agent_loop_config_path``."""
    return Path(__file__).resolve().with_name(AGENT_LOOP_CONFIG)


def reward_function_path() -> Path:
    """The reward module, for ``reward.custom_reward_function.path`` (its function is :data:`REWARD_FUNCTION`)."""
    return Path(__file__).resolve().with_name("reward.py")


__all__ = ["AGENT_NAME", "REWARD_FUNCTION", "agent_loop_config_path", "reward_function_path"]
