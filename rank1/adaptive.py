"""Adaptive test-time compute: judge every pair directly, then reason only where it can change the ranking.

``mode="adaptive"`` is a cascade over one loaded model. Every pair is first judged in *direct* mode (one
forward pass, no reasoning). Then, per query, only the pairs that can still matter are judged again in
*reasoning* mode (with the reranker's budget):

* the ``adaptive_top`` pairs with the highest direct P(true) (the head of the list, where nDCG@10 is
  decided), and
* every pair whose direct P(true) lies within ``adaptive_band`` of 0.5 (the model is unsure).

A re-judged pair keeps its reasoning judgement (P(true) after reasoning); the others keep their direct one.
Both scores are P(true) from the same model, so they are ranked together. Both stages go through the score
store under their own mode, so an adaptive job reuses earlier direct and reasoning judgements and resumes
after a crash like any other job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rank1.records import Document, Query
from rank1.scoring import Judgement

if TYPE_CHECKING:
    from rank1.reranker import Reranker, RerankResult
    from rank1.store import ScoreStore


def select_for_reasoning(scores: Sequence[float], top: int, band: float) -> list[int]:
    """Indices (ascending) of the pairs of one query that deserve reasoning.

    Args:
        scores: Direct-mode P(true) of the query's pairs.
        top: Re-judge the ``top`` highest-scoring pairs (ties: the earlier pair first).
        band: Also re-judge every pair with ``|P(true) - 0.5| <= band``.

    Example:
        >>> select_for_reasoning([0.9, 0.1, 0.55, 0.7], top=1, band=0.1)
        [0, 2]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    chosen = set(order[:top]) | {i for i, s in enumerate(scores) if abs(s - 0.5) <= band}
    return sorted(chosen)


def score_adaptive(reranker: "Reranker", pairs: Sequence[tuple[str, str]], progress: bool) -> list[Judgement]:
    """:meth:`Reranker.score` in adaptive mode; pairs with the same query text form one query's list."""
    direct = reranker.replace(mode="direct").score(pairs, progress=progress)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (query, _) in enumerate(pairs):
        groups[query].append(i)
    chosen = sorted(
        members[k]
        for members in groups.values()
        for k in select_for_reasoning([direct[i].score for i in members], *_knobs(reranker))
    )
    deep = reranker.replace(mode="reasoning").score([pairs[i] for i in chosen], progress=progress)
    out = list(direct)
    for i, judgement in zip(chosen, deep):
        out[i] = judgement
    return out


def rerank_run_adaptive(
    reranker: "Reranker",
    run: Mapping[str, Mapping[str, float]],
    corpus: Mapping[str, Document],
    topics: Mapping[str, Query],
    depth: int,
    progress: bool,
    store: "ScoreStore | None",
    chunk_size: int | None,
) -> "RerankResult":
    """:meth:`Reranker.rerank_run` in adaptive mode (see the module docstring)."""
    from rank1.results import RerankResult, RerankStats, rank_query

    jobs: dict[str, Any] = {"progress": progress, "store": store, "chunk_size": chunk_size}
    direct = reranker.replace(mode="direct", fusion_weight=0.0).rerank_run(run, corpus, topics, depth, **jobs)
    selected: dict[str, dict[str, float]] = {}
    for qid, docs in direct.run.items():
        judged = [d for d in docs if d.judgement is not None]
        picks = select_for_reasoning([d.score for d in judged], *_knobs(reranker))
        selected[qid] = {judged[i].doc_id: run[qid][judged[i].doc_id] for i in picks}
    width = max((len(docs) for docs in selected.values()), default=0) or 1
    deep = reranker.replace(mode="reasoning", fusion_weight=0.0).rerank_run(selected, corpus, topics, width, **jobs)
    reasoned = {(q, d.doc_id): d.judgement for q, docs in deep.run.items() for d in docs if d.judgement}

    stats = RerankStats(empty=direct.stats.empty, seconds=direct.stats.seconds + deep.stats.seconds,
                        cached=direct.stats.cached + deep.stats.cached, judged=direct.stats.judged + deep.stats.judged)
    out = {}
    for qid, docs in direct.run.items():
        judged = [d for d in docs if d.judgement is not None]
        final = [reasoned.get((qid, d.doc_id), d.judgement) for d in judged]
        stats.add(final)
        head = [(d.doc_id, run[qid][d.doc_id]) for d in judged]
        tail = [d.doc_id for d in docs if d.judgement is None]
        out[qid] = rank_query(head, final, tail, reranker.config.fusion_weight)
    return RerankResult(out, stats, reranker.meta)


def _knobs(reranker: "Reranker") -> tuple[int, float]:
    return reranker.config.adaptive_top, reranker.config.adaptive_band
