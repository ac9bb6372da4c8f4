"""Long waits for a model or a judge made visible: elapsed time and attempt, instead of silence.

A hung or overloaded server shows up first as a reply that does not come; without a sign of life a
user cannot tell a slow model from a dead one. Replies that come within :data:`SHOW_AFTER` seconds
show nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.status import Status

from codevision.policies.base import Waiting

T = TypeVar("T")

#: Seconds a reply may take before the wait is shown.
SHOW_AFTER = 3.0


class Waitable(Protocol):
    def waiting(self) -> Waiting | None: ...


Sources = Sequence[tuple[str, "Waitable | None"]]


def wait_message(sources: Sources) -> str | None:
    """The longest wait among ``(name, policy or judge)`` sources, if it is long enough to show."""
    longest: tuple[Waiting, str] | None = None
    for name, source in sources:
        wait = source.waiting() if source is not None else None
        if wait is not None and (longest is None or wait.seconds > longest[0].seconds):
            longest = (wait, name)
    if longest is None or longest[0].seconds < SHOW_AFTER:
        return None
    return longest[0].describe(longest[1])


class WaitSpinner:
    """A spinner with the wait's elapsed time and attempt, shown while a reply is late (``async with``)."""

    def __init__(self, console: Console, sources: Sources, *, interval: float = 0.5) -> None:
        self.console = console
        self.sources = sources
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._status: Status | None = None

    async def __aenter__(self) -> WaitSpinner:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._show(None)

    async def _watch(self) -> None:
        while True:
            self._show(wait_message(self.sources))
            await asyncio.sleep(self.interval)

    def _show(self, text: str | None) -> None:
        if text is None:
            if self._status is not None:
                self._status.stop()
                self._status = None
        elif self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)


async def with_wait_spinner(console: Console, sources: Sources, work: Awaitable[T]) -> T:
    """``work`` awaited with a :class:`WaitSpinner` over ``sources``."""
    async with WaitSpinner(console, sources):
        return await work
