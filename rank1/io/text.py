"""Line and JSON reading shared by every reader in :mod:`rank1.io`.

Files are read as bytes and decoded as UTF-8 strictly, one line at a time, so that a bad byte is
reported with its line number instead of surfacing as a ``UnicodeDecodeError`` somewhere else.
A path ending in ``.gz`` is decompressed transparently. Every problem raises :class:`InputError`.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rank1.io.errors import InputError

__all__ = [
    "check_id",
    "check_unique",
    "collapse_whitespace",
    "detect_format",
    "empty_file",
    "iter_content_lines",
    "iter_dot_records",
    "iter_lines",
    "iter_tagged_blocks",
    "json_id",
    "json_str",
    "parse_json_object",
]

_WHITESPACE = re.compile(r"\s+")


def _open_binary(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading (decompressing ``.gz``), mapping OS errors to InputError."""
    try:
        if path.is_dir():
            raise InputError(path, None, "is a directory, not a file")
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rb")
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, None, "no such file") from None
    except PermissionError:
        raise InputError(path, None, "permission denied") from None


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    """Decode one line of bytes, rejecting NUL bytes and invalid UTF-8."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(path, lineno, f"NUL byte at column {nul + 1}: this looks like a binary file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
        raise InputError(path, lineno, f"not valid UTF-8 ({where})") from None
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    r"""Yield ``(line_number, line)`` for each line of a UTF-8 text file, numbering from 1.

    The trailing ``\n`` or ``\r\n`` is removed, and a UTF-8 byte order mark on the first line.
    A ``.gz`` file is decompressed on the fly.

    Raises:
        InputError: The file is missing or is a directory (line ``None``), a line is not valid
            UTF-8 or holds a NUL byte, or a ``.gz`` file is corrupt.
    """
    path = Path(path)
    lineno = 0
    with _open_binary(path) as handle:
        try:
            for lineno, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                yield lineno, _decode(path, lineno, raw)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise InputError(path, lineno + 1, f"corrupt gzip data ({err})") from None


def empty_file(path: str | Path) -> InputError:
    """The error for a file that holds no records (nothing but blank lines)."""
    return InputError(path, None, "empty file: no records found")


def iter_content_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Like :func:`iter_lines` but skipping blank lines, and failing on a file with none.

    Raises:
        InputError: As :func:`iter_lines`, and for a file with no non-blank line.
    """
    found = False
    for lineno, line in iter_lines(path):
        if line.strip():
            found = True
            yield lineno, line
    if not found:
        raise empty_file(path)


def detect_format(path: str | Path, by_first_line: Mapping[str, str], default: str) -> str:
    """Guess a file format from its extension, then from the start of its first non-blank line.

    ``.jsonl`` (or ``.jsonl.gz``) means ``"jsonl"`` and ``.json`` means ``"rankllm"``. Otherwise the
    first prefix of ``by_first_line`` (case-insensitive, e.g. ``{"<top>": "trec"}``) that starts the
    first non-blank line wins, else ``default``.

    Raises:
        InputError: The file cannot be read or is empty.
    """
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "rankllm"
    _, line = next(iter_content_lines(path))
    start = line.lstrip().lower()
    return next((fmt for prefix, fmt in by_first_line.items() if start.startswith(prefix.lower())), default)


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace by one space and strip both ends."""
    return _WHITESPACE.sub(" ", text).strip()


def check_unique(
    seen: dict[Any, int | None], key: Any, path: str | Path, lineno: int | None, what: str
) -> None:
    """Record ``key`` (seen at ``lineno``) in ``seen``, or fail if it is already there.

    Raises:
        InputError: At ``lineno``: ``"duplicate {what} (first at line N)"``.
    """
    first = seen.get(key, -1)
    if first != -1:
        where = f" (first at line {first})" if first is not None else ""
        raise InputError(path, lineno, f"duplicate {what}{where}")
    seen[key] = lineno


def parse_json_object(path: str | Path, lineno: int, line: str) -> dict[str, Any]:
    """Parse one JSON Lines record, which must be an object.

    Raises:
        InputError: The line is not valid JSON or not a JSON object.
    """
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(path, lineno, f"invalid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(value, dict):
        raise InputError(path, lineno, f"expected a JSON object, got {type(value).__name__}")
    return value


def json_str(
    obj: Mapping[str, Any],
    key: str,
    path: str | Path,
    lineno: int | None,
    where: str = "",
    *,
    default: str | None = None,
) -> str:
    """Fetch a string field of a JSON object.

    Args:
        obj: The object.
        key: The field.
        path: The file, for errors.
        lineno: The line, for errors.
        where: Prefix locating the object in the file, for errors, e.g. ``"entry[3]: "``.
        default: Returned when the field is absent or null; ``None`` makes the field required.

    Raises:
        InputError: The field is missing (and required) or not a string.
    """
    value = obj.get(key)
    if value is None:
        if default is not None:
            return default
        raise InputError(path, lineno, f"{where}missing field {key!r}")
    if not isinstance(value, str):
        raise InputError(path, lineno, f"{where}field {key!r} must be a string, got {value!r:.40}")
    return value


def check_id(path: str | Path, lineno: int | None, value: str, what: str) -> str:
    """Return ``value`` stripped, which must be one non-empty token (run files are split on spaces).

    Raises:
        InputError: The id is empty or holds whitespace.
    """
    token = value.strip()
    if not token or any(c.isspace() for c in token):
        raise InputError(path, lineno, f"{what} {value!r:.40} is empty or holds whitespace")
    return token


def json_id(obj: Mapping[str, Any], key: str, path: str | Path, lineno: int | None, where: str = "") -> str:
    """Fetch an id field of a JSON object: a string token, or an integer turned into a string.

    Raises:
        InputError: The field is missing, of another type, empty or holds whitespace.
    """
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or not isinstance(value, str):
        problem = "missing field" if value is None else "a string or an integer is needed for field"
        raise InputError(path, lineno, f"{where}{problem} {key!r}")
    return check_id(path, lineno, value, f"{where}field {key!r}")


def iter_tagged_blocks(path: str | Path, tag: str) -> Iterator[tuple[int, str]]:
    """Yield the bodies of the ``<tag> ... </tag>`` blocks of an SGML-like file (TREC docs, topics).

    Tags are matched case-insensitively and may stand anywhere on a line; the body keeps its line
    breaks. Only blank space may lie between blocks.

    Yields:
        ``(line where the block opens, body text)`` for blocks of ``tag`` (e.g. ``"DOC"``).

    Raises:
        InputError: Text outside a block or a stray close tag (at their line), a block not closed
            before the next open tag or the end of the file (at the line where it opened), or no block.
    """
    pattern = re.compile(rf"<(/?){re.escape(tag)}\s*>", re.IGNORECASE)
    start: int | None = None
    parts: list[str] = []
    found = False
    for lineno, line in iter_lines(path):
        pos = 0
        for match in pattern.finditer(line):
            before = line[pos : match.start()]
            pos = match.end()
            if start is not None:
                parts.append(before)
            elif before.strip():
                raise InputError(path, lineno, f"text outside a <{tag}> block: {before.strip()!r:.40}")
            if match.group(1):
                if start is None:
                    raise InputError(path, lineno, f"</{tag}> without an open <{tag}>")
                yield start, "".join(parts)
                start, parts, found = None, [], True
            elif start is not None:
                raise InputError(
                    path, start, f"<{tag}> opened here is not closed before the <{tag}> at line {lineno}"
                )
            else:
                start = lineno
        rest = line[pos:]
        if start is not None:
            parts.extend((rest, "\n"))
        elif rest.strip():
            raise InputError(path, lineno, f"text outside a <{tag}> block: {rest.strip()!r:.40}")
    if start is not None:
        raise InputError(path, start, f"<{tag}> opened here is never closed (end of file reached)")
    if not found:
        raise empty_file(path)


_DOT_MARKER = re.compile(r"^\.([A-Z])(?:[ \t]+(\S.*?))?\s*$")


def iter_dot_records(path: str | Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Yield the records of a SMART-style file (Cranfield, CISI): ``.I id`` then ``.X`` fields.

    A field marker is a line holding only a dot and one capital letter (``.T``, ``.A``, ``.W``,
    ``.X``...); the lines up to the next marker are its content. A marker for a field already seen
    in the record is ignored and its lines continue the field being read: Cranfield's document 240
    has stray ``.A``/``.B`` lines inside its abstract, and documents 576 and 578 repeat ``.W``.

    Yields:
        ``(line of the .I marker, record id, {field letter: content with line breaks})``.

    Raises:
        InputError: Text before the first ``.I`` or before a record's first field, an ``.I``
            without an id, or no record at all.
    """
    record: tuple[int, str] | None = None
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for lineno, line in iter_lines(path):
        match = _DOT_MARKER.match(line)
        if match and match.group(1) == "I":
            if record is not None:
                yield record[0], record[1], {k: "\n".join(v) for k, v in fields.items()}
            if not match.group(2):
                raise InputError(path, lineno, "'.I' marker without a record id")
            record, fields, current = (lineno, match.group(2)), {}, None
        elif match and match.group(2) is None and record is not None:
            if match.group(1) not in fields:  # else: a repeated marker, ignored
                current = fields[match.group(1)] = []
        elif record is None or current is None:
            if line.strip():
                where = (
                    "before the first '.I'" if record is None else "before the record's first field marker"
                )
                raise InputError(path, lineno, f"text {where}: {line.strip()!r:.40}")
        else:
            current.append(line)
    if record is None:
        raise empty_file(path)
    yield record[0], record[1], {k: "\n".join(v) for k, v in fields.items()}
