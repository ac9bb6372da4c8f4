"""What every checkpoint holds besides weights: the processor as trained, and a run manifest.

A checkpoint is loaded later by ``codevision eval -m``, ``transformers serve``, vLLM or a second
training stage, each of which re-reads the processor config and the chat template from the
folder. So the pixel budget the model was trained with is written into the saved processor
config, the chat template it was trained on is saved as the folder's ``chat_template.jinja``, and
``codevision_manifest.json`` records the codevision version, the configuration, the template's
hash, the budget and a digest of the training sequences (a resumed run must train on the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from codevision import __version__
from codevision.chat import ImageBudget

MANIFEST_FILE = "codevision_manifest.json"


def apply_budget(processor: Any, min_pixels: int | None, max_pixels: int | None) -> ImageBudget:
    """Set the processor's pixel budget where every engine reads it (``size``), and return it.

    ``size`` is what processors of transformers 5.10 and 5.24 both honour and what they save;
    ``min_pixels``/``max_pixels`` attributes are kept in step for code that reads those.
    """
    image_processor = processor.image_processor
    budget = ImageBudget.from_processor(processor)
    lowest = budget.min_pixels if min_pixels is None else min_pixels
    highest = budget.max_pixels if max_pixels is None else max_pixels
    if lowest > highest:
        raise ValueError(f"min_pixels {lowest} is above max_pixels {highest}")
    size = dict(image_processor.size) if isinstance(image_processor.size, dict) else {}
    size.update(shortest_edge=lowest, longest_edge=highest)
    image_processor.size = size
    for name, value in (("min_pixels", lowest), ("max_pixels", highest)):
        if hasattr(image_processor, name):
            setattr(image_processor, name, value)
    return ImageBudget.from_processor(processor)


def template_digest(chat_template: str) -> str:
    return hashlib.sha256(chat_template.encode("utf-8")).hexdigest()


def manifest(
    *, config: dict[str, Any], chat_template: str, budget: ImageBudget, data: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of a run (the step is added per checkpoint)."""
    return {
        "codevision_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "chat_template_sha256": template_digest(chat_template),
        "image_budget": budget.to_dict(),
        "data": data,
    }


def write_manifest(folder: str | Path, content: dict[str, Any]) -> Path:
    """Write ``codevision_manifest.json`` into ``folder`` atomically (a kill never leaves half of it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_FILE
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=1)
    os.replace(tmp, path)
    return path


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest saved in ``folder``, or None when it has none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
