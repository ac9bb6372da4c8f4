"""``codevision train grpo``: multi-turn GRPO on TRL's ``GRPOTrainer``, with the sandbox as its environment.

TRL generates (transformers, or vLLM with ``use_vllm``), runs its tool loop and optimises; codevision
supplies the environment (the protocol's tool, run in the sandbox by the agent loop's own code)
and the reward (the evaluation ``RewardSpec`` on the rollout assembled as a trajectory). A rollout
in training is therefore the conversation an evaluation episode would have been, token for token
on well-formed turns (docs/training.md lists where TRL's tool loop differs).

A run writes resumable ``checkpoint-N/`` folders with the manifest and, at the end, ``final/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codevision.chat import ChatRenderer, ImageBudget
from codevision.protocols import get_protocol
from codevision.protocols.toolcalls import HermesProtocol
from codevision.rewards.spec import RewardSpec
from codevision.sandbox import RemoteSandbox, Sandbox, SandboxConfig
from codevision.scoring import LLMJudge
from codevision.train.checkpoint import manifest
from codevision.train.common import (
    TrainingError,
    checkpointing_arguments,
    last_checkpoint,
    load_model,
    load_processor,
    lora_config,
    manifest_callback,
    save_final,
)
from codevision.train.config import GRPOSettings, as_dict
from codevision.train.environment import environment_class, release_all
from codevision.train.rollouts import JudgedRolloutReward, RolloutReward

#: Where the sampled rollouts go, under output_dir.
ROLLOUTS_FOLDER = "rollouts"


@dataclass
class GRPOOutcome:
    """What a finished run produced."""

    final: Path
    steps: int
    resumed_from: Path | None
    log: list[dict[str, Any]]


def load_rows(entries: list[str], settings: GRPOSettings, protocol: HermesProtocol) -> Any:
    """The GRPO rows of every entry of ``data`` (or ``eval_data``), as one dataset with PIL images.

    A TRL GRPO parquet file is read as it was written. A verl parquet file and a benchmark source
    are read as tasks and become the protocol's prompts under ``data_transforms``, the rows
    ``data export rl --format trl`` writes for them, so every kind trains on the same conversation.
    """
    import datasets

    from codevision.data.hf import without_none

    parts, as_written = [], []
    for entry in entries:
        kind = data_kind(entry)
        if kind == "trl":
            parts.append(datasets.Dataset.from_parquet(entry))
            as_written.append(entry)
        else:
            parts.append(_rows_from_tasks(f"verl:{entry}" if kind == "verl" else entry, settings, protocol))
    if settings.data_transforms and len(as_written) == len(entries):
        raise TrainingError(
            f"data_transforms applies to benchmark sources and verl parquet files, but {as_written[0]} holds TRL "
            "rows, used as they were exported: export them with --transforms, or drop data_transforms"
        )
    try:
        rows = without_none(parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts))
    except ValueError as exc:
        raise TrainingError(f"the rows of {', '.join(entries)} cannot be trained on together: {exc}") from None
    missing = {"prompt", "images"} - set(rows.column_names)
    if missing:
        raise TrainingError(f"{entries[0]}: the rows have no {', '.join(sorted(missing))} column")
    return rows


def data_kind(entry: str) -> str:
    """``trl`` or ``verl`` for a parquet file (by its columns), ``source`` for ``NAME:PATH``; else an error."""
    import pyarrow.parquet as pq

    from codevision.train.config import source_name

    path = Path(entry)
    if path.is_file() and path.suffix == ".parquet":
        try:
            columns = set(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"training data {entry} is not a readable parquet file: {exc}") from None
        if {"prompt", "images", "answers"} <= columns:
            return "trl"
        if {"prompt", "images", "reward_model"} <= columns or "extra_info" in columns:
            return "verl"
        raise TrainingError(
            f"training data {entry} holds neither TRL GRPO rows (prompt, images, answers) nor verl rows "
            f"(prompt, images, reward_model, extra_info); its columns are {', '.join(sorted(columns))}"
        )
    if source_name(entry):
        return "source"
    raise TrainingError(
        f"training data {entry} is neither a parquet file (data export rl, data filter) nor a benchmark source "
        "(NAME:PATH, e.g. chartqa:data/ChartQA:train or synthetic:100)"
    )


def _rows_from_tasks(source: str, settings: GRPOSettings, protocol: HermesProtocol) -> Any:
    from codevision.benchmarks import BenchmarkError, load_benchmark
    from codevision.data.rl import rl_items, trl_grpo_dataset
    from codevision.transforms import TransformSpecError, parse_transforms

    try:
        benchmark = load_benchmark(source)
        transforms = parse_transforms(settings.data_transforms) if settings.data_transforms else []
        if not transforms and not settings.data_original:
            raise TrainingError("data_original: false leaves nothing to train on without data_transforms")
        items = list(
            rl_items(
                benchmark,
                transforms,
                base_dir=benchmark.base_dir,
                include_original=settings.data_original,
                seed=settings.seed,
            )
        )
        if not items:
            raise TrainingError(f"{source} holds no items; check the path and the layout")
        return trl_grpo_dataset(items, protocol)
    except (BenchmarkError, TransformSpecError, ValueError, FileNotFoundError) as exc:
        raise TrainingError(f"training data {source}: {exc}") from None


def reward_spec(settings: GRPOSettings) -> RewardSpec:
    return RewardSpec() if settings.reward_spec is None else RewardSpec.from_yaml(settings.reward_spec)


@contextlib.contextmanager
def open_sandbox(settings: GRPOSettings) -> Iterator[Sandbox | RemoteSandbox]:
    """The sandbox rollouts run in: a service URL, or local workers for as long as the run lasts."""
    if settings.sandbox_url is not None:
        if not settings.sandbox_token:
            raise TrainingError("sandbox_url needs sandbox_token (the token the service was started with)")
        with RemoteSandbox(settings.sandbox_url, settings.sandbox_token, timeout=settings.sandbox_timeout) as remote:
            yield remote
        return
    # Every rollout of a generation batch holds its session until the next reset: room for two batches.
    in_flight = 2 * settings.batch_size * settings.gradient_accumulation_steps
    sessions = max(SandboxConfig.model_fields["max_sessions"].default, in_flight)
    with Sandbox(workers=settings.sandbox_workers, timeout=settings.sandbox_timeout, max_sessions=sessions) as local:
        yield local


def train_grpo(
    settings: GRPOSettings, *, resume: bool = False, on_log: Callable[[dict[str, Any]], None] | None = None
) -> GRPOOutcome:
    """Run GRPO with TRL; ``resume`` continues from the newest complete checkpoint."""
    import transformers

    output_dir = Path(settings.output_dir)
    resumed_from = last_checkpoint(output_dir) if resume else None
    if resume and resumed_from is None:
        raise TrainingError(f"{output_dir} holds no complete checkpoint to resume from; run without --resume")
    settings = with_step_shape(settings, launched_processes())
    protocol = trl_protocol(settings.protocol)
    processor, budget, chat_template = load_processor(settings)
    prepare_for_trl(processor)
    spec = reward_spec(settings)
    if spec.weights.get("codevision") and spec.codevision.beta and settings.batch_size % settings.num_generations:
        raise TrainingError(
            f"the necessity term is computed per group of {settings.num_generations} rollouts, but batch_size "
            f"{settings.batch_size} splits groups: make batch_size a multiple of num_generations, or set beta to 0"
        )
    rows = load_rows(settings.data, settings, protocol)
    held_out = load_rows(settings.eval_data, settings, protocol) if settings.eval_data else None
    if (held_out is None) != (settings.eval_steps == 0):
        raise TrainingError("periodic evaluation needs both eval_data and eval_steps (or neither)")
    transformers.set_seed(settings.seed)
    # As in SFT: a full fine-tune resumes from the checkpoint's weights, mapped by from_pretrained.
    weights = resumed_from if resumed_from is not None and settings.finetune == "full" else settings.model
    model = load_model(settings, weights)
    data = {"rows": len(rows), "files": list(settings.data)}
    run_manifest = manifest(config=as_dict(settings), chat_template=chat_template, budget=budget, data=data)
    with open_sandbox(settings) as sandbox:
        trainer = _trainer(
            settings, model, processor, budget, protocol, spec, sandbox, (rows, held_out), run_manifest, on_log
        )
        try:
            trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
        finally:
            release_all(trainer.environments)
    final = save_final(trainer, settings, output_dir, run_manifest)
    return GRPOOutcome(final, trainer.state.global_step, resumed_from, list(trainer.state.log_history))


def launched_processes() -> int:
    """Training processes of this launch (``accelerate launch`` / ``torchrun`` set ``WORLD_SIZE``)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def with_step_shape(settings: GRPOSettings, processes: int) -> GRPOSettings:
    """The settings with the accumulation that makes ``prompts_per_step`` prompts per step on ``processes``.

    A step holds ``batch_size × gradient_accumulation_steps × processes`` completions. A launch that
    cannot hold ``prompts_per_step × num_generations`` of them (7 training GPUs beside a vLLM one,
    for 512) is refused with the launches that can, instead of training on another batch.
    """
    if settings.max_turns < 2:
        raise TrainingError(
            f"max_turns {settings.max_turns} lets no tool call run: a call runs only when a reply follows it"
        )
    prompts = settings.prompts_per_step
    if prompts is None:
        return settings
    completions = prompts * settings.num_generations
    per_pass = settings.batch_size * processes
    if prompts < 1 or completions % per_pass:
        fitting = [n for n in range(1, 65) if completions % (settings.batch_size * n) == 0]
        raise TrainingError(
            f"prompts_per_step {prompts} × num_generations {settings.num_generations} = {completions} completions "
            f"per step do not split over {processes} processes × batch_size {settings.batch_size}; launch "
            f"{', '.join(map(str, fitting[:8])) or 'no number of'} processes, or change batch_size"
        )
    accumulation = completions // per_pass
    if settings.gradient_accumulation_steps not in (1, accumulation):
        raise TrainingError(
            "set prompts_per_step or gradient_accumulation_steps, not both: the accumulation follows from "
            "prompts_per_step, batch_size and the processes launched"
        )
    return replace(settings, gradient_accumulation_steps=accumulation)


def step_shape(settings: GRPOSettings, processes: int) -> str:
    """One line saying what a step holds, printed before training so a launch's batch is never a surprise."""
    completions = settings.batch_size * settings.gradient_accumulation_steps * processes
    prompts = completions // settings.num_generations
    return (
        f"{prompts} prompt{'s' * (prompts != 1)} × {settings.num_generations} rollouts = {completions} completions "
        f"per step: {processes} process{'es' * (processes != 1)} × batch_size {settings.batch_size} × accumulation "
        f"{settings.gradient_accumulation_steps}; up to {settings.max_turns} replies per rollout"
    )


def trl_protocol(name: str) -> HermesProtocol:
    """The protocol under TRL call rules: the rules TRL's tool loop applies to every rollout, and the
    ones an evaluation with ``--calls trl`` applies, so that both read a reply the same way."""
    try:
        protocol = get_protocol(name, calls="trl")
    except ValueError as exc:
        raise TrainingError(f"protocol: {exc}") from None
    assert isinstance(protocol, HermesProtocol)
    return protocol


def prepare_for_trl(processor: Any) -> None:
    """Set the two things TRL's tool loop expects of a processor and a Qwen-VL checkpoint may lack.

    - A response parser: TRL recognises its parser by the chat template, and Qwen-VL templates it
      does not know (the shipped one) write Qwen3's ``<tool_call>`` JSON, so they get Qwen3's.
    - Image inputs as torch tensors: TRL's environment path concatenates the prompts' image fields
      only when they are tensors, and a PIL image processor (the one used without torchvision)
      returns numpy arrays by default. Left as arrays, the first tool round in which no call of the
      batch returns an image fails the step (``split_pixel_values_by_grid`` on a list).
    """
    from trl import chat_template_utils

    tokenizer = processor.tokenizer
    if getattr(tokenizer, "response_template", None) is None:
        tokenizer.response_template = chat_template_utils.qwen3_template
    processor.image_processor.return_tensors = "pt"


def _trainer(
    settings: GRPOSettings,
    model: Any,
    processor: Any,
    budget: ImageBudget,
    protocol: HermesProtocol,
    spec: RewardSpec,
    sandbox: Sandbox | RemoteSandbox,
    datasets: tuple[Any, Any],
    run_manifest: dict[str, Any],
    on_log: Callable[[dict[str, Any]], None] | None,
) -> Any:
    import os

    import trl

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return trl.GRPOTrainer(
        model=model,
        reward_funcs=[rollout_reward(settings, spec, protocol, processor.tokenizer)],
        args=grpo_config(settings, unsampled=ChatRenderer(processor).vision_ids),
        train_dataset=datasets[0],
        eval_dataset=datasets[1],
        processing_class=processor,
        environment_factory=environment_class(protocol, sandbox, budget),
        peft_config=lora_config(settings),
        callbacks=[manifest_callback(run_manifest, on_log)],
    )


def rollout_reward(settings: GRPOSettings, spec: RewardSpec, protocol: HermesProtocol, tokenizer: Any) -> RolloutReward:
    """The reward function: the RewardSpec on each rollout, with the judge when one is configured."""
    options: dict[str, Any] = {
        "save_dir": Path(settings.output_dir) / ROLLOUTS_FOLDER,
        "save_every": settings.save_rollouts_steps,
        "save_count": settings.save_rollouts_count,
        "group_size": settings.num_generations,
    }
    if settings.judge_url is None:
        return RolloutReward(spec, protocol, tokenizer, **options)
    judge = LLMJudge(
        settings.judge_url,
        settings.judge_model,
        cache=settings.judge_cache,
        timeout=settings.judge_timeout,
        retries=settings.judge_retries,
    )
    return JudgedRolloutReward(spec, protocol, tokenizer, judge, **options)


def grpo_config(settings: GRPOSettings, *, unsampled: Collection[int] = ()) -> Any:
    """TRL's ``GRPOConfig`` for the settings; each codevision key maps onto one TRL key (docs/training.md).

    ``unsampled`` are tokens generation must never produce: the image and video pads. TRL suppresses
    only the image pad when it generates with transformers, and a sampled video pad makes Qwen-VL's
    position ids fail in the loss's forward pass (``get_rope_index``), which ends the run.
    """
    import torch
    import trl

    vllm: dict[str, Any] = {"use_vllm": settings.use_vllm}
    if unsampled and not settings.use_vllm:
        vllm["generation_kwargs"] = {"suppress_tokens": sorted(unsampled)}
    if settings.use_vllm:
        vllm |= {"vllm_mode": settings.vllm_mode, "vllm_gpu_memory_utilization": settings.vllm_gpu_memory_utilization}
        if settings.vllm_mode == "server":
            if not settings.vllm_server_base_url:
                raise TrainingError("vllm_mode: server needs vllm_server_base_url (where trl vllm-serve listens)")
            vllm["vllm_server_base_url"] = settings.vllm_server_base_url
    return trl.GRPOConfig(
        output_dir=settings.output_dir,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.lr_scheduler,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        max_tool_calling_iterations=settings.max_turns - 1,
        temperature=settings.temperature,
        beta=settings.beta,
        epsilon=settings.epsilon,
        epsilon_high=settings.epsilon_high,
        loss_type=settings.loss_type,
        logging_steps=settings.logging_steps,
        eval_strategy="steps" if settings.eval_steps else "no",
        eval_steps=settings.eval_steps or None,
        per_device_eval_batch_size=settings.batch_size,
        save_strategy="steps" if settings.save_steps else "no",
        save_steps=settings.save_steps or 500,
        save_total_limit=settings.save_total_limit or None,
        seed=settings.seed,
        bf16=settings.dtype == "bfloat16" and torch.cuda.is_available(),
        fp16=settings.dtype == "float16" and torch.cuda.is_available(),
        **checkpointing_arguments(settings.gradient_checkpointing),
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to=[] if settings.report_to == "none" else [settings.report_to],
        **vllm,
    )
