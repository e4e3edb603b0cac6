"""Progress bars for long commands (`csip devices import`, `csip conformance run`, `csip sim`).

On a terminal a bar shows what is done, the rate and the time left; when the output is piped
or redirected nothing is drawn (no escape codes in a log or a CI transcript), and the
command's own summary lines are all that is written. Drawn with rich (typed, already a
dependency of the test tooling, and its Console decides "is this a terminal" the same way
for every command, honouring NO_COLOR, TERM=dumb and FORCE_COLOR). Bars go to stderr, so a
command's stdout stays parseable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["Bar", "progress"]


class Bar:
    """What a command advances; does nothing when no bar is drawn."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def drawn(self) -> bool:
        return self._progress is not None

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def describe(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def total(self, total: int | None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def print(self, text: str) -> None:
        """A line above the bar (or plain, to stderr, when there is none)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)


@contextmanager
def progress(description: str, total: int | None, stream: TextIO | None = None) -> Iterator[Bar]:
    """A bar on `stream` (stderr) when it is a terminal, else a Bar that draws nothing."""
    console = Console(file=stream or sys.stderr)
    if not console.is_terminal:
        yield Bar()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        yield Bar(bar, bar.add_task(description, total=total))
