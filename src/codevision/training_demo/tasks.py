"""The demo's task family: four coloured quadrants, the picture turned by a multiple of 90°.

The upright picture has a white square at the top left and three of four colours in the other
three quadrants; the question asks for the colour at the top right *of the upright picture*. The
stored images are upright; the demo's commands turn them with ``--transforms rotate_90,...``, so
each item's required operation (the rotation that undoes the transform) and its target box are
recorded by the transform machinery the benchmarks use. Answering from the picture as shown,
without turning it, reads the wrong quadrant three times in four.

Every patch row is light in its upper half and dark in its lower half (stripes aligned to the
vision tower's 14-pixel patches), so which way is up is visible in every patch, not only from
where the white square sits: a model a few hundred thousand parameters large reads a local
texture far more easily than a global layout.

Each picture's colours are jittered and it carries pixel noise, so no two items share a picture
(there are only 24 colour layouts): a held-out item is new to the model, not a repeat of a
training item under another name.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 20),
}
MARKER = (255, 255, 255)
BACKGROUND = (128, 128, 128)
SIDE = 112
HALF = SIDE // 2
#: The top-right quadrant of the upright picture: the region that holds the answer.
TARGET_BOX = (HALF, 0, SIDE, HALF)
STRIPE = 14
STRIPE_SHADE = 0.45
#: Per-channel jitter of each quadrant's colour, and the standard deviation of the pixel noise.
JITTER = 30
NOISE = 6.0
QUESTION = "What colour is the top-right square when the picture is upright?"
SYSTEM_PROMPT = (
    "Look at the image. The white square marks the top-left corner of the upright picture. "
    "Call code_image_tool to run Python on the image: display(x) shows an image. "
    "Give the final answer in <answer></answer>."
)
#: The answer is one of the three colours drawn; a guess among them is right one time in three.
CHANCE = 1 / 3
#: The orientations of the demo (the untransformed item is the fourth).
TRANSFORMS = "rotate_90,rotate_180,rotate_270"


def draw(rng: random.Random) -> tuple[Image.Image, str]:
    """One upright picture and its answer (the colour at the top right)."""
    names = rng.sample(list(COLOURS), 3)
    image = Image.new("RGB", (SIDE, SIDE), BACKGROUND)
    pen = ImageDraw.Draw(image)
    quadrants = [(0, 0, HALF, HALF), TARGET_BOX, (0, HALF, HALF, SIDE), (HALF, HALF, SIDE, SIDE)]
    pen.rectangle(quadrants[0], fill=MARKER)
    for name, box in zip(names, quadrants[1:], strict=True):
        pen.rectangle(box, fill=_jittered(COLOURS[name], rng))
    pixels = np.asarray(image).astype(np.float32)
    pixels += np.random.default_rng(rng.getrandbits(32)).normal(0.0, NOISE, pixels.shape)
    pixels[(np.arange(SIDE) % STRIPE) >= STRIPE // 2] *= STRIPE_SHADE
    pixels = pixels.clip(0, 255)
    return Image.fromarray(pixels.astype(np.uint8)), names[0]


def _jittered(colour: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, c + rng.randint(-JITTER, JITTER))) for c in colour)
    return r, g, b


def write_split(folder: str | Path, name: str, count: int, seed: int) -> Path:
    """``count`` items of split ``name`` as a JSONL benchmark (``jsonl:PATH``) with PNG images.

    Item ``i`` depends only on ``(name, seed, i)``, so splits with different names never share a
    picture by construction of their random streams, and a rerun writes the same files.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{name}-{seed}")
    lines = []
    for i in range(count):
        image, answer = draw(rng)
        item_id = f"{name}-{i:04d}"
        image.save(folder / "images" / f"{item_id}.png")
        lines.append(
            {
                "id": item_id,
                "question": QUESTION,
                "answers": [answer],
                "images": [f"images/{item_id}.png"],
                "bboxes": [list(TARGET_BOX)],
            }
        )
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path
