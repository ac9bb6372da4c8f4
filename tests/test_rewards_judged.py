"""Judge-backed rewards against the scripted fake server over 127.0.0.1.

The synchronous rewards are pinned in ``test_rewards.py``; here the judges are real HTTP clients,
so what they are asked, when, and what becomes of their replies is checked on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from codevision.agent import Limits
from codevision.policies.fake_server import FakeOpenAIServer
from codevision.rewards import (
    FaithfulnessJudge,
    RewardSpec,
    faithfulness_reward,
    faithfulness_reward_judged,
    outcome_reward,
    outcome_reward_judged,
)
from codevision.sandbox import ImageOp, ImageRef
from codevision.scoring import JudgeError, LLMJudge
from codevision.task import Task
from codevision.trajectory import Action, ImageRecord, ToolOutcome, Trajectory, Turn
from tests.conftest import episode, final, gradient_image, zoom_call

T = TypeVar("T")
W, H = 64, 48
QUESTION = "What does the sign say?"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def prompt_of(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def make_task(*, answer: str = "STOP", bbox: tuple[float, float, float, float] | None = None) -> Task:
    return Task(
        id="t",
        question=QUESTION,
        answers=[answer],
        source="verl",
        bboxes=[bbox] if bbox else [],
        metadata={"scoring": "codevision", "task_kind": "ocr"},
    )


def code_trajectory(answer: str, n_calls: int = 1) -> Trajectory:
    """``n_calls`` code calls, each producing one image with its own pixels, then the answer."""
    trajectory = Trajectory(task_id="t", protocol="codevision")
    trajectory.add_image(gradient_image(W, H), "input")
    for i in range(n_calls):
        index = trajectory.add_image(Image.new("RGB", (20 + i, 10), (40 * i, 90, 200)), "tool", turn=i)
        ops = [
            ImageOp(
                name="crop",
                args={"box": [0, 0, 20 + i, 10]},
                operand=ImageRef(id=0, size=(W, H), origin=0),
                result=ImageRef(id=10 + i, size=(20 + i, 10), origin=0),
            )
        ]
        trajectory.turns.append(
            Turn(
                index=i,
                text='<think>look</think><tool_call>{"name": "code_image_tool", "arguments": {"code": "x"}}'
                "</tool_call>",
                actions=[Action(kind="code", code=f"crop {i}", image_index=0)],
                outcomes=[ToolOutcome(action=0, status="ok", ops=ops, image_indices=[index])],
            )
        )
    trajectory.turns.append(Turn(index=n_calls, text=f"<think>done</think><answer>{answer}</answer>", answer=answer))
    trajectory.final_answer = answer
    return trajectory


def crop_trajectory(
    *boxes: list[float], statuses: list[str] | None = None, model_size: tuple[int, int] | None = None
) -> Trajectory:
    """The fixed-crop protocol: the model names boxes (in the size it was shown), the tool crops; no op trace."""
    turns = []
    images = [ImageRecord(index=0, origin="input", size=(W, H), model_size=model_size)]
    for i, box in enumerate(boxes):
        status = (statuses or ["ok"] * len(boxes))[i]
        produced = [len(images)] if status == "ok" else []
        if produced:
            images.append(ImageRecord(index=len(images), origin="tool", turn=i, size=(10, 10)))
        turns.append(
            Turn(
                index=i,
                text="<think>zoom</think><tool_call>{}</tool_call>",
                actions=[Action(kind="crop", bbox=box, image_index=0)],
                outcomes=[ToolOutcome(action=0, status=status, image_indices=produced)],
            )
        )
    turns.append(Turn(index=len(turns), text="<think>ok</think><answer>STOP</answer>", answer="STOP"))
    return Trajectory(task_id="t", protocol="crop", turns=turns, images=images, final_answer="STOP")


def llm_judge(server: FakeOpenAIServer) -> LLMJudge:
    return LLMJudge(server.url, server.model, backoff=0.01)


def vlm_judge(server: FakeOpenAIServer, cache: Path | None = None, **options: Any) -> FaithfulnessJudge:
    return FaithfulnessJudge(server.url, server.model, cache=cache, backoff=0.01, **options)


# ---------------------------------------------------------------------- outcome
def test_outcome_asks_the_judge_only_where_the_rule_leaves_it_open() -> None:
    with FakeOpenAIServer(lambda body: "Correct") as server:
        exact = run(outcome_reward_judged(make_task(answer="7"), code_trajectory("7"), llm_judge(server)))
        assert server.request_count == 0  # the rule decided
        judged = run(outcome_reward_judged(make_task(), code_trajectory("Stop"), llm_judge(server)))
        assert server.request_count == 1
        prompt = prompt_of(server.requests[0].body or {})
    assert exact.total == 1.0 and not exact.details["judged"]
    assert judged.total == 1.0 and judged.breakdown == {"accuracy": 1.0}
    assert judged.details["judged"] and judged.details["rule"] == "codevision-rule+judge"
    assert not judged.details["needs_judge"] and "judge_error" not in judged.details
    assert QUESTION in prompt and "Reference text: STOP" in prompt


def test_outcome_judge_verdict_can_take_credit_away() -> None:
    with FakeOpenAIServer(lambda body: "Incorrect") as server:
        result = run(outcome_reward_judged(make_task(), code_trajectory("Stop"), llm_judge(server)))
    assert result.total == 0.0 and result.details["judged"] and not result.details["correct"]


def test_outcome_without_a_judge_is_the_rule_alone() -> None:
    task, trajectory = make_task(), code_trajectory("Stop")
    assert run(outcome_reward_judged(task, trajectory, None)) == outcome_reward(task, trajectory)


def test_an_unreadable_outcome_verdict_is_recorded_not_judged() -> None:
    with FakeOpenAIServer(lambda body: "hard to say") as server:
        result = run(outcome_reward_judged(make_task(), code_trajectory("Stop"), llm_judge(server)))
    assert result.details["needs_judge"] and not result.details["judged"]
    assert "no readable verdict" in result.details["judge_error"]


def test_an_unreachable_outcome_judge_raises() -> None:
    with FakeOpenAIServer(lambda body: "Correct", faults=[400]) as server, pytest.raises(JudgeError, match="400"):
        run(outcome_reward_judged(make_task(), code_trajectory("Stop"), llm_judge(server)))


# ---------------------------------------------------------------------- faithfulness judge
@pytest.mark.parametrize(("reply", "grade"), [("1", 1.0), ("Mostly: 0.75", 0.75), ("0.25", 0.25), ("0", 0.0)])
def test_vlm_grades_flow_into_the_process_score(reply: str, grade: float) -> None:
    with FakeOpenAIServer(lambda body: reply) as server:
        result = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP", 2), vlm_judge(server)))
        assert server.request_count == 2  # one per image-producing call
    assert result.breakdown["process"] == pytest.approx(grade)
    assert result.details["scores"] == {"0": grade, "1": grade}
    assert result.details["faithful_share"] == (1.0 if grade >= 0.75 else 0.0)
    assert result.details["judge_unreadable"] == {}


def test_vlm_judge_sees_only_the_question_and_the_produced_images() -> None:
    trajectory = code_trajectory("SECRET-ANSWER", 1)
    task = make_task(answer="REFERENCE-TEXT")
    with FakeOpenAIServer(lambda body: "1") as server:
        run(faithfulness_reward_judged(task, trajectory, vlm_judge(server)))
        request = server.requests[0]
    body = request.body or {}
    text = str(body["messages"])
    assert body["temperature"] == 0.0
    assert [message["role"] for message in body["messages"]] == ["user"]
    assert QUESTION in prompt_of(body)
    assert "SECRET-ANSWER" not in text and "REFERENCE-TEXT" not in text and "look" not in text
    images = request.images()
    assert len(images) == 1 and images[0].size == (20, 10)  # the produced crop, not the input
    assert images[0].convert("RGB").tobytes() == trajectory.image(1).tobytes()


def zoomed(task: Task, *boxes: list[float]) -> Trajectory:
    """The crop protocol played through the agent loop: each box zoomed into input 0, then the answer."""
    played = Task.from_images([gradient_image(W, H)], **task.model_dump(exclude={"images"}))
    exact = Limits(image_factor=16, image_min_pixels=16)  # 64x48 is shown as it is: boxes are in its pixels
    return episode(None, played, *(zoom_call(box) for box in boxes), final("STOP"), protocol="crop", limits=exact)


def test_tasks_with_boxes_use_geometry_and_never_ask() -> None:
    task = make_task(bbox=(0, 0, 10, 10))
    trajectory = zoomed(task, [0, 0, 14, 14])
    with FakeOpenAIServer(lambda body: "0") as server:
        result = run(faithfulness_reward_judged(task, trajectory, vlm_judge(server)))
        assert server.request_count == 0
    assert result == faithfulness_reward(task, trajectory)
    assert result.breakdown["process"] == pytest.approx(1.0)


def test_without_a_judge_unboxed_calls_stay_unscored() -> None:
    result = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP"), None))
    assert result.details["scores"] == {"0": None} and result.details["faithful_share"] is None


def test_cache_hits_make_no_second_request(tmp_path: Path) -> None:
    cache = tmp_path / "faithfulness.sqlite"
    with FakeOpenAIServer(lambda body: "0.75") as server:
        first = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP"), vlm_judge(server, cache)))
        again = vlm_judge(server, cache)
        second = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP"), again))
        assert server.request_count == 1 and again.requests == 0
        other = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP", 2), vlm_judge(server, cache)))
        assert server.request_count == 2  # new pixels are a new key: only the second call's image is asked
    assert first.details["scores"] == second.details["scores"] == {"0": 0.75}
    assert other.details["scores"] == {"0": 0.75, "1": 0.75}


def test_an_unreadable_grade_is_recorded_and_not_cached(tmp_path: Path) -> None:
    replies = iter(["It is hard to tell.", "1", "1"])
    cache = tmp_path / "faithfulness.sqlite"
    with FakeOpenAIServer(lambda body: next(replies)) as server:
        judge = vlm_judge(server, cache, max_concurrency=1)
        result = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP", 2), judge))
        retried = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP", 2), vlm_judge(server, cache)))
        assert server.request_count == 3  # the unreadable reply was asked again, the readable one was not
    unreadable = [number for number, score in result.details["scores"].items() if score is None]
    assert len(unreadable) == 1 and result.details["judge_unreadable"] == {unreadable[0]: "It is hard to tell."}
    assert result.breakdown["process"] == pytest.approx(1.0)  # the mean of graded calls only
    assert result.details["faithful_share"] == 1.0
    assert retried.details["scores"] == {"0": 1.0, "1": 1.0}


def test_nothing_readable_leaves_no_faithfulness_measured() -> None:
    with FakeOpenAIServer(lambda body: "no idea") as server:
        result = run(faithfulness_reward_judged(make_task(), code_trajectory("STOP"), vlm_judge(server)))
    assert result.details["scores"] == {"0": None} and result.details["faithful_share"] is None
    assert result.details["judge_unreadable"] == {"0": "no idea"}


def test_a_failing_vlm_judge_raises_rather_than_scoring() -> None:
    with FakeOpenAIServer(lambda body: "1", faults=[400]) as server, pytest.raises(JudgeError, match="faithfulness"):
        run(faithfulness_reward_judged(make_task(), code_trajectory("STOP"), vlm_judge(server, retries=0)))


# ---------------------------------------------------------------------- fixed-crop protocol
def test_fixed_crop_boxes_are_scored_from_geometry() -> None:
    task = make_task(bbox=(10, 10, 20, 20))
    good = faithfulness_reward(task, zoomed(task, [5, 5, 25, 25]))
    half = faithfulness_reward(task, zoomed(task, [15, 0, 40, 40]))
    assert good.breakdown["process"] == pytest.approx(1.0) and good.details["faithful_share"] == 1.0
    # Half the target, in a crop twenty times its size: contained by half, barely focused.
    assert (
        half.breakdown["process"] == pytest.approx(0.5 * (50 / 1000) / 0.25) and half.details["faithful_share"] == 0.0
    )


def test_fixed_crop_penalties() -> None:
    task = make_task(bbox=(10, 10, 20, 20))
    noop = faithfulness_reward(task, crop_trajectory([0, 0, 1, 1]))
    assert noop.details["noop_crops"] == 1 and noop.breakdown["noop_crops"] == pytest.approx(-0.2)
    failed = faithfulness_reward(task, crop_trajectory([30, 30, 20, 20], [30, 30, 20, 20], statuses=["error", "error"]))
    assert failed.details["invalid_crops"] == 2 and failed.details["repeated_failures"] == 1
    assert failed.details["scores"] == {}
    assert failed.total == pytest.approx(-0.2 * 3)


def test_fixed_crop_without_boxes_is_graded_by_the_judge() -> None:
    trajectory = crop_trajectory([5, 5, 25, 25])
    trajectory._pixels = [gradient_image(W, H), Image.new("RGB", (10, 10), "red")]
    with FakeOpenAIServer(lambda body: "0.25") as server:
        result = run(faithfulness_reward_judged(make_task(), trajectory, vlm_judge(server)))
        assert server.request_count == 1 and server.requests[0].images()[0].size == (10, 10)
    assert result.breakdown["process"] == pytest.approx(0.25)


# ---------------------------------------------------------------------- RewardSpec.acompute
def test_acompute_shares_one_verdict_and_weighs_the_judged_parts() -> None:
    spec = RewardSpec(weights={"outcome": 1.0, "codevision": 1.0, "faithfulness": 0.5})
    with (
        FakeOpenAIServer(lambda body: "Correct", model="llm") as llm,
        FakeOpenAIServer(lambda body: "0.75", model="vlm") as vlm,
    ):
        result = run(
            spec.acompute(make_task(), code_trajectory("Stop"), judge=llm_judge(llm), vlm_judge=vlm_judge(vlm))
        )
        assert llm.request_count == 1  # asked once for both parts that need accuracy
        assert vlm.request_count == 1
    assert result.breakdown["outcome.accuracy"] == 1.0
    assert result.breakdown["codevision.accuracy"] == 1.0
    assert result.breakdown["faithfulness.process"] == pytest.approx(0.5 * 0.75)
    assert result.details["outcome"]["judged"] and result.details["codevision"]["outcome"]["judged"]
    assert result.details["parts"]["faithfulness"] == pytest.approx(0.75)
    assert result.total == pytest.approx(sum(spec.weights[p] * v for p, v in result.details["parts"].items()))


def test_acompute_asks_once_even_when_the_parts_score_differently() -> None:
    """The verdict does not depend on partial credit; only its mapping to a reward does."""
    spec = RewardSpec(weights={"outcome": 1.0, "codevision": 1.0}, outcome={"partial_credit": True})
    with FakeOpenAIServer(lambda body: "Correct") as server:
        result = run(spec.acompute(make_task(), code_trajectory("Stop"), judge=llm_judge(server)))
        assert server.request_count == 1
    assert result.details["outcome"]["judged"] and result.details["codevision"]["outcome"]["judged"]
    assert result.breakdown["outcome.accuracy"] == result.breakdown["codevision.accuracy"] == 1.0


def test_acompute_without_judges_equals_compute() -> None:
    spec = RewardSpec.tapo()
    task, trajectory = make_task(bbox=(0, 0, 10, 10)), code_trajectory("STOP")
    assert run(spec.acompute(task, trajectory)) == spec.compute(task, trajectory)


def test_acompute_skips_the_judges_for_parts_that_are_off() -> None:
    spec = RewardSpec(weights={"format": 1.0})
    with FakeOpenAIServer(lambda body: "1") as server:
        result = run(
            spec.acompute(make_task(), code_trajectory("Stop"), judge=llm_judge(server), vlm_judge=vlm_judge(server))
        )
        assert server.request_count == 0
    assert set(result.details["parts"]) == {"format"}
