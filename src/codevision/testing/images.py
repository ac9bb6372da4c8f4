"""Deterministic test images: any geometric change is visible in them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def gradient_image(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    x = np.arange(width, dtype=np.uint16)[None, :].repeat(height, 0)
    y = np.arange(height, dtype=np.uint16)[:, None].repeat(width, 1)
    rgb = np.stack([(x * 4) % 256, (y * 5) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def scene_image(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A picture with shapes of many colours and sizes on a shaded ground: like a photo, no two regions
    and no two orientations of it look alike, so a replayed view either matches it or clearly does not."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    ground = 60 + 120 * y * np.array([1.0, 0.8, 0.5]) + 60 * x * np.array([0.2, 0.6, 1.0])
    image = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(max(12, width * height // 2500)):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        rx, ry = int(rng.integers(3, max(4, width // 8))), int(rng.integers(3, max(4, height // 8)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image
