"""Service mode over real loopback HTTP: a real server in a thread of this process, a real sandbox behind it."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from codevision.sandbox import Sandbox, SandboxBusy, SandboxConfig, SandboxError, SessionDeadError, wire
from codevision.sandbox.service import FRAME_CONTENT_TYPE, RemoteSandbox, SandboxServer, serve
from codevision.task import Task
from codevision.testing.images import scene_image
from tests.conftest import episode, final, gradient_image, tool_call

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_INPUT_PIXELS = 100_000
MAX_IMAGES = 4


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # A small input budget keeps the request-size limits of the server small enough to exceed cheaply.
    with Sandbox(workers=2, timeout=5.0, memory_mb=1024, max_input_pixels=MAX_INPUT_PIXELS) as sb:
        yield sb


@pytest.fixture(scope="module")
def server(sandbox: Sandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox, TOKEN, max_images=MAX_IMAGES) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(server: SandboxServer) -> Iterator[RemoteSandbox]:
    with RemoteSandbox(server.url, TOKEN, timeout=20.0) as client:
        yield client


def raw(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, to check the HTTP layer without the client's error mapping."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error_of(data: bytes) -> str:
    return json.loads(data)["error"]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


# ---------------------------------------------------------------------------------------- basics


def test_health_needs_no_token(server: SandboxServer, remote: RemoteSandbox) -> None:
    status, headers, data = raw(server.url, "GET", "/healthz")
    assert status == 200
    assert json.loads(data) == {"ok": True}
    assert headers["Content-Type"] == "application/json"
    assert remote.health() == {"ok": True}


def test_status_reports_the_sandbox_and_remote_sessions(remote: RemoteSandbox) -> None:
    with remote.session() as session:
        session.run("pass")
        status = remote.status()
        assert status["running"] is True
        assert status["remote_sessions"] >= 1
        assert status["config"]["max_input_pixels"] == MAX_INPUT_PIXELS


def test_missing_or_wrong_token_gives_401(server: SandboxServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, response_headers, data = raw(server.url, "GET", "/v1/status", headers=headers)
        assert status == 401
        assert "Authorization: Bearer" in error_of(data)
        assert response_headers["WWW-Authenticate"] == "Bearer"
    with RemoteSandbox(server.url, "wrong-token") as client:
        with pytest.raises(SandboxError, match="HTTP 401") as excinfo:
            client.status()
        assert not isinstance(excinfo.value, (SandboxBusy, SessionDeadError))
        with pytest.raises(SandboxError, match="HTTP 401"):
            client.session().open()


# ---------------------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_state_persists_and_images_round_trip_as_raw_pixels(remote: RemoteSandbox, mode: str) -> None:
    image = gradient_image(mode=mode)
    with remote.session(images=[image]) as session:
        first = session.run("x = 41\ndisplay(image)")
        assert first.ok, first.error
        assert first.images[0].mode == mode
        assert np.array_equal(pixels(first.images[0]), pixels(image))

        second = session.run("print(x + 1)\ndisplay(image.rotate(90, expand=True))")
        assert second.ok, second.error
        assert second.stdout == "42\n"
        assert second.ops[0].name == "rotate"
        assert second.ops[0].args["angle"] == 90
        assert np.array_equal(pixels(second.images[0]), pixels(image.rotate(90, expand=True)))
        assert session.runs == 2


def test_errors_in_code_come_back_as_results(remote: RemoteSandbox) -> None:
    with remote.session() as session:
        result = session.run("1 / 0")
        assert result.status == "error"
        assert result.error_type == "ZeroDivisionError"
        assert session.alive
        assert session.run("print('still here')").stdout == "still here\n"


def test_unknown_session_is_a_clear_404(server: SandboxServer) -> None:
    body = json.dumps({"code": "pass"}).encode()
    status, _, data = raw(server.url, "POST", "/v1/sessions/no-such-session/run", body, AUTH)
    assert status == 404
    assert "unknown session 'no-such-session'" in error_of(data)
    assert "open a new session" in error_of(data)
    status, _, data = raw(server.url, "DELETE", "/v1/sessions/no-such-session", headers=AUTH)
    assert status == 404


def test_crashed_session_gives_410_and_session_dead_error(server: SandboxServer, remote: RemoteSandbox) -> None:
    with remote.session() as session:
        result = session.run("import os; os._exit(0)")
        assert result.status == "crashed"
        assert not result.session_alive
        assert not session.alive
        with pytest.raises(SessionDeadError, match="HTTP 410"):
            session.run("pass")
        status, _, data = raw(
            server.url, "POST", f"/v1/sessions/{session.session_id}/run", json.dumps({"code": "pass"}).encode(), AUTH
        )
        assert status == 410
        assert "open a new session" in error_of(data)


def test_closed_session_gives_410_and_delete_is_idempotent(server: SandboxServer, remote: RemoteSandbox) -> None:
    session = remote.session().open()
    session_id = session.session_id
    session.close()
    session.close()
    assert not session.alive
    with pytest.raises(SessionDeadError):
        session.run("pass")
    status, _, data = raw(
        server.url, "POST", f"/v1/sessions/{session_id}/run", json.dumps({"code": "pass"}).encode(), AUTH
    )
    assert status == 410
    assert "closed by its client" in error_of(data)
    status, _, _ = raw(server.url, "DELETE", f"/v1/sessions/{session_id}", headers=AUTH)
    assert status == 200


# ---------------------------------------------------------------------------------------- bad requests


def test_oversized_body_is_rejected_before_it_is_read(server: SandboxServer) -> None:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        # Announce a body and never send it: a server that tried to read it would time out the client.
        connection.putrequest("POST", "/v1/sessions")
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.putheader("Content-Length", str(server.max_session_bytes + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert "limit" in error_of(response.read())
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


def test_session_uploads_held_at_once_are_bounded(sandbox: Sandbox) -> None:
    """Each session request may be as large as a session's memory; many at once must not add up beyond
    the server's upload budget: one that does not fit waits, then gets 503 without its body being read."""
    with SandboxServer(sandbox, TOKEN, max_images=MAX_IMAGES, upload_wait=0.3) as srv:
        parts = urlsplit(srv.url)
        slow = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        slow.putrequest("POST", "/v1/sessions")
        slow.putheader("Authorization", f"Bearer {TOKEN}")
        slow.putheader("Content-Length", str(srv.max_session_bytes))
        slow.endheaders()
        slow.send(b"\0" * 4096)  # the server holds this request's budget while it waits for the rest
        deadline = time.monotonic() + 5
        while srv.uploads.held == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.uploads.held == srv.max_session_bytes
        started = time.monotonic()
        status, headers, data = raw(srv.url, "POST", "/v1/sessions", b"\0" * 16, AUTH)
        assert status == 503 and "retry later" in error_of(data) and "Retry-After" in headers
        assert time.monotonic() - started >= 0.25
        slow.close()  # the half-sent request ends; its budget is released
        deadline = time.monotonic() + 5
        while srv.uploads.held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.uploads.held == 0
        with RemoteSandbox(srv.url, TOKEN, timeout=10.0) as client, client.session([gradient_image()]) as session:
            assert session.run("print(image.size)").stdout == "(64, 48)\n"


def test_client_sees_413_for_oversized_inputs(remote: RemoteSandbox) -> None:
    too_many_bytes = [gradient_image(300, 300, "RGBA") for _ in range(MAX_IMAGES + 1)]
    with pytest.raises(SandboxError, match="HTTP 413"):
        remote.session(images=too_many_bytes).open()
    too_many_pixels = gradient_image(400, 300)
    with pytest.raises(ValueError, match="max_input_pixels=100000"):  # the client knows the server's limit
        remote.session(images=[too_many_pixels]).open()
    with RemoteSandbox(remote.url, TOKEN, max_input_pixels=10**9) as lax:  # the server checks it anyway
        with pytest.raises(SandboxError, match="max_input_pixels") as excinfo:
            lax.session(images=[too_many_pixels]).open()
    assert "HTTP 413" in str(excinfo.value)
    # The connection pool recovers from the connections the server closed.
    assert remote.health() == {"ok": True}


def test_malformed_requests_name_what_is_wrong(server: SandboxServer, remote: RemoteSandbox) -> None:
    with remote.session() as session:
        run_path = f"/v1/sessions/{session.session_id}/run"
        for body, expected in [
            (b"print(1)", "must be JSON"),
            (b"[]", "JSON object"),
            (json.dumps({"code": 1}).encode(), "field 'code'"),
            (b'{"code": "\\ud800"}', "field 'code'"),
            (json.dumps({"source": "pass"}).encode(), "unknown field(s) ['source']"),
            (json.dumps({"code": "pass", "timeout": -1}).encode(), "field 'timeout'"),
            (json.dumps({"code": "pass", "timeout": "5"}).encode(), "field 'timeout'"),
        ]:
            status, _, data = raw(server.url, "POST", run_path, body, AUTH)
            assert status == 400, body
            assert expected in error_of(data), body
        assert session.run("print('unharmed')").stdout == "unharmed\n"

    meta, pixel_bytes = wire.encode_image(gradient_image())
    frame_headers = {**AUTH, "Content-Type": FRAME_CONTENT_TYPE}
    for body, expected in [
        (b"garbage", "not a frame"),
        (b"".join(wire.pack({"images": "none"})), "field 'images'"),
        (b"".join(wire.pack({"images": [meta]}, [pixel_bytes[:-1]])), "field 'images[0]'"),
        (b"".join(wire.pack({"images": [], "timeout": 0})), "field 'timeout'"),
    ]:
        status, _, data = raw(server.url, "POST", "/v1/sessions", body, frame_headers)
        assert status == 400, body[:40]
        assert expected in error_of(data), body[:40]

    status, headers, data = raw(server.url, "GET", "/v1/sessions", headers=AUTH)
    assert status == 405
    assert headers["Allow"] == "POST"
    status, _, data = raw(server.url, "GET", "/v2/anything", headers=AUTH)
    assert status == 404
    assert "/v1/sessions" in error_of(data)


# ---------------------------------------------------------------------------------------- concurrency


def test_concurrent_sessions_from_threads(remote: RemoteSandbox) -> None:
    def trajectory(index: int) -> tuple[str, tuple[int, int]]:
        with remote.session(images=[gradient_image(20 + index, 10)]) as session:
            session.run(f"n = {index}")
            result = session.run("print(n * 2)\ndisplay(image.transpose(Image.Transpose.ROTATE_90))")
            return result.stdout, result.images[0].size

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(trajectory, range(6)))
    assert outcomes == [(f"{2 * index}\n", (10, 20 + index)) for index in range(6)]


def test_concurrent_sessions_from_asyncio(remote: RemoteSandbox) -> None:
    async def trajectory(index: int) -> str:
        async with remote.session() as session:
            await session.arun(f"value = {index}")
            return (await session.arun("print(value)")).stdout

    async def main() -> list[str]:
        return await asyncio.gather(*(trajectory(index) for index in range(6)))

    assert asyncio.run(main()) == [f"{index}\n" for index in range(6)]


# ---------------------------------------------------------------------------------------- lifecycle


def test_idle_sessions_are_reaped_but_busy_ones_are_not(sandbox: Sandbox) -> None:
    with SandboxServer(sandbox, TOKEN, idle_timeout=0.3) as server, RemoteSandbox(server.url, TOKEN) as client:
        busy = client.session().open()
        assert busy.run("import time; time.sleep(1.0); print('done')").stdout == "done\n"
        idle = client.session().open()
        idle.run("x = 1")
        deadline = time.monotonic() + 10
        while client.status()["remote_sessions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.status()["remote_sessions"] == 0
        with pytest.raises(SessionDeadError, match="without requests"):
            idle.run("print(x)")
        idle.close()  # already reaped on the server: closing must not raise
        busy.close()


def test_client_reconnects_when_the_server_closed_an_idle_connection(sandbox: Sandbox) -> None:
    with (
        SandboxServer(sandbox, TOKEN, keepalive_timeout=0.2) as server,
        RemoteSandbox(server.url, TOKEN) as client,
        client.session() as session,
    ):
        session.run("x = 5")
        time.sleep(0.5)
        assert session.run("print(x)").stdout == "5\n"
        time.sleep(0.5)
        assert client.status()["remote_sessions"] == 1


def test_unreachable_server_is_a_sandbox_error() -> None:
    with (
        RemoteSandbox("http://127.0.0.1:9", TOKEN, retries=1, timeout=2) as client,
        pytest.raises(SandboxError, match="could not reach"),
    ):
        client.health()


def test_serve_answers_503_when_busy_and_stops_cleanly() -> None:
    config = SandboxConfig(workers=1, timeout=5.0, memory_mb=1024, max_sessions=1, max_queue=0)
    stop = threading.Event()
    started: queue.Queue[str | BaseException] = queue.Queue()

    def target() -> None:
        try:
            serve("127.0.0.1", 0, TOKEN, config, idle_timeout=60.0, ready=started.put, stop=stop)
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        url = started.get(timeout=60)
        assert isinstance(url, str), url
        assert urlsplit(url).port not in (None, 0)
        with RemoteSandbox(url, TOKEN, retries=0) as client:
            assert client.health() == {"ok": True}
            with client.session() as only:
                assert only.run("print('one')").stdout == "one\n"
                with pytest.raises(SandboxBusy, match="HTTP 503"):
                    client.session().open()
                status, headers, data = raw(url, "POST", "/v1/sessions", b"".join(wire.pack({"images": []})), AUTH)
                assert status == 503
                assert headers["Retry-After"] == "1"
                assert "retry later" in error_of(data)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    with RemoteSandbox(url, TOKEN, retries=0, timeout=2) as client, pytest.raises(SandboxError):
        client.health()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signals(signum: int) -> None:
    script = (
        "import sys\n"
        "from codevision.sandbox import SandboxConfig\n"
        "from codevision.sandbox.service import serve\n"
        "config = SandboxConfig(workers=1, memory_mb=1024)\n"
        "serve('127.0.0.1', 0, sys.argv[1], config, ready=lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, TOKEN], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        assert url.startswith("http://127.0.0.1:"), url
        with RemoteSandbox(url, TOKEN) as client:
            assert client.health() == {"ok": True}
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert output.strip() == "stopped"


def test_lineage_survives_the_service(remote: RemoteSandbox) -> None:
    # Everything the host needs to verify a shown image (trace ids, shown-at positions, bases) crosses HTTP.
    task = Task.from_images([scene_image(120, 90)], id="remote", question="q", answers=["a"])
    replies = [
        tool_call("display(image.rotate(90, expand=True))"),
        tool_call("display(image.crop((10, 20, 50, 60)))", 1),
        final("a"),
    ]
    trajectory = episode(remote, task, *replies)
    turned, crop = trajectory.images[1].lineage, trajectory.images[2].lineage
    assert turned is not None and crop is not None and turned.status == crop.status == "verified"
    # The crop of the turned image (90x120) at x 10..50, y 20..60 is input x 60..100, y 10..50.
    assert crop.box == pytest.approx((60.0, 10.0, 100.0, 50.0)) and crop.angle == 90.0


def png_claiming(width: int, height: int) -> Image.Image:
    """A lazily opened PNG whose header claims ``width`` x ``height``: decoding it would expand a bomb."""
    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return Image.open(io.BytesIO(bytes(data)))


def test_declared_sizes_are_checked_before_anything_is_decoded(
    server: SandboxServer, remote: RemoteSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int]] = []
    original = wire.decode_image
    monkeypatch.setattr(wire, "decode_image", lambda meta, data: decoded.append(meta["size"]) or original(meta, data))
    # 1 bit a pixel: 125 KB of body, a million pixels (ten times the server's budget) once decoded.
    meta, data = wire.encode_image(Image.new("1", (1000, 1000)))
    status, _, reply = raw(
        server.url, "POST", "/v1/sessions", b"".join(wire.pack({"images": [meta]}, [data])),
        {**AUTH, "Content-Type": FRAME_CONTENT_TYPE},
    )  # fmt: skip
    assert status == 413 and "max_input_pixels" in error_of(reply)
    assert decoded == []
    # The client refuses a PNG bomb from its header, before decoding or sending it, by the server's limit.
    bomb = png_claiming(9_000, 9_000)  # under PIL's own bomb warning, far above the server's budget
    opened = server.status()["remote_sessions"]
    with RemoteSandbox(server.url, TOKEN) as client:
        assert client.max_input_pixels == MAX_INPUT_PIXELS
        with pytest.raises(ValueError, match="max_input_pixels=100000"):
            client.session(images=[bomb]).open()
    assert RemoteSandbox(server.url, TOKEN, max_input_pixels=5).max_input_pixels == 5
    assert server.status()["remote_sessions"] == opened
    # A session request can never be larger than a session's memory could hold.
    assert server.max_session_bytes <= server.sandbox.config.memory_mb * 2**20 + 2**17


def test_a_deeply_nested_run_body_is_a_400(server: SandboxServer, remote: RemoteSandbox) -> None:
    with remote.session() as session:
        run_path = f"/v1/sessions/{session.session_id}/run"
        for body in (b'{"code": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"code": [' + b"[]," * 100_000 + b"[]]}"):
            status, _, data = raw(server.url, "POST", run_path, body, AUTH)
            assert status == 400 and "must be JSON" in error_of(data)
        assert session.run("print('unharmed')").stdout == "unharmed\n"


def test_serve_takes_a_queue_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from codevision.cli import app

    seen: list[SandboxConfig] = []
    monkeypatch.setattr("codevision.sandbox.service.serve", lambda *args, **kwargs: seen.append(args[3]))
    result = CliRunner().invoke(app, ["sandbox", "serve", "--token", TOKEN, "--queue-timeout", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen[0].queue_timeout == 2.5
    assert "--queue-timeout" in CliRunner().invoke(app, ["sandbox", "serve", "--help"]).output
