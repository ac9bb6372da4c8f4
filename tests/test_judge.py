"""The LLM judge against the scripted fake server over 127.0.0.1: verdicts, cache, retries, bad replies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from codevision.policies.fake_server import FakeOpenAIServer
from codevision.scoring import (
    JudgeCache,
    JudgeError,
    LLMJudge,
    parse_extraction,
    parse_verdict,
    score_with_judge,
)

T = TypeVar("T")
MC = {"question_type": "multi_choice", "answer_type": "text", "choices": ["135°", "140°", "145°", "150°"]}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def grader(body: dict[str, Any]) -> str:
    """A judge that calls an answer correct when it equals the reference shown in the prompt."""
    prompt = prompt_of(body)
    reference = prompt.split("Reference text: ")[-1].split("Reference answer: ")[-1].split("\n")[0]
    answer = prompt.split("Answer to grade: ")[-1].split("\n")[0]
    return "Correct." if answer.strip().lower() == reference.strip().lower() else "Incorrect"


def make_judge(server: FakeOpenAIServer, cache: Path | None = None, **options: Any) -> LLMJudge:
    return LLMJudge(server.url, server.model, cache=cache, backoff=0.01, **options)


# ---------------------------------------------------------------------- reply parsing
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("1", True),
        ("0", False),
        ("**1**", True),
        ("Yes", True),
        ("no.", False),
        ("Correct", True),
        ("Incorrect.", False),
        ("TRUE", True),
        ("Verdict: 0", False),
        ("After checking the digits, score = 1", True),
        ("Judgement: **correct**", True),
        ("The answer is correct.", True),
        ("The candidate's answer is not correct.", False),
        ("It isn't right", False),
        ("Yes, although the wording differs, it is right.", True),
        ("No. The reference says 12.", False),
        ("<think>is it yes or no? the digits differ</think>\n0", False),
        ("The two texts differ in one character.\n\n0", False),
        ("1\nThe answers agree.", True),
        ("0\nThe reference says 12, not 1.", False),
        ("I am not sure.", None),
        ("Maybe yes, maybe no", None),
        ("The score is 0.5", None),
        ("", None),
        ("<think>yes</think>", None),
    ],
)
def test_parse_verdict(reply: str, expected: bool | None) -> None:
    assert parse_verdict(reply) is expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("5", "5"),
        ("Extracted answer: 0.8", "0.8"),
        ('  "B"  ', "B"),
        ("NONE", ""),
        ("<think>hmm</think>\n[1, 2]", "[1, 2]"),
        ("Reasoning first.\nExtracted answer: 145°", "145°"),
        ("", None),
        ("   \n ", None),
    ],
)
def test_parse_extraction(reply: str, expected: str | None) -> None:
    assert parse_extraction(reply) == expected


# ---------------------------------------------------------------------- verdicts over HTTP
def test_verdicts_and_what_is_sent() -> None:
    with FakeOpenAIServer(grader) as server:
        judge = make_judge(server)
        right = judge.verdict_sync(kind="ocr", question="What is written?", reference="STOP", response="stop")
        wrong = judge.verdict_sync(kind="general", question="Which city?", reference="Paris", response="Lyon")
        body = server.requests[0].body or {}
    assert right.verdict is True and right.ok and not right.cached
    assert right.raw == "Correct." and right.model == server.model and right.kind == "ocr"
    assert wrong.verdict is False and wrong.raw == "Incorrect"
    assert body["temperature"] == 0.0
    assert [message["role"] for message in body["messages"]] == ["system", "user"]
    assert "Reference text: STOP" in prompt_of(body) and "Answer to grade: stop" in prompt_of(body)


def test_prompts_differ_by_task_kind() -> None:
    with FakeOpenAIServer(lambda body: "yes") as server:
        judge = make_judge(server)

        async def all_kinds() -> None:
            async with judge:
                for kind in ("ocr", "math", "multiple-choice", "general"):
                    await judge.verdict(
                        kind=kind, question="q", reference="A. cat", response="A", options=["cat", "dog"]
                    )

        run(all_kinds())
        prompts = [prompt_of(request.body or {}) for request in server.requests]
    assert len(set(prompts)) == 4
    assert "A. cat\nB. dog" in prompts[2] and "yes" in prompts[2].splitlines()[-1]
    with pytest.raises(ValueError, match="judge kind"):
        judge.verdict_sync(kind="poetry", question="q", reference="r", response="r")  # type: ignore[arg-type]


def test_cache_hits_make_no_request_and_survive_reopening(tmp_path: Path) -> None:
    cache = tmp_path / "judge" / "cache.sqlite"
    question = {"kind": "math", "question": "2+2?", "reference": "4", "response": "4"}
    with FakeOpenAIServer(grader) as server:
        first = make_judge(server, cache).verdict_sync(**question)
        again = make_judge(server, cache)
        second = again.verdict_sync(**question)
        assert server.request_count == 1
        other_model = LLMJudge(server.url, "another-model", cache=cache, retries=0)
        with pytest.raises(JudgeError, match="404"):  # a different model is a different key: it asks
            other_model.verdict_sync(**question)
    assert not first.cached and second.cached
    assert second.verdict is True and second.raw == first.raw and second.key == first.key
    assert again.requests == 0 and len(JudgeCache(cache)) == 1


def test_identical_concurrent_questions_share_one_request() -> None:
    with FakeOpenAIServer(grader, delay=0.2) as server:
        judge = make_judge(server)

        async def many() -> list[Any]:
            async with judge:
                return await asyncio.gather(
                    *(judge.verdict(kind="ocr", question="q", reference="A", response="a") for _ in range(5))
                )

        records = run(many())
        assert server.request_count == 1
    assert all(record.verdict is True for record in records)
    assert sorted(record.cached for record in records) == [False, True, True, True, True]


@pytest.mark.parametrize("faults", [[500], [429, 503], ["drop"], ["malformed"]])
def test_retries_on_server_errors(faults: list[Any]) -> None:
    with FakeOpenAIServer(grader, faults=faults) as server:
        record = make_judge(server).verdict_sync(kind="ocr", question="q", reference="x", response="x")
        assert server.request_count == len(faults) + 1
    assert record.verdict is True


def test_retries_on_timeouts() -> None:
    with FakeOpenAIServer(grader, faults=["stall"], stall_seconds=5.0) as server:
        record = make_judge(server, timeout=0.5).verdict_sync(kind="ocr", question="q", reference="x", response="x")
        assert server.request_count == 2
    assert record.verdict is True


def test_gives_up_with_a_clear_error() -> None:
    with FakeOpenAIServer(grader, faults=[500, 500, 500]) as server:
        with pytest.raises(JudgeError, match="3 attempts"):
            make_judge(server, retries=2).verdict_sync(kind="ocr", question="q", reference="x", response="x")
    with FakeOpenAIServer(grader, faults=[400]) as server:
        with pytest.raises(JudgeError, match="400"):
            make_judge(server).verdict_sync(kind="ocr", question="q", reference="x", response="x")
        assert server.request_count == 1  # a refused request is not retried


def test_unparseable_reply_is_a_recorded_failure_and_is_not_cached(tmp_path: Path) -> None:
    replies = iter(["I would rather not say.", "Correct"])
    with FakeOpenAIServer(lambda body: next(replies)) as server:
        judge = make_judge(server, tmp_path / "cache.sqlite")
        question = {"kind": "general", "question": "q", "reference": "x", "response": "x"}
        failed = judge.verdict_sync(**question)
        retried = judge.verdict_sync(**question)
        assert server.request_count == 2
    assert failed.verdict is None and not failed.ok and "no readable verdict" in (failed.error or "")
    assert failed.raw == "I would rather not say."
    assert retried.verdict is True and not retried.cached


def test_extraction() -> None:
    with FakeOpenAIServer(lambda body: "Extracted answer: 1.25") as server:
        record = make_judge(server).extract_sync(question="What is x?", response="x is 1.25 or so")
        prompt = prompt_of(server.requests[0].body or {})
    assert record.kind == "extract" and record.extraction == "1.25" and record.verdict is None
    assert prompt.rstrip().endswith("Extracted answer:") and "x is 1.25 or so" in prompt


def test_sync_wrapper_refuses_to_block_a_running_loop() -> None:
    with FakeOpenAIServer(grader) as server:
        judge = make_judge(server)

        async def inside() -> None:
            judge.verdict_sync(kind="ocr", question="q", reference="x", response="x")

        with pytest.raises(RuntimeError, match="await"):
            run(inside())


def test_cache_is_safe_for_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        cache = JudgeCache(path)
        try:
            for index in range(40):
                cache.put(f"k{index}", model="m", prompt="p", reply=f"from {worker}")
                assert cache.get(f"k{index}") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(JudgeCache(path)) == 40


# ---------------------------------------------------------------------- judge-backed scoring
def judged(server: FakeOpenAIServer, *args: Any, **meta: Any) -> Any:
    judge = make_judge(server)
    return judge.run_sync(score_with_judge(*args, judge=judge, **meta))


def test_hrbench_asks_the_judge_for_every_item() -> None:
    options = {"A": "cat", "B": "dog", "C": "cow", "D": "pig"}
    with FakeOpenAIServer(lambda body: "no") as server:
        result = judged(server, "hrbench", "B", "B", choices=options, question="Which animal?")
        prompt = prompt_of(server.requests[0].body or {})
    assert not result.correct and not result.needs_judge and result.rule == "hrbench+judge"
    assert result.details["letter"] == "B" and result.details["judge"]["raw"] == "no"
    assert "The correct option is B. dog." in prompt and "Which animal?" in prompt


def test_mathvista_uses_the_judge_only_when_extraction_rules_fail() -> None:
    with FakeOpenAIServer(lambda body: "Extracted answer: C") as server:
        decided = judged(server, "mathvista", "<answer>145°</answer>", "145°", **MC)
        assert server.request_count == 0
        resolved = judged(server, "mathvista", "It must be the third one.", "145°", question="Angle?", **MC)
        prompt = prompt_of(server.requests[0].body or {})
    assert decided.correct and decided.rule == "mathvista"
    assert resolved.correct and not resolved.needs_judge and resolved.rule == "mathvista+judge"
    assert resolved.details["extraction"] == "C" and resolved.details["extraction_method"] == "given"
    assert "A. 135°" in prompt and "Angle?" in prompt


def test_codevision_falls_back_to_the_judge_after_the_rule_match() -> None:
    with FakeOpenAIServer(grader) as server:
        assert judged(server, "codevision", "<answer>12</answer>", "12").rule == "codevision-rule"
        assert server.request_count == 0
        result = judged(server, "mvtoolbench", "<answer>Stop</answer>", "STOP", task_kind="ocr", question="Sign?")
        prompt = prompt_of(server.requests[0].body or {})
    assert result.correct and result.rule == "codevision-rule+judge" and result.details["judge"]["kind"] == "ocr"
    assert "Reference text: STOP" in prompt


def test_an_unreadable_judge_reply_leaves_the_item_undecided() -> None:
    with FakeOpenAIServer(lambda body: "hard to say") as server:
        result = judged(server, "codevision", "<answer>red</answer>", "crimson", question="Colour?")
    assert not result.correct and result.needs_judge and result.rule == "codevision-rule"
    assert result.details["judge"]["error"]


def test_rule_only_benchmarks_never_call_the_judge() -> None:
    with FakeOpenAIServer(lambda body: "1") as server:
        assert not judged(server, "chartqa", "7", "9").correct
        assert not judged(server, "ocrbench", "x", "y").correct
        assert server.request_count == 0
