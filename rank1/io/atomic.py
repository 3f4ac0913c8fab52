"""Atomic file writing: a reader sees either the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_folder", "atomic_write"]


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk where the platform allows it (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    r"""Write a file atomically.

    The content goes to a temporary file in the target's directory (created if missing), which is
    flushed, fsynced and then renamed over the target with :func:`os.replace`. If the body of the
    ``with`` block raises, the temporary file is removed and the target is left untouched. The new
    file gets the usual permissions (``0o666`` less the umask).

    Args:
        path: The file to write.
        mode: ``"w"`` for UTF-8 text with ``"\n"`` line endings, or ``"wb"`` for bytes.

    Yields:
        The open temporary file to write to.

    Raises:
        ValueError: ``mode`` is neither ``"w"`` nor ``"wb"``.

    Example:
        >>> with atomic_write("out/run.trec") as f:  # doctest: +SKIP
        ...     f.write("1 Q0 d1 1 2.5 rank1\n")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if mode == "wb":
            handle: IO[Any] = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Write a folder atomically: a reader sees the old folder or the complete new one.

    The block fills a temporary sibling folder, which replaces ``path`` when the block ends (an old folder is
    first renamed aside, restored if the swap fails, then removed). If the block raises, the temporary folder
    is removed and ``path`` is left as it was.

    Yields:
        The temporary folder to fill.

    Example:
        >>> with atomic_folder("models/student") as tmp:  # doctest: +SKIP
        ...     (tmp / "config.json").write_text("{}")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        if target.exists():
            target.rename(old)
        try:
            tmp.rename(target)
        except OSError:
            if old.exists():
                old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_directory(target.parent)
