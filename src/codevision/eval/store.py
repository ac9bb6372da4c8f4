"""Durable results of an evaluation run: one JSON line per finished item, written as it finishes.

A run folder holds ``results.jsonl`` and one trajectory folder per item. An item's trajectory
is written (atomically) before its result line, and the line is flushed and fsynced, so after a
crash or ``kill -9`` every item is either fully recorded or will be run again on ``--resume``:
nothing is lost and nothing is counted twice. A line cut short by the crash is dropped on reopen.
An item run again (``--retry-failed``) gets a new line that supersedes its earlier one; the file is
compacted to one line per item when that run ends, and a reader keeps the last line of each key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "run.json"


def item_key(task_id: str, transform: str) -> str:
    return f"{task_id}@{transform}"


def item_folder(key: str) -> str:
    """A file-system-safe folder name for an item key (keys are unique, so are these)."""
    safe = re.sub(r"[^A-Za-z0-9._@+-]", "_", key)
    return safe if safe == key else f"{safe}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def credit(record: dict[str, Any]) -> float | None:
    """What a result line adds to an accuracy: its score's value (ANLS pays its similarity, not 1 per match),
    its verdict where a line has no valid value, ``None`` when the item was not scored."""
    if record.get("correct") is None:
        return None
    value = record.get("score")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return float(bool(record["correct"]))


class ResultStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / RESULTS_FILE
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        self.records, valid_end = parse_results(data)
        if valid_end != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(valid_end)

    @staticmethod
    def read(directory: str | Path) -> dict[str, dict[str, Any]]:
        """The records of a run folder, read only: a report or comparison built while the run is going
        must not cut the line the runner is writing."""
        path = Path(directory) / RESULTS_FILE
        return parse_results(path.read_bytes())[0] if path.exists() else {}

    def done(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.records[record["key"]] = record

    def compact(self) -> None:
        """Rewrite ``results.jsonl`` with one line per item, the latest: a retried item's earlier lines go.

        The new file is written beside the old one, fsynced and renamed over it, so a crash leaves
        either file whole."""
        with self._lock:
            temporary = self.path.with_name(self.path.name + ".compact")
            with open(temporary, "w", encoding="utf-8") as fh:
                for record in self.records.values():
                    fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, self.path)

    def write_config(self, config: dict[str, Any]) -> None:
        (self.directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))

    def read_config(self) -> dict[str, Any] | None:
        return self.config_of(self.directory)

    @staticmethod
    def config_of(directory: str | Path) -> dict[str, Any] | None:
        """The configuration a run folder was started with, without opening (or creating) its store."""
        path = Path(directory) / CONFIG_FILE
        return json.loads(path.read_text()) if path.exists() else None


def parse_results(data: bytes) -> tuple[dict[str, dict[str, Any]], int]:
    """The records in ``results.jsonl``'s bytes (the last line of each key wins) and where the whole
    lines end; a line cut short by a crash, and everything after it, is not read."""
    records: dict[str, dict[str, Any]] = {}
    valid_end = 0
    for line_end in _line_ends(data):
        try:
            record = json.loads(data[valid_end:line_end])
        except ValueError:
            break
        records[record["key"]] = record
        valid_end = line_end + 1
    return records, valid_end


def _line_ends(data: bytes) -> list[int]:
    ends = []
    start = 0
    while True:
        index = data.find(b"\n", start)
        if index < 0:
            return ends
        ends.append(index)
        start = index + 1
