"""What a rerank job produces: the reranked documents, the reasoning behind each score, and counts.

:func:`rank_query` is the one ordering rule every path shares (single process, adaptive, Ray): judged
documents by (optionally fused) score, ties to the smaller doc id, then the documents below the depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Sequence

from rank1 import display
from rank1.records import best_first
from rank1.scoring import Judgement

if TYPE_CHECKING:
    import pandas as pd


class RankedDoc(NamedTuple):
    """A document in a reranked list; ``judgement`` is ``None`` for documents below the depth."""

    doc_id: str
    score: float
    judgement: Judgement | None = None


@dataclass
class RerankStats:
    """What a rerank job did.

    Attributes:
        pairs: Pairs with a judgement in the result (from the store or the model).
        cached: Judgements read from the score store.
        judged: Judgements the model made in this job (a pair occurring twice is judged once). A cascade
            (adaptive mode, or reasoning blended with direct mode) judges a pair once per stage, so with
            ``restaged`` pairs ``cached + judged`` can reach ``pairs + restaged``.
        restaged: Pairs the cascade judged a second time, in reasoning mode, after direct mode.
        counter: Pairs judged again against their query's negation (counter-query contrast,
            :mod:`rank1.counter`); ``cached + judged`` can reach ``pairs + restaged + counter``.
        empty: Documents within the depth whose text is empty: not judged, ranked below the judged ones.
        truncated: Judgements of a truncated passage.
        fallbacks: Judgements that hit the reasoning budget (Rank1's fallback).
        generated_tokens: Reasoning tokens behind the judgements.
        disagreements: Judgements whose score blends reasoning with direct mode and whose reasoning reached
            the other side of 0.5 (:meth:`rank1.scoring.Judgement.disagrees`): the trace argues against the score.
        seconds: Wall-clock time of the job.
    """

    pairs: int = 0
    cached: int = 0
    judged: int = 0
    restaged: int = 0
    counter: int = 0
    empty: int = 0
    truncated: int = 0
    fallbacks: int = 0
    generated_tokens: int = 0
    disagreements: int = 0
    seconds: float = 0.0

    def add(self, judgements: Sequence[Judgement]) -> None:
        """Count a batch of judgements."""
        self.pairs += len(judgements)
        self.truncated += sum(j.truncated for j in judgements)
        self.fallbacks += sum(j.fallback for j in judgements)
        self.generated_tokens += sum(j.generated_tokens for j in judgements)
        self.disagreements += sum(j.disagrees() for j in judgements)


@dataclass
class RerankResult:
    """A reranked run with the reasoning behind every score and what produced it.

    Attributes:
        run: Query id -> documents, best first.
        stats: Pair, truncation and fallback counts and time.
        meta: Model fingerprint, template name and hash, mode, budget, backend.
    """

    run: dict[str, list[RankedDoc]]
    stats: RerankStats
    meta: dict[str, Any]

    def scores(self) -> dict[str, dict[str, float]]:
        """The run as ``{qid: {docid: score}}`` (for :func:`rank1.io.write_run` and evaluation)."""
        return {q: {d.doc_id: d.score for d in docs} for q, docs in self.run.items()}

    def traces(self) -> Iterator[dict[str, Any]]:
        """One record per judged pair: ids, rank, score, reasoning, flags and provenance."""
        for qid, docs in self.run.items():
            for rank, doc in enumerate(docs, 1):
                if doc.judgement is not None:  # ``score`` is the (fused) run score, ``p_true`` the model's
                    yield {"qid": qid, "docid": doc.doc_id, "rank": rank, "score": doc.score,
                           **doc.judgement.details(), "p_true": doc.judgement.score, **self.meta}

    def to_pandas(self, judged_only: bool = False) -> pd.DataFrame:
        """One row per document: qid, docid, rank, score, p_true, reasoning, flags (see :mod:`rank1.display`)."""
        return display.result_frame(self, judged_only)

    def _repr_html_(self) -> str:
        return display.result_html(self)


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [0.5] * len(values) if hi == lo else [(v - lo) / (hi - lo) for v in values]


def rank_query(
    head: Sequence[tuple[str, float]],
    judgements: Sequence[Judgement],
    tail: Sequence[str] = (),
    fusion_weight: float = 0.0,
) -> list[RankedDoc]:
    """Order one query's documents after judging.

    Args:
        head: The judged documents as (doc id, first-stage score).
        judgements: One judgement per ``head`` document.
        tail: Documents below the depth, in first-stage order.
        fusion_weight: ``w`` in ``(1-w)*P(true) + w*minmax(first-stage score over the head)``.

    Returns:
        The head by fused score (ties: smaller doc id first), then the tail with scores -1, -2, ...
    """
    w = fusion_weight
    first = _minmax([s for _, s in head]) if head else []
    ranked = best_first(RankedDoc(d, (1 - w) * j.score + w * f, j) for (d, _), j, f in zip(head, judgements, first))
    return ranked + [RankedDoc(d, -float(i), None) for i, d in enumerate(tail, 1)]


def reweight(result: RerankResult, first: dict[str, dict[str, float]], fusion_weight: float) -> dict[str, dict[str, float]]:
    """Re-order a result's stored judgements with another fusion weight, without calling the model.

    Args:
        result: A reranked run (its judgements are kept).
        first: The first-stage run it was made from, ``{qid: {docid: score}}``.
        fusion_weight: ``w`` of :func:`rank_query`.

    Returns:
        The re-ordered run as ``{qid: {docid: score}}``.
    """
    out: dict[str, dict[str, float]] = {}
    for qid, docs in result.run.items():
        judged = [d for d in docs if d.judgement is not None]
        head = [(d.doc_id, first[qid][d.doc_id]) for d in judged]
        tail = [d.doc_id for d in docs if d.judgement is None]
        ranked = rank_query(head, [d.judgement for d in judged], tail, fusion_weight)  # type: ignore[misc]
        out[qid] = {d.doc_id: d.score for d in ranked}
    return out
