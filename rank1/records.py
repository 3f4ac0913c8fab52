"""Small immutable records that flow along the data path.

Field names follow ``ir_measures`` (``query_id``, ``doc_id``, ``score``, ``relevance``) so that runs and
qrels read by :mod:`rank1.io` can be handed to ``ir_measures`` unchanged.
"""

from __future__ import annotations

from typing import NamedTuple


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
