"""Document collections in BEIR JSONL, TSV, TREC SGML, Cranfield and rank_llm formats.

- ``jsonl``: BEIR corpus, one object a line with ``_id``, ``text`` and an optional ``title``.
- ``tsv``: ``id<TAB>text`` (MS MARCO), or ``id<TAB>title<TAB>text`` when a line has three fields.
- ``trec``: ``<DOC><DOCNO>id</DOCNO> ... </DOC>``. When a document has ``<TEXT>`` sections their
  content is the text, otherwise everything inside the ``DOC`` but the ``DOCNO``; remaining tags
  are removed and whitespace is collapsed.
- ``cranfield``: ``.I id`` records with ``.T`` (title), ``.A`` (authors), ``.B`` (bibliography)
  and ``.W`` (text) fields; only the title and text are kept, unknown fields such as CISI's
  ``.X`` are skipped.
- ``rankllm``: the passages of a rank_llm candidate JSON file.

``fmt="auto"``: ``.jsonl`` -> jsonl, ``.json`` -> rankllm; otherwise a first non-blank line
starting with ``<DOC`` -> trec, with ``.I`` -> cranfield, else tsv. A document's text may be empty.
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
from rank1.records import Document

__all__ = ["CORPUS_FORMATS", "iter_corpus", "read_corpus"]

CORPUS_FORMATS = ("auto", "jsonl", "tsv", "trec", "cranfield", "rankllm")

_DOCNO = re.compile(r"<DOCNO>(.*?)</DOCNO>", re.IGNORECASE | re.DOTALL)
_TEXT = re.compile(r"<TEXT>(.*?)(?:</TEXT>|\Z)", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"<[^>]*>")

Located = Iterator[tuple[int | None, Document]]


def _iter_jsonl(path: str | Path) -> Located:
    for lineno, line in iter_content_lines(path):
        obj = parse_json_object(path, lineno, line)
        docid = json_id(obj, "_id", path, lineno)
        text = json_str(obj, "text", path, lineno)
        title = json_str(obj, "title", path, lineno, default="")
        yield lineno, Document(docid, text.strip(), title.strip())


def _iter_tsv(path: str | Path) -> Located:
    for lineno, line in iter_content_lines(path):
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise InputError(
                path, lineno, f"expected 'id<TAB>text' or 'id<TAB>title<TAB>text', found {len(fields)} fields"
            )
        docid = check_id(path, lineno, fields[0], "document id")
        title = fields[1].strip() if len(fields) == 3 else ""
        yield lineno, Document(docid, fields[-1].strip(), title)


def _iter_trec(path: str | Path) -> Located:
    for start, body in iter_tagged_blocks(path, "DOC"):
        docnos = _DOCNO.findall(body)
        if not docnos:
            raise InputError(path, start, "<DOC> without <DOCNO>...</DOCNO>")
        if len(docnos) > 1:
            raise InputError(path, start, f"<DOC> with {len(docnos)} <DOCNO> elements")
        docid = check_id(path, start, docnos[0], "<DOCNO>")
        sections = _TEXT.findall(body)
        raw = " ".join(sections) if sections else _DOCNO.sub(" ", body)
        yield start, Document(docid, collapse_whitespace(_ANY_TAG.sub(" ", raw)))


def _iter_cranfield(path: str | Path) -> Located:
    for lineno, docid, fields in iter_dot_records(path):
        text = collapse_whitespace(fields.get("W", ""))
        yield (
            lineno,
            Document(
                check_id(path, lineno, docid, "document id"), text, collapse_whitespace(fields.get("T", ""))
            ),
        )


def _iter_rankllm(path: str | Path) -> Located:
    for doc in read_rankllm(path).corpus.values():
        yield None, doc


_READERS = {
    "jsonl": _iter_jsonl,
    "tsv": _iter_tsv,
    "trec": _iter_trec,
    "cranfield": _iter_cranfield,
    "rankllm": _iter_rankllm,
}


def _iter_located(path: str | Path, fmt: str) -> Located:
    """Documents with the line where each starts (``None`` for rank_llm files)."""
    if fmt not in CORPUS_FORMATS:
        raise ValueError(f"unknown corpus format {fmt!r}; choose one of {', '.join(CORPUS_FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path, {"<DOC": "trec", ".I": "cranfield"}, "tsv")
    return _READERS[fmt](path)


def iter_corpus(path: str | Path, fmt: str = "auto") -> Iterator[Document]:
    """Stream the documents of a collection in file order (duplicates are not checked here).

    Args:
        path: The collection file (``.gz`` allowed).
        fmt: ``"auto"``, ``"jsonl"``, ``"tsv"``, ``"trec"``, ``"cranfield"`` or ``"rankllm"`` (see
            the module docstring).

    Yields:
        One :class:`Document` per record.

    Raises:
        InputError: A malformed record (see the module docstring), or a missing or empty file.
        ValueError: ``fmt`` is not a known format.
    """
    located = _iter_located(path, fmt)
    return (doc for _, doc in located)


def read_corpus(path: str | Path, fmt: str = "auto") -> dict[str, Document]:
    """Read a whole collection into ``{doc_id: Document}`` in file order.

    Args:
        path: The collection file (``.gz`` allowed).
        fmt: As for :func:`iter_corpus`.

    Returns:
        The documents by id.

    Raises:
        InputError: As :func:`iter_corpus`, and for a document id seen twice (naming both lines).
        ValueError: ``fmt`` is not a known format.
    """
    corpus: dict[str, Document] = {}
    seen: dict[str, int | None] = {}
    for lineno, doc in _iter_located(path, fmt):
        check_unique(seen, doc.doc_id, path, lineno, f"document id {doc.doc_id!r}")
        corpus[doc.doc_id] = doc
    return corpus
