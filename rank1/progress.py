"""Progress bars (rich) for long jobs: pairs/s, generated tokens/s and ETA.

In a terminal the bar is a rich live display. In a Jupyter kernel it is drawn into one output cell that is
updated in place a few times a second (:class:`NotebookProgress`): no ipywidgets needed, no flood of lines,
and the final state stays in the saved notebook. When ``enabled`` is false nothing is drawn.
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (rich's detection: an IPython ZMQ shell, Colab, Databricks)."""
    return Console().is_jupyter


class NotebookProgress(Progress):
    """A rich :class:`~rich.progress.Progress` drawn into a single Jupyter output, updated in place.

    Rich's own Jupyter support needs ipywidgets, whose output a headless run (nbclient, nbmake) does not
    keep. This draws the same table as HTML (and plain text) through ``IPython.display`` with a display
    id and replaces it at most every ``interval`` seconds, so a long job leaves one output, not thousands.

    Args:
        *columns: Rich progress columns.
        interval: Least seconds between two redraws (the last state is always drawn on exit).
        width: Characters per line of the rendering.
        **kwargs: Passed to :class:`~rich.progress.Progress` (``transient`` clears the output on exit).
    """

    def __init__(self, *columns: str | ProgressColumn, interval: float = 0.5, width: int = 110,
                 **kwargs: Any) -> None:
        super().__init__(*columns, **{**kwargs, "auto_refresh": False})
        self.interval, self.width = interval, width
        self._handle: Any = None
        self._drawn_at = float("-inf")

    def _bundle(self) -> dict[str, str]:
        """The current table as ``text/plain`` and ``text/html``."""
        console = Console(record=True, file=io.StringIO(), width=self.width, force_jupyter=False,
                          force_terminal=True, color_system="truecolor")
        console.print(self.get_renderable())
        text = console.export_text(clear=False)
        html = console.export_html(inline_styles=True, code_format="<pre style='line-height:1.3'>{code}</pre>")
        return {"text/plain": text, "text/html": html}

    def start(self) -> None:
        """Show the output (called on ``with``)."""
        from IPython.display import display

        self._handle = display(self._bundle(), raw=True, display_id=True)
        self._drawn_at = time.monotonic()

    def refresh(self) -> None:
        """Redraw now."""
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
            self._drawn_at = time.monotonic()

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._drawn_at >= self.interval:
            self.refresh()

    def update(self, task_id: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """As :meth:`rich.progress.Progress.update`, then redraw if ``interval`` has passed."""
        super().update(task_id, **kwargs)
        self._maybe_refresh()

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """As :meth:`rich.progress.Progress.advance`, then redraw if ``interval`` has passed."""
        super().advance(task_id, advance)
        self._maybe_refresh()

    def stop(self) -> None:
        """Draw the final state (or clear it, when transient)."""
        if self._handle is not None:
            if self.live.transient:
                self._handle.update({"text/plain": ""}, raw=True)
            else:
                self.refresh()
            self._handle = None


def make_progress(*columns: str | ProgressColumn, console: Console | None = None, **kwargs: Any) -> Progress:
    """A rich progress display for this environment: :class:`NotebookProgress` in a Jupyter kernel (unless
    a ``console`` is given), a plain :class:`~rich.progress.Progress` elsewhere. Use it as a context manager."""
    if console is None and in_notebook():
        return NotebookProgress(*columns, **kwargs)
    return Progress(*columns, console=console, **kwargs)


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
    """A bar over ``total`` pairs (see :func:`make_progress`); yields ``advance(pairs, tokens)``."""
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
    with make_progress(*columns, console=console, transient=False) as bar:
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
