"""The agent loop end to end: scripted policies, the real sandbox, every protocol and stop reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codevision.agent import Limits, arun_agent, run_agent
from codevision.chat import ImageBudget
from codevision.demo import EXAMPLES, RECEIPT
from codevision.policies import ReplayPolicy, ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.task import Task
from codevision.trajectory import ImagePart, Trajectory
from tests.conftest import RefusingSandbox, gradient_image


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=5.0, memory_mb=1024) as sb:
        yield sb


def call(code: str, image_index: int = 0) -> str:
    payload = {"name": "code_image_tool", "arguments": {"code": code, "image_index": image_index}}
    return f"<think>working</think>\n<tool_call>{json.dumps(payload)}</tool_call>"


def task_of(*images: Image.Image, question: str = "What is shown?", task_id: str = "t1") -> Task:
    return Task.from_images(list(images), id=task_id, question=question, answers=["42"], source="unit")


def test_bundled_example_runs_end_to_end(sandbox: Sandbox) -> None:
    trajectory = run_agent(RECEIPT.task(), ScriptedPolicy(list(RECEIPT.replies)), sandbox, get_protocol("codevision"))
    assert trajectory.stop_reason == "answered", trajectory.error
    assert trajectory.final_answer == RECEIPT.answer
    assert [turn.outcomes[0].image_indices for turn in trajectory.turns[:2]] == [[1], [2]]
    assert [img.origin for img in trajectory.images] == ["input", "tool", "tool"]
    assert trajectory.images[1].size == (640, 420) and trajectory.images[2].size == (480, 140)
    rotate, crop = trajectory.turns[0].outcomes[0].ops[0], trajectory.turns[1].outcomes[0].ops[0]
    assert rotate.name == "rotate" and rotate.args["angle_ccw"] == 90.0
    assert crop.name == "crop" and crop.args["box"] == [370, 292, 610, 362] and crop.operand.origin == 0
    # The observation shows each produced image, by index, to the model.
    shown = [
        part.index for msg in trajectory.turns[0].observation for part in msg.content if isinstance(part, ImagePart)
    ]
    assert shown == [1]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_every_bundled_example_is_answered_correctly(sandbox: Sandbox, example: object) -> None:
    trajectory = run_agent(example.task(), ScriptedPolicy(list(example.replies)), sandbox, get_protocol("codevision"))  # type: ignore[attr-defined]
    assert trajectory.stop_reason == "answered" and trajectory.final_answer == example.answer  # type: ignore[attr-defined]
    assert all(o.status == "ok" for turn in trajectory.turns for o in turn.outcomes)


def test_trajectory_round_trips_exactly(sandbox: Sandbox, tmp_path: Path) -> None:
    trajectory = run_agent(RECEIPT.task(), ScriptedPolicy(list(RECEIPT.replies)), sandbox, get_protocol("codevision"))
    path = trajectory.save(tmp_path / "receipt")
    loaded = Trajectory.load(path)
    assert loaded.model_dump() == trajectory.model_dump()
    for index in range(len(trajectory.images)):
        np.testing.assert_array_equal(np.asarray(loaded.image(index)), np.asarray(trajectory.image(index)))
    assert Trajectory.load(tmp_path / "receipt").model_dump_json() == trajectory.model_dump_json()


def test_errors_go_back_to_the_model_and_it_can_recover(sandbox: Sandbox) -> None:
    replies = [
        '<tool_call>{"name": "code_image_tool", "arguments": {"code": "print(1"</tool_call>',
        call("x = 1 / 0"),
        call("print(image.size)"),
        "<answer>42</answer>",
    ]
    trajectory = run_agent(task_of(gradient_image()), ScriptedPolicy(replies), sandbox, get_protocol("codevision"))
    assert trajectory.stop_reason == "answered" and trajectory.final_answer == "42"
    first, second, third = trajectory.turns[:3]
    assert first.issues and not first.actions and first.observation
    assert second.outcomes[0].status == "error" and "ZeroDivisionError" in (second.outcomes[0].error or "")
    assert "ZeroDivisionError" in second.observation[0].text
    assert third.outcomes[0].stdout == "(64, 48)\n"


def test_a_crashed_session_is_replaced_and_the_model_is_told(sandbox: Sandbox) -> None:
    replies = [
        call("kept = 1\ndisplay(image.rotate(90, expand=True))"),
        call("import os\nos._exit(1)"),
        call("print('kept' in globals(), image.size, len(images))", 1),
        "<answer>done</answer>",
    ]
    trajectory = run_agent(task_of(gradient_image()), ScriptedPolicy(replies), sandbox, get_protocol("codevision"))
    crash = trajectory.turns[1].outcomes[0]
    assert crash.status == "crashed" and "restarted" in (crash.error or "")
    assert trajectory.turns[2].outcomes[0].stdout == "False (48, 64) 2\n"
    assert trajectory.stop_reason == "answered"


CRASH_AFTER_A_TOOL_IMAGE = [
    call("display(image.rotate(90, expand=True))"),
    call("import os\nos._exit(1)"),
    call("print(len(images), images[0].size)"),
    "<answer>42</answer>",
]


def crash_in(refusing: RefusingSandbox) -> Trajectory:
    """The episode of a model that makes an image, crashes its session, then needs a session again."""
    policy = ScriptedPolicy(CRASH_AFTER_A_TOOL_IMAGE)
    return run_agent(task_of(gradient_image()), policy, refusing, get_protocol("codevision"))  # type: ignore[arg-type]


def test_a_crash_whose_fresh_session_cannot_hold_every_image_continues_from_the_inputs(sandbox: Sandbox) -> None:
    trajectory = crash_in(RefusingSandbox(sandbox, max_images=1))
    crash = trajectory.turns[1].outcomes[0]
    assert crash.status == "crashed"
    assert "could not start (SandboxError: no session can start now)" in (crash.error or "")
    assert "only the 1 input images" in (crash.error or "")
    assert trajectory.turns[2].outcomes[0].stdout == "1 (64, 48)\n"
    assert trajectory.stop_reason == "answered" and trajectory.final_answer == "42"


def test_a_crash_stays_the_models_when_no_fresh_session_can_start(sandbox: Sandbox) -> None:
    """The crash is recorded as the model's; only the next call, which needs a session, fails as the sandbox's."""
    trajectory = crash_in(RefusingSandbox(sandbox, sessions=1))
    crash = trajectory.turns[1].outcomes[0]
    assert crash.status == "crashed" and "the next call tries again" in (crash.error or "")
    assert "could not start yet" in trajectory.turns[1].observation[0].text
    assert trajectory.stop_reason == "sandbox_error" and "no session can start now" in (trajectory.error or "")
    assert len(trajectory.turns) == 3


def test_a_crash_then_an_answer_needs_no_fresh_session(sandbox: Sandbox) -> None:
    refusing = RefusingSandbox(sandbox, sessions=1)
    replies = [call("import os\nos._exit(1)"), "<answer>42</answer>"]
    trajectory = run_agent(task_of(gradient_image()), ScriptedPolicy(replies), refusing, get_protocol("codevision"))  # type: ignore[arg-type]
    assert trajectory.turns[0].outcomes[0].status == "crashed"
    assert trajectory.stop_reason == "answered" and trajectory.final_answer == "42"


@pytest.mark.parametrize(
    ("replies", "limits", "reason"),
    [
        ([call("print(1)")] * 3, Limits(max_turns=2), "max_turns"),
        (["I am not sure what to do."], Limits(), "no_action"),
        ([call("print(1)")], Limits(), "model_error"),
        ([call("print(" + "1 + " * 50 + "1)")] * 4, Limits(max_total_tokens=60), "max_tokens"),
    ],
    ids=["max-turns", "no-action", "model-error", "max-tokens"],
)
def test_stop_reasons(sandbox: Sandbox, replies: list[str], limits: Limits, reason: str) -> None:
    trajectory = run_agent(
        task_of(gradient_image()), ScriptedPolicy(replies), sandbox, get_protocol("codevision"), limits
    )
    assert trajectory.stop_reason == reason
    if reason == "model_error":
        assert "script has 1 replies" in (trajectory.error or "")
    assert trajectory.final_answer is None


def test_sandbox_outage_ends_with_sandbox_error() -> None:
    with Sandbox(workers=1, max_sessions=1, queue_timeout=0.2) as small, small.session():
        trajectory = run_agent(
            task_of(gradient_image()), ScriptedPolicy(["<answer>1</answer>"]), small, get_protocol("codevision")
        )
    assert trajectory.stop_reason == "sandbox_error"
    assert "SandboxBusy" in (trajectory.error or "")


def test_images_beyond_the_context_budget_are_named_not_shown(sandbox: Sandbox) -> None:
    replies = [call("display(image, image)"), "<answer>x</answer>"]
    limits = Limits(max_images_in_context=2)
    trajectory = run_agent(
        task_of(gradient_image()), ScriptedPolicy(replies), sandbox, get_protocol("codevision"), limits
    )
    observation = trajectory.turns[0].observation
    assert [p.index for m in observation for p in m.content if isinstance(p, ImagePart)] == [1]
    assert "[image 2 not shown: at most 2 images per conversation]" in "".join(m.text for m in observation)


def test_model_sees_images_sized_like_the_qwen_processor(sandbox: Sandbox) -> None:
    seen: list[tuple[int, int]] = []

    def reply(messages: object) -> str:
        return "<answer>ok</answer>"

    class Recording(ScriptedPolicy):
        async def generate(self, messages, images, *, max_tokens):  # type: ignore[no-untyped-def]
            seen.extend(img.size for img in images)
            return await super().generate(messages, images, max_tokens=max_tokens)

    big = gradient_image(3000, 2000)
    limits = Limits(image_max_pixels=256 * 28 * 28)
    trajectory = run_agent(task_of(big), Recording(reply), sandbox, get_protocol("codevision"), limits)
    width, height = seen[0]
    assert width % 28 == 0 and height % 28 == 0 and width * height <= 256 * 28 * 28
    assert trajectory.images[0].size == (3000, 2000) and trajectory.images[0].model_size == (width, height)


class KnowsItsProcessor(ScriptedPolicy):
    """A policy whose model's processor sizes images with factor 32 (a local Qwen3-VL)."""

    budget = ImageBudget(32, 64 * 32 * 32, 256 * 32 * 32)

    async def image_budget(self) -> ImageBudget:
        return self.budget


def test_a_policys_own_budget_sizes_the_images_and_is_recorded(sandbox: Sandbox) -> None:
    replies = [call("display(image.crop((0, 0, 120, 40)))"), "<answer>ok</answer>"]
    trajectory = run_agent(task_of(gradient_image(300, 200)), KnowsItsProcessor(replies), sandbox, get_protocol())
    budget = KnowsItsProcessor.budget
    assert trajectory.metadata["image_budget"] == {"factor": 32, "min_pixels": 65536, "max_pixels": 262144}
    assert [record.model_size for record in trajectory.images] == [(320, 224), (448, 160)]
    assert all(budget.target(*record.size) == record.model_size for record in trajectory.images)
    # Without a budget of its own, a policy's images are sized by the limits, as before.
    plain = run_agent(task_of(gradient_image(300, 200)), ScriptedPolicy(replies), sandbox, get_protocol())
    assert plain.metadata["image_budget"] == Limits().image_budget.to_dict()
    assert [record.model_size for record in plain.images] == [(308, 196), (112, 28)]
    given = Limits().with_image_budget(budget)
    served = run_agent(task_of(gradient_image(300, 200)), ScriptedPolicy(replies), sandbox, get_protocol(), given)
    assert [record.model_size for record in served.images] == [(320, 224), (448, 160)]


def test_limits_that_contradict_the_policys_budget_are_refused() -> None:
    task = task_of(gradient_image())
    contradicting = Limits(image_factor=28)
    with pytest.raises(ValueError, match="set the budget on the policy"):
        run_agent(task, KnowsItsProcessor(["<answer>x</answer>"]), None, get_protocol("direct"), contradicting)
    same = Limits().with_image_budget(KnowsItsProcessor.budget)
    trajectory = run_agent(task, KnowsItsProcessor(["\\boxed{x}"]), None, get_protocol("direct"), same)
    assert trajectory.stop_reason == "answered"


def test_many_trajectories_run_concurrently_on_one_sandbox(sandbox: Sandbox) -> None:
    async def main() -> list[Trajectory]:
        tasks = [task_of(gradient_image(40 + i, 30), task_id=f"t{i}") for i in range(12)]
        replies = [call("print(image.size[0])"), "<answer>ok</answer>"]
        return await asyncio.gather(
            *(arun_agent(t, ScriptedPolicy(replies), sandbox, get_protocol("codevision")) for t in tasks)
        )

    trajectories = asyncio.run(main())
    assert [t.turns[0].outcomes[0].stdout for t in trajectories] == [f"{40 + i}\n" for i in range(12)]
    assert all(t.stop_reason == "answered" for t in trajectories)


def test_direct_protocol_needs_no_sandbox() -> None:
    trajectory = run_agent(
        task_of(gradient_image()), ScriptedPolicy(["It is \\boxed{42}."]), None, get_protocol("direct")
    )
    assert (trajectory.stop_reason, trajectory.final_answer) == ("answered", "42")


def test_crop_protocol_zooms_without_a_sandbox() -> None:
    replies = [
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0.5, 0.5, 1.0, 1.0]}}</tool_call>',
        "<answer>ok</answer>",
    ]
    trajectory = run_agent(task_of(gradient_image(64, 48)), ScriptedPolicy(replies), None, get_protocol("crop"))
    assert trajectory.stop_reason == "answered"
    assert trajectory.images[1].size == (32, 24)
    expected = np.asarray(gradient_image(64, 48))[24:48, 32:64]
    np.testing.assert_array_equal(np.asarray(trajectory.image(1)), expected)


def test_crop_boxes_are_read_in_the_pixels_the_model_saw() -> None:
    big = gradient_image(2800, 1400)
    limits = Limits(image_max_pixels=1400 * 700)  # the model sees a 1400x700 copy
    replies = [
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [700, 350, 1400, 700]}}</tool_call>',
        "<answer>ok</answer>",
    ]
    trajectory = run_agent(task_of(big), ScriptedPolicy(replies), None, get_protocol("crop"), limits)
    assert trajectory.images[0].model_size == (1400, 700)
    assert trajectory.images[1].size == (1400, 700)  # the lower-right quarter of the original
    np.testing.assert_array_equal(np.asarray(trajectory.image(1)), np.asarray(big)[700:1400, 1400:2800])


def test_replaying_a_trajectory_reproduces_its_tool_results(sandbox: Sandbox) -> None:
    task = RECEIPT.task()
    original = run_agent(task, ScriptedPolicy(list(RECEIPT.replies)), sandbox, get_protocol("codevision"))
    replayed = run_agent(task, ReplayPolicy(original), sandbox, get_protocol("codevision"))
    assert [t.text for t in replayed.turns] == [t.text for t in original.turns]
    assert replayed.final_answer == original.final_answer
    for index in range(len(original.images)):
        np.testing.assert_array_equal(np.asarray(replayed.image(index)), np.asarray(original.image(index)))


def test_code_protocols_refuse_to_run_without_a_sandbox() -> None:
    with pytest.raises(ValueError, match="needs a sandbox"):
        run_agent(task_of(gradient_image()), ScriptedPolicy(["<answer>1</answer>"]), None, get_protocol("codevision"))


def test_run_agent_inside_an_event_loop_points_to_arun_agent(sandbox: Sandbox) -> None:
    async def main() -> None:
        run_agent(task_of(gradient_image()), ScriptedPolicy(["<answer>1</answer>"]), sandbox, get_protocol("direct"))

    with pytest.raises(RuntimeError, match="await arun_agent"):
        asyncio.run(main())


def test_unreadable_task_images_name_the_task_and_file(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    missing = Task(id="m1", images=["nowhere.png"], question="q")
    broken = Task(id="b1", images=["broken.png"], question="q")
    with pytest.raises(FileNotFoundError, match=r"task 'm1': image file .*nowhere.png does not exist"):
        missing.load_images(tmp_path)
    with pytest.raises(ValueError, match=r"task 'b1': image file .*broken.png cannot be read"):
        broken.load_images(tmp_path)


def test_text_that_is_not_valid_unicode_round_trips(tmp_path: Path) -> None:
    """A lone surrogate (a model server's JSON escape, a command line in another encoding) is stored as an
    escape and loads back unchanged; nothing is left behind when a save fails."""
    trajectory = Trajectory(task_id="u", protocol="codevision", question="caf\udce9?", final_answer="\ud800 ok")
    trajectory.save(tmp_path / "t")
    back = Trajectory.load(tmp_path / "t")
    assert (back.question, back.final_answer) == ("caf\udce9?", "\ud800 ok")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["images", "trajectory.json"]
