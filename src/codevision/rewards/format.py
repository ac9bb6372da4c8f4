"""Format reward: the structure the protocol asks of every reply, checked on the raw text.

A reply that breaks the structure costs a turn at inference (the parser repairs what it can, but a
call written inside ``<think>`` never runs, and an answer next to a call is set aside), so the
reward holds the policy to the written form rather than to what the parser could salvage:

* ``think_first``: every reply opens with ``<think>``;
* ``balanced_think``: think tags open and close in pairs, never nested;
* ``one_step_per_turn``: after thinking, each reply either calls the tool or answers, not both and
  not neither;
* ``single_final_answer``: the last reply holds exactly one ``<answer>…</answer>``, at its very end;
* ``no_action_after_answer``: no reply that answers, or comes after an answer, calls a tool.
"""

from __future__ import annotations

import re
from functools import cache

from pydantic import BaseModel, ConfigDict

from codevision.protocols.registry import get_protocol
from codevision.protocols.toolcalls import find_blocks, split_think
from codevision.rewards.base import RewardResult
from codevision.trajectory import Trajectory

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>.*?</answer>", re.DOTALL | re.IGNORECASE)
CHECKS = ("think_first", "balanced_think", "one_step_per_turn", "single_final_answer", "no_action_after_answer")


class FormatConfig(BaseModel):
    """``partial``: the share of checks passed instead of all-or-nothing; ``require_think``: whether
    replies must think first (off for models trained without thinking)."""

    model_config = ConfigDict(extra="forbid")

    partial: bool = False
    require_think: bool = True


@cache
def _call_tag(protocol: str) -> str | None:
    return getattr(get_protocol(protocol), "call_tag", None)


def _balanced(text: str) -> bool:
    depth = 0
    for tag in _THINK_TAG.finditer(text):
        depth += -1 if tag.group(1) else 1
        if depth not in (0, 1):
            return False
    return depth == 0


def format_reward(trajectory: Trajectory, config: FormatConfig | None = None) -> RewardResult:
    """1.0 when every check holds (or the share that holds with ``partial``); failures are listed in details."""
    config = config or FormatConfig()
    tag = _call_tag(trajectory.protocol)
    passed = dict.fromkeys(CHECKS, True)
    if not trajectory.turns:
        passed = dict.fromkeys(CHECKS, False)
    answered = False
    for position, turn in enumerate(trajectory.turns):
        text = turn.text
        visible, _ = split_think(text)
        n_calls = len(find_blocks(visible, tag)) if tag else 0
        answers = _ANSWER.findall(visible)
        if config.require_think and not text.lstrip().lower().startswith("<think>"):
            passed["think_first"] = False
        if not _balanced(text):
            passed["balanced_think"] = False
        if (n_calls > 0) == bool(answers) or n_calls > 1:
            passed["one_step_per_turn"] = False
        if (answered or answers) and n_calls:
            passed["no_action_after_answer"] = False
        last = position == len(trajectory.turns) - 1
        if last and (len(answers) != 1 or not visible.rstrip().lower().endswith("</answer>")):
            passed["single_final_answer"] = False
        if not last and answers:
            passed["single_final_answer"] = False
        answered = answered or bool(answers)
    if not config.require_think:
        del passed["think_first"]
    # The breakdown adds up to the total: each check's share with ``partial``, one all-or-nothing term without.
    if config.partial:
        breakdown = {name: float(ok) / len(passed) for name, ok in passed.items()}
    else:
        breakdown = {"all_checks": float(all(passed.values()))}
    details = {"checks": passed, "failed": [name for name, ok in passed.items() if not ok]}
    return RewardResult(sum(breakdown.values()), breakdown, details)
