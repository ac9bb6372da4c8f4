"""Training configuration files: YAML mapped onto dataclasses, every key checked by name.

A training run is described by one YAML file (a recipe under ``recipes/``) plus ``key=value``
overrides on the command line. A misspelt key must not silently fall back to a default: an
hour of GPU time spent with ``learning_rate`` at its default because the file said
``learnig_rate`` is the failure this module exists to prevent. So unknown keys are rejected by
name (with the closest known key), values are checked against the field's type, and the loaded
configuration is saved with every checkpoint.

Nothing here imports torch or TRL: a configuration can be checked on any machine.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")

Overflow = Literal["drop", "truncate"]
Finetune = Literal["full", "lora"]
DType = Literal["float32", "bfloat16", "float16"]
ReportTo = Literal["none", "tensorboard", "wandb"]
VllmMode = Literal["colocate", "server"]


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message names the key and says what to do."""


@dataclass
class LoraSettings:
    """LoRA (peft) settings, used when ``finetune: lora``. The adapters are merged into the saved model."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    #: Module names adapted in the language model (the vision tower is never adapted).
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class TrainingSettings:
    """What every training command shares: the model, the data, the optimiser, checkpoints, logging.

    Paths in the file are relative to the file's folder.
    """

    #: A model folder (or hub id, where the hub is reachable) holding a Qwen-VL checkpoint.
    model: str
    #: The training data (each command says which kinds it reads).
    data: list[str]
    #: Where checkpoints and the final model go.
    output_dir: str
    #: The protocol of the conversations: its system prompt, its tool, its parser.
    protocol: str = "codevision"
    learning_rate: float = 1e-5
    num_epochs: float = 2.0
    #: Stop after this many optimiser steps (``-1``: run every epoch).
    max_steps: int = -1
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: Pixel budget per image; ``null`` keeps the checkpoint processor's. Saved into the processor config.
    min_pixels: int | None = None
    max_pixels: int | None = None
    #: Freeze the vision tower and its merger (CodeVision's recipe), or train them too.
    freeze_vision: bool = True
    finetune: Finetune = "full"
    lora: LoraSettings = field(default_factory=LoraSettings)
    dtype: DType = "bfloat16"
    gradient_checkpointing: bool = False
    seed: int = 42
    #: Save a resumable checkpoint every this many steps (``0``: only at the end).
    save_steps: int = 500
    #: Keep at most this many checkpoints (``0``: keep all).
    save_total_limit: int = 2
    logging_steps: int = 10
    report_to: ReportTo = "none"
    #: A chat template file, or ``shipped`` for codevision's Qwen-VL template (what TRL's GRPO tool loop
    #: renders like evaluation); ``null``: the checkpoint's own when it renders tool turns, else the shipped one.
    chat_template: str | None = None
    #: Allow model or processor classes defined by code in the model folder.
    trust_remote_code: bool = False


@dataclass
class SFTSettings(TrainingSettings):
    """``codevision train sft``: supervised fine-tuning on trajectories, on TRL's ``SFTTrainer``.

    ``data``: trajectory folders (``eval``/``data synth`` outputs or single trajectories), and
    sharegpt or ``messages`` JSON/JSONL files (``data export sft --format sharegpt|swift``,
    CodeVision-SFT), and TRL conversational parquet files (``data export sft --format trl``).
    """

    #: Train on trajectories scored wrong too (left out by default).
    include_incorrect: bool = False
    #: Longest training sequence in tokens (image pads included).
    max_length: int = 32768
    #: A conversation longer than ``max_length``: ``drop`` it, or ``truncate`` it after the last
    #: reply that fits (never inside a turn or an image). Either way the count is reported.
    overflow: Overflow = "drop"
    #: Fraction of the conversations held out to measure the loss on (``0``: none).
    eval_fraction: float = 0.0
    #: Measure the held-out loss every this many steps (``0``: at the end of each epoch).
    eval_steps: int = 0
    #: A file whose text becomes the system turn of every conversation (``--system-prompt`` of ``run``
    #: and ``eval``, to train with a released prompt); ``null``: each conversation keeps its own.
    system_prompt: str | None = None
    #: Tool schemas rendered into every prompt (``--tools`` of ``run``/``eval``): a JSON/YAML file, or
    #: ``protocol`` for the protocol's own; ``null``: none (the system prompt describes the tools).
    tools: str | None = None
    #: Worker processes that load images for the batches.
    dataloader_workers: int = 0


@dataclass
class GRPOSettings(TrainingSettings):
    """``codevision train grpo``: multi-turn GRPO on TRL's ``GRPOTrainer``, the sandbox as its environment.

    ``data`` (and ``eval_data``): TRL GRPO parquet files (``data export rl --format trl``), verl
    parquet files (``data export rl``, ``data filter``, CodeVision-RL's release) and benchmark sources
    (``NAME:PATH``, as ``eval -b`` takes them) under ``data_transforms``; verl rows and sources become
    the protocol's prompts, as ``data export rl --format trl`` writes them. TRL counts
    completions, not prompts: ``batch_size`` is completions per device and step, and
    ``batch_size × gradient_accumulation_steps × processes`` must be a multiple of ``num_generations``.
    A published batch is given in prompts (``prompts_per_step``), which holds on any launch that
    can hold it and is refused on one that cannot, rather than silently becoming another batch.
    """

    learning_rate: float = 1e-6
    num_epochs: float = 1.0
    #: A RewardSpec YAML file (``null``: CodeVision's dense reward alone).
    reward_spec: str | None = None
    #: Transforms applied to benchmark sources and verl rows in ``data``/``eval_data`` (``eval
    #: --transforms``, e.g. ``all-orientation``); ``data_original: false`` keeps only transformed items.
    data_transforms: str | None = None
    data_original: bool = True
    #: Completions per prompt (GRPO's group size).
    num_generations: int = 8
    #: Assistant replies per rollout, as in evaluation and verl; TRL's ``max_tool_calling_iterations``
    #: is one less (each tool round is followed by one more reply).
    max_turns: int = 12
    #: Prompts per optimiser step over all processes, each rolled out ``num_generations`` times. When
    #: set, ``gradient_accumulation_steps`` is derived from it, ``batch_size`` and the number of
    #: processes at launch; ``null``: ``batch_size × gradient_accumulation_steps`` decide.
    prompts_per_step: int | None = None
    #: Tokens of a whole rollout after its prompt: replies and observations.
    max_completion_length: int = 16384
    temperature: float = 1.0
    #: KL coefficient against the reference model (``0``: no reference model).
    beta: float = 0.001
    #: Clip range of the policy ratio: ``[1 - epsilon, 1 + epsilon_high]``.
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    #: TRL's loss aggregation; ``dapo`` is the token mean over the batch (CodeVision's).
    loss_type: str = "dapo"
    #: Held-out GRPO rows, rolled out and scored every ``eval_steps`` steps (TRL's ``eval_*`` metrics).
    eval_data: list[str] = field(default_factory=list)
    eval_steps: int = 0
    #: An OpenAI-compatible judge for answers the rules leave open (``null``: rules alone); replies are
    #: cached in ``judge_cache``; a judge that stays down is replaced by the rules, and counted.
    judge_url: str | None = None
    judge_model: str = "judge"
    judge_cache: str | None = None
    judge_timeout: float = 60.0
    judge_retries: int = 3
    #: A sandbox service (``codevision sandbox serve``) URL; ``null``: local sandbox workers.
    sandbox_url: str | None = None
    sandbox_token: str | None = None
    sandbox_workers: int = 4
    #: Seconds a tool call may run.
    sandbox_timeout: float = 30.0
    #: Save a sample of rollouts as trajectories every this many steps (``0``: never), under
    #: ``output_dir/rollouts/step-N/``; ``codevision view`` shows them.
    save_rollouts_steps: int = 0
    save_rollouts_count: int = 4
    use_vllm: bool = False
    vllm_mode: VllmMode = "colocate"
    #: ``vllm_mode: server``: the ``trl vllm-serve`` address.
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """``cls`` from the YAML file ``path`` and ``key=value`` overrides (``lora.r=8`` for nested keys).

    Relative paths in the file are resolved against its folder; paths given as overrides against the
    working directory, as a shell user expects.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
    data = _resolve_paths(cls, data, path.parent)
    for override in overrides:
        _apply_override(data, override)
    return build(cls, data, where=str(path))


def build(cls: type[T], data: Mapping[str, Any], *, where: str) -> T:
    """``cls`` from a mapping; unknown, missing and mistyped keys are :class:`ConfigError` naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(fields)}"
        raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: {name!r} is required")
            continue
        values[name] = _coerce(hints[name], data[name], f"{where}: {name}")
    return cls(**values)


def as_dict(config: Any) -> dict[str, Any]:
    """The configuration as plain data (what a checkpoint's manifest records)."""
    return dataclasses.asdict(config)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of settings, not {value!r}")
        return build(hint, value, where=where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _coerce(inner, value, where)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, not {value!r}")
        return value
    if origin is list:
        (inner,) = get_args(hint)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where} must be a list, not {value!r}")
        return [_coerce(inner, item, f"{where}[{number}]") for number, item in enumerate(items)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}")
        return value
    if hint is float:
        # YAML 1.1 reads 1e-5 (no dot) as text; it is the way everyone writes a learning rate.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where} must be text, not {value!r}")
        return str(value)
    raise TypeError(f"{where}: unsupported setting type {hint!r}")


def _apply_override(data: dict[str, Any], override: str) -> None:
    """``key=value`` (the value read as YAML, so ``1e-5``, ``true`` and ``[a, b]`` mean what they say)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not key=value (e.g. learning_rate=2e-5 or lora.r=8)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: the value is not valid YAML: {exc}") from None
    *parents, leaf = key.strip().split(".")
    target = data
    for parent in parents:
        nested = target.setdefault(parent, {})
        if not isinstance(nested, dict):
            raise ConfigError(f"override {override!r}: {parent!r} is not a group of settings")
        target = nested
    target[leaf] = value


# Settings that are paths, resolved against the folder of the file that names them.
_PATH_KEYS = (
    "model",
    "data",
    "output_dir",
    "chat_template",
    "system_prompt",
    "tools",
    "reward_spec",
    "judge_cache",
    "eval_data",
)


def _resolve_paths(cls: type, data: dict[str, Any], base: Path) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    resolved = dict(data)
    for key in _PATH_KEYS:
        if key in names and key in resolved:
            resolved[key] = _resolve(resolved[key], base, local_only=key in ("model", "tools", "chat_template"))
    return resolved


def _resolve(value: Any, base: Path, *, local_only: bool) -> Any:
    if isinstance(value, list):
        return [_resolve(item, base, local_only=local_only) for item in value]
    if isinstance(value, str) and source_name(value):
        return _resolve_source(value, base)
    if not isinstance(value, str) or Path(value).is_absolute() or value.startswith("~"):
        return str(Path(value).expanduser()) if isinstance(value, str) else value
    candidate = os.path.normpath(base / value)
    # A model may be a hub id ("Qwen/Qwen2.5-VL-7B-Instruct"), and ``tools: protocol`` and
    # ``chat_template: shipped`` are words: only a path that exists is a file.
    if local_only and not os.path.exists(candidate):
        return value
    return candidate


def source_name(value: str) -> str | None:
    """The benchmark a ``NAME:PATH`` source names, or None for a plain path."""
    from codevision.benchmarks.registry import BENCHMARKS

    name, colon, _ = value.partition(":")
    return name if colon and name in BENCHMARKS else None


def _resolve_source(value: str, base: Path) -> str:
    """A benchmark source with its path resolved like any other path in the file (``synthetic:N`` has none).

    ChartQA and Hugging Face sources may end in ``:split``, which is kept when the path before it exists.
    """
    name, _, rest = value.partition(":")
    if name == "synthetic" or not rest or Path(rest).is_absolute() or rest.startswith("~"):
        return f"{name}:{Path(rest).expanduser()}" if rest.startswith("~") else value
    path, colon, split = rest.rpartition(":")
    if colon and not (base / rest).exists() and (base / path).exists():
        return f"{name}:{os.path.normpath(base / path)}:{split}"
    return f"{name}:{os.path.normpath(base / rest)}"
