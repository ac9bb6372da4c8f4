"""A scripted OpenAI-compatible chat-completions server, for tests, demos and client-side benchmarks.

Real servers need a GPU and a model and never fail on cue; this one answers from a script, fails
on demand (HTTP errors, dropped connections, invalid JSON, stalls), validates requests as strictly
as vLLM does (so a client bug shows up here, not on the cluster) and records what it received.

In-process::

    with FakeOpenAIServer(["<code>crop()</code>", "<answer>4</answer>"], faults=[429, "drop"]) as server:
        policy = OpenAIPolicy(server.url, server.model)
        ...
        assert server.requests[-1].images()[0].size == (640, 480)

As a separate process (no GIL shared with the client, e.g. for benchmarks)::

    python -m codevision.policies.fake_server --reply "<answer>4</answer>" --port 8000 --instant

prints the base URL on its first line of output and serves until interrupted;
:class:`FakeServerProcess` does this from Python.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import io
import json
import logging
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from codevision.httpserver import TrackedHandler, TrackingHTTPServer

logger = logging.getLogger("codevision.policies.fake_server")

#: A list of replies, picked by how many assistant messages the request already holds, or a function
#: of the request body returning the reply text.
Script = Sequence[str] | Callable[[dict[str, Any]], str]
#: What to do to one request instead of answering it: an HTTP status (429, 500, 503, 400, ...),
#: ``"drop"`` (close the connection without a reply), ``"malformed"`` (HTTP 200 with a body that is
#: not JSON) or ``"stall"`` (answer only after ``stall_seconds``, to make clients time out).
Fault = int | Literal["drop", "malformed", "stall"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,(?P<data>.*)", re.DOTALL)
_WORD = re.compile(r"\S+")
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)
_PATCH = 28


class RequestError(Exception):
    """A request a real server would refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RecordedRequest:
    """One ``POST /v1/chat/completions`` as received; ``body`` is None when it was not JSON.

    Header names are lower-case, since HTTP clients differ in how they spell them.
    """

    body: dict[str, Any] | None
    headers: dict[str, str]
    fault: Fault | None = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    def images(self) -> list[Image.Image]:
        """The request's images, decoded, in the order they appear in the conversation."""
        return [decode_data_url(url) for url in _image_urls(self.messages)]


def decode_data_url(url: str) -> Image.Image:
    """The image in a ``data:image/...;base64,`` URL; :class:`RequestError` (400) if it is not one."""
    image = _open_data_url(url)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(400, f"the image data does not decode as an image: {exc}") from exc
    return image


def _open_data_url(url: str) -> Image.Image:
    """Checks the URL, the base64 and the image header only; pixels are decoded lazily."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise RequestError(400, f"image URLs must be base64 data URLs (data:image/png;base64,...), got {url[:60]!r}")
    try:
        raw = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"the image data URL is not valid base64: {exc}") from exc
    try:
        return Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError(400, f"the image data is not an image Pillow can read: {exc}") from exc


def _image_urls(messages: Iterable[dict[str, Any]]) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


class FakeOpenAIServer:
    """An OpenAI-compatible server on a background thread; ``url`` is the base URL to give a client.

    It serves ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health``, one thread per
    connection with HTTP/1.1 keep-alive, so a client can hold hundreds of connections at once.

    Replies come from ``script``. A reply is cut to ``max_tokens`` words (finish reason
    ``"length"``), usage counts words and 28×28 image patches, and ``"return_token_ids": true``
    adds word-hash ``token_ids`` to the choice as vLLM does with real ids.

    ``faults`` (and later :meth:`fail`) queue faults that the next chat requests suffer one each,
    in order; status faults carry ``Retry-After: retry_after`` when that is set. Every reply waits
    ``delay + seconds_per_token × completion_tokens``, unless ``instant``: then nothing waits and
    images are only checked up to their headers, not decoded, to measure the client alone.

    Like OpenAI's API, a ``tool`` message that answers no assistant ``tool_calls`` is refused
    (HTTP 400) unless ``reject_orphan_tool_messages=False``. ``record=False`` keeps no requests,
    for long benchmarks.

    ``tools`` and ``tool_choice`` are checked as vLLM checks them: with tools, a missing
    ``tool_choice`` means ``"auto"``, which is refused unless ``tool_parser``; with
    ``tool_parser`` and ``"auto"``, the reply's ``<tool_call>`` blocks are taken out of the content
    into ``tool_calls`` the way vLLM's hermes parser does (the content keeps the text before the
    first call). With ``reasoning_parser``, a leading ``<think>…</think>`` goes into
    ``reasoning_content`` as vLLM's Qwen3 reasoning parser puts it (``reasoning`` in newer vLLM).
    """

    def __init__(
        self,
        script: Script = ("OK",),
        *,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        seconds_per_token: float = 0.0,
        instant: bool = False,
        faults: Iterable[Fault] = (),
        retry_after: float | None = None,
        stall_seconds: float = 30.0,
        reject_orphan_tool_messages: bool = True,
        tool_parser: bool = False,
        reasoning_parser: str | None = None,
        record: bool = True,
    ) -> None:
        self.script = script
        self.tool_parser = tool_parser
        self.reasoning_parser = reasoning_parser
        self.model = model
        self.delay = delay
        self.seconds_per_token = seconds_per_token
        self.instant = instant
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.reject_orphan_tool_messages = reject_orphan_tool_messages
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._httpd = _HTTPServer(host, port, self)
        self.fail(*faults)
        # A short poll interval: close() waits for it, and tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-openai-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    def fail(self, *faults: Fault) -> None:
        """Queue faults for the next chat requests, one request each."""
        for fault in faults:
            if not (isinstance(fault, int) and 400 <= fault <= 599) and fault not in ("drop", "malformed", "stall"):
                raise ValueError(f"a fault is an HTTP error status, 'drop', 'malformed' or 'stall', not {fault!r}")
        with self._lock:
            self._faults.extend(faults)

    def close(self) -> None:
        """Stop serving and end open connections (stalled replies give up at once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections(wait=2.0)
        self._thread.join()

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ request handling (handler threads)
    def _begin(self, body: dict[str, Any] | None, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
            self.request_count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.record:
                self.requests.append(RecordedRequest(body=body, headers=headers, fault=fault))
        return fault

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for a valid request; raises :class:`RequestError` for an invalid one."""
        messages, patches = self._validate(body)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise RequestError(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
        parse_calls = self._tool_choice(body) == "auto"
        text = self._reply(body, messages)
        words = list(_WORD.finditer(text))
        finish_reason = "stop"
        if max_tokens is not None and len(words) > max_tokens:
            text, words, finish_reason = text[: words[max_tokens - 1].end()], words[:max_tokens], "length"
        prompt_tokens = _count_words(messages) + patches
        if not self.instant:
            wait = self.delay + self.seconds_per_token * len(words)
            if wait > 0:
                self._closed.wait(wait)
        reasoning, text = _split_reasoning(text) if self.reasoning_parser else (None, text)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if parse_calls:
            message, finish_reason = _hermes_tool_calls(text, finish_reason)
        if reasoning is not None and self.reasoning_parser:
            message[self.reasoning_parser] = reasoning
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        if body.get("return_token_ids"):
            choice["token_ids"] = [zlib.crc32(word.group().encode()) % 32000 for word in words]
        return {
            "id": f"chatcmpl-fake-{self.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }

    def _validate(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The request's messages and the number of image patches they hold; refuses what vLLM would."""
        if body.get("model") != self.model:
            raise RequestError(404, f"The model `{body.get('model')}` does not exist; this server has {self.model!r}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty list")
        answered_calls = False
        patches = 0
        for number, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise RequestError(400, f"messages[{number}] must be an object with a role in {sorted(_ROLES)}")
            role, content = message["role"], message.get("content")
            if role == "tool" and self.reject_orphan_tool_messages and not answered_calls:
                raise RequestError(
                    400, f"messages[{number}]: a message with role 'tool' must answer a message with 'tool_calls'"
                )
            if role != "tool":
                answered_calls = role == "assistant" and bool(message.get("tool_calls"))
            if content is None and role == "assistant":
                continue
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise RequestError(400, f"messages[{number}].content must be a string or a list of parts")
            for index, part in enumerate(content):
                patches += self._validate_part(part, f"messages[{number}].content[{index}]")
        return messages, patches

    def _tool_choice(self, body: dict[str, Any]) -> str:
        """The request's effective tool_choice, refusing what vLLM refuses (without a parser, ``auto``)."""
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list) or not tools:
                raise RequestError(400, "`tools` must be a non-empty array of tools, or left out")
            for number, tool in enumerate(tools):
                function = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(function, dict) or tool.get("type") != "function" or "name" not in function:
                    raise RequestError(
                        400, f"tools[{number}] must be {{'type': 'function', 'function': {{'name': ...}}}}"
                    )
        choice = body.get("tool_choice", "auto" if tools else "none")
        if choice not in ("auto", "none"):
            raise RequestError(400, f"Invalid value for `tool_choice`: {choice!r}")
        if choice == "auto" and "tool_choice" in body and not tools:
            raise RequestError(400, "When using `tool_choice`, `tools` must be set.")
        if choice == "auto" and tools and not self.tool_parser:
            raise RequestError(
                400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
            )
        return choice if tools else "none"

    def _validate_part(self, part: Any, where: str) -> int:
        """Checks one content part; returns its image patches (28×28, as Qwen2.5-VL counts them)."""
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise RequestError(400, f"{where}: a text part needs a string 'text'")
            return 0
        if kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else None
            if not isinstance(url, str):
                raise RequestError(400, f"{where}: an image_url part needs {{'image_url': {{'url': ...}}}}")
            width, height = (_open_data_url(url) if self.instant else decode_data_url(url)).size
            return math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
        raise RequestError(400, f"{where}: unsupported content part type {kind!r}")

    def _reply(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> str:
        if callable(self.script):
            try:
                return str(self.script(body))
            except Exception as exc:
                raise RequestError(500, f"the script function failed: {exc!r}") from exc
        turn = sum(1 for message in messages if message["role"] == "assistant")
        if turn >= len(self.script):
            raise RequestError(
                400, f"the script has {len(self.script)} replies and the conversation asked for reply {turn + 1}"
            )
        return self.script[turn]


def _split_reasoning(text: str) -> tuple[str | None, str]:
    """The thought and the rest of a reply, as vLLM's Qwen3 reasoning parser splits it."""
    start, end = text.find("<think>"), text.find("</think>")
    if start != 0 and not (start < 0 <= end):
        return None, text
    thought = text[start + len("<think>") if start == 0 else 0 : end if end >= 0 else len(text)]
    rest = text[end + len("</think>") :] if end >= 0 else ""
    return thought.strip("\n"), rest.lstrip("\n")


def _hermes_tool_calls(text: str, finish_reason: str) -> tuple[dict[str, Any], str]:
    """The assistant message and finish reason vLLM's hermes parser makes of ``text``: calls out, the text
    before the first one kept; all-or-nothing, so one unreadable call leaves the text as it is."""
    if "<tool_call>" not in text:
        return {"role": "assistant", "content": text}, finish_reason
    try:
        calls = [json.loads(closed or open_) for closed, open_ in _TOOL_CALL.findall(text)]
        tool_calls = [
            {
                "id": f"call-{number}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
            }
            for number, call in enumerate(calls)
        ]
    except (ValueError, KeyError, TypeError):
        return {"role": "assistant", "content": text}, finish_reason
    content = text[: text.find("<tool_call>")] or None
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}, "tool_calls"


def _count_words(messages: list[dict[str, Any]]) -> int:
    words = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            words += len(_WORD.findall(content))
        elif isinstance(content, list):
            words += sum(len(_WORD.findall(part["text"])) for part in content if part["type"] == "text")
    return words


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, host: str, port: int, fake: FakeOpenAIServer) -> None:
        self.fake = fake
        super().__init__(host, port, _Handler)


class _Handler(TrackedHandler):
    server_version = "codevision-fake-openai"
    server: _HTTPServer

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": fake.model, "object": "model", "created": 0, "owned_by": "codevision"}
            self._send_json(200, {"object": "list", "data": [model]})
        elif self.path == "/health":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(404, f"no route POST {self.path}")
            return
        fake = self.server.fake
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault = fake._begin(body if isinstance(body, dict) else None, headers)
        try:
            self._answer(fake, body, fault)
        finally:
            fake._end()

    def _answer(self, fake: FakeOpenAIServer, body: Any, fault: Fault | None) -> None:
        if fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "malformed":
            self._send_bytes(200, b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "trunc')
            return
        if isinstance(fault, int):
            headers = {} if fake.retry_after is None else {"Retry-After": f"{fake.retry_after:g}"}
            self._send_error(fault, f"injected failure: HTTP {fault}", headers)
            return
        if fault == "stall" and fake._closed.wait(fake.stall_seconds):
            return
        if not isinstance(body, dict):
            self._send_error(400, "the request body must be a JSON object")
            return
        try:
            self._send_json(200, fake._complete(body))
        except RequestError as exc:
            self._send_error(exc.status, str(exc))

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "BadRequestError" if status < 500 else "InternalServerError"
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": status}}, headers)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(data).encode(), headers)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        with contextlib.suppress(OSError):  # the client may have given up already
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)


class FakeServerProcess:
    """:class:`FakeOpenAIServer` in a child process with a list script; ``url`` is its base URL."""

    def __init__(
        self,
        replies: Sequence[str] = ("OK",),
        *,
        model: str = "fake-model",
        delay: float = 0.0,
        seconds_per_token: float = 0.0,
        instant: bool = False,
        faults: Iterable[Fault] = (),
        retry_after: float | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        command = [sys.executable, "-m", "codevision.policies.fake_server", "--model", model]
        command += ["--delay", str(delay), "--seconds-per-token", str(seconds_per_token)]
        command += [arg for reply in replies for arg in ("--reply", reply)]
        command += [arg for fault in faults for arg in ("--fail", str(fault))]
        if instant:
            command.append("--instant")
        if retry_after is not None:
            command += ["--retry-after", str(retry_after)]
        self.model = model
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self._url = ""
        ready = threading.Thread(target=self._read_url, daemon=True)
        ready.start()
        ready.join(start_timeout)
        if not self._url.startswith("http"):
            self.close()
            raise RuntimeError(
                f"the fake server did not start within {start_timeout} s (exit status {self._process.returncode}); "
                "its error output is above"
            )

    def _read_url(self) -> None:
        if self._process.stdout is not None:
            self._url = self._process.stdout.readline().strip()

    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        """Stop the server process."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> FakeServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fault(value: str) -> Fault:
    if value.isdigit():
        return int(value)
    if value in ("drop", "malformed", "stall"):
        return value  # type: ignore[return-value]
    raise argparse.ArgumentTypeError(f"{value!r} is not an HTTP status, 'drop', 'malformed' or 'stall'")


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; the first line of output is the base URL."""
    parser = argparse.ArgumentParser(
        prog="python -m codevision.policies.fake_server", description="A scripted OpenAI-compatible server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--reply", action="append", default=[], help="the next reply of every conversation (repeat)")
    parser.add_argument("--script", help="a JSON file holding the list of replies")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every reply")
    parser.add_argument("--seconds-per-token", type=float, default=0.0)
    parser.add_argument("--instant", action="store_true", help="no waiting and no image decoding")
    parser.add_argument("--fail", type=_fault, action="append", default=[], help="a fault for the next request")
    parser.add_argument("--retry-after", type=float)
    args = parser.parse_args(argv)
    replies = list(args.reply)
    if args.script:
        with open(args.script, encoding="utf-8") as fh:
            replies += [str(reply) for reply in json.load(fh)]
    # Block the signals before any thread starts, so that only sigwait below receives them.
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = FakeOpenAIServer(
        replies or ["OK"],
        model=args.model,
        host=args.host,
        port=args.port,
        delay=args.delay,
        seconds_per_token=args.seconds_per_token,
        instant=args.instant,
        faults=args.fail,
        retry_after=args.retry_after,
        record=False,
    )
    print(server.url, flush=True)
    signal.sigwait(stop)
    server.close()


if __name__ == "__main__":
    main()
