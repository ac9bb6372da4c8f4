"""What happened when a model worked on a task: every turn, tool result and image, losslessly.

A trajectory is stored as ``trajectory.json`` with its images as PNG files in ``images/`` beside
it; loading gives back an equal object with pixel-identical images. The conversation is kept
append-only and in a neutral form (text and image references), so evaluation, data generation
and training all read the same messages; a backend that reports token ids stores them per turn.
Every image carries its :class:`Lineage`: which part of which input it shows, and whether the host
verified that against the pixels (rewards credit verified images only).

The file records :data:`SCHEMA_VERSION`. Version 1 (no lineage) is migrated on load: its tool
images get the ``unrecorded`` lineage, which earns no process credit. A newer version is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from codevision.sandbox.results import ImageOp

#: Version of the trajectory file format; 2 added image lineage and trace problems.
SCHEMA_VERSION = 2

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["answered", "max_turns", "max_tokens", "no_action", "model_error", "sandbox_error"]
TRAJECTORY_FILE = "trajectory.json"


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image of the trajectory, by its index in :attr:`Trajectory.images`."""

    type: Literal["image"] = "image"
    index: int = Field(ge=0)


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    role: Role
    content: list[Part]
    #: An assistant reply's tokens exactly as the model sampled them, when the backend reported them.
    #: Kept in memory only (the turn stores them as ``response_token_ids``), so a token-in/token-out
    #: backend feeds the model its own tokens back rather than a re-tokenisation of the text.
    token_ids: list[int] | None = Field(default=None, exclude=True, repr=False)

    @classmethod
    def of(cls, role: Role, *parts: str | int) -> Message:
        """Build a message from strings (text) and ints (image indices), in order."""
        return cls(role=role, content=[TextPart(text=p) if isinstance(p, str) else ImagePart(index=p) for p in parts])

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def image_indices(self) -> list[int]:
        return [part.index for part in self.content if isinstance(part, ImagePart)]


LineageStatus = Literal[
    "input", "verified", "host", "mismatch", "untraced", "unmappable", "incomplete", "unverified_base", "unrecorded"
]
#: Statuses whose lineage is known to be true: inputs, host-made crops, and traces the replay confirmed.
VERIFIED = frozenset({"input", "verified", "host"})


class Lineage(BaseModel):
    """What part of which input an image shows, as its op trace claims it, and whether that was verified.

    ``matrix`` (a, b, c, d, e, f) takes a pixel (x, y) of this image to (a·x + b·y + c, d·x + e·y + f)
    in input ``input``; ``box`` is the part of that input the image shows (the bounding box of its
    corners there, clipped to the input); ``angle`` and ``mirrored`` are its orientation relative
    to the input (mirrored left to right first, then turned ``angle`` degrees counter-clockwise).
    ``chain`` lists the trace positions (in :func:`codevision.rewards.base.trace` order) of the ops
    the image descends through, latest first. The status says whether to believe it:

    * ``input``: an input image; ``host``: made by the host itself (the crop tool);
    * ``verified``: the host replayed the traced geometry from the pixels the chain starts at, and
      the image agrees with it (``agreement``);
    * ``mismatch``: the replay disagrees with the pixels; ``untraced``: no trace leads to it (a
      figure, an image drawn from scratch); ``unmappable``: an op in its chain has no replayable
      geometry; ``incomplete``: its run's trace was cut short or reported problems;
      ``unverified_base``: it descends from an image that is not verified; ``unrecorded``: the
      trajectory predates lineage. ``reason`` says which.
    """

    model_config = ConfigDict(extra="forbid")

    status: LineageStatus
    input: int | None = None
    matrix: tuple[float, float, float, float, float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    angle: float | None = None
    mirrored: bool | None = None
    chain: list[int] = Field(default_factory=list)
    agreement: float | None = None
    reason: str | None = None

    @property
    def verified(self) -> bool:
        return self.status in VERIFIED


class ImageRecord(BaseModel):
    """One image of the trajectory: an input, or an image a tool returned at ``turn``."""

    index: int
    origin: Literal["input", "tool"]
    turn: int | None = None
    size: tuple[int, int]
    model_size: tuple[int, int] | None = None
    file: str | None = None
    lineage: Lineage | None = None


class Action(BaseModel):
    """One tool call as parsed from the model's text; a ``rejected`` call runs nothing and fails with ``error``."""

    kind: Literal["code", "crop", "rejected"]
    code: str | None = None
    image_index: int | None = None
    bbox: list[float] | None = None
    raw: str = ""
    error: str | None = None


class ToolOutcome(BaseModel):
    """The result of one action; ``image_indices`` point into :attr:`Trajectory.images`."""

    action: int
    status: str
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    image_indices: list[int] = Field(default_factory=list)
    ops: list[ImageOp] = Field(default_factory=list)
    trace_problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


class Turn(BaseModel):
    """One assistant message and everything it caused."""

    index: int
    text: str
    actions: list[Action] = Field(default_factory=list)
    answer: str | None = None
    issues: list[str] = Field(default_factory=list)
    outcomes: list[ToolOutcome] = Field(default_factory=list)
    observation: list[Message] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    model_seconds: float = 0.0
    tool_seconds: float = 0.0
    response_token_ids: list[int] | None = None

    def message(self) -> Message:
        """The reply as the assistant message of the conversation, carrying its sampled tokens."""
        return Message(role="assistant", content=[TextPart(text=self.text)], token_ids=self.response_token_ids)


class Trajectory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    task_id: str
    protocol: str
    model: str = ""
    source: str = ""
    question: str = ""
    references: list[str] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    images: list[ImageRecord] = Field(default_factory=list)
    final_answer: str | None = None
    stop_reason: StopReason = "answered"
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    score: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    _pixels: list[Image.Image] = PrivateAttr(default_factory=list)
    _directory: Path | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ images
    def add_image(self, image: Image.Image, origin: Literal["input", "tool"], turn: int | None = None) -> int:
        """Append an image; an input gets its own (trivial) lineage, a tool image gets one when it is verified."""
        index = len(self.images)
        lineage = input_lineage(index, image.size) if origin == "input" else None
        self.images.append(ImageRecord(index=index, origin=origin, turn=turn, size=image.size, lineage=lineage))
        self._pixels.append(image)
        return index

    def image(self, index: int) -> Image.Image:
        """The full-resolution image ``index`` (loaded from disk on first use for saved trajectories)."""
        while len(self._pixels) <= index and self._directory is not None:
            record = self.images[len(self._pixels)]
            if record.file is None:
                raise ValueError(f"trajectory {self.task_id!r}: image {record.index} was never saved")
            with Image.open(self._directory / record.file) as img:
                img.load()
                self._pixels.append(img.copy())
        return self._pixels[index]

    # ------------------------------------------------------------------ conversation
    def conversation(self) -> list[Message]:
        """Every message in order, as the model saw them (images by index)."""
        messages = list(self.messages)
        for turn in self.turns:
            messages.append(turn.message())
            messages.extend(turn.observation)
        return messages

    @property
    def used_tools(self) -> bool:
        return any(turn.actions for turn in self.turns)

    # ------------------------------------------------------------------ storage
    def save(self, directory: str | Path) -> Path:
        """Write ``trajectory.json`` and ``images/NNNN.png`` into ``directory``; returns the JSON path.

        The JSON is written to a temporary file and renamed, so a crash never leaves half a file (nor
        the temporary one). Text that is not valid Unicode (a lone surrogate from a command line in
        another encoding, or from a model server's JSON escapes) is kept as a ``\\uXXXX`` escape, so
        it loads back unchanged.
        """
        directory = Path(directory)
        (directory / "images").mkdir(parents=True, exist_ok=True)
        for record in self.images:
            name = f"images/{record.index:04d}.png"
            if record.file != name or not (directory / name).exists():
                self.image(record.index).save(directory / name)
                record.file = name
        data = json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False)
        path = directory / TRAJECTORY_FILE
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".trajectory-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8", errors="backslashreplace"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._directory = directory
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Load a trajectory from its JSON file or its folder; errors name the file."""
        path = Path(path)
        if path.is_dir():
            path = path / TRAJECTORY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no trajectory at {path}") from exc
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a valid trajectory: {exc}") from exc
        try:
            trajectory = cls.model_validate(migrate(data))
        except ValueError as exc:
            raise ValueError(f"{path} is not a valid trajectory: {exc}") from exc
        trajectory._directory = path.parent
        return trajectory


UNRECORDED = "the trajectory was recorded before image lineage existed (schema 1), so nothing was verified"


def migrate(data: Any) -> Any:
    """Bring a stored trajectory (parsed JSON) to :data:`SCHEMA_VERSION`; a newer one raises ``ValueError``.

    Schema 1 had no lineage: inputs become ``input`` lineages, every tool image ``unrecorded``.
    """
    if not isinstance(data, dict):
        return data
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"it has schema version {version!r}, newer than the {SCHEMA_VERSION} this codevision reads; "
            "upgrade codevision"
        )
    if version == 1:
        data = {**data, "schema_version": SCHEMA_VERSION}
        images = []
        for stored in data.get("images") or []:
            record = stored
            if isinstance(stored, dict) and "lineage" not in stored:
                lineage = Lineage(status="unrecorded", reason=UNRECORDED)
                if stored.get("origin") == "input":
                    lineage = input_lineage(stored.get("index", 0), stored.get("size") or (0, 0))
                record = {**stored, "lineage": lineage.model_dump()}
            images.append(record)
        data["images"] = images
    return data


def input_lineage(index: int, size: tuple[int, int] | list[int]) -> Lineage:
    """The lineage of input ``index``: itself, whole and upright."""
    width, height = size
    return Lineage(
        status="input", input=index, matrix=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), box=(0.0, 0.0, width, height),
        angle=0.0, mirrored=False,
    )  # fmt: skip
