"""Call rules: evaluation can read and answer tool calls exactly as TRL's GRPO tool loop does.

Under ``trl`` rules a reply has the calls TRL's Qwen response template reads (strict JSON, closed
tags, all of a reply's calls), never a problem message, and an unreadable call ends the episode.
The replies below are those whose reading differs between the two rules; the engine tests check
the same table against TRL's own parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from codevision.agent import run_agent
from codevision.demo import SIGN
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox


def call(arguments: object, name: str = "code_image_tool") -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


RAW_NEWLINE = '<tool_call>\n{"name": "code_image_tool", "arguments": {"code": "x = 1\ndisplay(image)"}}\n</tool_call>'

#: reply -> (action kinds TRL's loop runs, answer) under ``trl`` rules.
TRL_READINGS: dict[str, tuple[list[str], str | None]] = {
    "<think>\nturn it</think>\n" + call({"code": "display(image)", "image_index": 0}): (["code"], None),
    call({"code": "a"}) + "\n" + call({"code": "b"}): (["code", "code"], None),
    RAW_NEWLINE: ([], None),
    '<tool_call>\n{"name": "code_image_tool", "arguments": {"code": "a"}}': ([], None),
    "<think>" + call({"code": "a"}) + "</think><answer>B</answer>": ([], "B"),
    call({"code": "a"}) + "<answer>B</answer>": (["code"], None),
    '<tool_call>\n```json\n{"name": "code_image_tool", "arguments": {"code": "a"}}\n```\n</tool_call>': ([], None),
    "<tool_call>\n{'name': 'code_image_tool', 'arguments': {'code': 'a'}}\n</tool_call>": ([], None),
    call({"code": "a"}) + '<tool_call>{"name": x}</tool_call><answer>C</answer>': ([], "C"),
    '<tool_call>\n{"name": "code_image_tool", "arguments": {"code": "a"}} and more\n</tool_call>': ([], None),
    '<TOOL_CALL>\n{"name": "code_image_tool", "arguments": {"code": "a"}}\n</TOOL_CALL>': ([], None),
    call('{"code": "a"}'): (["rejected"], None),
    '<tool_call>\n{"name": "code_image_tool"}\n</tool_call>': (["rejected"], None),
    call({"code": "a"}, name="zoom"): (["rejected"], None),
    call({"code": "a", "image_index": "first"}): (["rejected"], None),
    "<think>still thinking " + call({"code": "a"}): ([], None),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout=5.0, memory_mb=1024) as sb:
        yield sb


@pytest.mark.parametrize("reply", list(TRL_READINGS))
def test_trl_rules_read_a_reply_as_trls_tool_loop_does(reply: str) -> None:
    parsed = get_protocol("codevision", calls="trl").parse(reply)
    kinds, answer = TRL_READINGS[reply]
    assert [action.kind for action in parsed.actions] == kinds
    assert parsed.answer == answer
    assert parsed.issues == []
    assert all(action.error for action in parsed.actions if action.kind == "rejected")


def test_lenient_rules_are_unchanged_by_the_trl_rules() -> None:
    lenient = get_protocol("codevision")
    repaired = lenient.parse(RAW_NEWLINE)
    assert [action.code for action in repaired.actions] == ["x = 1\ndisplay(image)"]
    two = lenient.parse(call({"code": "a"}) + call({"code": "b"}))
    assert len(two.actions) == 1 and "2 calls in one turn" in two.issues[0]


def test_an_unreadable_call_ends_the_episode_under_trl_rules_and_is_repaired_otherwise(sandbox: Sandbox) -> None:
    task = SIGN.task()
    replies = [RAW_NEWLINE, "<answer>STOP</answer>"]
    lenient = run_agent(task, ScriptedPolicy(replies), sandbox, get_protocol("codevision"))
    assert [len(turn.outcomes) for turn in lenient.turns] == [1, 0]
    assert lenient.stop_reason == "answered"
    trl = run_agent(task, ScriptedPolicy(replies), sandbox, get_protocol("codevision", calls="trl"))
    assert len(trl.turns) == 1 and trl.turns[0].outcomes == [] and trl.turns[0].observation == []
    assert (trl.stop_reason, trl.final_answer) == ("no_action", None)
    assert trl.metadata["call_rules"] == "trl" and "call_rules" not in lenient.metadata


def test_every_call_of_a_reply_runs_under_trl_rules_each_result_its_own_message(sandbox: Sandbox) -> None:
    protocol = get_protocol("codevision", calls="trl")
    reply = call({"code": "print(image.size)"}) + call({"code": "display(image.rotate(180))"})
    played = run_agent(SIGN.task(), ScriptedPolicy([reply, "<answer>STOP</answer>"]), sandbox, protocol)
    first = played.turns[0]
    assert [outcome.status for outcome in first.outcomes] == ["ok", "ok"]
    assert [message.role for message in first.observation] == ["tool", "tool"]
    hint = protocol.continue_hint
    assert all(message.text.endswith(hint) for message in first.observation)
    assert first.outcomes[1].image_indices == [1]
    assert played.final_answer == "STOP"


def test_a_rejected_call_fails_as_a_tool_result_and_the_episode_goes_on(sandbox: Sandbox) -> None:
    protocol = get_protocol("codevision", calls="trl")
    replies = [call({"code": "print(1)", "image_index": "first"}), "<answer>STOP</answer>"]
    played = run_agent(SIGN.task(), ScriptedPolicy(replies), sandbox, protocol)
    (outcome,) = played.turns[0].outcomes
    assert outcome.status == "error" and "image_index must be a whole number" in (outcome.error or "")
    assert played.turns[0].issues == [] and played.turns[0].observation[0].role == "tool"
    assert played.final_answer == "STOP"


def test_call_rules_apply_only_to_protocols_with_json_tool_calls() -> None:
    assert get_protocol("crop", calls="trl").calls == "trl"
    with pytest.raises(ValueError, match=r"no JSON tool calls.*codevision, crop"):
        get_protocol("code-tags", calls="trl")
    with pytest.raises(ValueError, match="unknown call rules"):
        get_protocol("codevision", calls="strictest")  # type: ignore[arg-type]
    protocol = get_protocol("codevision", system_prompt="Be brief.")
    moved = protocol.under_rules("trl")
    assert (moved.calls, moved.system_prompt(), protocol.calls) == ("trl", "Be brief.", "lenient")


def test_many_calls_in_one_reply_under_trl_rules_earn_no_more_than_one(sandbox: Sandbox) -> None:
    """TRL runs every call of a reply, so a policy could sweep rotations in one turn; the reward counts each
    call and each shown image, so the sweep pays less than the one right call."""
    from codevision.rewards.spec import RewardSpec

    protocol = get_protocol("codevision", calls="trl")
    task = SIGN.task()
    right_call, answer = SIGN.replies
    sweep = "".join(call({"code": f"display(image.rotate({angle}, expand=True))"}) for angle in (90, 180, 270, 0) * 2)
    honest = run_agent(task, ScriptedPolicy([right_call, answer]), sandbox, protocol)
    swept = run_agent(task, ScriptedPolicy([sweep, answer]), sandbox, protocol)
    assert len(swept.turns[0].outcomes) == 8
    spec = RewardSpec()
    assert spec.compute(task, swept).total < spec.compute(task, honest).total
