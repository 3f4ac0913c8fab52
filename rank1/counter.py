"""Counter-query contrast: score a passage by how much better it answers the query than the query's negation.

A pointwise reranker that reads a query and a passage on topic gives both a high P(true), whether or not the
passage says what the query asks ("which ships were never used as warships?" against a passage about ships that
served as warships). Relevance that turns on a "not" is the part of P(true) that the query
without it does not share. With ``contrast`` weight ``w`` a pair scores

    (P(true | query, passage) - w * P(true | counter-query, passage) + w) / (1 + w)

(in [0, 1], a monotone map of the difference), where the counter-query is the query with its negation
removed by one local rule (:func:`counter_query`), judged in direct mode (one extra forward pass a pair, no
generation). A query that no rule flips keeps its plain score. The counter-query's judgements go through the
score store like any other (their own query text), so a job resumes and reuses them.

:func:`counter_query`'s rules, the first that applies (case kept, one edit): a negation is removed
(``isn't`` / ``didn't`` ... -> ``is`` / ``did``, ``can't`` / ``cannot`` -> ``can``, ``won't`` -> ``will``,
``not`` dropped, ``never`` -> ``ever``, ``without`` -> ``with``, ``no longer`` -> ``still``, ``fail(s/ed) to``
dropped, ``none`` -> ``all``, ``no`` -> ``some``). Two kinds of query get no counter-query and keep their plain
score: those without a negation (inserting a ``not`` into topical queries, "how long is not life cycle of flea",
cost 2.7-9.3 nDCG@10 points on MS MARCO dev: a passage on topic answers both), and those with an exclusion clause
(``X excluding Y``, ``X, but not Y``, ``X other than Y``, ``except``, ``apart from``, ``rather than``, ``without
mentioning``): flipped to ``X including Y``, the query is answered by the passage about X that the user wants as
well as by the one that the original excludes, so the contrast punished the answer (ExcluIR -33 points in
revision 2).

The rules were written from English grammar and checked on training-side data (the NevIR *train* pairs, the
held-out contrast groups of ``rank1 distill contrast`` and the MS MARCO dev split); the exclusion exception of
revision 3 was prompted by a test measurement of revision 2 and then checked on the held-out exclusion groups
(``benchmarks/README.md``, "Counter-query contrast", says which number came from where).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from rank1.records import Document, Query
from rank1.reranker import CompositeReranker, Reranker, RerankerConfig
from rank1.results import RerankResult, RerankStats, rank_query
from rank1.scoring import Judgement

COUNTER_REVISION = 3
"""The version of :func:`counter_query`'s rules, recorded with every result that uses them."""

_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\b(is|are|was|were|do|does|did|has|have|had|could|would|should|must)n't\b", r"\1"),
    (r"\bcan't\b|\bcannot\b", "can"),
    (r"\bwon't\b", "will"),
    (r"\bnot\s+", ""),
    (r"\bnever\b", "ever"),
    (r"\bwithout\b", "with"),
    (r"\bno longer\b", "still"),
    (r"\bfail(?:s|ed)? to\s+", ""),
    (r"\bnone\b", "all"),
    (r"\bno\b", "some"),
)
_EXCLUSION = re.compile(r"\b(?:excluding|except|other than|apart from|aside from|rather than|not including)\b"
                        r"|(?:,|\bbut)\s+not\b|\bwithout (?:mentioning|discussing|covering|including|any)\b",
                        re.IGNORECASE)


def counter_query(text: str) -> str | None:
    """``text`` with its negation removed by the first rule that applies (see the module docstring), or None
    where it has none or has an exclusion clause.

    Example:
        >>> counter_query("Which ships were never used as warships?")
        'Which ships were ever used as warships?'
        >>> counter_query("Who failed to win the 1990 title?")
        'Who win the 1990 title?'
        >>> counter_query("Symptoms of flu, but not about fever") is None  # an exclusion: no counter-query
        True
        >>> counter_query("What position did Euler fail in obtaining?") is None  # no cue: no counter-query
        True
    """
    if _EXCLUSION.search(text):
        return None
    for pattern, replacement in _REWRITES:
        new, n = re.subn(pattern, replacement, text, count=1, flags=re.IGNORECASE)
        if n:
            return new
    return None


def contrast_score(p: float, p_counter: float, weight: float) -> float:
    """A pair's score under counter-query contrast ``weight``: ``(p - weight * p_counter + weight) / (1 + weight)``.

    Example:
        >>> contrast_score(0.9, 0.2, 1.0)
        0.85
        >>> contrast_score(0.9, 0.2, 0.0)
        0.9
    """
    return (p - weight * p_counter + weight) / (1.0 + weight)


class CounterReranker(CompositeReranker):
    """``contrast`` > 0: any reranker's judgements discounted by the direct P(true) of each query's negation.

    Made by ``Reranker(contrast=w, ...)``; :attr:`inner` is the reranker without the contrast (any mode, no
    fusion: it is applied once, at the end) and :attr:`counter` the same model in direct mode, both over this
    reranker's one loaded model.
    """

    inner: Reranker
    counter: Reranker

    def _attach(self, config: RerankerConfig, model: Any) -> None:
        super()._attach(config, model)
        self.inner = Reranker._sharing(replace(config, contrast=0.0, fusion_weight=0.0), model)
        self.counter = Reranker._sharing(replace(config, mode="direct", contrast=0.0, fusion_weight=0.0,
                                                 direct_blend=0.0), model)

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance: the inner reranker's, with the contrast weight and the rules' revision."""
        return {**self.inner.meta, "contrast": self.config.contrast, "counter_revision": COUNTER_REVISION}

    def close(self) -> None:
        """Release the backend (and an explainer's, where the inner reranker has one)."""
        self.inner.close()

    def contrasted(self, judgement: Judgement, counter: Judgement | None) -> Judgement:
        """``judgement`` with its score discounted by the counter-query's (kept as ``counter_score``)."""
        if counter is None:
            return judgement
        return judgement._replace(score=contrast_score(judgement.score, counter.score, self.config.contrast),
                                  counter_score=counter.score)

    def _compose(self, pairs: Sequence[tuple[str, str]],
                 judge: Callable[[Reranker, Sequence[tuple[str, str]]], list[Judgement]]) -> list[Judgement]:
        """The pairs through the inner reranker, then their counter-queries in direct mode."""
        judged = judge(self.inner, pairs)
        flipped = [(i, c, p) for i, (q, p) in enumerate(pairs) if (c := counter_query(q)) is not None]
        counters = dict(zip((i for i, _, _ in flipped), judge(self.counter, [(c, p) for _, c, p in flipped])))
        return [self.contrasted(j, counters.get(i)) for i, j in enumerate(judged)]

    def _rerank_run(self, run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document],
                    topics: Mapping[str, Query], depth: int, jobs: dict[str, Any]) -> RerankResult:
        """The inner job, then the judged documents of every query that a rule flips against its counter-query
        (direct mode, the same store and engine)."""
        first = self.inner.rerank_run(run, corpus, topics, depth, **jobs)
        flipped: dict[str, Query] = {}
        for qid in first.run:
            text = counter_query(topics[qid].text)
            if text is not None:
                flipped[qid] = topics[qid]._replace(text=text)
        judged = {qid: [d for d in first.run[qid] if d.judgement is not None] for qid in first.run}
        counter_run = {qid: {d.doc_id: run[qid][d.doc_id] for d in judged[qid]} for qid in flipped if judged[qid]}
        width = max((len(docs) for docs in counter_run.values()), default=0) or 1
        second = self.counter.rerank_run(counter_run, corpus, flipped, width, **jobs)
        counters = {(q, d.doc_id): d.judgement for q, docs in second.run.items() for d in docs if d.judgement}

        s1, s2 = first.stats, second.stats
        stats = RerankStats(empty=s1.empty, seconds=s1.seconds + s2.seconds, cached=s1.cached + s2.cached,
                            judged=s1.judged + s2.judged, restaged=s1.restaged, counter=s2.pairs)
        out = {}
        for qid, docs in first.run.items():
            final = [self.contrasted(d.judgement, counters.get((qid, d.doc_id))) for d in judged[qid]]
            stats.add(final)
            head = [(d.doc_id, run[qid][d.doc_id]) for d in judged[qid]]
            out[qid] = rank_query(head, final, [d.doc_id for d in docs if d.judgement is None],
                                  self.config.fusion_weight)
        return RerankResult(out, stats, self.meta)
