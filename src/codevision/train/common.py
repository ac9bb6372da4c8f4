"""What the training commands share: the stack check, the processor as trained, the model, LoRA,
checkpoints that carry a manifest, resuming, and the final model others load."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codevision.chat import ImageBudget, chat_template_for, load_template
from codevision.train.checkpoint import MANIFEST_FILE, apply_budget, write_manifest
from codevision.train.config import TrainingSettings
from codevision.train.merge import merge_adapter

FINAL_FOLDER = "final"
#: The ``chat_template`` value that means codevision's shipped Qwen-VL template.
SHIPPED_TEMPLATE = "shipped"
#: A LoRA run's adapters at the end, before they are merged into ``final/``.
ADAPTER_FOLDER = "adapter"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingError(RuntimeError):
    """The run cannot start or go on; the message says why and what to do."""


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


def load_processor(settings: TrainingSettings) -> tuple[Any, ImageBudget, str]:
    """The processor with the run's pixel budget and chat template set (both saved with every checkpoint)."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(settings.model, trust_remote_code=settings.trust_remote_code)
    budget = apply_budget(processor, settings.min_pixels, settings.max_pixels)
    if settings.chat_template == SHIPPED_TEMPLATE:
        chat_template = load_template()
    elif settings.chat_template is not None:
        try:
            chat_template = Path(settings.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TrainingError(f"chat_template {settings.chat_template} cannot be read: {reason}") from None
    else:
        chat_template = chat_template_for(processor)
    processor.chat_template = chat_template
    return processor, budget, chat_template


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint: one whose manifest was written, which happens after TRL saved it all."""
    found = [
        (int(match.group(1)), path)
        for path in output_dir.glob("checkpoint-*")
        if (match := _CHECKPOINT.match(path.name)) and (path / MANIFEST_FILE).exists()
    ]
    return max(found)[1] if found else None


def load_model(settings: TrainingSettings, weights: str | Path) -> Any:
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


def lora_config(settings: TrainingSettings) -> Any:
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


def manifest_callback(run_manifest: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None) -> Any:
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


#: Every step the trainer logged, written beside final/ at the end of a run.
LOG_HISTORY_FILE = "log_history.json"


def save_final(trainer: Any, settings: TrainingSettings, output_dir: Path, run_manifest: dict[str, Any]) -> Path:
    """The model others load: full weights (LoRA adapters merged), the processor (budget, template), the manifest;
    and, beside it, ``log_history.json``: every logged step (loss, rewards, ...) of the run, for plots.

    ``save_model`` gathers weights sharded by FSDP or ZeRO-3 and writes on the main process only; a LoRA
    run's adapters are merged from what it wrote, the same way ``codevision train merge`` does.
    """
    final = output_dir / FINAL_FOLDER
    step_manifest = {**run_manifest, "step": trainer.state.global_step}
    if settings.finetune == "lora":
        adapter = output_dir / ADAPTER_FOLDER
        trainer.save_model(str(adapter))
        if trainer.is_world_process_zero():
            merge_adapter(adapter, final, dtype=settings.dtype, trust_remote_code=settings.trust_remote_code)
            write_manifest(final, step_manifest)
    else:
        trainer.save_model(str(final))
        if trainer.is_world_process_zero():
            write_manifest(final, step_manifest)
    if trainer.is_world_process_zero():
        (output_dir / LOG_HISTORY_FILE).write_text(json.dumps(trainer.state.log_history, indent=1))
    return final


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """Activation checkpointing for the trainer's config, under the name this transformers defines.

    transformers 5.24 calls it ``activation_checkpointing`` (``gradient_checkpointing`` is a deprecated
    alias that warns); earlier releases know only ``gradient_checkpointing``.
    """
    import dataclasses

    import transformers

    names = {field.name for field in dataclasses.fields(transformers.TrainingArguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    kwargs = {"use_reentrant": False} if enabled else None
    return {f"{prefix}_checkpointing": enabled, f"{prefix}_checkpointing_kwargs": kwargs}
