"""The one error type for bad input files."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input, located at a file and (when known) a line.

    ``str(err)`` is one line, ``"path:line: message"``; the CLI prints it and exits with code 2.
    """

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"
