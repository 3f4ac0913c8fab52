"""Relevance judgements (qrels) in TREC, BEIR and Cranfield formats.

- ``trec``: ``qid iter docid relevance``, 4 whitespace-separated columns; the ``iter`` column is
  ignored; relevance is an integer, possibly negative.
- ``beir``: a tab-separated file whose header is ``query-id<TAB>corpus-id<TAB>score``, then
  ``qid<TAB>docid<TAB>relevance`` lines.
- ``cranfield``: Cranfield's ``cranqrel``, 3 columns ``qid docid code`` with Cleverdon's codes,
  where 1 is the best. Graded relevance is ``5 - code``: code 1 (complete answer) -> 4,
  2 (high relevance) -> 3, 3 (useful background) -> 2, 4 (minimum interest) -> 1,
  5 (no interest) -> 0; code -1 (judged, not relevant) -> 0.

``fmt="auto"`` picks ``beir`` when the first line starts with ``query-id`` and ``trec`` when it has
4 columns; anything else is an error (Cranfield's 3 columns must be asked for explicitly, since a
3-column file could equally be a headerless BEIR file whose grades mean the opposite).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rank1.io.errors import InputError
from rank1.io.text import check_unique, iter_content_lines
from rank1.records import Qrel

__all__ = ["QRELS_FORMATS", "iter_qrels", "read_qrels"]

QRELS_FORMATS = ("auto", "trec", "beir", "cranfield")

_CRANFIELD_GRADES = {1: 4, 2: 3, 3: 2, 4: 1, 5: 0, -1: 0}


def _detect(path: str | Path, lineno: int, first_line: str) -> str:
    """Pick the format of a qrels file from its first non-blank line."""
    if first_line.lstrip().lower().startswith("query-id"):
        return "beir"
    ncols = len(first_line.split())
    if ncols == 4:
        return "trec"
    hint = ""
    if ncols == 3:
        hint = (
            "; for Cranfield's cranqrel pass fmt='cranfield' (CLI --qrels-format cranfield),"
            " for BEIR qrels add the header 'query-id<TAB>corpus-id<TAB>score'"
        )
    raise InputError(
        path, lineno, f"cannot tell the qrels format: first line has {ncols} columns, expected 4 (TREC){hint}"
    )


def _parse_int(path: str | Path, lineno: int, raw: str) -> int:
    """Parse a relevance value, which must be an integer."""
    try:
        return int(raw)
    except ValueError:
        raise InputError(path, lineno, f"relevance {raw!r} is not an integer") from None


def iter_qrels(path: str | Path, fmt: str = "auto") -> Iterator[Qrel]:
    """Stream the judgements of a qrels file in file order.

    Args:
        path: The qrels file (``.gz`` allowed).
        fmt: ``"auto"``, ``"trec"``, ``"beir"`` or ``"cranfield"`` (see the module docstring).

    Yields:
        One :class:`Qrel` per judgement.

    Raises:
        InputError: Wrong column count, non-integer relevance, unknown Cranfield code, duplicate
            ``(qid, docid)`` (naming the first line), undetectable format, missing or empty file.
        ValueError: ``fmt`` is not a known format.
    """
    if fmt not in QRELS_FORMATS:
        raise ValueError(f"unknown qrels format {fmt!r}; choose one of {', '.join(QRELS_FORMATS)}")
    seen: dict[tuple[str, str], int | None] = {}
    header_pending = fmt == "beir"
    for lineno, line in iter_content_lines(path):
        if fmt == "auto":
            fmt = _detect(path, lineno, line)
            header_pending = fmt == "beir"
        if header_pending:
            header_pending = False
            if line.strip().split("\t")[:1] == ["query-id"]:
                continue
            raise InputError(
                path, lineno, "BEIR qrels must start with the header 'query-id\\tcorpus-id\\tscore'"
            )
        if fmt == "beir":
            cols = line.split("\t")
            expected = "3 tab-separated columns 'query-id corpus-id score'"
        elif fmt == "trec":
            cols = line.split()
            expected = "4 columns 'qid iter docid relevance'"
        else:
            cols = line.split()
            expected = "3 columns 'qid docid code' (Cranfield)"
        if len(cols) != (4 if fmt == "trec" else 3):
            raise InputError(path, lineno, f"expected {expected}, found {len(cols)}")
        if fmt == "trec":
            qid, docid, raw = cols[0], cols[2], cols[3]
        else:
            qid, docid, raw = (c.strip() for c in cols)
        relevance = _parse_int(path, lineno, raw)
        if fmt == "cranfield":
            if relevance not in _CRANFIELD_GRADES:
                raise InputError(
                    path, lineno, f"Cranfield relevance code {raw!r} is not one of 1, 2, 3, 4, 5, -1"
                )
            relevance = _CRANFIELD_GRADES[relevance]
        if not qid or not docid:
            raise InputError(path, lineno, "empty query or document id")
        check_unique(seen, (qid, docid), path, lineno, f"judgement of document {docid!r} for query {qid!r}")
        yield Qrel(qid, docid, relevance)


def read_qrels(path: str | Path, fmt: str = "auto") -> dict[str, dict[str, int]]:
    """Read a qrels file into ``{query_id: {doc_id: relevance}}``, the shape ``ir_measures`` takes.

    Args:
        path: The qrels file (``.gz`` allowed).
        fmt: ``"auto"``, ``"trec"``, ``"beir"`` or ``"cranfield"`` (see the module docstring).

    Returns:
        Graded relevance per query and document, in file order.

    Raises:
        InputError: As :func:`iter_qrels`.
        ValueError: ``fmt`` is not a known format.
    """
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, relevance in iter_qrels(path, fmt):
        qrels.setdefault(qid, {})[docid] = relevance
    return qrels
