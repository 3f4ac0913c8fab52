"""TREC run files: ``qid Q0 docid rank score tag``, one retrieved document a line.

Reading: the six columns are separated by whitespace; the ``Q0`` and rank columns are ignored (the
rank need not even be a number), the score must be a finite float, and a document may appear only
once per query (trec_eval's rule). Blank lines are skipped; a file with no line is an error.

Writing (:func:`write_run`) is atomic and deterministic. Within a query, documents are sorted by
score descending, ties by doc id ascending, and the written scores are made *strictly* decreasing:
a score that is not below the previously written one is replaced by
``math.nextafter(previous, -math.inf)``, the next double down. Scores are written with
:func:`repr`, so a written run reads back bit for bit, in the written order, without ties.

Caveat: trec_eval (and ``ir_measures`` through ``pytrec_eval``) holds scores as single-precision
floats and breaks ties by doc id *descending*; scores closer than float32 resolution, such as
those separated by one step of this rule, still tie there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from rank1.io.atomic import atomic_write
from rank1.io.errors import InputError
from rank1.io.text import check_unique, iter_content_lines
from rank1.records import ScoredDoc, best_first

__all__ = ["iter_run", "read_run", "sort_run", "write_run"]

Run = dict[str, dict[str, float]]


def iter_run(path: str | Path) -> Iterator[ScoredDoc]:
    """Stream the lines of a TREC run file in file order.

    Args:
        path: The run file (``.gz`` allowed).

    Yields:
        One :class:`ScoredDoc` per line.

    Raises:
        InputError: A line has not exactly 6 columns, a score is not a finite number, a document
            appears twice for a query (naming both lines), or the file is missing or empty.
    """
    seen: dict[tuple[str, str], int | None] = {}
    for lineno, line in iter_content_lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise InputError(
                path, lineno, f"expected 6 columns 'qid Q0 docid rank score tag', found {len(cols)}"
            )
        qid, _, docid, _, raw_score, _ = cols
        try:
            score = float(raw_score)
        except ValueError:
            raise InputError(path, lineno, f"score {raw_score!r} is not a number") from None
        if not math.isfinite(score):
            raise InputError(path, lineno, f"score {raw_score!r} is not finite")
        check_unique(seen, (qid, docid), path, lineno, f"document {docid!r} for query {qid!r}")
        yield ScoredDoc(qid, docid, score)


def read_run(path: str | Path) -> Run:
    """Read a TREC run file into ``{query_id: {doc_id: score}}``, keeping the file's order.

    Raises:
        InputError: As :func:`iter_run`.
    """
    run: Run = {}
    for qid, docid, score in iter_run(path):
        run.setdefault(qid, {})[docid] = score
    return run


def _group(run: Mapping[str, Mapping[str, float]] | Iterable[ScoredDoc]) -> Mapping[str, Mapping[str, float]]:
    """Turn an iterable of :class:`ScoredDoc` into a mapping, keeping first-seen query order."""
    if isinstance(run, Mapping):
        return run
    grouped: Run = {}
    for item in run:
        qid, docid, score = item
        docs = grouped.setdefault(qid, {})
        if docid in docs:
            raise ValueError(f"document {docid!r} appears twice for query {qid!r}")
        docs[docid] = score
    return grouped


def _check_id(kind: str, value: str) -> None:
    """Reject ids that a whitespace-separated run file cannot hold."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"{kind} must be a non-empty string without whitespace, got {value!r}")


def _f32(value: float) -> np.float32:
    with np.errstate(over="ignore"):
        return np.float32(value)


def sort_run(
    run: Mapping[str, Mapping[str, float]] | Iterable[ScoredDoc],
) -> dict[str, list[tuple[str, float]]]:
    """Order each query's documents as :func:`write_run` writes them, with the scores it writes.

    Queries keep the given order. Within a query, documents are sorted by ``(-score, doc_id)``;
    then each score that is not strictly below the previous one in float32 is replaced by the next
    float32 below the previous score, so the returned scores strictly decrease in double and in
    single precision (trec_eval's).
    ``read_run`` of a file written by ``write_run(path, run)`` equals ``sort_run(run)`` (as dicts).

    Args:
        run: ``{query_id: {doc_id: score}}`` or an iterable of :class:`ScoredDoc`.

    Returns:
        ``{query_id: [(doc_id, score), ...]}`` best first.

    Raises:
        ValueError: A score is not finite, an id is empty or holds whitespace, or (iterable input)
            a document appears twice for a query.
    """
    ordered: dict[str, list[tuple[str, float]]] = {}
    for qid, docs in _group(run).items():
        _check_id("query id", qid)
        ranked: list[tuple[str, float]] = []
        previous = math.inf
        for docid, score in best_first(docs.items()):
            _check_id("doc id", docid)
            score = float(score)
            if not math.isfinite(score):
                raise ValueError(f"score {score!r} of {docid!r} for query {qid!r} is not finite")
            if score >= previous or _f32(score) >= _f32(previous):
                score = float(np.nextafter(_f32(previous), np.float32(-np.inf)))
                if not math.isfinite(score):  # pragma: no cover - needs ~3e38 scores
                    raise ValueError(f"cannot make the scores of query {qid!r} strictly decreasing")
            ranked.append((docid, score))
            previous = score
        ordered[qid] = ranked
    return ordered


def write_run(
    path: str | Path,
    run: Mapping[str, Mapping[str, float]] | Iterable[ScoredDoc],
    tag: str = "rank1",
) -> None:
    """Write a TREC run file atomically: ``qid Q0 docid rank score tag``.

    Queries are written in the order given. Within a query, documents go by score descending and
    doc id ascending on ties, with ranks 1..n, and the written scores strictly decrease: a score
    not below the previously written one in float32 becomes the next float32 below it (see
    :func:`sort_run`). Scores are written with ``repr`` so that they read back exactly.

    Args:
        path: The file to write; parent directories are created.
        run: ``{query_id: {doc_id: score}}`` or an iterable of :class:`ScoredDoc`.
        tag: The run tag of the last column: one token without whitespace.

    Raises:
        ValueError: The tag, an id or a score is unfit (see :func:`sort_run`); nothing is written.
    """
    _check_id("run tag", tag)
    ordered = sort_run(run)
    with atomic_write(path) as handle:
        for qid, ranked in ordered.items():
            for rank, (docid, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
