"""``python -m codevision.integrations.verl``: the file paths a verl launch script needs.

verl takes the agent-loop YAML and the reward function as file paths, which depend on where
codevision is installed; printing them lets a script write ``$(python -m ...)`` lookups instead of
hard-coding a site-packages path. Runs without verl installed.
"""

from __future__ import annotations

from codevision.integrations.verl import AGENT_NAME, REWARD_FUNCTION, agent_loop_config_path, reward_function_path


def main() -> None:
    print(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={agent_loop_config_path()}")
    print(f"  # registers the agent loop {AGENT_NAME!r}, which rows exported by `codevision data export rl` select")
    print(f"reward.custom_reward_function.path={reward_function_path()}")
    print(f"reward.custom_reward_function.name={REWARD_FUNCTION}")
    print(
        "  # the RewardSpec on the trajectory the agent loop recorded "
        "(pkg://codevision.integrations.verl.reward also works)"
    )


if __name__ == "__main__":
    main()
