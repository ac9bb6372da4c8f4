"""The demo's student: a tiny Qwen2.5-VL built from a config, its tokenizer trained on the demo's text.

The tokenizer learns its vocabulary from the conversations the model will be trained on (the
system prompt, the question, the teacher's replies, the observations), so a reply with a tool
call is a few dozen tokens rather than a hundred bytes: generation is faster and a sampled reply
has fewer places to go wrong. Nothing is downloaded; the weights are random until SFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codevision.testing.tiny_vlm import build_tiny_qwen_vl
from codevision.training_demo.tasks import QUESTION, SYSTEM_PROMPT
from codevision.trajectory import Trajectory

#: The language model's width and depth; the vision tower is half as wide. Measured on the demo's
#: task: 64 wide and 2 deep learns the format but reads the colours at chance; this size reads them.
WIDTH = 128
LAYERS = 4
VOCAB_SIZE = 1024


def corpus(trajectory_folders: Sequence[str | Path]) -> list[str]:
    """Every text the demo's conversations hold: the prompt, and each message of each trajectory."""
    lines = [SYSTEM_PROMPT, QUESTION]
    for path in sorted(p for folder in trajectory_folders for p in Path(folder).rglob("trajectory.json")):
        trajectory = Trajectory.load(path.parent)
        lines.extend(message.text for message in trajectory.conversation() if message.text)
    return lines


def build_student(directory: str | Path, trajectory_folders: Sequence[str | Path], *, seed: int) -> Path:
    """Write the untrained student model folder (the demo's "initial" checkpoint)."""
    return build_tiny_qwen_vl(
        directory,
        seed=seed,
        corpus=corpus(trajectory_folders),
        vocab_size=VOCAB_SIZE,
        width=WIDTH,
        layers=LAYERS,
        tool_calls=True,
    )
