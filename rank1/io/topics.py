"""Topics (queries) in TSV, BEIR JSONL, TREC SGML, Cranfield and rank_llm formats.

- ``tsv``: ``qid<TAB>text``, exactly two fields a line.
- ``jsonl``: BEIR queries, one object a line with ``_id``, ``text`` and an optional
  ``instruction``.
- ``trec``: ``<top>`` blocks with ``<num>``, ``<title>``, ``<desc>`` and ``<narr>`` (closing tags
  optional; prefixes such as ``Number:``, ``Description:`` or ``Narrative:`` are removed). The query
  text is the title, or the description when there is no title; the narrative becomes the
  instruction, as in FollowIR. Whitespace is collapsed.
- ``cranfield``: ``.I``/``.W`` records. The queries are renumbered ``"1"``..``"N"`` in file order,
  because Cranfield's qrels number them that way while the ``.I`` ids skip values.
- ``rankllm``: the queries of a rank_llm candidate JSON file.

``fmt="auto"``: ``.jsonl`` -> jsonl, ``.json`` -> rankllm; otherwise a first non-blank line
starting with ``<top>`` -> trec, with ``.I`` -> cranfield, else tsv.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from rank1.io.errors import InputError
from rank1.io.rankllm import read_rankllm
from rank1.io.text import (
    check_id,
    check_unique,
    collapse_whitespace,
    detect_format,
    iter_content_lines,
    iter_dot_records,
    iter_tagged_blocks,
    json_id,
    json_str,
    parse_json_object,
)
from rank1.records import Query

__all__ = ["TOPICS_FORMATS", "read_topics"]

TOPICS_FORMATS = ("auto", "tsv", "jsonl", "trec", "cranfield", "rankllm")

_TREC_FIELDS = ("num", "title", "desc", "narr")
_TAG = re.compile(r"<(/?)([A-Za-z]+)[^>]*>")
_PREFIX = {
    "num": re.compile(r"^number\s*:\s*", re.IGNORECASE),
    "title": re.compile(r"^(topic|title)\s*:\s*", re.IGNORECASE),
    "desc": re.compile(r"^description\s*:\s*", re.IGNORECASE),
    "narr": re.compile(r"^narrative\s*:\s*", re.IGNORECASE),
}

Located = Iterator[tuple[int | None, Query]]


def _iter_tsv(path: str | Path) -> Located:
    for lineno, line in iter_content_lines(path):
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(
                path, lineno, f"expected 2 tab-separated fields 'qid<TAB>text', found {len(fields)}"
            )
        yield lineno, Query(check_id(path, lineno, fields[0], "query id"), fields[1].strip())


def _iter_jsonl(path: str | Path) -> Located:
    for lineno, line in iter_content_lines(path):
        obj = parse_json_object(path, lineno, line)
        qid = json_id(obj, "_id", path, lineno)
        text = json_str(obj, "text", path, lineno)
        instruction = json_str(obj, "instruction", path, lineno, default="")
        yield lineno, Query(qid, text.strip(), instruction.strip())


def _trec_fields(path: str | Path, start: int, body: str) -> dict[str, str]:
    """Split a ``<top>`` body into its fields: each runs from its tag to the next tag."""
    fields: dict[str, str] = {}
    tags = list(_TAG.finditer(body))
    for i, tag in enumerate(tags):
        name = tag.group(2).lower()
        if tag.group(1) or name not in _TREC_FIELDS:
            continue
        if name in fields:
            raise InputError(path, start, f"<top> block has two <{name}> fields")
        end = tags[i + 1].start() if i + 1 < len(tags) else len(body)
        fields[name] = _PREFIX[name].sub("", collapse_whitespace(body[tag.end() : end]))
    return fields


def _iter_trec(path: str | Path) -> Located:
    for start, body in iter_tagged_blocks(path, "top"):
        fields = _trec_fields(path, start, body)
        if "num" not in fields:
            raise InputError(path, start, "<top> block has no <num>")
        qid = check_id(path, start, fields["num"], "<num>")
        text = fields.get("title") or fields.get("desc", "")
        yield start, Query(qid, text, fields.get("narr", ""))


def _iter_cranfield(path: str | Path) -> Located:
    for number, (lineno, _, fields) in enumerate(iter_dot_records(path), start=1):
        yield lineno, Query(str(number), collapse_whitespace(fields.get("W", "")))


def _iter_rankllm(path: str | Path) -> Located:
    for query in read_rankllm(path).topics.values():
        yield None, query


_READERS = {
    "tsv": _iter_tsv,
    "jsonl": _iter_jsonl,
    "trec": _iter_trec,
    "cranfield": _iter_cranfield,
    "rankllm": _iter_rankllm,
}


def read_topics(path: str | Path, fmt: str = "auto") -> dict[str, Query]:
    """Read topics into ``{query_id: Query}`` in file order.

    Args:
        path: The topics file (``.gz`` allowed).
        fmt: ``"auto"``, ``"tsv"``, ``"jsonl"``, ``"trec"``, ``"cranfield"`` or ``"rankllm"`` (see
            the module docstring).

    Returns:
        The queries by id.

    Raises:
        InputError: A malformed record (see the module docstring), a duplicate query id, a query
            with empty text, or a missing or empty file.
        ValueError: ``fmt`` is not a known format.
    """
    if fmt not in TOPICS_FORMATS:
        raise ValueError(f"unknown topics format {fmt!r}; choose one of {', '.join(TOPICS_FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path, {"<top>": "trec", ".I": "cranfield"}, "tsv")
    topics: dict[str, Query] = {}
    seen: dict[str, int | None] = {}
    for lineno, query in _READERS[fmt](path):
        check_unique(seen, query.query_id, path, lineno, f"query id {query.query_id!r}")
        if not query.text:
            raise InputError(path, lineno, f"query {query.query_id!r} has empty text")
        topics[query.query_id] = query
    return topics
