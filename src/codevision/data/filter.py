"""RL data selection: keep the items a model solves sometimes, neither always nor never.

GRPO learns only from groups whose rewards differ: an item the model always solves, or never
does, gives every rollout the same accuracy and teaches nothing while costing a full group of
rollouts. CodeVision filters its RL set this way before training. Each candidate item is run
``runs`` times through the agent loop with the model to be trained (any backend). Its pass rate is
the share of runs scored correct. Items whose rate lies strictly inside ``(low, high)`` are kept.

The runs are an evaluation run (``results.jsonl``, one trajectory per run, resumable with the same
folder), so a filter interrupted after hours continues where it stopped, and its trajectories can
be viewed and re-scored like any evaluation's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codevision.eval.runner import EvalItem

#: Separates an item's key from the number of one of its runs in the run's key.
RUN_SEPARATOR = "#run"


def repeated(items: Iterable[EvalItem], runs: int) -> list[EvalItem]:
    """Each item ``runs`` times, under keys of their own (``<key>#run<k>``), building the same task."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    return [
        EvalItem(item.entry, item.transform, base_id=f"{item.key}{RUN_SEPARATOR}{number}", build=item.build)
        for item in items
        for number in range(runs)
    ]


@dataclass
class Selection:
    """Each item's pass rate, and which items were kept, dropped or left undecided."""

    rates: dict[str, float] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    too_easy: list[str] = field(default_factory=list)
    too_hard: list[str] = field(default_factory=list)
    #: Items with a run that failed (the model, the sandbox or the judge, not the answer): rerun them.
    undecided: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "items": len(self.rates) + len(self.undecided),
            "kept": len(self.kept),
            "too_easy": len(self.too_easy),
            "too_hard": len(self.too_hard),
            "undecided": len(self.undecided),
        }


def select(
    items: Sequence[EvalItem], records: Mapping[str, Mapping[str, Any]], runs: int, *, low: float, high: float
) -> Selection:
    """Pass rates from the run records; an item is kept when ``low < rate < high``."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"the pass-rate band must satisfy 0 <= low < high <= 1, not ({low}, {high})")
    selection = Selection()
    for item in items:
        verdicts = [records.get(key, {}).get("correct") for key in _run_keys(item, runs)]
        if any(verdict is None for verdict in verdicts):
            selection.undecided.append(item.key)
            continue
        rate = sum(bool(verdict) for verdict in verdicts) / runs
        selection.rates[item.key] = rate
        if rate >= high:
            selection.too_easy.append(item.key)
        elif rate <= low:
            selection.too_hard.append(item.key)
        else:
            selection.kept.append(item.key)
    return selection


def _run_keys(item: EvalItem, runs: int) -> list[str]:
    return [run.key for run in repeated([item], runs)]


def add_pass_rates(path: str, keys: Sequence[str], rates: Mapping[str, float]) -> None:
    """Add a ``pass_rate`` column to the RL parquet file just written for ``keys`` (its rows, in order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if table.num_rows != len(keys):
        raise ValueError(f"{path} has {table.num_rows} rows for {len(keys)} kept items")
    table = table.append_column("pass_rate", pa.array([rates[key] for key in keys], type=pa.float64()))
    metadata = dict(table.schema.metadata or {})
    # A datasets-written file lists its features; the new column must be among them to load back.
    if b"huggingface" in metadata:
        info = json.loads(metadata[b"huggingface"])
        info.setdefault("info", {}).setdefault("features", {})["pass_rate"] = {"dtype": "float64", "_type": "Value"}
        metadata[b"huggingface"] = json.dumps(info).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)
