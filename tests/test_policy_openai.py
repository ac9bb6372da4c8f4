"""OpenAIPolicy against the scripted fake server over 127.0.0.1: conversion, retries, fail-over, concurrency."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from PIL import Image

from codevision.policies import Generation, OpenAIPolicy, PolicyError
from codevision.policies.base import ModelUnavailableError
from codevision.policies.fake_server import FakeOpenAIServer, FakeServerProcess, decode_data_url
from codevision.protocols import get_protocol
from codevision.trajectory import Message
from tests.conftest import gradient_image

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def question() -> list[Message]:
    return [Message.of("system", "Think with code."), Message.of("user", "How many boxes?", 0)]


async def generate_all(policy: OpenAIPolicy, count: int, images: Sequence[Image.Image] = ()) -> list[Generation]:
    """``count`` concurrent single-turn calls; the policy is closed afterwards."""
    images = list(images) or [gradient_image()]
    async with policy:
        return await asyncio.gather(*(policy.generate(question(), images, max_tokens=16) for _ in range(count)))


def dead_url() -> str:
    """A base URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ---------------------------------------------------------------------- conversation
def test_multi_turn_conversation_sends_exact_pixels_and_converts_tool_messages() -> None:
    photo = gradient_image(64, 48)
    crop = gradient_image(20, 10, "RGBA")
    gray = gradient_image(9, 7, "L")
    script = ["<code>crop(image_0)</code>", "<answer>4</answer>"]

    async def conversation(server: FakeOpenAIServer) -> list[Generation]:
        async with OpenAIPolicy(server.url, server.model) as policy:
            messages = question()
            first = await policy.generate(messages, [photo], max_tokens=64)
            messages += [Message.of("assistant", first.text), Message.of("tool", "Cropped:", 1, "and", 2)]
            second = await policy.generate(messages, [photo, crop, gray], max_tokens=64)
            return [first, second]

    with FakeOpenAIServer(script) as server:
        first, second = run(conversation(server))
    assert [first.text, second.text] == script
    assert [g.finish_reason for g in (first, second)] == ["stop", "stop"]

    sent = server.requests[1].messages
    assert sent[0] == {"role": "system", "content": "Think with code."}
    assert sent[2] == {"role": "assistant", "content": script[0]}
    tool = sent[3]
    assert tool["role"] == "user"
    assert [part["type"] for part in tool["content"]] == ["text", "image_url", "text", "image_url", "text"]
    assert tool["content"][0]["text"] == "<tool_response>\nCropped:"
    assert tool["content"][-1]["text"] == "\n</tool_response>"
    assert tool["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")

    received = server.requests[1].images()
    assert [image.mode for image in received] == ["RGB", "RGBA", "L"]
    for original, image in zip([photo, crop, gray], received, strict=True):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(original))


def test_tool_role_is_passed_through_only_when_configured() -> None:
    messages = [*question(), Message.of("assistant", "<code>x</code>"), Message.of("tool", "42")]

    async def ask(server: FakeOpenAIServer) -> str:
        async with OpenAIPolicy(server.url, server.model, tool_role="tool", retries=0) as policy:
            return (await policy.generate(messages, [gradient_image()], max_tokens=8)).text

    # OpenAI-style validation refuses a tool message that answers no tool call, and the error says so.
    with FakeOpenAIServer(["a", "b"]) as strict, pytest.raises(PolicyError, match="tool_calls") as excinfo:
        run(ask(strict))
    assert strict.url in str(excinfo.value)
    assert "'fake-model'" in str(excinfo.value)
    with FakeOpenAIServer(["a", "b"], reject_orphan_tool_messages=False) as lenient:
        assert run(ask(lenient)) == "b"
    assert lenient.requests[0].messages[-1] == {"role": "tool", "content": "42"}


def test_usage_finish_reason_token_ids_and_wall_time() -> None:
    reply = "one two three four five six"
    with FakeOpenAIServer([reply], delay=0.05) as server:
        policy = OpenAIPolicy(server.url, server.model, extra_body={"return_token_ids": True}, seed=3, top_p=0.9)

        async def ask() -> Generation:
            async with policy:
                return await policy.generate(question(), [gradient_image(56, 28)], max_tokens=4)

        generation = run(ask())
    assert generation.text == "one two three four"
    assert generation.finish_reason == "length"
    # 3 words of system prompt + 3 of question + 2×1 image patches of 28×28.
    assert generation.usage.prompt_tokens == 8
    assert generation.usage.completion_tokens == 4
    assert generation.token_ids is not None and len(generation.token_ids) == 4
    assert generation.seconds >= 0.05
    body = server.requests[0].body
    assert body is not None
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (4, 0.0, 0.9, 3)
    assert server.requests[0].headers["authorization"].startswith("Bearer ")


def test_token_ids_stay_none_when_the_server_sends_none() -> None:
    with FakeOpenAIServer(["hi"]) as server:
        (generation,) = run(generate_all(OpenAIPolicy(server.url, server.model), 1))
    assert generation.token_ids is None


def test_jpeg_images_and_one_encoding_per_image_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    photo = gradient_image(64, 48)
    encoded: list[int] = []
    original = OpenAIPolicy.encode_image

    def counting(self: OpenAIPolicy, image: Image.Image) -> str:
        encoded.append(id(image))
        return original(self, image)

    monkeypatch.setattr(OpenAIPolicy, "encode_image", counting)
    messages = [Message.of("user", "Compare", 0, "with", 0)]
    with FakeOpenAIServer(["ok"]) as server:

        async def ask() -> None:
            async with OpenAIPolicy(server.url, server.model, image_format="jpeg", jpeg_quality=95) as policy:
                await policy.generate(messages, [photo], max_tokens=8)

        run(ask())
    assert encoded == [id(photo)]
    url = server.requests[0].messages[0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    received = np.asarray(decode_data_url(url), dtype=np.int16)
    assert np.abs(received - np.asarray(photo, dtype=np.int16)).mean() < 4


# ---------------------------------------------------------------------- tool schemas
TOOLS = get_protocol().tool_schemas()
CALL = (
    '<tool_call>\n{"name": "code_image_tool", "arguments": {"code": "display(image)", "image_index": 0}}\n</tool_call>'
)


def ask_once(policy: OpenAIPolicy) -> Generation:
    (generation,) = run(generate_all(policy, 1))
    return generation


def test_tools_are_sent_only_when_given_with_tool_choice_only_when_set() -> None:
    with FakeOpenAIServer(["a", "b"], tool_parser=True) as server:
        ask_once(OpenAIPolicy(server.url, server.model))
        ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS))
        ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS, tool_choice="none"))
    bodies = [request.body or {} for request in server.requests]
    assert ["tools" in body for body in bodies] == [False, True, True]
    assert [body.get("tool_choice") for body in bodies] == [None, None, "none"]
    assert bodies[1]["tools"] == TOOLS


def test_a_server_without_a_tool_parser_needs_tool_choice_none_and_the_error_says_so() -> None:
    with FakeOpenAIServer([f"Look first.\n{CALL}"]) as server:
        with pytest.raises(PolicyError, match=r"enable-auto-tool-choice.*--tool-choice none"):
            ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS, retries=0))
        generation = ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS, tool_choice="none"))
    assert generation.text == f"Look first.\n{CALL}", "without a parser the reply comes back as written"


def test_calls_a_tool_parser_took_out_are_written_back_into_the_text() -> None:
    protocol = get_protocol()
    reply = f"<think>The sign is upside down.</think>\n{CALL}"
    with FakeOpenAIServer([reply], tool_parser=True) as server:
        generation = ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS))
    assert generation.finish_reason == "tool_calls"
    assert generation.text == reply
    assert protocol.parse(generation.text) == protocol.parse(reply)
    (action,) = protocol.parse(generation.text).actions
    assert (action.code, action.image_index) == ("display(image)", 0)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_thought_a_reasoning_parser_took_out_is_put_back_into_the_text(field: str) -> None:
    reply = f"<think>\nThe sign is upside down.\n</think>\n\n{CALL}"
    with FakeOpenAIServer([reply], tool_parser=True, reasoning_parser=field) as server:
        generation = ask_once(OpenAIPolicy(server.url, server.model, tools=TOOLS))
    assert generation.text == reply
    (action,) = get_protocol().parse(generation.text).actions
    assert action.code == "display(image)"
    with FakeOpenAIServer(["<answer>4</answer>"], reasoning_parser=field) as server:
        assert ask_once(OpenAIPolicy(server.url, server.model)).text == "<answer>4</answer>"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tools": []}, "tools is empty"),
        ({"tool_choice": "none"}, "tool_choice needs tools"),
        ({"tools": TOOLS, "tool_choice": "required"}, "'auto' or 'none'"),
    ],
)
def test_tool_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenAIPolicy("http://127.0.0.1:1/v1", "m", **kwargs)


# ---------------------------------------------------------------------- failures
@pytest.mark.parametrize("fault", [429, 500, 503, "drop", "malformed", "stall"])
def test_transient_failures_are_retried(fault: int | str) -> None:
    with FakeOpenAIServer(["ok"], faults=[fault, fault], stall_seconds=5.0) as server:
        policy = OpenAIPolicy(server.url, server.model, backoff=0.01, timeout=0.5)
        (generation,) = run(generate_all(policy, 1))
    assert generation.text == "ok"
    assert [request.fault for request in server.requests] == [fault, fault, None]


def test_retry_after_is_honoured_up_to_max_backoff() -> None:
    with FakeOpenAIServer(["ok"], faults=[429], retry_after=0.6) as server:
        start = time.perf_counter()
        run(generate_all(OpenAIPolicy(server.url, server.model, backoff=0.001), 1))
        assert time.perf_counter() - start >= 0.6
        server.fail(503)
        start = time.perf_counter()
        run(generate_all(OpenAIPolicy(server.url, server.model, backoff=0.001, max_backoff=0.1), 1))
        assert time.perf_counter() - start < 0.5


def test_giving_up_after_the_retries_names_the_last_error() -> None:
    with FakeOpenAIServer(["ok"], faults=[503] * 3) as server:
        policy = OpenAIPolicy(server.url, server.model, retries=2, backoff=0.01)
        with pytest.raises(PolicyError, match=r"after 3 attempts.*HTTP 503: injected failure"):
            run(generate_all(policy, 1))
    assert server.request_count == 3


def test_client_errors_are_not_retried_and_quote_the_server() -> None:
    with FakeOpenAIServer(["ok"], faults=[400]) as server:
        with pytest.raises(PolicyError, match=r"rejected the request for model 'fake-model' with HTTP 400") as excinfo:
            run(generate_all(OpenAIPolicy(server.url, server.model, backoff=0.01), 1))
        assert "injected failure" in str(excinfo.value)
        assert server.url in str(excinfo.value)
        assert server.request_count == 1
        with pytest.raises(PolicyError, match=r"HTTP 404: The model `other` does not exist.*GET /v1/models"):
            run(generate_all(OpenAIPolicy(server.url, "other"), 1))
        assert server.request_count == 2


def test_exhausted_script_is_a_clear_error() -> None:
    with FakeOpenAIServer(["only"]) as server:

        async def ask() -> None:
            async with OpenAIPolicy(server.url, server.model) as policy:
                await policy.generate([*question(), Message.of("assistant", "only")], [gradient_image()], max_tokens=8)

        with pytest.raises(PolicyError, match="the script has 1 replies"):
            run(ask())


# ---------------------------------------------------------------------- concurrency and several servers
def test_concurrency_limit_is_respected() -> None:
    with FakeOpenAIServer(["ok"], delay=0.1) as server:
        generations = run(generate_all(OpenAIPolicy(server.url, server.model, max_concurrency=4), 16))
    assert len(generations) == 16
    assert server.max_in_flight == 4


def test_sixty_four_concurrent_calls_complete() -> None:
    """Each reply waits until all 64 requests are in flight, so the test proves the client sends them
    together however slowly a loaded machine opens the connections (a barrier, not a delay)."""
    all_in_flight = threading.Barrier(64, timeout=60)

    def reply(body: dict[str, Any]) -> str:
        all_in_flight.wait()
        return "ok"

    with FakeOpenAIServer(reply) as server:
        generations = run(generate_all(OpenAIPolicy(server.url, server.model, max_concurrency=64), 64))
    assert [g.text for g in generations] == ["ok"] * 64
    assert server.max_in_flight == 64


def test_several_base_urls_share_the_load() -> None:
    with FakeOpenAIServer(["a"], delay=0.05) as first, FakeOpenAIServer(["a"], delay=0.05) as second:
        policy = OpenAIPolicy([first.url, second.url], "fake-model")

        async def sequential_then_concurrent() -> None:
            async with policy:
                for _ in range(4):
                    await policy.generate(question(), [gradient_image()], max_tokens=4)
                await asyncio.gather(
                    *(policy.generate(question(), [gradient_image()], max_tokens=4) for _ in range(20))
                )

        run(sequential_then_concurrent())
    assert first.request_count + second.request_count == 24
    assert abs(first.request_count - second.request_count) <= 2


def test_fail_over_when_a_server_is_down() -> None:
    down = dead_url()
    with FakeOpenAIServer(["a"], delay=0.02) as live:
        generations = run(generate_all(OpenAIPolicy([down, live.url], "fake-model", backoff=0.01), 12))
    assert [g.text for g in generations] == ["a"] * 12
    assert live.request_count == 12


def test_all_servers_down_is_a_clear_error() -> None:
    down = dead_url()
    policy = OpenAIPolicy([down], "fake-model", retries=1, backoff=0.01)
    with pytest.raises(PolicyError, match=r"after 2 attempts.*cannot connect.*server is running"):
        run(generate_all(policy, 1))


def test_the_circuit_breaker_stops_paying_for_a_dead_server() -> None:
    policy = OpenAIPolicy([dead_url()], "fake-model", retries=5, backoff=0.01, breaker=4)

    async def twice() -> tuple[str, float]:
        async with policy:
            with pytest.raises(ModelUnavailableError) as first:
                await policy.generate(question(), [gradient_image()], max_tokens=4)
            started = time.perf_counter()
            with pytest.raises(ModelUnavailableError):
                await policy.generate(question(), [gradient_image()], max_tokens=4)
            return str(first.value), time.perf_counter() - started

    message, second = run(twice())
    assert "the last 4 attempts" in message and "cannot connect" in message and "--resume" in message
    assert second < 0.05  # no attempt at all once the breaker is open
    assert policy.unavailable is not None


def test_the_circuit_breaker_lets_one_request_try_again_and_closes_on_an_answer() -> None:
    with FakeOpenAIServer(["ok"], faults=[503] * 3) as server:
        policy = OpenAIPolicy(server.url, server.model, retries=5, backoff=0.01, breaker=3)
        policy.breaker_cooldown = 0.05

        async def recover() -> str:
            async with policy:
                with pytest.raises(ModelUnavailableError):
                    await policy.generate(question(), [gradient_image()], max_tokens=4)
                await asyncio.sleep(0.1)
                return (await policy.generate(question(), [gradient_image()], max_tokens=4)).text

        assert run(recover()) == "ok" and policy.unavailable is None
        assert server.request_count == 4


def test_a_late_reply_is_visible_with_its_elapsed_time_and_attempt() -> None:
    """A server that fails once and then answers slowly: while it works, ``waiting`` reports the wait;
    the spinner shows it after SHOW_AFTER seconds and goes away with the reply."""
    from rich.console import Console

    from codevision.cli import waits

    with FakeOpenAIServer(["late"], faults=[503], delay=0.6) as server:
        policy = OpenAIPolicy(server.url, server.model, retries=3, backoff=0.01)
        console = Console(record=True, force_terminal=True, width=200)
        seen: list[Any] = []

        async def watched() -> str:
            async def sample() -> None:
                while True:
                    seen.append(policy.waiting())
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            async with policy, waits.WaitSpinner(console, [("the model", policy)], interval=0.05):
                text = (await policy.generate(question(), [gradient_image()], max_tokens=4)).text
            sampler.cancel()
            return text

        original = waits.SHOW_AFTER
        waits.SHOW_AFTER = 0.3
        try:
            assert run(watched()) == "late"
        finally:
            waits.SHOW_AFTER = original
    late = [wait for wait in seen if wait is not None]
    assert late and late[-1].attempt == 2 and late[-1].attempts == 4 and late[-1].requests == 1
    assert late[-1].seconds >= 0.4 and policy.waiting() is None
    assert "for the model (attempt 2 of 4, 1 request in flight)" in console.export_text()
    assert waits.wait_message([("the model", policy), ("the judge", None)]) is None


def test_base_url_without_path_gets_v1() -> None:
    with FakeOpenAIServer(["ok"]) as server:
        root = server.url.removesuffix("/v1")
        (generation,) = run(generate_all(OpenAIPolicy(root + "/", server.model), 1))
    assert generation.text == "ok"


# ---------------------------------------------------------------------- the fake server itself
def test_fake_server_validates_requests_like_a_real_one() -> None:
    good = OpenAIPolicy("http://127.0.0.1:1/v1", "fake-model").encode_image(gradient_image())
    prefix, data = good.split(",", 1)
    truncated = f"{prefix},{data[: len(data) // 2 // 4 * 4]}"
    cases: list[tuple[Any, int, str]] = [
        ({"model": "fake-model", "messages": []}, 400, "non-empty list"),
        ({"model": "fake-model", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        (image_request("data:image/png;base64,@@not base64@@"), 400, "not valid base64"),
        (image_request("data:image/png;base64,aGVsbG8="), 400, "not an image"),
        (image_request(truncated), 400, "does not decode"),
        (image_request("https://example.com/cat.png"), 400, "base64 data URLs"),
        ({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
    ]
    with FakeOpenAIServer(["ok"]) as server, httpx.Client(base_url=server.url) as client:
        for body, status, message in cases:
            response = client.post("/chat/completions", json=body)
            assert response.status_code == status, body
            assert message in response.json()["error"]["message"]
        assert client.post("/chat/completions", content=b"{not json").status_code == 400
        assert client.post("/chat/completions", json=image_request(good)).status_code == 200
        assert client.get("/models").json()["data"][0]["id"] == "fake-model"
    assert server.request_count == len(cases) + 2


def image_request(url: str) -> dict[str, Any]:
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}]}


def test_fake_server_script_function_sees_the_request() -> None:
    def script(body: dict[str, Any]) -> str:
        return f"{len(body['messages'])} messages"

    with FakeOpenAIServer(script) as server:
        (generation,) = run(generate_all(OpenAIPolicy(server.url, server.model), 1))
    assert generation.text == "2 messages"


def test_fake_server_in_a_subprocess() -> None:
    with FakeServerProcess(["from a process"], faults=[503]) as server:
        policy = OpenAIPolicy(server.url, server.model, backoff=0.01)
        (generation,) = run(generate_all(policy, 1))
    assert generation.text == "from a process"
