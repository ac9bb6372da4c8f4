"""What every reward returns, and the view of a trajectory's runtime trace the rewards share.

Rewards read what ran, never what was written: the ops come from the sandbox's trace (an op that
sits in a comment or in a branch that never executes cannot appear there), and tool calls are
counted from their outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codevision.trajectory import Action, ToolOutcome, Trajectory


@dataclass(frozen=True)
class RewardResult:
    """A scalar reward with the terms it was summed from (``breakdown``) and what a reader needs to audit it."""

    total: float
    breakdown: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One executed tool call: where it happened, what was asked and what it did."""

    turn: int
    action: Action | None
    outcome: ToolOutcome


def calls(trajectory: Trajectory) -> list[Call]:
    """Every tool call that produced an outcome, in order."""
    found = []
    for turn in trajectory.turns:
        for outcome in turn.outcomes:
            action = turn.actions[outcome.action] if 0 <= outcome.action < len(turn.actions) else None
            found.append(Call(turn.index, action, outcome))
    return found


#: Run statuses that mean the model's code took its session down (a limit, a crash, a hostile frame):
#: that run's trace is lost, so nothing it did can be checked.
CRASHED = ("crashed", "killed")


def session_crashes(trajectory: Trajectory) -> int:
    """How many runs of the trajectory ended with the session killed or crashed by the model's code.

    Process rewards pay nothing to such a trajectory: a crash discards the crashed run's op trace,
    and with it the penalties the trace would have earned.
    """
    return sum(1 for turn in trajectory.turns for outcome in turn.outcomes if outcome.status in CRASHED)
