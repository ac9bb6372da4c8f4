"""``codevision train sft`` on TRL with tiny Qwen-VL models: labels, overfitting, reloading, resuming, LoRA.

The training data are the bundled examples played through the real agent loop and sandbox and saved
as trajectories. The tiny Qwen2.5-VL model's own template cannot render tool turns, so training
(like evaluation) uses codevision's shipped template, a real Qwen-VL template. What must hold: the
labels are the model's own tokens of the renderer's sequence and nothing else; a handful of
trajectories is overfitted and the reloaded checkpoint, driven by the local policy through the
agent loop, replays a training trajectory under greedy decoding; a run killed with SIGKILL resumes
to the same weights as an uninterrupted one; a LoRA run is merged into a model the policy loads;
a checkpoint renders the same tokens in verl's environment (transformers 5.10).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="needs torch (see .venv-transformers)")
pytest.importorskip("trl", reason="needs trl (see .venv-transformers)")

import torch
import transformers
from safetensors.torch import load_file

from codevision.agent import run_agent
from codevision.chat import ChatRenderer, ImageBudget, sampled_ids
from codevision.demo import EXAMPLES, SIGN
from codevision.policies import ScriptedPolicy, TransformersPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.testing import build_tiny_qwen_vl
from codevision.testing.tiny_vlm import TOOL_TOKENS
from codevision.train.checkpoint import MANIFEST_FILE, template_digest
from codevision.train.common import last_checkpoint
from codevision.train.config import SFTSettings, build
from codevision.train.examples import collect
from codevision.train.sequences import IGNORE_INDEX, Collator, plan
from codevision.train.sft import prepare, train
from codevision.trajectory import Trajectory

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", family="qwen2_5_vl")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout=5.0, memory_mb=1024) as sb:
        yield sb


@pytest.fixture(scope="module")
def trajectories(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled examples as saved trajectories, scored correct (as a filtered teacher run would be)."""
    root = tmp_path_factory.mktemp("trajectories")
    protocol = get_protocol()
    for example in EXAMPLES:
        trajectory = run_agent(example.task(), ScriptedPolicy(list(example.replies)), sandbox, protocol)
        trajectory.score = {"correct": True}
        trajectory.save(root / trajectory.task_id)
    return root


def settings(model: Path, data: list[Path], out: Path, **overrides: Any) -> SFTSettings:
    values: dict[str, Any] = {
        "model": str(model),
        "data": [str(path) for path in data],
        "output_dir": str(out),
        "trust_remote_code": True,
        "dtype": "float32",
        "learning_rate": 3e-3,
        "lr_scheduler": "constant",
        "num_epochs": 1000,
        "max_steps": 20,
        "save_steps": 0,
        "logging_steps": 5,
        "seed": 0,
    }
    return build(SFTSettings, {**values, **overrides}, where="test")


def losses(log: list[dict[str, Any]]) -> list[float]:
    return [entry["loss"] for entry in log if "loss" in entry]


def allow_tool_tokens(model_dir: Path) -> None:
    """The tiny model's generation config forbids tool tokens (random weights would emit broken calls);
    a model trained to call tools must be allowed to."""
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text())
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    tool_ids = set(tokenizer.convert_tokens_to_ids(list(TOOL_TOKENS)))
    config["suppress_tokens"] = [token for token in config["suppress_tokens"] if token not in tool_ids]
    path.write_text(json.dumps(config))


def test_labels_are_the_renderers_replies_token_by_token(tiny_model: Path, trajectories: Path, tmp_path: Path) -> None:
    prepared = prepare(settings(tiny_model, [trajectories], tmp_path / "out"))
    renderer, budget = prepared.renderer, prepared.budget
    collator = Collator(prepared.plan.sequences, prepared.collected.conversations, renderer, budget)
    assert len(prepared.plan.sequences) == len(EXAMPLES)
    for number, sequence in enumerate(prepared.plan.sequences):
        conversation = prepared.collected.conversations[sequence.conversation]
        trajectory = Trajectory.load(conversation.where)
        images = [budget.fit(trajectory.image(i)) for i in range(len(trajectory.images))]
        expected = renderer.render(trajectory.conversation(), images)
        batch = collator([{"sequence": number}])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        assert ids == expected.input_ids
        assert torch.equal(batch["pixel_values"], expected.image_inputs["pixel_values"])
        assert torch.equal(batch["image_grid_thw"], expected.image_inputs["image_grid_thw"])
        for position, (token, label) in enumerate(zip(ids, labels, strict=True)):
            assert label == (token if expected.generated_mask[position] else IGNORE_INDEX), position
        # The labelled spans are the replies as written, each with its end-of-turn token, and nothing else.
        spans = [labels[reply.start : reply.end] for reply in expected.replies]
        texts = [renderer.tokenizer.decode(span) for span in spans]
        assert texts == [f"{turn.text}<|im_end|>" for turn in trajectory.turns]
        assert sum(label != IGNORE_INDEX for label in labels) == sum(len(span) for span in spans)
        assert renderer.image_token_id not in {label for label in labels if label != IGNORE_INDEX}


def test_the_trl_export_trains_on_the_tokens_and_pixels_of_its_trajectories(
    tiny_model: Path, trajectories: Path, tmp_path: Path
) -> None:
    from codevision.data.sft import export_sft

    exported = export_sft([trajectories], tmp_path / "trl", "trl").path
    batches = []
    for data in (trajectories, exported):
        prepared = prepare(settings(tiny_model, [data], tmp_path / "out"))
        conversations = prepared.collected.conversations
        collator = Collator(prepared.plan.sequences, conversations, prepared.renderer, prepared.budget)
        order = sorted(range(len(prepared.plan.sequences)), key=lambda n: conversations[n].id)
        batches.append([collator([{"sequence": number}]) for number in order])
    assert len(batches[1]) == len(EXAMPLES)
    for from_trajectory, from_export in zip(*batches, strict=True):
        assert from_export["input_ids"].tolist() == from_trajectory["input_ids"].tolist()
        assert torch.equal(from_export["labels"], from_trajectory["labels"])
        assert torch.equal(from_export["pixel_values"], from_trajectory["pixel_values"])


def test_sft_overfits_and_the_checkpoint_replays_a_trajectory_through_the_agent_loop(
    tiny_model: Path, trajectories: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    everything = train(prepare(settings(tiny_model, [trajectories], tmp_path / "all", max_steps=45)))
    curve = losses(everything.log)
    assert curve[-1] < curve[0] / 2, curve

    sign = trajectories / SIGN.id
    outcome = train(prepare(settings(tiny_model, [sign], tmp_path / "sign", max_steps=80, logging_steps=10)))
    final = outcome.final
    manifest = json.loads((final / MANIFEST_FILE).read_text())
    template = (final / "chat_template.jinja").read_text()
    assert manifest["chat_template_sha256"] == template_digest(template)
    assert (
        manifest["image_budget"]
        == ImageBudget.from_processor(
            transformers.AutoProcessor.from_pretrained(final, trust_remote_code=True)
        ).to_dict()
    )
    allow_tool_tokens(final)
    policy = TransformersPolicy(final, trust_remote_code=True)
    replayed = run_agent(SIGN.task(), policy, sandbox, get_protocol())
    recorded = Trajectory.load(sign)
    assert [turn.text for turn in replayed.turns] == [turn.text for turn in recorded.turns]
    assert replayed.final_answer == recorded.final_answer
    assert_served_like_training(final, recorded)


def assert_served_like_training(final: Path, recorded: Trajectory) -> None:
    """``transformers serve`` on the checkpoint builds the training prompt (as long as the training
    sequence's first prompt: the server reports no ids) and answers the first turn with the trained call."""
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    import asyncio

    from codevision.policies import OpenAIPolicy
    from codevision.testing import TransformersServer

    processor = transformers.AutoProcessor.from_pretrained(final, trust_remote_code=True)
    renderer, budget = ChatRenderer(processor, get_protocol()), ImageBudget.from_processor(processor)
    images = [budget.fit(recorded.image(i)) for i in range(len(recorded.images))]
    messages = recorded.conversation()
    trained = renderer.render(messages, images)
    first_reply = next(number for number, message in enumerate(messages) if message.role == "assistant")

    async def first_turn(server: TransformersServer) -> Any:
        async with OpenAIPolicy(server.url, server.model_name, tool_role="tool", retries=0) as remote:
            return await remote.generate(messages[:first_reply], images, max_tokens=200)

    with TransformersServer(final) as server:
        reply = asyncio.run(first_turn(server))
    assert reply.usage.prompt_tokens == trained.replies[0].start
    # transformers serve parses Qwen tool calls out of every reply; the policy writes them back (the
    # JSON re-serialised, between newlines), so the call is the trained one, its raw text not quite.
    protocol = get_protocol()
    served, trained_call = protocol.parse(reply.text).actions, protocol.parse(recorded.turns[0].text).actions
    assert [(a.kind, a.code, a.image_index) for a in served] == [(a.kind, a.code, a.image_index) for a in trained_call]


def test_a_codevision_sft_sharegpt_row_trains(tiny_model: Path, tmp_path: Path) -> None:
    """A row in CodeVision-SFT's layout: human/gpt/observation turns, <image> placeholders, image paths."""
    from codevision.testing.images import scene_image

    (tmp_path / "images").mkdir()
    scene_image(96, 64, seed=1).save(tmp_path / "images" / "q.png")
    scene_image(64, 64, seed=2).save(tmp_path / "images" / "crop.png")
    call = '<tool_call>{"name": "code_image_tool", "arguments": {"code": "display(image.crop((0, 0, 32, 32)))", '
    row = {
        "conversations": [
            {"from": "system", "value": get_protocol().system_prompt()},
            {"from": "human", "value": "<image>\nWhat colour is the corner?"},
            {"from": "gpt", "value": f'<think>Zoom in.</think>\n{call}"image_index": 0}}}}</tool_call>'},
            {"from": "observation", "value": "Image 1: <image>"},
            {"from": "gpt", "value": "<answer>red</answer>"},
        ],
        "images": ["images/q.png", "images/crop.png"],
    }
    data = tmp_path / "codevision_sft.json"
    data.write_text(json.dumps([row]))
    prepared = prepare(settings(tiny_model, [data], tmp_path / "out", max_steps=4))
    sequence = prepared.plan.sequences[0]
    assert sequence.shown == [0, 1]
    text = prepared.renderer.tokenizer.decode(sequence.input_ids)
    assert "<|im_start|>user\n<tool_response>\nImage 1: <|vision_start|>" in text
    trained = [token for token, bit in zip(sequence.input_ids, sequence.generated_mask, strict=True) if bit]
    assert prepared.renderer.tokenizer.decode(trained).endswith("<answer>red</answer><|im_end|>")
    outcome = train(prepared)
    assert outcome.steps == 4
    assert all(math.isfinite(loss) for loss in losses(outcome.log))


def test_tool_schemas_are_rendered_only_by_a_template_that_prints_them(
    tiny_model: Path, trajectories: Path, tmp_path: Path
) -> None:
    from importlib import resources

    from codevision.train.common import TrainingError

    with pytest.raises(TrainingError, match="does not print tool schemas"):
        prepare(settings(tiny_model, [trajectories], tmp_path / "a", tools="protocol"))
    stock = tmp_path / "qwen3_vl.jinja"
    stock.write_text(resources.files("trl").joinpath("chat_templates", "qwen3_vl.jinja").read_text(encoding="utf-8"))
    prepared = prepare(settings(tiny_model, [trajectories], tmp_path / "b", tools="protocol", chat_template=str(stock)))
    text = prepared.renderer.tokenizer.decode(prepared.plan.sequences[0].input_ids)
    assert "# Tools" in text and '"name": "code_image_tool"' in text


def test_a_released_system_prompt_replaces_every_conversations_own(
    tiny_model: Path, trajectories: Path, tmp_path: Path
) -> None:
    prompt = tmp_path / "released.txt"
    prompt.write_text("You are a careful visual reasoner. Write code to look closer.")
    prepared = prepare(settings(tiny_model, [trajectories], tmp_path / "out", system_prompt=str(prompt)))
    for sequence in prepared.plan.sequences:
        text = prepared.renderer.tokenizer.decode(sequence.input_ids)
        assert text.startswith(f"<|im_start|>system\n{prompt.read_text()}<|im_end|>")
        assert text.count("<|im_start|>system") == 1


def test_overlong_conversations_are_dropped_or_cut_after_a_reply(tiny_model: Path, trajectories: Path) -> None:
    processor = transformers.AutoProcessor.from_pretrained(tiny_model, trust_remote_code=True)
    renderer = ChatRenderer(processor, get_protocol())
    budget = ImageBudget.from_processor(processor)
    conversations = collect([trajectories]).conversations
    full = plan(conversations, renderer, budget, max_length=10**6, overflow="drop")
    lengths = sorted(len(sequence.input_ids) for sequence in full.sequences)
    limit = lengths[0]  # the shortest fits exactly; the others do not
    dropped = plan(conversations, renderer, budget, max_length=limit, overflow="drop")
    assert len(dropped.sequences) == 1 and len(dropped.dropped) == len(conversations) - 1
    cut = plan(conversations, renderer, budget, max_length=limit, overflow="truncate")
    assert len(cut.sequences) + len(cut.dropped) == len(conversations)
    assert cut.truncated, "some conversation has a first reply that fits"
    originals = {sequence.conversation: sequence for sequence in full.sequences}
    for sequence in cut.sequences:
        original = originals[sequence.conversation]
        size = len(sequence.input_ids)
        assert size <= limit
        assert original.input_ids[:size] == sequence.input_ids
        # Cut right after a reply's end-of-turn: the last token is a trained <|im_end|>.
        assert sequence.input_ids[-1] == renderer.end_of_turn_id and sequence.generated_mask[-1] == 1
        assert sequence.input_ids.count(renderer.image_token_id) == sum(sequence.pads)
    batch = Collator(cut.sequences, conversations, renderer, budget)(
        [{"sequence": i} for i in range(len(cut.sequences))]
    )
    assert batch["input_ids"].shape[0] == len(cut.sequences)


def test_recorded_ids_of_another_tokenizer_are_retokenised(tiny_model: Path, trajectories: Path) -> None:
    processor = transformers.AutoProcessor.from_pretrained(tiny_model, trust_remote_code=True)
    renderer = ChatRenderer(processor, get_protocol())
    budget = ImageBudget.from_processor(processor)
    conversations = collect([trajectories]).conversations
    reference = plan(conversations, renderer, budget, max_length=10**6, overflow="drop")
    replies = [message for message in conversations[0].messages if message.role == "assistant"]
    own = renderer.tokenizer(replies[0].text, add_special_tokens=False)["input_ids"]
    replies[0].token_ids = [*own, renderer.end_of_turn_id]
    replies[1].token_ids = [5, 6, 7]  # another tokenizer's ids: they decode to other text
    mixed = plan(conversations, renderer, budget, max_length=10**6, overflow="drop")
    assert (mixed.sampled_replies, mixed.retokenised_replies) == (1, 1)
    assert mixed.sequences[0].input_ids == reference.sequences[0].input_ids
    assert sampled_ids(conversations[0].messages)[1] == [5, 6, 7]


def run_cli(config: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "codevision.cli", "train", "sft", "--config", str(config), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_training_resumes_to_the_same_weights(
    tiny_model: Path, trajectories: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "sft.yaml"
    base = (REPO / "recipes" / "sft" / "tiny_cpu.yaml").read_text()
    recipe.write_text(base + f"\nmodel: {tiny_model}\ndata: [{trajectories}]\nmax_steps: 24\nsave_steps: 4\n")
    # YAML keeps the last of a repeated key: the test's paths and step counts win over the recipe's.
    whole = run_cli(recipe, "output_dir=" + str(tmp_path / "whole"))
    assert whole.wait(timeout=600) == 0, whole.communicate()[1][-3000:]

    killed_dir = tmp_path / "killed"
    killed = run_cli(recipe, "output_dir=" + str(killed_dir))
    deadline = time.monotonic() + 300
    while last_checkpoint(killed_dir) is None or last_checkpoint(killed_dir).name == "checkpoint-4":
        assert killed.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    interrupted_at = last_checkpoint(killed_dir)
    assert interrupted_at is not None and not (killed_dir / "final").exists()

    resumed = run_cli(recipe, "output_dir=" + str(killed_dir), "--resume", "--json")
    output, errors = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, errors[-3000:]
    outcome = json.loads(output)["outcome"]
    assert outcome["resumed_from"] == str(interrupted_at) and outcome["steps"] == 24
    expected = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    got = load_file(killed_dir / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.allclose(tensor, got[name], atol=1e-6), name

    again = run_cli(recipe, "output_dir=" + str(killed_dir))
    errors = again.communicate(timeout=120)[1]
    assert again.returncode == 2 and "--resume" in errors and "Traceback" not in errors


def test_lora_adapters_are_merged_into_a_model_the_policy_loads(
    tiny_model: Path, trajectories: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    before = load_file(tiny_model / "model.safetensors")
    outcome = train(prepare(settings(tiny_model, [trajectories], tmp_path / "lora", finetune="lora", max_steps=6)))
    merged = load_file(outcome.final / "model.safetensors")
    assert merged.keys() == before.keys(), "the merged model has the base model's parameters, no adapters"
    changed = {name for name in before if not torch.equal(before[name], merged[name])}
    # Only the language model's projections were adapted (Qwen2.5-VL saves them as model.layers.*).
    assert changed and not any("visual" in name for name in changed), sorted(changed)[:5]
    assert all(name.endswith("proj.weight") for name in changed), sorted(changed)[:5]
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    trajectory = run_agent(
        SIGN.task(), TransformersPolicy(outcome.final, trust_remote_code=True), sandbox, get_protocol()
    )
    assert trajectory.turns, trajectory.error


def test_a_lora_run_resumes_to_the_same_adapters(tiny_model: Path, trajectories: Path, tmp_path: Path) -> None:
    import shutil

    lora = {"finetune": "lora", "max_steps": 8, "save_steps": 4, "save_total_limit": 0, "lr_scheduler": "cosine"}
    whole = train(prepare(settings(tiny_model, [trajectories], tmp_path / "whole", **lora)))
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for name in ("checkpoint-8", "adapter", "final"):
        shutil.rmtree(tmp_path / "cut" / name)
    resumed = train(prepare(settings(tiny_model, [trajectories], tmp_path / "cut", **lora)), resume=True)
    assert resumed.resumed_from == tmp_path / "cut" / "checkpoint-4" and resumed.steps == 8
    expected = load_file(whole.final / "model.safetensors")
    got = load_file(resumed.final / "model.safetensors")
    for name, tensor in expected.items():
        assert torch.allclose(tensor, got[name], atol=1e-6), name


def test_a_held_out_split_is_evaluated(tiny_model: Path, trajectories: Path, tmp_path: Path) -> None:
    prepared = prepare(settings(tiny_model, [trajectories], tmp_path / "out", eval_fraction=0.3, max_steps=4))
    assert (len(prepared.train), len(prepared.held_out)) == (2, 1)
    assert not set(prepared.train) & set(prepared.held_out)
    outcome = train(prepared)
    assert any("eval_loss" in entry for entry in outcome.log)


def test_the_vision_tower_stays_frozen_unless_trained(tiny_model: Path, trajectories: Path, tmp_path: Path) -> None:
    before = load_file(tiny_model / "model.safetensors")
    for freeze in (True, False):
        outcome = train(
            prepare(settings(tiny_model, [trajectories], tmp_path / str(freeze), max_steps=3, freeze_vision=freeze))
        )
        after = load_file(outcome.final / "model.safetensors")
        vision_changed = any(not torch.equal(before[n], after[n]) for n in before if ".visual." in f".{n}")
        assert vision_changed is not freeze


@pytest.mark.skipif(
    not os.environ.get("CODEVISION_VERL_PYTHON"), reason="set CODEVISION_VERL_PYTHON (make test-engine)"
)
def test_a_checkpoint_renders_the_same_tokens_in_verls_environment(
    tiny_model: Path, trajectories: Path, tmp_path: Path
) -> None:
    outcome = train(prepare(settings(tiny_model, [trajectories], tmp_path / "out", max_steps=2)))
    script = (
        "import json, sys, transformers\n"
        "from codevision.chat import ChatRenderer, ImageBudget\n"
        "from codevision.protocols import get_protocol\n"
        "from codevision.trajectory import Trajectory\n"
        "from codevision.data.sft import find_trajectories\n"
        "processor = transformers.AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "renderer, budget = ChatRenderer(processor, get_protocol()), ImageBudget.from_processor(processor)\n"
        "out = {}\n"
        "for path in find_trajectories([sys.argv[2]]):\n"
        "    t = Trajectory.load(path)\n"
        "    r = renderer.render(t.conversation(), [budget.fit(t.image(i)) for i in range(len(t.images))])\n"
        "    out[t.task_id] = [r.input_ids, r.generated_mask, r.image_inputs['pixel_values'].sum().item()]\n"
        "print(json.dumps({'version': transformers.__version__, 'rendered': out}))\n"
    )
    result = subprocess.run(
        [os.environ["CODEVISION_VERL_PYTHON"], "-c", script, str(outcome.final), str(trajectories)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert there["version"].startswith("5.10")
    processor = transformers.AutoProcessor.from_pretrained(outcome.final, trust_remote_code=True)
    renderer, budget = ChatRenderer(processor, get_protocol()), ImageBudget.from_processor(processor)
    for task_id, (ids, mask, pixel_sum) in there["rendered"].items():
        trajectory = Trajectory.load(trajectories / task_id)
        images = [budget.fit(trajectory.image(i)) for i in range(len(trajectory.images))]
        here = renderer.render(trajectory.conversation(), images)
        assert (here.input_ids, here.generated_mask) == (ids, mask), task_id
        assert here.image_inputs["pixel_values"].sum().item() == pytest.approx(pixel_sum, rel=1e-6)


def test_the_accelerate_configs_parse_with_accelerates_own_launcher() -> None:
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    expected = {"fsdp.yaml": ("FSDP", "use_fsdp"), "zero3.yaml": ("DEEPSPEED", "use_deepspeed")}
    for name, (kind, flag) in expected.items():
        path = REPO / "recipes" / "accelerate" / name
        config = load_config_from_file(str(path))  # rejects unknown keys
        assert config.distributed_type.value == kind
        argv = ["--config_file", str(path), "-m", "codevision.cli", "train", "sft", "--config", "sft.yaml"]
        args = launch_command_parser().parse_args(argv)
        _validate_launch_command(args)
        assert getattr(args, flag) and args.num_processes == 8 and args.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(REPO / "recipes" / "accelerate" / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
