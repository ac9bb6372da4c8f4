"""A verl rollout as codevision data: the task a row poses, and the trajectory carried to the reward.

The agent loop and the reward function run in different Ray actors, and verl hands the reward only
the row's ``extra_info`` merged with the loop's ``extra_fields``. So the loop stores the task and the
recorded trajectory there as plain JSON data (no pixels: the rewards read sizes, op traces and
verified lineage, never pixels), and the reward rebuilds both objects from it and computes the
same :class:`~codevision.rewards.spec.RewardSpec` evaluation computes. Importing this module does
not import verl, so the reward file loads in any process verl starts.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from codevision.benchmarks.base import Row, parse_boxes
from codevision.benchmarks.verl import transform_fields
from codevision.task import Task
from codevision.train.environment import task_of
from codevision.trajectory import ImagePart, Message, TextPart, Trajectory

#: ``extra_fields`` keys written by the agent loop (verl merges them into the reward's ``extra_info``).
TASK_FIELD = "codevision_task"
TRAJECTORY_FIELD = "codevision_trajectory"
_ROW = Path("<verl row>")


class MissingEpisodeError(ValueError):
    """The reward was called on a row the codevision agent loop did not roll out."""


def plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars (what verl's batches hold) turned into Python lists and numbers."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return plain(value.tolist())
    return value


def prompt_of(raw_prompt: Sequence[Mapping[str, Any]]) -> tuple[list[Message], list[Image.Image]]:
    """The row's prompt as codevision messages and its images, in placeholder order.

    verl's ``RLHFDataset`` puts each image in place of its ``<image>`` placeholder as a structured
    part (``{"type": "image", "image": PIL or path, "bytes": ...}``); nothing here goes through
    ``qwen_vl_utils``, which needs torchvision.
    """
    messages: list[Message] = []
    images: list[Image.Image] = []
    for number, message in enumerate(raw_prompt):
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(
                f"prompt message {number} has role {role!r}; a prompt holds system, user and assistant turns"
            )
        content = message.get("content")
        parts: list[TextPart | ImagePart] = []
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else list(content or []):
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    parts.append(TextPart(text=str(part["text"])))
            elif kind == "image" or part.get("image") is not None:
                parts.append(ImagePart(index=len(images)))
                images.append(_image(part, number))
            else:
                raise ValueError(f"prompt message {number} holds a {kind!r} part; the codevision agent reads images")
        messages.append(Message(role=role, content=parts))
    return messages, images


def _image(part: Mapping[str, Any], message: int) -> Image.Image:
    source = part.get("image")
    if source is None and part.get("bytes") is not None:
        source = io.BytesIO(part["bytes"])
    elif source is None and part.get("path"):
        source = part["path"]
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, str | Path | io.BytesIO):
        with Image.open(source) as opened:
            opened.load()
            image = opened.copy()
    else:
        raise ValueError(f"prompt message {message} has an image part without an image, bytes or path")
    image.load()
    return image


def task_from_row(
    extra_info: Mapping[str, Any] | None,
    images: list[Image.Image],
    *,
    data_source: str | None = None,
    reward_model: Mapping[str, Any] | None = None,
    raw_prompt: Sequence[Mapping[str, Any]] | None = None,
) -> Task:
    """The task a verl row poses, as ``codevision data export rl --format verl`` writes it.

    Rows from other exports (CodeVision-RL, MVToolBench) work too: answers fall back to
    ``reward_model.ground_truth`` and ``extra_info.answer``, the expected ops to those undoing
    ``extra_info.transform``, as the ``verl`` benchmark loader reads them.
    """
    extra = plain(dict(extra_info or {}))
    item = Row(_ROW, extra.get("index"), extra, prefix="extra_info.")
    answers = extra.get("answers")
    if not answers and reward_model and reward_model.get("ground_truth") is not None:
        answers = plain(reward_model["ground_truth"])
    if not answers and extra.get("answer") is not None:
        answers = extra["answer"]
    expected = extra.get("expected_ops")
    if expected is None:
        _, expected = transform_fields(item, "transform", extra.get("transform"))
    box_field = "bbox" if "bbox" in extra else "bbox_2d"
    dataset, index = extra.get("dataset_name"), extra.get("index")
    task_id = extra.get("task_id") or (f"{dataset}-{index}" if dataset and index is not None else index)
    row = {
        "question": extra.get("question"),
        "task_id": None if task_id is None else str(task_id),
        "answers": answers if isinstance(answers, list) else [answers] if answers is not None else [],
        "bboxes": [list(box) for box in parse_boxes(item, box_field, extra.get(box_field))],
        "expected_ops": list(expected or []),
        "source": data_source or "",
        "prompt": [_text_message(message) for message in raw_prompt or []],
    }
    task = task_of(row, images)
    # Rows of CodeVision-RL and MVToolBench are scored by CodeVision's answer rule whatever their source
    # (as the ``verl`` benchmark loader scores them); codevision's own exports name their source's rule.
    scoring = extra.get("scoring") or (None if "source_task" in extra else "codevision")
    if scoring:
        task.metadata["scoring"] = str(scoring)
    return task


def _text_message(message: Mapping[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {"role": message.get("role"), "content": content.replace("<image>", "")}
    parts = [part for part in content or [] if part.get("type") == "text"]
    return {"role": message.get("role"), "content": parts}


def episode_fields(task: Task, trajectory: Trajectory) -> dict[str, Any]:
    """What the agent loop adds to ``extra_fields``: the task and the trajectory as JSON data.

    The sampled ids of each turn are left out (they are the batch's ``responses``), and so are the
    pixels; everything the rewards read (turns, outcomes with their op traces, image sizes and
    lineage, answer, stop reason, error) is kept.
    """
    return {
        TASK_FIELD: task.model_dump(mode="json"),
        TRAJECTORY_FIELD: trajectory.model_dump(mode="json", exclude={"turns": {"__all__": {"response_token_ids"}}}),
    }


def episode_of(extra_info: Mapping[str, Any] | None) -> tuple[Task, Trajectory]:
    """The task and trajectory a reward function receives from the codevision agent loop."""
    extra = extra_info or {}
    missing = [key for key in (TASK_FIELD, TRAJECTORY_FIELD) if extra.get(key) is None]
    if missing:
        agent = extra.get("agent_name")
        raise MissingEpisodeError(
            f"extra_info has no {' and no '.join(repr(key) for key in missing)}: this rollout was not made by the "
            f"codevision agent loop{f' (the row names agent {agent!r})' if agent else ''}, or its extra_fields did "
            "not reach the reward. The codevision reward reads the trajectory that loop records: give the rows "
            "agent_name 'codevision_agent' (as `codevision data export rl --format verl` does), set "
            "actor_rollout_ref.rollout.agent.agent_loop_config_path to the path `python -m "
            "codevision.integrations.verl` prints, and let verl stream rewards during the rollout (it does unless a "
            "reward model shares the actor's GPUs: verl 0.9.1 passes extra_fields to the reward only then)"
        )
    try:
        task = Task.model_validate(plain(extra[TASK_FIELD]))
        trajectory = Trajectory.model_validate(plain(extra[TRAJECTORY_FIELD]))
    except ValueError as exc:
        raise ValueError(f"extra_info's codevision episode cannot be read: {exc}") from exc
    return task, trajectory
