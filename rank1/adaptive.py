"""Adaptive test-time compute: judge every pair directly, then reason only where it can change the ranking.

``mode="adaptive"`` is a cascade over one loaded model. Every pair is first judged in *direct* mode (one
forward pass, no reasoning). Then, per query, only the pairs that can still matter are judged again in
*reasoning* mode (with the reranker's budget):

* the ``adaptive_top`` pairs with the highest direct P(true) (the head of the list, where nDCG@10 is
  decided), and
* every pair whose direct P(true) lies within ``adaptive_band`` of 0.5 (the model is unsure).

A re-judged pair keeps its reasoning judgement (P(true) after reasoning, or with ``direct_blend`` b
``(1 - b) * P(true) after reasoning + b * direct P(true)``); the others keep their direct one. Both scores are
P(true) from the same model, so they are ranked together. ``mode="reasoning"`` with ``direct_blend`` is the
same cascade with every pair re-judged. A shipped student with an explainer (``rank1-0.5b-wise``, the default
until 2026-12-04, which was not trained to reason: its own traces degenerate) hands the reasoning stage to it
(:func:`rank1.students.explainer_for`, ``rank1-0.5b-neg3`` for wise): every reasoned pair carries the
explainer's trace, and its score is blended with the student's direct P(true) by the student's ``direct_blend``
(1 for wise and for the default, which explains itself: the direct score, explained). Both stages go through the score
store under their own mode, so an adaptive job reuses earlier direct and reasoning judgements and resumes
after a crash like any other job, and both run on any engine (in this process or on Ray).

:class:`AdaptiveReranker` is that composition: ``Reranker(mode="adaptive")`` (or ``mode="reasoning"`` with a
``direct_blend``) makes one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from rank1.records import Document, Query, best_first
from rank1.reranker import CompositeReranker, Reranker, RerankerConfig
from rank1.results import RerankResult, RerankStats, rank_query
from rank1.scoring import Judgement
from rank1.students import explainer_for


def select_for_reasoning(scores: Sequence[float], top: int, band: float, window: int | None = None,
                         spread: float = 0.0) -> list[int]:
    """Indices (ascending) of the pairs of one query that deserve reasoning.

    Args:
        scores: Direct-mode P(true) of the query's pairs.
        top: Re-judge the ``top`` highest-scoring pairs (ties: the earlier pair first).
        band: Also re-judge every pair with ``|P(true) - 0.5| <= band``.
        window: The band and spread criteria look only at the ``window`` highest-scoring pairs (``None``: at
            every pair).
        spread: Also re-judge those pairs when the query's direct scores span less than ``spread``
            (``max - min``): direct mode cannot tell them apart. 0: never.

    Example:
        >>> select_for_reasoning([0.9, 0.1, 0.55, 0.7], top=1, band=0.1)
        [0, 2]
        >>> select_for_reasoning([0.9, 0.1, 0.55, 0.7], top=0, band=0.1, window=1)
        []
        >>> select_for_reasoning([0.62, 0.6, 0.58], top=0, band=0.0, window=2, spread=0.05)
        [0, 1]
    """
    order = [i for i, _ in best_first(enumerate(scores))]
    head = order if window is None else order[:window]
    chosen = set(order[:top]) | {i for i in head if abs(scores[i] - 0.5) <= band}
    if scores and max(scores) - min(scores) < spread:
        chosen.update(head)
    return sorted(chosen)


def blend_score(reasoned: float, direct: float, b: float) -> float:
    """A reasoned pair's score with ``direct_blend`` b: ``(1 - b) * reasoned + b * direct`` (the same model's
    P(true) after reasoning and in direct mode).

    Example:
        >>> blend_score(0.2, 0.6, 0.25)
        0.30000000000000004
    """
    return (1.0 - b) * reasoned + b * direct


class AdaptiveReranker(CompositeReranker):
    """``mode="adaptive"``: a composition of a direct and a reasoning reranker over one model.

    Made by ``Reranker(mode="adaptive", ...)``; :attr:`direct` and :attr:`deep` share this reranker's model
    (and settings, with no fusion: the cascade fuses once, at the end).
    """

    direct: Reranker
    deep: Reranker

    def _attach(self, config: RerankerConfig, model: Any) -> None:
        super()._attach(config, model)
        stage = {"fusion_weight": 0.0, "direct_blend": 0.0}
        self.direct = Reranker._sharing(replace(config, mode="direct", **stage), model)
        reasoner = explainer_for(config.model)
        self.deep = (Reranker._sharing(replace(config, mode="reasoning", **stage), model) if reasoner == config.model
                     else Reranker(replace(config, model=reasoner, mode="reasoning", **stage), load=False))

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance recorded with every result: the reranker's, with the cascade's knobs (and the model that
        reasons, where it is the explainer of this one)."""
        c = self.config
        knobs = {"adaptive_top": c.adaptive_top, "adaptive_band": c.adaptive_band} if c.mode == "adaptive" else {}
        explainer = ({"explainer": self.deep.model_ref.name, "explainer_fingerprint": self.deep.model_ref.fingerprint}
                     if self._explained else {})
        return {**super().meta, **knobs, **({"direct_blend": c.direct_blend} if c.direct_blend else {}), **explainer}

    def close(self) -> None:
        """Release the backend, and the explainer's where it reasons for this model."""
        super().close()
        if self._explained:
            self.deep.close()

    @property
    def _explained(self) -> bool:
        """Whether another model (this one's explainer) reasons for it, over its own loaded model."""
        return self.deep._model is not self._model

    def select(self, scores: Sequence[float]) -> list[int]:
        """Indices of the pairs of one query, given their direct P(true), that the reasoning stage re-judges
        (every pair in reasoning mode; :func:`select_for_reasoning` with the adaptive knobs otherwise)."""
        return select_for_reasoning(scores, *self._knobs)

    def blend(self, reasoned: Judgement, direct: Judgement) -> Judgement:
        """A reasoned pair's judgement: its reasoning, the score blended with the direct one (``direct_blend``),
        and the reasoning's own P(true) beside it (``reasoned_score``)."""
        b = self.config.direct_blend
        if not b:
            return reasoned
        return reasoned._replace(score=blend_score(reasoned.score, direct.score, b), reasoned_score=reasoned.score)

    def _compose(self, pairs: Sequence[tuple[str, str]],
                 judge: Callable[[Reranker, Sequence[tuple[str, str]]], list[Judgement]]) -> list[Judgement]:
        """The cascade over ``pairs`` (pairs with the same query text form one query's list)."""
        direct = judge(self.direct, pairs)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (query, _) in enumerate(pairs):
            groups[query].append(i)
        chosen = sorted(
            members[k]
            for members in groups.values()
            for k in self.select([direct[i].score for i in members])
        )
        out = list(direct)
        for i, judgement in zip(chosen, judge(self.deep, [pairs[i] for i in chosen])):
            out[i] = self.blend(judgement, direct[i])
        return out

    def _rerank_run(self, run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document],
                    topics: Mapping[str, Query], depth: int, jobs: dict[str, Any]) -> RerankResult:
        """The cascade (see the module docstring); both stages run on the job's engine and use its store under
        their own mode."""
        direct = self.direct.rerank_run(run, corpus, topics, depth, **jobs)
        selected: dict[str, dict[str, float]] = {}
        for qid, docs in direct.run.items():
            judged = [d for d in docs if d.judgement is not None]
            picks = self.select([d.score for d in judged])
            selected[qid] = {judged[i].doc_id: run[qid][judged[i].doc_id] for i in picks}
        width = max((len(docs) for docs in selected.values()), default=0) or 1
        deep = self.deep.rerank_run(selected, corpus, topics, width, **jobs)
        reasoned = {(q, d.doc_id): d.judgement for q, docs in deep.run.items() for d in docs if d.judgement}

        stats = RerankStats(empty=direct.stats.empty, seconds=direct.stats.seconds + deep.stats.seconds,
                            cached=direct.stats.cached + deep.stats.cached,
                            judged=direct.stats.judged + deep.stats.judged, restaged=deep.stats.pairs)
        out = {}
        for qid, docs in direct.run.items():
            judged = [d for d in docs if d.judgement is not None]
            final = [self.blend(reasoned[(qid, d.doc_id)], d.judgement) if (qid, d.doc_id) in reasoned
                     else d.judgement for d in judged]
            stats.add(final)
            head = [(d.doc_id, run[qid][d.doc_id]) for d in judged]
            tail = [d.doc_id for d in docs if d.judgement is None]
            out[qid] = rank_query(head, final, tail, self.config.fusion_weight)
        return RerankResult(out, stats, self.meta)

    @property
    def _knobs(self) -> tuple[int, float]:
        """(top, band) of :func:`select_for_reasoning`; every pair in reasoning mode."""
        if self.config.mode == "reasoning":
            return 2**31, 0.5
        return self.config.adaptive_top, self.config.adaptive_band
