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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codevision.chat import ChatRenderer, ImageBudget, chat_template_for
from codevision.chat.tools import PROTOCOL_TOOLS, load_tools, template_renders_tools
from codevision.protocols import get_protocol
from codevision.protocols.base import Protocol
from codevision.train.checkpoint import MANIFEST_FILE, apply_budget, manifest, read_manifest, write_manifest
from codevision.train.config import SFTSettings, as_dict
from codevision.train.examples import Collected, collect, with_system_prompt
from codevision.train.merge import merge_adapter
from codevision.train.sequences import Collator, Plan, plan

FINAL_FOLDER = "final"
#: A LoRA run's adapters at the end, before they are merged into ``final/``.
ADAPTER_FOLDER = "adapter"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingError(RuntimeError):
    """The run cannot start or go on; the message says why and what to do."""


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


def require_training_stack() -> None:
    """TRL, torch and transformers must be importable; say how to install them otherwise."""
    missing = []
    for module in ("torch", "transformers", "trl", "datasets"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise TrainingError(
            f"training needs {', '.join(missing)}: install torch for your machine, then pip install 'codevision[train]'"
        )


def prepare(settings: SFTSettings) -> Prepared:
    """Load the processor, apply the budget and template, and plan every training sequence."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(settings.model, trust_remote_code=settings.trust_remote_code)
    budget = apply_budget(processor, settings.min_pixels, settings.max_pixels)
    if settings.chat_template is not None:
        chat_template = Path(settings.chat_template).read_text(encoding="utf-8")
    else:
        chat_template = chat_template_for(processor)
    processor.chat_template = chat_template
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


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint: one whose manifest was written, which happens after TRL saved it all."""
    found = [
        (int(match.group(1)), path)
        for path in output_dir.glob("checkpoint-*")
        if (match := _CHECKPOINT.match(path.name)) and (path / MANIFEST_FILE).exists()
    ]
    return max(found)[1] if found else None


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
    model = _load_model(settings, weights)
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
        peft_config=_lora_config(settings),
        callbacks=[_manifest_callback(run_manifest, on_log)],
    )
    result = trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    final = _save_final(trainer, prepared, output_dir, run_manifest)
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


def _load_model(settings: SFTSettings, weights: str | Path) -> Any:
    import torch
    import transformers

    model = transformers.AutoModelForImageTextToText.from_pretrained(
        weights, dtype=getattr(torch, settings.dtype), trust_remote_code=settings.trust_remote_code
    )
    if settings.freeze_vision:
        for name, parameter in model.named_parameters():
            if _is_vision(name):
                parameter.requires_grad_(False)
    return model


def _is_vision(name: str) -> bool:
    """Parameters of the vision tower and its merger (``visual`` in every Qwen-VL generation)."""
    return ".visual." in f".{name}"


def _lora_config(settings: SFTSettings) -> Any:
    if settings.finetune != "lora":
        return None
    try:
        import peft
    except ImportError:
        raise TrainingError("finetune: lora needs peft: pip install 'codevision[train]'") from None
    modules = "|".join(re.escape(module) for module in settings.lora.target_modules)
    return peft.LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        # A regex, so the vision tower's blocks (which share module names with the language model) are left alone.
        target_modules=rf"^(?!.*\bvisual\b).*\.({modules})$",
        task_type="CAUSAL_LM",
    )


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
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
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


def _manifest_callback(run_manifest: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None) -> Any:
    """Writes the manifest into each checkpoint once TRL has saved it (marking it complete), and forwards logs."""
    import transformers

    class ManifestCallback(transformers.TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                write_manifest(folder, {**run_manifest, "step": state.global_step})

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if on_log is not None and logs and state.is_world_process_zero:
                on_log({"step": state.global_step, **logs})

    return ManifestCallback()


def _save_final(trainer: Any, prepared: Prepared, output_dir: Path, run_manifest: dict[str, Any]) -> Path:
    """The model others load: full weights (LoRA adapters merged), the processor (budget, template), the manifest.

    ``save_model`` gathers weights sharded by FSDP or ZeRO-3 and writes on the main process only; a LoRA
    run's adapters are merged from what it wrote, the same way ``codevision train merge`` does.
    """
    final = output_dir / FINAL_FOLDER
    step_manifest = {**run_manifest, "step": trainer.state.global_step}
    if prepared.settings.finetune == "lora":
        adapter = output_dir / ADAPTER_FOLDER
        trainer.save_model(str(adapter))
        if trainer.is_world_process_zero():
            merge_adapter(
                adapter, final, dtype=prepared.settings.dtype, trust_remote_code=prepared.settings.trust_remote_code
            )
            write_manifest(final, step_manifest)
    else:
        trainer.save_model(str(final))
        if trainer.is_world_process_zero():
            write_manifest(final, step_manifest)
    return final
