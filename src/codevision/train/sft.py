"""``codevision train sft``: supervised fine-tuning on trajectories with TRL's ``SFTTrainer``.

TRL runs the training (optimiser, schedule, accumulation, mixed precision, checkpoints, resuming,
multi-GPU through accelerate); codevision supplies what TRL's own VLM path gets wrong for tool
conversations: the sequences. Each conversation is rendered by the chat renderer evaluation uses
(observations as tool turns, sampled ids kept, the processor's pixel budget), the loss falls on the
model's own tokens only, and overlong rows are dropped or cut at a turn boundary. TRL is given
ready batches (``skip_prepare_dataset``, the renderer's collator), so it never re-templates a row.

A run writes ``checkpoint-N/`` folders (resumable with ``--resume``, after a kill too) and, at the
end, ``final/``: the model (LoRA adapters merged), its processor with the trained budget, the chat
template, and the manifest. ``codevision eval -m OUTPUT/final`` prompts it exactly as it was trained.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codevision.chat import ChatRenderer, ImageBudget
from codevision.chat.tools import PROTOCOL_TOOLS, load_tools, template_renders_tools
from codevision.protocols import get_protocol
from codevision.protocols.base import Protocol
from codevision.train.checkpoint import manifest, read_manifest
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
from codevision.train.config import SFTSettings, as_dict
from codevision.train.examples import Collected, collect, with_system_prompt
from codevision.train.sequences import Collator, Plan, plan


@dataclass
class Prepared:
    """Everything a run trains on, known before the model is loaded (what ``--dry-run`` reports)."""

    settings: SFTSettings
    processor: Any
    renderer: ChatRenderer
    budget: ImageBudget
    chat_template: str
    collected: Collected
    plan: Plan
    train: list[int] = field(default_factory=list)
    held_out: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the data became, as the manifest and the command's summary report it."""
        return {
            "conversations": len(self.collected.conversations),
            "left_out": len(self.collected.left_out),
            "unscored": self.collected.unscored,
            "sequences": len(self.plan.sequences),
            "train_sequences": len(self.train),
            "eval_sequences": len(self.held_out),
            "dropped": len(self.plan.dropped),
            "truncated": len(self.plan.truncated),
            "tokens": self.plan.tokens,
            "trained_tokens": self.plan.trained_tokens,
            "images": sum(len(sequence.shown) for sequence in self.plan.sequences),
            "sampled_replies": self.plan.sampled_replies,
            "retokenised_replies": self.plan.retokenised_replies,
            "digest": self.plan.digest(),
        }


@dataclass
class Outcome:
    """What a finished run produced."""

    final: Path
    steps: int
    train_loss: float | None
    samples_per_second: float | None
    tokens_per_second: float | None
    resumed_from: Path | None
    log: list[dict[str, Any]]


def prepare(settings: SFTSettings) -> Prepared:
    """Load the processor, apply the budget and template, and plan every training sequence."""
    processor, budget, chat_template = load_processor(settings)
    protocol = get_protocol(settings.protocol)
    tools = _tools(settings.tools, protocol, processor, chat_template)
    renderer = ChatRenderer(processor, tools if tools is not None else protocol, chat_template=chat_template)
    collected = collect(settings.data, include_incorrect=settings.include_incorrect)
    if settings.system_prompt is not None:
        text = Path(settings.system_prompt).read_text(encoding="utf-8")
        if not text.strip():
            raise TrainingError(f"system_prompt {settings.system_prompt} is empty")
        collected.conversations = with_system_prompt(collected.conversations, text)
    planned = plan(
        collected.conversations, renderer, budget, max_length=settings.max_length, overflow=settings.overflow
    )
    if not planned.sequences:
        raise TrainingError(
            f"every conversation is over max_length {settings.max_length}: raise max_length or set overflow: truncate "
            f"(first: {planned.dropped[0]})"
        )
    train, held_out = split(len(planned.sequences), settings.eval_fraction, settings.seed)
    return Prepared(settings, processor, renderer, budget, chat_template, collected, planned, train, held_out)


def _tools(value: str | None, protocol: Protocol, processor: Any, chat_template: str) -> list[dict[str, Any]] | None:
    """The schemas ``tools`` names, refused when the template would not print them (training without them)."""
    if value is None:
        return None
    schemas = protocol.tool_schemas() if value == PROTOCOL_TOOLS else load_tools(value)
    if not schemas:
        raise TrainingError(f"tools: protocol, but protocol {protocol.name!r} declares no tool schema")
    if not template_renders_tools(processor, chat_template, schemas):
        raise TrainingError(
            "tools are set, but the chat template does not print tool schemas (the shipped Qwen-VL template never "
            "does): give a chat_template that does, e.g. the checkpoint's own, or drop tools"
        )
    return schemas


def split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and held-out sequence numbers: a seeded shuffle, at least one of each when holding out."""
    if not 0 <= fraction < 1:
        raise TrainingError(f"eval_fraction must be in [0, 1), not {fraction}")
    numbers = list(range(count))
    if fraction == 0:
        return numbers, []
    if count < 2:
        raise TrainingError("holding out an eval split needs at least two sequences")
    random.Random(seed).shuffle(numbers)
    held = min(count - 1, max(1, round(count * fraction)))
    return sorted(numbers[held:]), sorted(numbers[:held])


def train(
    prepared: Prepared, *, resume: bool = False, on_log: Callable[[dict[str, Any]], None] | None = None
) -> Outcome:
    """Train on the plan with TRL's ``SFTTrainer``; ``resume`` continues from the newest complete checkpoint."""
    import datasets
    import transformers

    settings = prepared.settings
    output_dir = Path(settings.output_dir)
    resumed_from = _resume_point(prepared, output_dir) if resume else None
    transformers.set_seed(settings.seed)
    # A full fine-tune resumes from the checkpoint's weights loaded by from_pretrained: Qwen2.5-VL
    # checkpoints are saved under the original checkpoint's parameter names, which the trainer's own
    # state-dict load does not map back, so it would silently go on from the base weights.
    weights = resumed_from if resumed_from is not None and settings.finetune == "full" else settings.model
    model = load_model(settings, weights)
    summary = prepared.summary()
    run_manifest = manifest(
        config=as_dict(settings), chat_template=prepared.chat_template, budget=prepared.budget, data=summary
    )
    collator = Collator(prepared.plan.sequences, prepared.collected.conversations, prepared.renderer, prepared.budget)
    train_rows = datasets.Dataset.from_dict({"sequence": prepared.train})
    eval_rows = datasets.Dataset.from_dict({"sequence": prepared.held_out}) if prepared.held_out else None
    trainer = _trainer_class()(
        model=model,
        args=_trl_config(settings, output_dir, has_eval=eval_rows is not None),
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=collator,
        processing_class=prepared.processor,
        peft_config=lora_config(settings),
        callbacks=[manifest_callback(run_manifest, on_log)],
    )
    result = trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    final = save_final(trainer, settings, output_dir, run_manifest)
    metrics = result.metrics
    rates = [entry["tokens_per_second"] for entry in trainer.state.log_history if "tokens_per_second" in entry]
    return Outcome(
        final=final,
        steps=trainer.state.global_step,
        train_loss=metrics.get("train_loss"),
        samples_per_second=metrics.get("train_samples_per_second"),
        tokens_per_second=rates[-1] if rates else None,
        resumed_from=resumed_from,
        log=list(trainer.state.log_history),
    )


def _resume_point(prepared: Prepared, output_dir: Path) -> Path:
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is None:
        raise TrainingError(f"{output_dir} holds no complete checkpoint to resume from; run without --resume")
    saved = read_manifest(checkpoint) or {}
    digest = saved.get("data", {}).get("digest")
    if digest != prepared.plan.digest():
        raise TrainingError(
            f"{checkpoint} was trained on other sequences (data, tokenizer, template, budget or max_length changed); "
            "resume with the same configuration, or start a new output_dir"
        )
    return checkpoint


def _trl_config(settings: SFTSettings, output_dir: Path, *, has_eval: bool) -> Any:
    import torch
    import trl

    evaluation = "no" if not has_eval else ("steps" if settings.eval_steps else "epoch")
    return trl.SFTConfig(
        output_dir=str(output_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.lr_scheduler,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        logging_steps=settings.logging_steps,
        save_strategy="steps" if settings.save_steps else "no",
        save_steps=settings.save_steps or 500,
        save_total_limit=settings.save_total_limit or None,
        eval_strategy=evaluation,
        eval_steps=settings.eval_steps or None,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.dtype == "bfloat16" and torch.cuda.is_available(),
        fp16=settings.dtype == "float16" and torch.cuda.is_available(),
        **checkpointing_arguments(settings.gradient_checkpointing),
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to=[] if settings.report_to == "none" else [settings.report_to],
        dataloader_num_workers=settings.dataloader_workers,
        # The rows are ready batches from the renderer: TRL must not template, tokenise or cut them again.
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        max_length=None,
        packing=False,
        save_only_model=False,
    )


def _trainer_class() -> type:
    """TRL's ``SFTTrainer``, counting the tokens each step trains on for a tokens/s figure in the log."""
    import trl

    class CodevisionSFTTrainer(trl.SFTTrainer):  # type: ignore[misc]
        _tokens_seen = 0
        _tokens_at_log = 0
        _time_at_log: float | None = None

        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            self._tokens_seen += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            now = time.perf_counter()
            if "loss" in logs and self._time_at_log is not None and now > self._time_at_log:
                logs["tokens_per_second"] = round(
                    (self._tokens_seen - self._tokens_at_log) / (now - self._time_at_log), 1
                )
            if "loss" in logs or self._time_at_log is None:
                self._tokens_at_log, self._time_at_log = self._tokens_seen, now
            super().log(logs, start_time)

    return CodevisionSFTTrainer
