"""The conversations a training run learns from: recorded trajectories and imported SFT rows.

A run is given folders of trajectories (what ``eval`` and ``data synth`` write), sharegpt or
``messages`` files (codevision's SFT exports, CodeVision-SFT) and TRL conversational parquet files
(``data export sft --format trl``). Each becomes a :class:`Conversation`: the protocol's messages
with image references or encoded bytes, not decoded images, so a dataset of tens of thousands of
multi-image conversations is decoded per batch instead of held in memory as pixels. Recorded
trajectories keep the token ids the model sampled; imported rows are text.

Trajectories scored wrong are left out unless asked for, so a model is never trained on its wrong
answers by accident; what was left out, and why, is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from codevision.data.sft import ImageSource, find_trajectories, read_image, read_rows, read_trl_rows
from codevision.trajectory import TRAJECTORY_FILE, Message, Trajectory

#: File suffixes read as rows: sharegpt / ``messages`` JSON(L), TRL conversational parquet.
ROW_FILES = (".json", ".jsonl", ".parquet")


class DataError(ValueError):
    """A training input cannot be read; the message names the file (and row) and says what to do."""


@dataclass
class Conversation:
    """One training conversation; ``images[i]`` is the image that image parts with index ``i`` show."""

    id: str
    #: Where it came from (a trajectory file, or a row of a file), for error messages and reports.
    where: str
    messages: list[Message]
    images: list[ImageSource]

    def image(self, index: int) -> Image.Image:
        """Image ``index``, decoded; an unreadable file is a :class:`DataError` naming the conversation."""
        try:
            return read_image(self.images[index])
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.where}: image {index} cannot be read: {exc}") from None


@dataclass
class Collected:
    """What the inputs held: the conversations to train on, and those left out with the reason."""

    conversations: list[Conversation] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    #: Trajectories without a score (kept: teacher data is often unscored).
    unscored: int = 0


def collect(paths: Sequence[str | Path], *, include_incorrect: bool = False) -> Collected:
    """Every conversation under ``paths``: trajectory folders or files, and sharegpt/``messages`` files."""
    collected = Collected()
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"training data {path} does not exist")
        if path.is_file() and path.suffix in ROW_FILES and path.name != TRAJECTORY_FILE:
            collected.conversations += _rows(path)
            continue
        trajectories = find_trajectories([path])
        if not trajectories:
            raise DataError(
                f"{path} holds no trajectory.json; give trajectory folders (eval or data synth output) "
                f"or sharegpt/messages files ({', '.join(ROW_FILES)})"
            )
        for file in trajectories:
            _add_trajectory(collected, file, include_incorrect)
    if not collected.conversations:
        reason = f"; left out: {collected.left_out[0]}" if collected.left_out else ""
        raise DataError(f"no conversation to train on in {', '.join(map(str, paths))}{reason}")
    return collected


def _rows(path: Path) -> list[Conversation]:
    try:
        rows = read_trl_rows(path) if path.suffix == ".parquet" else read_rows(path)
        return [Conversation(row.id, row.where, row.messages, row.images) for row in rows]
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from None


def _add_trajectory(collected: Collected, file: Path, include_incorrect: bool) -> None:
    try:
        trajectory = Trajectory.load(file)
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from None
    where = str(file)
    if not trajectory.turns:
        collected.left_out.append(f"{where}: no assistant reply")
        return
    score = trajectory.score
    if score is None:
        collected.unscored += 1
    elif not score.get("correct") and not include_incorrect:
        answer, expected = trajectory.final_answer, trajectory.references
        collected.left_out.append(f"{where}: wrong answer {answer!r} (expected {expected})")
        return
    folder = file.parent
    images: list[ImageSource] = []
    for record in trajectory.images:
        if record.file is None:
            raise DataError(f"{where}: image {record.index} was never saved")
        images.append(folder / record.file)
    collected.conversations.append(Conversation(trajectory.task_id, where, trajectory.conversation(), images))


def with_system_prompt(conversations: Sequence[Conversation], text: str) -> list[Conversation]:
    """The conversations with ``text`` as their system turn (replacing theirs, or added first).

    Recorded replies keep their sampled ids: the prompt they were sampled from changes, but not they.
    """
    system = Message.of("system", text)
    return [
        replace(conversation, messages=[system, *(m for m in conversation.messages if m.role != "system")])
        for conversation in conversations
    ]
