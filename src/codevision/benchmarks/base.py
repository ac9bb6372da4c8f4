"""What every loader shares: the lazy benchmark, row errors, field checks and the image cache.

A benchmark file is read once to find its rows, and each row becomes a :class:`Task` only when the
iteration reaches it, so a large file never becomes a list of decoded images. A malformed row
stops the iteration with a :class:`RowError` that names the file, the row, the field and what was
expected; with ``on_error="skip"`` the row is left out instead and its error is kept in
:attr:`Benchmark.skipped`, so nothing vanishes without a trace.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import io
import json
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import ValidationError

from codevision.task import BBox, Task

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INTEGER = re.compile(r"-?[0-9]+")


class BenchmarkError(Exception):
    """A benchmark cannot be read at all: a bad spec, a missing or unreadable annotation file."""


class MissingFileError(BenchmarkError, FileNotFoundError):
    """A file or folder the benchmark layout requires does not exist."""


class RowError(BenchmarkError, ValueError):
    """One row is malformed. Carries where (file, row, id) and what (field, problem) for reports."""

    def __init__(
        self,
        file: Path,
        row: int | str | None,
        field: str | None,
        problem: str,
        *,
        task_id: str | None = None,
        row_label: str = "row",
    ) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.problem = problem
        self.task_id = task_id
        where = [str(file)]
        if row is not None:
            where.append(f"{row_label} {row}")
        if task_id is not None and str(task_id) != str(row):
            where.append(f"id {task_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {problem}")


def describe(value: Any) -> str:
    """A short description of a bad value for error messages: its type and the start of its repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MissingFileError(
            f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a folder"
        )
    return path


def load_json(file: Path, kind: type, what: str) -> Any:
    """A whole JSON annotation file, checked to be a list or an object; errors name the file and the spot."""
    require_file(file, what)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BenchmarkError(f"{what} {file} is not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"{what} {file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, kind):
        expected = "a list of items" if kind is list else "an object of items keyed by id"
        raise BenchmarkError(f"{what} {file}: expected {expected} at the top level, got {type(data).__name__}")
    return data


def jsonable(value: Any) -> bool:
    """Whether a value can go into task metadata as it is (metadata is saved as JSON with results)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and jsonable(v) for k, v in value.items())
    return False


class Row:
    """One record of a benchmark file with typed accessors whose errors say where and what is expected."""

    def __init__(
        self,
        file: Path,
        index: int | str | None,
        data: Any,
        task_id: str | None = None,
        *,
        prefix: str = "",
        row_label: str = "row",
    ) -> None:
        self.file = file
        self.index = index
        self.task_id = task_id
        self.prefix = prefix
        self.row_label = row_label
        if not isinstance(data, Mapping):
            raise self.error(None, f"expected an object with named fields, got {describe(data)}")
        self.data: Mapping[str, Any] = data

    def error(self, field: str | None, problem: str) -> RowError:
        name = f"{self.prefix}{field}" if field is not None else self.prefix.rstrip(".") or None
        return RowError(self.file, self.index, name, problem, task_id=self.task_id, row_label=self.row_label)

    def child(self, field: str) -> Row:
        """A nested object (``extra_info``, ``reward_model``) whose errors name ``field.key``; absent is empty."""
        value = self.data.get(field)
        data = {} if _is_missing(value) else value
        return Row(self.file, self.index, data, self.task_id, prefix=f"{field}.", row_label=self.row_label)

    def has(self, field: str) -> bool:
        return field in self.data and not _is_missing(self.data[field])

    def raw(self, field: str, expected: str) -> Any:
        """The field's value; a missing field (or a null or NaN) is an error saying what was expected."""
        if field not in self.data:
            raise self.error(field, f"missing; expected {expected}")
        value = self.data[field]
        if _is_missing(value):
            raise self.error(field, f"is empty; expected {expected}")
        return value

    def text(self, field: str, *, allow_empty: bool = False) -> str:
        """A string field. Numbers are not accepted as text: a number where text belongs is a data error."""
        expected = "a string" if allow_empty else "a non-empty string"
        value = self.raw(field, expected)
        if not isinstance(value, str):
            raise self.error(field, f"expected {expected}, got {describe(value)}")
        if not allow_empty and not value.strip():
            raise self.error(field, f"is blank; expected {expected}")
        return value

    def optional_text(self, field: str) -> str | None:
        return self.text(field) if self.has(field) else None

    def texts(self, field: str, *, numbers: bool = False) -> list[str]:
        """A string or a non-empty list of strings (answer fields come in both shapes)."""
        expected = "a string or a non-empty list of strings" + (" or numbers" if numbers else "")
        value = self.raw(field, expected)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise self.error(field, f"is an empty list; expected {expected}")
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif numbers and isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(format_number(item))
            else:
                raise self.error(field, f"expected {expected}, got {describe(value)}")
        return out

    def integer(self, field: str) -> int:
        """An integer field; integral floats (a parquet column with nulls) and digit strings (TSV) count."""
        value = self.raw(field, "an integer")
        number = as_int(value)
        if number is None:
            raise self.error(field, f"expected an integer, got {describe(value)}")
        return number

    def optional_integer(self, field: str) -> int | None:
        return self.integer(field) if self.has(field) else None

    def string_list(self, field: str, *, min_len: int = 0) -> list[str]:
        expected = "a list of strings" + (f" with at least {min_len} items" if min_len else "")
        value = self.raw(field, expected)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value) or len(value) < min_len:
            raise self.error(field, f"expected {expected}, got {describe(value)}")
        return list(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def format_number(value: float) -> str:
    """A number as answer text: integral floats without the trailing ``.0`` (a column of mixed numbers)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_box(row: Row, field: str, value: Any, *, xywh: bool = False) -> BBox:
    """Four finite numbers as ``(x0, y0, x1, y1)``; ``xywh`` boxes (V*) are converted to corners."""
    expected = "4 numbers [x, y, width, height]" if xywh else "4 numbers [x0, y0, x1, y1]"
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise row.error(field, f"expected {expected}, got {describe(value)}")
    a, b, c, d = (float(v) for v in value)
    box = (a, b, a + c, b + d) if xywh else (a, b, c, d)
    if box[2] < box[0] or box[3] < box[1]:
        raise row.error(field, f"expected {expected} with a non-negative size, got {describe(value)}")
    return box


def parse_boxes(row: Row, field: str, value: Any, *, xywh: bool = False) -> list[BBox]:
    """One box or a list of boxes (both shapes occur in the wild); None or an empty list means no box."""
    if _is_missing(value) or (isinstance(value, (list, tuple)) and len(value) == 0):
        return []
    if isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) for v in value):
        return [parse_box(row, field, v, xywh=xywh) for v in value]
    return [parse_box(row, field, value, xywh=xywh)]


def format_choices(question: str, choices: Sequence[str]) -> str:
    """The question as the model sees it: the options lettered (A), (B), ... and how to answer.

    Letters are what the multiple-choice scorers read back, so the text and the letters are kept in
    one place: ``metadata["choices"][i]`` is option ``LETTERS[i]``.
    """
    lines = [question.rstrip(), "Options:"]
    lines += [f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices)]
    lines.append("Answer with the option's letter.")
    return "\n".join(lines)


def default_cache_dir() -> Path:
    """Where images embedded in data files are written: ``$CODEVISION_CACHE/images`` or the user cache."""
    if os.environ.get("CODEVISION_CACHE"):
        return Path(os.environ["CODEVISION_CACHE"]) / "images"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codevision" / "images"


_MAX_PATH = 1024
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


class ImageStore:
    """Writes images embedded in data files (bytes, base64) to files named by their content hash.

    Tasks refer to images by path, and the agent opens them only when it runs the task, so a parquet
    of 40k training images or a 2 GB TSV of 8K photos never sits decoded in memory. Naming files by
    content makes the cache safe to share between benchmarks and runs (the same bytes always land
    in the same file, and a file is written once, atomically) and stale entries impossible.
    Only the image header is parsed here, to reject bytes that are not an image.
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def put(self, data: bytes) -> str:
        """The absolute path of a file holding ``data``; ``ValueError`` if the bytes are not an image."""
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"the bytes are not an image PIL can read ({exc})") from None
        digest = hashlib.sha256(data).hexdigest()
        path = self.cache_dir / digest[:2] / f"{digest[:40]}{_EXTENSIONS.get(fmt, '.' + fmt.lower())}"
        if not (path.is_file() and path.stat().st_size == len(data)):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")  # writers may race
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)


def decode_base64(row: Row, field: str, text: str) -> bytes:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise row.error(field, f"is not valid base64 ({exc}); expected a base64-encoded image") from None


def store_bytes(row: Row, field: str, data: bytes, store: ImageStore) -> str:
    try:
        return store.put(data)
    except ValueError as exc:
        raise row.error(field, f"{exc}; expected an encoded image (JPEG, PNG, ...)") from None


def image_reference(row: Row, field: str, value: Any, base_dir: Path, store: ImageStore) -> str:
    """A task image path from any of the shapes data files use for an image.

    Bytes, ``{"bytes": ..., "path": ...}`` structs (Hugging Face and verl), base64 strings and
    data URIs are written to the image cache; a path is kept as written (relative to ``base_dir``)
    after checking that the file exists.
    """
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            value = value["bytes"]
        elif isinstance(value.get("path"), str) and value["path"]:
            value = value["path"]
        else:
            raise row.error(field, f"expected image bytes or a path in an image struct, got {describe(value)}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return store_bytes(row, field, bytes(value), store)
    if not isinstance(value, str) or not value.strip():
        raise row.error(field, f"expected an image (a path, bytes or base64 text), got {describe(value)}")
    if value.startswith("data:"):
        return store_bytes(row, field, decode_base64(row, field, value), store)
    if len(value) <= _MAX_PATH and (Path(value).suffix.lower() in _IMAGE_SUFFIXES or _is_file(base_dir / value)):
        return check_image_file(row, field, value, base_dir)
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise row.error(
            field, f"{value[:60]!r} is neither an image file under {base_dir} nor base64; expected a path or an image"
        ) from None
    return store_bytes(row, field, data, store)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a long base64 string taken for a path: name too long
        return False


#: Whether the benchmark being read checks that image files exist (see :attr:`Benchmark.check_image_files`).
_CHECK_IMAGE_FILES = contextvars.ContextVar("check_image_files", default=True)


def check_image_file(row: Row, field: str, name: str, base_dir: Path) -> str:
    """``name`` unchanged if it names an existing file (relative to ``base_dir``); an error otherwise,
    unless the benchmark leaves that to whoever reads the images."""
    path = Path(name) if Path(name).is_absolute() else base_dir / name
    if _CHECK_IMAGE_FILES.get() and not path.is_file():
        raise row.error(field, f"image file {path} does not exist; expected the image at that path")
    return name


class Benchmark(ABC):
    """A benchmark read from local files: a lazy, re-iterable sequence of :class:`Task`.

    Subclasses list raw records (:meth:`_records`) and turn one into a task (:meth:`_task`); this class
    handles errors, duplicate ids and the skip log. Task image paths are relative to
    :attr:`base_dir` (pass it to the agent as ``base_dir``); images that were embedded in a data
    file are materialised in the image cache and given as absolute paths.
    """

    #: Registry name (``ocrbench``, ``vstar``, ...).
    name: str = ""
    #: How error messages count records: "row" (from 0), or "line" (from 1) for line-based files.
    row_label: str = "row"
    #: Whether a row naming an image file that does not exist is malformed. Evaluation turns this off:
    #: it reads each item's images when the item runs and records a missing one as that item's failure
    #: (or skip), so one lost file does not stop the benchmark.
    check_image_files: bool = True

    def __init__(self, path: Path | None, *, base_dir: Path | None, source: str, on_error: OnError) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
        self.path = path
        self.base_dir = base_dir
        self.source = source
        self.on_error: OnError = on_error
        #: Rows left out by the last iteration with ``on_error="skip"``, with their reasons.
        self.skipped: list[RowError] = []

    @abstractmethod
    def _records(self) -> Iterator[tuple[Path, int | str | None, Any]]:
        """Raw records as ``(file, row, data)``; parsing that can fail per row belongs in :meth:`_task`."""

    @abstractmethod
    def _task(self, file: Path, row: int | str | None, data: Any) -> Task:
        """One record as a task; malformed data raises :class:`RowError`."""

    def _count(self) -> int | None:
        """The number of records when it is known without reading them all, else None."""
        return None

    def __iter__(self) -> Iterator[Task]:
        self.skipped = []
        seen: dict[str, tuple[Path, int | str | None]] = {}
        for file, row, data in self._records():
            checking = _CHECK_IMAGE_FILES.set(self.check_image_files)
            try:
                task = self._build(file, row, data)
                if task.id in seen:
                    first_file, first_row = seen[task.id]
                    first = f"{self.row_label} {first_row}" + (f" of {first_file}" if first_file != file else "")
                    raise RowError(
                        file,
                        row,
                        "id",
                        f"duplicate id {task.id!r} (first at {first}); expected unique ids",
                        task_id=task.id,
                        row_label=self.row_label,
                    )
            except RowError as exc:
                if self.on_error == "raise":
                    raise
                self.skipped.append(exc)
                continue
            finally:
                _CHECK_IMAGE_FILES.reset(checking)
            seen[task.id] = (file, row)
            yield task
        if self.skipped:
            logger.warning("%s: skipped %d malformed row(s); first: %s", self.path, len(self.skipped), self.skipped[0])

    def _build(self, file: Path, row: int | str | None, data: Any) -> Task:
        try:
            return self._task(file, row, data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            problem = f"{first['msg']}; got {describe(first.get('input'))}"
            raise RowError(file, row, field, problem, row_label=self.row_label) from None

    def __len__(self) -> int:
        count = self._count()
        if count is None:
            raise TypeError(
                f"{self.name} benchmark {self.path}: the number of rows is unknown until it is read; iterate"
            )
        return count

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.path}>"
