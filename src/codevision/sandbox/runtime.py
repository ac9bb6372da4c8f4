"""The notebook-like interpreter that runs inside a session process.

It owns the session's global namespace, executes one code cell per request, captures
what the cell printed (at the file-descriptor level, so C libraries and subprocesses are
captured too), the images it displayed and the ops it executed, and answers with one
frame. Nothing here is a security measure: by the time this runs the process is already
confined by :mod:`codevision.sandbox.confine`.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import linecache
import math
import os
import signal
import socket
import sys
import time
import traceback
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from codevision.sandbox import wire
from codevision.sandbox.config import SandboxConfig
from codevision.sandbox.results import MAX_ERROR_CHARS, MAX_ERROR_TYPE_CHARS, cap_text, cap_warnings
from codevision.sandbox.tracing import CELL_PREFIX, TRACER, cell_filename

TIMEOUT_REPEAT = 0.05
_STREAM_FDS = MappingProxyType({"stdout": 1, "stderr": 2})


class RunTimeout(BaseException):
    """Raised inside model code when its time is up; a BaseException so ``except Exception`` cannot eat it."""


class _OutputCapture:
    """stdout/stderr of the session, kept in memory files so every writer is captured in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.fds: dict[str, int] = {}
        self.streams = [
            io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True
            )
            for fd in _STREAM_FDS.values()
        ]
        self.reset_streams()

    def reset_streams(self) -> None:
        """Re-attach fds 1/2 and ``sys.stdout``/``sys.stderr`` to the capture, whatever the last cell did."""
        for name, target in _STREAM_FDS.items():
            fd = self.fds.get(name)
            try:
                if fd is None or os.readlink(f"/proc/self/fd/{fd}") != f"/memfd:codevision-{name} (deleted)":
                    raise OSError
            except OSError:
                fd = self.fds[name] = os.memfd_create(f"codevision-{name}", os.MFD_CLOEXEC)
            os.dup2(fd, target, inheritable=True)
        sys.stdout, sys.stderr = self.streams

    def collect(self, name: str) -> tuple[str, int]:
        """Return (text, omitted byte count) and empty the buffer for the next run."""
        for stream in (sys.stdout, sys.stderr, *self.streams):
            with contextlib.suppress(Exception):
                stream.flush()
        fd = self.fds[name]
        try:
            size = os.fstat(fd).st_size
        except OSError:
            return "", 0
        if size <= self.limit:
            data, omitted = os.pread(fd, size, 0), 0
        else:
            head_len = self.limit * 2 // 3
            tail_len = self.limit - head_len
            omitted = size - head_len - tail_len
            marker = f"\n[... {omitted} bytes of output omitted ...]\n".encode()
            data = os.pread(fd, head_len, 0) + marker + os.pread(fd, tail_len, size - tail_len)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        return data.decode("utf-8", errors="replace"), omitted


def format_exception(exc: BaseException) -> str:
    """A traceback that shows only frames of model code, with the model's own line numbers."""
    if isinstance(exc, SyntaxError) and (exc.filename or "").startswith(CELL_PREFIX):
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)]
    lines = []
    if frames:
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_list(frames))
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines).rstrip()


class Session:
    """State of one trajectory: namespace, captured output and the images displayed by a run."""

    def __init__(self, sock: socket.socket, config: SandboxConfig, inputs: list[Image.Image]) -> None:
        self.sock = sock
        self.config = config
        self.capture = _OutputCapture(config.max_output_bytes)
        self.outputs: list[tuple[dict[str, Any], bytes]] = []
        self.warnings: list[str] = []
        self.run_index = 0
        for index, img in enumerate(inputs):
            TRACER.register_input(img, index)
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "image": inputs[0] if inputs else None,
            "images": list(inputs),
            "np": np,
            "cv2": cv2,
            "PIL": PIL,
            "Image": Image,
            "ImageOps": ImageOps,
            "ImageEnhance": ImageEnhance,
            "ImageFilter": ImageFilter,
            "ImageDraw": ImageDraw,
            "math": math,
            "display": self.display,
        }
        self.timed_out = False
        # Every image of the trajectory as the host knows it: the inputs, then each returned image.
        # Returned images are kept as the raw frames already sent, and rebuilt only if asked for.
        self.trajectory_images: list[Image.Image | tuple[dict[str, Any], bytes]] = list(inputs)
        _hook_viewers(self)
        sys.unraisablehook = _ignore_interrupts

    # ------------------------------------------------------------------ display
    def display(self, *objects: Any) -> None:
        """Return images to the caller: PIL images, NumPy arrays, matplotlib figures (or lists of them)."""
        for obj in objects:
            if isinstance(obj, (list, tuple)):
                self.display(*obj)
            elif isinstance(obj, Image.Image):
                self._emit(obj, obj)
            elif isinstance(obj, np.ndarray):
                converted = self._array_to_image(obj)
                if converted is not None:
                    self._emit(converted, obj)
            elif _is_figure(obj):
                self._emit(_render_figure(obj), None)
            else:
                print(repr(obj))

    def _array_to_image(self, array: np.ndarray) -> Image.Image | None:
        a = np.asarray(array).view(np.ndarray)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
            self.warnings.append(f"display() skipped an array of shape {tuple(a.shape)}: expected HxW, HxWx3 or HxWx4")
            return None
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        elif a.dtype != np.uint8:
            if a.size == 0:
                a = a.astype(np.uint8)
            else:
                a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
                lo, hi = float(a.min()), float(a.max())
                if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
                    a = a * 255.0
                elif lo < 0.0 or hi > 255.0:
                    self.warnings.append(f"display() rescaled a {array.dtype} array from [{lo:g}, {hi:g}] to [0, 255]")
                    a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
                a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(a))

    def _emit(self, img: Image.Image, source: Any) -> None:
        width, height = img.size
        if width == 0 or height == 0:
            self.warnings.append(f"display() skipped an empty image ({width}x{height})")
            return
        if max(width, height) / min(width, height) > self.config.max_aspect_ratio:
            self.warnings.append(
                f"display() skipped a {width}x{height} image: aspect ratio above {self.config.max_aspect_ratio:g}"
            )
            return
        if len(self.outputs) >= self.config.max_images_per_run:
            self.warnings.append(f"display() skipped an image: at most {self.config.max_images_per_run} images per run")
            return
        img = wire.to_wire_mode(img if img.mode != "1" else img.convert("L"))
        budget = self.config.max_image_pixels
        if width * height > budget:
            scale = math.sqrt(budget / (width * height))
            new_size = (max(1, int(width * scale)), max(1, int(height * scale)))
            img = img.resize(new_size, Image.Resampling.BICUBIC)
            self.warnings.append(
                f"display() downscaled a {width}x{height} image to {new_size[0]}x{new_size[1]} (pixel budget {budget})"
            )
        meta, data = wire.encode_image(img)
        self.trajectory_images.append((meta, data))
        meta["source_size"] = [width, height]
        # Where in the op log the image was shown: later ops (an in-place change) are not part of it.
        meta["trace_at"] = len(TRACER.ops)
        if source is not None:
            ref = TRACER.ref(source)
            meta["id"], meta["origin"] = ref["id"], ref["origin"]
        self.outputs.append((meta, data))

    # ------------------------------------------------------------------ execution
    def _on_alarm(self, signum: int, frame: Any) -> None:
        """Interrupt model code; the harness's own frames (after the cell returned) are left alone.

        Where Python discards the exception (``__del__``, weakref callbacks, fork hooks), the
        cell must still not go on: a trace function raises again at the next line of model code.
        """
        self.timed_out = True
        if frame is None or frame.f_code.co_filename == __file__:
            return
        walker = frame
        while walker is not None:
            walker.f_trace = _interrupt_model_line
            walker = walker.f_back
        sys.settrace(_interrupt_model_line)
        raise RunTimeout()

    def run(
        self, code: str, timeout: float, bases: list[dict[str, int]] | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Execute one cell; ``bases`` names the trajectory images the run starts from by their trace ids."""
        self.run_index += 1
        self.outputs = []
        self.warnings = []
        TRACER.start_run(self.run_index)
        self.capture.reset_streams()
        filename = cell_filename(self.run_index)
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        status, error, error_type = "ok", None, None
        started, cpu_started = time.monotonic(), time.process_time()
        self.timed_out = False
        signal.signal(signal.SIGALRM, self._on_alarm)
        try:
            compiled = compile(code, filename, "exec", dont_inherit=True)
            # The alarm repeats: an interrupt swallowed where Python discards exceptions (a
            # ``__del__``, a weakref callback, a fork hook) is raised again shortly after.
            signal.setitimer(signal.ITIMER_REAL, timeout, TIMEOUT_REPEAT)
            try:
                exec(compiled, self.namespace)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                sys.settrace(None)
        except RunTimeout:
            pass
        except BaseException as exc:
            status, error_type, error = "error", type(exc).__name__, format_exception(exc)
            if isinstance(exc, SystemExit):
                error += "\n(exiting is not allowed here; the session continues)"
        if self.timed_out:
            status, error_type = "timeout", "TimeoutError"
            error = (
                f"TimeoutError: the code ran longer than {timeout:g} s and was interrupted; "
                "variables defined before the interruption are kept"
            )
        duration = time.monotonic() - started
        stdout, stdout_omitted = self.capture.collect("stdout")
        stderr, stderr_omitted = self.capture.collect("stderr")
        if TRACER.problems:
            self.warnings.append("op trace may be incomplete: " + "; ".join(TRACER.problems[:3]))
        # Every text field is capped here and again by the host: model code controls them all.
        if error is not None:
            error = cap_text(error, MAX_ERROR_CHARS)
        if error_type is not None:
            error_type = cap_text(error_type, MAX_ERROR_TYPE_CHARS)
        header = {
            "type": "result",
            "status": status,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_omitted": stdout_omitted,
            "stderr_omitted": stderr_omitted,
            "error": error,
            "error_type": error_type,
            "ops": TRACER.ops,
            "trace_problems": list(TRACER.problems),
            "bases": bases or [],
            "images": [meta for meta, _ in self.outputs],
            "warnings": cap_warnings(_texts(self.warnings)),
            "duration": duration,
            "cpu_seconds": time.process_time() - cpu_started,
        }
        return header, [data for _, data in self.outputs]

    def _trajectory_image(self, index: int) -> Image.Image:
        """A returned image rebuilt from the pixels that were sent: a new image (it may have been
        downscaled on the way), which the run's ``bases`` tie to its trajectory index."""
        entry = self.trajectory_images[index]
        if isinstance(entry, tuple):
            meta, data = entry
            entry = self.trajectory_images[index] = wire.decode_image(meta, data)
            TRACER.fresh(entry, meta.get("origin"))
        return entry

    def _refuse_image_index(self, index: object) -> dict[str, Any]:
        count = len(self.trajectory_images)
        message = (
            f"IndexError: image_index {index!r} does not exist; this trajectory has {count} images "
            f"(0 to {count - 1}: the inputs, then each image returned so far)"
        )
        return {
            "type": "result", "status": "error", "error": message, "error_type": "IndexError", "ops": [],
            "images": [], "warnings": [], "stdout": "", "stderr": "", "duration": 0.0, "cpu_seconds": 0.0,
        }  # fmt: skip

    def serve(self) -> None:
        """Answer run requests until the host closes the connection or asks us to stop."""
        while True:
            try:
                header, _ = wire.recv_frame(self.sock, limits=wire.FROM_HOST)
            except wire.FrameError:
                return
            kind = header.get("type")
            if kind == "close":
                return
            if kind != "run":
                wire.send_frame(self.sock, {"type": "error", "message": f"unknown request {kind!r}"})
                continue
            timeout = float(header.get("timeout") or self.config.timeout)
            index = header.get("image_index")
            if index is None or (isinstance(index, int) and 0 <= index < len(self.trajectory_images)):
                bases = []
                if index is not None:
                    selected = self.namespace["image"] = self._trajectory_image(index)
                    bases.append({"id": TRACER.ref(selected)["id"], "index": index})
                result, buffers = self.run(str(header.get("code", "")), timeout, bases)
            else:
                result, buffers = self._refuse_image_index(index), []
            result["seq"] = header.get("seq")
            try:
                wire.send_frame(self.sock, result, buffers)
            except OSError:
                return


def _texts(values: Any) -> list[str]:
    """The warnings as strings, whatever model code put in their place."""
    if not isinstance(values, list):
        return [f"the warnings list was replaced by a {type(values).__name__}"]
    return [value if isinstance(value, str) else f"a {type(value).__name__} in the warnings" for value in values]


def _interrupt_model_line(frame: Any, event: str, arg: Any) -> Any:
    if event == "line" and frame.f_code.co_filename.startswith(CELL_PREFIX):
        raise RunTimeout()
    return _interrupt_model_line


def _ignore_interrupts(unraisable: Any) -> None:
    """Interrupts raised where Python cannot propagate them are expected; anything else is reported."""
    if not isinstance(unraisable.exc_value, RunTimeout):
        sys.__unraisablehook__(unraisable)


def _is_figure(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("matplotlib.figure")


def _render_figure(fig: Any) -> Image.Image:
    fig.canvas.draw()
    rgba = np.array(fig.canvas.buffer_rgba()).view(np.ndarray)
    return Image.fromarray(rgba, "RGBA").convert("RGB")


def _hook_viewers(session: Session) -> None:
    """Route ``Image.show()`` and ``plt.show()`` to ``display`` instead of external viewers."""

    def show_image(self: Image.Image, title: str | None = None) -> None:
        session.display(self)

    Image.Image.show = show_image  # type: ignore[method-assign]
    if "matplotlib.pyplot" in sys.modules:
        plt = sys.modules["matplotlib.pyplot"]

        def show_figures(*args: Any, **kwargs: Any) -> None:
            for number in plt.get_fignums():
                session.display(plt.figure(number))
            plt.close("all")

        plt.show = show_figures


def receive_inputs(sock: socket.socket) -> list[Image.Image] | None:
    """Wait for the session's input images; None when the host went away or sent something else."""
    try:
        header, buffers = wire.recv_frame(sock, limits=wire.FROM_HOST)
    except wire.FrameError:
        return None
    metas = header.get("images") or []
    if header.get("type") != "init" or len(metas) != len(buffers):
        return None
    return [wire.decode_image(meta, data) for meta, data in zip(metas, buffers, strict=True)]


def session_main(sock: socket.socket, config: SandboxConfig) -> None:
    """Entry point of a confined session process: receive inputs, then serve runs."""
    inputs = receive_inputs(sock)
    if inputs is None:
        return
    session = Session(sock, config, inputs)
    wire.send_frame(sock, {"type": "ready", "pid": os.getpid()})
    session.serve()
