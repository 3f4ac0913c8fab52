"""Progress bars (rich) for long jobs: pairs/s, generated tokens/s and ETA.

Rich renders in terminals and in Jupyter alike; when ``enabled`` is false nothing is drawn.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class _Rates(TextColumn):
    """Pairs/s and generated tokens/s since the bar started."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        elapsed = max(task.elapsed or 0.0, 1e-9)
        tokens = task.fields.get("tokens", 0)
        return f"{task.completed / elapsed:6.2f} pairs/s {tokens / elapsed:7.1f} tok/s"


@contextmanager
def pair_progress(
    total: int, description: str = "reranking", enabled: bool = True, console: Console | None = None
) -> Iterator[Callable[[int, int], None]]:
    """A bar over ``total`` pairs; yields ``advance(pairs, tokens)``."""
    if not enabled:
        yield lambda pairs, tokens: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rates(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, tokens=0)
        state = {"tokens": 0}

        def advance(pairs: int, tokens: int) -> None:
            state["tokens"] += tokens
            bar.update(task, advance=pairs, tokens=state["tokens"])

        yield advance


class Stopwatch:
    """Wall-clock seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
