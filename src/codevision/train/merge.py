"""LoRA adapters merged into full weights, so vLLM, ``transformers serve`` and ``eval -m`` load one folder.

Serving engines load LoRA adapters differently (vLLM needs ``--enable-lora`` and rejects adapters
on the vision tower, ``transformers serve`` wants a full model), so a run's result is always a
merged model. The merge reloads the base model named in the adapter's config, applies the
adapters with peft and writes the merged weights with the processor (pixel budget, chat template)
and manifest the adapter folder holds. It works on any adapter folder a run wrote: ``adapter/`` at
the end, or any ``checkpoint-N/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from codevision.train.checkpoint import MANIFEST_FILE


class MergeError(ValueError):
    """The folder holds no LoRA adapter, or its base model cannot be found; the message says which."""


def merge_adapter(
    adapter: str | Path,
    out: str | Path,
    *,
    base_model: str | None = None,
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
) -> Path:
    """Write the base model with ``adapter`` merged into ``out``; returns ``out``."""
    import peft
    import torch
    import transformers

    adapter, out = Path(adapter), Path(out)
    if not (adapter / "adapter_config.json").exists():
        raise MergeError(
            f"{adapter} holds no LoRA adapter (adapter_config.json); give a LoRA run's adapter or checkpoint"
        )
    config = peft.PeftConfig.from_pretrained(str(adapter))
    base = base_model or config.base_model_name_or_path
    if not base:
        raise MergeError(f"{adapter}: the adapter does not name its base model; pass it with --base")
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        base, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    merged = peft.PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    source = (
        adapter
        if (adapter / "preprocessor_config.json").exists() or (adapter / "processor_config.json").exists()
        else base
    )
    processor = transformers.AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    processor.save_pretrained(out)
    if (adapter / MANIFEST_FILE).exists():
        shutil.copyfile(adapter / MANIFEST_FILE, out / MANIFEST_FILE)
    return out
