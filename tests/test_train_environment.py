"""The sandbox as TRL's GRPO environment: real tool calls in TRL's tool loop, as in evaluation.

TRL 1.16's GRPOTrainer runs with ``environment_factory`` set to codevision's environment class and
the tiny Qwen3-VL model with the shipped template; its sampler is replaced by the bundled sign
example's replies (a random model never writes a tool call), the first one as non-canonical ids.
The tool call then runs in the real sandbox through the code the agent loop runs. What must hold:
the sequence TRL trains on (ids, loss mask, pixels with the rotated image the tool returned) is
the renderer's sequence of the same episode played by the agent loop, each prompt TRL generated
from is its prefix, the environment recorded the call and the returned image's verified lineage,
the reward TRL received is the evaluation reward of that episode, and optimiser steps train and
log every reward term.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="needs torch (see .venv-transformers)")
pytest.importorskip("trl", reason="needs trl (see .venv-transformers)")

import torch
import transformers
import trl

from codevision.agent import run_agent
from codevision.chat import ChatRenderer, ImageBudget, load_template
from codevision.data.hf import without_none
from codevision.data.rl import trl_grpo_dataset
from codevision.demo import SIGN
from codevision.eval import EvalItem
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.rewards.spec import RewardSpec
from codevision.sandbox import Sandbox
from codevision.testing import build_tiny_qwen_vl
from codevision.train.environment import SandboxEnvironment, environment_class
from codevision.train.grpo import prepare_for_trl
from codevision.train.rollouts import RolloutReward
from tests.test_call_rules import TRL_READINGS, call
from tests.token_ids import canonical, noncanonical

pytestmark = pytest.mark.slow
Sampler = Callable[[list[list[int]]], list[list[int]]]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=5.0, memory_mb=1024) as sb:
        yield sb


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny") / "qwen3_vl", family="qwen3_vl")
    (directory / "chat_template.jinja").write_text(load_template(), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def processor(model_dir: Path) -> Any:
    loaded = transformers.AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    # As `train grpo` prepares it: the Qwen3 parser for the shipped template, image inputs as tensors.
    prepare_for_trl(loaded)
    return loaded


def sign_rows(count: int) -> Any:
    """The sign example as ``count`` GRPO rows, built as ``data export rl --format trl`` builds them."""
    dataset = trl_grpo_dataset([EvalItem(SIGN.task())], get_protocol())
    return without_none(dataset.select([0] * count))


def grpo_trainer(
    model: Any, processor: Any, sandbox: Sandbox, reward: RolloutReward, sampler: Sampler, out: Path, **config: Any
) -> Any:
    """TRL's GRPOTrainer with codevision's environment, its generations scripted by ``sampler``."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    budget = ImageBudget.from_processor(processor)
    settings = {
        "output_dir": str(out),
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "per_device_train_batch_size": 2,
        "num_generations": 2,
        "max_completion_length": 2048,
        "max_tool_calling_iterations": 3,
        "save_strategy": "no",
        **config,
    }
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=GRPOConfig(**settings),
        train_dataset=sign_rows(4),
        processing_class=processor,
        environment_factory=environment_class(reward.protocol, sandbox, budget),
    )
    # The generation step, scripted the way TRL's own tests script it.
    trainer._generate_single_turn = lambda prompt_ids, *args, **kwargs: (sampler(prompt_ids), None)
    return trainer


#: Scripts whose tool calls TRL runs: the sign example (one call), and two calls in one reply followed
#: by a call the protocol refuses (a negative image index), answered by the protocol as a failed call.
SCRIPTS = {
    "sign": list(SIGN.replies),
    "two calls, then a refused one": [
        call({"code": "print(image.size)", "image_index": 0}) + "\n" + call({"code": "display(image.rotate(180))"}),
        call({"code": "print(2)", "image_index": -1}),
        SIGN.replies[-1],
    ],
}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_grpo_rollouts_run_the_protocols_tool_in_the_sandbox(
    model_dir: Path, processor: Any, sandbox: Sandbox, tmp_path: Path, script: str
) -> None:
    tokenizer, protocol = processor.tokenizer, get_protocol(calls="trl")
    budget = ImageBudget.from_processor(processor)
    # The same episode through the agent loop under TRL call rules: what evaluation records and the renderer renders.
    played = run_agent(SIGN.task(), ScriptedPolicy(SCRIPTS[script]), sandbox, protocol)
    images = [budget.fit(played.image(i)) for i in range(len(played.images))]
    texts = [turn.text for turn in played.turns]
    replies = [noncanonical(tokenizer, texts[0]), *(canonical(tokenizer, text) for text in texts[1:])]
    expected = ChatRenderer(processor, protocol).render(played.conversation(), images, sampled=dict(enumerate(replies)))
    prompts: list[list[int]] = []

    def sample(prompt_ids: list[list[int]]) -> list[list[int]]:
        prompts.append(list(prompt_ids[0]))
        return [list(replies[len(prompts) - 1]) for _ in prompt_ids]

    spec = RewardSpec()
    reward = RolloutReward(spec, protocol, tokenizer)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
    trainer = grpo_trainer(model, processor, sandbox, reward, sample, tmp_path)
    trainer.model.eval()
    out = trainer._generate_and_score_completions([trainer.train_dataset[0], trainer.train_dataset[1]])

    prompt_mask, completion_mask = out["prompt_mask"][0].bool(), out["completion_mask"][0].bool()
    trl_ids = out["prompt_ids"][0][prompt_mask].tolist() + out["completion_ids"][0][completion_mask].tolist()
    trl_mask = [0] * int(prompt_mask.sum()) + out["tool_mask"][0][completion_mask].tolist()
    assert trl_ids == expected.input_ids
    assert trl_mask == expected.generated_mask
    assert prompts == [expected.input_ids[: span.start] for span in expected.replies]
    pixels = expected.image_inputs["pixel_values"]
    assert torch.equal(out["pixel_values"][: len(pixels)], pixels), "the rotated tool image is in the batch"

    ran = [outcome for turn in played.turns for outcome in turn.outcomes if outcome.status == "ok"]
    rollouts = trainer.environments
    assert len(rollouts) == 2 and all(isinstance(env, SandboxEnvironment) for env in rollouts)
    for env in rollouts:
        assert env.trajectory is not None and env.calls == sum(len(turn.outcomes) for turn in played.turns)
        assert [outcome.status for outcome in env.outcomes] == ["ok"] * len(ran)
        returned = env.trajectory.images[env.outcomes[-1].image_indices[0]]
        assert returned.lineage is not None and returned.lineage.verified
        env._release()
        assert env.tools is not None and env.tools.session is None

    # The reward step assembled the episode the agent loop played, and paid what evaluation would.
    paid = spec.compute(SIGN.task(), played)
    assert len(reward.last) == 2 and (paid.total > 0 or script != "sign")
    for trajectory, total, breakdown in reward.last:
        assert [turn.text for turn in trajectory.turns] == [turn.text for turn in played.turns]
        assert [turn.observation for turn in trajectory.turns] == [turn.observation for turn in played.turns]
        assert (trajectory.final_answer, trajectory.stop_reason) == (played.final_answer, played.stop_reason)
        assert total == pytest.approx(paid.total) and breakdown == pytest.approx(paid.breakdown)


@pytest.mark.parametrize("reply", list(TRL_READINGS))
def test_trl_call_rules_read_each_reply_as_trls_parser_does(processor: Any, reply: str) -> None:
    """Every reply of the call-rules table: the calls TRL's parser reads are the actions the protocol reads."""
    from trl.chat_template_utils import parse_response

    tokenizer = processor.tokenizer
    prefix = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    parsed = parse_response(tokenizer, canonical(tokenizer, reply), prefix=prefix)
    trl_calls = [tool_call["function"] for tool_call in parsed.get("tool_calls") or []]
    actions = get_protocol(calls="trl").parse(reply).actions
    assert len(trl_calls) == len(actions)
    for function, action in zip(trl_calls, actions, strict=True):
        if action.kind == "code":
            assert function["name"] == "code_image_tool" and function["arguments"]["code"] == action.code


def test_grpo_steps_with_sandbox_tool_calls_train_and_log_every_reward_term(
    model_dir: Path, processor: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Two optimiser steps: one rollout of each group answers right, one wrong, so the advantages and
    the gradient are not zero; each reward term and the rollout metrics are logged."""
    tokenizer = processor.tokenizer
    call = canonical(tokenizer, SIGN.replies[0])
    answers = [canonical(tokenizer, SIGN.replies[1]), canonical(tokenizer, "<answer>nothing</answer>")]
    tool_response = tokenizer.convert_tokens_to_ids("<tool_response>")

    def sample(prompt_ids: list[list[int]]) -> list[list[int]]:
        first_turn = all(tool_response not in ids for ids in prompt_ids)
        return [list(call) for _ in prompt_ids] if first_turn else [list(answer) for answer in answers]

    reward = RolloutReward(RewardSpec(), get_protocol(), tokenizer)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    trainer = grpo_trainer(
        model, processor, sandbox, reward, sample, tmp_path, max_steps=2, logging_steps=1, learning_rate=1e-3
    )
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    for term in reward.last[0][2]:
        assert f"reward/{term}" in logged, sorted(logged)
    assert {"rollout/tool_calls", "rollout/tool_error_rate", "rollout/answer_rate"} <= logged
    rewards = [total for _, total, _ in reward.last]
    assert rewards[0] > rewards[1], rewards
    changed = [name for name, parameter in model.named_parameters() if not torch.equal(before[name], parameter)]
    assert changed, "the step moved no weight"


def test_a_call_trl_cannot_parse_ends_the_rollout_without_a_tool_run(
    model_dir: Path, processor: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A raw newline inside the JSON code string: the agent loop's parser repairs it and runs the code,
    TRL's tool loop reads the reply as text and ends the episode. The reward step then sees a reply
    whose call never ran: no outcome, no process credit."""
    tokenizer, protocol = processor.tokenizer, get_protocol()
    broken = (
        '<tool_call>{"name": "code_image_tool", "arguments": {"code": "x = 1\nprint(x)", "image_index": 0}}</tool_call>'
    )
    assert protocol.parse(broken).actions, "the agent loop's parser repairs it"
    reply = canonical(tokenizer, broken)
    reward = RolloutReward(RewardSpec(), protocol, tokenizer)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
    trainer = grpo_trainer(model, processor, sandbox, reward, lambda ids: [list(reply) for _ in ids], tmp_path)
    trainer.model.eval()
    trainer._generate_and_score_completions([trainer.train_dataset[0], trainer.train_dataset[1]])
    assert all(env.calls == 0 for env in trainer.environments)
    for trajectory, total, breakdown in reward.last:
        (turn,) = trajectory.turns
        assert turn.text == broken and turn.outcomes == [] and trajectory.stop_reason == "no_action"
        assert breakdown["codevision.mandatory"] == 0.0 and total <= breakdown["codevision.format"]


def test_a_tool_round_that_returns_no_image_in_the_whole_batch_still_trains(
    model_dir: Path, processor: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every rollout's first call only prints. With the PIL image processor's numpy outputs TRL 1.16
    failed this step (``split_pixel_values_by_grid`` on a list); ``prepare_for_trl`` makes them tensors."""
    tokenizer = processor.tokenizer
    text_only = canonical(tokenizer, call({"code": "print(image.size)"}))
    answer = canonical(tokenizer, "<answer>x</answer>")
    tool_response = tokenizer.convert_tokens_to_ids("<tool_response>")

    def sample(prompt_ids: list[list[int]]) -> list[list[int]]:
        first_turn = all(tool_response not in ids for ids in prompt_ids)
        return [list(text_only if first_turn else answer) for _ in prompt_ids]

    reward = RolloutReward(RewardSpec(), get_protocol(), tokenizer)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
    trainer = grpo_trainer(model, processor, sandbox, reward, sample, tmp_path)
    trainer._generate_and_score_completions([trainer.train_dataset[0], trainer.train_dataset[1]])
    for trajectory, _, _ in reward.last:
        assert [len(turn.outcomes) for turn in trajectory.turns] == [1, 0]
        assert trajectory.turns[0].outcomes[0].stdout.strip() and trajectory.final_answer == "x"


def test_generation_never_samples_an_image_or_video_pad(
    model_dir: Path, processor: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A sampled video pad made Qwen-VL's position ids fail in the loss (``get_rope_index``) and ended a
    run; TRL itself suppresses only the image pad, so `train grpo` suppresses both."""
    from codevision.train.config import GRPOSettings, build
    from codevision.train.grpo import grpo_config

    settings = build(
        GRPOSettings,
        {"model": str(model_dir), "data": ["rows.parquet"], "output_dir": str(tmp_path), "num_generations": 2,
         "batch_size": 2, "dtype": "float32", "report_to": "none"},
        where="test",
    )  # fmt: skip
    pads = ChatRenderer(processor).vision_ids
    assert len(pads) == 2
    reward = RolloutReward(RewardSpec(), get_protocol(), processor.tokenizer)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=grpo_config(settings, unsampled=pads),
        train_dataset=sign_rows(2),
        processing_class=processor,
        environment_factory=environment_class(reward.protocol, sandbox, ImageBudget.from_processor(processor)),
    )
    assert set(trainer.generation_config.suppress_tokens) == pads
