"""The pixel budget of a Qwen-VL image processor, and resizing images exactly as it does.

Qwen-VL processors snap both sides of an image to a multiple of the patch factor (patch size ×
merge size: 28 for Qwen2.5-VL, 32 for Qwen3-VL) and keep its pixel count within [min_pixels,
max_pixels]. Evaluation sizes each image once, with the budget of the model's own processor, and
records that size: the processor then has nothing left to resize, the trajectory's ``model_size``
is what the model saw, and a trainer that re-runs the same processor on the same image gets the
same grid. The budget is read from the saved processor config, the one source every engine reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width) exactly as transformers' Qwen2-VL ``smart_resize`` computes it.

    Any difference, even for a sliver a few pixels wide, would make the processor resize the image
    a second time, so the rule is transformers' own, with errors that name the image's size.
    """
    if min(height, width) <= 0:
        raise ValueError(f"an image of {width}x{height} pixels has no content")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"an image of {width}x{height} is more elongated than {MAX_ASPECT_RATIO}:1")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImageBudget:
    """How a model's processor sizes images: sides a multiple of ``factor``, pixels in [min, max]."""

    factor: int
    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        if self.factor < 1 or self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ValueError(f"not a pixel budget: {self}")

    @classmethod
    def from_processor(cls, processor: Any) -> ImageBudget:
        """The budget a loaded processor (or its image processor) applies, from its saved config.

        Class defaults are not a model's budget (Qwen3-VL's release uses patch 16 and a 65,536-pixel
        minimum, the class defaults patch 14), so only what the loaded object holds is read.
        """
        image_processor = getattr(processor, "image_processor", processor)
        size = getattr(image_processor, "size", None)
        patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
        lowest = _size_entry(size, "shortest_edge", "min_pixels") or getattr(image_processor, "min_pixels", None)
        highest = _size_entry(size, "longest_edge", "max_pixels") or getattr(image_processor, "max_pixels", None)
        if not (patch and merge and lowest and highest):
            raise ValueError(
                f"cannot read a pixel budget from {type(image_processor).__name__} (patch_size={patch}, "
                f"merge_size={merge}, size={size!r}): only Qwen-VL style image processors have one"
            )
        return cls(int(patch) * int(merge), int(lowest), int(highest))

    @classmethod
    def from_config(cls, path: str | Path) -> ImageBudget:
        """The budget saved in a model folder's ``preprocessor_config.json`` (or that file itself).

        For a model served elsewhere: the client sizes images as the server's processor will, without
        loading transformers. A copy of the served checkpoint's config file is all it needs.
        """
        file = Path(path)
        if file.is_dir():
            file = file / "preprocessor_config.json"
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(
                f"{file} does not exist: give the served model's folder or its preprocessor_config.json"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"cannot read {file}: {exc}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{file} holds no processor config (a JSON object)")
        size = config.get("size")
        patch, merge = config.get("patch_size"), config.get("merge_size", 2)
        lowest = _size_entry(size, "shortest_edge", "min_pixels") if isinstance(size, dict) else None
        highest = _size_entry(size, "longest_edge", "max_pixels") if isinstance(size, dict) else None
        lowest, highest = lowest or config.get("min_pixels"), highest or config.get("max_pixels")
        numbers = (patch, merge, lowest, highest)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
            raise ValueError(
                f"{file} has no Qwen-VL pixel budget (patch_size={patch!r}, merge_size={merge!r}, "
                f"min/shortest_edge={lowest!r}, max/longest_edge={highest!r})"
            )
        return cls(patch * merge, lowest, highest)

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the processor resizes a ``width`` x ``height`` image to."""
        h_bar, w_bar = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return w_bar, h_bar

    def fit(self, image: Image.Image) -> Image.Image:
        """An RGB copy at the processor's size, resized the way it resizes (bicubic); the original is untouched."""
        size = self.target(*image.size)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if size == rgb.size:
            return rgb.copy() if rgb is image else rgb
        return rgb.resize(size, Image.Resampling.BICUBIC)

    def to_dict(self) -> dict[str, int]:
        """The budget as plain numbers, for trajectory metadata and reports."""
        return dataclasses.asdict(self)


def _size_entry(size: Any, *keys: str) -> Any:
    """The first of ``keys`` set in a processor's ``size`` (a dict in configs, a ``SizeDict`` once loaded)."""
    for key in keys:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value:
            return value
    return None
