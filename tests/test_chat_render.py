"""The chat renderer against the processors and the local policy's prompts (TRL's GRPO tool loop:
tests/test_train_environment.py).

The conversations are the bundled examples played through the real agent loop and sandbox. The
tiny models of codevision.testing.tiny_vlm render them with real chat templates: TRL's copies of
the stock Qwen2.5-VL and Qwen3-VL templates where TRL is installed, and codevision's shipped one.
What must hold for any model: the prompt TransformersPolicy builds at turn t is, token for token
and pixel for pixel, the prefix of the training sequence up to turn t; the generated mask covers
exactly the replies; recorded ids survive as sampled; pads match the grids; images are sized by the
processor's own budget. Runs with transformers 5.24 (.venv-transformers) and 5.10 (.venv-verl).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("torch", reason="needs torch (see .venv-transformers)")
pytest.importorskip("transformers", reason="needs transformers (see .venv-transformers)")

import torch
import transformers
from PIL import Image

from codevision.agent import Limits, arun_agent, run_agent
from codevision.chat import ChatRenderer, ImageBudget, RenderError, load_template, sampled_ids, template_path
from codevision.chat.messages import to_chat
from codevision.demo import EXAMPLES, LABEL, RECEIPT, Example
from codevision.policies import ScriptedPolicy, TransformersPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.testing import build_tiny_qwen_vl
from codevision.trajectory import Message, Trajectory
from tests.token_ids import canonical, noncanonical

pytestmark = pytest.mark.slow
FAMILIES = ("qwen2_5_vl", "qwen3_vl")
END = "<|im_end|>"
PAD = "<|image_pad|>"
# The budgets of the released checkpoints' preprocessor configs (Qwen2.5-VL-7B, Qwen3-VL-8B).
QWEN2_5_VL_RELEASE = {"patch_size": 14, "size": {"shortest_edge": 3136, "longest_edge": 12845056}}
QWEN3_VL_RELEASE = {"patch_size": 16, "size": {"shortest_edge": 65536, "longest_edge": 16777216}}


def trl_template(name: str) -> str | None:
    """TRL's stored copy of a stock chat template, or None where TRL is not installed."""
    try:
        return resources.files("trl").joinpath("chat_templates", f"{name}.jinja").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return None


# (family, template name): the stock templates need TRL's copies; the shipped one is always there.
TEMPLATES = [
    pytest.param(
        family,
        template,
        id=f"{family}-{template}",
        marks=pytest.mark.skipif(template != "shipped" and trl_template(family) is None, reason="needs trl"),
    )
    for family in FAMILIES
    for template in ("stock", "shipped")
]


def template_text(family: str, template: str) -> str:
    text = load_template() if template == "shipped" else trl_template(family)
    assert text is not None
    return text


def variant(
    source: Path, directory: Path, *, chat_template: str, image_processor: dict[str, Any] | None = None
) -> Path:
    """A copy of a tiny model folder with another chat template (and image processor settings)."""
    directory.mkdir(parents=True)
    for item in source.iterdir():
        if item.name not in ("chat_template.jinja", "processor_config.json"):
            (directory / item.name).symlink_to(item)
    (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    config = json.loads((source / "processor_config.json").read_text())
    config["image_processor"].update(image_processor or {})
    (directory / "processor_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_qwen_vl(root / family, family=family) for family in FAMILIES}


@pytest.fixture(scope="module")
def model_dirs(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """The tiny model of a family with a real chat template, one folder per (family, template)."""
    root = tmp_path_factory.mktemp("templated")
    made: dict[tuple[str, str], Path] = {}

    def get(family: str, template: str) -> Path:
        if (family, template) not in made:
            made[family, template] = variant(
                tiny_models[family], root / f"{family}-{template}", chat_template=template_text(family, template)
            )
        return made[family, template]

    return get


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=5.0, memory_mb=1024) as sb:
        yield sb


@pytest.fixture(scope="module")
def demos(sandbox: Sandbox) -> dict[str, Trajectory]:
    """The bundled examples through the agent loop and the real sandbox (text replies, no token ids)."""
    protocol = get_protocol()
    return {ex.id: run_agent(ex.task(), ScriptedPolicy(list(ex.replies)), sandbox, protocol) for ex in EXAMPLES}


def processor_of(directory: Path) -> Any:
    return transformers.AutoProcessor.from_pretrained(directory, trust_remote_code=True)


def model_images(trajectory: Trajectory, budget: ImageBudget) -> list[Image.Image]:
    return [budget.fit(trajectory.image(i)) for i in range(len(trajectory.images))]


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    for position, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return position
    return None if len(a) == len(b) else min(len(a), len(b))


def assert_mask_is_the_replies(renderer: ChatRenderer, out: Any, replies: Sequence[Sequence[int]]) -> None:
    """The mask is 1 exactly on the reply spans, which hold the given ids, and never on an image pad."""
    expected = [0] * len(out.input_ids)
    for span, ids in zip(out.replies, replies, strict=True):
        assert out.input_ids[span.start : span.end] == list(ids)
        expected[span.start : span.end] = [1] * (span.end - span.start)
    assert out.generated_mask == expected
    assert not any(m and t == renderer.image_token_id for t, m in zip(out.input_ids, out.generated_mask, strict=True))


def assert_pads_match_grids(renderer: ChatRenderer, out: Any) -> None:
    grids = out.image_inputs["image_grid_thw"]
    assert out.input_ids.count(renderer.image_token_id) == int(grids.prod(dim=1).sum()) // 4 > 0
    assert len(grids) == len(out.images)


# ---------------------------------------------------------------------- the renderer alone
@pytest.mark.parametrize(("family", "template"), TEMPLATES)
@pytest.mark.parametrize("demo", [ex.id for ex in EXAMPLES])
def test_render_equals_the_processors_own_render(
    family: str, template: str, demo: str, model_dirs: Callable[[str, str], Path], demos: dict[str, Trajectory]
) -> None:
    processor = processor_of(model_dirs(family, template))
    trajectory = demos[demo]
    renderer = ChatRenderer(processor, get_protocol())
    images = model_images(trajectory, ImageBudget.from_processor(processor))
    conversation = trajectory.conversation()
    out = renderer.render(conversation, images)

    # The processor renders and tokenises the whole conversation at once: the same ids, plus the
    # newline after the last end-of-turn, and the same pixels.
    whole = processor.apply_chat_template(
        to_chat(conversation, images, tool_role=True),
        chat_template=renderer.chat_template,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert whole["input_ids"][0].tolist() == [
        *out.input_ids,
        *renderer.tokenizer("\n", add_special_tokens=False)["input_ids"],
    ]
    assert torch.equal(whole["pixel_values"], out.image_inputs["pixel_values"])
    assert torch.equal(whole["image_grid_thw"], out.image_inputs["image_grid_thw"])
    assert_pads_match_grids(renderer, out)
    tokenizer = renderer.tokenizer
    assert_mask_is_the_replies(renderer, out, [canonical(tokenizer, turn.text) for turn in trajectory.turns])
    assert tokenizer.decode([t for t, m in zip(out.input_ids, out.generated_mask, strict=True) if m]) == "".join(
        turn.text + END for turn in trajectory.turns
    )
    assert not any(span.sampled or span.closed for span in out.replies)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_shipped_template_renders_what_the_stock_templates_do(
    family: str, tiny_models: dict[str, Path], demos: dict[str, Trajectory]
) -> None:
    """For codevision's conversations the shipped template changes nothing a base model sees.

    It equals Qwen2.5-VL's template with tool results wrapped as user turns (what evaluation sent
    before), and Qwen3-VL's own handling of tool turns, also when a trainer passes a tool schema.
    """
    stock = {name: trl_template(name) for name in FAMILIES}
    if None in stock.values():
        pytest.skip("needs trl's copies of the stock templates")
    processor = processor_of(tiny_models[family])
    schema = [{"type": "function", "function": {"name": "code_image_tool", "parameters": {"type": "object"}}}]
    for trajectory in demos.values():
        images = model_images(trajectory, ImageBudget.from_processor(processor))
        messages = trajectory.conversation()

        def text(tool_role: bool, template: str | None, tools: Any = None) -> str:
            chat = to_chat(messages, images, tool_role=tool_role)  # noqa: B023 - called in this iteration only
            return str(processor.apply_chat_template(chat, chat_template=template, tools=tools, tokenize=False))

        shipped = text(True, load_template())
        assert shipped == text(False, stock["qwen2_5_vl"]) == text(True, stock["qwen3_vl"])
        assert shipped == text(True, load_template(), tools=schema) == text(True, load_template(training=True))
        assert "# Tools" in text(True, stock["qwen3_vl"], tools=schema), "the stock Qwen3-VL template prints schemas"
        # Qwen2.5-VL's stock template cannot render tool turns: it prints a role the model never saw.
        assert "<|im_start|>tool" in text(True, stock["qwen2_5_vl"])


def test_the_templates_ship_as_package_data() -> None:
    assert template_path().name == "codevision_qwen_vl.jinja" and template_path().is_file()
    assert template_path(training=True).is_file()
    assert "{% generation %}" not in load_template().split("-#}", 1)[1]
    assert "{%- generation -%}" in load_template(training=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_ids_are_spliced_as_sampled_and_checked(
    family: str, model_dirs: Callable[[str, str], Path], demos: dict[str, Trajectory]
) -> None:
    processor = processor_of(model_dirs(family, "shipped"))
    tokenizer = processor.tokenizer
    renderer = ChatRenderer(processor, get_protocol())
    trajectory = demos[RECEIPT.id]
    images = model_images(trajectory, ImageBudget.from_processor(processor))
    messages = trajectory.conversation()
    texts = [turn.text for turn in trajectory.turns]
    recorded = {0: noncanonical(tokenizer, texts[0]), 1: noncanonical(tokenizer, texts[1])}
    spliced = renderer.render(messages, images, sampled=recorded)
    retokenised = renderer.render(messages, images)
    assert_mask_is_the_replies(renderer, spliced, [recorded[0], recorded[1], canonical(tokenizer, texts[2])])
    assert [span.sampled for span in spliced.replies] == [True, True, False]
    # The spliced sequence differs from a re-tokenisation of the same text inside the first reply.
    start = spliced.replies[0].start
    assert start == retokenised.replies[0].start
    assert first_difference(spliced.input_ids, retokenised.input_ids) == start + first_difference(
        recorded[0], canonical(tokenizer, texts[0])
    )
    assert_pads_match_grids(renderer, spliced)

    # The prompt of every turn, rendered from the recorded history, is the prefix up to that turn.
    assistants = [i for i, message in enumerate(messages) if message.role == "assistant"]
    for turn, position in enumerate(assistants):
        earlier = {t: ids for t, ids in recorded.items() if t < turn}
        prompt = renderer.render(messages[:position], images, sampled=earlier, add_generation_prompt=True)
        assert prompt.input_ids == spliced.input_ids[: spliced.replies[turn].start]
        rows = int(prompt.image_inputs["image_grid_thw"].prod(dim=1).sum())
        assert torch.equal(prompt.image_inputs["pixel_values"], spliced.image_inputs["pixel_values"][:rows])

    with pytest.raises(RenderError, match="turn 1: the recorded ids decode to"):
        renderer.render(messages, images, sampled={1: recorded[0]})
    pad = tokenizer.convert_tokens_to_ids(PAD)
    with pytest.raises(RenderError, match="turn 0: the recorded ids hold image or video pad tokens"):
        renderer.render(messages, images, sampled={0: [pad, *recorded[0]]})
    with pytest.raises(RenderError, match="recorded ids for turns \\[5\\]"):
        renderer.render(messages, images, sampled={5: recorded[0]})


@pytest.mark.parametrize("family", FAMILIES)
def test_a_reply_cut_before_its_end_of_turn_is_closed_outside_the_mask(
    family: str, model_dirs: Callable[[str, str], Path], demos: dict[str, Trajectory]
) -> None:
    processor = processor_of(model_dirs(family, "shipped"))
    tokenizer = processor.tokenizer
    renderer = ChatRenderer(processor, get_protocol())
    trajectory = demos[LABEL.id]
    images = model_images(trajectory, ImageBudget.from_processor(processor))
    messages = trajectory.conversation()
    unclosed = canonical(tokenizer, trajectory.turns[0].text)[:-1]
    out = renderer.render(messages, images, sampled={0: unclosed})
    first = out.replies[0]
    assert first.closed and out.input_ids[first.end] == tokenizer.convert_tokens_to_ids(END)
    assert out.generated_mask[first.start : first.end + 1] == [1] * len(unclosed) + [0]
    # Closed the same way in the next turn's prompt, so the prompt is still the prefix.
    prompt = renderer.render(messages[:4], images, sampled={0: unclosed}, add_generation_prompt=True)
    assert prompt.input_ids == out.input_ids[: out.replies[1].start]
    assert prompt.replies[0].closed


def test_images_the_template_does_not_place_are_an_error(
    model_dirs: Callable[[str, str], Path], demos: dict[str, Trajectory]
) -> None:
    processor = processor_of(model_dirs("qwen3_vl", "shipped"))
    renderer = ChatRenderer(processor, get_protocol())
    trajectory = demos[LABEL.id]
    images = model_images(trajectory, ImageBudget.from_processor(processor))
    messages = trajectory.conversation()
    forged = [messages[0], Message.of("user", f"Image 0: {PAD}", 0, "What is it?"), *messages[2:]]
    with pytest.raises(RenderError, match="turn 0: the template wrote 2 image placeholders for messages with 1 images"):
        renderer.render(forged, images)
    with pytest.raises(RenderError, match="no assistant message"):
        renderer.render(messages[:2], images)
    with pytest.raises(RenderError, match="end with a user or tool turn"):
        renderer.render(messages[:3], images, add_generation_prompt=True)


# ---------------------------------------------------------------------- the image budget
def test_budgets_of_the_released_processor_configs() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

    qwen2_5 = ImageBudget.from_processor(Qwen2VLImageProcessorPil(**QWEN2_5_VL_RELEASE))
    qwen3 = Qwen2VLImageProcessorPil(**QWEN3_VL_RELEASE)
    assert qwen2_5 == ImageBudget(28, 3136, 12845056)
    assert ImageBudget.from_processor(qwen3) == ImageBudget(32, 65536, 16777216)
    legacy = Qwen2VLImageProcessorPil(patch_size=14, min_pixels=3136, max_pixels=12845056)
    assert ImageBudget.from_processor(legacy) == qwen2_5
    with pytest.raises(ValueError, match="cannot read a pixel budget"):
        ImageBudget.from_processor(SimpleNamespace(size={}))

    budget = ImageBudget.from_processor(qwen3)
    sizes = [(10, 300), (300, 10), (20, 20), (120, 40), (840, 140), (460, 220), (3000, 2000), (5000, 4000)]
    for width, height in sizes:
        assert budget.target(width, height) == smart_resize(height, width, 32, 65536, 16777216)[::-1]
        # A fitted image is left alone by the processor: its grid is its size in patches.
        fitted = budget.fit(Image.new("RGB", (width, height), "white"))
        grid = qwen3(images=[fitted], return_tensors="pt")["image_grid_thw"][0].tolist()
        assert (grid[2] * 16, grid[1] * 16) == fitted.size == budget.target(width, height)
    assert budget.target(120, 40) == (448, 160), "up-scaled to Qwen3-VL's 65,536-pixel minimum"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_policy_reports_its_processors_budget(family: str, tiny_models: dict[str, Path]) -> None:
    async def budgets() -> tuple[ImageBudget | None, ImageBudget | None]:
        default = TransformersPolicy(tiny_models[family], trust_remote_code=True)
        smaller = TransformersPolicy(tiny_models[family], trust_remote_code=True, max_pixels=16 * 32 * 32)
        return await default.image_budget(), await smaller.image_budget()

    default, smaller = asyncio.run(budgets())
    factor = 28 if family == "qwen2_5_vl" else 32
    assert default == ImageBudget(factor, 4 * factor**2, 64 * factor**2)  # what the tiny processor was saved with
    assert smaller == ImageBudget(factor, 4 * factor**2, 16 * 32 * 32)


# ---------------------------------------------------------------------- the policy's prompts
@dataclass
class ScriptedModel:
    """Stands in for the weights behind TransformersPolicy: records every input it is given and
    "samples" the scripted ids, so the prompts the policy builds can be compared token for token."""

    replies: list[list[int]]
    end: int
    inputs: list[dict[str, Any]] = field(default_factory=list)
    device: Any = field(default_factory=lambda: torch.device("cpu"))

    @property
    def generation_config(self) -> Any:
        return SimpleNamespace(eos_token_id=self.end)

    def to(self, device: str) -> ScriptedModel:
        return self

    def eval(self) -> ScriptedModel:
        return self

    def generate(self, input_ids: Any, **inputs: Any) -> Any:
        self.inputs.append({"input_ids": input_ids, **inputs})
        reply = torch.tensor([self.replies[len(self.inputs) - 1]], dtype=input_ids.dtype)
        return torch.cat([input_ids, reply], dim=1)


def run_scripted(
    model_dir: Path, example: Example, replies: list[list[int]], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> tuple[Trajectory, ScriptedModel]:
    """``example`` played by TransformersPolicy on ``model_dir``'s processor, the model scripted."""
    processor = processor_of(model_dir)
    model = ScriptedModel(replies, processor.tokenizer.convert_tokens_to_ids(END))
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", lambda *a, **k: model)

    async def play() -> Trajectory:
        policy = TransformersPolicy(model_dir, trust_remote_code=True)
        try:
            return await arun_agent(example.task(), policy, sandbox, get_protocol())
        finally:
            await policy.aclose()

    return asyncio.run(play()), model


@pytest.mark.parametrize(("family", "template"), TEMPLATES)
def test_the_policys_prompts_are_prefixes_of_the_training_sequence(
    family: str,
    template: str,
    model_dirs: Callable[[str, str], Path],
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_dir = model_dirs(family, template)
    processor = processor_of(model_dir)
    tokenizer = processor.tokenizer
    texts = list(RECEIPT.replies)
    replies = [noncanonical(tokenizer, texts[0]), noncanonical(tokenizer, texts[1]), canonical(tokenizer, texts[2])]
    trajectory, model = run_scripted(model_dir, RECEIPT, replies, sandbox, monkeypatch)
    assert trajectory.stop_reason == "answered", trajectory.error
    assert [turn.response_token_ids for turn in trajectory.turns] == replies
    assert [turn.text for turn in trajectory.turns] == texts

    # The images were sized by the processor's budget, which the trajectory records.
    budget = ImageBudget.from_processor(processor)
    assert trajectory.metadata["image_budget"] == budget.to_dict()
    assert [record.model_size for record in trajectory.images] == [budget.target(*r.size) for r in trajectory.images]

    # The training sequence, rendered afterwards from the saved trajectory and its recorded ids.
    trajectory = Trajectory.load(trajectory.save(model_dir.parent / f"run-{family}-{template}"))
    messages = trajectory.conversation()
    renderer = ChatRenderer(processor, get_protocol())
    # Qwen2.5-VL's template cannot render tool turns, so the shipped one is used; Qwen3-VL keeps its own.
    assert renderer.chat_template == (load_template() if family == "qwen2_5_vl" else template_text(family, template))
    full = renderer.render(messages, model_images(trajectory, budget), sampled=sampled_ids(messages))
    assert_mask_is_the_replies(renderer, full, replies)
    assert_pads_match_grids(renderer, full)
    assert len(model.inputs) == len(trajectory.turns) == 3
    for turn, given in enumerate(model.inputs):
        start = full.replies[turn].start
        assert given["input_ids"][0].tolist() == full.input_ids[:start], f"turn {turn}"
        assert trajectory.turns[turn].usage.prompt_tokens == start
        grids = given["image_grid_thw"]
        assert torch.equal(grids, full.image_inputs["image_grid_thw"][: len(grids)])
        rows = int(grids.prod(dim=1).sum())
        assert torch.equal(given["pixel_values"], full.image_inputs["pixel_values"][:rows]), f"turn {turn}"
        assert torch.equal(given["mm_token_type_ids"][0] == 1, given["input_ids"][0] == renderer.image_token_id)
        # Each image reaches the model at its recorded size: its grid is that size in patches.
        for grid, record in zip(grids.tolist(), trajectory.images, strict=False):
            patch = budget.factor // 2
            assert (grid[2] * patch, grid[1] * patch) == record.model_size

    # Re-tokenising the first reply's text (what the prompt used to be built from) would diverge.
    retokenised = renderer.render(messages[:4], model_images(trajectory, budget), add_generation_prompt=True)
    diverges = first_difference(retokenised.input_ids, model.inputs[1]["input_ids"][0].tolist())
    assert diverges == full.replies[0].start + first_difference(replies[0], canonical(tokenizer, texts[0]))

    # The rendered inputs are what the model's forward pass takes.
    weights = transformers.AutoModelForImageTextToText.from_config(transformers.AutoConfig.from_pretrained(model_dir))
    with torch.inference_mode():
        logits = weights(**renderer.model_inputs(full)).logits
    assert logits.shape[:2] == (1, len(full.input_ids))


def test_qwen3_vl_images_are_sized_with_factor_32_and_its_minimum(
    tiny_models: dict[str, Path], tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = variant(
        tiny_models["qwen3_vl"], tmp_path / "qwen3_vl", chat_template=load_template(), image_processor=QWEN3_VL_RELEASE
    )
    tokenizer = processor_of(released).tokenizer
    call = {"name": "code_image_tool", "arguments": {"code": "display(image.crop((0, 0, 120, 40)))"}}
    example = Example(
        id="small-crop",
        asset=LABEL.asset,
        question=LABEL.question,
        answer=LABEL.answer,
        transform="none",
        replies=(f"<tool_call>{json.dumps(call)}</tool_call>", "<answer>4821-B</answer>"),
    )
    replies = [canonical(tokenizer, text) for text in example.replies]
    trajectory, model = run_scripted(released, example, replies, sandbox, monkeypatch)
    assert trajectory.stop_reason == "answered", trajectory.error
    assert trajectory.metadata["image_budget"] == {"factor": 32, "min_pixels": 65536, "max_pixels": 16777216}
    assert trajectory.images[1].size == (120, 40)
    assert trajectory.images[1].model_size == (448, 160)  # up to 65,536 pixels, sides multiples of 32
    assert Limits().image_budget.target(120, 40) == (112, 28), "what the factor-28 default would have shown"
    width, height = trajectory.images[0].model_size or (0, 0)
    assert width % 32 == height % 32 == 0 and width * height >= 65536
    grids = model.inputs[1]["image_grid_thw"].tolist()
    assert grids[1] == [1, 160 // 16, 448 // 16]
    assert model.inputs[1]["input_ids"][0].tolist().count(tokenizer.convert_tokens_to_ids(PAD)) == sum(
        t * h * w // 4 for t, h, w in grids
    )
