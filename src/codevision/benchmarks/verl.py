"""MVToolBench and CodeVision-RL: verl-style parquet with images embedded as bytes.

Columns: ``data_source``, ``prompt`` (chat messages, the user turn being ``<image>\\n{question}``),
``images`` (a list of ``{bytes, path}`` structs), ``reward_model {ground_truth, style}`` and
``extra_info {answer, bbox, dataset_name, index, question, split, transform}``. The answer
region ``bbox`` (``[x0, y0, x1, y1]``) becomes the task's box, and ``transform`` what was done to
the image: ``rotate_D`` (rotated by D degrees counter-clockwise) and ``flip_horizontal`` /
``flip_vertical`` become :class:`TransformRecord` entries with the op that undoes them, and
``expected_ops`` lists the ops a good solution uses — the ops that undo the listed transforms
(applied in the order listed, so undone last first, by :func:`codevision.transforms.ops.expected_ops`
like every other source), ``crop`` when listed, and any other name as it is. The raw field is kept
in ``metadata["transform"]``. Rows are scored by CodeVision's answer rule and judge
(``metadata["scoring"]``), with ``data_source`` kept as metadata.

Images are written once to the content-addressed image cache and tasks refer to the files, not
kept in memory: the RL set has tens of thousands of photos, and a task list of decoded images would
not fit. A task id is ``{dataset_name}-{index}`` from ``extra_info`` (the row number when the file
has no index). A path is accepted in place of a folder: every ``*.parquet`` in it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from codevision.benchmarks.base import (
    Benchmark,
    ImageStore,
    OnError,
    Row,
    describe,
    image_reference,
    jsonable,
    parse_boxes,
)
from codevision.benchmarks.tables import parquet_files, parquet_rows, parquet_size
from codevision.task import Task, TransformRecord
from codevision.transforms.ops import expected_ops

_ROTATE = re.compile(r"rotate_(-?\d+)")
_FLIPS = {"flip_horizontal": "flip_h", "flip_h": "flip_h", "flip_vertical": "flip_v", "flip_v": "flip_v"}
_IMAGE_TOKEN = re.compile(r"<image>")
# extra_info keys that become task fields rather than metadata.
_CONSUMED = frozenset({"question", "answer", "bbox", "bbox_2d", "transform"})


def transform_fields(item: Row, field: str, value: Any) -> tuple[list[TransformRecord], list[str]]:
    """Transform records and expected ops from a ``transform`` value (a list, a name, a JSON list or a dict)."""
    if isinstance(value, str) and value.strip().startswith(("[", "{")):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise item.error(field, f"is not valid JSON: {value[:60]!r}; expected a list of transform names") from None
    if value is None:
        entries: list[tuple[Any, dict[str, Any]]] = []
    elif isinstance(value, str):
        entries = [(value, {})]
    elif isinstance(value, Mapping):
        entries = [(k, dict(v) if isinstance(v, Mapping) else {"value": v}) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        entries = [(v, {}) for v in value]
    else:
        raise item.error(field, f"expected a list of transform names, got {describe(value)}")
    records: list[TransformRecord] = []
    others: list[str] = []
    for name, params in entries:
        if not isinstance(name, str) or not name:
            raise item.error(field, f"expected transform names (strings), got {describe(value)}")
        rotation = _ROTATE.fullmatch(name)
        if name == "crop":
            others.append(name)
        elif rotation:
            inverse = (360 - int(rotation.group(1))) % 360
            records.append(TransformRecord(name=name, params=params, inverse=[f"rotate_{inverse}"] if inverse else []))
        elif name in _FLIPS:
            # A flip undoes itself; named as the op trace names it.
            records.append(TransformRecord(name=name, params=params, inverse=[_FLIPS[name]]))
        else:
            others.append(name)
            records.append(TransformRecord(name=name, params=params))
    # The transforms were applied in the order listed, so they are undone last first (one rule for every source).
    expected = others + expected_ops(records)
    return records, list(dict.fromkeys(expected))


class VerlParquet(Benchmark):
    """A verl parquet file or a folder of them; embedded images are written under ``cache_dir``."""

    name = "verl"

    def __init__(self, path: str | Path, *, cache_dir: str | Path | None = None, on_error: OnError = "raise") -> None:
        self._files = parquet_files(Path(path), "verl parquet")
        self.store = ImageStore(cache_dir)
        base = Path(path) if Path(path).is_dir() else Path(path).parent
        super().__init__(Path(path), base_dir=base, source="verl", on_error=on_error)

    def _count(self) -> int:
        return sum(parquet_size(f) for f in self._files)

    def _records(self) -> Iterator[tuple[Path, int, Any]]:
        for file in self._files:
            for index, row in parquet_rows(file):
                yield file, index, row

    def _task(self, file: Path, row: int | str | None, data: Any) -> Task:
        item = Row(file, row, data)
        extra = item.child("extra_info")
        data_source = item.optional_text("data_source") or ""
        index = extra.data.get("index")
        if index is None:
            task_id = f"{file.stem}-{row}"
        elif isinstance(index, (int, str)) and not isinstance(index, bool):
            dataset = extra.optional_text("dataset_name")
            task_id = f"{dataset}-{index}" if dataset else str(index)
        else:
            raise extra.error("index", f"expected an integer or a string, got {describe(index)}")
        item.task_id = extra.task_id = task_id

        field = "images" if "images" in data else "image"
        images = item.raw(field, "a list of images (bytes or {bytes, path} structs)")
        images = images if isinstance(images, list) else [images]
        paths = [image_reference(item, field, image, file.parent, self.store) for image in images]
        box_field = "bbox" if "bbox" in extra.data else "bbox_2d"
        bboxes = parse_boxes(extra, box_field, extra.data.get(box_field))
        raw_transform = extra.data.get("transform")
        transforms, expected = transform_fields(extra, "transform", raw_transform)

        metadata: dict[str, Any] = {k: v for k, v in extra.data.items() if k not in _CONSUMED and jsonable(v)}
        # CodeVision's rows are scored by its answer rule and judge whatever dataset they came from.
        metadata.update(
            data_source=data_source, transform=raw_transform if jsonable(raw_transform) else None, scoring="codevision"
        )
        for key in ("ability", "reward_model"):
            if jsonable(data.get(key)):
                metadata[key] = data.get(key)
        return Task(
            id=task_id,
            images=paths,
            question=self._question(item, extra),
            answers=self._answers(item, extra),
            source=data_source or self.source,
            bboxes=bboxes,
            transforms=transforms,
            expected_ops=expected,
            metadata=metadata,
        )

    @staticmethod
    def _question(item: Row, extra: Row) -> str:
        """``extra_info.question``, else the last user message of ``prompt`` without its image tokens."""
        if extra.has("question"):
            return extra.text("question")
        prompt = item.raw("prompt", "chat messages with a user turn, or extra_info.question")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if not isinstance(prompt, list) or not all(isinstance(m, Mapping) for m in prompt):
            raise item.error("prompt", f"expected a list of chat messages, got {describe(prompt)}")
        users = [m.get("content") for m in prompt if m.get("role") == "user"]
        if not users or not isinstance(users[-1], str) or not _IMAGE_TOKEN.sub("", users[-1]).strip():
            raise item.error("prompt", "has no user message with text; expected a user turn '<image>\\n{question}'")
        return _IMAGE_TOKEN.sub("", users[-1]).strip()

    @staticmethod
    def _answers(item: Row, extra: Row) -> list[str]:
        """``reward_model.ground_truth``, else ``extra_info.answer``; numbers become text."""
        reward = item.child("reward_model")
        if reward.has("ground_truth"):
            return reward.texts("ground_truth", numbers=True)
        if extra.has("answer"):
            return extra.texts("answer", numbers=True)
        raise reward.error("ground_truth", "missing, and so is extra_info.answer; expected the answer")
