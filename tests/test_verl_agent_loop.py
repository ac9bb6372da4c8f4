"""The verl agent loop end to end on CPU: verl's worker path, a scripted server, the real sandbox.

verl's own CPU tests drive agent loops with a fake server manager whose ``generate`` returns
``TokenOutput``; here its replies are real tokens of a tiny Qwen2.5-VL / Qwen3-VL tokenizer (a code
call that rotates an image and shows it with a tiny crop, a crop of an input above the pixel
budget, then an answer), the rows come from codevision's verl export read by verl's
``RLHFDataset``, and each rollout goes through ``AgentLoopWorker._run_agent_loop``: the loop is
registered by the shipped YAML, instantiated the way the worker does it, run, and post-processed
by verl (padding, multimodal inputs recomputed from the decoded sequence, M-RoPE position ids),
with the reward streamed through verl's ``RewardLoopWorker``, which loads the reward file by path
and runs it with the naive reward manager.

What must hold: the ids are the ones codevision's renderer gives for the same conversation (and
each turn's prompt its prefix), the mask is 0 exactly on observation tokens, verl's recomputed
image grids match the pads, the position ids have M-RoPE's shape, the reward from ``extra_fields``
equals ``RewardSpec.compute`` on the trajectory evaluation's agent loop records for the same
replies, an observation that would overflow the response ends the rollout before it, a sandbox
failure ends the rollout with the error recorded, and a batch of rows goes through
``generate_sequences`` as in a training step.
"""

from __future__ import annotations

import asyncio
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

agent_loop_module = pytest.importorskip(
    "verl.experimental.agent_loop.agent_loop", reason="verl (with its agent-loop extras) is not installed here"
)
torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the tiny Qwen-VL processors need transformers")

from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from codevision.agent import Limits, arun_agent  # noqa: E402
from codevision.chat import ChatRenderer, ImageBudget  # noqa: E402
from codevision.data.rl import write_verl_parquet  # noqa: E402
from codevision.eval.runner import EvalItem  # noqa: E402
from codevision.integrations.verl import agent_loop_config_path, reward_function_path  # noqa: E402
from codevision.integrations.verl.episode import TASK_FIELD, TRAJECTORY_FIELD, episode_of  # noqa: E402
from codevision.integrations.verl.reward import compute_score  # noqa: E402
from codevision.policies import ScriptedPolicy  # noqa: E402
from codevision.protocols import get_protocol  # noqa: E402
from codevision.rewards.spec import RewardSpec  # noqa: E402
from codevision.sandbox import Sandbox  # noqa: E402
from codevision.sandbox.service import SandboxServer  # noqa: E402
from codevision.task import Task  # noqa: E402
from codevision.testing.images import scene_image  # noqa: E402
from codevision.trajectory import Trajectory  # noqa: E402
from tests.conftest import final, tool_call  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # verl's post-processing hands the processor a list that transformers 5.10 turns into an array this way.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

AgentLoopWorker = agent_loop_module.AgentLoopWorker
FAMILIES = ("qwen2_5_vl", "qwen3_vl")
PROMPT_LENGTH = 2048
RESPONSE_LENGTH = 4096
SERVICE_TOKEN = "verl-test-token-0123456789"
# Turn 0 rotates input 0 (non-square) and shows it with a crop a few pixels wide (sized up to the
# budget's minimum); turn 1 crops input 1 (above the pixel budget); turn 2 answers.
REPLIES = (
    tool_call("upright = image.rotate(90, expand=True)\ndisplay(upright)\ndisplay(upright.crop((0, 0, 9, 5)))"),
    tool_call("display(image.crop((100, 50, 700, 650)))", image_index=1),
    final("42"),
)


@dataclass
class Tiny:
    family: str
    directory: Path
    processor: Any
    renderer: ChatRenderer
    budget: ImageBudget


def bind_rope_index(processor: Any, directory: Path, family: str) -> None:
    """What verl's ``hf_processor`` does for the stock Qwen processor classes (see the test below)."""
    from transformers import AutoConfig
    from transformers.models.qwen2_5_vl import Qwen2_5_VLModel
    from transformers.models.qwen3_vl import Qwen3VLModel

    model_class = Qwen2_5_VLModel if family == "qwen2_5_vl" else Qwen3VLModel
    processor.config = AutoConfig.from_pretrained(directory)
    processor.get_rope_index = types.MethodType(model_class.get_rope_index, processor)
    if hasattr(model_class, "get_vision_position_ids"):
        processor.get_vision_position_ids = types.MethodType(model_class.get_vision_position_ids, processor)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    from transformers import AutoProcessor

    from codevision.testing import build_tiny_qwen_vl

    directory = build_tiny_qwen_vl(tmp_path_factory.mktemp(request.param), family=request.param)
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    bind_rope_index(processor, directory, request.param)
    return Tiny(request.param, directory, processor, ChatRenderer(processor), ImageBudget.from_processor(processor))


def make_task(sizes: tuple[tuple[int, int], ...] = ((300, 100), (900, 700)), number: int = 7) -> Task:
    """Two inputs: by default a wide one and one above the tiny processors' pixel budget."""
    return Task.from_images(
        [scene_image(width, height, seed=seed) for seed, (width, height) in enumerate(sizes, start=number)],
        id=f"synthetic-{number}",
        question="What is the total?",
        answers=["42"],
        source="synthetic",
        bboxes=[(10.0, 10.0, 60.0, 60.0)],
        expected_ops=["rotate_90", "crop"],
    )


def dataset(tasks: list[Task], processor: Any, directory: Path) -> RLHFDataset:
    """The tasks exported by codevision and read back by verl's ``RLHFDataset`` as its trainer configures it."""
    path = directory / "train.parquet"
    write_verl_parquet([EvalItem(task) for task in tasks], path, get_protocol())
    config = OmegaConf.create(
        {
            "cache_dir": str(directory / "cache"),
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 100_000,
            "return_raw_chat": True,
            "truncation": "error",
            "filter_overlong_prompts": False,
        }
    )
    return RLHFDataset(data_files=str(path), tokenizer=processor.tokenizer, config=config, processor=processor)


def dataset_row(task: Task, processor: Any, directory: Path) -> dict[str, Any]:
    """The row as verl's worker hands it to an agent loop: its non-tensor fields."""
    sample = dataset([task], processor, directory)[0]
    return {key: value for key, value in sample.items() if not isinstance(value, torch.Tensor)}


class ScriptedServer:
    """verl's server manager, answering each turn with the tiny tokenizer's ids of the next scripted reply."""

    def __init__(self, tokenizer: Any, replies: tuple[str, ...], on_call: Any = None) -> None:
        self.replies = [tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"] for text in replies]
        self.calls: list[dict[str, Any]] = []
        self.turns: dict[str, int] = {}
        self.on_call = on_call

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        turn = self.turns.get(request_id, 0)
        self.turns[request_id] = turn + 1
        self.calls.append(
            {
                "request_id": request_id,
                "prompt_ids": list(prompt_ids),
                "max_tokens": sampling_params.get("max_tokens"),
                "images": list(image_data or []),
                "priority": kwargs.get("priority"),
            }
        )
        if self.on_call is not None:
            self.on_call(turn)
        ids = self.replies[turn][: sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), num_preempted=0)


def make_worker(tiny: Tiny, server: ScriptedServer, rollout: dict[str, Any], loop_kwargs: dict[str, Any]) -> Any:
    """An ``AgentLoopWorker`` as verl builds it, without Ray: the shipped YAML registers the loop."""
    config = OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {
                    "prompt_length": rollout.get("prompt_length", PROMPT_LENGTH),
                    "response_length": rollout.get("response_length", RESPONSE_LENGTH),
                    "multi_turn": {"max_assistant_turns": rollout.get("max_assistant_turns")},
                    "agent": {"num_workers": 8, "default_agent_loop": "single_turn_agent"},
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "top_k": -1,
                    "calculate_log_probs": True,
                    "val_kwargs": {"temperature": 0.0, "top_p": 1.0, "top_k": -1},
                },
                "model": {"path": str(tiny.directory), "tokenizer_path": None},
            },
            "data": {"apply_chat_template_kwargs": {}, "mm_processor_kwargs": rollout.get("mm_processor_kwargs", {})},
            # What verl's trainer sets for a custom reward without a reward model.
            "reward": {
                "custom_reward_function": {"path": str(reward_function_path()), "name": "compute_score"},
                "reward_manager": {"source": "register", "name": "naive"},
                "reward_model": {"enable": False},
            },
        }
    )
    worker = object.__new__(AgentLoopWorker)
    worker.config = config
    worker.rollout_config = config.actor_rollout_ref.rollout
    worker.llm_client = server
    worker.tokenizer = tiny.processor.tokenizer
    worker.processor = tiny.processor
    worker.hf_model_type = tiny.family
    worker.dataset_cls = RLHFDataset
    worker.tools = []
    worker.mm_processor_kwargs = config.data.mm_processor_kwargs
    worker.reward_loop_worker_handles = None
    worker.distillation_enabled = False
    for entry in OmegaConf.load(agent_loop_config_path()):
        agent_loop_module._agent_loop_registry[entry.name] = OmegaConf.merge(entry, loop_kwargs)
    return worker


@dataclass
class Rollout:
    row: dict[str, Any]
    server: ScriptedServer
    output: Any  # verl's _InternalAgentLoopOutput
    prompt: list[int] = field(default_factory=list)
    response: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)


def roll_out(
    tiny: Tiny,
    directory: Path,
    *,
    response_length: int = RESPONSE_LENGTH,
    replies: tuple[str, ...] = REPLIES,
    on_call: Any = None,
    rollout: dict[str, Any] | None = None,
    **loop_kwargs: Any,
) -> Rollout:
    """One rollout of ``make_task()`` through verl's per-sample worker path: ``rollout`` overrides verl's
    rollout settings, ``loop_kwargs`` are set in the loop's YAML entry."""
    row = dataset_row(make_task(), tiny.processor, directory)
    server = ScriptedServer(tiny.processor.tokenizer, replies, on_call)
    settings = {"response_length": response_length, **(rollout or {})}
    worker = make_worker(tiny, server, settings, loop_kwargs)
    trace = {"step": 0, "sample_index": 0, "rollout_n": 0, "validate": False}
    kwargs = {key: value for key, value in row.items() if key != "agent_name"}

    async def run() -> Any:
        stream_rewards(worker)
        return await worker._run_agent_loop(
            {"temperature": 1.0}, trace, agent_name=row["agent_name"], priority=3, **kwargs
        )

    output = asyncio.run(run())
    attention = output.attention_mask[0].tolist()
    prompt_width = output.prompt_ids.shape[1]
    ids = output.input_ids[0].tolist()
    prompt = [token for token, keep in zip(ids[:prompt_width], attention[:prompt_width], strict=True) if keep]
    response = [token for token, keep in zip(ids[prompt_width:], attention[prompt_width:], strict=True) if keep]
    mask = output.response_mask[0].tolist()[: len(response)]
    return Rollout(row, server, output, prompt, response, mask)


def stream_rewards(worker: Any) -> None:
    """verl's streaming reward: the worker hands each finished rollout to a reward-loop worker (a Ray actor
    in training), which loads the reward file by path and runs it through the naive reward manager."""
    rewards = RewardLoopWorker(worker.config)
    handle = types.SimpleNamespace(compute_score=types.SimpleNamespace(remote=rewards.compute_score))
    worker.reward_loop_worker_handles = [handle]


def reference(task: Task, tiny: Tiny, sandbox: Sandbox, replies: tuple[str, ...] = REPLIES) -> Trajectory:
    """The same replies played through evaluation's agent loop (a scripted policy, the processor's budget)."""
    limits = Limits().with_image_budget(tiny.budget)
    return asyncio.run(arun_agent(task, ScriptedPolicy(list(replies)), sandbox, get_protocol(), limits))


def image_pads(tiny: Tiny, ids: list[int]) -> int:
    return ids.count(tiny.renderer.image_token_id)


@pytest.fixture(scope="module")
def rollout(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> Rollout:
    return roll_out(tiny, tmp_path_factory.mktemp("rollout"))


@pytest.fixture(scope="module")
def expected(tiny: Tiny, sandbox: Sandbox, rollout: Rollout) -> tuple[Trajectory, Any, list[Image.Image]]:
    """The reference trajectory, its rendering (with the server's reply ids) and its model-sized images."""
    trajectory = reference(make_task(), tiny, sandbox)
    images = [tiny.budget.fit(trajectory.image(i)) for i in range(len(trajectory.images))]
    sampled = dict(enumerate(rollout.server.replies))
    rendered = tiny.renderer.render(trajectory.conversation(), images, sampled=sampled)
    return trajectory, rendered, images


def test_verl_binds_rope_index_only_for_processor_classes_it_knows(tiny: Tiny) -> None:
    """Why the fixture binds ``get_rope_index`` itself: verl's loader refuses the image-only test class.

    Without the binding, verl's post-processing silently falls back to 1-D position ids.
    """
    from verl.utils.tokenizer import hf_processor

    with pytest.warns(UserWarning, match="Unsupported processor type"):
        assert hf_processor(str(tiny.directory), trust_remote_code=True) is None


def test_ids_are_the_renderers_tokens_for_the_conversation(tiny: Tiny, rollout: Rollout, expected: tuple) -> None:
    trajectory, rendered, _ = expected
    assert len(rollout.server.calls) == len(REPLIES)
    assert rollout.prompt + rollout.response == rendered.input_ids
    # Each turn's prompt is the rendered conversation up to that reply, sent as one sticky request.
    for call, span in zip(rollout.server.calls, rendered.replies, strict=True):
        assert call["prompt_ids"] == rendered.input_ids[: span.start]
        assert call["request_id"] == rollout.server.calls[0]["request_id"] and call["priority"] == 3
    assert len(rollout.prompt) == rendered.replies[0].start
    # Sampled ids are kept as generated.
    for span, reply in zip(rendered.replies, rollout.server.replies, strict=True):
        assert rendered.input_ids[span.start : span.end] == reply
    # Every later call was allowed what is left of the response budget.
    for call in rollout.server.calls:
        assert call["max_tokens"] == RESPONSE_LENGTH - (len(call["prompt_ids"]) - len(rollout.prompt))
    stored = rollout.output.extra_fields[TRAJECTORY_FIELD]
    assert [turn["text"] for turn in stored["turns"]] == [turn.text for turn in trajectory.turns]
    assert stored["stop_reason"] == trajectory.stop_reason == "answered"


def test_mask_is_zero_exactly_on_observation_tokens(rollout: Rollout, expected: tuple) -> None:
    _, rendered, _ = expected
    prompt = len(rollout.prompt)
    assert rollout.mask == rendered.generated_mask[prompt:]
    assert not any(rendered.generated_mask[:prompt])
    generated = {position - prompt for span in rendered.replies for position in range(span.start, span.end)}
    assert {i for i, bit in enumerate(rollout.mask) if bit} == generated
    # What is masked out of the response is the two observations (each with the next generation prompt).
    observations = [
        rollout.response[rendered.replies[t].end - prompt : rendered.replies[t + 1].start - prompt] for t in range(2)
    ]
    assert sum(map(len, observations)) == rollout.mask.count(0) > 0
    # verl's training mask (padding included) is this mask.
    assert rollout.output.response_mask[0].sum().item() == sum(rollout.mask)


def test_multi_modal_data_holds_every_image_in_order(tiny: Tiny, rollout: Rollout, expected: tuple) -> None:
    trajectory, rendered, images = expected
    sent = rollout.output.multi_modal_data["images"]
    # Two inputs, the rotated input and the tiny crop of it, the crop of the large input.
    assert len(sent) == len(trajectory.images) == len(rendered.images) == 5
    for got, want, record in zip(sent, images, trajectory.images, strict=True):
        assert got.size == want.size == record.model_size
        assert got.tobytes() == want.tobytes()
    sizes = [image.size for image in sent]
    assert sizes[0][0] > sizes[0][1] and sizes[2][1] > sizes[2][0], "non-square inputs keep their orientation"
    assert sizes[1][0] * sizes[1][1] <= tiny.budget.max_pixels < 900 * 700, "the large input was sized down"
    assert sizes[3][0] * sizes[3][1] >= tiny.budget.min_pixels > 9 * 5, "the tiny crop was sized up"
    # Each turn was sent the images shown before it, no more.
    assert [len(call["images"]) for call in rollout.server.calls] == [2, 4, 5]


def test_verl_post_processing_matches_image_pads(tiny: Tiny, rollout: Rollout, expected: tuple) -> None:
    _, rendered, _ = expected
    output = rollout.output
    inputs = output.multi_modal_inputs
    grid = inputs["image_grid_thw"]
    merge = tiny.processor.image_processor.merge_size**2
    assert grid.shape[0] == 5
    assert image_pads(tiny, output.input_ids[0].tolist()) == int(grid.prod(dim=-1).sum()) // merge
    assert torch.equal(grid, rendered.image_inputs["image_grid_thw"])
    assert torch.equal(inputs["pixel_values"], rendered.image_inputs["pixel_values"])
    assert output.position_ids.shape == (1, 4, PROMPT_LENGTH + RESPONSE_LENGTH)
    assert output.input_ids.shape == (1, PROMPT_LENGTH + RESPONSE_LENGTH)


def test_tiny_model_forward_accepts_the_post_processed_sequence(tiny: Tiny, rollout: Rollout) -> None:
    """The model checks image features against image tokens: the failure verl users meet as a crash."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny.directory)
    output = rollout.output
    length = len(rollout.prompt) + len(rollout.response)
    start = output.prompt_ids.shape[1] - len(rollout.prompt)
    inputs = {key: value for key, value in output.multi_modal_inputs.items() if key != "images_seqlens"}
    with torch.inference_mode():
        logits = model(
            input_ids=output.input_ids[:, start : start + length],
            attention_mask=output.attention_mask[:, start : start + length],
            # verl's actors pass (4, batch, length): the text positions, then M-RoPE's three rows.
            position_ids=output.position_ids[:, :, start : start + length].transpose(0, 1),
            **inputs,
        ).logits
    assert logits.shape[:2] == (1, length)


def test_reward_equals_reward_spec_on_the_recorded_trajectory(rollout: Rollout, expected: tuple) -> None:
    trajectory, _, _ = expected
    task = make_task()
    want = RewardSpec().compute(task, trajectory)
    extra_info = {**rollout.row["extra_info"], **rollout.output.extra_fields}
    got = compute_score(rollout.row["data_source"], "ignored", rollout.row["reward_model"]["ground_truth"], extra_info)
    assert got["score"] == pytest.approx(want.total)
    for term, value in want.breakdown.items():
        assert got[term] == pytest.approx(value), term
    assert got["acc"] == 1.0 and got["answered"] == 1.0 and got["pred"] == "42"
    assert got["tool_calls"] == 2 and got["tool_errors"] == 0 and got["turns"] == 3
    # The episode the reward read is the reference one: calls, op traces, shown images and lineage.
    stored_task, stored = episode_of(extra_info)
    assert stored_task.model_dump(exclude={"metadata"}) == task.model_dump(exclude={"metadata"})
    assert [[(o.status, [op.name for op in o.ops]) for o in t.outcomes] for t in stored.turns] == [
        [(o.status, [op.name for op in o.ops]) for o in t.outcomes] for t in trajectory.turns
    ]
    assert [(r.size, r.model_size, r.lineage) for r in stored.images] == [
        (r.size, r.model_size, r.lineage) for r in trajectory.images
    ]
    assert TASK_FIELD in rollout.output.extra_fields


def test_verl_streams_the_reward_through_its_reward_manager(tiny: Tiny, rollout: Rollout) -> None:
    """The reward file loaded by path and run by verl's naive manager gives the score on the last token."""
    extra_info = {**rollout.row["extra_info"], **rollout.output.extra_fields}
    direct = compute_score(rollout.row["data_source"], "", "42", extra_info)
    assert rollout.output.reward_score == pytest.approx(direct["score"])
    logged = rollout.output.extra_fields["reward_extra_info"]
    assert logged == pytest.approx(direct)
    # verl's batch assembly: rm_scores on the last response token, each reward key a column.
    batch = AgentLoopWorker._postprocess(
        types.SimpleNamespace(reward_loop_worker_handles=[object()], distillation_enabled=False),
        inputs=[rollout.output],
        input_non_tensor_batch=None,
    )
    last = len(rollout.response) - 1
    assert batch.batch["rm_scores"][0, last].item() == pytest.approx(direct["score"])
    assert batch.batch["rm_scores"][0].count_nonzero() <= 1
    assert set(direct) <= set(batch.non_tensor_batch) and batch.meta_info["reward_extra_keys"] == list(direct)
    assert batch.non_tensor_batch[TRAJECTORY_FIELD][0]["stop_reason"] == "answered"


def test_observation_that_would_overflow_ends_the_rollout_before_it(
    tiny: Tiny, rollout: Rollout, expected: tuple, tmp_path: Path
) -> None:
    _, rendered, _ = expected
    first = rendered.replies[0]
    reply = rendered.replies[0].end - first.start
    observation = rendered.replies[1].start - rendered.replies[0].end
    # Room for the first reply and its observation, but not for one more token: stop before the observation.
    cut = roll_out(tiny, tmp_path / "cut", response_length=reply + observation)
    assert len(cut.server.calls) == 1
    assert cut.response == rollout.server.replies[0] and cut.mask == [1] * reply
    assert len(cut.output.multi_modal_data["images"]) == 2
    grid = cut.output.multi_modal_inputs["image_grid_thw"]
    merge = tiny.processor.image_processor.merge_size**2
    assert image_pads(tiny, cut.output.input_ids[0].tolist()) == int(grid.prod(dim=-1).sum()) // merge
    stored = cut.output.extra_fields[TRAJECTORY_FIELD]
    assert stored["stop_reason"] == "max_tokens" and stored["error"] is None
    assert "does not fit" in stored["metadata"]["verl"]["unshown_observation"]
    # One token more: the observation goes in, and the next reply may use that one token.
    tight = roll_out(tiny, tmp_path / "tight", response_length=reply + observation + 1)
    assert [call["max_tokens"] for call in tight.server.calls] == [reply + observation + 1, 1]
    assert len(tight.response) == reply + observation + 1
    assert len(tight.output.multi_modal_data["images"]) == 4
    assert image_pads(tiny, tight.output.input_ids[0].tolist()) == int(
        tight.output.multi_modal_inputs["image_grid_thw"].prod(dim=-1).sum()
    ) // (tiny.processor.image_processor.merge_size**2)


def test_sandbox_failure_ends_the_rollout_with_a_recorded_error(tiny: Tiny, sandbox: Sandbox, tmp_path: Path) -> None:
    """The sandbox service goes down while the first reply is generated: the rollout ends, the run does not."""
    service = SandboxServer(sandbox, SERVICE_TOKEN).start()

    def outage(turn: int) -> None:
        if turn == 0:
            service.close()

    broken = roll_out(tiny, tmp_path, on_call=outage, sandbox_url=service.url, sandbox_token=SERVICE_TOKEN)
    assert len(broken.server.calls) == 1
    assert broken.mask == [1] * len(broken.response) and broken.response == broken.server.replies[0]
    assert len(broken.output.multi_modal_data["images"]) == 2
    stored = broken.output.extra_fields[TRAJECTORY_FIELD]
    assert stored["stop_reason"] == "sandbox_error" and stored["error"]
    score = compute_score("synthetic", "", "42", {**broken.row["extra_info"], **broken.output.extra_fields})
    assert score["sandbox_error"] == 1.0 and score["answered"] == 0.0


def test_a_reply_with_image_pad_tokens_is_not_kept(tiny: Tiny, rollout: Rollout, tmp_path: Path) -> None:
    """A pad token the model writes has no pixels behind it; the reply and the observation before it go."""
    bad = roll_out(tiny, tmp_path, replies=(REPLIES[0], "I see <|image_pad|> there"))
    assert tiny.renderer.image_token_id in bad.server.replies[1]
    assert len(bad.server.calls) == 2
    assert bad.response == rollout.server.replies[0] and bad.mask == [1] * len(bad.response)
    assert len(bad.output.multi_modal_data["images"]) == 2
    grid = bad.output.multi_modal_inputs["image_grid_thw"]
    merge = tiny.processor.image_processor.merge_size**2
    assert image_pads(tiny, bad.output.input_ids[0].tolist()) == int(grid.prod(dim=-1).sum()) // merge
    stored = bad.output.extra_fields[TRAJECTORY_FIELD]
    assert stored["stop_reason"] == "model_error" and "pad tokens" in stored["error"]


def test_a_first_reply_with_image_pad_tokens_leaves_the_prompt(tiny: Tiny, rollout: Rollout, tmp_path: Path) -> None:
    bad = roll_out(tiny, tmp_path, replies=("<|image_pad|>",))
    assert bad.prompt == rollout.prompt and bad.response == []
    assert len(bad.output.multi_modal_data["images"]) == 2
    assert bad.output.extra_fields[TRAJECTORY_FIELD]["stop_reason"] == "model_error"


def test_turns_follow_multi_turn_max_assistant_turns(tiny: Tiny, rollout: Rollout, tmp_path: Path) -> None:
    capped = roll_out(tiny, tmp_path / "verl", rollout={"max_assistant_turns": 1})
    assert len(capped.server.calls) == 1 and capped.response == rollout.server.replies[0]
    assert capped.output.extra_fields[TRAJECTORY_FIELD]["stop_reason"] == "max_turns"
    assert len(roll_out(tiny, tmp_path / "yaml", rollout={"max_assistant_turns": 1}, max_turns=2).server.calls) == 2


def test_a_prompt_longer_than_prompt_length_is_a_configuration_error(tiny: Tiny, tmp_path: Path) -> None:
    """As in verl's own loops: image tokens cannot be cut, so the step fails and says what to change."""
    with pytest.raises(ValueError, match=r"rollout\.prompt_length=64"):
        roll_out(tiny, tmp_path, rollout={"prompt_length": 64})


def test_verl_loads_the_reward_by_path_and_by_package() -> None:
    from verl.utils.import_utils import load_extern_object

    for path in (str(reward_function_path()), "pkg://codevision.integrations.verl.reward"):
        function = load_extern_object(module_path=path, object_name="compute_score")
        with pytest.raises(ValueError, match="codevision_trajectory"):
            function("synthetic", "", "42", {"agent_name": "tool_agent"})


def test_a_batch_through_generate_sequences(tiny: Tiny, tmp_path: Path) -> None:
    """Two rows, two rollouts each, concurrently on one event loop and one sandbox pool, as a training step."""
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn

    tasks = [make_task(), make_task(((64, 200), (50, 40)), number=11)]
    data = dataset(tasks, tiny.processor, tmp_path)
    batch = DataProto.from_single_dict(collate_fn([data[i] for i in range(len(data))]))
    batch = batch.repeat(repeat_times=2, interleave=True)
    batch.meta_info = {"global_steps": 1, "validate": False}
    server = ScriptedServer(tiny.processor.tokenizer, REPLIES)
    worker = make_worker(tiny, server, {}, {})

    async def step() -> Any:
        stream_rewards(worker)
        return await worker.generate_sequences(batch)

    output = asyncio.run(step())
    length = PROMPT_LENGTH + RESPONSE_LENGTH
    assert output.batch["input_ids"].shape == (4, length)
    assert output.batch["position_ids"].shape == (4, 4, length)
    assert sorted(server.turns.values()) == [3, 3, 3, 3], "four sticky requests of three turns each"
    merge = tiny.processor.image_processor.merge_size**2
    for i in range(4):
        grid = output.non_tensor_batch["multi_modal_inputs"][i]["image_grid_thw"]
        assert image_pads(tiny, output.batch["input_ids"][i].tolist()) == int(grid.prod(dim=-1).sum()) // merge
        assert output.non_tensor_batch[TRAJECTORY_FIELD][i]["stop_reason"] == "answered"
        assert output.batch["rm_scores"][i].sum().item() == pytest.approx(output.non_tensor_batch["score"][i])
    # The two rollouts of a row saw the same scripted replies, hence the same sequence; the rows differ.
    assert torch.equal(output.batch["input_ids"][0], output.batch["input_ids"][1])
    assert not torch.equal(output.batch["input_ids"][0], output.batch["input_ids"][2])
    tasks = [trajectory["task_id"] for trajectory in output.non_tensor_batch[TRAJECTORY_FIELD]]
    assert tasks == ["synthetic-7", "synthetic-7", "synthetic-11", "synthetic-11"]


def test_images_follow_a_max_pixels_given_to_verl_s_processor(tiny: Tiny, tmp_path: Path) -> None:
    """``data.mm_processor_kwargs`` reaches verl's processor call, so images are sized by it too."""
    limit = 16 * tiny.budget.factor**2
    small = roll_out(tiny, tmp_path, rollout={"mm_processor_kwargs": {"max_pixels": limit}})
    sizes = [image.size for image in small.output.multi_modal_data["images"]]
    assert len(sizes) == 5 and all(width * height <= limit for width, height in sizes)
    grid = small.output.multi_modal_inputs["image_grid_thw"]
    merge = tiny.processor.image_processor.merge_size**2
    assert image_pads(tiny, small.output.input_ids[0].tolist()) == int(grid.prod(dim=-1).sum()) // merge
