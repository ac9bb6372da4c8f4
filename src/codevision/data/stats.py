"""Summaries of exported datasets and trajectory folders, to check a training set before using it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from codevision.data.sft import find_trajectories
from codevision.jsonfiles import DataFileError, read_json, read_jsonl
from codevision.trajectory import Trajectory


def _text_of(row: dict[str, Any]) -> str:
    """All text of a row's messages (placeholders included), for token counts."""
    turns = row.get("conversations") or row.get("messages") or row.get("prompt") or []
    texts = []
    for turn in turns:
        content = turn.get("value", turn.get("content"))
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text") or "" for p in content if isinstance(p, dict)]
    return "\n".join([row.get("system") or "", *texts])


def _kind(row: dict[str, Any]) -> str | None:
    """The export format of a row; None for other records (a run's ``results.jsonl``, ``run.json``)."""
    if not isinstance(row, dict):
        return None
    if "conversations" in row:
        return "sharegpt"
    if "reward_model" in row:
        return "verl"
    if "prompt" in row:
        return "trl-grpo"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    return "trl-sft" if isinstance(messages[0].get("content"), list) else "swift"


def _rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one data file; :class:`~codevision.jsonfiles.DataFileError` naming it if unreadable."""
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise DataFileError(f"{path}: not a readable parquet file ({exc})") from None
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = read_json(path)
    return data if isinstance(data, list) else []


def dataset_stats(directory: str | Path, tokenizer: Any = None) -> dict[str, Any]:
    """Counts per kind and source, assistant turns, expected/used ops, image sizes and token lengths.

    Token lengths are of the text only (images not expanded) and are given when ``tokenizer`` is.
    """
    directory = Path(directory)
    kinds: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    turns: list[int] = []
    sizes: list[tuple[int, int]] = []
    tokens: list[int] = []
    texts: list[str] = []
    for file in sorted(p for p in directory.rglob("*") if p.suffix in (".parquet", ".json", ".jsonl")):
        if file.name in ("dataset_info.json", "trajectory.json"):
            continue
        for row in _rows(file):
            kind = _kind(row)
            if kind is None:  # results and configs beside trajectories are not training rows
                continue
            kinds[kind] += 1
            extra = row.get("extra_info") or {}
            sources[str(row.get("data_source") or row.get("source") or extra.get("dataset_name") or "")] += 1
            ops.update(row.get("expected_ops") or extra.get("expected_ops") or [])
            roles = [t.get("from", t.get("role")) for t in row.get("conversations") or row.get("messages") or []]
            if roles:
                turns.append(sum(r in ("gpt", "assistant") for r in roles))
            texts.append(_text_of(row))
    for path in find_trajectories([directory]):
        trajectory = Trajectory.load(path)
        kinds["trajectory"] += 1
        sources[trajectory.source] += 1
        turns.append(len(trajectory.turns))
        ops.update(op.name for turn in trajectory.turns for outcome in turn.outcomes for op in outcome.ops)
        sizes += [record.size for record in trajectory.images]
        texts.append("\n".join(m.text for m in trajectory.conversation()))
    if tokenizer is not None:
        tokens = [len(tokenizer(text)["input_ids"]) for text in texts]
    return {
        "rows": dict(kinds),
        "sources": dict(sources),
        "turns": _summary(turns),
        "ops": dict(ops.most_common()),
        "image_width": _summary([w for w, _ in sizes]),
        "image_height": _summary([h for _, h in sizes]),
        "tokens": _summary(tokens) if tokenizer is not None else None,
    }


def _summary(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "mean": round(sum(values) / len(values), 2), "max": max(values)}
