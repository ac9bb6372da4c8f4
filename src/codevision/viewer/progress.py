"""Progress of a page build, one bar per stage, so that a build of thousands of trajectories is never silent.

Stages advance from worker threads too (images are encoded in a pool); rich's progress is
thread-safe. Without a console nothing is shown and advancing costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[], None]


def _nothing() -> None:
    return None


class BuildProgress:
    """Bars on ``console`` (none when it is ``None``) for the stages of one build; use as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = (
            None
            if console is None
            else Progress(
                TextColumn("[bold]viewer[/] {task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
        )

    def __enter__(self) -> BuildProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def stage(self, name: str, total: int) -> Advance:
        """Show a bar for ``name`` with ``total`` steps; returns the function that moves it one step."""
        progress = self._progress
        if progress is None:
            return _nothing
        task = progress.add_task(name, total=total)
        return lambda: progress.advance(task)
