"""Client of the sandbox service: sessions on a remote machine that behave like local ones."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from codevision.sandbox import wire
from codevision.sandbox.config import SandboxConfig
from codevision.sandbox.errors import SandboxBusy, SandboxError, SessionDeadError
from codevision.sandbox.httpapi import FRAME_CONTENT_TYPE, JSON_CONTENT_TYPE, check_token
from codevision.sandbox.local import as_pil_image
from codevision.sandbox.results import RunResult, result_limits
from codevision.sandbox.session_api import SessionAPI

logger = logging.getLogger("codevision.sandbox.remote")
# The server's output cap is not known here; what it relays was checked when its session answered, so
# this only bounds what a broken server could make the client allocate.
_SERVICE_RESULTS = result_limits(max_output_bytes=wire.MAX_CODE_BYTES)

_BACKOFF = 0.1
_MAX_BACKOFF = 2.0


def _socket_readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class RemoteSession(SessionAPI):
    """A session on a :class:`SandboxServer`, with the API of the local :class:`Session`.

    Closing it never raises: a server that cannot be reached closes the session itself once
    it has been idle for the server's ``idle_timeout``.
    """

    @property
    def _executor(self) -> Executor:
        return self._sandbox._executor

    def __init__(self, sandbox: RemoteSandbox, images: Sequence[Any], timeout: float | None) -> None:
        self._sandbox = sandbox
        self._images = list(images)
        self._default_timeout = timeout
        self._lock = threading.Lock()
        self._id: str | None = None
        self._closed = False
        self._alive = False
        self._server_timeout = 0.0
        self._kill_grace = 0.0
        self.runs = 0

    @property
    def session_id(self) -> str | None:
        return self._id

    @property
    def alive(self) -> bool:
        return self._id is not None and self._alive and not self._closed

    def open(self) -> RemoteSession:
        with self._lock:
            if self._id is not None or self._closed:
                return self
            metas, buffers = [], []
            for index, raw in enumerate(self._images):
                # Checked before anything is decoded: a lazily opened PNG knows its size from its header.
                meta, data = wire.encode_image(as_pil_image(raw, index, self._sandbox.max_input_pixels))
                metas.append(meta)
                buffers.append(data)
            header: dict[str, Any] = {"images": metas}
            if self._default_timeout is not None:
                header["timeout"] = self._default_timeout
            reply = self._sandbox._call(
                "POST",
                "/v1/sessions",
                body=wire.pack(header, buffers),
                content_type=FRAME_CONTENT_TYPE,
                idempotent=False,
            )
            try:
                self._id = str(reply["session_id"])
                self._server_timeout = float(reply["timeout"])
                self._kill_grace = float(reply["kill_grace"])
            except (KeyError, TypeError, ValueError) as exc:
                raise SandboxError(f"{self._sandbox.url} answered a session request with {reply!r}") from exc
            self._images = []
            self._alive = True
        self._sandbox._register(self)
        return self

    def close(self) -> None:
        """Close the session on the server (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session_id, self._id = self._id, None
        self._sandbox._unregister(self)
        if session_id is None:
            return
        try:
            self._sandbox._call("DELETE", f"/v1/sessions/{session_id}", idempotent=True)
        except SandboxError as exc:
            logger.warning("could not close remote session %s (%s); the server closes it once idle", session_id, exc)

    def run(self, code: str, timeout: float | None = None, image_index: int | None = None) -> RunResult:
        """Execute one code cell on the server and return what it printed, displayed and did."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        session_id = self.open()._id
        if session_id is None:
            raise SessionDeadError("cannot run code: the session was closed; open a new session")
        limit = timeout or self._server_timeout  # the server's answer includes the session default
        status, _, data = self._sandbox._request(
            "POST",
            f"/v1/sessions/{session_id}/run",
            body=[json.dumps({"code": code, "timeout": timeout, "image_index": image_index}).encode()],
            content_type=JSON_CONTENT_TYPE,
            idempotent=False,
            # The server answers only when the run is over: its limit, the kill grace, then transport.
            read_timeout=limit + self._kill_grace + self._sandbox.timeout,
        )
        if status >= 400:
            error = self._sandbox._error(status, data)
            if isinstance(error, SessionDeadError):
                self._alive = False
            raise error
        try:
            header, buffers = wire.unpack(data, limits=_SERVICE_RESULTS)
            result = RunResult.from_frame(header, buffers)
        except Exception as exc:  # whatever the reply holds, the caller gets a SandboxError
            raise SandboxError(f"{self._sandbox.url} sent a malformed run result: {type(exc).__name__}: {exc}") from exc
        self.runs += 1
        if not result.session_alive:
            self._alive = False
        return result


class RemoteSandbox:
    """Client of a :class:`SandboxServer`, with the session API of the local :class:`Sandbox`.

    ``timeout`` bounds connecting and each answer, on top of a run's own time limit;
    ``retries`` is how often a request is repeated after a connection failure, when that
    cannot execute anything twice. Keep-alive connections are pooled and shared by threads.
    Errors: :class:`SandboxBusy` (HTTP 503), :class:`SessionDeadError` (410), otherwise
    :class:`SandboxError` carrying the server's message. Input images above ``max_input_pixels``
    are refused before they are decoded or sent; by default that is the server's limit, asked once
    (``/v1/status``), so an image the server would refuse is never decoded or uploaded, and one it
    accepts is never refused here.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_workers: int = 64,
        max_input_pixels: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://host:port, not {url!r}")
        if retries < 0:
            raise ValueError(f"retries must be non-negative, not {retries!r}")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = retries
        self._max_input_pixels = max_input_pixels
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path.rstrip("/")
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._auth = f"Bearer {check_token(token)}"
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._sessions: set[RemoteSession] = set()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="codevision-remote")

    # ------------------------------------------------------------------ public API
    @property
    def max_input_pixels(self) -> int:
        """The most pixels an input may have: as given, else the server's (from its status, asked once)."""
        if self._max_input_pixels is None:
            stated = (self.status().get("inputs") or {}).get("max_input_pixels")
            valid = isinstance(stated, int) and not isinstance(stated, bool) and stated > 0
            # A server that does not say (an older one) checks its own limit; the default is the usual one.
            self._max_input_pixels = stated if valid else SandboxConfig.model_fields["max_input_pixels"].default
        return self._max_input_pixels

    def session(self, images: Iterable[Any] = (), *, timeout: float | None = None) -> RemoteSession:
        """A new session over ``images`` (PIL images or arrays); opened by ``with``/``async with``."""
        return RemoteSession(self, list(images), timeout)

    def run(self, code: str, images: Iterable[Any] = (), timeout: float | None = None) -> RunResult:
        """One-shot convenience: a fresh session, one run, closed."""
        with self.session(images, timeout=timeout) as session:
            return session.run(code)

    def status(self) -> dict[str, Any]:
        """The server sandbox's ``status()`` plus ``remote_sessions`` and ``idle_timeout``."""
        return self._call("GET", "/v1/status", idempotent=True)

    def health(self) -> dict[str, Any]:
        """``{"ok": True}`` when the server's fork server runs, ``{"ok": False, "error": ...}`` otherwise."""
        status, _, data = self._request("GET", "/healthz", idempotent=True)
        if status not in (HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE):
            raise self._error(status, data)
        return self._json(data)

    def close(self) -> None:
        """Close the sessions opened through this client and its connections."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        self._executor.shutdown(wait=False)

    def __enter__(self) -> RemoteSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ------------------------------------------------------------------ transport
    def _register(self, session: RemoteSession) -> None:
        with self._lock:
            self._sessions.add(session)

    def _unregister(self, session: RemoteSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Sequence[bytes | bytearray | memoryview] = (),
        content_type: str | None = None,
        idempotent: bool,
    ) -> Any:
        status, _, data = self._request(method, path, body=body, content_type=content_type, idempotent=idempotent)
        if status >= 400:
            raise self._error(status, data)
        return self._json(data)

    def _json(self, data: bytes) -> Any:
        try:
            return wire.parse_header(data)
        except wire.FrameError as exc:
            raise SandboxError(f"{self.url} sent an answer that is not a JSON object: {data[:200]!r}") from exc

    def _error(self, status: int, data: bytes) -> SandboxError:
        try:
            message = str(wire.parse_header(data)["error"])
        except (wire.FrameError, KeyError):
            message = data[:300].decode("utf-8", "replace").strip() or HTTPStatus(status).phrase
        text = f"{message} (HTTP {status} from {self.url})"
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            return SandboxBusy(text)
        if status == HTTPStatus.GONE or (status == HTTPStatus.NOT_FOUND and message.startswith("unknown session")):
            return SessionDeadError(text)
        return SandboxError(text)

    def _checkout(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise SandboxError("this RemoteSandbox is closed; create a new one")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            return self._connection_class(self._host, self._port, timeout=self.timeout)
        if connection.sock is not None and _socket_readable(connection.sock):
            connection.close()  # an idle connection has nothing to read unless the server closed it
        return connection

    def _checkin(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Sequence[bytes | bytearray | memoryview] = (),
        content_type: str | None = None,
        idempotent: bool,
        read_timeout: float | None = None,
    ) -> tuple[int, str, bytes]:
        """One HTTP exchange; returns (status, content type, body) and raises only transport errors."""
        headers = {"Authorization": self._auth}
        if method == "POST":
            headers["Content-Length"] = str(sum(len(chunk) for chunk in body))
        if content_type is not None:
            headers["Content-Type"] = content_type
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(_BACKOFF * 2 ** (attempt - 1), _MAX_BACKOFF))
            connection = self._checkout()
            reused = connection.sock is not None
            try:
                if not reused:
                    connection.connect()
                    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                connection.close()
                last_error = exc
                continue  # nothing was sent, so even a non-idempotent request may be repeated
            connection.sock.settimeout(read_timeout or self.timeout)
            try:
                answer = self._exchange(connection, method, self._prefix + path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                last_error = exc
                # A reused connection that breaks before any answer was closed by the server while
                # idle, so the request never ran there and can be sent again on a fresh one.
                if idempotent or (reused and isinstance(exc, (BrokenPipeError, ConnectionResetError))):
                    continue
                if isinstance(exc, TimeoutError):
                    raise SandboxError(
                        f"{method} {path} got no answer from {self.url} in time; the request may still be "
                        "executing there (raise RemoteSandbox(timeout=...) for slow servers)"
                    ) from exc
                raise SandboxError(f"{method} {path} to {self.url} failed: {exc!r}") from exc
            self._checkin(connection)
            return answer
        raise SandboxError(
            f"could not reach the sandbox server at {self.url} in {self.retries + 1} attempts: {last_error!r}"
        ) from last_error

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Sequence[bytes | bytearray | memoryview],
        headers: dict[str, str],
    ) -> tuple[int, str, bytes]:
        # A server that rejects a body early answers and stops reading; its answer is still
        # readable even though sending the rest failed.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(method, path, body=list(body) if body else None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, response.getheader("Content-Type", ""), data
