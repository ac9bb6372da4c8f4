"""A synthetic evaluation run folder, laid out as ``codevision eval`` writes one, for tests and benchmarks.

Whatever reads run folders (the viewer, reports) has to be tried on thousands of items; running a
model for that is neither fast nor deterministic. Each item here is a two-turn trajectory (a code
cell that crops the input, then an answer) with its own images, and a ``results.jsonl`` line that
names its transform, so a reader sees what it would see after a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from codevision.eval.store import CONFIG_FILE, RESULTS_FILE, item_folder, item_key
from codevision.sandbox.results import ImageOp, ImageRef
from codevision.testing.images import scene_image
from codevision.trajectory import Action, Message, ToolOutcome, Trajectory, Turn, Usage

TRANSFORMS = ("none", "rotate:90", "gaussian_noise:3", "jpeg_compression:5")
SOURCES = ("chartqa", "docvqa")
STOPS = ("answered", "answered", "answered", "max_turns")
SYSTEM = "You answer questions about images. Write Python in a fenced block to inspect the image. " * 8


def synthetic_image(width: int, height: int, seed: int, noise: float = 0.0) -> Image.Image:
    """A scene of shapes unique to ``seed`` (its first pixels spell it), with Gaussian noise of ``noise`` levels.

    Without noise an image compresses like a chart or a clean rendering; noise makes it compress
    like a photograph, and slow to write.
    """
    pixels = np.asarray(scene_image(width, height, seed)).copy()
    if noise:
        noisy = pixels + np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
        pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    pixels[0, :4, :] = np.frombuffer(seed.to_bytes(12, "little"), np.uint8).reshape(4, 3)
    return Image.fromarray(pixels, "RGB")


def synthetic_trajectory(number: int, size: tuple[int, int], noise: float = 0.0) -> Trajectory:
    """Item ``number`` of a run: its task, benchmark, outcome and stop reason cycle with the number."""
    width, height = size
    question = f"What is the value of bar {number}?"
    t = Trajectory(
        task_id=f"task-{number // len(TRANSFORMS)}",
        protocol="code",
        model="synthetic",
        source=SOURCES[number % len(SOURCES)],
        question=question,
        references=[str(number)],
    )
    t.add_image(synthetic_image(width, height, number, noise), "input")
    t.messages = [Message.of("system", SYSTEM), Message.of("user", 0, question)]
    box = [0, 0, width // 3, height // 3]
    code = f"crop = image.crop({tuple(box)})\ncrop = crop.resize((crop.width * 2, crop.height * 2))\ndisplay(crop)"
    raw = f"```python\n{code}\n```"
    crop = t.add_image(synthetic_image(box[2] * 2, box[3] * 2, number + 1_000_000, noise), "tool", turn=0)
    op = ImageOp(
        name="crop",
        args={"box": box},
        call="Image.crop",
        line=1,
        operand=ImageRef(id=0, size=size, origin=0),
        result=ImageRef(id=1, size=(box[2], box[3]), origin=0),
    )
    outcome = ToolOutcome(action=0, status="ok", stdout=f"{box[2]}x{box[3]}\n", image_indices=[crop], ops=[op])
    t.turns = [
        Turn(
            index=0,
            text=f"<think>The bars are small; look at the top left of image {number}.</think>Let me zoom.\n{raw}",
            actions=[Action(kind="code", code=code, raw=raw)],
            outcomes=[outcome],
            observation=[Message.of("tool", outcome.stdout, crop)],
            usage=Usage(prompt_tokens=900, completion_tokens=60),
        ),
        Turn(
            index=1,
            text=f"The value is <answer>{number}</answer>",
            answer=str(number),
            usage=Usage(completion_tokens=9),
        ),
    ]
    correct = number % 3 != 0
    t.final_answer = str(number if correct else number + 1)
    t.stop_reason = STOPS[number % len(STOPS)]  # type: ignore[assignment]
    t.score = {"correct": correct, "reward": float(correct)}
    t.usage = Usage(prompt_tokens=1800, completion_tokens=69)
    return t


def write_synthetic_run(folder: Path, count: int, size: tuple[int, int] = (96, 64), noise: float = 0.0) -> Path:
    """Write ``count`` items under ``folder`` (``items/<key>/``, ``results.jsonl``, ``run.json``); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"model": "synthetic", "transforms": list(TRANSFORMS)}))
    with open(folder / RESULTS_FILE, "w", encoding="utf-8") as results:
        for number in range(count):
            trajectory = synthetic_trajectory(number, size, noise)
            transform = TRANSFORMS[number % len(TRANSFORMS)]
            key = item_key(trajectory.task_id, transform)
            trajectory.save(folder / "items" / item_folder(key))
            record = {
                "key": key,
                "task_id": trajectory.task_id,
                "transform": transform,
                "source": trajectory.source,
                "status": "done",
                "correct": trajectory.score["correct"] if trajectory.score else None,
                "stop_reason": trajectory.stop_reason,
                "trajectory": f"items/{item_folder(key)}",
            }
            results.write(json.dumps(record, sort_keys=True) + "\n")
    return folder
