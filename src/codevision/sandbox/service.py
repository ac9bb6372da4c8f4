"""Service mode: one machine's sandbox shared over HTTP by rollout workers on other machines.

Model-written code runs where the sandbox's isolation layers are set up, while the trainers
that sample trajectories may live anywhere; :class:`RemoteSandbox` gives them sessions that
behave like local ones. Input images and results travel as :mod:`~codevision.sandbox.wire`
frames, so pixels cross the network raw, exactly as they cross the host/session boundary.

The endpoint is protected by a shared bearer token only, over plain HTTP: bind it to a
private network or put it behind a TLS-terminating proxy.

Endpoints: ``GET /healthz`` (no token), ``GET /v1/status``, ``POST /v1/sessions`` (a frame of
input images), ``POST /v1/sessions/<id>/run`` (JSON ``{"code", "timeout", "image_index"}``, answered with a
result frame) and ``DELETE /v1/sessions/<id>``. Errors are JSON ``{"error": message}``.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import re
import secrets
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NoReturn
from urllib.parse import urlsplit

from PIL import Image

from codevision.httpserver import TrackedHandler, TrackingHTTPServer
from codevision.sandbox import wire
from codevision.sandbox.config import SandboxConfig
from codevision.sandbox.errors import SandboxBusy, SandboxError, SessionDeadError
from codevision.sandbox.httpapi import FRAME_CONTENT_TYPE, JSON_CONTENT_TYPE, check_token
from codevision.sandbox.local import Sandbox, Session
from codevision.sandbox.remote import RemoteSandbox, RemoteSession

__all__ = ["FRAME_CONTENT_TYPE", "RemoteSandbox", "RemoteSession", "SandboxServer", "serve"]

logger = logging.getLogger("codevision.sandbox.service")


# A session request's JSON header only describes its images, so it stays small.
_SESSION_HEADER_LIMIT = 64 * 1024
# A run request is one code cell; far larger bodies are mistakes or abuse.
# A run body is the code cell as JSON: at most six bytes per character of it, plus the other fields.
_RUN_BODY_LIMIT = 6 * wire.MAX_CODE_BYTES + 4096
_RUN_LIMITS = wire.HeaderLimits(max_bytes=_RUN_BODY_LIMIT, max_containers=4, max_items=8)
# The ceiling SandboxConfig.timeout accepts, applied to per-request timeouts as well.
_MAX_RUN_TIMEOUT = 3600.0
# Closed session ids remembered so that late requests learn why (410) instead of getting 404.
_TOMBSTONES = 10_000
# After rejecting a body unread, drain at most this much so the client can read the answer.
_LINGER_BYTES = 64 * 1024 * 1024
_LINGER_SECONDS = 2.0
_BUSY_RETRY_AFTER = "1"
_SESSION_PATH = re.compile(r"/v1/sessions/([A-Za-z0-9_-]{1,128})(/run)?")
_API_SUMMARY = "GET /healthz, GET /v1/status, POST /v1/sessions, POST /v1/sessions/<id>/run, DELETE /v1/sessions/<id>"


class _HTTPError(Exception):
    """An answer other than success, raised from deep inside a request to end it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _optional_timeout(value: Any, field: str) -> float | None:
    if value is None:
        return None
    # bool is an int, and NaN/inf fail the range test.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX_RUN_TIMEOUT:
        raise _HTTPError(
            400,
            f"field '{field}' must be a number of seconds in (0, {_MAX_RUN_TIMEOUT:g}] or null, "
            f"not {json.dumps(value)[:80]}",
        )
    return float(value)


def _reject_unknown_fields(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _HTTPError(400, f"{what} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")


# ---------------------------------------------------------------------------------------- server


@dataclass
class _Entry:
    session: Session
    last_used: float
    active: int = 0


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, host: str, port: int, service: SandboxServer) -> None:
        self.service = service
        super().__init__(host, port, _Handler)


class _Handler(TrackedHandler):
    server_version = "codevision-sandbox"
    server: _HTTPServer

    def setup(self) -> None:
        self.timeout = self.server.service.keepalive_timeout
        super().setup()
        self._body_read = False

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ responses
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as JSON like every other error."""
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = f"HTTP error {code}"
        body = json.dumps({"error": f"{text}: {explain}" if explain else text}).encode()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._respond(status, [json.dumps(payload).encode()], JSON_CONTENT_TYPE, headers)

    def _respond(
        self,
        status: int,
        chunks: Sequence[bytes | bytearray | memoryview],
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        unread = self._unread_bytes()
        if unread:
            # The rest of the body would be parsed as the next request.
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
        except OSError as exc:
            logger.debug("could not answer %s: %s", self.address_string(), exc)
            self.close_connection = True
            return
        if unread:
            self._linger(unread)

    def _unread_bytes(self) -> int:
        if self._body_read:
            return 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _LINGER_BYTES
        try:
            return max(0, int(self.headers.get("Content-Length", "0")))
        except ValueError:
            return _LINGER_BYTES

    def _linger(self, unread: int) -> None:
        """Drop what the client still sends after an early answer, so that it can read the answer.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the response before the client reads it. The drain is bounded in bytes and time and
        never keeps what it reads.
        """
        deadline = time.monotonic() + _LINGER_SECONDS
        budget = min(unread, _LINGER_BYTES)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            while budget > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(budget, 1 << 16))
                if not chunk:
                    break
                budget -= len(chunk)

    # ------------------------------------------------------------------ requests
    def _dispatch(self) -> None:
        self._body_read = False
        try:
            self._route()
        except _HTTPError as exc:
            self._send_json(exc.status, {"error": exc.message}, exc.headers)
        except SandboxBusy as exc:
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"error": f"the sandbox is busy: {exc}; retry later or raise the server's limits"},
                {"Retry-After": _BUSY_RETRY_AFTER},
            )
        except SessionDeadError as exc:
            self._send_json(HTTPStatus.GONE, {"error": str(exc)})
        except SandboxError as exc:
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
        except Exception as exc:
            logger.exception("%s %s failed", self.command, self.path)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"internal server error ({type(exc).__name__}); the server log has the details"},
            )

    def _route(self) -> None:
        path = urlsplit(self.path).path
        routes: dict[str, Callable[[], None]]
        if path == "/healthz":
            routes = {"GET": self._health}
        elif path == "/v1/status":
            routes = {"GET": self._status}
        elif path == "/v1/sessions":
            routes = {"POST": self._create_session}
        elif (match := _SESSION_PATH.fullmatch(path)) and match.group(2):
            routes = {"POST": functools.partial(self._run, match.group(1))}
        elif match:
            routes = {"DELETE": functools.partial(self._close_session, match.group(1))}
        else:
            raise _HTTPError(HTTPStatus.NOT_FOUND, f"there is no endpoint {path!r}; the API is {_API_SUMMARY}")
        handler = routes.get(self.command)
        if handler is None:
            allowed = ", ".join(routes)
            raise _HTTPError(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts only {allowed}, not {self.command}", {"Allow": allowed}
            )
        if path != "/healthz" and not self.server.service.authorized(self.headers.get("Authorization")):
            raise _HTTPError(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong token: send the header 'Authorization: Bearer <token>' with the token "
                "the server was started with",
                {"WWW-Authenticate": "Bearer"},
            )
        handler()

    def _read_body(self, limit: int, what: str, remedy: str) -> bytes:
        return self._read(self._declared_length(limit, what, remedy), what)

    def _declared_length(self, limit: int, what: str, remedy: str) -> int:
        """The body's Content-Length, refused before anything is read when it is absent or above ``limit``."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, f"send {what} with a Content-Length, not chunked")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, f"{what} needs a Content-Length header")
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"Content-Length {declared!r} is not a byte count")
        if length > limit:
            raise _HTTPError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{what} of {length} bytes is above this server's limit of {limit} bytes; {remedy}",
            )
        return length

    def _read(self, length: int, what: str) -> bytes:
        self._body_read = True
        try:
            body = self.rfile.read(length)
        except OSError as exc:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.REQUEST_TIMEOUT, f"reading {what} failed: {exc}") from exc
        if len(body) != length:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"{what} ended after {len(body)} of {length} bytes")
        return body

    def _health(self) -> None:
        if self.server.service.sandbox.status()["running"]:
            self._send_json(HTTPStatus.OK, {"ok": True})
        else:
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"ok": False, "error": "the sandbox fork server is not running; the next session restarts it"},
                {"Retry-After": _BUSY_RETRY_AFTER},
            )

    def _status(self) -> None:
        self._send_json(HTTPStatus.OK, self.server.service.status())

    def _create_session(self) -> None:
        service = self.server.service
        config = service.sandbox.config
        length = self._declared_length(
            service.max_session_bytes,
            "a session request",
            f"send at most {service.max_images} images of at most max_input_pixels={config.max_input_pixels} each",
        )
        with service.uploads.reserve(length):
            self._open_session(self._read(length, "a session request"))

    def _open_session(self, body: bytes) -> None:
        service = self.server.service
        config = service.sandbox.config
        try:
            header, buffers = wire.unpack(body, max_total=len(body))
        except wire.FrameError as exc:
            raise _HTTPError(
                HTTPStatus.BAD_REQUEST, f"the body is not a frame ({exc}); build it with wire.pack(header, images)"
            ) from exc
        _reject_unknown_fields(header, {"images", "timeout"}, "the session header")
        metas = header.get("images", [])
        if not isinstance(metas, list) or len(metas) != len(buffers):
            raise _HTTPError(
                HTTPStatus.BAD_REQUEST,
                f"field 'images' must list one wire.encode_image metadata object per buffer "
                f"({len(buffers)} buffers sent)",
            )
        if len(metas) > service.max_images:
            raise _HTTPError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{len(metas)} input images sent; this server accepts at most {service.max_images} per session",
            )
        images = []
        for index, (meta, data) in enumerate(zip(metas, buffers, strict=True)):
            try:
                # The declared size is checked before anything is decoded: a 1-bit image is 8 pixels a byte.
                _, width, height = wire.image_layout(meta)
                if width * height > config.max_input_pixels:
                    raise _HTTPError(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"input image {index} has {width}x{height} pixels, above the server's "
                        f"max_input_pixels={config.max_input_pixels}; downscale it",
                    )
                images.append(wire.decode_image(meta, data))
            except wire.FrameError as exc:
                raise _HTTPError(HTTPStatus.BAD_REQUEST, f"field 'images[{index}]': {exc}") from exc
        timeout = _optional_timeout(header.get("timeout"), "timeout")
        session_id = service.open_session(images, timeout)
        self._send_json(
            HTTPStatus.CREATED,
            {"session_id": session_id, "timeout": timeout or config.timeout, "kill_grace": config.kill_grace},
        )

    def _run(self, session_id: str) -> None:
        body = self._read_body(_RUN_BODY_LIMIT, "a run request", "send smaller code cells")
        try:
            payload = wire.parse_header(body, _RUN_LIMITS)
        except wire.FrameError as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f'the body must be JSON {{"code": str}}: {exc}') from exc
        if not isinstance(payload, dict):
            raise _HTTPError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"code": str}')
        _reject_unknown_fields(payload, {"code", "timeout", "image_index"}, "the run request")
        code = payload.get("code")
        if not isinstance(code, str):
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "field 'code' must be a string of Python source")
        try:
            code.encode("utf-8")  # JSON escapes can smuggle in lone surrogates, which no frame can carry
        except UnicodeEncodeError as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"field 'code' is not valid Unicode text: {exc}") from exc
        timeout = _optional_timeout(payload.get("timeout"), "timeout")
        image_index = payload.get("image_index")
        if image_index is not None and (not isinstance(image_index, int) or isinstance(image_index, bool)):
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "field 'image_index' must be an integer or null")
        with self.server.service.checkout(session_id) as session:
            result = session.run(code, timeout, image_index)
        header, buffers = result.to_frame()
        self._respond(HTTPStatus.OK, wire.pack(header, buffers), FRAME_CONTENT_TYPE)

    def _close_session(self, session_id: str) -> None:
        self.server.service.close_session(session_id)
        self._send_json(HTTPStatus.OK, {"session_id": session_id, "closed": True})


class _UploadBudget:
    """Bytes of session requests held at once: each may be as large as a session's memory, and many
    clients opening sessions together must not add up to more than the server can hold.

    A request whose bytes do not fit waits for others to finish, for at most ``wait`` seconds, then is
    answered 503 (busy, retry later) before its body is read.
    """

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self.held = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        deadline = time.monotonic() + self.wait
        with self._changed:
            while self.held and self.held + size > self.limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _HTTPError(
                        HTTPStatus.SERVICE_UNAVAILABLE,
                        f"{self.held} bytes of other session requests are being read (at most {self.limit} "
                        f"at once); retry later, or send smaller images",
                        {"Retry-After": _BUSY_RETRY_AFTER},
                    )
                self._changed.wait(remaining)
            self.held += size
        try:
            yield
        finally:
            with self._changed:
                self.held -= size
                self._changed.notify_all()


class SandboxServer:
    """Serves a started :class:`Sandbox` over HTTP from background threads.

    The server does not own the sandbox: closing it closes the sessions it opened and its
    connections, and leaves the sandbox to its owner. Sessions idle for ``idle_timeout``
    seconds are closed, so clients that crash or lose the network do not leak them. Session requests
    being read at once hold at most ``max_upload_bytes`` (never less than one largest request,
    :attr:`max_session_bytes`); one that does not fit waits ``upload_wait`` seconds, then gets 503.

    >>> with Sandbox() as sandbox, SandboxServer(sandbox, token) as server:
    ...     RemoteSandbox(server.url, token).status()
    """

    def __init__(
        self,
        sandbox: Sandbox,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 600.0,
        max_images: int = 16,
        keepalive_timeout: float = 120.0,
        max_upload_bytes: int | None = None,
        upload_wait: float = 30.0,
    ) -> None:
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout!r}")
        if max_images < 0:
            raise ValueError(f"max_images must be non-negative, not {max_images!r}")
        self.sandbox = sandbox
        self.idle_timeout = float(idle_timeout)
        self.max_images = max_images
        self.keepalive_timeout = keepalive_timeout
        # One largest request always fits, so a limit below it would refuse what max_session_bytes allows.
        self.uploads = _UploadBudget(max(max_upload_bytes or 0, self.max_session_bytes), upload_wait)
        self._expected_auth = f"Bearer {check_token(token)}".encode()
        self._sessions: dict[str, _Entry] = {}
        self._tombstones: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd = _HTTPServer(host, port, self)
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = (
            f"http://[{bound_host}]:{bound_port}" if ":" in str(bound_host) else f"http://{bound_host}:{bound_port}"
        )

    @property
    def max_session_bytes(self) -> int:
        """Largest session request accepted, decided from Content-Length before reading the body: the inputs
        at their largest, and never more than a session's memory could hold."""
        config = self.sandbox.config
        per_image = 8 + config.max_input_pixels * 4  # length field + 4 bytes/pixel at most
        pixels = min(self.max_images * per_image, config.memory_mb * 1024 * 1024)
        return 8 + _SESSION_HEADER_LIMIT + pixels

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SandboxServer:
        if self._stopping.is_set():
            raise SandboxError("this SandboxServer is closed; create a new one")
        if self._threads:
            return self
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="codevision-service", daemon=True
            ),
            threading.Thread(target=self._reap_loop, name="codevision-service-reaper", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("codevision sandbox service listening on %s", self.url)
        return self

    def close(self) -> None:
        """Stop accepting requests, close the remote sessions and every connection (idempotent)."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            entries, self._sessions = list(self._sessions.values()), {}
        if self._threads:
            self._httpd.shutdown()
        for entry in entries:
            entry.session.close()
        self._httpd.drop_connections(wait=5.0)
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ used by the handler
    def authorized(self, header: str | None) -> bool:
        # Header values arrive decoded as latin-1, so this encoding restores the sent bytes.
        return header is not None and hmac.compare_digest(header.encode("latin-1"), self._expected_auth)

    def status(self) -> dict[str, Any]:
        with self._lock:
            remote = len(self._sessions)
        inputs = {"max_input_pixels": self.sandbox.config.max_input_pixels, "max_images": self.max_images}
        return {**self.sandbox.status(), "remote_sessions": remote, "idle_timeout": self.idle_timeout, "inputs": inputs}

    def open_session(self, images: list[Image.Image], timeout: float | None) -> str:
        session = self.sandbox.session(images, timeout=timeout).open()
        session_id = secrets.token_urlsafe(24)
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._sessions[session_id] = _Entry(session, time.monotonic())
        if stopping:
            session.close()
            raise SandboxBusy("the server is shutting down")
        return session_id

    @contextlib.contextmanager
    def checkout(self, session_id: str) -> Iterator[Session]:
        """The session, protected from the idle reaper while the caller uses it."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                self._raise_missing(session_id)
            entry.active += 1
        try:
            yield entry.session
        finally:
            with self._lock:
                entry.active -= 1
                entry.last_used = time.monotonic()

    def close_session(self, session_id: str) -> None:
        with self._lock:
            entry = self._sessions.pop(session_id, None)
            if entry is None:
                if session_id in self._tombstones:
                    return  # closing twice is not an error, so DELETE can be retried
                self._raise_missing(session_id)
            self._bury(session_id, "was closed by its client")
        entry.session.close()

    def _raise_missing(self, session_id: str) -> NoReturn:
        if self._stopping.is_set():
            raise SandboxBusy("the server is shutting down")
        reason = self._tombstones.get(session_id)
        if reason is not None:
            raise SessionDeadError(f"session {session_id} {reason}; open a new session")
        raise _HTTPError(
            HTTPStatus.NOT_FOUND,
            f"unknown session {session_id!r}: this server never opened it, or it restarted since; open a new session",
        )

    def _bury(self, session_id: str, reason: str) -> None:
        self._tombstones[session_id] = reason
        while len(self._tombstones) > _TOMBSTONES:
            self._tombstones.popitem(last=False)

    # ------------------------------------------------------------------ idle reaping
    def _reap_loop(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 30.0))
        while not self._stopping.wait(interval):
            try:
                self.reap_idle()
            except Exception:
                logger.exception("closing idle sessions failed; retrying in %g s", interval)

    def reap_idle(self) -> int:
        """Close sessions unused for ``idle_timeout`` seconds; returns how many were closed."""
        cutoff = time.monotonic() - self.idle_timeout
        with self._lock:
            idle = [
                (sid, entry) for sid, entry in self._sessions.items() if not entry.active and entry.last_used < cutoff
            ]
            for session_id, _ in idle:
                del self._sessions[session_id]
                self._bury(session_id, f"was closed after {self.idle_timeout:g} s without requests")
        for session_id, entry in idle:
            logger.info("closing session %s: idle for more than %g s", session_id, self.idle_timeout)
            entry.session.close()
        return len(idle)


def serve(
    host: str,
    port: int,
    token: str,
    config: SandboxConfig,
    *,
    idle_timeout: float = 600.0,
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run a sandbox service until SIGINT/SIGTERM (main thread only) or until ``stop`` is set.

    The port is bound before the fork server starts, so a taken port fails fast. ``ready``
    receives the URL, with the real port when ``port`` is 0, once requests are accepted.
    """
    signalled: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # The handler only records the signal: Event.set from a handler can deadlock on the
        # lock that the interrupted wait() holds.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda received, _frame: signalled.append(received))
    stop = stop if stop is not None else threading.Event()
    try:
        sandbox = Sandbox(config=config)
        server = SandboxServer(sandbox, token, host=host, port=port, idle_timeout=idle_timeout)
        try:
            with sandbox, server:
                if ready is not None:
                    ready(server.url)
                while not signalled and not stop.wait(0.2):
                    pass
                logger.info("codevision sandbox service on %s is stopping", server.url)
        finally:
            server.close()  # also releases the port when the sandbox failed to start
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------------------- client
