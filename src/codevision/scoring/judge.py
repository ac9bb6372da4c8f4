"""An LLM judge on any OpenAI-compatible server, with a persistent cache and a record per verdict.

Official protocols use a judge in three places: HR-Bench asks one "yes"/"no" for every item,
MathVista asks one to extract the answer when its rules cannot, and CodeVision asks one when its
rule match fails. Judging is slow and costs money, and an evaluation is re-run many times over the
same responses, so every reply is cached on disk (SQLite, keyed by a hash of the model and the
prompt) and survives restarts; identical questions asked concurrently share one request.

Transport (retries with back-off on 429/5xx/timeouts/dropped connections, immediate errors for
other 4xx, concurrency cap) is :class:`~codevision.policies.openai.OpenAIPolicy`'s, at temperature 0.
A reply the parser cannot read is a recorded failure (``verdict is None`` with ``error`` set) and
is not cached, so a later run asks again; a server that never answers raises :class:`JudgeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import re
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from codevision.policies.base import PolicyError, Waiting
from codevision.policies.openai import OpenAIPolicy
from codevision.scoring.prompts import SYSTEM, JudgeKind, extraction_prompt, verdict_prompt
from codevision.trajectory import Message

T = TypeVar("T")

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_POSITIVE = frozenset({"1", "yes", "correct", "true", "right"})
_NEGATIVE = frozenset({"0", "no", "incorrect", "false", "wrong"})
_WORDS = (_POSITIVE | _NEGATIVE) - {"0", "1"}
_NEGATIONS = frozenset({"not", "t", "never"})
# "Verdict: 0", "score = 1", "judgement: **correct**"; not "answer", which a yes/no question's reference shares.
_LABELLED = re.compile(
    r"\b(?:verdict|judg(?:e)?ment|score|result|output|decision|grade|label)\b\s*(?:is\s*)?[:=]?\s*[*_`\"'(\[]*"
    r"(yes|no|correct|incorrect|true|false|1|0)\b(?!\.?\d)"
)
_EXTRACTION_LABEL = re.compile(r"^\s*(?:extracted\s+answer|final\s+answer|answer)\s*[:：]\s*", re.IGNORECASE)


class JudgeError(Exception):
    """The judge server gave no reply (down, refusing the request, or failing after every retry)."""


def parse_verdict(reply: str) -> bool | None:
    """The verdict in a judge's reply: True (correct), False (incorrect) or None (unreadable).

    Reads "1"/"0", "yes"/"no", "correct"/"incorrect", "true"/"false", "right"/"wrong", around
    markdown and explanation, after dropping a ``<think>`` block. In order: a reply that is just a
    verdict; a first line that is just one ("1" then an explanation); the last labelled one
    ("Verdict: 0", "Score: 1"); a verdict word that opens the reply (HR-Bench's judge is parsed by
    ``^(yes|no)``); verdict words that all agree ("not correct" counts as incorrect); a final lone
    digit. Words that disagree give None rather than a guess.
    """
    text = _THINK.sub(" ", reply).lower()
    tokens = _TOKEN.findall(text)
    if len(tokens) == 1 and tokens[0] in _POSITIVE | _NEGATIVE:
        return tokens[0] in _POSITIVE
    first_line = _TOKEN.findall(text.strip().split("\n", 1)[0])
    if len(first_line) == 1 and first_line[0] in _POSITIVE | _NEGATIVE:
        return first_line[0] in _POSITIVE
    labelled = _LABELLED.findall(text)
    if labelled:
        return labelled[-1] in _POSITIVE
    if tokens and tokens[0] in _WORDS:
        return tokens[0] in _POSITIVE
    found = {_polarity(tokens, index) for index, token in enumerate(tokens) if token in _WORDS}
    if len(found) == 1:
        return found.pop()
    if not found and tokens and tokens[-1] in ("0", "1"):
        return tokens[-1] == "1"
    return None


def _polarity(tokens: Sequence[str], index: int) -> bool:
    positive = tokens[index] in _POSITIVE
    return not positive if any(token in _NEGATIONS for token in tokens[max(0, index - 2) : index]) else positive


def parse_extraction(reply: str) -> str | None:
    """The answer in an extraction reply, without a leading "Extracted answer:" label or quotes.

    "NONE" (no answer in the response) becomes the empty string, which MathVista's normalisation
    then handles as it handles an empty extraction; an empty reply is unreadable (None).
    """
    text = _THINK.sub(" ", reply).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    answer = _EXTRACTION_LABEL.sub("", lines[-1] if _EXTRACTION_LABEL.match(lines[-1]) else lines[0])
    answer = answer.strip().strip("`\"'“”").strip()
    return "" if answer.upper() == "NONE" else answer


@dataclass(frozen=True)
class JudgeRecord:
    """What the judge said about one item.

    ``verdict`` is True/False for a verdict request and None for an extraction or an unreadable
    reply; ``extraction`` holds the extracted answer of an extraction request. ``raw`` is the
    judge's text as received, ``cached`` is True when no request was made for this call (a cache
    hit, or an identical request already in flight), ``key`` is the cache key, and ``error`` says
    why the reply could not be used.
    """

    kind: str
    model: str
    verdict: bool | None
    raw: str
    cached: bool
    key: str
    extraction: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class JudgeCache:
    """Judge replies on disk, keyed by :func:`cache_key`; safe across threads and processes.

    Every operation opens its own short-lived connection, so the cache can be used from worker
    threads, and SQLite's write-ahead log with a busy timeout lets several processes read and
    write the same file at once. The first reply stored for a key is kept.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                "key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt TEXT NOT NULL, reply TEXT NOT NULL, "
                "created REAL NOT NULL)"
            )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed (``with connect()`` only commits)."""
        db = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get(self, key: str) -> str | None:
        """The stored reply for ``key``, if any."""
        with self._connection() as db:
            row = db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, *, model: str, prompt: str, reply: str) -> None:
        """Store ``reply`` unless ``key`` already has one."""
        with self._connection() as db:
            db.execute(
                "INSERT OR IGNORE INTO replies (key, model, prompt, reply, created) VALUES (?, ?, ?, ?, ?)",
                (key, model, prompt, reply, time.time()),
            )

    def __len__(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])


def cache_key(model: str, messages: Sequence[Mapping[str, str]]) -> str:
    """SHA-256 of the model name and the exact prompt messages."""
    payload = json.dumps([model, list(messages)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class _LoopState:
    """What belongs to one event loop: the HTTP client and the requests in flight."""

    policy: OpenAIPolicy
    in_flight: dict[str, asyncio.Future[str]] = field(default_factory=dict)


class LLMJudge:
    """Asks a model on an OpenAI-compatible server to grade or extract answers.

    ``base_url`` is the server's ``/v1`` URL and ``model`` the name it serves. ``cache`` is the
    SQLite file for replies (None keeps nothing). ``retries``, ``backoff``, ``max_backoff`` and
    ``timeout`` behave as in :class:`~codevision.policies.openai.OpenAIPolicy`; ``max_tokens``
    leaves room for judges that think before answering. ``requests`` counts the requests that
    reached the transport, so tests and reports can see what the cache saved.

    Use ``await judge.verdict(...)`` and ``await judge.extract(...)`` from async code (the judge can
    serve several event loops; :meth:`aclose` closes the current loop's connections), or
    :meth:`verdict_sync`, :meth:`extract_sync` and :meth:`run_sync` from plain code.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        cache: str | Path | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_tokens: int = 1024,
        max_concurrency: int = 32,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        self.base_url = base_url
        self.model = model
        self.max_tokens = max_tokens
        self.cache = JudgeCache(cache) if cache is not None else None
        self.requests = 0
        self._policy_options: dict[str, Any] = {
            "api_key": api_key,
            "timeout": timeout,
            "retries": retries,
            "backoff": backoff,
            "max_backoff": max_backoff,
            "max_concurrency": max_concurrency,
            "temperature": 0.0,
            "extra_body": extra_body,
        }
        # Built and dropped only to reject a bad URL or option now rather than at the first request.
        OpenAIPolicy(base_url, model, **self._policy_options)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ public API
    async def verdict(
        self,
        *,
        kind: JudgeKind,
        question: str,
        reference: str,
        response: str,
        options: Sequence[str] = (),
    ) -> JudgeRecord:
        """Whether ``response`` answers ``question`` as ``reference`` does, judged with ``kind``'s prompt."""
        prompt = verdict_prompt(kind, question=question, reference=reference, response=response, options=options)
        raw, cached, key = await self._ask(prompt, parse=lambda text: parse_verdict(text) is not None)
        verdict = parse_verdict(raw)
        error = None if verdict is not None else "the judge's reply holds no readable verdict"
        return JudgeRecord(kind=kind, model=self.model, verdict=verdict, raw=raw, cached=cached, key=key, error=error)

    async def extract(self, *, question: str, response: str) -> JudgeRecord:
        """The final answer in ``response``, copied out by the judge (MathVista's extraction step)."""
        prompt = extraction_prompt(question=question, response=response)
        raw, cached, key = await self._ask(prompt, parse=lambda text: parse_extraction(text) is not None)
        extraction = parse_extraction(raw)
        error = None if extraction is not None else "the judge's reply is empty"
        return JudgeRecord(
            kind="extract",
            model=self.model,
            verdict=None,
            raw=raw,
            cached=cached,
            key=key,
            extraction=extraction,
            error=error,
        )

    async def complete(self, prompt: str, *, kind: str, system: str | None = None) -> JudgeRecord:
        """The judge's reply to ``prompt`` sent verbatim, unparsed (strict-official scoring's own prompts).

        ``system`` is the system message, None for none (the released scripts send the prompt alone).
        The caller reads ``raw`` as the benchmark's release does; an empty reply is a recorded failure.
        """
        raw, cached, key = await self._ask(prompt, system=system, parse=lambda text: text != "")
        error = None if raw else "the judge's reply is empty"
        return JudgeRecord(kind=kind, model=self.model, verdict=None, raw=raw, cached=cached, key=key, error=error)

    def verdict_sync(
        self,
        *,
        kind: JudgeKind,
        question: str,
        reference: str,
        response: str,
        options: Sequence[str] = (),
    ) -> JudgeRecord:
        """:meth:`verdict` for code without an event loop."""
        return self.run_sync(
            self.verdict(kind=kind, question=question, reference=reference, response=response, options=options)
        )

    def extract_sync(self, *, question: str, response: str) -> JudgeRecord:
        """:meth:`extract` for code without an event loop."""
        return self.run_sync(self.extract(question=question, response=response))

    def run_sync(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` (e.g. ``score_with_judge(...)``) to completion on a fresh event loop.

        The connections opened for it are closed before returning. Inside a running event loop this
        raises, since blocking there would stall every other task: await the coroutine instead.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise RuntimeError("LLMJudge's *_sync methods cannot run inside an event loop; await the async method")

        async def main() -> T:
            try:
                return await awaitable
            finally:
                await self.aclose()

        return asyncio.run(main())

    async def aclose(self) -> None:
        """Close the connections the current event loop opened."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.policy.aclose()

    def waiting(self) -> Waiting | None:
        """The longest wait for a judge reply now (any event loop), for a progress display."""
        waits = [wait for state in list(self._states.values()) if (wait := state.policy.waiting()) is not None]
        return max(waits, key=lambda wait: wait.seconds, default=None)

    async def __aenter__(self) -> LLMJudge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ internals
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = _LoopState(OpenAIPolicy(self.base_url, self.model, **self._policy_options))
            self._states[loop] = state
        return state

    async def _ask(
        self, prompt: str, *, parse: Callable[[str], bool], system: str | None = SYSTEM
    ) -> tuple[str, bool, str]:
        """The judge's raw reply to ``prompt``, whether it came without a request, and the cache key.

        ``parse`` says whether a reply is usable; only usable replies are stored in the cache.
        """
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        key = cache_key(self.model, messages)
        if self.cache is not None:
            stored = await asyncio.to_thread(self.cache.get, key)
            if stored is not None:
                return stored, True, key
        state = self._state()
        pending = state.in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True, key
        task = asyncio.ensure_future(self._request(state.policy, messages))
        state.in_flight[key] = task
        task.add_done_callback(lambda _: state.in_flight.pop(key, None))
        raw = await asyncio.shield(task)
        if self.cache is not None and parse(raw):
            await asyncio.to_thread(self.cache.put, key, model=self.model, prompt=prompt, reply=raw)
        return raw, False, key

    async def _request(self, policy: OpenAIPolicy, messages: Sequence[Mapping[str, str]]) -> str:
        self.requests += 1
        conversation = [Message.of(message["role"], message["content"]) for message in messages]  # type: ignore[arg-type]
        try:
            generation = await policy.generate(conversation, [], max_tokens=self.max_tokens)
        except PolicyError as exc:
            raise JudgeError(f"judge {self.model!r} at {self.base_url}: {exc}") from exc
        return generation.text
