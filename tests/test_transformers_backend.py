"""Real models end to end: TransformersPolicy in process, and OpenAIPolicy against ``transformers serve``.

Both run a tiny random Qwen-VL built here (see codevision.testing.tiny_vlm), so the replies are
noise; the tests check what must hold for any model: the prompt the chat template builds, the
response tokens and their text, usage, finish reasons, and the server's errors reaching the caller.
They need torch and transformers[serving], which live in a separate environment (.venv-transformers).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0; see .venv-transformers)")
pytest.importorskip("transformers", reason="needs transformers (pip install 'transformers[serving]==5.23.0')")

from PIL import Image

from codevision.chat import ChatRenderer
from codevision.chat.messages import to_chat
from codevision.chat.templates import template_supports_tool_role
from codevision.policies import Generation, OpenAIPolicy, PolicyError
from codevision.policies.transformers_local import TransformersPolicy
from codevision.protocols import get_protocol
from codevision.testing import TransformersServer, build_tiny_qwen_vl
from codevision.testing.tiny_vlm import END_OF_TURN, SPECIAL_TOKENS
from codevision.trajectory import Message
from tests.conftest import gradient_image

pytestmark = pytest.mark.slow
T = TypeVar("T")
FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_vl(tmp_path_factory.mktemp(request.param) / request.param, family=request.param)


def images() -> list[Image.Image]:
    return [gradient_image(96, 64), gradient_image(40, 56, "RGBA")]


def first_turn() -> list[Message]:
    return [Message.of("system", "Think with code."), Message.of("user", "How many boxes are there?", 0)]


def continue_with_tool(messages: list[Message], reply: Generation) -> list[Message]:
    """The conversation after ``reply``, plus a tool result that shows image 1."""
    return [*messages, Message.of("assistant", reply.text), Message.of("tool", "Cropped the region:", 1, "done.")]


def strip_special(text: str) -> str:
    for token in SPECIAL_TOKENS:
        text = text.replace(token, "")
    return text


# ---------------------------------------------------------------------- in process
def test_transformers_policy_two_turns_with_two_images_and_a_tool_message(tiny_model: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model, trust_remote_code=True)
    tokenizer = processor.tokenizer
    pictures = images()

    async def conversation() -> tuple[list[Message], list[Generation]]:
        policy = TransformersPolicy(tiny_model, trust_remote_code=True, seed=0)
        try:
            messages = first_turn()
            first = await policy.generate(messages, pictures[:1], max_tokens=12)
            messages = continue_with_tool(messages, first)
            second = await policy.generate(messages, pictures, max_tokens=12)
            again = await policy.generate(messages, pictures, max_tokens=12)
        finally:
            await policy.aclose()
        return messages, [first, second, again]

    messages, (first, second, again) = run(conversation())

    for reply in (first, second):
        assert reply.token_ids is not None and 1 <= len(reply.token_ids) <= 12
        assert reply.usage.completion_tokens == len(reply.token_ids)
        assert reply.seconds > 0
        assert tokenizer.decode(reply.token_ids, skip_special_tokens=True) == reply.text
        assert strip_special(tokenizer.decode(reply.token_ids)) == reply.text
        if reply.finish_reason == "length":
            assert len(reply.token_ids) == 12
        else:
            assert reply.finish_reason == "stop"
            assert reply.token_ids[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert again.token_ids == second.token_ids, "greedy decoding with a seed must repeat itself"

    # The prompt is exactly the chat template's rendering, both images expanded into image tokens.
    tool_role = template_supports_tool_role(processor.chat_template)
    assert tool_role == (tiny_model.name == "qwen3_vl")
    prompt = processor.apply_chat_template(
        to_chat(messages, pictures, tool_role=tool_role), add_generation_prompt=True, tokenize=True, return_dict=True
    )
    prompt_ids = list(prompt["input_ids"][0])
    assert second.usage.prompt_tokens == len(prompt_ids) > first.usage.prompt_tokens
    rendered = tokenizer.decode(prompt_ids)
    assert rendered.count("<|vision_start|>") == 2
    assert "<tool_response>\nCropped the region:<|vision_start|>" in rendered
    assert "<|im_start|>tool" not in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_transformers_policy_reports_a_stop_and_an_empty_reply(tiny_model: Path, tmp_path: Path) -> None:
    """A model that can only end its turn: finish_reason "stop", the end token kept, no text."""
    config_path = tiny_model / "generation_config.json"
    config = json.loads(config_path.read_text())
    end = config["eos_token_id"]
    vocabulary = json.loads((tiny_model / "config.json").read_text())["text_config"]["vocab_size"]
    only_end = tmp_path / tiny_model.name
    only_end.mkdir()
    for item in tiny_model.iterdir():
        (only_end / item.name).symlink_to(item)
    (only_end / config_path.name).unlink()
    (only_end / config_path.name).write_text(
        json.dumps({**config, "suppress_tokens": [token for token in range(vocabulary) if token != end]})
    )

    async def reply() -> Generation:
        policy = TransformersPolicy(only_end, trust_remote_code=True)
        try:
            return await policy.generate(first_turn(), images()[:1], max_tokens=5)
        finally:
            await policy.aclose()

    generation = run(reply())
    assert generation.finish_reason == "stop"
    assert generation.token_ids == [end]
    assert generation.text == ""
    assert generation.usage.completion_tokens == 1


def test_cancelling_a_generation_stops_the_worker_and_frees_the_model(tiny_model: Path) -> None:
    async def cancel_then_generate() -> tuple[float, Generation]:
        policy = TransformersPolicy(tiny_model, trust_remote_code=True)
        try:
            await policy.generate(first_turn(), images()[:1], max_tokens=1)  # loads the model
            long = asyncio.create_task(policy.generate(first_turn(), images()[:1], max_tokens=4000))
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            long.cancel()
            with pytest.raises(asyncio.CancelledError):
                await long
            waited = time.perf_counter() - start
            return waited, await policy.generate(first_turn(), images()[:1], max_tokens=3)
        finally:
            await policy.aclose()

    waited, after = run(cancel_then_generate())
    assert waited < 2.0, "the worker thread must stop within a token or two of the cancellation"
    assert after.usage.completion_tokens >= 1


@pytest.fixture(scope="module")
def stock_qwen3_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3-VL with the stock Qwen3-VL template (TRL's copy), which renders tool schemas."""
    trl = pytest.importorskip("trl", reason="the stock Qwen3-VL template comes from TRL's copy")
    model = build_tiny_qwen_vl(tmp_path_factory.mktemp("stock") / "qwen3_vl", family="qwen3_vl")
    stock = Path(trl.__file__).parent / "chat_templates" / "qwen3_vl.jinja"
    (model / "chat_template.jinja").write_text(stock.read_text(encoding="utf-8"), encoding="utf-8")
    return model


async def prompt_tokens(model: Path, tools: list[dict[str, Any]] | None) -> int:
    policy = TransformersPolicy(model, trust_remote_code=True, tools=tools)
    try:
        return (await policy.generate(first_turn(), images()[:1], max_tokens=1)).usage.prompt_tokens
    finally:
        await policy.aclose()


def test_a_chat_template_that_ignores_tool_schemas_is_refused(tiny_model: Path) -> None:
    with pytest.raises(PolicyError, match="does not render tool schemas"):
        run(prompt_tokens(tiny_model, get_protocol().tool_schemas()))


def test_tool_schemas_reach_the_prompt_of_a_template_that_renders_them(stock_qwen3_vl: Path) -> None:
    from transformers import AutoProcessor

    tools = get_protocol().tool_schemas()
    processor = AutoProcessor.from_pretrained(stock_qwen3_vl, trust_remote_code=True)
    rendered = ChatRenderer(processor, tools).render(first_turn(), images()[:1], add_generation_prompt=True)
    assert json.dumps(tools[0], ensure_ascii=False) in processor.tokenizer.decode(rendered.input_ids)
    assert (
        run(prompt_tokens(stock_qwen3_vl, tools)) == len(rendered.input_ids) > run(prompt_tokens(stock_qwen3_vl, None))
    )


def test_transformers_policy_turns_a_broken_model_folder_into_a_policy_error(tmp_path: Path) -> None:
    policy = TransformersPolicy(tmp_path)
    with pytest.raises(PolicyError, match="cannot load the model"):
        run(policy.generate(first_turn(), images()[:1], max_tokens=4))


# ---------------------------------------------------------------------- served
@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[TransformersServer]:
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    with TransformersServer(tiny_model) as running:
        yield running


def test_openai_policy_against_transformers_serve(server: TransformersServer, tiny_model: Path) -> None:
    pictures = images()
    # Qwen3-VL's template renders tool messages itself; Qwen2.5-VL's needs them as user messages.
    tool_role = "tool" if tiny_model.name == "qwen3_vl" else "user"

    async def conversation() -> tuple[list[Generation], list[Generation]]:
        local = TransformersPolicy(tiny_model, trust_remote_code=True)
        async with OpenAIPolicy(server.url, server.model_name, tool_role=tool_role, retries=0) as remote:
            try:
                messages = first_turn()
                served = [await remote.generate(messages, pictures[:1], max_tokens=10)]
                in_process = [await local.generate(messages, pictures[:1], max_tokens=10)]
                messages = continue_with_tool(messages, served[0])
                served.append(await remote.generate(messages, pictures, max_tokens=10))
                in_process.append(await local.generate(messages, pictures, max_tokens=10))
            finally:
                await local.aclose()
        return served, in_process

    served, in_process = run(conversation())
    for reply, same_model in zip(served, in_process, strict=True):
        assert isinstance(reply.text, str)
        assert reply.finish_reason in ("stop", "length")
        assert 1 <= reply.usage.completion_tokens <= 10
        if reply.finish_reason == "length":
            assert reply.usage.completion_tokens == 10
        # Same weights, same template, same pixels (PNG is lossless), greedy decoding: the server
        # sees the prompt this process builds, token for token, and answers the same.
        assert reply.usage.prompt_tokens == same_model.usage.prompt_tokens
        assert reply.text == same_model.text
    assert served[1].usage.prompt_tokens > served[0].usage.prompt_tokens


def test_transformers_serve_renders_the_tools_field_and_ignores_tool_choice(stock_qwen3_vl: Path) -> None:
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    tools = get_protocol().tool_schemas()

    async def served_prompt_tokens(server: TransformersServer, **kwargs: Any) -> int:
        async with OpenAIPolicy(server.url, server.model_name, tool_role="tool", retries=0, **kwargs) as remote:
            return (await remote.generate(first_turn(), images()[:1], max_tokens=1)).usage.prompt_tokens

    with TransformersServer(stock_qwen3_vl) as server:
        with_tools = run(served_prompt_tokens(server, tools=tools))
        choice_none = run(served_prompt_tokens(server, tools=tools, tool_choice="none"))
        without = run(served_prompt_tokens(server))
    assert with_tools == choice_none == run(prompt_tokens(stock_qwen3_vl, tools)) > without


def test_openai_policy_reports_the_servers_reason_for_a_bad_request(server: TransformersServer) -> None:
    async def ask_for_another_model() -> Generation:
        async with OpenAIPolicy(server.url, "local/no-such-model", retries=0) as policy:
            return await policy.generate(first_turn(), images()[:1], max_tokens=4)

    with pytest.raises(PolicyError) as error:
        run(ask_for_another_model())
    assert "HTTP 400" in str(error.value)
    assert "no-such-model" in str(error.value)
    assert server.model_name in str(error.value), "the server's own explanation names the model it serves"
