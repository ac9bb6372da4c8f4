"""Which evaluation run a trajectory belongs to, and under which transform it was run.

``codevision eval`` writes ``<run>/items/<item folder>/trajectory.json`` and, per item, a line of
``<run>/results.jsonl`` with the item's key and transform: that line is the reliable record of the
transform (a trajectory only carries one in its metadata when whoever wrote it put it there). A run
may still be running while the page is built, so its files are only ever read here, never
repaired, and a line not yet whole is skipped. Trajectories outside a run have no run and, unless
their metadata says otherwise, no known transform.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codevision.eval.store import CONFIG_FILE, RESULTS_FILE, item_folder
from codevision.trajectory import Trajectory

ITEMS_FOLDER = "items"


@dataclass(frozen=True)
class Placement:
    """The run folder holding a trajectory (``None`` outside a run) and its transform (``""`` if unknown)."""

    run: Path | None
    transform: str


def _results(run: Path) -> dict[str, dict[str, Any]]:
    """The result lines of a run by item folder; a later line for the same item replaces an earlier one."""
    records: dict[str, dict[str, Any]] = {}
    try:
        lines = (run / RESULTS_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            records[item_folder(record["key"])] = record
    return records


class RunIndex:
    """Places trajectories in their runs, reading each run's ``results.jsonl`` once."""

    def __init__(self) -> None:
        self._runs: dict[Path, dict[str, dict[str, Any]]] = {}

    def _run_of(self, trajectory_file: Path) -> Path | None:
        items = trajectory_file.parent.parent
        run = items.parent
        if items.name != ITEMS_FOLDER or not ((run / RESULTS_FILE).is_file() or (run / CONFIG_FILE).is_file()):
            return None
        return run

    def place(self, trajectory_file: Path, trajectory: Trajectory) -> Placement:
        """Where ``trajectory`` (loaded from ``trajectory_file``) sits; the run's own record wins over metadata."""
        run = self._run_of(trajectory_file.absolute())
        transform = trajectory.metadata.get("transform")
        if run is not None:
            if run not in self._runs:
                self._runs[run] = _results(run)
            recorded = self._runs[run].get(trajectory_file.parent.name, {}).get("transform")
            transform = recorded if isinstance(recorded, str) else transform
        return Placement(run, transform if isinstance(transform, str) else "")


def run_labels(runs: Iterable[Path]) -> dict[Path, str]:
    """A short name for each run folder: its own name, or as many parent names as tell it from the others."""
    left = sorted(set(runs))
    labels: dict[Path, str] = {}
    depth = 1
    while left:
        candidates = {run: str(Path(*run.parts[-depth:])) for run in left}
        names = list(candidates.values())
        for run, candidate in candidates.items():
            if names.count(candidate) == 1 or depth >= len(run.parts):
                labels[run] = candidate
        left = [run for run in left if run not in labels]
        depth += 1
    return labels
