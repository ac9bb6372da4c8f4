"""The surface local and remote sessions share, so code written against one runs on the other."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from typing_extensions import Self

from codevision.sandbox.errors import SandboxError
from codevision.sandbox.results import RunResult

T = TypeVar("T")


class SessionAPI(ABC):
    """A stateful session: ``open``/``close``/``run`` plus context managers and ``arun`` built on them.

    The async forms run the blocking calls on the owning sandbox's executor, sized so that every
    live session can wait at once without starving the event loop's default pool.
    """

    @property
    @abstractmethod
    def _executor(self) -> Executor: ...

    @abstractmethod
    def open(self) -> Self: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def run(self, code: str, timeout: float | None = None, image_index: int | None = None) -> RunResult:
        """Execute one code cell; ``image_index`` binds ``image`` to that image of the trajectory
        (the inputs, then every image returned so far, in order) before the cell runs."""

    async def arun(self, code: str, timeout: float | None = None, image_index: int | None = None) -> RunResult:
        """Asyncio version of :meth:`run`; many sessions can run concurrently from one event loop."""
        return await self._offload(self.run, code, timeout, image_index)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self._offload(self.open)

    async def __aexit__(self, *exc: Any) -> None:
        await self._offload(self.close)

    async def _offload(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the sandbox's executor; a sandbox closed meanwhile is a ``SandboxError``."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
        except RuntimeError as exc:
            if "shutdown" not in str(exc):
                raise
            raise SandboxError("the sandbox is closed") from exc
