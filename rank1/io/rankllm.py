"""rank_llm candidate files: topics, passages and a first-stage run in one JSON document.

The file is a JSON array with one entry per query::

    [{"query": "how long is life cycle of flea",
      "hits": [{"content": "...", "qid": 264014, "docid": "5611210", "rank": 1, "score": 15.78},
               ...]},
     ...]

The query id comes from the hits' ``qid`` (an integer or a string; it is turned into a string), or
from an optional ``qid`` on the entry itself, which a query without hits needs. ``rank`` is
ignored: the run keeps the scores. Errors name the file, the line where the offending entry starts
and its position, e.g. ``entry[3].hits[7]``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from rank1.io.errors import InputError
from rank1.io.text import check_unique, empty_file, iter_lines, json_id, json_str
from rank1.records import Document, Query

__all__ = ["Candidates", "read_rankllm"]


class Candidates(NamedTuple):
    """What a rank_llm file holds: the topics, the passages and the first-stage run."""

    topics: dict[str, Query]
    corpus: dict[str, Document]
    run: dict[str, dict[str, float]]


_JSON_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    """The position of the first non-whitespace character at or after ``pos``."""
    match = _JSON_WS.match(text, pos)
    return match.end() if match else pos


def _iter_json_array(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, element)`` for each element of a file holding one JSON array.

    The line is where the element starts, so that errors about an element can name it.

    Raises:
        InputError: The file is not valid JSON (at the line ``json`` reports), is not an array, or
            is empty.
    """
    path = Path(path)
    text = "\n".join(line for _, line in iter_lines(path))  # UTF-8 and NUL errors located by line
    decoder = json.JSONDecoder()
    line, counted = 1, 0

    def line_of(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    pos = _skip_ws(text, 0)
    if pos == len(text):
        raise empty_file(path)
    if text[pos] != "[":
        raise InputError(path, line_of(pos), "expected a JSON array '[...]' of entries")
    pos = _skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        start = line_of(pos)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise InputError(path, err.lineno, f"invalid JSON: {err.msg} at column {err.colno}") from None
        yield start, value
        pos = _skip_ws(text, pos)
        if text.startswith("]", pos):
            pos = _skip_ws(text, pos + 1)
            if pos != len(text):
                raise InputError(path, line_of(pos), "invalid JSON: extra data after the array")
            return
        if not text.startswith(",", pos):
            raise InputError(path, line_of(pos), "invalid JSON: expected ',' or ']' in the array")
        pos = _skip_ws(text, pos + 1)


def _score(hit: dict[str, Any], path: Path, lineno: int, where: str) -> float:
    """The finite numeric ``score`` of a hit."""
    value = hit.get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, lineno, f"{where}field 'score' must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise InputError(path, lineno, f"{where}score {value!r} is not finite")
    return float(value)


def _entry_qid(entry: dict[str, Any], hits: list[Any], path: Path, lineno: int, where: str) -> str:
    """The query id of an entry: its own ``qid`` or that of its first hit."""
    if entry.get("qid") is not None:
        return json_id(entry, "qid", path, lineno, where)
    if not hits:
        raise InputError(path, lineno, f"{where}no hits and no 'qid', so the query id is unknown")
    first = hits[0]
    if not isinstance(first, dict):
        raise InputError(path, lineno, f"{where}hits[0]: expected a JSON object")
    return json_id(first, "qid", path, lineno, f"{where}hits[0]: ")


def read_rankllm(path: str | Path) -> Candidates:
    """Read a rank_llm candidate JSON file.

    Args:
        path: The JSON file (``.gz`` allowed).

    Returns:
        :class:`Candidates` with topics (no instructions), the passages (content as text, no
        title) and the run ``{qid: {docid: score}}``, all in file order.

    Raises:
        InputError: Invalid JSON (at the line ``json`` reports), not an array of entries, an entry
            without ``query`` or ``hits``, a hit missing ``content``/``qid``/``docid``/``score``,
            hits of one entry with different qids, a query id used by two entries, a doc listed
            twice for a query, or one doc id with different contents under different queries.
    """
    path = Path(path)
    topics: dict[str, Query] = {}
    corpus: dict[str, Document] = {}
    run: dict[str, dict[str, float]] = {}
    seen_queries: dict[str, int | None] = {}
    for index, (lineno, entry) in enumerate(_iter_json_array(path)):
        where = f"entry[{index}]: "
        if not isinstance(entry, dict):
            raise InputError(path, lineno, f"{where}expected a JSON object with 'query' and 'hits'")
        text = json_str(entry, "query", path, lineno, where)
        hits = entry.get("hits")
        if not isinstance(hits, list):
            problem = "missing field 'hits'" if hits is None else "field 'hits' must be a list"
            raise InputError(path, lineno, f"{where}{problem}")
        qid = _entry_qid(entry, hits, path, lineno, where)
        check_unique(seen_queries, qid, path, lineno, f"query id {qid!r} ({where.rstrip(': ')})")
        if not text.strip():
            raise InputError(path, lineno, f"{where}query {qid!r} has empty text")
        topics[qid] = Query(qid, text.strip())
        scores = run[qid] = {}
        for k, hit in enumerate(hits):
            at = f"entry[{index}].hits[{k}]: "
            if not isinstance(hit, dict):
                raise InputError(path, lineno, f"{at}expected a JSON object")
            hit_qid = json_id(hit, "qid", path, lineno, at)
            if hit_qid != qid:
                raise InputError(path, lineno, f"{at}qid {hit_qid!r} differs from the entry's {qid!r}")
            docid = json_id(hit, "docid", path, lineno, at)
            content = json_str(hit, "content", path, lineno, at)
            if docid in scores:
                raise InputError(path, lineno, f"{at}document {docid!r} listed twice for query {qid!r}")
            scores[docid] = _score(hit, path, lineno, at)
            known = corpus.get(docid)
            if known is None:
                corpus[docid] = Document(docid, content)
            elif known.text != content:
                raise InputError(
                    path,
                    lineno,
                    f"{at}document {docid!r} has a different content than under an earlier query",
                )
    if not topics:
        raise InputError(path, None, "empty file: the JSON array has no entries")
    return Candidates(topics, corpus, run)
