"""Expected errors end a command with one line on stderr and exit code 2, never a traceback.

Shared by the ``rank1`` CLI and its ``rank1 distill`` sub-app (and any other shell over the Python API).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

EXIT_BAD_INPUT = 2
"""The exit code of a command that stopped on bad input or settings."""


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a typer command: an expected error (bad input, model, store, value, missing key, file
    system) becomes ``error: <message>`` on stderr and exit code :data:`EXIT_BAD_INPUT`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rank1.io import InputError
        from rank1.models import ModelError
        from rank1.store import StoreError

        try:
            return fn(*args, **kwargs)
        except (InputError, ModelError, StoreError, ValueError, KeyError, OSError) as e:
            import typer
            from rich.console import Console
            from rich.markup import escape

            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            Console(stderr=True).print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True,
                                       highlight=False, markup=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper
