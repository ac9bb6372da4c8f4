"""The GRPO environment and the reward step without TRL: calls, errors, crashes, and episode assembly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codevision.agent import run_agent
from codevision.chat import ImageBudget
from codevision.demo import SIGN
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.rewards.base import session_crashes
from codevision.rewards.spec import RewardSpec
from codevision.sandbox import Sandbox
from codevision.train.environment import EnvironmentUseError, environment_class
from codevision.train.rollouts import episode, replies_of
from tests.conftest import RefusingSandbox
from tests.test_call_rules import call

BUDGET = ImageBudget(28, 3136, 1003520)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout=5.0, memory_mb=1024) as sb:
        yield sb


def completion(*replies: str) -> str:
    """A decoded Qwen-VL completion: replies separated by an observation turn (its text does not matter)."""
    observation = (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n…\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    return observation.join(replies) + "<|im_end|>"


def test_replies_are_read_between_the_turn_markers() -> None:
    assert replies_of(completion("a <tool_call>x</tool_call>", "<answer>b</answer>")) == [
        "a <tool_call>x</tool_call>",
        "<answer>b</answer>",
    ]
    assert replies_of("cut off in the midd") == ["cut off in the midd"]


def test_a_rollout_pays_what_the_agent_loop_episode_pays(sandbox: Sandbox) -> None:
    protocol = get_protocol()
    environment = environment_class(protocol, sandbox, BUDGET)()
    with pytest.raises(EnvironmentUseError, match="before reset"):
        environment.code_image_tool(code="print(1)")
    task = SIGN.task()
    environment.reset(images=task.load_images(), question=task.question, answers=task.answers, task_id=task.id)
    blocks = environment.code_image_tool(code="display(image.rotate(180))", image_index=0)
    kinds = [block["type"] for block in blocks]
    assert "image" in kinds and blocks[kinds.index("image")]["image"].size == environment.tools.model_images[1].size
    played = run_agent(task, ScriptedPolicy(list(SIGN.replies)), sandbox, protocol)
    trajectory = episode(environment, completion(*(turn.text for turn in played.turns)), protocol)
    assert [turn.observation for turn in trajectory.turns] == [turn.observation for turn in played.turns]
    spec = RewardSpec()
    assert spec.compute(task, trajectory).total == pytest.approx(spec.compute(task, played).total)
    environment._release()


def test_bad_calls_and_crashes_end_in_the_models_reply_not_the_run(sandbox: Sandbox) -> None:
    protocol = get_protocol()
    environment = environment_class(protocol, sandbox, BUDGET)()
    environment.reset(images=[SIGN.task().load_images()[0]], answers=["x"], task_id="t")
    bad_index = environment.code_image_tool(code="print(1)", image_index="first")
    assert bad_index[0]["text"].startswith("Error: In your code_image_tool call, image_index must be a whole number")
    unknown_argument = environment.code_image_tool(code="print(1)", colour="red")
    assert unknown_argument[0]["text"].startswith("1\n")
    assert [outcome.status for outcome in environment.outcomes] == ["ok"]
    crashed = environment.code_image_tool(code="import os\nos._exit(3)")
    text = " ".join(block.get("text", "") for block in crashed)
    assert "restarted" in text
    after = environment.code_image_tool(code="print(image.size)")
    assert any("(" in block.get("text", "") for block in after), after
    assert [outcome.status for outcome in environment.outcomes][-1] == "ok"
    # The next rollout starts clean.
    environment.reset(images=[SIGN.task().load_images()[0]], answers=["x"], task_id="u")
    assert environment.outcomes == [] and environment.calls == 0 and environment.tools.session is None
    trajectory = episode(environment, completion("<answer>x</answer>"), protocol)
    assert (trajectory.final_answer, trajectory.stop_reason) == ("x", "answered")


def test_a_crash_with_no_fresh_session_is_the_models_and_the_next_call_the_sandboxs(sandbox: Sandbox) -> None:
    """The crash stays a crash (no process credit), not an infrastructure failure that rewards excuse."""
    protocol = get_protocol()
    environment = environment_class(protocol, RefusingSandbox(sandbox, sessions=1), BUDGET)()
    environment.reset(images=[SIGN.task().load_images()[0]], answers=["x"], task_id="t")
    crashed = environment.code_image_tool(code="import os\nos._exit(3)")
    assert "could not start yet" in " ".join(block.get("text", "") for block in crashed)
    assert environment.tools.session is None and environment.trajectory.error is None
    after = environment.code_image_tool(code="print(1)")
    assert "could not run this call" in after[0]["text"]
    assert [outcome.status for outcome in environment.outcomes] == ["crashed", "error"]
    trajectory = episode(
        environment,
        completion(call({"code": "import os\nos._exit(3)"}), call({"code": "print(1)"}), "<answer>x</answer>"),
        protocol,
    )
    assert session_crashes(trajectory) == 1 and trajectory.stop_reason == "sandbox_error"


def test_a_protocol_without_tool_schemas_has_no_environment(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="declares no tool schema"):
        environment_class(get_protocol("direct"), sandbox, BUDGET)


@pytest.mark.parametrize(
    ("used", "correct", "paid"),
    [
        # Tools helped: 2/2 with a tool, 0/2 without; each correct tool rollout gets the gap.
        ([True, True, False, False], [True, True, False, False], [1.0, 1.0, 0.0, 0.0]),
        # Two correct without a tool: the question did not need them, nothing is paid.
        ([True, False, False, True], [True, True, True, False], [0.0, 0.0, 0.0, 0.0]),
        # One correct without a tool is allowed: gap 1/2 - 1/2 = 0.
        ([True, True, False, False], [True, False, True, False], [0.0, 0.0, 0.0, 0.0]),
        # No rollout went without tools: nothing to compare with, nothing is paid (as released).
        ([True, True, True, True], [True, False, False, False], [0.0, 0.0, 0.0, 0.0]),
        # Tools helped, one of three correct without: gap 1 - 1/3.
        ([True, False, False, False], [True, True, False, False], [2 / 3, 0.0, 0.0, 0.0]),
    ],
)
def test_the_group_necessity_term_is_the_released_one(used: list[bool], correct: list[bool], paid: list[float]) -> None:
    from codevision.rewards.codevision import group_necessity

    assert group_necessity(used, correct) == pytest.approx(paid)


def test_the_group_necessity_term_skips_rollouts_the_crop_gate_cut() -> None:
    from codevision.rewards.codevision import group_necessity

    used, correct = [True, True, False, False], [True, True, False, False]
    assert group_necessity(used, correct, [False, True, False, False]) == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="3 gate flags"):
        group_necessity(used, correct, [False] * 3)


def test_the_reward_step_pays_group_necessity_per_prompt(sandbox: Sandbox) -> None:
    from codevision.train.rollouts import RolloutReward

    protocol = get_protocol()
    task = SIGN.task()
    cls = environment_class(protocol, sandbox, BUDGET)
    rollouts = []
    for calls_tool in (True, False):
        environment = cls()
        environment.reset(images=task.load_images(), question=task.question, answers=task.answers, task_id=task.id)
        if calls_tool:
            environment.code_image_tool(code="display(image.rotate(180))", image_index=0)
        rollouts.append(environment)
    played = run_agent(task, ScriptedPolicy(list(SIGN.replies)), sandbox, protocol)
    texts = [completion(*(turn.text for turn in played.turns)), completion("<answer>wrong</answer>")]

    class Words:
        def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
            return texts[ids[0]]

    spec = RewardSpec.model_validate({"codevision": {"beta": 0.5}})
    reward = RolloutReward(spec, protocol, Words(), group_size=2)
    totals = reward(prompts=[[], []], completions=[[], []], completion_ids=[[0], [1]], environments=rollouts)
    per_trajectory = [spec.compute(task, trajectory) for trajectory, _, _ in reward.last]
    # Tool rollout right, no-tool rollout wrong: the gap of 1, times beta, goes to the tool rollout only.
    assert reward.last[0][2]["codevision.necessity"] == pytest.approx(0.5)
    assert reward.last[1][2]["codevision.necessity"] == 0.0
    assert totals[0] == pytest.approx(
        per_trajectory[0].total - per_trajectory[0].breakdown["codevision.necessity"] + 0.5
    )
    for environment in rollouts:
        environment._release()


def test_a_judge_settles_free_form_answers_and_its_outage_falls_back_to_the_rules(sandbox: Sandbox) -> None:
    import asyncio
    import socket

    from codevision.policies.fake_server import FakeOpenAIServer
    from codevision.scoring import LLMJudge
    from codevision.train.rollouts import JudgedRolloutReward

    protocol, task = get_protocol(), SIGN.task()
    environment = environment_class(protocol, sandbox, BUDGET)()
    # "verl" scoring leaves an answer that is not the reference to a judge.
    environment.reset(images=task.load_images(), question=task.question, answers=task.answers, source="verl")
    texts = [completion("<answer>the sign says it, in capitals</answer>")]

    class Words:
        def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
            return texts[ids[0]]

    spec = RewardSpec()
    logged: dict[str, float] = {}

    def score(judge: LLMJudge) -> tuple[float, JudgedRolloutReward]:
        reward = JudgedRolloutReward(spec, protocol, Words(), judge)
        call = reward(
            prompts=[[]],
            completions=[[]],
            completion_ids=[[0]],
            environments=[environment],
            log_metric=logged.__setitem__,
        )
        return asyncio.run(call)[0], reward

    rules = spec.compute(environment.task, episode(environment, texts[0], protocol)).total
    with FakeOpenAIServer(lambda body: "Correct") as server:
        judged, _ = score(LLMJudge(server.url, server.model, backoff=0.01))
        assert server.request_count == 1
    assert judged > rules and logged["reward/judge_fallbacks"] == 0.0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    fallback, reward = score(LLMJudge(dead, "judge", retries=1, backoff=0.01, timeout=2))
    assert fallback == pytest.approx(rules) and reward.fallbacks == 1 and logged["reward/judge_fallbacks"] == 1.0
    environment._release()


def test_a_subclass_that_overrides_the_call_is_used(sandbox: Sandbox) -> None:
    base = environment_class(get_protocol(), sandbox, BUDGET)
    seen: list[str] = []

    class Counting(base):  # type: ignore[misc, valid-type]
        def _call(self, name: str, arguments: dict) -> list | str:
            seen.append(name)
            return super()._call(name, arguments)

    environment = Counting()
    environment.reset(images=[SIGN.task().load_images()[0]], answers=["x"], task_id="t")
    environment.code_image_tool(code="print(1)")
    environment._release()
    assert seen == ["code_image_tool"]


def test_a_reply_takes_the_calls_trl_ran_and_rejected_calls_fail_as_in_evaluation(sandbox: Sandbox) -> None:
    """Two calls in one reply, then one with a bad index: evaluation under TRL rules and the reward step agree."""

    protocol = get_protocol(calls="trl")
    task = SIGN.task()
    replies = [
        call({"code": "print(image.size)"}) + call({"code": "display(image.rotate(180))"}),
        call({"code": "print(2)", "image_index": -1}),
        "<answer>STOP</answer>",
    ]
    played = run_agent(task, ScriptedPolicy(replies), sandbox, protocol)
    environment = environment_class(get_protocol(), sandbox, BUDGET)()
    environment.reset(images=task.load_images(), question=task.question, answers=task.answers, task_id=task.id)
    environment.code_image_tool(code="print(image.size)")
    environment.code_image_tool(code="display(image.rotate(180))")
    environment.code_image_tool(code="print(2)", image_index=-1)
    trajectory = episode(environment, completion(*replies), get_protocol())
    assert [len(turn.outcomes) for turn in trajectory.turns] == [2, 1, 0]
    assert [turn.observation for turn in trajectory.turns] == [turn.observation for turn in played.turns]
    assert [o.status for turn in trajectory.turns for o in turn.outcomes] == ["ok", "ok", "error"]
    assert (trajectory.final_answer, trajectory.stop_reason) == ("STOP", "answered")
    environment._release()


def test_a_sandbox_service_outage_is_one_failed_call_and_the_next_call_runs_in_a_fresh_session(
    sandbox: Sandbox,
) -> None:
    """Rollout workers on a `sandbox serve` URL: the service goes away mid-rollout and comes back. The
    call it missed is recorded (so later outcomes stay on their own calls), the model reads why, and
    the next call runs in a new session on the same service, which holds every image so far."""
    from codevision.sandbox import RemoteSandbox
    from codevision.sandbox.service import SandboxServer
    from codevision.train.rollouts import RolloutReward

    token = "t" * 32
    protocol = get_protocol()
    first = SandboxServer(sandbox, token).start()
    port = int(first.url.rsplit(":", 1)[1])
    with RemoteSandbox(first.url, token, timeout=5.0, retries=0) as remote:
        environment = environment_class(protocol, remote, BUDGET)()
        task = SIGN.task()
        environment.reset(images=task.load_images(), question=task.question, answers=task.answers, task_id=task.id)
        environment.code_image_tool(code="display(image.rotate(180))")
        first.close()
        failed = environment.code_image_tool(code="print('lost')")
        assert "could not run this call" in failed[0]["text"] and environment.tools.session is None
        with SandboxServer(sandbox, token, port=port):
            after = environment.code_image_tool(code="print(len(images), images[1].size)", image_index=1)
            environment._release()
    assert [o.status for o in environment.outcomes] == ["ok", "error", "ok"]
    assert environment.outcomes[2].stdout.startswith("2 ")
    assert any(block.get("text", "").startswith("2 ") for block in after)
    replies = [
        call({"code": "display(image.rotate(180))"}),
        call({"code": "print('lost')"}),
        call({"code": "print(len(images), images[1].size)", "image_index": 1}),
        "<answer>STOP</answer>",
    ]
    trajectory = episode(environment, completion(*replies), protocol)
    assert [[o.status for o in turn.outcomes] for turn in trajectory.turns] == [["ok"], ["error"], ["ok"], []]
    assert trajectory.turns[2].outcomes[0].stdout.startswith("2 ")
    assert trajectory.stop_reason == "sandbox_error" and "could not reach the sandbox server" in trajectory.error
    logged: dict[str, float] = {}
    reward = RolloutReward(RewardSpec(), protocol, None)
    reward.last = [(trajectory, 0.0, {})]
    reward._log(logged.__setitem__)
    assert logged["rollout/sandbox_failures"] == 1.0 and logged["rollout/tool_calls"] == 3.0


def test_the_crop_protocol_trains_through_the_same_environment_without_a_session() -> None:
    """A DeepEyes-style baseline: the crop tool zooms in on the shown copy's pixels, no sandbox needed."""
    from codevision.protocols.crop import TOOL_NAME

    protocol = get_protocol("crop")
    environment = environment_class(protocol, None, BUDGET)()
    task = SIGN.task()
    environment.reset(images=task.load_images(), question=task.question, answers=task.answers, task_id=task.id)
    shown = environment.tools.model_images[0].size
    box = [0, 0, shown[0] // 2, shown[1] // 2]
    blocks = getattr(environment, TOOL_NAME)(bbox_2d=box, image_index=0)
    images = [block["image"] for block in blocks if block["type"] == "image"]
    assert len(images) == 1 and environment.tools.session is None
    original = environment.trajectory.images[0].size
    assert environment.trajectory.images[1].size == (original[0] // 2, original[1] // 2)
    bad = getattr(environment, TOOL_NAME)(bbox_2d=box, image_index=5)
    assert "image_index 5 does not exist" in " ".join(block.get("text", "") for block in bad)
    replies = [call({"bbox_2d": box, "image_index": i}, name=TOOL_NAME) for i in (0, 5)]
    trajectory = episode(environment, completion(*replies, "<answer>STOP</answer>"), protocol)
    assert [[o.status for o in turn.outcomes] for turn in trajectory.turns] == [["ok"], ["error"], []]
    assert trajectory.turns[0].outcomes[0].image_indices == [1]
