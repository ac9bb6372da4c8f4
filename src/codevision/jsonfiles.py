"""JSON and JSON-lines files read with errors a person can act on: the file, the line, the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DataFileError(ValueError):
    """A JSON or JSONL file that cannot be read: the message names the file and the line."""


def read_jsonl(path: str | Path) -> list[Any]:
    """Every non-blank line of ``path`` as a JSON value."""
    path = Path(path)
    rows = []
    for number, raw in enumerate(_bytes(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise DataFileError(
                f"{path}, line {number}: not UTF-8 text (byte {exc.start + 1}); re-save it as UTF-8"
            ) from None
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "expected one JSON object per line"
            ) from None
    return rows


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``."""
    path = Path(path)
    try:
        return json.loads(_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = _bytes(path)[: exc.start].count(b"\n") + 1
        raise DataFileError(f"{path}, line {line}: not UTF-8 text; re-save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
