"""What a code cell produced, as seen by the host; validated because the session is untrusted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from codevision.sandbox import wire

RunStatus = Literal["ok", "error", "timeout", "killed", "crashed"]

MAX_OPS_PER_RUN = 10_000
#: Reasons a run's trace may be incomplete, and the length each is cut to.
MAX_TRACE_PROBLEMS = 10
MAX_TRACE_PROBLEM_CHARS = 300
#: What one traced op may take in a result header; the tracer summarises arguments beyond it.
MAX_OP_BYTES = 1536
MAX_OP_CONTAINERS = 24
MAX_OP_ITEMS = 160
#: Caps on a result's text fields (stdout and stderr are capped by ``SandboxConfig.max_output_bytes``).
MAX_ERROR_CHARS = 16_384
MAX_ERROR_TYPE_CHARS = 200
MAX_WARNINGS = 64
MAX_WARNING_CHARS = 500


#: Characters a cut text may hold beyond its limit: the note saying how much was cut.
NOTE_ROOM = 64
_MORE_WARNINGS = re.compile(r"\[\.\.\. [0-9]{1,19} more warnings cut\]")


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut.

    A text within :data:`NOTE_ROOM` of the limit is kept whole, so the host checking a session's caps
    again keeps the session's note (the length of the original) instead of counting its own note's cut.
    """
    if len(text) <= limit + NOTE_ROOM:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} characters cut]"


def cap_warnings(warnings: list[str]) -> list[str]:
    """At most :data:`MAX_WARNINGS` warnings of at most :data:`MAX_WARNING_CHARS` each, saying what was cut;
    like :func:`cap_text`, a list already capped (its closing note included) is kept as it is."""
    kept = [cap_text(warning, MAX_WARNING_CHARS) for warning in warnings[:MAX_WARNINGS]]
    rest = warnings[MAX_WARNINGS:]
    if len(rest) == 1 and _MORE_WARNINGS.fullmatch(rest[0]):
        kept.append(rest[0])
    elif rest:
        kept.append(f"[... {len(rest)} more warnings cut]")
    return kept


def result_limits(max_output_bytes: int) -> wire.HeaderLimits:
    """The most a legitimate result header can hold: every op at its largest, every text field at its cap.

    Text is counted six times over: a non-ASCII character travels as ``\\uXXXX``.
    """
    text = (
        2 * (max_output_bytes + NOTE_ROOM)
        + MAX_ERROR_CHARS
        + MAX_ERROR_TYPE_CHARS
        + (MAX_WARNINGS + 1) * MAX_WARNING_CHARS
        + MAX_TRACE_PROBLEMS * MAX_TRACE_PROBLEM_CHARS
        + (4 + MAX_WARNINGS + 1 + MAX_TRACE_PROBLEMS) * NOTE_ROOM
    )
    return wire.HeaderLimits(
        max_bytes=MAX_OPS_PER_RUN * MAX_OP_BYTES + 6 * text + 65_536,
        max_containers=MAX_OPS_PER_RUN * MAX_OP_CONTAINERS + 4 * MAX_WARNINGS + 4096,
        max_items=MAX_OPS_PER_RUN * MAX_OP_ITEMS + 4 * MAX_WARNINGS + 16_384,
    )


class ImageRef(BaseModel):
    """An image-like object inside the session: its id, size (w, h) and the input it descends from."""

    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    size: tuple[int, int] | None = None
    origin: int | None = None


class ImageOp(BaseModel):
    """One executed image operation, in the conventions documented in :mod:`codevision.sandbox.tracing`.

    ``unchanged`` marks an op whose result held exactly its operand's pixels (no emergent bonus). It is
    written in the session, but leaving it off a no-op earns no more than a real enhancement would.
    """

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    call: str = Field("", max_length=128)
    run: int = 0
    cell: int | None = None
    line: int | None = None
    operand: ImageRef | None = None
    result: ImageRef | None = None
    unchanged: bool = False


class OutputImageInfo(BaseModel):
    """Where a returned image came from and whether it was downscaled to the pixel budget.

    ``id`` is the trace id of the object displayed (None for a figure or anything untraced),
    ``source_size`` its size before any downscaling, ``trace_at`` how many ops of the run had been
    traced when it was shown.
    """

    model_config = ConfigDict(extra="ignore")

    mode: str
    size: tuple[int, int]
    source_size: tuple[int, int] | None = None
    id: int | None = None
    origin: int | None = None
    trace_at: int | None = None


class ImageBase(BaseModel):
    """A trajectory image a run started from (``image_index``) and the trace id it had in the session."""

    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    index: int


class ResultFrame(BaseModel):
    """Schema of a run result on the wire (session to host, service to client)."""

    model_config = ConfigDict(extra="ignore")

    status: RunStatus
    stdout: str = ""
    stderr: str = ""
    stdout_omitted: int = 0
    stderr_omitted: int = 0
    error: str | None = None
    error_type: str | None = None
    ops: list[ImageOp] = Field(default_factory=list, max_length=MAX_OPS_PER_RUN)
    trace_problems: list[str] = Field(default_factory=list, max_length=MAX_TRACE_PROBLEMS)
    bases: list[ImageBase] = Field(default_factory=list, max_length=4)
    images: list[OutputImageInfo] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, max_length=10 * MAX_WARNINGS)
    duration: float = 0.0
    cpu_seconds: float = 0.0
    session_alive: bool = True


class ChildResult(ResultFrame):
    """What a session process may send: it cannot claim to have been killed or crashed."""

    type: Literal["result"]
    status: Literal["ok", "error", "timeout"]  # type: ignore[assignment]


@dataclass
class RunResult:
    """Outcome of one ``Session.run``.

    ``status``: ``ok``; ``error`` (the code raised); ``timeout`` (interrupted, the session
    lives on); ``killed`` (ignored its timeout and was killed with its session); ``crashed``
    (the session process died: segfault, ``os._exit``, CPU budget, ...). ``trace_problems`` says
    why ``ops`` may be incomplete (a limit reached, a tracer failure); ``bases`` ties the trace ids
    the run started from to trajectory images.
    """

    status: RunStatus
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    error_type: str | None = None
    images: list[Image.Image] = field(default_factory=list)
    image_info: list[OutputImageInfo] = field(default_factory=list)
    ops: list[ImageOp] = field(default_factory=list)
    trace_problems: list[str] = field(default_factory=list)
    bases: list[ImageBase] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0
    cpu_seconds: float = 0.0
    stdout_omitted: int = 0
    stderr_omitted: int = 0
    session_alive: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (images described, not embedded)."""
        return {
            "ok": self.ok,
            "status": self.status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_omitted": self.stdout_omitted,
            "stderr_omitted": self.stderr_omitted,
            "error": self.error,
            "error_type": self.error_type,
            "images": [info.model_dump() for info in self.image_info],
            "ops": [op.model_dump() for op in self.ops],
            "trace_problems": self.trace_problems,
            "bases": [base.model_dump() for base in self.bases],
            "warnings": self.warnings,
            "duration": self.duration,
            "cpu_seconds": self.cpu_seconds,
            "session_alive": self.session_alive,
        }

    def to_frame(self) -> tuple[dict[str, Any], list[bytes]]:
        """Header and raw pixel buffers for sending this result over a wire."""
        header = self.to_dict()
        buffers = []
        for index, img in enumerate(self.images):
            meta, data = wire.encode_image(img)
            header["images"][index].update(meta)
            buffers.append(data)
        return header, buffers

    @classmethod
    def from_frame(
        cls,
        header: dict[str, Any],
        buffers: list[Any],
        max_image_pixels: int | None = None,
        schema: type[ResultFrame] = ResultFrame,
    ) -> RunResult:
        """Validate a received result against ``schema``; raises ``ValueError`` or ``FrameError`` when malformed.

        Text fields beyond their caps are cut, with a note, whatever the sender did.
        """
        frame = schema.model_validate(header)
        if len(frame.images) != len(buffers):
            raise ValueError(f"result announces {len(frame.images)} images but carries {len(buffers)}")
        images = []
        for info, data in zip(frame.images, buffers, strict=True):
            if max_image_pixels is not None and info.size[0] * info.size[1] > max_image_pixels:
                raise ValueError(f"result image of {info.size[0]}x{info.size[1]} is above the pixel budget")
            images.append(wire.decode_image(info.model_dump(), data))
        return cls(
            status=frame.status,
            stdout=frame.stdout,
            stderr=frame.stderr,
            error=None if frame.error is None else cap_text(frame.error, MAX_ERROR_CHARS),
            error_type=None if frame.error_type is None else cap_text(frame.error_type, MAX_ERROR_TYPE_CHARS),
            images=images,
            image_info=frame.images,
            ops=frame.ops,
            trace_problems=[cap_text(problem, MAX_TRACE_PROBLEM_CHARS) for problem in frame.trace_problems],
            bases=frame.bases,
            warnings=cap_warnings(frame.warnings),
            duration=frame.duration,
            cpu_seconds=frame.cpu_seconds,
            stdout_omitted=frame.stdout_omitted,
            stderr_omitted=frame.stderr_omitted,
            session_alive=frame.session_alive,
        )
