"""A policy backed by OpenAI-compatible chat-completions servers (vLLM, SGLang, ``transformers serve``, ...).

Rollouts send many long, image-heavy requests at once to servers that are busy, restarting or
sharded across GPUs, so this client is built for that: a concurrency cap, retries with
exponential back-off for the failures that pass (429, 5xx, timeouts, dropped connections),
immediate errors for the ones that do not (other 4xx, with the server's own explanation), and
several base URLs served least-loaded first with fail-over when one stops accepting connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import io
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from PIL import Image

from codevision.policies.base import Generation, ModelUnavailableError, Policy, PolicyError, Waiting
from codevision.trajectory import ImagePart, Message, TextPart, Usage

ImageFormat = Literal["png", "jpeg"]
ToolRole = Literal["user", "tool"]
ToolChoice = Literal["auto", "none"]

#: Client-error statuses worth another try (overloaded, timed out); every 5xx is retried too.
_RETRY_STATUSES = frozenset({408, 429})
#: PNG modes Pillow writes losslessly; anything else (CMYK, F, ...) is sent as RGB.
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
_MAX_ERROR_CHARS = 500


class OpenAIPolicy(Policy):
    """Generates with ``POST {base_url}/chat/completions`` on one or more OpenAI-compatible servers.

    ``base_urls`` follow the OpenAI SDK convention (``http://host:8000/v1``); a URL without a path
    gets ``/v1``. With several URLs (data-parallel replicas) each request goes to the one with the
    fewest requests in flight from this client, and a URL that refuses connections is skipped for
    :attr:`down_seconds` while the others take over.

    Images are sent inline as base64 data URLs, PNG by default so the model sees exactly the
    pixels the trajectory records; ``image_format="jpeg"`` makes requests several times smaller
    for remote servers at the cost of exactness.

    Tool results are sent as ``user`` messages wrapped in ``<tool_response>…</tool_response>``
    unless ``tool_role="tool"``. The agent parses actions from the model's text, so the assistant
    messages carry no ``tool_calls``; OpenAI's API and strict servers and chat templates reject a
    ``tool`` message that answers no tool call, and servers started without a tool parser never
    produce tool calls at all. The wrapper is what Qwen-style chat templates render for a tool
    turn, so the model still sees the format it was trained on.

    ``tools`` (function schemas) are sent as the request's ``tools`` field, so the server's chat
    template renders them; by default none are sent, since the protocol's system prompt describes
    its tool. ``tool_choice`` is sent only when given: servers read a request with tools and no
    ``tool_choice`` as ``"auto"``, which vLLM refuses unless it runs a tool parser; ``"none"``
    makes vLLM render the schemas and return the text as written, but makes SGLang leave them out
    (docs/chat.md). A server that parses tool calls out of the reply returns them as
    ``message.tool_calls``; they are written back into the text as the ``<tool_call>`` blocks the
    model wrote (exactly, up to JSON spacing and escapes), so the protocol reads them as usual.

    ``timeout`` bounds each wait on a server, so it must cover the longest generation; connecting
    gives up after at most 10 s so that fail-over is quick. ``retries`` counts extra attempts after
    the first; waits grow as ``backoff * 2**attempt`` up to ``max_backoff``, with jitter so that
    many rollouts do not retry in lock-step, and follow a server's ``Retry-After`` (up to
    ``max_backoff``). ``extra_body`` is merged into every request,
    e.g. ``{"return_token_ids": True}`` on vLLM to get :attr:`Generation.token_ids`, or
    ``{"chat_template_kwargs": {"enable_thinking": False}}``.

    A circuit breaker stops a dead deployment from costing every caller its full retry schedule:
    after ``breaker`` failed attempts in a row (every URL refusing, timing out or answering 5xx,
    across all requests of this client), every request fails at once with
    :class:`ModelUnavailableError` and :attr:`unavailable` says why, until :attr:`breaker_cooldown`
    has passed and one request may try again; any answer closes it.
    ``breaker=None`` turns it off.

    Like its connections, a policy belongs to the event loop that first uses it.
    """

    #: How long a base URL that refused a connection is avoided while other URLs are available.
    down_seconds: float = 5.0
    #: How long a tripped circuit breaker fails requests at once before letting one try again.
    breaker_cooldown: float = 30.0

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        image_format: ImageFormat = "png",
        jpeg_quality: int = 90,
        temperature: float = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        tool_role: ToolRole = "user",
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | None = None,
        breaker: int | None = 8,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAIPolicy needs at least one base URL, e.g. http://127.0.0.1:8000/v1")
        self.base_urls = [_normalise_base_url(url) for url in urls]
        if not model:
            raise ValueError("OpenAIPolicy needs the model name the server serves (GET /v1/models lists them)")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0:
            raise ValueError("retries, backoff and max_backoff must not be negative, and timeout must be positive")
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")
        if tool_role not in ("user", "tool"):
            raise ValueError(f"tool_role must be 'user' or 'tool', not {tool_role!r}")
        if breaker is not None and breaker < 1:
            raise ValueError(f"breaker must be at least 1 (or None to turn it off), not {breaker}")
        if tools is not None and not tools:
            raise ValueError("tools is empty, which servers refuse; pass None to send no tool schemas")
        if tool_choice not in (None, "auto", "none"):
            raise ValueError(f"tool_choice must be 'auto' or 'none' (or None to leave it out), not {tool_choice!r}")
        if tool_choice is not None and tools is None:
            raise ValueError("tool_choice needs tools: servers refuse a tool_choice without tool schemas")
        self.tools = [dict(tool) for tool in tools] if tools is not None else None
        self.tool_choice: ToolChoice | None = tool_choice
        self.breaker = breaker
        self._failed_in_a_row = 0
        self._last_failure = ""
        self._last_failed_at = 0.0
        self.name = model
        self.model = model
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.image_format: ImageFormat = image_format
        self.jpeg_quality = jpeg_quality
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self.tool_role: ToolRole = tool_role
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {key}"},
            # A short connect timeout lets fail-over happen long before a generation would time out.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._in_flight = dict.fromkeys(self.base_urls, 0)
        self._down_until = dict.fromkeys(self.base_urls, 0.0)
        self._next = 0
        # Per request in progress: when it started and which attempt it is on.
        self._waits: dict[object, list[float]] = {}

    # ------------------------------------------------------------------ public API
    async def generate(
        self, messages: Sequence[Message], images: Sequence[Image.Image], *, max_tokens: int
    ) -> Generation:
        """One chat completion; ``seconds`` is the wall time of the call, retries and queueing included."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        start = time.perf_counter()
        # Encoding large PNGs takes tens of milliseconds; a thread keeps the event loop responsive.
        wire_messages = await asyncio.to_thread(self.to_openai_messages, messages, images)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": wire_messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.seed is not None:
            body["seed"] = self.seed
        if self.tools is not None:
            body["tools"] = self.tools
        if self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice
        body.update(self.extra_body)
        data, url = await self._post(body)
        generation = self._parse(data, url)
        generation.seconds = time.perf_counter() - start
        return generation

    def to_openai_messages(self, messages: Sequence[Message], images: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """The chat-completions ``messages`` for ``messages``, images inlined as data URLs.

        Each image is encoded once per call however often the conversation refers to it.
        """
        encoded: dict[int, str] = {}

        def image_url(index: int) -> str:
            if not 0 <= index < len(images):
                raise ValueError(f"a message refers to image {index} but generate() got {len(images)} images")
            image = images[index]
            if id(image) not in encoded:
                encoded[id(image)] = self.encode_image(image)
            return encoded[id(image)]

        converted = []
        for message in messages:
            role: str = message.role
            parts: list[TextPart | ImagePart] = list(message.content)
            if role == "tool" and self.tool_role == "user":
                role = "user"
                parts = [TextPart(text="<tool_response>\n"), *parts, TextPart(text="\n</tool_response>")]
            content: list[dict[str, Any]] = []
            for part in parts:
                if isinstance(part, ImagePart):
                    content.append({"type": "image_url", "image_url": {"url": image_url(part.index)}})
                elif content and content[-1]["type"] == "text":
                    content[-1]["text"] += part.text
                else:
                    content.append({"type": "text", "text": part.text})
            if all(item["type"] == "text" for item in content):
                # Plain strings are the one content form every server and chat template accepts.
                converted.append({"role": role, "content": "".join(item["text"] for item in content)})
            else:
                converted.append({"role": role, "content": content})
        return converted

    def encode_image(self, image: Image.Image) -> str:
        """``image`` as a ``data:`` URL in the configured format."""
        buffer = io.BytesIO()
        if self.image_format == "png":
            if image.mode not in _PNG_MODES:
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            # Level 1 is several times faster than the default and the images are re-sent every turn.
            image.save(buffer, format="PNG", compress_level=1)
        else:
            if image.mode != "RGB":
                image = image.convert("RGB")
            image.save(buffer, format="JPEG", quality=self.jpeg_quality)
        return f"data:image/{self.image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def __aenter__(self) -> OpenAIPolicy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport
    def _pick_url(self) -> str:
        """The reachable URL with the fewest requests in flight; ties rotate so sequential calls spread too."""
        now = time.monotonic()
        count = len(self.base_urls)
        order = [self.base_urls[(self._next + i) % count] for i in range(count)]
        self._next = (self._next + 1) % count
        up = [url for url in order if self._down_until[url] <= now]
        if not up:  # every URL failed recently: try the one that has rested longest
            return min(order, key=lambda url: self._down_until[url])
        return min(up, key=lambda url: self._in_flight[url])

    def _any_up(self) -> bool:
        now = time.monotonic()
        return any(until <= now for until in self._down_until.values())

    async def _post(self, body: dict[str, Any]) -> tuple[Any, str]:
        """POST ``body`` until a server answers it or the retries run out; returns the JSON reply and its URL."""
        payload = json.dumps(body).encode()
        ticket = object()
        self._waits[ticket] = [time.monotonic(), 1]
        try:
            return await self._attempts(payload, ticket)
        finally:
            del self._waits[ticket]

    async def _attempts(self, payload: bytes, ticket: object) -> tuple[Any, str]:
        headers = {"Content-Type": "application/json"}
        failures: list[str] = []
        attempts = self.retries + 1
        for attempt in range(attempts):
            self._waits[ticket][1] = attempt + 1
            if self.unavailable is not None:
                raise ModelUnavailableError(self.unavailable)
            retry_after: float | None = None
            failed_before = len(failures)
            async with self._semaphore:
                url = self._pick_url()
                self._in_flight[url] += 1
                try:
                    response = await self._client.post(f"{url}/chat/completions", content=payload, headers=headers)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    self._down_until[url] = time.monotonic() + self.down_seconds
                    failures.append(f"{url}: cannot connect ({_describe(exc)})")
                    if self._any_up() and attempt + 1 < attempts:
                        continue  # fail over to another URL at once
                    response = None
                except httpx.TimeoutException as exc:
                    failures.append(f"{url}: timed out ({_describe(exc)})")
                    response = None
                except httpx.TransportError as exc:  # dropped connection, reset, protocol error
                    failures.append(f"{url}: connection failed ({_describe(exc)})")
                    response = None
                finally:
                    self._in_flight[url] -= 1
            if response is not None:
                if response.status_code == 200:
                    try:
                        data = response.json()
                    except ValueError:  # truncated by a proxy or a dying server: worth another try
                        failures.append(f"{url}: the reply is not JSON: {response.text[:100]!r}")
                    else:
                        self._failed_in_a_row = 0
                        return data, url
                elif response.status_code in _RETRY_STATUSES or response.status_code >= 500:
                    failures.append(f"{url}: HTTP {response.status_code}: {_server_message(response)}")
                    retry_after = _retry_after(response)
                else:
                    self._failed_in_a_row = 0  # the server is there; it refused this request
                    raise PolicyError(self._rejection(url, response))
            if len(failures) > failed_before:
                self._failed_in_a_row += 1
                self._last_failure, self._last_failed_at = failures[-1], time.monotonic()
                if self.unavailable is not None:
                    raise ModelUnavailableError(self.unavailable)
            if attempt + 1 < attempts:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                delay = delay / 2 + random.uniform(0, delay / 2)
                if retry_after is not None:
                    delay = min(self.max_backoff, retry_after)
                await asyncio.sleep(delay)
        raise PolicyError(
            f"model {self.model!r} gave no reply after {attempts} attempts; last error: {failures[-1]}. "
            "Check that the server is running and reachable, or raise retries/timeout if it is overloaded."
        )

    def waiting(self) -> Waiting | None:
        if not self._waits:
            return None
        started = min(start for start, _ in self._waits.values())
        attempt = max(int(attempt) for _, attempt in self._waits.values())
        return Waiting(time.monotonic() - started, attempt, self.retries + 1, len(self._waits))

    @property
    def unavailable(self) -> str | None:  # type: ignore[override]
        """Why every request now fails at once (the breaker tripped), or None; after
        :attr:`breaker_cooldown` seconds one request may try again."""
        if self.breaker is None or self._failed_in_a_row < self.breaker:
            return None
        if time.monotonic() - self._last_failed_at >= self.breaker_cooldown:
            return None
        return (
            f"model {self.model!r} is unreachable: the last {self._failed_in_a_row} attempts on "
            f"{', '.join(self.base_urls)} all failed (last: {self._last_failure}). Check that the server is "
            "running and reachable; a run stopped for this continues with --resume."
        )

    def _rejection(self, url: str, response: httpx.Response) -> str:
        message = (
            f"{url} rejected the request for model {self.model!r} with HTTP {response.status_code}: "
            f"{_server_message(response)}"
        )
        if response.status_code in (401, 403):
            return f"{message} (check api_key or OPENAI_API_KEY)"
        if response.status_code == 404:
            return f"{message} (check that the base URL ends in /v1 and that GET /v1/models lists the model)"
        if "enable-auto-tool-choice" in message:
            return (
                f"{message} (vLLM renders tool schemas without a tool parser when the request sets tool_choice "
                "'none', which also keeps the reply as the model wrote it: pass --tool-choice none)"
            )
        return message

    def _parse(self, data: Any, url: str) -> Generation:
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise PolicyError(f"{url} answered model {self.model!r} without choices[0].message: {data!r:.300}") from exc
        if not isinstance(choice, dict) or not isinstance(message, dict):
            raise PolicyError(f"{url} answered model {self.model!r} with a malformed choice: {choice!r:.300}")
        text = with_reasoning(
            message.get("content") or "", message.get("reasoning_content") or message.get("reasoning")
        )
        if message.get("tool_calls"):
            try:
                text = with_tool_calls(text, message["tool_calls"])
            except ValueError as exc:
                raise PolicyError(f"{url} answered model {self.model!r} with unreadable tool_calls: {exc}") from exc
        usage = data.get("usage") or {}
        token_ids = choice.get("token_ids")
        return Generation(
            text=text,
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=usage.get("completion_tokens") or 0
            ),
            finish_reason=choice.get("finish_reason"),
            token_ids=list(token_ids) if isinstance(token_ids, list) else None,
        )


def with_reasoning(content: str, reasoning: Any) -> str:
    """The reply with its thought put back where the model wrote it, from a server whose reasoning
    parser moved it out (vLLM and SGLang ``--reasoning-parser``: ``reasoning_content``, or ``reasoning``).

    The thought is part of what the model generated: dropping it would train on replies it never
    wrote and show it a history without its reasoning. It goes back in a ``<think>`` block, as Qwen
    templates render ``reasoning_content``; a reply that still holds its ``<think>`` is left alone.
    """
    if not isinstance(reasoning, str) or not reasoning.strip() or "<think>" in content:
        return content
    return f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{content.lstrip(chr(10))}"


def with_tool_calls(content: str, tool_calls: Any) -> str:
    """The text the model wrote, from a reply whose tool calls a server's parser took out of it.

    Each call becomes a Qwen/Hermes block (``<tool_call>``, newline, ``{"name": ..., "arguments":
    {...}}``, newline, ``</tool_call>``) after the content: vLLM's hermes parser keeps the text before
    the first call, ``transformers serve`` the text around the calls. The JSON is re-serialised, so
    spacing and escapes may differ from what was sampled, and text the server dropped (after the last
    call, for vLLM) is lost. A server without a tool parser returns the reply unchanged (docs/chat.md).
    """
    if not isinstance(tool_calls, list):
        raise ValueError(f"tool_calls must be a list, not {tool_calls!r:.100}")
    blocks = [f"<tool_call>\n{_call_json(call, number)}\n</tool_call>" for number, call in enumerate(tool_calls)]
    separator = "\n" if content and not content[-1].isspace() else ""
    return content + separator + "\n".join(blocks)


def _call_json(call: Any, number: int) -> str:
    """One tool call as the JSON object the model wrote: arguments decoded when they are a JSON string."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"tool_calls[{number}] has no function name: {call!r:.200}")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        # Left a string when it is not JSON: the protocol then tells the model its arguments are invalid.
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)


def _normalise_base_url(url: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"base URL {url!r} must look like http://HOST:PORT/v1")
    url = url.rstrip("/")
    return url if parsed.path.strip("/") else f"{url}/v1"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _server_message(response: httpx.Response) -> str:
    """The explanation in an error reply: OpenAI and vLLM nest it in ``error``, FastAPI uses ``detail``."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:_MAX_ERROR_CHARS] or "(empty reply)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_MAX_ERROR_CHARS]
        for key in ("error", "message", "detail"):
            if data.get(key):
                return str(data[key])[:_MAX_ERROR_CHARS]
    return json.dumps(data)[:_MAX_ERROR_CHARS]


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds; the header holds either a number of seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
