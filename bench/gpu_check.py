"""GPU check: `train sft` and TRL GRPO steps with a random-weight Qwen2.5-VL of realistic width.

Run by ``bench/gpu_check.sh`` on a machine with one NVIDIA GPU and no network (see there); runs on a
CPU too with ``--small``, which is how it is checked here. Nothing is downloaded: the model is built
from a config (the tiny test model's tokenizer and processor, the language model widened to
1–3 B parameters), and the data are the bundled examples played through the real agent loop and
sandbox. Prints SFT tokens/s and samples/s, and for GRPO (generations scripted as the sign
example's tool call and answer, so the tool path runs in the sandbox) the step time split into
rollout (TRL's generation and tool loop, with the tool calls separately) and optimisation.

Examples:
  python bench/gpu_check.py                   # ~1.5 B parameters on cuda, bf16
  python bench/gpu_check.py --small --steps 2 # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

WIDE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 20, "num_attention_heads": 16,
        "num_key_value_heads": 2}  # fmt: skip
SMALL = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2}  # fmt: skip


def build_model(directory: Path, width: dict[str, int], device: str) -> tuple[Path, int]:
    """The tiny Qwen2.5-VL folder with its language model widened; returns it and the parameter count."""
    import torch
    import transformers

    from codevision.chat import load_template
    from codevision.testing import build_tiny_qwen_vl

    folder = build_tiny_qwen_vl(directory, family="qwen2_5_vl")
    config = transformers.AutoConfig.from_pretrained(folder)
    text = config.text_config
    for key, value in width.items():
        setattr(text, key, value)
    text.head_dim = width["hidden_size"] // width["num_attention_heads"]
    # The multimodal rotary sections split half the head in the released model's proportions
    # (16 + 24 + 24 for head_dim 128).
    half = text.head_dim // 2
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [half // 4, 3 * half // 8, 3 * half // 8]}
    config.vision_config.out_hidden_size = width["hidden_size"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(load_template(), encoding="utf-8")
    return folder, sum(parameter.numel() for parameter in model.parameters())


def trajectories(root: Path) -> Path:
    from codevision.agent import run_agent
    from codevision.demo import EXAMPLES
    from codevision.policies import ScriptedPolicy
    from codevision.protocols import get_protocol
    from codevision.sandbox import Sandbox

    with Sandbox(workers=2, timeout=10.0) as sandbox:
        for example in EXAMPLES:
            trajectory = run_agent(example.task(), ScriptedPolicy(list(example.replies)), sandbox, get_protocol())
            trajectory.score = {"correct": True}
            trajectory.save(root / trajectory.task_id)
    return root


def sft(model: Path, data: Path, out: Path, steps: int, device: str) -> dict[str, Any]:
    from codevision.train.config import SFTSettings, build
    from codevision.train.sft import prepare, train

    settings = build(
        SFTSettings,
        {
            "model": str(model),
            "data": [str(data)],
            "output_dir": str(out),
            "trust_remote_code": True,
            "dtype": "bfloat16" if device == "cuda" else "float32",
            "max_steps": steps,
            "num_epochs": 1000,
            "save_steps": 0,
            "logging_steps": 1,
            "gradient_checkpointing": device == "cuda",
            "learning_rate": 1e-5,
        },
        where="gpu_check",
    )
    started = time.perf_counter()
    outcome = train(prepare(settings))
    rates = [entry["tokens_per_second"] for entry in outcome.log if "tokens_per_second" in entry]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "steps": outcome.steps,
        "samples_per_second": outcome.samples_per_second,
        "tokens_per_second_last": rates[-1] if rates else None,
        "loss_first_last": [entry["loss"] for entry in outcome.log if "loss" in entry][:: max(1, steps - 1)],
    }


def grpo(model: Path, out: Path, steps: int, device: str) -> dict[str, Any]:
    """GRPO steps whose generations are the sign example's replies; tool calls run in the sandbox."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from codevision.chat import ImageBudget
    from codevision.data.hf import without_none
    from codevision.data.rl import trl_grpo_dataset
    from codevision.demo import SIGN
    from codevision.eval import EvalItem
    from codevision.protocols import get_protocol
    from codevision.rewards.spec import RewardSpec
    from codevision.sandbox import Sandbox
    from codevision.train.environment import SandboxEnvironment, environment_class
    from codevision.train.grpo import prepare_for_trl
    from codevision.train.rollouts import RolloutReward

    processor = transformers.AutoProcessor.from_pretrained(model, trust_remote_code=True)
    prepare_for_trl(processor)
    tokenizer = processor.tokenizer
    budget, protocol = ImageBudget.from_processor(processor), get_protocol()
    rows = without_none(trl_grpo_dataset([EvalItem(SIGN.task())], protocol).select([0] * 64))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    call = [*tokenizer(SIGN.replies[0], add_special_tokens=False)["input_ids"], end]
    answers = [[*tokenizer(text, add_special_tokens=False)["input_ids"], end]
               for text in (SIGN.replies[1], "<answer>nothing</answer>")]  # fmt: skip
    response = tokenizer.convert_tokens_to_ids("<tool_response>")
    timings: dict[str, float] = {"tools": 0.0, "rollout": 0.0, "steps": 0.0}

    class TimedEnvironment(environment_class(protocol, None, budget)):  # type: ignore[misc]
        def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]] | str:
            started = time.perf_counter()
            try:
                return super()._call(name, arguments)
            finally:
                timings["tools"] += time.perf_counter() - started

    class TimedTrainer(GRPOTrainer):  # type: ignore[misc]
        def _generate_and_score_completions(self, inputs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                timings["rollout"] += time.perf_counter() - started

    generations = 8
    with Sandbox(workers=4, timeout=10.0) as sandbox:
        TimedEnvironment.sandbox = sandbox
        trainer = TimedTrainer(
            model=transformers.AutoModelForImageTextToText.from_pretrained(
                model, dtype=torch.bfloat16 if device == "cuda" else torch.float32
            ),
            reward_funcs=[RolloutReward(RewardSpec(), protocol, tokenizer, group_size=generations)],
            args=GRPOConfig(
                output_dir=str(out),
                use_cpu=device != "cuda",
                bf16=device == "cuda",
                report_to=[],
                per_device_train_batch_size=generations,
                num_generations=generations,
                max_steps=steps,
                logging_steps=1,
                learning_rate=1e-6,
                max_completion_length=4096,
                max_tool_calling_iterations=3,
                save_strategy="no",
            ),
            train_dataset=rows,
            processing_class=processor,
            environment_factory=TimedEnvironment,
        )

        def sample(prompt_ids: list[list[int]], *args: Any, **kwargs: Any) -> tuple[list[list[int]], None]:
            if all(response not in ids for ids in prompt_ids):
                return [list(call) for _ in prompt_ids], None
            return [list(answers[number % 2]) for number in range(len(prompt_ids))], None

        trainer._generate_single_turn = sample  # scripted generations, as TRL's own tests script them
        started = time.perf_counter()
        trainer.train()
        timings["steps"] = time.perf_counter() - started
        for environment in trainer.environments:
            if isinstance(environment, SandboxEnvironment):
                environment._release()
    tokens = next((entry["num_tokens"] for entry in reversed(trainer.state.log_history) if "num_tokens" in entry), 0)
    return {
        "steps": steps,
        "completions_per_step": generations,
        "seconds_per_step": round(timings["steps"] / steps, 3),
        "rollout_share": round(timings["rollout"] / timings["steps"], 3),
        "tool_share": round(timings["tools"] / timings["steps"], 3),
        "optimisation_share": round(1 - timings["rollout"] / timings["steps"], 3),
        "tokens_per_second": round(tokens / timings["steps"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="A small model (a CPU smoke run).")
    parser.add_argument("--steps", type=int, default=10, help="Optimiser steps of each of SFT and GRPO.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="codevision-gpu-check-") as work:
        root = Path(work)
        started = time.perf_counter()
        model, parameters = build_model(root / "model", SMALL if args.small else WIDE, device)
        print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}); "
              f"model {parameters / 1e9:.2f} B parameters, built in {time.perf_counter() - started:.1f}s")  # fmt: skip
        data = trajectories(root / "data")
        figures = {
            "device": device,
            "parameters": parameters,
            "sft": sft(model, data, root / "sft", args.steps, device),
        }
        print("sft:", json.dumps(figures["sft"]))
        figures["grpo"] = grpo(model, root / "grpo", args.steps, device)
        print("grpo:", json.dumps(figures["grpo"]))
        if device == "cuda":
            figures["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            print(f"peak GPU memory {figures['max_memory_gib']} GiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
