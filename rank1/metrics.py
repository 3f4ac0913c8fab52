"""Evaluation: standard IR measures through ``ir_measures``, plus NevIR and FollowIR task metrics.

Standard measures (nDCG@10, P@1, MAP, ...) are never computed by hand here: :func:`evaluate` hands
the run and the qrels to ``ir_measures``, which uses trec_eval's definitions (a query of the run
without judgements is ignored, score ties are broken by doc id descending).

Task metrics:

- :func:`paired_accuracy` (NevIR): the share of query pairs where each query ranks its own
  document above the other query's document.
- :func:`trap_accuracy` (ExcluIR, BoolQuestions NOT): the share of items whose query ranks its answer passage
  above its trap passage (one on the same topic that the exclusion or negation rules out).
- :func:`p_mrr` (FollowIR): how much the rank of documents made non-relevant by a changed
  instruction moves down, from -1 (moved up as far as possible) to +1 (moved down as far as
  possible); 0 means no change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import ir_measures

from rank1.io.errors import InputError
from rank1.io.qrels import read_qrels
from rank1.io.runs import read_run
from rank1.io.text import iter_content_lines, json_id, json_str, parse_json_object
from rank1.records import Document, Query

__all__ = [
    "Pair",
    "PerQuery",
    "evaluate",
    "p_mrr",
    "paired_accuracy",
    "parse_measures",
    "read_nevir_pairs",
    "read_trap_items",
    "trap_accuracy",
    "Trap",
]

RunLike = Mapping[str, Mapping[str, float]] | str | Path
QrelsLike = Mapping[str, Mapping[str, int]] | str | Path


class PerQuery(NamedTuple):
    """One per-query value of a measure."""

    query_id: str
    measure: str
    value: float


class Pair(NamedTuple):
    """Two queries and their documents: ``doc_a`` answers ``query_a``, ``doc_b`` answers ``query_b``."""

    query_a: str
    doc_a: str
    query_b: str
    doc_b: str


class Trap(NamedTuple):
    """A query, the passage that answers it and a trap passage that must rank below it."""

    query: str
    answer: str
    trap: str


def parse_measures(names: str | Iterable[str]) -> list[Any]:
    """Parse measure names in ``ir_measures`` syntax, e.g. ``"nDCG@10"``, ``"P@1"``, ``"AP"``.

    trec_eval names (``"ndcg_cut.10"``, ``"map"``, ``"P.1,5"``) are accepted too.

    Args:
        names: One name or several.

    Returns:
        The ``ir_measures`` measure objects, in order.

    Raises:
        ValueError: A name is not a measure ``ir_measures`` knows, or no name is given.
    """
    if isinstance(names, str):
        names = [names]
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name.strip()))
            continue
        except Exception as err:  # ir_measures raises NameError, ValueError, KeyError...
            problem = str(err)
        try:
            measures.extend(ir_measures.parse_trec_measure(name.strip()))
        except Exception:
            raise ValueError(
                f"unknown measure {name!r} ({problem}); examples: nDCG@10, P@1, R@100, AP, RR"
            ) from None
    if not measures:
        raise ValueError("no measure given")
    return measures


@overload
def evaluate(
    run: RunLike, qrels: QrelsLike, measures: str | Iterable[str] = ..., per_query: Literal[False] = ...
) -> dict[str, float]: ...


@overload
def evaluate(
    run: RunLike, qrels: QrelsLike, measures: str | Iterable[str] = ..., *, per_query: Literal[True]
) -> tuple[dict[str, float], list[PerQuery]]: ...


def evaluate(
    run: RunLike,
    qrels: QrelsLike,
    measures: str | Iterable[str] = ("nDCG@10",),
    per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[PerQuery]]:
    """Score a run against qrels with ``ir_measures``.

    Args:
        run: ``{query_id: {doc_id: score}}`` or the path of a TREC run file.
        qrels: ``{query_id: {doc_id: relevance}}`` or the path of a qrels file (format detected).
        measures: Measure names in ``ir_measures`` syntax.
        per_query: Also return the value of every measure for every judged query of the run.

    Returns:
        ``{measure name: mean over the judged queries of the run}``, and with ``per_query`` also the
        list of :class:`PerQuery` rows, sorted by query id then measure.

    Raises:
        ValueError: An unknown measure, or no query of the run has judgements (wrong qrels?).
        InputError: A file given by path is malformed.
    """
    parsed = parse_measures(measures)
    run_dict = read_run(run) if isinstance(run, (str, Path)) else {q: dict(d) for q, d in run.items()}
    qrels_dict = (
        read_qrels(qrels) if isinstance(qrels, (str, Path)) else {q: dict(d) for q, d in qrels.items()}
    )
    judged = [qid for qid in run_dict if qrels_dict.get(qid)]
    if not judged:
        raise ValueError("no query of the run has relevance judgements: are these the right qrels?")
    # trec_eval's default: the mean is over the queries of the run (judged ones), not over every query
    # of the qrels, which some providers would count as zero when the run lacks them.
    qrels_dict = {qid: qrels_dict[qid] for qid in judged}
    aggregate = ir_measures.calc_aggregate(parsed, qrels_dict, run_dict)
    result = {str(m): float(aggregate[m]) for m in parsed}
    if not per_query:
        return result
    metrics = ir_measures.iter_calc(parsed, qrels_dict, run_dict)
    rows = [PerQuery(m.query_id, str(m.measure), float(m.value)) for m in metrics]
    rows.sort(key=lambda row: (row.query_id, row.measure))
    return result, rows


def _beats(scores: Mapping[str, float], doc: str, other: str) -> bool:
    """Whether ``doc`` ranks above ``other``; an absent document ranks below every present one."""
    if doc not in scores:
        return False
    return other not in scores or scores[doc] > scores[other]


def paired_accuracy(
    run: Mapping[str, Mapping[str, float]], pairs: Sequence[Pair | tuple[str, str, str, str]]
) -> float:
    """NevIR paired accuracy: the share of pairs that both queries get right.

    A pair ``(qid_a, doc_a, qid_b, doc_b)`` counts iff query ``qid_a`` scores ``doc_a`` strictly
    above ``doc_b`` AND query ``qid_b`` scores ``doc_b`` strictly above ``doc_a``. A document missing
    from a query's run ranks below all present ones (so two missing documents are a failure); a
    query missing from the run fails its pairs.

    Args:
        run: ``{query_id: {doc_id: score}}``.
        pairs: The pairs, e.g. from :func:`read_nevir_pairs`.

    Returns:
        The fraction of pairs counted, in [0, 1].

    Raises:
        ValueError: No pair is given.
    """
    if not pairs:
        raise ValueError("paired_accuracy needs at least one pair")
    correct = 0
    for qid_a, doc_a, qid_b, doc_b in pairs:
        if _beats(run.get(qid_a, {}), doc_a, doc_b) and _beats(run.get(qid_b, {}), doc_b, doc_a):
            correct += 1
    return correct / len(pairs)


def _rows_by_id(path: str | Path, kind: str) -> Iterator[tuple[int, dict[str, Any], str]]:
    """``(line number, object, id)`` for each JSON object line of ``path``; an id seen before is an error
    (``duplicate {kind} id``)."""
    seen: set[str] = set()
    for lineno, line in iter_content_lines(path):
        obj = parse_json_object(path, lineno, line)
        row_id = json_id(obj, "id", path, lineno)
        if row_id in seen:
            raise InputError(path, lineno, f"duplicate {kind} id {row_id!r}")
        seen.add(row_id)
        yield lineno, obj, row_id


def read_nevir_pairs(path: str | Path) -> tuple[dict[str, Query], dict[str, Document], list[Pair]]:
    """Read NevIR pairs (JSONL with ``id``, ``q1``, ``q2``, ``doc1``, ``doc2``; q1 is answered by doc1).

    Ids follow the BEIR files derived from the same pairs: ``{id}_q1``, ``{id}_q2``, ``{id}_doc1``
    and ``{id}_doc2``.

    Args:
        path: The pairs file, e.g. ``nevir/derived_test1000_pairs.jsonl``.

    Returns:
        ``(topics, corpus, pairs)`` with one :class:`Pair` ``({id}_q1, {id}_doc1, {id}_q2, {id}_doc2)``
        per line.

    Raises:
        InputError: Invalid JSON, a missing field, or a pair id used twice.
    """
    topics: dict[str, Query] = {}
    corpus: dict[str, Document] = {}
    pairs: list[Pair] = []
    for lineno, obj, pid in _rows_by_id(path, "pair"):
        for n in ("1", "2"):
            topics[f"{pid}_q{n}"] = Query(f"{pid}_q{n}", json_str(obj, f"q{n}", path, lineno).strip())
            corpus[f"{pid}_doc{n}"] = Document(
                f"{pid}_doc{n}", json_str(obj, f"doc{n}", path, lineno).strip()
            )
        pairs.append(Pair(f"{pid}_q1", f"{pid}_doc1", f"{pid}_q2", f"{pid}_doc2"))
    return topics, corpus, pairs


def read_trap_items(path: str | Path) -> tuple[dict[str, Query], dict[str, Document], list[Trap]]:
    """Read answer-vs-trap items (ExcluIR / BoolQuestions JSONL: ``id``, ``query``, ``doc1``, ``doc2`` and
    ``answer_doc`` naming which of them answers, ``"doc1"`` or ``"doc2"``).

    Returns:
        ``(topics, corpus, items)``, ids ``{id}`` for the query and ``{id}_answer`` / ``{id}_trap`` for the
        passages.

    Raises:
        InputError: Invalid JSON, a missing field, a bad ``answer_doc`` or an id used twice.
    """
    topics: dict[str, Query] = {}
    corpus: dict[str, Document] = {}
    items: list[Trap] = []
    for lineno, obj, qid in _rows_by_id(path, "item"):
        answer = json_str(obj, "answer_doc", path, lineno)
        if answer not in ("doc1", "doc2"):
            raise InputError(path, lineno, f"answer_doc must be doc1 or doc2, not {answer!r}")
        trap = "doc2" if answer == "doc1" else "doc1"
        topics[qid] = Query(qid, json_str(obj, "query", path, lineno).strip())
        for role, field in (("answer", answer), ("trap", trap)):
            corpus[f"{qid}_{role}"] = Document(f"{qid}_{role}", json_str(obj, field, path, lineno).strip())
        items.append(Trap(qid, f"{qid}_answer", f"{qid}_trap"))
    return topics, corpus, items


def trap_accuracy(run: Mapping[str, Mapping[str, float]], items: Sequence[Trap | tuple[str, str, str]]) -> float:
    """The share of items whose query scores the answer passage strictly above the trap (a missing answer
    counts as wrong, a missing trap as below the answer).

    Raises:
        ValueError: No item is given.
    """
    if not items:
        raise ValueError("trap_accuracy needs at least one item")
    return sum(_beats(run.get(q, {}), answer, trap) for q, answer, trap in items) / len(items)


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1-based rank of each document after a stable sort by score descending."""
    ranking = sorted(scores, key=lambda d: scores[d], reverse=True)
    return {doc: i for i, doc in enumerate(ranking, start=1)}


def p_mrr(
    original_run: Mapping[str, Mapping[str, float]],
    changed_run: Mapping[str, Mapping[str, float]],
    changed_docs: Mapping[str, Iterable[str]],
) -> float:
    """FollowIR's p-MRR: do documents that a changed instruction makes non-relevant move down?

    For each query ``q`` and each document ``d`` of ``changed_docs[q]`` (relevant under the original
    instruction, not under the changed one), let ``og`` be the rank of ``d`` in
    ``original_run[q]`` and ``new`` its rank in ``changed_run[q]``. A rank is the 1-based position
    after sorting the query's run by score descending (a stable sort: ties keep the run's order), or
    ``len(run[q]) + 1`` for an absent document. Then, as in FollowIR / MTEB::

        score(d) = (1/og) / (1/new) - 1     if og >= new   (moved up or stayed: in [-1, 0])
        score(d) = 1 - (1/new) / (1/og)     if og < new    (moved down: in (0, 1))

    The scores are averaged per query, then over queries (queries with no changed document are
    skipped). Positive is good: the model follows the instruction.

    Args:
        original_run: ``{query_id: {doc_id: score}}`` under the original instructions.
        changed_run: The same queries under the changed instructions.
        changed_docs: ``{query_id: doc ids whose relevance flipped}``.

    Returns:
        p-MRR in [-1, 1].

    Raises:
        ValueError: A query of ``changed_docs`` is missing from either run, or no query has a
            changed document.
    """
    per_query: list[float] = []
    for qid, docs in changed_docs.items():
        docs = list(docs)
        if not docs:
            continue
        if qid not in original_run or qid not in changed_run:
            raise ValueError(f"query {qid!r} of changed_docs is missing from the original or changed run")
        og_ranks, new_ranks = _ranks(original_run[qid]), _ranks(changed_run[qid])
        values = []
        for doc in docs:
            og = og_ranks.get(doc, len(og_ranks) + 1)
            new = new_ranks.get(doc, len(new_ranks) + 1)
            values.append((1 / og) / (1 / new) - 1 if og >= new else 1 - (1 / new) / (1 / og))
        per_query.append(sum(values) / len(values))
    if not per_query:
        raise ValueError("p_mrr needs at least one query with a changed document")
    return sum(per_query) / len(per_query)
