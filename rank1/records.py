"""Small immutable records that flow along the data path.

Field names follow ``ir_measures`` (``query_id``, ``doc_id``, ``score``, ``relevance``) so that runs and
qrels read by :mod:`rank1.io` can be handed to ``ir_measures`` unchanged.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Sequence, TypeVar

_Scored = TypeVar("_Scored", bound=Sequence)


class Query(NamedTuple):
    """A topic: its id, its text and an optional per-query instruction (FollowIR style)."""

    query_id: str
    text: str
    instruction: str = ""

    @property
    def full_text(self) -> str:
        """The query with its instruction appended, as the Rank1 prompt uses it."""
        return f"{self.text} {self.instruction}".strip()


class Document(NamedTuple):
    """A passage of a corpus; ``title`` may be empty."""

    doc_id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """``"{title} {text}"`` when there is a title, else the text (Rank1's convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


class ScoredDoc(NamedTuple):
    """One line of a run: a document retrieved for a query with a score (higher is better)."""

    query_id: str
    doc_id: str
    score: float


class Qrel(NamedTuple):
    """One relevance judgement; graded, negative values allowed."""

    query_id: str
    doc_id: str
    relevance: int


def best_first(scored: Iterable[_Scored]) -> list[_Scored]:
    """Items ``(id, score, ...)`` by score, best first; ties go to the smaller id.

    The one ordering rule of every ranking rank1 makes or writes (runs, reranked lists, selections).

    Example:
        >>> best_first([("b", 1.0), ("c", 2.0), ("a", 1.0)])
        [('c', 2.0), ('a', 1.0), ('b', 1.0)]
    """
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def first_missing(run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, object],
                  topics: Mapping[str, object], depth: int) -> tuple[str, str | None] | None:
    """The first gap between a run and its texts: ``(qid, None)`` for a query missing from ``topics``,
    ``(qid, docid)`` for a document within the top ``depth`` missing from ``corpus``; ``None``: none.

    Example:
        >>> first_missing({"q1": {"d1": 1.0, "d2": 0.5}}, {"d1": "text"}, {"q1": "query"}, depth=2)
        ('q1', 'd2')
    """
    for qid, docs in run.items():
        if qid not in topics:
            return qid, None
        for docid, _ in best_first(docs.items())[:depth]:
            if docid not in corpus:
                return qid, docid
    return None
