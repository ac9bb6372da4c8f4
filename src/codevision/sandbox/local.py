"""The host side of the sandbox: the fork server's client, sessions and the concurrency limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from codevision.sandbox import wire
from codevision.sandbox.capacity import CapacityPool
from codevision.sandbox.config import SandboxConfig
from codevision.sandbox.errors import (
    SandboxError,
    SandboxIsolationError,
    SandboxIsolationWarning,
    SandboxStartError,
    SessionDeadError,
)
from codevision.sandbox.results import ChildResult, RunResult, cap_text, result_limits
from codevision.sandbox.session_api import SessionAPI

logger = logging.getLogger("codevision.sandbox")

START_TIMEOUT = 120.0
# A session that closed its socket is usually exiting: give it this long to report its own status.
EXIT_GRACE = 0.2
SESSION_START_TIMEOUT = 60.0

_SIGNAL_MEANINGS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic fault",
    signal.SIGABRT: "aborted",
    signal.SIGXCPU: "session CPU-time budget exhausted",
    signal.SIGKILL: "killed (a kernel limit, or the sandbox)",
    signal.SIGSYS: "forbidden system call",
}


def describe_exit(info: dict[str, Any], config: SandboxConfig) -> str:
    """Say why a session process ended, in words a user (or a model) can act on."""
    if info.get("oom_killed"):
        return f"the session ran out of memory (limit {config.memory_mb} MiB) and was killed by the kernel"
    sig = info.get("signal")
    if info.get("cpu_exhausted") or (
        sig in (signal.SIGKILL, signal.SIGXCPU) and info.get("cpu_seconds", 0) >= config.session_cpu_seconds
    ):
        return (
            f"the session's processes used up its CPU-time budget of {config.session_cpu_seconds} s "
            f"({info.get('cpu_seconds', 0):g} s) and it was killed"
        )
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"the session process died from {name} ({_SIGNAL_MEANINGS.get(sig, 'signal')})"
    code = info.get("exit_code")
    if code is not None:
        return f"the session process exited with code {code} before finishing the run"
    return "the session process disappeared"


class ForkServerClient:
    """Starts the fork server and talks to it over a SOCK_SEQPACKET control socket."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.rootfs = tempfile.mkdtemp(prefix="codevision-rootfs-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        cache = os.path.join(os.path.expanduser("~"), ".cache", "codevision", "matplotlib")
        os.makedirs(cache, exist_ok=True)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NUMEXPR_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": cache,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command = [sys.executable, "-I", "-c", _BOOTSTRAP, str(theirs.fileno()), config.model_dump_json(), self.rootfs]
        try:
            self.process = subprocess.Popen(
                command,
                env=env,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
                cwd="/",
            )
        finally:
            theirs.close()
        self.hello = self._receive(START_TIMEOUT, what="the fork server to start")
        if not self.hello.get("ok"):
            self.close()
            raise SandboxStartError(self.hello.get("error", "the fork server failed to start"))

    def _receive(self, timeout: float | None, what: str) -> dict[str, Any]:
        self.control.settimeout(timeout)
        try:
            data = self.control.recv(1 << 20)
        except TimeoutError as exc:
            raise SandboxStartError(f"timed out waiting for {what}") from exc
        if not data:
            raise SandboxStartError(
                f"the fork server exited while waiting for {what} (exit code {self.process.poll()})"
            )
        return json.loads(data)

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self) -> tuple[int, socket.socket]:
        with self._lock:
            self.control.settimeout(SESSION_START_TIMEOUT)
            self.control.send(b'{"op": "spawn"}')
            data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, 1)
            if not data:
                raise SandboxStartError("the fork server has exited")
            reply = json.loads(data)
            if not reply.get("ok") or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise SandboxStartError(f"the fork server could not start a session: {reply.get('error')}")
            return int(reply["pid"]), socket.socket(fileno=fds[0])

    def terminate(self, pid: int, grace: float = 0.0) -> dict[str, Any]:
        with self._lock:
            try:
                self.control.settimeout(30.0)
                self.control.send(json.dumps({"op": "terminate", "pid": pid, "grace": grace}).encode())
                data = self.control.recv(1 << 16)
            except OSError:
                return {"exit_code": None, "signal": None, "killed": False}
            return json.loads(data) if data else {"exit_code": None, "signal": None, "killed": False}

    def kill(self, pid: int) -> None:
        """Kill a session without waiting for it to be reaped (closing must not block other sessions)."""
        with self._lock, contextlib.suppress(OSError):
            self.control.settimeout(30.0)
            self.control.send(json.dumps({"op": "kill", "pid": pid}).encode())
            self.control.recv(1 << 16)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError):
                self.control.send(b'{"op": "shutdown"}')
            with contextlib.suppress(OSError):
                self.control.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.rootfs, ignore_errors=True)


_BOOTSTRAP = (
    "import sys\n"
    f"sys.path.append({os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))!r})\n"
    "from codevision.sandbox.zygote import main\n"
    "main()\n"
)


def as_pil_image(obj: Any, index: int, max_pixels: int | None = None) -> Image.Image:
    """Accept a PIL image or an array as input ``index``; errors name the offending input.

    The size is checked before decoding, so an oversized (or decompression-bomb) file is refused
    without its pixels ever being expanded.
    """
    if isinstance(obj, np.ndarray):
        obj = Image.fromarray(obj)
    if not isinstance(obj, Image.Image):
        raise TypeError(f"input image {index} is a {type(obj).__name__}; pass PIL images or NumPy arrays")
    if max_pixels is not None and obj.width * obj.height > max_pixels:
        raise ValueError(
            f"input image {index} has {obj.width}x{obj.height} pixels, above max_input_pixels={max_pixels}; "
            "downscale it or raise the limit"
        )
    try:
        obj.load()
    except Exception as exc:
        raise ValueError(f"input image {index} could not be decoded: {exc}") from exc
    return obj


class Session(SessionAPI):
    """One trajectory's interpreter: state persists across ``run`` calls, never across sessions.

    Use as a context manager (``with`` or ``async with``); the process is killed on exit.
    """

    @property
    def _executor(self) -> Executor:
        return self._sandbox._executor

    def __init__(self, sandbox: Sandbox, images: Sequence[Any], timeout: float | None) -> None:
        self._sandbox = sandbox
        self._images = list(images)
        self._default_timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._dead_reason: str | None = None
        self._holds_slot = False
        self.runs = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> Session:
        if self._sock is not None or self._dead_reason is not None:
            return self
        sandbox = self._sandbox
        cfg = sandbox.config
        metas, buffers = [], []
        for index, raw in enumerate(self._images):
            img = as_pil_image(raw, index, cfg.max_input_pixels)
            meta, data = wire.encode_image(img)
            metas.append(meta)
            buffers.append(data)
        self._images = []
        sandbox._session_slots.acquire()
        self._holds_slot = True
        try:
            self._pid, self._sock = sandbox._spawn()
            wire.send_frame(self._sock, {"type": "init", "images": metas}, buffers)
            header, _ = wire.recv_frame(self._sock, deadline=time.monotonic() + SESSION_START_TIMEOUT)
        except (OSError, wire.FrameError) as exc:
            reason = self._kill_and_describe()
            self.close()
            raise SandboxError(f"the session failed to start: {exc}; {reason}") from exc
        if header.get("type") != "ready":
            self._kill_and_describe()
            self.close()
            raise SandboxError(f"the session failed to start: {header.get('message', header)}")
        sandbox._register(self)
        return self

    def close(self) -> None:
        """Kill the session process and release its slot (idempotent)."""
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.close()
                self._sock = None
            if self._pid is not None:
                self._sandbox._kill(self._pid)
                self._pid = None
            if self._dead_reason is None:
                self._dead_reason = "the session was closed"
            if self._holds_slot:
                self._holds_slot = False
                self._sandbox._session_slots.release()
                self._sandbox._unregister(self)

    @property
    def alive(self) -> bool:
        return self._sock is not None and self._dead_reason is None

    @property
    def pid(self) -> int | None:
        """The session process's id as the fork server sees it: the host pid when the sandbox runs as
        root; without root the fork server has a PID namespace of its own and this is a diagnostic only."""
        return self._pid

    # ------------------------------------------------------------------ running code
    def run(self, code: str, timeout: float | None = None, image_index: int | None = None) -> RunResult:
        """Execute one code cell and return what it printed, displayed and did."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        if image_index is not None and not isinstance(image_index, int):
            raise TypeError(f"image_index must be an int, not {type(image_index).__name__}")
        if len(code) > wire.MAX_CODE_BYTES:
            raise ValueError(f"the code cell has {len(code)} characters; a run accepts at most {wire.MAX_CODE_BYTES}")
        if self._sock is None and self._dead_reason is None:
            self.open()
        sandbox = self._sandbox
        cfg = sandbox.config
        limit = float(timeout or self._default_timeout or cfg.timeout)
        with self._lock:
            if self._dead_reason is not None or self._sock is None:
                raise SessionDeadError(f"cannot run code: {self._dead_reason}; open a new session")
            sandbox._run_slots.acquire()
            started = time.monotonic()
            try:
                return self._run_locked(code, limit, started, image_index)
            finally:
                sandbox._run_slots.release()

    def _run_locked(self, code: str, limit: float, started: float, image_index: int | None) -> RunResult:
        cfg = self._sandbox.config
        sock = self._sock
        assert sock is not None
        self.runs += 1
        if wire.has_pending_data(sock):
            if wire.peer_closed(sock):  # it died between runs (its CPU budget, a background process's crash)
                return self._dead_result("crashed", self._kill_and_describe(grace=EXIT_GRACE), started)
            # Bytes the session sent unasked: model code writing to the session's socket itself.
            self._kill_and_describe()
            return self._dead_result("crashed", "the session sent data it was not asked for and was killed", started)
        try:
            request = {"type": "run", "code": code, "timeout": limit, "seq": self.runs, "image_index": image_index}
            wire.send_frame(sock, request)
            limits = result_limits(cfg.max_output_bytes)
            header, buffers = wire.recv_frame(
                sock,
                deadline=started + limit + cfg.kill_grace,
                max_total=limits.max_bytes + cfg.max_images_per_run * cfg.max_image_pixels * 4,
                limits=limits,
            )
        except wire.FrameTimeout:
            self._kill_and_describe()
            return self._dead_result(
                "killed",
                f"the code ignored its {limit:g} s time limit and was killed with its session",
                started,
            )
        except (OSError, wire.FrameClosed):
            return self._dead_result("crashed", self._kill_and_describe(grace=EXIT_GRACE), started)
        except wire.FrameError as exc:
            self._kill_and_describe()
            return self._dead_result("crashed", f"the session broke the protocol ({exc}) and was killed", started)
        try:
            result = RunResult.from_frame(header, buffers, max_image_pixels=cfg.max_image_pixels, schema=ChildResult)
            if len(result.images) > cfg.max_images_per_run:
                raise ValueError("too many images")
            if header.get("seq") != self.runs:
                raise ValueError(f"the result answers request {header.get('seq')!r}, not {self.runs}")
        except Exception as exc:  # the frame was written where model code runs: whatever it holds, the session dies
            self._kill_and_describe()
            reason = f"the session sent a malformed result and was killed: {type(exc).__name__}: {exc}"
            return self._dead_result("crashed", cap_text(reason, 1000), started)
        result.stdout = cap_text(result.stdout, cfg.max_output_bytes)
        result.stderr = cap_text(result.stderr, cfg.max_output_bytes)
        result.duration = time.monotonic() - started
        return result

    def _kill_and_describe(self, grace: float = 0.0) -> str:
        pid, self._pid = self._pid, None
        if pid is None:
            return "the session process is gone"
        return describe_exit(self._sandbox._terminate(pid, grace), self._sandbox.config)

    def _dead_result(self, status: str, reason: str, started: float) -> RunResult:
        self._dead_reason = f"the session is dead: {reason}"
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        return RunResult(
            status=status,
            error=f"SandboxError: {reason}",
            error_type="SandboxError",  # type: ignore[arg-type]
            duration=time.monotonic() - started,
            session_alive=False,
        )


class Sandbox:
    """A pool of confined, stateful Python sessions for model-written image code.

    >>> with Sandbox(workers=2, timeout=5.0, memory_mb=1024) as sandbox:
    ...     with sandbox.session(images=[img]) as session:
    ...         result = session.run("display(image.rotate(90, expand=True))")
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float | None = None,
        memory_mb: int | None = None,
        *,
        config: SandboxConfig | None = None,
        **overrides: Any,
    ) -> None:
        base = config.model_dump() if config is not None else {}
        explicit = {"workers": workers, "timeout": timeout, "memory_mb": memory_mb}
        base.update({k: v for k, v in explicit.items() if v is not None})
        base.update(overrides)
        self.config = SandboxConfig(**base)
        self._server: ForkServerClient | None = None
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        limits = {"max_queue": self.config.max_queue, "queue_timeout": self.config.queue_timeout}
        self._run_slots = CapacityPool(self.config.workers, what="a worker", **limits)
        self._session_slots = CapacityPool(self.config.max_sessions, what="a session slot", **limits)
        self._sessions: set[Session] = set()
        self._closed = False
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.max_sessions + self.config.workers, thread_name_prefix="codevision-sandbox"
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        with self._start_lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            if self._server is not None and self._server.alive():
                return self
            if self._server is not None:
                logger.warning("the sandbox fork server exited unexpectedly; restarting it")
                self._server.close()
            server = ForkServerClient(self.config)
            try:
                self._check_isolation(server.hello["isolation"])
            except SandboxIsolationError:
                server.close()
                raise
            self._server = server
        return self

    def _check_isolation(self, isolation: dict[str, Any]) -> None:
        missing = [name for name, ok in isolation["available"].items() if not ok]
        if not missing:
            return
        details = "; ".join(f"{name}: {isolation['reasons'].get(name, 'unavailable')}" for name in missing)
        message = f"codevision sandbox is running without these isolation layers: {details}"
        if self.config.strict:
            raise SandboxIsolationError(message)
        logger.warning(message)
        warnings.warn(message, SandboxIsolationWarning, stacklevel=3)

    def close(self) -> None:
        with self._state_lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        with self._start_lock:
            self._closed = True
            if self._server is not None:
                self._server.close()
                self._server = None
        self._executor.shutdown(wait=False)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Sandbox:
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ------------------------------------------------------------------ sessions
    def session(self, images: Iterable[Any] = (), *, timeout: float | None = None) -> Session:
        """A new session over ``images`` (PIL images or arrays); opened by ``with``/``async with``."""
        return Session(self, list(images), timeout)

    def run(self, code: str, images: Iterable[Any] = (), timeout: float | None = None) -> RunResult:
        """One-shot convenience: a fresh session, one run, closed."""
        with self.session(images, timeout=timeout) as session:
            return session.run(code)

    def status(self) -> dict[str, Any]:
        """Isolation layers (with the reason for each missing one), capacity and usage."""
        server = self._server
        isolation = server.hello["isolation"] if server is not None else None
        with self._state_lock:
            live = len(self._sessions)
        return {
            "running": server is not None and server.alive(),
            "fork_server_pid": server.hello.get("pid") if server is not None else None,
            "baseline_mb": server.hello.get("baseline_mb") if server is not None else None,
            "isolation": isolation,
            "missing_layers": [n for n, ok in isolation["available"].items() if not ok] if isolation else None,
            "live_sessions": live,
            "busy_workers": self._run_slots.in_use,
            "waiting": self._run_slots.waiting + self._session_slots.waiting,
            "config": self.config.model_dump(),
        }

    # ------------------------------------------------------------------ internals used by Session
    def _spawn(self) -> tuple[int, socket.socket]:
        self.start()
        assert self._server is not None
        try:
            return self._server.spawn()
        except (OSError, SandboxStartError):
            self.start()
            return self._server.spawn()

    def _terminate(self, pid: int, grace: float = 0.0) -> dict[str, Any]:
        server = self._server
        if server is None or not server.alive():
            return {"exit_code": None, "signal": None, "killed": False}
        return server.terminate(pid, grace)

    def _kill(self, pid: int) -> None:
        server = self._server
        if server is not None and server.alive():
            server.kill(pid)

    def _register(self, session: Session) -> None:
        with self._state_lock:
            self._sessions.add(session)

    def _unregister(self, session: Session) -> None:
        with self._state_lock:
            self._sessions.discard(session)
