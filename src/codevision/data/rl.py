"""RL training sets from tasks: verl parquet (CodeVision-RL's layout) and a TRL GRPO dataset.

Both prompts are the protocol's own first messages (its system prompt, then the user turn with the
images and the question), so a policy is trained on the conversation it is evaluated in. Each row
carries what the reward needs: the answers, the answer boxes, the transform applied to the image
and the ops that undo it.

verl rows follow CodeVision-RL / MVToolBench: ``prompt`` messages with ``<image>`` placeholders
(one per image, where the protocol puts the image), ``images`` as ``{bytes, path}`` structs,
``data_source``, ``reward_model {ground_truth, style}`` and ``extra_info {answer, bbox,
dataset_name, index, question, split, transform}``, plus ``answers``, ``expected_ops``,
``agent_name`` and ``task_id`` in ``extra_info`` and ``agent_name`` as a column (verl picks the
agent loop from that column). ``transform`` uses CodeVision's names (``rotate_D`` counter-clockwise,
``flip_horizontal``, ``flip_vertical``, ``crop`` when the answer region matters), which the ``verl``
benchmark loader reads back; ids are written so that loading the file gives the exported ids.

Tool schemas given to an export (``--tools``) are written into each row as a JSON string:
``extra_info.tools`` (verl) and ``tools`` (TRL, the column TRL's SFT trainer reads). Neither RL
trainer renders a prompt's tools from its row, though: verl renders those of the tools its rollout
config names, TRL's GRPO trainer the schemas it derives from its environment's methods
(see :func:`codevision.chat.tools.method_from_schema` and docs/data.md). The row records what
evaluation rendered, for an agent loop or environment to check or use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from codevision.data.images import png_bytes
from codevision.eval.items import build_items
from codevision.eval.runner import NO_TRANSFORM, EvalItem
from codevision.protocols import Protocol
from codevision.task import Task
from codevision.trajectory import ImagePart, Message

IMAGE_PLACEHOLDER = "<image>"
#: verl's ``agent_name`` for rows made here: the name the CodeVision agent loop is registered under.
DEFAULT_AGENT_NAME = "codevision_agent"
_CODEVISION_NAMES = {"flip_h": "flip_horizontal", "flip_v": "flip_vertical"}
_IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


# RL items are evaluation items: the same tasks under the same transforms with the same per-item
# seeds, so an RL row and the evaluation item of that task and transform hold identical pixels.
rl_items = build_items


def item_id(item: EvalItem) -> str:
    """The exported id: the task's own id untransformed, ``{task}@{transform}`` otherwise (unique per row)."""
    return item.entry.id if item.transform == NO_TRANSFORM else item.key


def placeholder_text(message: Message) -> str:
    """A message as one string, each image replaced by ``<image>`` (the convention of verl and LLaMA-Factory)."""
    return "".join(IMAGE_PLACEHOLDER if isinstance(part, ImagePart) else part.text for part in message.content)


def codevision_transform(task: Task) -> list[str]:
    """The ``transform`` field of CodeVision-RL: ``crop`` when a crop is expected, then each applied transform."""
    names = ["crop"] if "crop" in task.expected_ops else []
    return names + [_CODEVISION_NAMES.get(record.name, record.name) for record in task.transforms]


Tools = Sequence[Mapping[str, Any]] | None


def tools_json(tools: Tools) -> str | None:
    """The schemas as the JSON string a row carries (key order kept: it is the order a template renders)."""
    return json.dumps([dict(tool) for tool in tools], ensure_ascii=False) if tools else None


def _split_id(task_id: str, source: str) -> tuple[str | None, str]:
    """``(dataset_name, index)`` such that the verl loader's ``{dataset_name}-{index}`` is ``task_id`` again."""
    prefix = f"{source}-"
    if source and task_id.startswith(prefix) and len(task_id) > len(prefix):
        return source, task_id[len(prefix) :]
    return None, task_id


def verl_row(
    item: EvalItem,
    protocol: Protocol,
    *,
    split: str = "train",
    agent_name: str = DEFAULT_AGENT_NAME,
    single_box: bool = True,
    tools: Tools = None,
) -> dict[str, Any]:
    """One verl row. ``single_box`` writes ``bbox`` as one box (CodeVision's shape) rather than a list;
    ``tools`` go into ``extra_info.tools`` when given."""
    task = item.task
    if not task.answers:
        raise ValueError(f"task {task.id!r} has no answer; an RL item needs one for the reward")
    images = task.load_images()
    row_id = item_id(item)
    messages = protocol.initial_messages(task.question, list(range(len(images))))
    source = task.source or "codevision"
    dataset_name, index = _split_id(row_id, source)
    boxes = [list(box) for box in task.bboxes]
    extra_info = {
        "index": index,
        "dataset_name": dataset_name,
        "split": split,
        "question": task.question,
        "answer": task.answers[0],
        "answers": list(task.answers),
        "bbox": (boxes[0] if boxes else None) if single_box else boxes,
        "transform": codevision_transform(task),
        "expected_ops": list(task.expected_ops),
        "applied_transform": item.transform,
        "source_task": item.base_id or task.id,
        "task_id": row_id,
        "agent_name": agent_name,
    }
    if tools:
        extra_info["tools"] = tools_json(tools)
    return {
        "data_source": source,
        "prompt": [{"role": m.role, "content": placeholder_text(m)} for m in messages],
        "images": [{"bytes": png_bytes(image), "path": None} for image in images],
        "reward_model": {"style": "rule", "ground_truth": task.answers[0]},
        "agent_name": agent_name,
        "extra_info": extra_info,
    }


def write_verl_parquet(
    items: Iterable[EvalItem],
    path: str | Path,
    protocol: Protocol,
    *,
    split: str = "train",
    agent_name: str = DEFAULT_AGENT_NAME,
    tools: Tools = None,
) -> int:
    """Write a verl RL parquet file; returns the number of rows.

    Ids must be unique (verl and the loader key rows by them), so a repeated id is an error.
    """
    items = list(items)
    single_box = all(len(item.task.bboxes) <= 1 for item in items)
    rows = [
        verl_row(item, protocol, split=split, agent_name=agent_name, single_box=single_box, tools=tools)
        for item in items
    ]
    _check_unique([row["extra_info"]["task_id"] for row in rows])
    table = pa.Table.from_pylist(rows)
    table = table.set_column(
        table.schema.get_field_index("images"), "images", pa.array([r["images"] for r in rows], pa.list_(_IMAGE_STRUCT))
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return len(rows)


def _check_unique(ids: list[str]) -> None:
    seen: set[str] = set()
    for row_id in ids:
        if row_id in seen:
            raise ValueError(f"two rows have the id {row_id!r}; task ids must be unique within an export")
        seen.add(row_id)


def trl_grpo_row(item: EvalItem, protocol: Protocol, tools: Tools = None) -> dict[str, Any]:
    """One TRL GRPO row: a conversational ``prompt``, ``images`` and the reward's columns (and ``tools``, a
    JSON string, when given).

    Image parts are ``{"type": "image"}`` placeholders that TRL fills, in order, from ``images``.
    """
    task = item.task
    if not task.answers:
        raise ValueError(f"task {task.id!r} has no answer; an RL item needs one for the reward")
    images = task.load_images()
    messages = protocol.initial_messages(task.question, list(range(len(images))))
    prompt = [
        {
            "role": m.role,
            "content": [
                {"type": "image", "text": None} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                for p in m.content
            ],
        }
        for m in messages
    ]
    row = {
        "prompt": prompt,
        "images": images,
        "question": task.question,
        "answers": list(task.answers),
        "bboxes": [list(box) for box in task.bboxes],
        "expected_ops": list(task.expected_ops),
        "source": task.source,
        "transform": item.transform,
        "task_id": item_id(item),
    }
    if tools:
        row["tools"] = tools_json(tools)
    return row


def grpo_features(*, tools: bool = False) -> Any:
    """The Hugging Face features of the GRPO dataset (images as ``Image()`` so they decode to PIL), with the
    ``tools`` column when the rows carry one."""
    from datasets import Features, Image, List, Value

    columns = {"tools": Value("string")} if tools else {}
    return Features(
        {
            "prompt": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "images": List(Image()),
            "question": Value("string"),
            "answers": List(Value("string")),
            "bboxes": List(List(Value("float64"))),
            "expected_ops": List(Value("string")),
            "source": Value("string"),
            "transform": Value("string"),
            "task_id": Value("string"),
            **columns,
        }
    )


def trl_grpo_dataset(items: Iterable[EvalItem], protocol: Protocol, *, tools: Tools = None) -> Any:
    """The TRL GRPO rows as a ``datasets.Dataset`` (what ``train grpo`` reads back from the parquet file)."""
    from codevision.data.hf import require_datasets

    datasets = require_datasets()
    rows = [trl_grpo_row(item, protocol, tools) for item in items]
    _check_unique([row["task_id"] for row in rows])
    return datasets.Dataset.from_list(rows, features=grpo_features(tools=bool(tools)))


def write_trl_grpo(items: Iterable[EvalItem], path: str | Path, protocol: Protocol, *, tools: Tools = None) -> int:
    """Write the TRL GRPO dataset as parquet (with its features, so ``datasets`` decodes the images)."""
    dataset = trl_grpo_dataset(items, protocol, tools=tools)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))
    return len(dataset)
