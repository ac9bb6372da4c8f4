"""SFT datasets from trajectories: LLaMA-Factory sharegpt, ms-swift ``messages`` and TRL conversational.

Each row is the trajectory's conversation exactly as the protocol rendered it (system prompt, user
turn, every assistant reply verbatim with its tool call, every observation), so the model learns
the text it will read and write at inference. Observations are marked so the trainers mask them
(loss on assistant turns only): the ``observation`` tag of the sharegpt entry, ms-swift's
``tool_response`` role, and TRL's ``tool`` role with ``assistant_only_loss``. In the sharegpt and
ms-swift rows each image is an ``<image>`` placeholder and the ``images`` list holds one file per
placeholder, in order; TRL rows carry the input images in ``images`` and the tool images inside the
tool turns (TRL fills only non-tool turns from ``images``).

A trajectory that ends on an observation (stopped at the turn limit) loses that last observation:
no assistant reply follows it, so it teaches nothing and would break the strict user/assistant
alternation LLaMA-Factory requires.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from codevision.chat.budget import ImageBudget
from codevision.data.images import open_image
from codevision.data.rl import IMAGE_PLACEHOLDER
from codevision.eval.store import item_folder
from codevision.jsonfiles import read_json, read_jsonl
from codevision.protocols import get_protocol
from codevision.trajectory import TRAJECTORY_FILE, ImagePart, Message, Trajectory, Turn

#: The formats :func:`export_sft` writes.
SFT_FORMATS = ("sharegpt", "swift", "trl")
#: sharegpt role names: CodeVision-SFT's ``human``/``gpt``, ``observation`` for tool results.
SHAREGPT_ROLES = {"user": "human", "assistant": "gpt", "tool": "observation", "system": "system"}
SWIFT_ROLES = {"user": "user", "assistant": "assistant", "tool": "tool_response", "system": "system"}
#: Joins consecutive tool results into one observation turn (LLaMA-Factory's own separator).
TOOL_RESULT_SEPARATOR = "</tool_response>\n<tool_response>"


class SFTExportError(ValueError):
    """A trajectory cannot become an SFT row; the message names it and says why."""


@dataclass
class Turns:
    """A conversation as alternating (prompt side, assistant) turns, images as trajectory indices."""

    trajectory: Trajectory
    system: Message | None
    messages: list[Message]


def find_trajectories(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``trajectory.json`` under the given folders (or the given files), sorted for stable output."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(TRAJECTORY_FILE)))
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return found


def _merge(first: Message, second: Message, trajectory: Trajectory) -> Message:
    if first.role != second.role:
        raise SFTExportError(
            f"trajectory {trajectory.task_id!r}: a {first.role} message follows a {second.role} message with no "
            "assistant reply between; sharegpt needs alternating turns"
        )
    separator = TOOL_RESULT_SEPARATOR if first.role == "tool" else "\n"
    return Message(
        role=first.role, content=[*first.content, *Message.of(first.role, separator).content, *second.content]
    )


def alternating_turns(trajectory: Trajectory) -> Turns:
    """The conversation with consecutive non-assistant messages merged and a trailing observation dropped."""
    conversation = trajectory.conversation()
    system = conversation[0] if conversation and conversation[0].role == "system" else None
    merged: list[Message] = []
    for message in conversation[1 if system else 0 :]:
        if message.role == "system":
            raise SFTExportError(f"trajectory {trajectory.task_id!r}: a system message after the first turn")
        if merged and message.role != "assistant" and merged[-1].role != "assistant":
            merged[-1] = _merge(merged[-1], message, trajectory)
        else:
            merged.append(message)
    while merged and merged[-1].role != "assistant":
        merged.pop()
    if len(merged) < 2:
        raise SFTExportError(f"trajectory {trajectory.task_id!r}: no assistant reply to train on")
    if merged[0].role != "user":
        raise SFTExportError(f"trajectory {trajectory.task_id!r}: the conversation does not start with a user turn")
    for position, message in enumerate(merged):
        if (message.role == "assistant") != (position % 2 == 1):
            raise SFTExportError(
                f"trajectory {trajectory.task_id!r}: turn {position} ({message.role}) breaks alternation"
            )
    return Turns(trajectory, system, merged)


class ImageWriter:
    """Writes a trajectory's images as PNG files under ``images/`` of the export, once each.

    With a ``budget`` each image is written at the size the model's processor gives it, resized as
    evaluation resizes it. A trainer that resizes by its own rule first (LLaMA-Factory scales an
    image above ``image_max_pixels`` by a factor that ignores the patch grid, then the processor
    snaps it) then has nothing to resize, and trains on the image tokens evaluation showed.
    """

    def __init__(self, root: Path, budget: ImageBudget | None = None) -> None:
        self.root = root
        self.budget = budget

    def image(self, trajectory: Trajectory, index: int) -> Image.Image:
        image = trajectory.image(index)
        return self.budget.fit(image) if self.budget is not None else image

    def path(self, trajectory: Trajectory, index: int, key: str) -> str:
        relative = f"images/{item_folder(key)}/{index:04d}.png"
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.image(trajectory, index).save(target)
        return relative


def _text(message: Message) -> str:
    return "".join(IMAGE_PLACEHOLDER if isinstance(p, ImagePart) else p.text for p in message.content)


def _images(messages: list[Message]) -> list[int]:
    return [index for message in messages for index in message.image_indices]


def _key(trajectory: Trajectory) -> str:
    transform = trajectory.metadata.get("transform")
    return (
        f"{trajectory.task_id}@{transform}"
        if isinstance(transform, str) and transform != "none"
        else trajectory.task_id
    )


def sharegpt_row(turns: Turns, images: ImageWriter) -> dict[str, Any]:
    """A LLaMA-Factory sharegpt row: ``conversations`` (from/value), ``system``, ``images`` (paths)."""
    trajectory, key = turns.trajectory, _key(turns.trajectory)
    if turns.system is not None and turns.system.image_indices:
        raise SFTExportError(f"trajectory {trajectory.task_id!r}: the system prompt holds an image")
    return {
        "id": key,
        "conversations": [{"from": SHAREGPT_ROLES[m.role], "value": _text(m)} for m in turns.messages],
        "system": turns.system.text if turns.system else "",
        "images": [images.path(trajectory, i, key) for i in _images(turns.messages)],
    }


def swift_row(turns: Turns, images: ImageWriter) -> dict[str, Any]:
    """An ms-swift row: ``messages`` (system/user/assistant/tool_response) and ``images`` (paths)."""
    trajectory, key = turns.trajectory, _key(turns.trajectory)
    messages = [turns.system, *turns.messages] if turns.system else turns.messages
    return {
        "id": key,
        "messages": [{"role": SWIFT_ROLES[m.role], "content": _text(m)} for m in messages],
        "images": [images.path(trajectory, i, key) for i in _images(messages)],
    }


def trl_row(turns: Turns, images: ImageWriter) -> dict[str, Any]:
    """A TRL conversational row: typed content parts; tool-turn images embedded, the others in ``images``."""
    trajectory = turns.trajectory
    messages = [turns.system, *turns.messages] if turns.system else turns.messages
    rows: list[dict[str, Any]] = []
    column: list[Image.Image] = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                image = images.image(trajectory, part.index)
                if message.role == "tool":
                    parts.append({"type": "image", "text": None, "image": image})
                else:
                    parts.append({"type": "image", "text": None, "image": None})
                    column.append(image)
            else:
                parts.append({"type": "text", "text": part.text, "image": None})
        rows.append({"role": message.role, "content": parts})
    return {"id": _key(trajectory), "messages": rows, "images": column}


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry LLaMA-Factory needs to read a sharegpt export."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "images": "images"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "observation_tag": "observation",
            "function_tag": "function_call",
            "system_tag": "system",
        },
    }


@dataclass
class ExportResult:
    """What an export wrote: ``skipped`` could not be rows, ``left_out`` were left out on purpose
    (wrong answers), ``unscored`` rows carry no verdict either way."""

    path: Path
    rows: int
    skipped: list[str]
    left_out: list[str] = field(default_factory=list)
    unscored: int = 0


def _turns(
    paths: Iterable[Path], skipped: list[str], left_out: list[str], unscored: list[str], include_incorrect: bool
) -> Iterator[Turns]:
    for path in paths:
        try:
            trajectory = Trajectory.load(path)
            score = trajectory.score
            if score is None:
                unscored.append(str(path))
            elif not score.get("correct") and not include_incorrect:
                left_out.append(f"{path}: wrong answer {trajectory.final_answer!r} (expected {trajectory.references})")
                continue
            yield alternating_turns(trajectory)
        except SFTExportError as exc:
            skipped.append(str(exc))


def export_sft(
    trajectory_paths: Iterable[str | Path],
    out: str | Path,
    fmt: str,
    *,
    name: str = "codevision_sft",
    include_incorrect: bool = False,
    budget: ImageBudget | None = None,
) -> ExportResult:
    """Export trajectories in ``fmt`` (``sharegpt``, ``swift`` or ``trl``) into the folder ``out``.

    sharegpt writes ``{name}.json`` and ``dataset_info.json``; swift writes ``{name}.jsonl``; both put
    the images under ``images/`` with paths relative to ``out``. LLaMA-Factory finds them with
    ``dataset_dir`` set to ``out`` (its ``media_dir`` defaults to that); ms-swift resolves relative
    paths against the working directory or ``ROOT_IMAGE_DIR``, so train from ``out`` or set that.
    trl writes ``{name}.parquet``.
    Trajectories that cannot be rows are skipped and listed in the result. A model must not be trained
    on its wrong answers by accident, so trajectories scored wrong are left out (and listed) unless
    ``include_incorrect``; trajectories with no score are kept and counted. With ``budget`` (the
    model's processor budget) images are written at the model's size (see :class:`ImageWriter`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    left_out: list[str] = []
    unscored: list[str] = []
    turns = _turns(find_trajectories(trajectory_paths), skipped, left_out, unscored, include_incorrect)
    writer = ImageWriter(out, budget)
    if fmt == "sharegpt":
        rows = [sharegpt_row(t, writer) for t in turns]
        path = out / f"{name}.json"
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        info_path = out / "dataset_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        info[name] = dataset_info_entry(path.name)
        info_path.write_text(json.dumps(info, indent=1), encoding="utf-8")
    elif fmt == "swift":
        rows = [swift_row(t, writer) for t in turns]
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "trl":
        from codevision.data.hf import require_datasets

        datasets = require_datasets()
        rows = [trl_row(t, writer) for t in turns]
        path = out / f"{name}.parquet"
        datasets.Dataset.from_list(rows, features=trl_sft_features()).to_parquet(str(path))
    else:
        raise ValueError(f"unknown SFT format {fmt!r}; choose {', '.join(SFT_FORMATS)}")
    return ExportResult(path, len(rows), skipped, left_out, len(unscored))


def trl_sft_features() -> Any:
    """Features of the TRL SFT dataset: nested ``Image()`` so tool-turn images decode to PIL."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string"), "image": Image()}
    return Features(
        {
            "id": Value("string"),
            "messages": List({"role": Value("string"), "content": List(part)}),
            "images": List(Image()),
        }
    )


# ---------------------------------------------------------------------------------------- import
_IMPORT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "observation": "tool",
    "tool": "tool",
    "tool_response": "tool",
    "function": "tool",
    "system": "system",
}


def _row_messages(row: dict[str, Any], where: str) -> tuple[list[tuple[str, str]], str]:
    """(role, text) pairs and the system prompt of a sharegpt row (``conversations``) or a ``messages`` row."""
    if "conversations" in row:
        turns, role_key, text_key = row["conversations"], "from", "value"
    elif "messages" in row:
        turns, role_key, text_key = row["messages"], "role", "content"
    else:
        raise ValueError(f"{where}: expected a 'conversations' or 'messages' list")
    pairs = []
    for number, turn in enumerate(turns):
        role = _IMPORT_ROLES.get(str(turn.get(role_key)))
        if role is None or not isinstance(turn.get(text_key), str):
            raise ValueError(f"{where}, turn {number}: unknown role {turn.get(role_key)!r} or no text")
        pairs.append((role, turn[text_key]))
    system = row.get("system") or ""
    if pairs and pairs[0][0] == "system":
        system = pairs.pop(0)[1]
    return pairs, system


#: An image of an imported row: a file path (resolved against the row file's folder) or encoded bytes.
ImageSource = Path | bytes


def image_source(value: Any, base: Path, where: str) -> ImageSource:
    """Where an imported row's image is, checked without decoding it (a training run reads it per batch)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.exists():
            raise FileNotFoundError(f"{where}: image {path} does not exist")
        return path
    raise ValueError(f"{where}: expected an image path or bytes, got {type(value).__name__}")


def read_image(source: ImageSource) -> Image.Image:
    """The decoded image of an :data:`ImageSource`."""
    return open_image(source if isinstance(source, bytes) else source.read_bytes())


@dataclass
class ImportedRow:
    """One sharegpt or ``messages`` row as codevision messages; ``images[i]`` is the i-th ``<image>``."""

    id: str
    where: str
    messages: list[Message]
    images: list[ImageSource]


def read_rows(path: str | Path) -> Iterator[ImportedRow]:
    """The rows of a sharegpt (CodeVision-SFT) or ``messages`` JSON/JSONL file, images not yet decoded."""
    path = Path(path)
    rows = read_json(path) if path.suffix == ".json" else read_jsonl(path)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows")
    for number, row in enumerate(rows):
        where = f"{path}, row {number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object with 'conversations' or 'messages'")
        pairs, system = _row_messages(row, where)
        image_values = row.get("images") or []
        if not isinstance(image_values, list):
            raise ValueError(f"{where}: 'images' must be a list")
        order = iter(range(len(image_values)))
        messages = [Message.of("system", system)] if system else []
        messages += [_message(role, content, order, where) for role, content in pairs]
        if next(order, None) is not None:
            raise ValueError(f"{where}: more images than <image> placeholders")
        images = [image_source(value, path.parent, where) for value in image_values]
        yield ImportedRow(str(row.get("id", f"{path.stem}-{number}")), where, messages, images)


def read_trl_rows(path: str | Path) -> Iterator[ImportedRow]:
    """The rows of a TRL conversational SFT export (``data export sft --format trl``), images not yet decoded.

    Image parts of tool turns carry their image; the others take the row's ``images`` column in order.
    Read with pyarrow, so no Hugging Face stack is needed to train from the file.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable parquet file: {exc}") from None
    missing = {"messages", "images"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not a TRL SFT export (no {', '.join(sorted(missing))} column)")
    for number, row in enumerate(table.to_pylist()):
        where = f"{path}, row {number}"
        column = iter(row["images"] or [])
        images: list[ImageSource] = []
        messages = []
        for turn in row["messages"] or []:
            role = _IMPORT_ROLES.get(str(turn.get("role")))
            if role is None:
                raise ValueError(f"{where}: unknown role {turn.get('role')!r}")
            parts: list[str | int] = []
            for part in turn.get("content") or []:
                if part.get("type") == "image":
                    value = part.get("image") or next(column, None)
                    if value is None:
                        raise ValueError(f"{where}: more image parts than images")
                    images.append(image_source(value, path.parent, where))
                    parts.append(len(images) - 1)
                elif part.get("text"):
                    parts.append(part["text"])
            messages.append(Message.of(role, *parts))  # type: ignore[arg-type]
        if next(column, None) is not None:
            raise ValueError(f"{where}: more images than image parts")
        yield ImportedRow(str(row.get("id") or f"{path.stem}-{number}"), where, messages, images)


def _message(role: str, text: str, images: Iterator[int], where: str) -> Message:
    pieces = text.split(IMAGE_PLACEHOLDER)
    parts: list[str | int] = [pieces[0]] if pieces[0] else []
    for piece in pieces[1:]:
        try:
            parts.append(next(images))
        except StopIteration:
            raise ValueError(f"{where}: more <image> placeholders than images") from None
        if piece:
            parts.append(piece)
    return Message.of(role, *parts)  # type: ignore[arg-type]


def import_sharegpt(path: str | Path, *, protocol: str = "codevision") -> Iterator[Trajectory]:
    """Trajectories from a sharegpt (CodeVision-SFT) or ``messages`` JSON/JSONL file.

    Images are paths relative to the file's folder (or bytes); the i-th ``<image>`` is the i-th
    image. Images up to the first assistant turn are inputs, later ones tool outputs. Each
    assistant turn is parsed with ``protocol`` for its actions and answer.
    """
    parser = get_protocol(protocol)
    for row in read_rows(path):
        trajectory = Trajectory(task_id=row.id, protocol=protocol)
        turn: Turn | None = None
        for message in row.messages:
            for index in message.image_indices:
                origin = "input" if turn is None else "tool"
                trajectory.add_image(read_image(row.images[index]), origin, None if turn is None else turn.index)
            if message.role == "assistant":
                parsed = parser.parse(message.text)
                turn = Turn(
                    index=len(trajectory.turns), text=message.text, actions=parsed.actions, answer=parsed.answer
                )
                trajectory.turns.append(turn)
            elif turn is None:
                trajectory.messages.append(message)
            else:
                turn.observation.append(message)
        users = [m for m in trajectory.messages if m.role == "user"]
        trajectory.question = users[0].text.strip() if users else ""
        answers = [t.answer for t in trajectory.turns if t.answer is not None]
        trajectory.final_answer = answers[-1] if answers else None
        yield trajectory
